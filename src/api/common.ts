import { z } from 'zod';

/**
 * Shared building blocks of the tokenwarden.io/v1alpha1 API.
 *
 * Doc comments on exported schemas and on their properties are the field descriptions: the CRD
 * generator and the API reference read them with ts-morph, so every property needs one.
 */

export const GROUP = 'tokenwarden.io';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;

/** The TokenRequest API refuses tokens shorter than ten minutes. */
export const MIN_TOKEN_LIFETIME = '10m';

/** The shortest time from a token's issue to its renewal (src/policy/token-policy.ts clamps to it). */
export const MIN_ROTATION_INTERVAL = '10s';

/**
 * A CEL rule on an object with a lifetime field and `renewBefore`: when both are set, the renewal
 * comes at least MIN_ROTATION_INTERVAL after issue. A percentage p leaves (100 - p)% of the lifetime.
 */
export function rotationFloorRule(lifetime: string) {
  const seconds = Number(/^(\d+)s$/.exec(MIN_ROTATION_INTERVAL)?.[1]);
  return {
    rule:
      `!has(self.${lifetime}) || !has(self.renewBefore) || (self.renewBefore.endsWith('%') ` +
      `? duration(self.${lifetime}).getSeconds() * (100 - int(self.renewBefore.substring(0, self.renewBefore.size() - 1))) >= ${seconds * 100} ` +
      `: duration(self.${lifetime}) - duration(self.renewBefore) >= duration('${MIN_ROTATION_INTERVAL}'))`,
    message: `renewBefore must leave at least ${MIN_ROTATION_INTERVAL} between a token's issue and its renewal (${lifetime} minus renewBefore): a shorter interval would rotate the token without pause`,
    fieldPath: '.renewBefore',
  };
}

const DURATION_PATTERN = '^([0-9]+(ns|us|ms|s|m|h))+$';
const DURATION_OR_PERCENT_PATTERN = '^(([0-9]+(ns|us|ms|s|m|h))+|[0-9]{1,3}%)$';
const DNS_LABEL_PATTERN = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$';
const DNS_SUBDOMAIN_PATTERN = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$';

/** A Go-style duration such as "90s", "10m", "4h" or "1h30m". */
export const Duration = z.string().max(32).regex(new RegExp(DURATION_PATTERN));

/** A duration that is also a valid token lifetime: at least ten minutes. */
export const TokenLifetime = Duration.meta({
  'x-kubernetes-validations': [
    { rule: `duration(self) >= duration('${MIN_TOKEN_LIFETIME}')`, message: `must be at least ${MIN_TOKEN_LIFETIME}` },
  ],
});

/**
 * How long before expiry a token is renewed: a duration ("1h") or a percentage of the token's
 * lifetime ("33%"), from 1% to 99%.
 */
export const RenewBefore = z
  .string()
  .max(32)
  .regex(new RegExp(DURATION_OR_PERCENT_PATTERN))
  .meta({
    'x-kubernetes-validations': [
      {
        rule: "!self.endsWith('%') || int(self.substring(0, self.size() - 1)) < 100",
        message: 'a percentage must be below 100%',
      },
      {
        // 0% would renew at expiry, leaving an expired token in the Secret; durations refuse 0s too.
        rule: "!self.endsWith('%') || int(self.substring(0, self.size() - 1)) > 0",
        message: 'a percentage must be above 0%',
      },
      {
        rule: "self.endsWith('%') || duration(self) > duration('0s')",
        message: 'must be longer than zero',
      },
    ],
  });

/** A DNS-1123 label: the form of a namespace name. */
export const DnsLabel = z.string().min(1).max(63).regex(new RegExp(DNS_LABEL_PATTERN));

/** A DNS-1123 label, or empty for "use the default". */
export const OptionalDnsLabel = z.string().max(63).regex(new RegExp(`^$|${DNS_LABEL_PATTERN}`));

/** A DNS-1123 subdomain: the form of most object names, Secrets included. */
export const DnsSubdomain = z.string().min(1).max(253).regex(new RegExp(DNS_SUBDOMAIN_PATTERN));

/**
 * A name as an identity provider spells it (a user, a group, an audience): any script, spaces and
 * punctuation, but no C0 or C1 control character, DEL, line or paragraph separator, or bidirectional
 * embedding, override or isolate (U+202A-U+202E, U+2066-U+2069). kubectl prints printer columns raw
 * and messages quote these names, so a control character here would reach an admin's terminal.
 * The CRD's pattern is the same class in RE2 spelling (the API server's regexp), zod's in JavaScript's.
 */
export function identityText(schema: z.ZodString): z.ZodString {
  return schema
    .regex(new RegExp('^[^\\p{Cc}\\p{Zl}\\p{Zp}\\u202a-\\u202e\\u2066-\\u2069]*$', 'u'), 'must not contain control characters, line separators or bidirectional overrides')
    .meta({ pattern: '^[^\\p{Cc}\\p{Zl}\\p{Zp}\\x{202a}-\\x{202e}\\x{2066}-\\x{2069}]*$' });
}

/** A reference to a Tier by name. */
export const TierReference = z.object({
  /** Name of the Tier: a DNS-1123 subdomain, as every Tier's name is. */
  name: DnsSubdomain,
});
export type TierReference = z.infer<typeof TierReference>;

/** The state of one aspect of the object, in the form of metav1.Condition. */
export const Condition = z.object({
  /** Type of the condition, in CamelCase, such as Ready. */
  type: z.string().min(1).max(316),
  /** Status of the condition: True, False or Unknown. */
  status: z.enum(['True', 'False', 'Unknown']),
  /** The metadata.generation the condition was set for. */
  observedGeneration: z.number().int().min(0).optional(),
  /** When the condition last changed from one status to another. */
  lastTransitionTime: z.string(),
  /** A CamelCase, machine-readable reason for the condition's last transition. */
  reason: z.string().min(1).max(1024),
  /** A human-readable message with details about the transition. */
  message: z.string().max(32768),
});
export type Condition = z.infer<typeof Condition>;

/** The conditions of an object, one per type. */
export const Conditions = z.array(Condition).max(16).meta({
  'x-kubernetes-list-type': 'map',
  'x-kubernetes-list-map-keys': ['type'],
});

/** Fields of metav1.ObjectMeta the operator reads; the API server owns the schema. */
export const ObjectMeta = z
  .object({
    name: z.string(),
    namespace: z.string().optional(),
    uid: z.string().optional(),
    resourceVersion: z.string().optional(),
    generation: z.number().int().optional(),
    creationTimestamp: z.string().optional(),
    deletionTimestamp: z.string().optional(),
    labels: z.record(z.string(), z.string()).optional(),
    annotations: z.record(z.string(), z.string()).optional(),
    finalizers: z.array(z.string()).optional(),
    ownerReferences: z
      .array(
        z.object({
          apiVersion: z.string(),
          kind: z.string(),
          name: z.string(),
          uid: z.string(),
          controller: z.boolean().optional(),
          blockOwnerDeletion: z.boolean().optional(),
        }),
      )
      .optional(),
  })
  .loose();
export type ObjectMeta = z.infer<typeof ObjectMeta>;
