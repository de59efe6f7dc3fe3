/**
 * The benchmark's workload, the same for the operator and the floor: N ServiceAccountClients over
 * 10 tenant namespaces, 3 tiers and N/2 users (each user has two clients, in one namespace and one
 * tier). N/10 clients (N/20 users, none of them premium) carry the group "bench-movers", which the
 * tier-move phase adds to the premium tier's groups.
 *
 * Shapes (--shape): `classic` is the above and nothing else (the shape of every result before issue 9,
 * kept so old and new numbers compare). `bindings` adds TenantBindings with quotas in every tenant
 * (bench/lib/bindings.ts): some users are in a team group bound to premium with maxClients, some in a
 * group bound to standard, some named one by one as contractors with a small standard quota, and the
 * contractors' second clients ask for `tierRef: standard` so that those over quota get QuotaExceeded.
 * `ssa` creates the clients the way a GitOps tool leaves them: server-side apply by the field manager
 * `argocd-controller`, with Argo CD's labels, tracking annotation and a
 * `kubectl.kubernetes.io/last-applied-configuration` annotation. `realistic` is both.
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

export const SHAPES = ['classic', 'bindings', 'ssa', 'realistic'] as const;
export type Shape = (typeof SHAPES)[number];
export const shapeHasBindings = (shape: Shape): boolean => shape === 'bindings' || shape === 'realistic';
export const shapeUsesSsa = (shape: Shape): boolean => shape === 'ssa' || shape === 'realistic';

/** Team a user belongs to in the bindings shape (none for movers, so the tier move still moves them). */
export type Team = 'ml' | 'data' | 'contractor' | undefined;

export interface ClientDef {
  index: number;
  name: string;
  tenant: number;
  user: string;
  userIndex: number;
  tier: TierDef;
  groups: string[];
  mover: boolean;
  team: Team;
  /** spec.tierRef, when the client asks for a tier. */
  tierRef?: string;
}

/** The group of a tenant's team, as the identity provider would report it. */
export const teamGroup = (tenant: number, team: 'ml' | 'data'): string => `bench-t${tenant}-${team}`;

export function tenantNamespace(kind: 'bench' | 'floor', tenant: number): string {
  return `${kind}-t${tenant}`;
}

export function clients(n: number, shape: Shape = 'classic'): ClientDef[] {
  if (n % 20 !== 0) throw new Error(`N must be a multiple of 20 (N/2 users, N/10 movers in pairs); got ${n}`);
  const users = n / 2;
  const moverUsers = new Set<number>();
  for (let u = 0; u < users && moverUsers.size < n / 20; u++) if (u % 3 !== 2) moverUsers.add(u);
  return Array.from({ length: n }, (_, index) => {
    const userIndex = index % users;
    const tier = TIERS[userIndex % 3] as TierDef;
    const mover = moverUsers.has(userIndex);
    const tenant = index % TENANTS;
    // Users of a tenant are userIndex = tenant, tenant + 10, ...: every fifth of them in each team.
    const team: Team = !shapeHasBindings(shape) || mover ? undefined : (['ml', 'data', 'contractor', undefined, undefined] as const)[Math.floor(userIndex / TENANTS) % 5];
    const teamGroups = team === 'ml' || team === 'data' ? [teamGroup(tenant, team)] : [];
    return {
      index,
      name: `c-${index}`,
      tenant,
      user: `user-${userIndex}@bench.example.com`,
      userIndex,
      tier,
      groups: ['bench-users', ...tier.groups, ...teamGroups, ...(mover ? [MOVERS_GROUP] : [])],
      mover,
      team,
      // A contractor's second client asks for the tier its binding grants.
      ...(team === 'contractor' && index >= users ? { tierRef: 'standard' } : {}),
    };
  });
}

export interface BindingDef {
  name: string;
  tenant: number;
  tier: string;
  subjects: { kind: 'User' | 'Group'; name: string }[];
  maxClients?: number;
  /** Clients whose subject the binding names. */
  members: number;
}

/**
 * The bindings shape's TenantBindings, three per tenant: ml-premium (the ml team's group, premium,
 * a quota of 70% of its clients), data-standard (the data team's group, standard, no quota), and
 * contractors-standard (contractors by user name, standard, a quota of half their clients).
 */
export function bindings(defs: readonly ClientDef[]): BindingDef[] {
  const out: BindingDef[] = [];
  for (let t = 0; t < TENANTS; t++) {
    const of = (team: Team) => defs.filter((d) => d.tenant === t && d.team === team);
    const ml = of('ml');
    const data = of('data');
    const contractors = of('contractor');
    if (ml.length) out.push({ name: 'ml-premium', tenant: t, tier: 'premium', subjects: [{ kind: 'Group', name: teamGroup(t, 'ml') }], maxClients: Math.floor(ml.length * 0.7), members: ml.length });
    if (data.length) out.push({ name: 'data-standard', tenant: t, tier: 'standard', subjects: [{ kind: 'Group', name: teamGroup(t, 'data') }], members: data.length });
    if (contractors.length) {
      const users = [...new Set(contractors.map((d) => d.user))].sort();
      out.push({ name: 'contractors-standard', tenant: t, tier: 'standard', subjects: users.map((name) => ({ kind: 'User', name })), maxClients: Math.floor(contractors.length * 0.5), members: contractors.length });
    }
  }
  return out;
}

export function bindingObject(def: BindingDef, namespace: string, labels: Record<string, string>) {
  return {
    apiVersion: 'tokenwarden.io/v1alpha1',
    kind: 'TenantBinding',
    metadata: { name: def.name, namespace, labels },
    spec: { tierRef: { name: def.tier }, subjects: def.subjects, ...(def.maxClients !== undefined ? { maxClients: def.maxClients } : {}) },
  };
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
    spec: { subject: { user: def.user, groups: def.groups }, ...(def.tierRef ? { tierRef: { name: def.tierRef } } : {}) },
  };
}

/** The field manager Argo CD's application controller applies with. */
export const GITOPS_FIELD_MANAGER = 'argocd-controller';
export const LAST_APPLIED_ANNOTATION = 'kubectl.kubernetes.io/last-applied-configuration';

/**
 * A client as a GitOps tool applies it (server-side apply, --shape=ssa): Argo CD's instance label
 * and tracking annotation, a few labels a platform team's chart sets, and the
 * last-applied-configuration annotation holding the manifest itself, as `kubectl apply` and Argo CD
 * (client-side apply, its default) leave it.
 */
export function appliedClientObject(def: ClientDef, namespace: string, labels: Record<string, string>) {
  const app = `tenant-t${def.tenant}-clients`;
  const manifest = {
    apiVersion: 'tokenwarden.io/v1alpha1',
    kind: 'ServiceAccountClient',
    metadata: {
      name: def.name,
      namespace,
      labels: {
        ...labels,
        'app.kubernetes.io/instance': app,
        'helm.sh/chart': 'tenant-clients-1.4.2',
        'app.kubernetes.io/part-of': `tenant-t${def.tenant}`,
        'app.kubernetes.io/component': 'model-access',
        'platform.example.com/cost-center': `cc-${1000 + def.tenant}`,
      },
      annotations: {
        'argocd.argoproj.io/tracking-id': `${app}:tokenwarden.io/ServiceAccountClient:${namespace}/${def.name}`,
        'argocd.argoproj.io/sync-wave': '2',
        'platform.example.com/owner': def.user,
        'platform.example.com/ticket': `PLAT-${10_000 + def.index}`,
      },
    },
    spec: clientObject(def, namespace, labels).spec,
  };
  return { ...manifest, metadata: { ...manifest.metadata, annotations: { ...manifest.metadata.annotations, [LAST_APPLIED_ANNOTATION]: `${JSON.stringify(manifest)}\n` } } };
}

export { serviceAccountName };
