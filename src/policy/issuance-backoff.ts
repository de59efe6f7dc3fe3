/**
 * When a client whose last attempts to issue a token failed may try again: exponential backoff,
 * capped, decided from what its status records (failedAttempts, lastFailureTime) and nothing else,
 * so no watch event, requeue or operator restart can bring an attempt forward.
 *
 * The wait after the n-th failure in a row is 5s * 2^(n-1), at most 1h:
 * 5s, 10s, 20s, 40s, 80s, 160s, 320s, 640s, 1280s, 2560s, then 1h for every later one.
 * A new spec (metadata.generation), a new tier or a new renewal request (the annotation
 * tokenwarden.io/renew-requested-at set to a value the failures were not recorded under, which is what
 * `kubectl tokenwarden renew` does) starts over: the cause may be gone (backoffStartsOver). Each of
 * them is recorded with the failure that follows, so each starts over once, never on a retry. A
 * renewal request starts over at most once per RENEW_REQUEST_INTERVAL_MS: one made within that
 * time of a failure recorded under an earlier request waits for the backoff, or for that time.
 *
 * The same record counts failed writes after a token was minted (a ServiceAccount release, an
 * anchor's deletion, the Secret): reconcilers/issuance-failure.ts.
 */
import { createHash } from 'node:crypto';
import { RENEW_REQUEST_INTERVAL_MS } from './reissue.ts';

/** The first wait, after one failure. */
export const ISSUANCE_BACKOFF_INITIAL_MS = 5_000;
/** The longest wait. */
export const ISSUANCE_BACKOFF_CAP_MS = 60 * 60_000;

/** The wait after `failedAttempts` failures in a row (0 for none). */
export function issuanceBackoffMs(failedAttempts: number): number {
  if (!Number.isFinite(failedAttempts) || failedAttempts < 1) return 0;
  // 2 ** 10 * 5s is already past the cap: no larger exponent is needed, nor an Infinity.
  const exponent = Math.min(Math.floor(failedAttempts) - 1, 10);
  return Math.min(ISSUANCE_BACKOFF_INITIAL_MS * 2 ** exponent, ISSUANCE_BACKOFF_CAP_MS);
}

export interface IssuanceBackoffInput {
  /** status.failedAttempts. */
  failedAttempts?: number | undefined;
  /** status.lastFailureTime (RFC 3339). */
  lastFailureTime?: string | undefined;
  /** The spec, the tier or the renewal request changed since the failures were recorded: start over (backoffStartsOver). */
  reset: boolean;
  now: number;
}

export type IssuanceBackoffDecision =
  /** Attempt now. */
  | { go: true }
  /** Not before `retryAt` (ms since the epoch), `waitMs` from now. */
  | { go: false; retryAt: number; waitMs: number };

/** The time the next attempt is due after these failures, or undefined when nothing holds it back. */
export function issuanceRetryAt(failedAttempts: number | undefined, lastFailureTime: string | undefined): number | undefined {
  const wait = issuanceBackoffMs(failedAttempts ?? 0);
  if (wait === 0 || lastFailureTime === undefined) return undefined;
  const last = Date.parse(lastFailureTime);
  if (Number.isNaN(last)) return undefined;
  return last + wait;
}

/** Whether to attempt issuance now, from the recorded failures. */
export function issuanceBackoff(input: IssuanceBackoffInput): IssuanceBackoffDecision {
  if (input.reset) return { go: true };
  const retryAt = issuanceRetryAt(input.failedAttempts, input.lastFailureTime);
  if (retryAt === undefined || input.now >= retryAt) return { go: true };
  // A lastFailureTime in the future (another replica's clock, a hand edit) never holds an attempt
  // back longer than the wait itself.
  const waitMs = Math.min(retryAt - input.now, issuanceBackoffMs(input.failedAttempts ?? 0));
  return { go: false, retryAt: input.now + waitMs, waitMs };
}

/** What a client asks for now, and what its status recorded when the failures were counted. */
export interface BackoffStartInput {
  /** metadata.generation. */
  generation: number | undefined;
  /** status.observedGeneration: the generation of the last status written. */
  observedGeneration: number | undefined;
  /** The tier the client resolves to now (undefined: none). */
  tier: string | undefined;
  /** status.tier. */
  recordedTier: string | undefined;
  /** The client's tokenwarden.io/renew-requested-at annotation, if any. */
  renewRequested: string | undefined;
  /** status.lastFailureRenewRequest: renewRequestRecord() of that annotation when the last failure was recorded. */
  recordedRenewRequest: string | undefined;
  /** status.lastFailureTime. */
  lastFailureTime?: string | undefined;
  now: number;
}

/**
 * Whether the recorded failures no longer count: the spec or the tier changed since status was
 * written, or a renewal was requested that the failures were not recorded under. A removed or empty
 * annotation is no request. Each of these is written to status with the next failure (the
 * generation and tier with every status, the request as lastFailureRenewRequest), so a refused
 * attempt after a start-over counts from 1 and backs off again: nothing starts over twice.
 */
export function backoffStartsOver(input: BackoffStartInput): boolean {
  if (input.generation !== input.observedGeneration || input.tier !== input.recordedTier) return true;
  const request = renewRequestRecord(input.renewRequested);
  if (request === undefined || request === input.recordedRenewRequest) return false;
  // A burst of requests (each a new value) starts over once per interval, not once per request.
  if (input.recordedRenewRequest === undefined || input.lastFailureTime === undefined) return true;
  const last = Date.parse(input.lastFailureTime);
  return Number.isNaN(last) || input.now >= last + RENEW_REQUEST_INTERVAL_MS;
}

/** Longest renewal request recorded as it is; `kubectl tokenwarden renew` writes 24 characters. */
export const RENEW_REQUEST_RECORD_MAX = 64;

/**
 * A renewal request as status records it: the annotation's value, or for a value longer than
 * RENEW_REQUEST_RECORD_MAX (anyone may write any annotation) its SHA-256, so status stays small
 * and two different values still differ. undefined for no request.
 */
export function renewRequestRecord(renewRequested: string | undefined): string | undefined {
  if (renewRequested === undefined || renewRequested === '') return undefined;
  if (renewRequested.length <= RENEW_REQUEST_RECORD_MAX) return renewRequested;
  return `sha256:${createHash('sha256').update(renewRequested).digest('hex')}`;
}

/**
 * status.lastFailureRenewRequest to write: after a failed attempt, the request in effect then; while
 * the backoff holds an attempt back, the one recorded.
 */
export function renewRequestOfFailure(failed: boolean, renewRequested: string | undefined, recorded: string | undefined): string | undefined {
  return failed ? renewRequestRecord(renewRequested) : recorded;
}
