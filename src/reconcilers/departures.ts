/**
 * Departures of a tier (policy/tier-departure.ts): after a Tier or TenantBinding edit, the anchors in
 * the tier namespace of every client that no longer resolves to the tier are deleted together (one
 * deletecollection per DEPARTURES_PER_REQUEST clients, several in flight), which revokes their tokens within a moment of
 * the edit instead of one client at a time. Each departed client is then reconciled as usual: it says
 * Moving, empties its Secret, releases its ServiceAccount and gets a token of its new tier.
 *
 * Only what the clients' own reconciles would revoke: trusted anchors of this tier whose client is
 * in this instance's cache, not being deleted (its finalizer revokes), and resolved elsewhere by the
 * same resolution (reconcilers/resolution.ts). When the API server refuses, the clients still revoke
 * their own tokens one by one; the refusal is a Warning Event on the Tier and the key backs off.
 */
import { ServiceAccountClient } from '../api/index.ts';
import type { ReconcileContext, ReconcileFunc, ReconcileResult } from '../controller/controller.ts';
import { errorMessage } from '../kube/errors.ts';
import { SECRETS, keyOf } from '../kube/resources.ts';
import { clientUidSelectors, DEPARTURE_REQUESTS_IN_FLIGHT, hasLeftTier } from '../policy/tier-departure.ts';
import { INDEX, isTrustedAnchor, tierNamespace, type OperatorContext } from './context.ts';
import { ANCHOR_SECRET_TYPE, CLIENT_UID_LABEL, TIER_LABEL } from './labels.ts';
import { resolveClientTier } from './resolution.ts';

export function departuresReconciler(op: OperatorContext): ReconcileFunc {
  return async (tierName: string, rctx: ReconcileContext): Promise<ReconcileResult> => {
    const tier = op.caches.tiers.get(undefined, tierName);
    // A Tier being deleted revokes everything in its namespace (its finalizer).
    if (tier === undefined || tier.metadata.deletionTimestamp !== undefined) return;
    const namespace = tierNamespace(tier, op.config.namespacePrefix);
    const departed = departedClients(op, tierName, namespace);
    if (departed.size === 0) return;
    let revoked = 0;
    const selectors = clientUidSelectors(CLIENT_UID_LABEL, [...departed.keys()]);
    const revokeNext = async (): Promise<void> => {
      for (let selector = selectors.shift(); selector !== undefined; selector = selectors.shift()) {
        revoked += await op.kube.deleteCollection(SECRETS, namespace, { labelSelector: `${TIER_LABEL}=${tierName},${selector}`, fieldSelector: `type=${ANCHOR_SECRET_TYPE}` });
      }
    };
    try {
      const settled = await Promise.allSettled(Array.from({ length: Math.min(DEPARTURE_REQUESTS_IN_FLIGHT, selectors.length) }, revokeNext));
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

/** Clients holding an anchor of this tier that no longer resolve to it: uid → key. */
function departedClients(op: OperatorContext, tierName: string, namespace: string): Map<string, string> {
  const departed = new Map<string, string>();
  const judged = new Set<string>();
  for (const anchor of op.caches.secrets.byIndex('namespace', namespace)) {
    const uid = anchor.metadata?.labels?.[CLIENT_UID_LABEL];
    if (uid === undefined || judged.has(uid) || anchor.metadata?.labels?.[TIER_LABEL] !== tierName) continue;
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
