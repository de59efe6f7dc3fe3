/**
 * src/policy/reissue.ts: "does this client need a new token, and why?" as named checks in a fixed
 * order, and which of the client's tokens stay valid after an issue (the grace period, revocation).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { IssuedToken } from '../../src/api/index.ts';
import { MAX_TOKENS, needsNewToken, planRetention, type ReissueReason, type TokenInspection } from '../../src/policy/reissue.ts';
import type { TokenClaims } from '../../src/policy/token-claims.ts';

const at = (iso: string): number => Date.parse(iso);
const MINUTE = 60_000;
const SECOND = 1000;
const HOUR = 60 * MINUTE;

const NS = 'tokenwarden-tier-premium';
const SA = 'alice-example-com-ff8d9819fc';
const SA_UID = 'sa-uid-1';

function issued(id: string, issuedAt: string, expiresAt: string, renewAt: string): IssuedToken {
  return { id, issuedAt, expiresAt, renewAt };
}

/** The steady state: a current token, in the Secret, for the desired request, before its renewal time. */
function steady(): TokenInspection {
  const newest = issued('anchor-2', '2025-01-01T11:00:00Z', '2025-01-01T15:00:00Z', '2025-01-01T13:40:00Z');
  const claims: TokenClaims = {
    audiences: ['models-gateway', 'billing'],
    issuedAtMs: at(newest.issuedAt),
    expiresAtMs: at(newest.expiresAt),
    namespace: NS,
    serviceAccountName: SA,
    serviceAccountUid: SA_UID,
    boundSecretName: 'anchor-2',
  };
  return {
    now: at('2025-01-01T12:00:00Z'),
    desired: {
      serviceAccountNamespace: NS,
      serviceAccountName: SA,
      serviceAccountUid: SA_UID,
      audiences: ['billing', 'models-gateway'],
      expirationSeconds: 14_400,
      revocationEpoch: 3,
    },
    newest,
    revokedEpoch: 3,
    secret: { claims, requestedAudiences: 'billing,models-gateway', requestedExpirationSeconds: '14400' },
    newestAnchorExists: true,
  };
}

const claimsOf = (input: TokenInspection): TokenClaims => input.secret?.claims as TokenClaims;

/**
 * One fault per check, in the order the checks run, each with the flags its decision must carry.
 * `needs` says what of the input the fault relies on, so that two faults that cannot both hold
 * (a missing Secret and a wrong token in it) are not combined.
 */
type Needs = 'newest' | 'claims' | 'secret';
interface Fault {
  reason: ReissueReason;
  label: string;
  apply: (input: TokenInspection) => void;
  /** What this fault takes away from the input. */
  removes?: Needs[];
  /** What this fault needs to be present. */
  needs?: Needs[];
  revokeEarlierTokens: boolean;
  repair: boolean;
  message: RegExp;
}

const FAULTS: Fault[] = [
  {
    reason: 'NotIssued',
    label: 'no token in status',
    apply: (i) => void (i.newest = undefined),
    removes: ['newest'],
    revokeEarlierTokens: false,
    repair: false,
    message: /no token issued yet/,
  },
  {
    reason: 'RevocationRequested',
    label: 'revocationEpoch raised',
    apply: (i) => void (i.desired.revocationEpoch = 4),
    revokeEarlierTokens: true,
    repair: false,
    message: /revocationEpoch raised to 4/,
  },
  {
    reason: 'ServiceAccountChanged',
    label: 'token of another ServiceAccount (tier move)',
    apply: (i) => {
      i.desired.serviceAccountNamespace = 'tokenwarden-tier-enterprise';
      i.desired.serviceAccountUid = 'sa-uid-9';
    },
    needs: ['claims'],
    revokeEarlierTokens: true,
    repair: false,
    message: /tokenwarden-tier-premium\/alice-example-com-ff8d9819fc, the client now uses tokenwarden-tier-enterprise\/alice-example-com-ff8d9819fc/,
  },
  {
    reason: 'ServiceAccountChanged',
    label: 'ServiceAccount recreated (new uid)',
    apply: (i) => void (i.desired.serviceAccountUid = 'sa-uid-2'),
    needs: ['claims'],
    revokeEarlierTokens: true,
    repair: true,
    message: /was recreated/,
  },
  {
    reason: 'SecretMissing',
    label: 'Secret deleted',
    apply: (i) => void (i.secret = undefined),
    removes: ['secret', 'claims'],
    revokeEarlierTokens: false,
    repair: true,
    message: /Secret is missing/,
  },
  {
    reason: 'TokenMissing',
    label: 'token key removed from the Secret',
    apply: (i) => void (i.secret = { ...i.secret, claims: undefined }),
    needs: ['secret'],
    removes: ['claims'],
    revokeEarlierTokens: false,
    repair: true,
    message: /holds no token/,
  },
  {
    reason: 'TokenUnreadable',
    label: 'Secret holds something else',
    apply: (i) => void (i.secret = { ...i.secret, claims: 'unreadable' }),
    needs: ['secret'],
    removes: ['claims'],
    revokeEarlierTokens: false,
    repair: true,
    message: /not a ServiceAccount token/,
  },
  {
    reason: 'TokenMismatch',
    label: 'Secret holds another token',
    apply: (i) => void (claimsOf(i).boundSecretName = 'anchor-foreign'),
    needs: ['claims', 'newest'],
    revokeEarlierTokens: false,
    repair: true,
    message: /other than the one issued/,
  },
  {
    reason: 'AnchorMissing',
    label: 'anchor deleted',
    apply: (i) => void (i.newestAnchorExists = false),
    revokeEarlierTokens: false,
    repair: true,
    message: /anchor was deleted/,
  },
  {
    reason: 'AudiencesChanged',
    label: 'audiences changed',
    apply: (i) => void (i.desired.audiences = ['models-gateway']),
    needs: ['claims'],
    revokeEarlierTokens: false,
    repair: false,
    message: /audiences changed to \[models-gateway\]/,
  },
  {
    reason: 'ExpirationChanged',
    label: 'lifetime changed',
    apply: (i) => void (i.desired.expirationSeconds = 3600),
    needs: ['secret'],
    revokeEarlierTokens: false,
    repair: false,
    message: /lifetime changed to 3600s/,
  },
  {
    reason: 'Expired',
    label: 'token expired',
    apply: (i) => void (i.now = at('2025-01-01T15:00:00Z')),
    needs: ['newest'],
    revokeEarlierTokens: false,
    repair: false,
    message: /the token expired/,
  },
  {
    reason: 'RenewalDue',
    label: 'renewal time reached',
    apply: (i) => void (i.now = at('2025-01-01T13:40:00Z')),
    needs: ['newest'],
    revokeEarlierTokens: false,
    repair: false,
    message: /renewal was due at 2025-01-01T13:40:00Z/,
  },
];

function withFaults(...faults: Fault[]): TokenInspection {
  const input = steady();
  // Apply the lower-ranked faults first: "now" moves only forward, and the Secret-level faults
  // replace the claims that claim-level faults would edit.
  for (const fault of [...faults].reverse()) fault.apply(input);
  return input;
}

const compatible = (a: Fault, b: Fault): boolean =>
  !(a.removes ?? []).some((r) => (b.needs ?? []).includes(r) || (b.removes ?? []).includes(r)) &&
  !(b.removes ?? []).some((r) => (a.needs ?? []).includes(r)) &&
  !(a.reason === 'Expired' && b.reason === 'RenewalDue') &&
  !(a.reason === 'ServiceAccountChanged' && b.reason === 'ServiceAccountChanged');

describe('needsNewToken', () => {
  it('finds no reason in the steady state', () => {
    expect(needsNewToken(steady())).toBeUndefined();
  });

  it('finds no reason just before the renewal time', () => {
    const input = steady();
    input.now = at('2025-01-01T13:40:00Z') - 1;
    expect(needsNewToken(input)).toBeUndefined();
  });

  it('finds no reason when the status epoch is ahead of the spec (nothing left to revoke)', () => {
    const input = steady();
    input.revokedEpoch = 5;
    expect(needsNewToken(input)).toBeUndefined();
  });

  it.each(FAULTS.map((f) => [f.label, f] as const))('fires alone for %s', (_label, fault) => {
    expect(needsNewToken(withFaults(fault))).toEqual({
      reason: fault.reason,
      message: expect.stringMatching(fault.message),
      revokeEarlierTokens: fault.revokeEarlierTokens,
      repair: fault.repair,
    });
  });

  const pairs = FAULTS.flatMap((higher, i) =>
    FAULTS.slice(i + 1)
      .filter((lower) => lower.reason !== higher.reason && compatible(higher, lower))
      .map((lower) => [higher.label, lower.label, higher, lower] as const),
  );

  it('has a meaningful number of combinable pairs', () => {
    expect(pairs.length).toBeGreaterThan(40);
  });

  it.each(pairs)('ranks "%s" above "%s"', (_h, _l, higher, lower) => {
    expect(needsNewToken(withFaults(lower))?.reason).toBe(lower.reason);
    expect(needsNewToken(withFaults(higher, lower))).toMatchObject({
      reason: higher.reason,
      revokeEarlierTokens: higher.revokeEarlierTokens,
      repair: higher.repair,
    });
  });

  it('peels the reasons off in order when every compatible fault holds at once', () => {
    const chain = ['RevocationRequested', 'ServiceAccountChanged', 'TokenMismatch', 'AnchorMissing', 'AudiencesChanged', 'ExpirationChanged', 'Expired'];
    const faults = chain.map((reason) => FAULTS.find((f) => f.reason === reason) as Fault);
    for (let i = 0; i < faults.length; i++) {
      expect(needsNewToken(withFaults(...faults.slice(i)))?.reason).toBe(chain[i]);
    }
  });

  it('gives RevocationRequested, which revokes earlier tokens, over a due renewal', () => {
    const input = withFaults(FAULTS[1] as Fault);
    input.now = at('2025-01-01T14:00:00Z');
    expect(needsNewToken(input)).toMatchObject({ reason: 'RevocationRequested', revokeEarlierTokens: true, repair: false });
  });

  it('does not look at the Secret for ServiceAccount changes when the Secret has no readable token', () => {
    for (const claims of [undefined, 'unreadable'] as const) {
      const input = steady();
      input.secret = { ...input.secret, claims };
      input.desired.serviceAccountName = 'someone-else';
      expect(needsNewToken(input)?.reason).toBe(claims === undefined ? 'TokenMissing' : 'TokenUnreadable');
    }
  });

  it('detects a change of ServiceAccount name alone', () => {
    const input = steady();
    input.desired.serviceAccountName = 'alice-example-com-ff8d9819fc0e12bf';
    expect(needsNewToken(input)).toMatchObject({ reason: 'ServiceAccountChanged', revokeEarlierTokens: true, repair: false });
  });

  it('sees a token without a bound Secret name as a mismatch', () => {
    const input = steady();
    delete claimsOf(input).boundSecretName;
    expect(needsNewToken(input)?.reason).toBe('TokenMismatch');
  });

  describe('audiences', () => {
    it('compares them as sets: order does not matter', () => {
      const input = steady();
      input.desired.audiences = ['models-gateway', 'billing'];
      expect(needsNewToken(input)).toBeUndefined();
    });

    it('fires when the desired audiences widen, narrow or differ', () => {
      for (const audiences of [['billing', 'models-gateway', 'x'], ['billing'], ['billing', 'x']]) {
        const input = steady();
        input.desired.audiences = audiences;
        expect(needsNewToken(input)?.reason, audiences.join()).toBe('AudiencesChanged');
      }
    });

    it('does not count duplicates as members', () => {
      const input = steady();
      claimsOf(input).audiences = ['billing', 'billing'];
      expect(needsNewToken(input)?.reason).toBe('AudiencesChanged');
    });

    it("with the API server's default audiences, compares what was requested, not the token's own audiences", () => {
      const input = steady();
      input.desired.audiences = [];
      claimsOf(input).audiences = ['https://kubernetes.default.svc.cluster.local'];
      input.secret = { ...input.secret, claims: claimsOf(input), requestedAudiences: '' };
      expect(needsNewToken(input)).toBeUndefined();
      input.secret.requestedAudiences = undefined;
      expect(needsNewToken(input)).toBeUndefined();
      input.secret.requestedAudiences = 'models-gateway';
      expect(needsNewToken(input)?.reason).toBe('AudiencesChanged');
    });
  });

  describe('expiration', () => {
    it('compares the requested lifetime, not the granted one (the API server may shorten it)', () => {
      const input = steady();
      claimsOf(input).expiresAtMs = claimsOf(input).issuedAtMs + 3600_000;
      expect(needsNewToken(input)).toBeUndefined();
    });

    it('does not fire without the annotation of the requested lifetime', () => {
      const input = steady();
      input.desired.expirationSeconds = 600;
      input.secret = { ...input.secret, claims: claimsOf(input), requestedExpirationSeconds: undefined };
      expect(needsNewToken(input)).toBeUndefined();
    });

    it('fires at the expiry instant exactly, and for a token long expired', () => {
      const input = steady();
      input.now = at('2025-01-01T15:00:00Z');
      expect(needsNewToken(input)?.reason).toBe('Expired');
      input.now = at('2025-02-01T00:00:00Z');
      expect(needsNewToken(input)?.reason).toBe('Expired');
      input.now = at('2025-01-01T15:00:00Z') - 1;
      expect(needsNewToken(input)?.reason).toBe('RenewalDue');
    });
  });
});

describe('planRetention', () => {
  const GRACE = 5 * MINUTE;
  // Tokens newest first, as in status. The newest was issued at 12:00; the previous one expires at
  // 13:20, after the grace period that its successor's issue started (12:00 + 5m = 12:05).
  const newest = issued('t3', '2025-01-01T12:00:00Z', '2025-01-01T16:00:00Z', '2025-01-01T14:40:00Z');
  const previous = issued('t2', '2025-01-01T09:20:00Z', '2025-01-01T13:20:00Z', '2025-01-01T12:00:00Z');
  const nearlyExpired = issued('t1', '2025-01-01T08:03:00Z', '2025-01-01T12:03:00Z', '2025-01-01T10:43:00Z');

  it('plans nothing without tokens', () => {
    expect(planRetention([], at('2025-01-01T12:00:00Z'), GRACE, false)).toEqual({ keep: [], revoke: [] });
    expect(planRetention([], at('2025-01-01T12:00:00Z'), GRACE, true)).toEqual({ keep: [], revoke: [] });
  });

  it('always keeps the newest token, even expired, even when revoking earlier ones', () => {
    for (const revokeEarlier of [false, true]) {
      expect(planRetention([newest], at('2025-01-02T00:00:00Z'), GRACE, revokeEarlier)).toEqual({ keep: [newest], revoke: [] });
    }
  });

  it('keeps the previous token until the grace period after its successor was issued ends', () => {
    expect(planRetention([newest, previous], at('2025-01-01T12:01:00Z'), GRACE, false)).toEqual({
      keep: [newest, previous],
      revoke: [],
      nextRevocationAt: at('2025-01-01T12:05:00Z'),
    });
  });

  it('revokes it at the end of the grace period exactly, and after', () => {
    for (const now of ['2025-01-01T12:05:00Z', '2025-01-01T13:00:00Z']) {
      expect(planRetention([newest, previous], at(now), GRACE, false)).toEqual({ keep: [newest], revoke: ['t2'] });
    }
    expect(planRetention([newest, previous], at('2025-01-01T12:05:00Z') - 1, GRACE, false).revoke).toEqual([]);
  });

  it('lets go of an earlier token at its expiry when that comes before the end of the grace period', () => {
    expect(planRetention([newest, nearlyExpired], at('2025-01-01T12:01:00Z'), GRACE, false)).toEqual({
      keep: [newest, nearlyExpired],
      revoke: [],
      nextRevocationAt: at('2025-01-01T12:03:00Z'),
    });
    expect(planRetention([newest, nearlyExpired], at('2025-01-01T12:03:00Z'), GRACE, false)).toEqual({ keep: [newest], revoke: ['t1'] });
  });

  describe('with rotations faster than the grace period', () => {
    // t1 was superseded by t2 at 12:00, t2 by t3 at 12:01.
    const t3 = issued('t3', '2025-01-01T12:01:00Z', '2025-01-01T16:01:00Z', '2025-01-01T14:41:00Z');
    const t2 = issued('t2', '2025-01-01T12:00:00Z', '2025-01-01T16:00:00Z', '2025-01-01T14:40:00Z');
    const t1 = issued('t1', '2025-01-01T08:00:00Z', '2025-01-01T12:04:00Z', '2025-01-01T10:40:00Z');
    const t1Long = { ...t1, expiresAt: '2025-01-01T16:00:00Z' };

    it("ends each earlier token's grace from its own successor's issue, not the newest's", () => {
      expect(planRetention([t3, t2, t1Long], at('2025-01-01T12:02:00Z'), GRACE, false)).toEqual({
        keep: [t3, t2, t1Long],
        revoke: [],
        nextRevocationAt: at('2025-01-01T12:05:00Z'),
      });
      expect(planRetention([t3, t2, t1Long], at('2025-01-01T12:05:00Z'), GRACE, false)).toEqual({
        keep: [t3, t2],
        revoke: ['t1'],
        nextRevocationAt: at('2025-01-01T12:06:00Z'),
      });
      expect(planRetention([t3, t2, t1Long], at('2025-01-01T12:06:00Z'), GRACE, false)).toEqual({ keep: [t3], revoke: ['t2', 't1'] });
    });

    it('wakes for the first of several earlier tokens to go, keeping the order newest first', () => {
      expect(planRetention([t3, t2, t1], at('2025-01-01T12:02:00Z'), GRACE, false)).toEqual({
        keep: [t3, t2, t1],
        revoke: [],
        nextRevocationAt: at('2025-01-01T12:04:00Z'),
      });
    });

    it('revokes every earlier token at once when asked to', () => {
      expect(planRetention([t3, t2, t1Long], at('2025-01-01T12:02:00Z'), GRACE, true)).toEqual({ keep: [t3], revoke: ['t2', 't1'] });
    });

    it('never lets a sequence of rotations keep an old token past its own grace period', () => {
      // Rotations every minute for ten minutes: only the tokens superseded less than 5m ago remain.
      const chain = Array.from({ length: 11 }, (_, k) => {
        const issuedAt = at('2025-01-01T12:00:00Z') + (10 - k) * MINUTE;
        return issued(`r${10 - k}`, new Date(issuedAt).toISOString(), new Date(issuedAt + 4 * 60 * MINUTE).toISOString(), new Date(issuedAt + 160 * MINUTE).toISOString());
      });
      const plan = planRetention(chain, at('2025-01-01T12:10:00Z'), GRACE, false);
      // r_k was superseded at 12:(k+1); it stays while 12:10 < 12:(k+1) + 5m, i.e. k >= 5.
      expect(plan.keep.map((t) => t.id)).toEqual(['r10', 'r9', 'r8', 'r7', 'r6', 'r5']);
      expect(plan.revoke).toEqual(['r4', 'r3', 'r2', 'r1', 'r0']);
      expect(plan.nextRevocationAt).toBe(at('2025-01-01T12:11:00Z'));
    });
  });

  it('revokes earlier tokens at once with a zero grace period', () => {
    expect(planRetention([newest, previous], at('2025-01-01T12:00:00Z'), 0, false)).toEqual({ keep: [newest], revoke: ['t2'] });
  });

  it('revokes an earlier token already expired', () => {
    const expired = issued('t0', '2025-01-01T06:00:00Z', '2025-01-01T10:00:00Z', '2025-01-01T08:40:00Z');
    expect(planRetention([newest, expired], at('2025-01-01T12:01:00Z'), GRACE, false)).toEqual({ keep: [newest], revoke: ['t0'] });
  });

  it('partitions the tokens: the newest kept, every other kept until a later time or revoked', () => {
    const minuteOf = (m: number) => new Date(at('2025-01-01T00:00:00Z') + m * MINUTE).toISOString();
    const span = fc.tuple(fc.integer({ min: 0, max: 600 }), fc.integer({ min: 10, max: 600 }));
    fc.assert(
      fc.property(
        fc.array(span, { minLength: 1, maxLength: 5 }),
        fc.integer({ min: 0, max: 1200 }),
        fc.integer({ min: 0, max: 30 }),
        fc.boolean(),
        (spans, nowMinute, graceMinutes, revokeEarlier) => {
          const tokens = [...spans].sort((a, b) => b[0] - a[0]).map(([start, life], i) => issued(`t${i}`, minuteOf(start), minuteOf(start + life), minuteOf(start + life)));
          const now = at(minuteOf(nowMinute));
          const plan = planRetention(tokens, now, graceMinutes * MINUTE, revokeEarlier);
          expect(plan.keep[0]).toBe(tokens[0]);
          expect([...plan.keep.map((t) => t.id), ...plan.revoke].sort()).toEqual(tokens.map((t) => t.id).sort());
          const indexes = plan.keep.map((t) => tokens.indexOf(t));
          expect(indexes).toEqual([...indexes].sort((a, b) => a - b));
          if (revokeEarlier) expect(plan.keep).toHaveLength(1);
          const endOf = (i: number) => Math.min(at((tokens[i - 1] as IssuedToken).issuedAt) + graceMinutes * MINUTE, at((tokens[i] as IssuedToken).expiresAt));
          const ends = indexes.slice(1).map(endOf);
          for (const end of ends) expect(end).toBeGreaterThan(now);
          expect(plan.nextRevocationAt).toBe(ends.length > 0 ? Math.min(...ends) : undefined);
          if (!revokeEarlier) {
            for (const id of plan.revoke) expect(endOf(tokens.findIndex((t) => t.id === id))).toBeLessThanOrEqual(now);
          }
        },
      ),
    );
  });
});

describe('a tier move while the Secret is gone', () => {
  it('still revokes earlier tokens at once, from the ServiceAccount recorded in status', () => {
    const input = steady();
    input.secret = undefined;
    input.recordedServiceAccount = { namespace: 'old-tier-ns', name: input.desired.serviceAccountName, uid: 'old-uid' };
    expect(needsNewToken(input)).toMatchObject({ reason: 'ServiceAccountChanged', revokeEarlierTokens: true });
  });

  it('treats a recreated ServiceAccount (same name, new uid) as a subject revocation', () => {
    const input = steady();
    input.secret = undefined;
    input.recordedServiceAccount = { namespace: input.desired.serviceAccountNamespace, name: input.desired.serviceAccountName, uid: 'gone-uid' };
    expect(needsNewToken(input)).toMatchObject({ reason: 'ServiceAccountChanged', revokeEarlierTokens: true, repair: true });
  });

  it('says nothing of the ServiceAccount when status records the one in use', () => {
    const input = steady();
    input.recordedServiceAccount = { namespace: input.desired.serviceAccountNamespace, name: input.desired.serviceAccountName, uid: input.desired.serviceAccountUid };
    expect(needsNewToken(input)).toBeUndefined();
  });
});

describe('planRetention keeps at most MAX_TOKENS', () => {
  it('rotations every 10s under a 5m grace period: the 8 newest kept, older ones revoked early and counted', () => {
    const start = at('2025-01-01T12:00:00Z');
    const tokens = Array.from({ length: 12 }, (_, i) => {
      const t = start + (11 - i) * 10 * SECOND;
      return issued(`t${11 - i}`, new Date(t).toISOString(), new Date(t + 10 * MINUTE).toISOString(), new Date(t + 10 * SECOND).toISOString());
    });
    const plan = planRetention(tokens, start + 111 * SECOND, 5 * MINUTE, false);
    expect(plan.keep).toHaveLength(MAX_TOKENS);
    expect(plan.keep.map((t) => t.id)).toEqual(tokens.slice(0, MAX_TOKENS).map((t) => t.id));
    expect(plan.revoke).toEqual(tokens.slice(MAX_TOKENS).map((t) => t.id).reverse());
    expect(plan.cut).toBe(4);
    // The next to go is the oldest kept, at the end of its grace period.
    expect(plan.nextRevocationAt).toBe(Date.parse(tokens[MAX_TOKENS - 2]?.issuedAt as string) + 5 * MINUTE);
  });

  it('never keeps more, whatever the tokens and the grace period', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 3600 }), { maxLength: 30 }), fc.integer({ min: 0, max: 7200 }), (gaps, graceS) => {
        let t = at('2025-01-01T12:00:00Z');
        const tokens = gaps.map((gap, i) => {
          t -= gap * SECOND;
          return issued(`t${i}`, new Date(t).toISOString(), new Date(t + 4 * HOUR).toISOString(), new Date(t + HOUR).toISOString());
        });
        const plan = planRetention(tokens, at('2025-01-01T12:00:00Z'), graceS * SECOND, false);
        return plan.keep.length <= MAX_TOKENS && plan.keep.length + plan.revoke.length === tokens.length;
      }),
    );
  });
});
