import type { ServiceAccountClient, TenantBinding, Tier } from '../api/index.ts';
import { groupGrantAge, subjectProof, type GroupGrantAge } from '../policy/subject-proof.ts';
import { planQuotas, quotaCandidateOf, resolveWithinQuotas, type QuotaCandidate, type QuotaPlan, type QuotaResolution } from '../policy/tier-quota.ts';
import { resolveTier } from '../policy/tier-resolution.ts';
import { INDEX, liveTiers, type Caches, type OperatorContext } from './context.ts';

export type ClientResolution = QuotaResolution;

interface NamespacePlan extends QuotaPlan {
  /** The generation each candidate was planned at: a client the plan saw at another one is re-resolved. */
  generations: ReadonlyMap<string, number | undefined>;
  /** The group grants each candidate was planned without (groupGrantMaxAge passed), as a key. */
  expired: ReadonlyMap<string, string>;
}

/**
 * The Tiers whose groups no longer grant them to the client: a groupGrantMaxAge passed since its
 * subject was last proven (policy/subject-proof.ts). Nothing to compute while no Tier sets one.
 */
export function clientGroupGrantAge(tiers: readonly Tier[], client: ServiceAccountClient, now: number): GroupGrantAge | undefined {
  if (!tiers.some((t) => t.spec.groupGrantMaxAge !== undefined)) return undefined;
  return groupGrantAge(tiers, client.spec.subject, Date.parse(subjectProof(client, now).provenAt), now);
}

const expiredKey = (age: GroupGrantAge | undefined): string => [...(age?.expired ?? [])].sort().join(',');

function candidateOf(client: ServiceAccountClient, age: GroupGrantAge | undefined): QuotaCandidate {
  return { ...quotaCandidateOf(client), expiredGroupGrants: age?.expired };
}

/**
 * Quota plans by namespace, per operator (its caches). A plan is made the first time a client of the
 * namespace is resolved and kept until quotaInputsChanged() says what it was made from changed, so a
 * pass over n clients costs one plan, not n.
 */
const plans = new WeakMap<Caches, Map<string, NamespacePlan>>();

/**
 * What a plan is made from changed: a client added, deleted, its spec or deletion changed, a
 * TenantBinding of the namespace changed (namespace given), or a Tier (all namespaces). Called from
 * the informers' handlers, which run as soon as the cache changes.
 */
export function quotaInputsChanged(caches: Caches, namespace?: string): void {
  if (namespace === undefined) plans.delete(caches);
  else plans.get(caches)?.delete(namespace);
}

/**
 * The tier of a client as the caches see it now. Without a quota in the namespace that is the
 * client's own resolution; with one, the namespace's plan (policy/tier-quota.ts) decides.
 */
export function resolveClientTier(op: OperatorContext, client: ServiceAccountClient): ClientResolution {
  const namespace = client.metadata.namespace as string;
  const tiers = liveTiers(op.caches);
  const bindings = op.caches.bindings.byIndex(INDEX.clientByNamespace, namespace);
  const now = op.now();
  const age = clientGroupGrantAge(tiers, client, now);
  if (!bindings.some((b) => b.spec.maxClients !== undefined)) {
    return resolveTier({ subject: client.spec.subject, tiers, bindings, expiredGroupGrants: age?.expired, ...(client.spec.tierRef ? { requestedTier: client.spec.tierRef.name } : {}) });
  }
  const uid = client.metadata.uid as string;
  let plan = planOf(op.caches, namespace, tiers, bindings, now);
  // Its group grants are not what the plan saw (one expired since, or it was proven again with no
  // new generation): the namespace is planned anew, the places it takes or leaves with it.
  if (plan.expired.has(uid) && plan.expired.get(uid) !== expiredKey(age)) {
    quotaInputsChanged(op.caches, namespace);
    plan = planOf(op.caches, namespace, tiers, bindings, now);
  }
  const planned = plan.resolutions.get(uid);
  if (planned !== undefined && plan.generations.get(uid) === client.metadata.generation && plan.expired.get(uid) === expiredKey(age)) return planned;
  // Being deleted: it holds no place, and ranks after every client that does.
  if (client.metadata.deletionTimestamp !== undefined) return resolveWithinQuotas(candidateOf(client, age), tiers, bindings, plan.holders);
  // Not as the plan saw it (newer than the cache): a plan of its own, with this version in it.
  const others = liveClients(op.caches, namespace).filter((c) => c.metadata.uid !== uid);
  const candidates = [...others.map((c) => candidateOf(c, clientGroupGrantAge(tiers, c, now))), candidateOf(client, age)];
  return planQuotas(candidates, tiers, bindings).resolutions.get(uid) as ClientResolution;
}

/** A client being deleted holds no place: its quota is free for the next one. */
const liveClients = (caches: Caches, namespace: string) =>
  caches.clients.byIndex(INDEX.clientByNamespace, namespace).filter((c) => c.metadata.deletionTimestamp === undefined);

function planOf(caches: Caches, namespace: string, tiers: Tier[], bindings: TenantBinding[], now: number): NamespacePlan {
  let byNamespace = plans.get(caches);
  if (byNamespace === undefined) plans.set(caches, (byNamespace = new Map()));
  const cached = byNamespace.get(namespace);
  if (cached !== undefined) return cached;
  const clients = liveClients(caches, namespace);
  const ages = clients.map((c) => clientGroupGrantAge(tiers, c, now));
  const plan: NamespacePlan = {
    ...planQuotas(clients.map((c, i) => candidateOf(c, ages[i])), tiers, bindings),
    generations: new Map(clients.map((c) => [c.metadata.uid as string, c.metadata.generation])),
    expired: new Map(clients.map((c, i) => [c.metadata.uid as string, expiredKey(ages[i])])),
  };
  byNamespace.set(namespace, plan);
  return plan;
}
