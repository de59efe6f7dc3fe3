/**
 * src/policy/issuance-backoff.ts: when a client whose issuance failed may try again, from its status
 * alone (failedAttempts, lastFailureTime) and the clock.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ISSUANCE_BACKOFF_CAP_MS,
  ISSUANCE_BACKOFF_INITIAL_MS,
  RENEW_REQUEST_RECORD_MAX,
  backoffStartsOver,
  issuanceBackoff,
  issuanceBackoffMs,
  issuanceRetryAt,
  renewRequestOfFailure,
  renewRequestRecord,
} from '../../src/policy/issuance-backoff.ts';

const T0 = Date.parse('2026-12-01T12:00:00Z');
const iso = (ms: number): string => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
const S = 1000;

describe('issuanceBackoffMs', () => {
  it('is the documented schedule: 5s doubling, capped at 1h', () => {
    expect(ISSUANCE_BACKOFF_INITIAL_MS).toBe(5 * S);
    expect(ISSUANCE_BACKOFF_CAP_MS).toBe(3600 * S);
    const schedule = Array.from({ length: 13 }, (_, i) => issuanceBackoffMs(i + 1) / S);
    expect(schedule).toEqual([5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600, 3600]);
  });

  it('is 0 without failures, and for nonsense counts', () => {
    for (const n of [0, -1, -0.5, 0.9, Number.NaN, Number.NEGATIVE_INFINITY]) expect(issuanceBackoffMs(n)).toBe(0);
  });

  it('is the cap for huge counts, never Infinity or NaN', () => {
    for (const n of [11, 1000, 2 ** 31, Number.MAX_SAFE_INTEGER, Number.MAX_VALUE]) expect(issuanceBackoffMs(n)).toBe(ISSUANCE_BACKOFF_CAP_MS);
    expect(issuanceBackoffMs(Number.POSITIVE_INFINITY)).toBe(0);
  });

  it('rounds a fractional count down', () => {
    expect(issuanceBackoffMs(1.9)).toBe(5 * S);
    expect(issuanceBackoffMs(3.5)).toBe(20 * S);
  });

  it('never shrinks as failures grow, and stays within [5s, 1h]', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 10_000 }), (n) => {
        const d = issuanceBackoffMs(n);
        expect(d).toBeGreaterThanOrEqual(ISSUANCE_BACKOFF_INITIAL_MS);
        expect(d).toBeLessThanOrEqual(ISSUANCE_BACKOFF_CAP_MS);
        expect(issuanceBackoffMs(n + 1)).toBeGreaterThanOrEqual(d);
      }),
    );
  });
});

describe('issuanceRetryAt', () => {
  it('is the last failure plus the wait', () => {
    expect(issuanceRetryAt(1, iso(T0))).toBe(T0 + 5 * S);
    expect(issuanceRetryAt(4, iso(T0))).toBe(T0 + 40 * S);
  });

  it('is undefined without failures, without a time, or with an unreadable one', () => {
    expect(issuanceRetryAt(undefined, iso(T0))).toBeUndefined();
    expect(issuanceRetryAt(0, iso(T0))).toBeUndefined();
    expect(issuanceRetryAt(3, undefined)).toBeUndefined();
    expect(issuanceRetryAt(3, 'yesterday')).toBeUndefined();
    expect(issuanceRetryAt(3, '')).toBeUndefined();
  });
});

describe('issuanceBackoff', () => {
  const input = (failedAttempts: number | undefined, lastFailureTime: string | undefined, now: number, reset = false) => ({
    failedAttempts,
    lastFailureTime,
    now,
    reset,
  });

  it('goes when nothing failed', () => {
    expect(issuanceBackoff(input(undefined, undefined, T0))).toEqual({ go: true });
    expect(issuanceBackoff(input(0, iso(T0), T0))).toEqual({ go: true });
  });

  it('waits until the last failure plus the wait, and goes from that moment on', () => {
    expect(issuanceBackoff(input(1, iso(T0), T0))).toEqual({ go: false, retryAt: T0 + 5 * S, waitMs: 5 * S });
    expect(issuanceBackoff(input(1, iso(T0), T0 + 4999))).toEqual({ go: false, retryAt: T0 + 5 * S, waitMs: 1 });
    expect(issuanceBackoff(input(1, iso(T0), T0 + 5 * S))).toEqual({ go: true });
    expect(issuanceBackoff(input(1, iso(T0), T0 + 3600 * S))).toEqual({ go: true });
    expect(issuanceBackoff(input(3, iso(T0), T0 + 19 * S))).toEqual({ go: false, retryAt: T0 + 20 * S, waitMs: 1 * S });
    expect(issuanceBackoff(input(50, iso(T0), T0 + 3599 * S))).toEqual({ go: false, retryAt: T0 + 3600 * S, waitMs: 1 * S });
  });

  it('goes at once after a spec or tier change, however many failures', () => {
    expect(issuanceBackoff(input(1, iso(T0), T0, true))).toEqual({ go: true });
    expect(issuanceBackoff(input(100, iso(T0), T0 + 1, true))).toEqual({ go: true });
  });

  it('never waits longer than the wait itself when the last failure lies in the future (clock skew, hand edit)', () => {
    const d = issuanceBackoff(input(2, iso(T0 + 3600 * S), T0));
    expect(d).toEqual({ go: false, retryAt: T0 + 10 * S, waitMs: 10 * S });
  });

  it('goes when lastFailureTime is missing or unreadable: nothing to wait from', () => {
    expect(issuanceBackoff(input(5, undefined, T0))).toEqual({ go: true });
    expect(issuanceBackoff(input(5, 'not a time', T0))).toEqual({ go: true });
  });

  it('a reconcile at any moment inside the wait does not go (no watch event or requeue bypasses it)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 0, max: 3600 * S }), (n, offset) => {
        const wait = issuanceBackoffMs(n);
        const d = issuanceBackoff(input(n, iso(T0), T0 + offset));
        if (offset < wait) {
          expect(d).toEqual({ go: false, retryAt: T0 + wait, waitMs: wait - offset });
        } else {
          expect(d).toEqual({ go: true });
        }
      }),
    );
  });

  it('a failure every time it goes makes the documented number of attempts: 4 in the first minute, 15 in the first 6h', () => {
    const attempts = (horizonMs: number): number => {
      let failed = 0;
      let last: string | undefined;
      let count = 0;
      // Reconciles every 100ms, as a hot loop would.
      for (let now = T0; now < T0 + horizonMs; now += 100) {
        if (!issuanceBackoff(input(failed, last, now)).go) continue;
        count++;
        failed++;
        last = iso(now);
      }
      return count;
    };
    expect(attempts(60 * S)).toBe(4);
    // At 0, 5, 15, 35, 75, 155, 315, 635, 1275, 2555, 5115s (11), then hourly: 8715, 12315, 15915, 19515s.
    expect(attempts(6 * 3600 * S)).toBe(15);
  });
});

describe('backoffStartsOver', () => {
  const A = '2026-12-01T12:00:00.000Z';
  const B = '2026-12-01T13:00:00.000Z';
  const same = { generation: 3, observedGeneration: 3, tier: 'free', recordedTier: 'free', renewRequested: undefined, recordedRenewRequest: undefined, now: T0 };

  it('does not start over while nothing changed since the failures were recorded', () => {
    expect(backoffStartsOver(same)).toBe(false);
    expect(backoffStartsOver({ ...same, renewRequested: A, recordedRenewRequest: A })).toBe(false);
  });

  it('starts over for a new spec or a new tier (as before)', () => {
    expect(backoffStartsOver({ ...same, generation: 4 })).toBe(true);
    expect(backoffStartsOver({ ...same, observedGeneration: undefined })).toBe(true);
    expect(backoffStartsOver({ ...same, tier: 'premium' })).toBe(true);
    expect(backoffStartsOver({ ...same, recordedTier: undefined })).toBe(true);
  });

  it('starts over for a renewal request the failures were not recorded under', () => {
    expect(backoffStartsOver({ ...same, renewRequested: B, recordedRenewRequest: A })).toBe(true);
    expect(backoffStartsOver({ ...same, renewRequested: B, recordedRenewRequest: undefined })).toBe(true);
  });

  it('a removed or empty annotation is no request', () => {
    expect(backoffStartsOver({ ...same, renewRequested: undefined, recordedRenewRequest: A })).toBe(false);
    expect(backoffStartsOver({ ...same, renewRequested: '', recordedRenewRequest: A })).toBe(false);
    expect(backoffStartsOver({ ...same, renewRequested: '', recordedRenewRequest: undefined })).toBe(false);
  });

  it('a long annotation is compared by what status records of it', () => {
    const long = 'x'.repeat(10_000);
    expect(backoffStartsOver({ ...same, renewRequested: long, recordedRenewRequest: renewRequestRecord(long) })).toBe(false);
    expect(backoffStartsOver({ ...same, renewRequested: `${long}y`, recordedRenewRequest: renewRequestRecord(long) })).toBe(true);
  });

  it('starts over exactly once per request: a refusal of the renewed attempt backs off again, 4 attempts a minute, not a hot loop', () => {
    // A client in the 1h backoff; `renew` sets a new value at T0, the refusal persists; reconciles every 100ms.
    let failed = 20;
    let last: string | undefined = iso(T0 - 10 * S);
    let recorded: string | undefined = A;
    let count = 0;
    for (let now = T0; now < T0 + 60 * S; now += 100) {
      const reset = backoffStartsOver({ ...same, renewRequested: B, recordedRenewRequest: recorded, lastFailureTime: last, now });
      if (!issuanceBackoff({ failedAttempts: failed, lastFailureTime: last, reset, now }).go) continue;
      count++;
      failed = reset ? 1 : failed + 1;
      last = iso(now);
      recorded = renewRequestOfFailure(true, B, recorded);
    }
    expect(count).toBe(4);
    expect(failed).toBe(4);
  });
});

describe('a burst of renewal requests while issuing fails', () => {
  const same = { generation: 3, observedGeneration: 3, tier: 'free', recordedTier: 'free', now: T0 };

  it('a first request starts over at once; a new one within 30s of a failure recorded under a request waits', () => {
    expect(backoffStartsOver({ ...same, renewRequested: 'b', recordedRenewRequest: undefined, lastFailureTime: iso(T0 - S) })).toBe(true);
    expect(backoffStartsOver({ ...same, renewRequested: 'b', recordedRenewRequest: 'a', lastFailureTime: iso(T0 - 29 * S) })).toBe(false);
    expect(backoffStartsOver({ ...same, renewRequested: 'b', recordedRenewRequest: 'a', lastFailureTime: iso(T0 - 30 * S) })).toBe(true);
  });

  it('a new value every 150ms for a minute costs no more attempts than one start-over per 30s allows', () => {
    let failed = 20;
    let last: string | undefined = iso(T0 - 10 * S);
    let recorded: string | undefined;
    let count = 0;
    for (let now = T0; now < T0 + 60 * S; now += 150) {
      const request = `r${now}`;
      const reset = backoffStartsOver({ ...same, renewRequested: request, recordedRenewRequest: recorded, lastFailureTime: last, now });
      if (!issuanceBackoff({ failedAttempts: failed, lastFailureTime: last, reset, now }).go) continue;
      count++;
      failed = reset ? 1 : failed + 1;
      last = iso(now);
      recorded = renewRequestOfFailure(true, request, recorded);
    }
    // Start-overs at 0, 35 and 55 s (each 30s after a failure under a request... or the backoff's own attempts between).
    expect(count).toBeLessThanOrEqual(8);
    expect(count).toBeGreaterThanOrEqual(4);
  });
});

describe('renewRequestRecord and renewRequestOfFailure', () => {
  it('records a request as it is, a long one as its SHA-256, none as undefined', () => {
    expect(renewRequestRecord(undefined)).toBeUndefined();
    expect(renewRequestRecord('')).toBeUndefined();
    expect(renewRequestRecord('2026-12-01T12:00:00.000Z')).toBe('2026-12-01T12:00:00.000Z');
    const edge = 'a'.repeat(RENEW_REQUEST_RECORD_MAX);
    expect(renewRequestRecord(edge)).toBe(edge);
    const long = renewRequestRecord(`${edge}a`);
    expect(long).toMatch(/^sha256:[0-9a-f]{64}$/);
    // The status schema allows it.
    expect((long as string).length).toBeLessThanOrEqual(80);
    expect(renewRequestRecord(`${edge}b`)).not.toBe(long);
  });

  it('after a failure: the request in effect; while held back: the one recorded', () => {
    expect(renewRequestOfFailure(true, 'B', 'A')).toBe('B');
    expect(renewRequestOfFailure(true, undefined, 'A')).toBeUndefined();
    expect(renewRequestOfFailure(false, 'B', 'A')).toBe('A');
    expect(renewRequestOfFailure(false, 'B', undefined)).toBeUndefined();
  });
});
