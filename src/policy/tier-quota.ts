/**
 * TenantBinding quotas (spec.maxClients) over a whole namespace at once.
 *
 * The clients of a namespace are ranked oldest first (then by name); each takes the tier it would
 * resolve to, passing over every binding whose places are already taken by older clients, and the
 * tier of such a binding unless another binding grants it (resolveWithinQuotas). A client that fell
 * back to another binding takes a place there too, so no binding ever has more holders than its
 * maxClients, and no subject of a full binding holds its tier around it. One pass over the namespace decides every client: linear, where asking "does this
 * client fit?" client by client would re-resolve the namespace for each one.
 */
import type { ClientSubject, ServiceAccountClient, TenantBinding, Tier } from '../api/index.ts';
import { resolveTier, type Resolution } from './tier-resolution.ts';

export type QuotaResolution = Resolution | { resolved: false; reason: 'QuotaExceeded'; message: string };

export interface QuotaCandidate {
  /** What the plan is looked up by (the operator uses the uid). */
  key: string;
  name: string;
  creationTimestamp?: string | undefined;
  subject: ClientSubject;
  requestedTier?: string | undefined;
  /** Tiers whose groups no longer grant them to this client (tier-resolution.ts). */
  expiredGroupGrants?: ReadonlySet<string> | undefined;
}

export interface QuotaPlan {
  /** The resolution of each candidate, by key. */
  resolutions: ReadonlyMap<string, QuotaResolution>;
  /** How many candidates hold a tier through each binding, by binding name. */
  holders: ReadonlyMap<string, number>;
}

/** A client as the ranking sees it, looked up by its uid (by name if it has none, as in a dry run). */
export function quotaCandidateOf(client: ServiceAccountClient): QuotaCandidate {
  return {
    key: client.metadata.uid ?? client.metadata.name,
    name: client.metadata.name,
    creationTimestamp: client.metadata.creationTimestamp,
    // Objects read straight from the API server (the plugin, the bench) may leave out the default.
    subject: { user: client.spec.subject.user, groups: client.spec.subject.groups ?? [] },
    requestedTier: client.spec.tierRef?.name,
  };
}

/** Oldest first; clients created in the same second by name, so the order is stable. */
export function byAge(a: Pick<QuotaCandidate, 'name' | 'creationTimestamp'>, b: Pick<QuotaCandidate, 'name' | 'creationTimestamp'>): number {
  return (a.creationTimestamp ?? '').localeCompare(b.creationTimestamp ?? '') || a.name.localeCompare(b.name);
}

/** Decides every candidate of one namespace: `bindings` are that namespace's TenantBindings. */
export function planQuotas(candidates: readonly QuotaCandidate[], tiers: readonly Tier[], bindings: readonly TenantBinding[]): QuotaPlan {
  const holders = new Map<string, number>();
  const resolutions = new Map<string, QuotaResolution>();
  for (const candidate of [...candidates].sort(byAge)) {
    const resolution = resolveWithinQuotas(candidate, tiers, bindings, holders);
    if (resolution.resolved && resolution.binding) {
      const name = resolution.binding.metadata.name;
      holders.set(name, (holders.get(name) ?? 0) + 1);
    }
    resolutions.set(candidate.key, resolution);
  }
  return { resolutions, holders };
}

/**
 * The tier of one client given how many places of each binding are taken: a binding whose places
 * are all taken withholds its tier, so the client falls back to the next tier it qualifies for, and
 * is refused with QuotaExceeded only when there is none. It withholds the tier, not just its own path
 * to it: a subject the binding names gets that tier in this namespace only through
 * a TenantBinding with a place left, never through the tier's groups or as the default, so every
 * client of the binding's subjects that holds its tier here holds one of its places (or another
 * binding's), and maxClients counts them all.
 */
export function resolveWithinQuotas(
  candidate: Pick<QuotaCandidate, 'subject' | 'requestedTier' | 'expiredGroupGrants'>,
  tiers: readonly Tier[],
  bindings: readonly TenantBinding[],
  holders: ReadonlyMap<string, number>,
): QuotaResolution {
  return explainQuotas(candidate, tiers, bindings, holders).resolution;
}

/** resolveWithinQuotas, with the bindings it passed over because their places were taken (for `whoami`). */
export function explainQuotas(
  candidate: Pick<QuotaCandidate, 'subject' | 'requestedTier' | 'expiredGroupGrants'>,
  tiers: readonly Tier[],
  bindings: readonly TenantBinding[],
  holders: ReadonlyMap<string, number>,
): { resolution: QuotaResolution; full: TenantBinding[] } {
  const full: TenantBinding[] = [];
  const excludedBindings = new Set<string>();
  const bindingOnlyTiers = new Set<string>();
  for (;;) {
    const resolution = resolveTier({
      subject: candidate.subject,
      tiers,
      bindings,
      ...(candidate.requestedTier !== undefined ? { requestedTier: candidate.requestedTier } : {}),
      excludedBindings,
      bindingOnlyTiers,
      expiredGroupGrants: candidate.expiredGroupGrants,
    });
    const binding = resolution.resolved ? resolution.binding : undefined;
    const max = binding?.spec.maxClients;
    if (binding === undefined || max === undefined || (holders.get(binding.metadata.name) ?? 0) < max) {
      if (full.length === 0) return { resolution, full };
      if (!resolution.resolved) return { resolution: { resolved: false, reason: 'QuotaExceeded', message: quotaMessage(full) }, full };
      return { resolution: { ...resolution, message: `${resolution.message} (${quotaMessage(full)})` }, full };
    }
    full.push(binding);
    excludedBindings.add(binding.metadata.name);
    bindingOnlyTiers.add(binding.spec.tierRef.name);
  }
}

const quotaMessage = (full: readonly TenantBinding[]) =>
  full.map((b) => `TenantBinding ${b.metadata.name} allows ${b.spec.maxClients} client(s) and they are taken`).join('; ');
