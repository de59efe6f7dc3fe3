/**
 * Readiness: the status of a client whose issuance step went through, Ready derived from what the
 * Secret holds now (policy/readiness.ts), and when to look again: at renewal, at the end of a
 * grace period, at expiry — so Ready turns False when the token it vouches for stops being valid.
 */
import type { IssuedToken, ServiceAccountClientStatus } from '../../api/index.ts';
import { formatTime, getCondition } from '../../controller/conditions.ts';
import { readiness } from '../../policy/readiness.ts';
import { RENEW_REQUEST_INTERVAL_MS } from '../../policy/reissue.ts';
import type { TokenClaims } from '../../policy/token-claims.ts';
import { defaultSecretName } from './secret.ts';
import type { ServiceAccountRef } from './service-account.ts';
import { conditionsFor, withoutFailures, type Client, type ClientEvent, type Outcome, type TierResolvedCondition } from './status.ts';

/** A Ready=False the readiness step found: looked at again soon, the next pass repairs what it can. */
const NOT_READY_RETRY_MS = 1000;

export function readyOutcome(
  client: Client,
  input: {
    base: ServiceAccountClientStatus;
    tierResolved: TierResolvedCondition;
    events: ClientEvent[];
    account: ServiceAccountRef;
    tokens: IssuedToken[];
    nextRevocationAt: number | undefined;
    secretToken: TokenClaims | 'unreadable' | undefined;
    notes: readonly string[];
    /** A renewal request held back by the interval (policy/reissue.ts RENEW_REQUEST_INTERVAL_MS): when it is honoured. */
    renewalDeferredUntil?: number | undefined;
    now: number;
  },
): Outcome {
  const newest = input.tokens[0];
  const base = withoutFailures(input.base);
  const deferral =
    input.renewalDeferredUntil === undefined
      ? undefined
      : `a renewal request is deferred until ${formatTime(new Date(input.renewalDeferredUntil))}: renewal requests are honoured at most once per ${RENEW_REQUEST_INTERVAL_MS / 1000}s`;
  const notes = deferral === undefined ? input.notes : [...input.notes, deferral];
  const ready = readiness({ now: input.now, secretToken: input.secretToken, serviceAccount: input.account, newest, failedAttempts: base.failedAttempts, notes });
  const told = getCondition(client.status?.conditions, 'Ready')?.message ?? '';
  const events = deferral !== undefined && ready.status === 'True' && !told.includes(deferral) ? [...input.events, { type: 'Normal' as const, reason: 'RenewalDeferred', note: deferral }] : input.events;
  const status: ServiceAccountClientStatus = {
    ...base,
    serviceAccount: input.account,
    secretName: defaultSecretName(client),
    tokens: input.tokens,
    ...(newest !== undefined ? { expiresAt: newest.expiresAt, renewAt: newest.renewAt } : {}),
    revocationEpoch: client.spec.revocationEpoch,
    conditions: conditionsFor(client, input.now, [
      input.tierResolved,
      ready,
      { type: 'Suspended', status: 'False', reason: 'Active', message: 'tokens are issued' },
    ]),
  };
  if (newest === undefined || ready.status === 'False') return { status, events, requeueAfterMs: NOT_READY_RETRY_MS };
  const wakeAt = Math.min(Date.parse(newest.renewAt), input.nextRevocationAt ?? Infinity, Date.parse(newest.expiresAt), input.renewalDeferredUntil ?? Infinity);
  return { status, events, requeueAfterMs: Math.max(50, wakeAt - input.now + 50) };
}
