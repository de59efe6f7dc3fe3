/**
 * A client that cannot get a token now (issuance-failure.ts): keeps what is still valid, revokes
 * what is past its grace period, empties the Secret once nothing in it is valid, and says why.
 */
import type { IssuedToken } from '../../api/index.ts';
import type { Logger } from '../../controller/logger.ts';
import { errorMessage } from '../../kube/errors.ts';
import type { OperatorContext } from '../context.ts';
import { holdWhileFailing, issuanceCause } from '../issuance-failure.ts';
import type { IssuanceInput } from './issuance.ts';
import { revokeAll, revokeTokens } from './revocation.ts';
import { isSecretError } from './secret.ts';
import { writeSecret } from './secret-write.ts';
import type { ServiceAccountRef } from './service-account.ts';
import { conditionsFor, type Outcome } from './status.ts';

/** The attempt held back: `err` when it failed, nothing when the backoff kept it from being made. */
export interface HeldAttempt {
  err?: unknown;
  /** A new spec, tier or renewal request: the backoff starts afresh (policy/issuance-backoff.ts backoffStartsOver). */
  reset: boolean;
  /** The client's renewal request the attempt was made under. */
  renewRequested?: string | undefined;
  serviceAccount?: ServiceAccountRef;
}

export async function holdFailing(op: OperatorContext, input: IssuanceInput, tokens: IssuedToken[], attempt: HeldAttempt, log: Logger): Promise<Outcome> {
  const { client, base, secret, anchors } = input;
  // A raised revocationEpoch is carried out whether or not a new token can be had.
  const revokeEvery = client.spec.revocationEpoch > (client.status?.revocationEpoch ?? 0);
  if (revokeEvery && isSecretError(attempt.err)) await revokeAll(op, client, log);
  // A stale cache or a Secret error is thrown from here, not recorded as a failure to issue.
  const failure = attempt.err === undefined ? undefined : { cause: issuanceCause(attempt.err, isSecretError), reset: attempt.reset, renewRequested: attempt.renewRequested };
  const plan = holdWhileFailing({
    client,
    base,
    tokens: tokens.filter((t) => anchors.has(t.id)),
    secretHoldsToken: secret?.tokenClaims !== undefined,
    gracePeriodMs: input.policy.gracePeriodMs,
    now: input.now,
    serviceAccount: attempt.serviceAccount,
    failure,
    revokeAll: revokeEvery,
  });
  if (plan.revokeAll) await revokeAll(op, client, log);
  else await revokeTokens(op, client, plan.revoke, log);
  if (plan.emptySecret) {
    try {
      await writeSecret(op, client, base.tier as string, undefined);
    } catch (err) {
      // The expired token is refused everywhere anyway: record the failure, empty it next time.
      log.warn({ err: errorMessage(err) }, 'could not empty the Secret of an expired token');
    }
  }
  // The API server's reason goes to the log too (tokens in it already blanked): an operator's log
  // must say why, not only the client's status.
  if (plan.revokeAll) plan.events.push({ type: 'Normal', reason: 'Revoked', note: `revoked every token for revocationEpoch ${client.spec.revocationEpoch}; no new token could be issued` });
  if (plan.events.length > 0 || failure !== undefined) {
    log.info({ failedAttempts: plan.status.failedAttempts, reason: plan.ready.reason, ...(failure ? { cause: failure.cause } : {}) }, 'issuing failed; backing off');
  }
  return {
    status: { ...plan.status, conditions: conditionsFor(client, input.now, [input.tierResolved, plan.ready]) },
    events: [...input.events, ...plan.events],
    requeueAfterMs: plan.requeueAfterMs,
  };
}
