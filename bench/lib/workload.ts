/**
 * The benchmark's workload, the same for the operator and the floor: N ServiceAccountClients over
 * 10 tenant namespaces, 3 tiers and N/2 users (each user has two clients, in one namespace and one
 * tier). N/10 clients (N/20 users, none of them premium) carry the group "bench-movers", which the
 * tier-move phase adds to the premium tier's groups.
 */
import { serviceAccountName } from '../../src/policy/service-account-name.ts';

export const RUN_LABEL = 'tokenwarden.io/bench-run';
export const TENANTS = 10;
export const AUDIENCE = 'bench-gateway';
export const MOVERS_GROUP = 'bench-movers';

export const MANAGED_BY = 'app.kubernetes.io/managed-by';
export const TIER_LABEL = 'tokenwarden.io/tier';
export const CLIENT_NAMESPACE_LABEL = 'tokenwarden.io/client-namespace';
export const CLIENT_UID_LABEL = 'tokenwarden.io/client-uid';
export const USER_ANNOTATION = 'tokenwarden.io/user';
export const CLIENT_ANNOTATION = 'tokenwarden.io/client';
export const TOKEN_ID_ANNOTATION = 'tokenwarden.io/token-id';
export const EXPIRES_AT_ANNOTATION = 'tokenwarden.io/expires-at';
export const RENEW_AT_ANNOTATION = 'tokenwarden.io/renew-at';
export const AUDIENCES_ANNOTATION = 'tokenwarden.io/requested-audiences';
export const EXPIRATION_ANNOTATION = 'tokenwarden.io/requested-expiration-seconds';
export const ANCHOR_TYPE = 'tokenwarden.io/anchor';
export const TOKEN_SECRET_TYPE = 'tokenwarden.io/token';

export interface TierDef {
  name: string;
  level: number;
  groups: string[];
  default: boolean;
}

export const TIERS: readonly TierDef[] = [
  { name: 'free', level: 10, groups: [], default: true },
  { name: 'standard', level: 20, groups: ['bench-standard'], default: false },
  { name: 'premium', level: 30, groups: ['bench-premium'], default: false },
];

/** Tokens that need no rotation during the run (renewal after 40 minutes). */
export const STEADY_TOKEN = { audiences: [AUDIENCE], defaultExpiration: '1h', maxExpiration: '24h', renewBefore: '33%', gracePeriod: '5m' };
/** The rotation phase: 10-minute tokens renewed 30 s after issue; earlier tokens revoked 30 s after their successor. */
export const ROTATION_TOKEN = { audiences: [AUDIENCE], defaultExpiration: '10m', maxExpiration: '24h', renewBefore: '9m30s', gracePeriod: '30s' };

export interface ClientDef {
  index: number;
  name: string;
  tenant: number;
  user: string;
  userIndex: number;
  tier: TierDef;
  groups: string[];
  mover: boolean;
}

export function tenantNamespace(kind: 'bench' | 'floor', tenant: number): string {
  return `${kind}-t${tenant}`;
}

export function clients(n: number): ClientDef[] {
  if (n % 20 !== 0) throw new Error(`N must be a multiple of 20 (N/2 users, N/10 movers in pairs); got ${n}`);
  const users = n / 2;
  const moverUsers = new Set<number>();
  for (let u = 0; u < users && moverUsers.size < n / 20; u++) if (u % 3 !== 2) moverUsers.add(u);
  return Array.from({ length: n }, (_, index) => {
    const userIndex = index % users;
    const tier = TIERS[userIndex % 3] as TierDef;
    const mover = moverUsers.has(userIndex);
    return {
      index,
      name: `c-${index}`,
      tenant: index % TENANTS,
      user: `user-${userIndex}@bench.example.com`,
      userIndex,
      tier,
      groups: ['bench-users', ...tier.groups, ...(mover ? [MOVERS_GROUP] : [])],
      mover,
    };
  });
}

export function tierObject(def: TierDef, runLabel: Record<string, string>) {
  return {
    apiVersion: 'tokenwarden.io/v1alpha1',
    kind: 'Tier',
    metadata: { name: def.name, labels: runLabel },
    spec: { displayName: def.name, level: def.level, default: def.default, groups: def.groups, token: STEADY_TOKEN },
  };
}

export function clientObject(def: ClientDef, namespace: string, labels: Record<string, string>) {
  return {
    apiVersion: 'tokenwarden.io/v1alpha1',
    kind: 'ServiceAccountClient',
    metadata: { name: def.name, namespace, labels },
    spec: { subject: { user: def.user, groups: def.groups } },
  };
}

export { serviceAccountName };
