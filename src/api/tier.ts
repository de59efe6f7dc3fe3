import { z } from 'zod';
import {
  API_VERSION,
  Conditions,
  DnsLabel,
  Duration,
  ObjectMeta,
  OptionalDnsLabel,
  RenewBefore,
  rotationFloorRule,
  TokenLifetime,
} from './common.ts';

/** The token policy of a tier: what every token issued in it carries and how long it lives. */
export const TierTokenPolicy = z
  .object({
    /**
     * Audiences tokens of this tier carry. Clients may narrow this list, never widen it. Empty means
     * the API server's default audiences.
     */
    audiences: z.array(z.string().min(1).max(253)).max(16).default([]).meta({ 'x-kubernetes-list-type': 'set' }),
    /** Lifetime of a token when the client asks for none. At least 10m, the TokenRequest minimum. */
    defaultExpiration: TokenLifetime.default('1h'),
    /** The longest lifetime a client may get; longer requests are capped and the client is told so in status. */
    maxExpiration: TokenLifetime.default('24h'),
    /** When to renew a token: a duration before expiry, or a percentage of its lifetime; never less than 10s after issue (clamped for a client whose lifetime would make it so). */
    renewBefore: RenewBefore.default('33%'),
    /** How long the previous token stays valid after a rotation; then it is revoked. */
    gracePeriod: Duration.default('5m'),
  })
  .meta({
    'x-kubernetes-validations': [
      {
        rule: 'duration(self.maxExpiration) >= duration(self.defaultExpiration)',
        message: 'maxExpiration must not be shorter than defaultExpiration',
        fieldPath: '.maxExpiration',
      },
      {
        rule: "self.renewBefore.endsWith('%') || duration(self.renewBefore) < duration(self.defaultExpiration)",
        message: 'renewBefore must be shorter than defaultExpiration',
        fieldPath: '.renewBefore',
      },
      rotationFloorRule('defaultExpiration'),
    ],
  });
export type TierTokenPolicy = z.infer<typeof TierTokenPolicy>;

/** RBAC granted to every ServiceAccount of the tier, through the group of its namespace. */
export const TierAccessRule = z.object({
  /** The ClusterRole bound to the group system:serviceaccounts:<tier namespace>. */
  clusterRole: z.string().min(1).max(253),
  /** Namespaces to bind the role in, with a RoleBinding in each; empty means one ClusterRoleBinding. */
  namespaces: z.array(DnsLabel).max(64).default([]).meta({ 'x-kubernetes-list-type': 'set' }),
});
export type TierAccessRule = z.infer<typeof TierAccessRule>;

/** Rate limits published for gateways; tokenwarden records them but does not enforce them. */
export const TierLimits = z.object({
  /** Requests per minute a subject of this tier may make. */
  requestsPerMinute: z.number().int().min(0).max(1_000_000_000).optional(),
  /** Model tokens per minute a subject of this tier may consume. */
  tokensPerMinute: z.number().int().min(0).max(1_000_000_000_000).optional(),
});
export type TierLimits = z.infer<typeof TierLimits>;

/** What a class of access gets: its namespace, token policy, permissions and published limits. */
export const TierSpec = z
  .object({
    /** Human-readable name of the tier. */
    displayName: z.string().max(128).optional(),
    /** Rank of the tier, 0 to 1000; when a subject qualifies for several tiers, the highest level wins. */
    level: z.number().int().min(0).max(1000).default(0),
    /** Whether subjects that match no tier get this one. At most one tier should be the default. */
    default: z.boolean().default(false),
    /** Identity groups whose members qualify for this tier cluster-wide. */
    groups: z.array(z.string().min(1).max(256)).max(64).default([]).meta({ 'x-kubernetes-list-type': 'set' }),
    /**
     * How long the groups grant this tier to a client after its subject was last proven at admission
     * (created, edited by the subject or a delegate, or its annotation tokenwarden.io/subject-proof
     * changed). Past it, the client resolves as if these groups did not apply, with the condition
     * GroupGrantExpired, until it is proven again. Empty: no limit. TenantBindings are not affected.
     */
    groupGrantMaxAge: Duration.optional(),
    /** Namespace of the tier's ServiceAccounts. Empty means "<prefix>-tier-<name>". Immutable. */
    // The rule sits on the field: `namespace` is a CEL reserved word, so a rule on spec would have
    // to say `self.__namespace__`; `self.namespace` makes the API server refuse the whole CRD.
    namespace: OptionalDnsLabel.default('').meta({
      'x-kubernetes-validations': [{ rule: 'self == oldSelf', message: 'namespace is immutable' }],
    }),
    /** The token policy of the tier. */
    token: TierTokenPolicy.default({
      audiences: [],
      defaultExpiration: '1h',
      maxExpiration: '24h',
      renewBefore: '33%',
      gracePeriod: '5m',
    }),
    /** RBAC granted to every ServiceAccount of this tier. */
    access: z.array(TierAccessRule).max(32).default([]),
    /** Limits published as annotations on the tier namespace and in status, for gateways to enforce. */
    limits: TierLimits.optional(),
    /** What happens to the tier namespace when the Tier is deleted: Retain or Delete. */
    deletionPolicy: z.enum(['Retain', 'Delete']).default('Retain'),
  });
export type TierSpec = z.infer<typeof TierSpec>;

/** The observed state of a Tier. */
export const TierStatus = z.object({
  /** The tier's namespace, as created. */
  namespace: z.string().optional(),
  /** Number of ServiceAccountClients currently resolved to this tier. */
  clients: z.number().int().min(0).optional(),
  /** The metadata.generation this status describes. */
  observedGeneration: z.number().int().min(0).optional(),
  /** Ready tells whether the namespace and access bindings are in place. */
  conditions: Conditions.optional(),
});
export type TierStatus = z.infer<typeof TierStatus>;

export const Tier = z.object({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal('Tier'),
  metadata: ObjectMeta,
  spec: TierSpec,
  status: TierStatus.optional(),
});
export type Tier = z.infer<typeof Tier>;
