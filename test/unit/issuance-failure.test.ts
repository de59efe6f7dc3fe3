/**
 * src/reconcilers/issuance-failure.ts: what a client whose issuance fails holds and says. Pure: the
 * reconciler carries out the plan (revocations, emptying the Secret) and writes the status.
 */
import { describe, expect, it } from 'vitest';
import type { IssuedToken, ServiceAccountClient } from '../../src/api/index.ts';
import { KubeApiError } from '../../src/kube/errors.ts';
import { carriedFailure, holdWhileFailing, issuanceCause, recovered, writeFailed, type HoldInput } from '../../src/reconcilers/issuance-failure.ts';

const T0 = Date.parse('2026-12-01T12:00:00Z');
const S = 1000;
const iso = (ms: number): string => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

function token(id: string, issuedAt: number, lifetimeS = 600): IssuedToken {
  return { id, issuedAt: iso(issuedAt), expiresAt: iso(issuedAt + lifetimeS * S), renewAt: iso(issuedAt + (lifetimeS - 60) * S) };
}

function client(status: ServiceAccountClient['status'] = {}): ServiceAccountClient {
  return {
    apiVersion: 'tokenwarden.io/v1alpha1',
    kind: 'ServiceAccountClient',
    metadata: { name: 'c', namespace: 'team', uid: 'u1', generation: 1 },
    spec: { subject: { user: 'alice', groups: [] }, suspended: false, revocationEpoch: 0 },
    status,
  } as ServiceAccountClient;
}

function input(over: Partial<HoldInput> = {}): HoldInput {
  const c = over.client ?? client();
  return { client: c, base: { ...c.status, tier: 'free' }, tokens: [], secretHoldsToken: false, gracePeriodMs: 60 * S, now: T0, ...over };
}

const failure = { cause: 'serviceaccounts "x" is forbidden: denied', reset: false };

describe('holdWhileFailing after a failed attempt', () => {
  it('first failure without a token: IssuanceFailed, failedAttempts 1, lastFailureTime now, a Warning, retry in 5s', () => {
    const plan = holdWhileFailing(input({ failure }));
    expect(plan.ready.reason).toBe('IssuanceFailed');
    expect(plan.ready.status).toBe('False');
    expect(plan.ready.message).toBe(`no valid token: issuing failed 1 time(s), next attempt at ${iso(T0 + 5 * S)}. Last error: ${failure.cause}`);
    expect(plan.status.failedAttempts).toBe(1);
    expect(plan.status.lastFailureTime).toBe(iso(T0));
    expect(plan.status.tokens).toEqual([]);
    expect(plan.status.expiresAt).toBeUndefined();
    expect(plan.status.tier).toBe('free');
    expect(plan.events).toEqual([{ type: 'Warning', reason: 'IssuanceFailed', note: `issuing a token failed: ${failure.cause}` }]);
    expect(plan.emptySecret).toBe(false);
    expect(plan.requeueAfterMs).toBe(5 * S + 50);
  });

  it('counts on from the recorded failures, and starts over after a reset', () => {
    const c = client({ failedAttempts: 3, lastFailureTime: iso(T0 - 20 * S) });
    expect(holdWhileFailing(input({ client: c, failure })).status.failedAttempts).toBe(4);
    expect(holdWhileFailing(input({ client: c, failure })).requeueAfterMs).toBe(40 * S + 50);
    expect(holdWhileFailing(input({ client: c, failure: { ...failure, reset: true } })).status.failedAttempts).toBe(1);
  });

  it('records the renewal request the attempt was made under, and keeps it while the backoff holds', () => {
    const c = client({ failedAttempts: 11, lastFailureTime: iso(T0 - 60 * S), lastFailureRenewRequest: 'A' });
    const renewed = holdWhileFailing(input({ client: c, failure: { ...failure, reset: true, renewRequested: 'B' } }));
    expect(renewed.status.failedAttempts).toBe(1);
    expect(renewed.status.lastFailureRenewRequest).toBe('B');
    expect(renewed.requeueAfterMs).toBe(5 * S + 50);
    expect(holdWhileFailing(input({ client: c, failure })).status.lastFailureRenewRequest).toBeUndefined();
    expect(holdWhileFailing(input({ client: c })).status.lastFailureRenewRequest).toBe('A');
    expect(holdWhileFailing(input({ client: client({ failedAttempts: 1, lastFailureTime: iso(T0) }) })).status).not.toHaveProperty('lastFailureRenewRequest');
  });

  it('a renewal that fails keeps the still-valid token in status: RenewalFailed, wakes at the retry', () => {
    const t = token('a1', T0 - 540 * S);
    const plan = holdWhileFailing(input({ tokens: [t], secretHoldsToken: true, failure }));
    expect(plan.ready.reason).toBe('RenewalFailed');
    expect(plan.ready.message).toContain(`the token valid until ${t.expiresAt} stays in the Secret`);
    expect(plan.ready.message).toContain(failure.cause);
    expect(plan.status.tokens).toEqual([t]);
    expect(plan.status.expiresAt).toBe(t.expiresAt);
    expect(plan.status.renewAt).toBe(t.renewAt);
    expect(plan.emptySecret).toBe(false);
    expect(plan.events[0]?.reason).toBe('RenewalFailed');
    expect(plan.requeueAfterMs).toBe(5 * S + 50);
  });

  it('wakes at the expiry of the kept token when that comes before the retry', () => {
    const c = client({ failedAttempts: 10, lastFailureTime: iso(T0) });
    const t = token('a1', T0 - 590 * S); // expires in 10s; the retry is 1h away
    const plan = holdWhileFailing(input({ client: c, tokens: [t], secretHoldsToken: true, failure }));
    expect(plan.requeueAfterMs).toBe(10 * S + 50);
  });

  it('an expired token is not kept: IssuanceFailed, and the Secret that holds it is emptied', () => {
    const t = token('a1', T0 - 600 * S);
    const plan = holdWhileFailing(input({ tokens: [t], secretHoldsToken: true, failure }));
    expect(plan.ready.reason).toBe('IssuanceFailed');
    expect(plan.status.tokens).toEqual([]);
    expect(plan.emptySecret).toBe(true);
    expect(plan.events[0]?.note).toContain('the token has expired and the Secret is emptied');
  });

  it('revokes a superseded token past its grace period, keeps one inside it', () => {
    const newest = token('a2', T0 - 100 * S);
    const older = token('a1', T0 - 500 * S);
    expect(holdWhileFailing(input({ tokens: [newest, older], gracePeriodMs: 60 * S, failure })).revoke).toEqual(['a1']);
    const inGrace = holdWhileFailing(input({ tokens: [newest, older], gracePeriodMs: 200 * S, failure }));
    expect(inGrace.revoke).toEqual([]);
    expect(inGrace.status.tokens).toEqual([newest, older]);
    expect(inGrace.requeueAfterMs).toBe(5 * S + 50); // the retry (5s) comes before the end of the grace (100s)
  });

  it('no Warning for a repeat of the same failure; one when the cause changes', () => {
    const first = holdWhileFailing(input({ failure }));
    const c = client({ ...first.status, conditions: [{ ...first.ready, lastTransitionTime: iso(T0) }] });
    expect(holdWhileFailing(input({ client: c, now: T0 + 5 * S, failure })).events).toEqual([]);
    const other = holdWhileFailing(input({ client: c, now: T0 + 5 * S, failure: { ...failure, cause: 'Too Many Requests' } }));
    expect(other.events.map((e) => e.note)).toEqual(['issuing a token failed: Too Many Requests']);
  });
});

describe('holdWhileFailing while the backoff holds the attempt back', () => {
  const failedOnce = () => {
    const first = holdWhileFailing(input({ failure }));
    return client({ ...first.status, conditions: [{ ...first.ready, lastTransitionTime: iso(T0) }] });
  };

  it('says exactly what the failure said, so a held-back reconcile writes nothing and records no Event', () => {
    const c = failedOnce();
    const held = holdWhileFailing(input({ client: c, now: T0 + 2 * S }));
    expect(held.status.failedAttempts).toBe(1);
    expect(held.status.lastFailureTime).toBe(iso(T0));
    expect(held.ready.message).toBe(c.status?.conditions?.[0]?.message);
    expect(held.events).toEqual([]);
    expect(held.requeueAfterMs).toBe(3 * S + 50);
  });

  it('once the kept token expires: IssuanceFailed, the Secret emptied, one Warning that says so', () => {
    const t = token('a1', T0 - 590 * S);
    const first = holdWhileFailing(input({ tokens: [t], secretHoldsToken: true, failure }));
    const c = client({ ...first.status, conditions: [{ ...first.ready, lastTransitionTime: iso(T0) }] });
    const later = T0 + 11 * S;
    const held = holdWhileFailing(input({ client: c, tokens: [t], secretHoldsToken: true, now: later }));
    expect(held.ready.reason).toBe('IssuanceFailed');
    expect(held.ready.message).toContain(failure.cause);
    expect(held.status.tokens).toEqual([]);
    expect(held.status.expiresAt).toBeUndefined();
    expect(held.emptySecret).toBe(true);
    expect(held.events).toEqual([{ type: 'Warning', reason: 'IssuanceFailed', note: `the token has expired and the Secret is emptied; issuing a token failed: ${failure.cause}` }]);
    // Emptied: the next held reconcile changes nothing.
    const c2 = client({ ...held.status, conditions: [{ ...held.ready, lastTransitionTime: iso(later) }] });
    const again = holdWhileFailing(input({ client: c2, tokens: [], secretHoldsToken: false, now: later + S }));
    expect(again.emptySecret).toBe(false);
    expect(again.events).toEqual([]);
    expect(again.ready.message).toBe(held.ready.message);
  });
});

describe('issuanceCause', () => {
  const never = () => false;

  it("is the API server's message, with anything shaped like a JWT blanked and long messages cut", () => {
    const jwt = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl';
    expect(issuanceCause(new Error(`denied: ${jwt} is not welcome`), never)).toBe('denied: <redacted> is not welcome');
    expect(issuanceCause(new Error('x'.repeat(2000)), never)).toHaveLength(515);
  });

  it('rethrows a conflict or a NotFound (a stale cache, retried by the queue) and what another step handles; keeps a refusal', () => {
    const c = new KubeApiError({ method: 'PATCH', path: '/api/v1/namespaces/team/secrets/x', statusCode: 409, reason: 'Conflict', message: 'the object has been modified' });
    expect(() => issuanceCause(c, never)).toThrow(c);
    const gone = new KubeApiError({ method: 'POST', path: '/api/v1/namespaces/t/serviceaccounts/x/token', statusCode: 404, reason: 'NotFound', message: 'not found' });
    expect(() => issuanceCause(gone, never)).toThrow(gone);
    const refused = new KubeApiError({ method: 'POST', path: '/api/v1/namespaces/t/serviceaccounts/x/token', statusCode: 403, reason: 'Forbidden', message: 'denied' });
    expect(issuanceCause(refused, never)).toBe('POST /api/v1/namespaces/t/serviceaccounts/x/token: 403 Forbidden: denied');
    const mine = new Error('mine');
    expect(() => issuanceCause(mine, (e) => e === mine)).toThrow(mine);
  });
});

describe('recovered', () => {
  it('an Event after failures, none otherwise', () => {
    expect(recovered({ failedAttempts: 3 })).toEqual({ type: 'Normal', reason: 'Recovered', note: 'a token was issued after 3 failed attempt(s)' });
    expect(recovered({})).toBeUndefined();
    expect(recovered({ failedAttempts: 0 })).toBeUndefined();
  });
});

describe('a write that failed after minting (writeFailed, carriedFailure)', () => {
  const done = { reason: 'TokenIssued', message: 'token valid until X, renewal at Y' };
  const cause = 'release ServiceAccount tier/stale: 403 Forbidden: frozen';

  it('records the failure with the object, a Warning once per cause, and retries after the backoff', () => {
    const c = client({});
    const failed = writeFailed({ client: c, status: { tier: 'free' }, done, causes: [cause], reset: false, renewRequested: undefined, now: T0 });
    expect(failed.ready).toEqual({ type: 'Ready', status: 'False', reason: 'WriteFailed', message: `${done.message}; but a write failed 1 time(s), next attempt at ${iso(T0 + 5 * S)}. Last error: ${cause}` });
    expect(failed.status).toMatchObject({ tier: 'free', failedAttempts: 1, lastFailureTime: iso(T0) });
    expect(failed.events).toEqual([{ type: 'Warning', reason: 'WriteFailed', note: `${done.message}; but ${cause}` }]);
    expect(failed.requeueAfterMs).toBe(5 * S + 50);
    // The same cause again, counted on: no second Event.
    const told = client({ failedAttempts: 1, lastFailureTime: iso(T0), conditions: [{ type: 'Ready', status: 'False', reason: 'WriteFailed', message: failed.ready.message, lastTransitionTime: iso(T0) }] });
    const again = writeFailed({ client: told, status: {}, done, causes: [cause], reset: false, renewRequested: undefined, now: T0 + 5 * S });
    expect(again.status.failedAttempts).toBe(2);
    expect(again.events).toEqual([]);
    expect(again.requeueAfterMs).toBe(10 * S + 50);
  });

  it('while the backoff holds, the record and Ready stay as they were: nothing new to write', () => {
    const ready = { type: 'Ready', status: 'False' as const, reason: 'WriteFailed', message: 'm. Last error: x', lastTransitionTime: iso(T0) };
    const c = client({ failedAttempts: 2, lastFailureTime: iso(T0), lastFailureRenewRequest: 'r', conditions: [ready] });
    const carried = carriedFailure(c, { tier: 'free' }, T0 + 3 * S);
    expect(carried.status).toEqual({ tier: 'free', failedAttempts: 2, lastFailureTime: iso(T0), lastFailureRenewRequest: 'r' });
    expect(carried.ready?.message).toBe('m. Last error: x');
    expect(carried.requeueAfterMs).toBe(7 * S + 50);
  });

  it('a pass held back after a failed write keeps saying WriteFailed, not RenewalFailed', () => {
    const ready = { type: 'Ready', status: 'False' as const, reason: 'WriteFailed', message: 'token valid; but a write failed 1 time(s). Last error: x', lastTransitionTime: iso(T0) };
    const c = client({ failedAttempts: 1, lastFailureTime: iso(T0), conditions: [ready] });
    const plan = holdWhileFailing(input({ client: c, tokens: [token('a', T0 - 10 * S)], secretHoldsToken: true, now: T0 + S }));
    expect(plan.ready).toEqual({ type: 'Ready', status: 'False', reason: 'WriteFailed', message: ready.message });
    expect(plan.events).toEqual([]);
  });

  it('a raised revocationEpoch revokes every token though no new one could be issued', () => {
    const c = { ...client({ revocationEpoch: 0 }), spec: { ...client().spec, revocationEpoch: 1 } } as ServiceAccountClient;
    const plan = holdWhileFailing(input({ client: c, tokens: [token('a', T0 - 10 * S)], secretHoldsToken: true, failure, revokeAll: true }));
    expect(plan.revokeAll).toBe(true);
    expect(plan.emptySecret).toBe(true);
    expect(plan.status.tokens).toEqual([]);
    expect(plan.status.revocationEpoch).toBe(1);
    expect(plan.ready.reason).toBe('IssuanceFailed');
  });
});
