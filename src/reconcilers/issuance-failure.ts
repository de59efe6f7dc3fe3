/**
 * A client whose token cannot be issued or renewed says so, and waits before it tries again.
 *
 * Every failed attempt is recorded in status (failedAttempts, lastFailureTime and the renewal request
 * it was made under, lastFailureRenewRequest) with Ready=False:
 * IssuanceFailed while the client holds no valid token, RenewalFailed while a previous one is still
 * valid (it stays in the Secret and in status until it expires; then the Secret is emptied). The
 * next attempt waits for policy/issuance-backoff.ts, decided from that record alone. A Warning Event
 * goes out when the reason or the cause changes, not on every attempt.
 *
 * A write that fails after a token was minted (the Secret's metadata, an anchor's deletion, a
 * ServiceAccount's release) is recorded the same way with reason WriteFailed, naming the object:
 * what the pass carried out (the new token, a revocation) is recorded with it, and the next attempt
 * at the failed write waits for the same backoff (writeFailed, carriedFailure).
 */
import type { IssuedToken, ServiceAccountClient, ServiceAccountClientStatus } from '../api/index.ts';
import { formatTime, getCondition } from '../controller/conditions.ts';
import { errorMessage, isConflict, isNotFound } from '../kube/errors.ts';
import { issuanceRetryAt, renewRequestOfFailure, renewRequestRecord } from '../policy/issuance-backoff.ts';
import { planRetention } from '../policy/reissue.ts';

export const ISSUANCE_FAILED = 'IssuanceFailed';
export const RENEWAL_FAILED = 'RenewalFailed';
export const WRITE_FAILED = 'WriteFailed';
const FAILURE_REASONS = new Set([ISSUANCE_FAILED, RENEWAL_FAILED, WRITE_FAILED]);
const LAST_ERROR = '. Last error: ';
const CAUSE_MAX = 512;

type ReadyCondition = { type: 'Ready'; status: 'False'; reason: string; message: string };
type Event = { type: 'Normal' | 'Warning'; reason: string; note: string };

export interface HoldInput {
  client: ServiceAccountClient;
  /** The status so far (tier, tierReason, conditions other than Ready). */
  base: ServiceAccountClientStatus;
  /** The client's tokens, newest first, whose anchors still exist. */
  tokens: IssuedToken[];
  /** Whether the client's Secret holds a token now. */
  secretHoldsToken: boolean;
  gracePeriodMs: number;
  /** The ServiceAccount the tokens are minted for, when known. */
  serviceAccount?: ServiceAccountClientStatus['serviceAccount'];
  /**
   * The attempt that just failed; undefined when the backoff held the attempt back. `reset`: the
   * earlier failures no longer count (policy/issuance-backoff.ts backoffStartsOver);
   * `renewRequested`: the client's renewal request the attempt was made under.
   */
  failure?: { cause: string; reset: boolean; renewRequested?: string | undefined };
  /** spec.revocationEpoch is above the one carried out: every token goes now, issued or not. */
  revokeAll?: boolean;
  now: number;
}

export interface HoldPlan {
  status: ServiceAccountClientStatus;
  ready: ReadyCondition;
  events: Event[];
  /** Anchors to delete: tokens past their grace period. */
  revoke: string[];
  /** Empty the Secret: the last valid token has expired, or every token is revoked. */
  emptySecret: boolean;
  /** Every anchor of the client is to be deleted (a revocation the failure must not hold back). */
  revokeAll: boolean;
  requeueAfterMs: number;
}

/**
 * An error met while issuing, as the client's status tells it: the API server's message, any JWT in
 * it blanked. A conflict or a NotFound means a stale cache (an object changed or went away and its
 * watch event is on the way): rethrown, retried by the work queue, not a failure of the client. So
 * is an error some other step of the reconciler handles (`handledElsewhere`).
 */
export function issuanceCause(err: unknown, handledElsewhere: (err: unknown) => boolean): string {
  if (isConflict(err) || isNotFound(err) || handledElsewhere(err)) throw err;
  return causeOf(err);
}

/** An error's message as status and Events may carry it: any JWT blanked, bounded. */
export function causeOf(err: unknown): string {
  const message = errorMessage(err).replace(/eyJ[\w-]+\.[\w-]+\.[\w-]*/g, '<redacted>');
  return message.length > CAUSE_MAX ? `${message.slice(0, CAUSE_MAX)}...` : message;
}

/**
 * What a failing client holds and says: after a failed attempt (`failure` set) or while the backoff
 * holds the next one back. Deterministic from status and `now`, so a repeat writes nothing.
 */
export function holdWhileFailing(input: HoldInput): HoldPlan {
  const { client, base, now, failure } = input;
  const previous = client.status ?? {};
  const previousReady = getCondition(previous.conditions, 'Ready');
  const failedAttempts = failure === undefined ? (previous.failedAttempts ?? 1) : failure.reset ? 1 : (previous.failedAttempts ?? 0) + 1;
  const lastFailureTime = failure === undefined ? (previous.lastFailureTime ?? formatTime(new Date(now))) : formatTime(new Date(now));
  const lastFailureRenewRequest = renewRequestOfFailure(failure !== undefined, failure?.renewRequested, previous.lastFailureRenewRequest);
  const retryAt = issuanceRetryAt(failedAttempts, lastFailureTime) ?? now;

  const valid = input.revokeAll ? [] : input.tokens.filter((t) => Date.parse(t.expiresAt) > now);
  const retention = planRetention(valid, now, input.gracePeriodMs, false);
  const newest = retention.keep[0];
  const cause = failure?.cause ?? lastErrorOf(previousReady?.message);
  // Held back after a failed write (not a failed issuance): the client is told what it was told.
  const keepTold = failure === undefined && previousReady?.reason === WRITE_FAILED && newest !== undefined;
  const ready: ReadyCondition = keepTold
    ? { type: 'Ready', status: 'False', reason: WRITE_FAILED, message: previousReady?.message ?? '' }
    : newest === undefined
      ? {
          type: 'Ready',
          status: 'False',
          reason: ISSUANCE_FAILED,
          message: `no valid token: issuing failed ${failedAttempts} time(s), next attempt at ${formatTime(new Date(retryAt))}${LAST_ERROR}${cause}`,
        }
      : {
          type: 'Ready',
          status: 'False',
          reason: RENEWAL_FAILED,
          message: `renewal failed ${failedAttempts} time(s), next attempt at ${formatTime(new Date(retryAt))}; the token valid until ${newest.expiresAt} stays in the Secret${LAST_ERROR}${cause}`,
        };

  const events: Event[] = [];
  const told = previousReady !== undefined && FAILURE_REASONS.has(previousReady.reason) ? previousReady : undefined;
  const news = failure === undefined ? told !== undefined && told.reason !== ready.reason : told?.reason !== ready.reason || lastErrorOf(told.message) !== cause;
  if (news) {
    const note =
      ready.reason === ISSUANCE_FAILED
        ? `${newest === undefined && input.secretHoldsToken ? 'the token has expired and the Secret is emptied; ' : ''}issuing a token failed: ${cause}`
        : `renewing the token failed, the token valid until ${newest?.expiresAt} stays in use: ${cause}`;
    events.push({ type: 'Warning', reason: ready.reason, note });
  }

  const { tokens: _t, expiresAt: _e, renewAt: _r, lastFailureRenewRequest: _q, ...rest } = base;
  const status: ServiceAccountClientStatus = {
    ...rest,
    ...(input.serviceAccount !== undefined ? { serviceAccount: input.serviceAccount } : {}),
    tokens: retention.keep,
    ...(newest !== undefined ? { expiresAt: newest.expiresAt, renewAt: newest.renewAt } : {}),
    failedAttempts,
    lastFailureTime,
    ...(lastFailureRenewRequest !== undefined ? { lastFailureRenewRequest } : {}),
    ...(input.revokeAll ? { revocationEpoch: client.spec.revocationEpoch } : {}),
  };
  const wakeAt = Math.min(retryAt, newest === undefined ? Infinity : Date.parse(newest.expiresAt), retention.nextRevocationAt ?? Infinity);
  return {
    status,
    ready,
    events,
    revoke: retention.revoke,
    emptySecret: newest === undefined && input.secretHoldsToken,
    revokeAll: input.revokeAll === true,
    requeueAfterMs: Math.max(50, wakeAt - now + 50),
  };
}

export interface WriteFailedInput {
  client: ServiceAccountClient;
  /** The status the pass would write had every write gone through. */
  status: ServiceAccountClientStatus;
  /** That status's Ready condition: what the pass carried out. */
  done: { reason: string; message: string };
  /** The failed writes, each naming its object (service-account-client/write-failure.ts). */
  causes: string[];
  /** The earlier failures no longer count (policy/issuance-backoff.ts backoffStartsOver). */
  reset: boolean;
  renewRequested: string | undefined;
  now: number;
}

/**
 * A pass that carried out what it could but failed a write: status records what was done (the
 * token minted, the tokens revoked), Ready=False WriteFailed names the object and the next
 * attempt, and the failure counts towards the backoff like a failed issuance.
 */
export function writeFailed(input: WriteFailedInput): { status: ServiceAccountClientStatus; ready: ReadyCondition; events: Event[]; requeueAfterMs: number } {
  const { client, now } = input;
  const previous = client.status ?? {};
  const failedAttempts = input.reset ? 1 : (previous.failedAttempts ?? 0) + 1;
  const lastFailureTime = formatTime(new Date(now));
  const retryAt = issuanceRetryAt(failedAttempts, lastFailureTime) ?? now;
  const joined = input.causes.join('; ');
  const cause = joined.length > CAUSE_MAX ? `${joined.slice(0, CAUSE_MAX)}...` : joined;
  const ready: ReadyCondition = {
    type: 'Ready',
    status: 'False',
    reason: WRITE_FAILED,
    message: `${input.done.message}; but a write failed ${failedAttempts} time(s), next attempt at ${formatTime(new Date(retryAt))}${LAST_ERROR}${cause}`,
  };
  const told = getCondition(previous.conditions, 'Ready');
  const events: Event[] = told?.reason === WRITE_FAILED && lastErrorOf(told.message) === cause ? [] : [{ type: 'Warning', reason: WRITE_FAILED, note: `${input.done.message}; but ${cause}` }];
  const lastFailureRenewRequest = renewRequestRecord(input.renewRequested);
  const { lastFailureRenewRequest: _q, ...rest } = input.status;
  return {
    status: { ...rest, failedAttempts, lastFailureTime, ...(lastFailureRenewRequest !== undefined ? { lastFailureRenewRequest } : {}) },
    ready,
    events,
    requeueAfterMs: Math.max(50, retryAt - now + 50),
  };
}

/**
 * A pass the backoff held back from the write that failed: the failure record and Ready stay as
 * they were, so the pass writes nothing new (a status write would wake the client again).
 */
export function carriedFailure(client: ServiceAccountClient, status: ServiceAccountClientStatus, now: number): { status: ServiceAccountClientStatus; ready: ReadyCondition | undefined; requeueAfterMs: number } {
  const previous = client.status ?? {};
  const told = getCondition(previous.conditions, 'Ready');
  const retryAt = issuanceRetryAt(previous.failedAttempts, previous.lastFailureTime) ?? now;
  return {
    status: {
      ...status,
      failedAttempts: previous.failedAttempts,
      lastFailureTime: previous.lastFailureTime,
      lastFailureRenewRequest: previous.lastFailureRenewRequest,
    },
    ready: told?.reason === WRITE_FAILED ? { type: 'Ready', status: 'False', reason: WRITE_FAILED, message: told.message } : undefined,
    requeueAfterMs: Math.max(50, retryAt - now + 50),
  };
}

/** A successful attempt after failures: counters cleared, and an Event that says so. */
export function recovered(previous: ServiceAccountClientStatus): Event | undefined {
  if ((previous.failedAttempts ?? 0) === 0) return undefined;
  return { type: 'Normal', reason: 'Recovered', note: `a token was issued after ${previous.failedAttempts} failed attempt(s)` };
}

/** The cause recorded in a failure's Ready message. */
function lastErrorOf(message: string | undefined): string {
  if (message === undefined) return 'unknown';
  const at = message.indexOf(LAST_ERROR);
  return at < 0 ? 'unknown' : message.slice(at + LAST_ERROR.length);
}
