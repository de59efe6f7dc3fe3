/**
 * One pass over a client, in the order of the design brief's "What the operator does": resolve the
 * tier; with none (or a token policy the tier refuses), revoke everything; moving, revoke the old
 * tier's tokens first; wait for the tier namespace; suspended, revoke everything; otherwise
 * issue what is due, revoke what is superseded, release a ServiceAccount left behind, and derive
 * Ready from what the Secret holds.
 *
 * A write that fails on the way (service-account-client/write-failure.ts) does not end the pass:
 * what can still be done is done (a revocation, a suspension, the token just minted recorded), the
 * failure is recorded with the object it was refused on (issuance-failure.ts writeFailed), and until
 * the backoff allows the next attempt no pass tries that write again (carriedFailure).
 */
import type { ServiceAccountClientStatus } from '../../api/index.ts';
import { getCondition } from '../../controller/conditions.ts';
import type { Logger } from '../../controller/logger.ts';
import { effectiveTokenPolicy } from '../../policy/token-policy.ts';
import { tierNamespace, type OperatorContext } from '../context.ts';
import { resolveClientTier, type ClientResolution } from '../resolution.ts';
import { backoffState, issue, type BackoffState } from './issuance.ts';
import { readyOutcome } from './readiness.ts';
import { anchorsOf, revokeSuperseded } from './revocation.ts';
import { cachedSecret, deleteClientSecret } from './secret.ts';
import { claimSecretName } from './secret-claim.ts';
import { formerSecretName, leaveFormerSecret } from './secret-rename.ts';
import { repairSecretMetadata } from './secret-metadata.ts';
import { releaseServiceAccount } from './service-account-release.ts';
import { clearedTokens, conditionsFor, type Client, type ClientEvent, type Outcome, type TierResolvedCondition } from './status.ts';
import { suspend } from './suspension.ts';
import { leaveOldTier } from './tier-move.ts';
import { takeAway } from './take-away.ts';
import { tolerate } from './write-failure.ts';
import { carriedFailure, WRITE_FAILED, writeFailed } from '../issuance-failure.ts';
import { MAX_TOKENS } from '../../policy/reissue.ts';

export async function converge(op: OperatorContext, client: Client, log: Logger): Promise<Outcome> {
  await claimSecretName(op, client, log);
  const now = op.now();
  const previous = client.status ?? {};
  const resolution = resolveClientTier(op, client);
  if (!resolution.resolved) return noTier(op, client, resolution, log);
  const backoff = backoffState(client, resolution.tier.metadata.name, now);
  const failures: string[] = [];
  const finish = (outcome: Outcome): Outcome => withFailures(client, outcome, failures, backoff, now);

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
    await takeAway(op, client, backoff, failures, log, async () => void (await deleteClientSecret(op, client)));
    return finish({
      status: { ...clearedTokens(base), conditions: conditionsFor(client, now, [tierResolved, { type: 'Ready', status: 'False', reason: policyResult.reason, message: policyResult.message }]) },
      events: [...events, { type: 'Warning', reason: policyResult.reason, note: policyResult.message }],
    });
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
  if (former !== undefined && anchors.length > 0) return finish(await leaveFormerSecret(op, client, former, base, tierResolved, events, anchors, failures, log));
  if (leftBehind.length > 0 || moved) return finish(await leaveOldTier(op, client, base, tierResolved, events, leftBehind, failures, log));
  if (!tierNamespaceReady(op, namespace)) {
    const message = `waiting for the namespace ${namespace} of tier ${tierName}`;
    return {
      status: { ...base, conditions: conditionsFor(client, now, [tierResolved, { type: 'Ready', status: 'False', reason: 'WaitingForTier', message }]) },
      events,
      requeueAfterMs: 1000,
    };
  }

  if (client.spec.suspended) return finish(await suspend(op, client, base, tierResolved, events, { backoff, failures }, log));

  const secret = cachedSecret(op, client);
  const anchorNames = new Set(anchors.map((a) => a.metadata?.name as string));
  const issued = await issue(op, { client, tier, namespace, policy, base, tierResolved, events, secret, anchors: anchorNames, backoff, now }, log);
  if (issued.done) return issued.outcome;
  // No new token: the Secret's labels, annotations and ownerReference are put back if edited.
  if (issued.decision === undefined && secret !== undefined) await tolerate(failures, () => repairSecretMetadata(op, client, secret, tierName));

  const { retention, revoked, failed } = await revokeSuperseded(
    op,
    client,
    { tokens: issued.tokens, revokeEarlier: issued.decision?.revokeEarlierTokens ?? false, issuedNow: issued.decision !== undefined, anchors: anchorNames, secret, gracePeriodMs: policy.gracePeriodMs, now },
    log,
  );
  if (failed !== undefined) failures.push(failed);
  if (revoked > 0 && issued.decision?.reason === 'RevocationRequested') {
    events.push({ type: 'Normal', reason: 'Revoked', note: `revoked ${revoked} token(s) for revocationEpoch ${client.spec.revocationEpoch}` });
  }
  await tolerate(failures, () => releaseServiceAccount(op, client, issued.account));
  const outcome = readyOutcome(client, {
    base,
    tierResolved,
    events,
    account: issued.account,
    tokens: retention.keep,
    nextRevocationAt: retention.nextRevocationAt,
    secretToken: issued.secretToken,
    notes: retention.cut === undefined ? policy.notes : [...policy.notes, `${retention.cut} earlier token(s) revoked before the end of their grace period: a client holds at most ${MAX_TOKENS} tokens`],
    renewalDeferredUntil: issued.renewalDeferredUntil,
    now,
  });
  // The earlier tokens are not all revoked yet: the revocation is carried out only when they are.
  if (failed !== undefined && issued.decision?.revokeEarlierTokens) outcome.status.revocationEpoch = previous.revocationEpoch;
  return finish(outcome);
}

/**
 * The outcome with this pass's failed writes recorded (a new failure), or, while the backoff holds
 * the failed write back, with the failure recorded before (nothing new to write).
 */
function withFailures(client: Client, outcome: Outcome, failures: string[], backoff: BackoffState, now: number): Outcome {
  const previousReady = getCondition(client.status?.conditions, 'Ready');
  const ready = getCondition(outcome.status.conditions, 'Ready');
  if (failures.length > 0 && !backoff.held) {
    const failed = writeFailed({
      client,
      status: outcome.status,
      done: { reason: ready?.reason ?? 'Unknown', message: ready?.message ?? '' },
      causes: failures,
      reset: backoff.reset,
      renewRequested: backoff.renewRequested,
      now,
    });
    return {
      status: { ...failed.status, conditions: conditionsFor(client, now, [...otherConditions(outcome), failed.ready]) },
      events: [...outcome.events, ...failed.events],
      requeueAfterMs: failed.requeueAfterMs,
    };
  }
  if (backoff.held && previousReady?.reason === WRITE_FAILED) {
    const carried = carriedFailure(client, outcome.status, now);
    return {
      status: { ...carried.status, conditions: conditionsFor(client, now, [...otherConditions(outcome), ...(carried.ready ? [carried.ready] : [])]) },
      events: outcome.events,
      // Not sooner than the backoff allows the failed write again (a tier move asks for 0).
      requeueAfterMs: failures.length > 0 ? carried.requeueAfterMs : Math.min(outcome.requeueAfterMs ?? Infinity, carried.requeueAfterMs),
    };
  }
  if (previousReady?.reason === WRITE_FAILED && (outcome.status.failedAttempts ?? 0) === 0) {
    const note = `the writes that failed went through after ${client.status?.failedAttempts ?? 1} failed attempt(s)`;
    return { ...outcome, events: [...outcome.events, { type: 'Normal', reason: 'Recovered', note }] };
  }
  return outcome;
}

/** The outcome's conditions other than Ready, to be set again with the Ready a failure decides. */
function otherConditions(outcome: Outcome) {
  return (outcome.status.conditions ?? []).filter((c) => c.type !== 'Ready').map(({ type, status, reason, message }) => ({ type, status, reason, message }));
}

/** No tier (none matches, the requested one is refused or missing, the quota is taken): no token at all. */
async function noTier(op: OperatorContext, client: Client, resolution: Extract<ClientResolution, { resolved: false }>, log: Logger): Promise<Outcome> {
  const previous = client.status ?? {};
  const backoff = backoffState(client, undefined, op.now());
  const failures: string[] = [];
  await takeAway(op, client, backoff, failures, log, async () => void (await deleteClientSecret(op, client)));
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
  return withFailures(client, { status, events: changed ? [{ type: 'Warning', reason: 'TierUnresolved', note: resolution.message }] : [] }, failures, backoff, op.now());
}

function tierNamespaceReady(op: OperatorContext, namespace: string): boolean {
  const ns = op.caches.namespaces.get(undefined, namespace);
  return ns !== undefined && ns.metadata?.deletionTimestamp === undefined;
}
