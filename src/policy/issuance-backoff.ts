/**
 * When a client whose last attempts to issue a token failed may try again: exponential backoff,
 * capped, decided from what its status records (failedAttempts, lastFailureTime) and nothing else,
 * so no watch event, requeue or operator restart can bring an attempt forward.
 *
 * The wait after the n-th failure in a row is 5s * 2^(n-1), at most 1h:
 * 5s, 10s, 20s, 40s, 80s, 160s, 320s, 640s, 1280s, 2560s, then 1h for every later one.
 * A new spec (metadata.generation) or a new tier starts over: the cause may be gone.
 */

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
  /** The spec or the tier changed since the failures were recorded: start over. */
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
