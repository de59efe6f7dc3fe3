/**
 * What every client's tier should be once the operator has settled, computed by the bench from the
 * live objects with the operator's own pure policy (src/policy/tier-quota.ts), as
 * src/reconcilers/resolution.ts applies it: the clients of a namespace ranked oldest first (then by
 * name), each taking the best grant with a place left, falling back past full bindings, and
 * QuotaExceeded when there is none. The bench then waits for
 * each client to show exactly that, not merely Ready: under a quota, a client may be Ready on one
 * tier and later move when an older client appears in the operator's cache.
 */
import type { ServiceAccountClient, TenantBinding, Tier } from '../../src/api/index.ts';
import { planQuotas, quotaCandidateOf } from '../../src/policy/tier-quota.ts';
import { resolveTier } from '../../src/policy/tier-resolution.ts';
import type { KObject } from './kube.ts';

/** A tier (its status.tierReason, the binding it holds, whether a full quota passed it over), or QuotaExceeded. */
export type Expected = { tier: string; source: string; binding?: string; fellBack: boolean } | { quotaExceeded: true };

interface Condition {
  type: string;
  status: string;
  reason?: string;
}

const conditions = (obj: KObject): Condition[] => (obj.status as { conditions?: Condition[] } | undefined)?.conditions ?? [];

/** The client shows what is expected of it: Ready on the expected tier through the expected grant, or QuotaExceeded. */
export function settled(obj: KObject | undefined, expected: Expected | undefined): boolean {
  if (obj === undefined || expected === undefined) return false;
  const cs = conditions(obj);
  if ('quotaExceeded' in expected) return cs.some((c) => c.type === 'TierResolved' && c.status === 'False' && c.reason === 'QuotaExceeded');
  const status = obj.status as { tier?: string; tierReason?: string } | undefined;
  return cs.some((c) => c.type === 'Ready' && c.status === 'True') && status?.tier === expected.tier && status.tierReason === expected.source;
}

/** "namespace/name" -> what the client should settle to. */
export function expectedResolutions(clients: readonly KObject[], tiers: readonly KObject[], bindings: readonly KObject[]): Map<string, Expected> {
  const liveTiers = tiers as unknown as Tier[];
  const byNamespace = new Map<string, ServiceAccountClient[]>();
  for (const c of clients as unknown as ServiceAccountClient[]) {
    if (c.metadata.deletionTimestamp) continue;
    const ns = c.metadata.namespace as string;
    byNamespace.set(ns, [...(byNamespace.get(ns) ?? []), c]);
  }
  const out = new Map<string, Expected>();
  for (const [ns, members] of byNamespace) {
    const nsBindings = (bindings as unknown as TenantBinding[]).filter((b) => b.metadata.namespace === ns);
    const candidates = members.map(quotaCandidateOf);
    const plan = planQuotas(candidates, liveTiers, nsBindings);
    for (const c of candidates) {
      const r = plan.resolutions.get(c.key);
      if (r === undefined) continue;
      if (!r.resolved) {
        if (r.reason === 'QuotaExceeded') out.set(`${ns}/${c.name}`, { quotaExceeded: true });
        continue;
      }
      // Passed over by a full quota: its own best grant, with no quota counted, is another one.
      const own = resolveTier({ subject: c.subject, tiers: liveTiers, bindings: nsBindings, ...(c.requestedTier ? { requestedTier: c.requestedTier } : {}) });
      const fellBack = !own.resolved || own.source !== r.source || own.tier.metadata.name !== r.tier.metadata.name || own.binding?.metadata.name !== r.binding?.metadata.name;
      out.set(`${ns}/${c.name}`, { tier: r.tier.metadata.name, source: r.source, ...(r.binding ? { binding: r.binding.metadata.name } : {}), fellBack });
    }
  }
  return out;
}

/** What the clients should settle to, counted for the report. */
export interface ResolutionSummary {
  /** Clients holding their tier through a TenantBinding. */
  throughBindings: number;
  /** Clients a full quota passed over, holding the next tier they qualify for. */
  quotaFallback: number;
  /** Clients with QuotaExceeded (asked for a tier only a full binding grants). */
  quotaExceeded: number;
  byTier: Record<string, number>;
}

export function resolutionSummary(expected: Map<string, Expected>): ResolutionSummary {
  const out: ResolutionSummary = { throughBindings: 0, quotaFallback: 0, quotaExceeded: 0, byTier: {} };
  for (const e of expected.values()) {
    if ('quotaExceeded' in e) {
      out.quotaExceeded++;
      continue;
    }
    out.byTier[e.tier] = (out.byTier[e.tier] ?? 0) + 1;
    if (e.binding !== undefined) out.throughBindings++;
    if (e.fellBack) out.quotaFallback++;
  }
  return out;
}
