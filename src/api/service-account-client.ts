import { z } from 'zod';
import {
  API_VERSION,
  Conditions,
  DnsSubdomain,
  identityText,
  ObjectMeta,
  RenewBefore,
  rotationFloorRule,
  TierReference,
  TokenLifetime,
} from './common.ts';

/**
 * The identity tokens are issued for, proven at admission (access/client-subject.yaml): the
 * requester's own, or one the requester may speak for (verb impersonate on tokenwarden.io users and groups).
 */
export const ClientSubject = z.object({
  /** The user name, exactly as the identity provider reports it: the requester's username unless the requester may impersonate tokenwarden.io users/<user>. It names the per-user ServiceAccount. */
  user: identityText(z.string().min(1).max(1024)),
  /** The user's groups: each one of the requester's own groups (when the user is the requester), or one the requester may impersonate as tokenwarden.io groups/<group>. */
  groups: z.array(identityText(z.string().min(1).max(256))).max(256).default([]).meta({ 'x-kubernetes-list-type': 'set' }),
});
export type ClientSubject = z.infer<typeof ClientSubject>;

/** What the client asks of its tokens, within the tier's policy. */
export const ClientTokenRequest = z
  .object({
    /** A subset of the tier's audiences; empty means all of them. */
    audiences: z.array(identityText(z.string().min(1).max(253))).max(16).optional().meta({ 'x-kubernetes-list-type': 'set' }),
    /** Requested lifetime; capped by the tier's and the tenant's maximum. */
    expiration: TokenLifetime.optional(),
    /** When to renew; defaults to the tier's renewBefore. Never less than 10s after issue: refused here when expiration is set too, clamped otherwise. */
    renewBefore: RenewBefore.optional(),
  })
  .meta({
    'x-kubernetes-validations': [
      {
        rule:
          "!has(self.expiration) || !has(self.renewBefore) || self.renewBefore.endsWith('%') || duration(self.renewBefore) < duration(self.expiration)",
        message: 'renewBefore must be shorter than expiration',
        fieldPath: '.renewBefore',
      },
      rotationFloorRule('expiration'),
    ],
  });
export type ClientTokenRequest = z.infer<typeof ClientTokenRequest>;

/**
 * Bounds of a secretTemplate. The operator keeps every client's spec in memory, so a template's size
 * is what a tenant can make the operator hold per client: at most 64 labels and 64 annotations, keys
 * within Kubernetes' own limit (a 253-character prefix, a slash, a 63-character name), label values
 * within Kubernetes' 63, annotation values at most 4 KiB each and 8 KiB together. That is under
 * 60,000 characters per client, where unbounded a tenant's few clients exhausted the operator's heap.
 */
export const SECRET_TEMPLATE_LIMITS = { entries: 64, keyChars: 317, labelValueChars: 63, annotationValueChars: 4096, annotationTotalChars: 8192 } as const;

const L = SECRET_TEMPLATE_LIMITS;
/** Keys of a template map: the record's key schema does not reach the CRD (no propertyNames there), so CEL checks them. */
const templateKeysRule = { rule: `self.all(k, k.size() <= ${L.keyChars})`, message: `keys must be at most ${L.keyChars} characters` };
const templateMap = (valueChars: number) =>
  z
    .record(z.string().max(L.keyChars), z.string().max(valueChars))
    .refine((m) => Object.keys(m).length <= L.entries, { message: `at most ${L.entries} entries` });

/** Extra labels and annotations for the client's Secret. */
export const SecretTemplate = z.object({
  /** Labels added to the Secret: at most 64, keys at most 317 characters (prefix/name), values at most 63, as Kubernetes allows. */
  labels: templateMap(L.labelValueChars)
    .meta({ maxProperties: L.entries, 'x-kubernetes-validations': [templateKeysRule] })
    .optional(),
  /**
   * Annotations added to the Secret: at most 64, keys at most 317 characters, each value at most 4 KiB and all values
   * together at most 8 KiB (the operator keeps every client's template in memory; Kubernetes' own 256 KiB per object
   * would let a few clients exhaust it).
   */
  annotations: templateMap(L.annotationValueChars)
    .refine((m) => Object.values(m).reduce((n, v) => n + v.length, 0) <= L.annotationTotalChars, {
      message: `annotation values must total at most ${L.annotationTotalChars} characters`,
    })
    .meta({
      maxProperties: L.entries,
      'x-kubernetes-validations': [
        templateKeysRule,
        { rule: `self.map(k, self[k].size()).sum() <= ${L.annotationTotalChars}`, message: `annotation values must total at most ${L.annotationTotalChars} characters` },
      ],
    })
    .optional(),
});
export type SecretTemplate = z.infer<typeof SecretTemplate>;

/** Give this subject a token, keep it fresh, revoke it on demand. */
export const ServiceAccountClientSpec = z.object({
  /** The identity the token is issued for. */
  subject: ClientSubject,
  /** Ask for a tier; refused with a condition unless the subject qualifies for it. */
  tierRef: TierReference.optional(),
  /** What the client asks of its tokens. */
  token: ClientTokenRequest.optional(),
  /** Name of the Secret holding the token, in the client's namespace. Defaults to "<name>-token". */
  secretName: DnsSubdomain.optional(),
  /** Labels and annotations for the Secret. */
  secretTemplate: SecretTemplate.optional(),
  /** True revokes every token of this client and empties its Secret; false again issues a new token. */
  suspended: z.boolean().default(false),
  /** Raise it to revoke every token issued so far for this client and get a fresh one. It never decreases. */
  revocationEpoch: z
    .number()
    .int()
    .min(0)
    .max(2_147_483_647)
    .default(0)
    .meta({ 'x-kubernetes-validations': [{ rule: 'self >= oldSelf', message: 'revocationEpoch may only increase' }] }),
});
export type ServiceAccountClientSpec = z.infer<typeof ServiceAccountClientSpec>;

/** The ServiceAccount tokens of this client are minted for. */
export const ServiceAccountReference = z.object({
  /** Namespace of the ServiceAccount: the tier namespace. */
  namespace: z.string(),
  /** Name of the ServiceAccount. */
  name: z.string(),
  /** UID of the ServiceAccount the current tokens belong to. */
  uid: z.string().optional(),
});
export type ServiceAccountReference = z.infer<typeof ServiceAccountReference>;

/** A token of this client that is still valid. */
export const IssuedToken = z.object({
  /** Identifier of the token: the name of the anchor Secret it is bound to. */
  id: z.string(),
  /** When the token was minted. */
  issuedAt: z.string(),
  /** When the token expires. */
  expiresAt: z.string(),
  /** When the token is due for renewal. */
  renewAt: z.string(),
  /**
   * SHA-256 of the token, its first 32 hex digits: the token in the client's Secret must have it,
   * else it is not the one issued (a forged signature). Absent for tokens issued before it was recorded.
   */
  digest: z.string().regex(/^[0-9a-f]{32}$/).optional(),
});
export type IssuedToken = z.infer<typeof IssuedToken>;

/**
 * When the operator first saw the subject proven as it is now (docs/security.md, "Groups are
 * proven at every edit"): what a Tier's groupGrantMaxAge is counted from.
 */
export const SubjectProof = z.object({
  /** SHA-256 of what admission proves on every change: the spec but revocationEpoch, and the annotation tokenwarden.io/subject-proof. */
  digest: z.string().max(64),
  /** When the operator first saw that digest (RFC 3339); the creation time for the first one. */
  provenAt: z.string(),
});
export type SubjectProof = z.infer<typeof SubjectProof>;

/** The observed state of a ServiceAccountClient. */
export const ServiceAccountClientStatus = z.object({
  /** The tier the client resolved to. */
  tier: z.string().optional(),
  /** Why that tier: TenantBinding/<name>, Tier/<name> (groups), Default or Requested. */
  tierReason: z.string().optional(),
  /** The per-user ServiceAccount the tokens are minted for. */
  serviceAccount: ServiceAccountReference.optional(),
  /** The Secret that holds the current token. */
  secretName: z.string().optional(),
  /**
   * Tokens of this client still valid, newest first: two during a grace period, more when renewals
   * come faster than the grace period, never more than 8 (older ones are then revoked early).
   */
  tokens: z.array(IssuedToken).max(8).optional(),
  /** When the newest token expires. */
  expiresAt: z.string().optional(),
  /** When the newest token is due for renewal. */
  renewAt: z.string().optional(),
  /** The revocation epoch whose revocation has been carried out. */
  revocationEpoch: z.number().int().min(0).optional(),
  /**
   * Failed attempts in a row to issue or renew a token, or to carry out a write after one was
   * issued (Ready reason WriteFailed); cleared by the next success. The next
   * attempt waits 5s after the first failure, doubling with each one up to 1h; a spec change, a
   * new tier or a new renewal request (`kubectl tokenwarden renew`) tries again at once and counts
   * from 1.
   */
  failedAttempts: z.number().int().min(0).optional(),
  /** When the last attempt (to issue, renew, or write after issuing) failed (RFC 3339); cleared by the next success. */
  lastFailureTime: z.string().optional(),
  /**
   * The annotation tokenwarden.io/renew-requested-at as it was when the last attempt failed; cleared
   * by the next success (a value longer than 64 characters as its SHA-256). A renewal request with
   * another value starts the backoff over, once.
   */
  lastFailureRenewRequest: z.string().max(80).optional(),
  /** The last proof of the subject the operator saw: what a Tier's groupGrantMaxAge is counted from. */
  subjectProof: SubjectProof.optional(),
  /** The metadata.generation this status describes. */
  observedGeneration: z.number().int().min(0).optional(),
  /** Ready (a valid token is in the Secret), TierResolved and Suspended; GroupGrantExpired when a Tier's groupGrantMaxAge concerns the subject. */
  conditions: Conditions.optional(),
});
export type ServiceAccountClientStatus = z.infer<typeof ServiceAccountClientStatus>;

export const ServiceAccountClient = z.object({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal('ServiceAccountClient'),
  metadata: ObjectMeta,
  spec: ServiceAccountClientSpec,
  status: ServiceAccountClientStatus.optional(),
});
export type ServiceAccountClient = z.infer<typeof ServiceAccountClient>;
