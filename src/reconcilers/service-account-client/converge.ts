/**
 * One pass over a client, in the order of the design brief's "What the operator does": resolve the
 * tier; with none (or a token policy the tier refuses), revoke everything; moving, revoke the old
 * tier's tokens first; wait for the tier namespace; suspended, revoke everything; otherwise
 * issue what is due, revoke what is superseded, release a ServiceAccount left behind, and derive
 * Ready from what the Secret holds.
 */
import type { ServiceAccountClientStatus } from '../../api/index.ts';
import { getCondition } from '../../controller/conditions.ts';
import type { Logger } from '../../controller/logger.ts';
import { effectiveTokenPolicy } from '../../policy/token-policy.ts';
import { tierNamespace, type OperatorContext } from '../context.ts';
import { resolveClientTier, type ClientResolution } from '../resolution.ts';
import { issue } from './issuance.ts';
import { readyOutcome } from './readiness.ts';
import { anchorsOf, revokeAll, revokeSuperseded } from './revocation.ts';
import { cachedSecret, deleteClientSecret } from './secret.ts';
import { claimSecretName } from './secret-claim.ts';
import { formerSecretName, leaveFormerSecret } from './secret-rename.ts';
import { repairSecretMetadata } from './secret-metadata.ts';
import { releaseServiceAccount } from './service-account-release.ts';
import { clearedTokens, conditionsFor, type Client, type ClientEvent, type Outcome, type TierResolvedCondition } from './status.ts';
import { suspend } from './suspension.ts';
import { leaveOldTier } from './tier-move.ts';

export async function converge(op: OperatorContext, client: Client, log: Logger): Promise<Outcome> {
  await claimSecretName(op, client, log);
  const now = op.now();
  const previous = client.status ?? {};
  const resolution = resolveClientTier(op, client);
  if (!resolution.resolved) return noTier(op, client, resolution, log);

  const tier = resolution.tier;
  const tierName = tier.metadata.name;
  const tierResolved: TierResolvedCondition = { type: 'TierResolved', status: 'True', reason: 'Resolved', message: resolution.message };
  const events: ClientEvent[] = [];
  if (previous.tier !== undefined && previous.tier !== tierName) {
    events.push({ type: 'Normal', reason: 'Moved', note: `moved from tier ${previous.tier} to ${tierName} (${resolution.source})` });
  }
  const base: ServiceAccountClientStatus = { ...previous, tier: tierName, tierReason: resolution.source };

  const policyResult = effectiveTokenPolicy(tier, resolution.binding, client.spec.token);
  if (!policyResult.ok) {
    await revokeAll(op, client, log);
    await deleteClientSecret(op, client);
    await releaseServiceAccount(op, client, undefined);
    return {
      status: { ...clearedTokens(base), conditions: conditionsFor(client, now, [tierResolved, { type: 'Ready', status: 'False', reason: policyResult.reason, message: policyResult.message }]) },
      events: [...events, { type: 'Warning', reason: policyResult.reason, note: policyResult.message }],
    };
  }
  const policy = policyResult.policy;
  const namespace = tierNamespace(tier, op.config.namespacePrefix);
  const anchors = anchorsOf(op, client);
  const leftBehind = anchors.filter((a) => a.metadata?.namespace !== namespace);
  // Moving even with no anchor left behind: the tier's departures (reconcilers/departures.ts) may
  // have revoked them already, and the Secret still holds a token of the old tier. Before waiting for
  // the new tier's namespace: the old tier's tokens go now, whatever the new one's state.
  const moved = previous.tier !== undefined && previous.tier !== tierName;
  // A new secretName: the tokens delivered to the former one are revoked first, wherever they are.
  const former = formerSecretName(client);
  if (former !== undefined && anchors.length > 0) return leaveFormerSecret(op, client, former, base, tierResolved, events, anchors, log);
  if (leftBehind.length > 0 || moved) return leaveOldTier(op, client, base, tierResolved, events, leftBehind, log);
  if (!tierNamespaceReady(op, namespace)) {
    const message = `waiting for the namespace ${namespace} of tier ${tierName}`;
    return {
      status: { ...base, conditions: conditionsFor(client, now, [tierResolved, { type: 'Ready', status: 'False', reason: 'WaitingForTier', message }]) },
      events,
      requeueAfterMs: 1000,
    };
  }

  if (client.spec.suspended) return suspend(op, client, base, tierResolved, events, log);

  const secret = cachedSecret(op, client);
  const anchorNames = new Set(anchors.map((a) => a.metadata?.name as string));
  const issued = await issue(op, { client, tier, namespace, policy, base, tierResolved, events, secret, anchors: anchorNames, now }, log);
  if (issued.done) return issued.outcome;
  // No new token: the Secret's labels, annotations and ownerReference are put back if edited.
  if (issued.decision === undefined && secret !== undefined) await repairSecretMetadata(op, client, secret, tierName);

  const { retention, revoked } = await revokeSuperseded(
    op,
    client,
    { tokens: issued.tokens, revokeEarlier: issued.decision?.revokeEarlierTokens ?? false, issuedNow: issued.decision !== undefined, anchors: anchorNames, secret, gracePeriodMs: policy.gracePeriodMs, now },
    log,
  );
  if (revoked > 0 && issued.decision?.reason === 'RevocationRequested') {
    events.push({ type: 'Normal', reason: 'Revoked', note: `revoked ${revoked} token(s) for revocationEpoch ${client.spec.revocationEpoch}` });
  }
  await releaseServiceAccount(op, client, issued.account);
  return readyOutcome(client, {
    base,
    tierResolved,
    events,
    account: issued.account,
    tokens: retention.keep,
    nextRevocationAt: retention.nextRevocationAt,
    secretToken: issued.secretToken,
    notes: policy.notes,
    now,
  });
}

/** No tier (none matches, the requested one is refused or missing, the quota is taken): no token at all. */
async function noTier(op: OperatorContext, client: Client, resolution: Extract<ClientResolution, { resolved: false }>, log: Logger): Promise<Outcome> {
  const previous = client.status ?? {};
  await revokeAll(op, client, log);
  await deleteClientSecret(op, client);
  await releaseServiceAccount(op, client, undefined);
  const status: ServiceAccountClientStatus = {
    ...clearedTokens(previous),
    tier: undefined,
    tierReason: undefined,
    conditions: conditionsFor(client, op.now(), [
      { type: 'TierResolved', status: 'False', reason: resolution.reason, message: resolution.message },
      { type: 'Ready', status: 'False', reason: resolution.reason, message: resolution.message },
    ]),
  };
  const changed = getCondition(previous.conditions, 'TierResolved')?.reason !== resolution.reason;
  return { status, events: changed ? [{ type: 'Warning', reason: 'TierUnresolved', note: resolution.message }] : [] };
}

function tierNamespaceReady(op: OperatorContext, namespace: string): boolean {
  const ns = op.caches.namespaces.get(undefined, namespace);
  return ns !== undefined && ns.metadata?.deletionTimestamp === undefined;
}
