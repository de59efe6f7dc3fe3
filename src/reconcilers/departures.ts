/**
 * Departures of a tier (policy/tier-departure.ts): after a Tier or TenantBinding edit, the anchors in
 * the tier namespace of every client that no longer resolves to the tier are deleted together (one
 * deletecollection per DEPARTURES_PER_REQUEST clients, several in flight), which revokes their tokens within a moment of
 * the edit instead of one client at a time. Each departed client is then reconciled as usual: it says
 * Moving, empties its Secret, releases its ServiceAccount and gets a token of its new tier.
 *
 * Only what the clients' own reconciles would revoke: trusted anchors of this tier made by this
 * instance (its scope label; older anchors without one are left to the clients) whose client is in
 * its cache, not being deleted (its finalizer revokes), and resolved elsewhere by the same resolution
 * (reconcilers/resolution.ts), judged again just before each request. The request's selector names
 * the clients, so an anchor minted for one of them while the request runs would go too: the client
 * then sees its anchor missing and mints again (AnchorMissing), a token lost, never one kept. When the API server refuses, the clients still revoke
 * their own tokens one by one; the refusal is a Warning Event on the Tier and the key backs off.
 */
import { ServiceAccountClient } from '../api/index.ts';
import type { ReconcileContext, ReconcileFunc, ReconcileResult } from '../controller/controller.ts';
import { errorMessage } from '../kube/errors.ts';
import { SECRETS, keyOf } from '../kube/resources.ts';
import { instanceScope } from '../policy/service-account-use.ts';
import { clientUidSelector, DEPARTURE_REQUESTS_IN_FLIGHT, hasLeftTier, uidChunks } from '../policy/tier-departure.ts';
import { INDEX, isTrustedAnchor, tierNamespace, type OperatorContext } from './context.ts';
import { ANCHOR_SECRET_TYPE, CLIENT_UID_LABEL, MANAGED_SELECTOR, SCOPE_LABEL, TIER_LABEL } from './labels.ts';
import { resolveClientTier } from './resolution.ts';

export function departuresReconciler(op: OperatorContext): ReconcileFunc {
  // One bound for every tier: each request holds a seat of the operator's API Priority and Fairness
  // level while the API server deletes its items, beside the moved clients' own TokenRequests.
  const inFlight = new Semaphore(DEPARTURE_REQUESTS_IN_FLIGHT);
  const scope = instanceScope(op.config.selector);
  return async (tierName: string, rctx: ReconcileContext): Promise<ReconcileResult> => {
    const tier = op.caches.tiers.get(undefined, tierName);
    // A Tier being deleted revokes everything in its namespace (its finalizer).
    if (tier === undefined || tier.metadata.deletionTimestamp !== undefined) return;
    const namespace = tierNamespace(tier, op.config.namespacePrefix);
    const departed = departedClients(op, tierName, namespace, scope);
    if (departed.size === 0) return;
    let revoked = 0;
    const chunks = uidChunks([...departed.keys()]);
    const revokeChunk = async (uids: string[]): Promise<void> => {
      await inFlight.acquire();
      try {
        // Judged again as the request leaves: a client that came back to the tier meanwhile keeps its tokens.
        const still = departedClients(op, tierName, namespace, scope, new Set(uids));
        if (still.size === 0) return;
        const labelSelector = `${MANAGED_SELECTOR},${SCOPE_LABEL}=${scope},${TIER_LABEL}=${tierName},${clientUidSelector(CLIENT_UID_LABEL, [...still.keys()].sort())}`;
        revoked += await op.kube.deleteCollection(SECRETS, namespace, { labelSelector, fieldSelector: `type=${ANCHOR_SECRET_TYPE}` });
      } finally {
        inFlight.release();
      }
    };
    try {
      const settled = await Promise.allSettled(chunks.map(revokeChunk));
      const failed = settled.find((r) => r.status === 'rejected');
      if (failed !== undefined) throw failed.reason;
    } catch (err) {
      const message = `could not revoke at once the tokens of ${departed.size} client(s) that left tier ${tierName}: ${errorMessage(err)}; each client revokes its own when reconciled`;
      void op.events.warning(tier, 'RevocationDeferred', message);
      throw err;
    } finally {
      if (revoked > 0) op.metrics.revoked(tierName, revoked);
      for (const key of departed.values()) op.enqueueClient(key);
    }
    rctx.logger.info({ clients: departed.size, revoked }, 'revoked the tokens of clients that left the tier');
    void op.events.normal(tier, 'TokensRevoked', `revoked the tokens of ${departed.size} client(s) that left tier ${tierName} (${revoked} token(s))`);
  };
}

/**
 * Clients holding an anchor of this tier, made by this instance (its scope label), that no longer
 * resolve to it: uid → key. Only among `among` when given.
 */
function departedClients(op: OperatorContext, tierName: string, namespace: string, scope: string, among?: Set<string>): Map<string, string> {
  const departed = new Map<string, string>();
  const judged = new Set<string>();
  const anchors = among === undefined ? op.caches.anchors.byIndex('namespace', namespace) : [...among].flatMap((uid) => op.caches.anchors.byIndex(INDEX.anchorByClientUid, uid));
  for (const anchor of anchors) {
    const labels = anchor.metadata?.labels;
    const uid = labels?.[CLIENT_UID_LABEL];
    if (uid === undefined || judged.has(uid) || anchor.metadata?.namespace !== namespace || labels?.[TIER_LABEL] !== tierName || labels?.[SCOPE_LABEL] !== scope) continue;
    if (!isTrustedAnchor(op.caches, op.config.namespacePrefix, anchor)) continue;
    judged.add(uid);
    const cached = op.caches.clients.byIndex(INDEX.clientByUid, uid)[0];
    // No client in this cache: an orphan (the tier sweep's) or another instance's client.
    if (cached === undefined || cached.metadata.deletionTimestamp !== undefined) continue;
    const parsed = ServiceAccountClient.safeParse(cached);
    if (!parsed.success) continue;
    if (hasLeftTier(resolveClientTier(op, parsed.data), tierName)) departed.set(uid, keyOf(cached.metadata.namespace, cached.metadata.name));
  }
  return departed;
}

/** At most `limit` holders at once; the others wait in order. */
class Semaphore {
  private free: number;
  private readonly waiting: (() => void)[] = [];
  constructor(limit: number) {
    this.free = limit;
  }
  async acquire(): Promise<void> {
    if (this.free > 0) {
      this.free--;
      return;
    }
    await new Promise<void>((resolve) => this.waiting.push(resolve));
  }
  release(): void {
    const next = this.waiting.shift();
    if (next !== undefined) next();
    else this.free++;
  }
}
