/**
 * src/policy/token-policy.ts: the tier's token policy, tightened by the tenant's TenantBinding and
 * narrowed by the client's request (audiences narrowed never widened; lifetime capped and the cap
 * reported; renewBefore as a duration or a percentage; the grace period), and the renewal time.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { API_VERSION, ClientTokenRequest, TenantBinding, Tier, type TierTokenPolicy } from '../../src/api/index.ts';
import { effectiveTokenPolicy, MIN_ROTATION_INTERVAL_MS, renewalTime, type EffectiveTokenPolicy, type PolicyResult } from '../../src/policy/token-policy.ts';

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;

function tier(token: z.input<typeof TierTokenPolicy> = {}, name = 'premium'): Tier {
  return Tier.parse({ apiVersion: API_VERSION, kind: 'Tier', metadata: { name }, spec: { level: 20, token } });
}

function binding(maxExpiration?: string, name = 'ml-team-premium'): TenantBinding {
  return TenantBinding.parse({
    apiVersion: API_VERSION,
    kind: 'TenantBinding',
    metadata: { name, namespace: 'team-a' },
    spec: {
      tierRef: { name: 'premium' },
      subjects: [{ kind: 'User', name: 'alice@example.com' }],
      ...(maxExpiration !== undefined ? { token: { maxExpiration } } : {}),
    },
  });
}

function request(fields: z.input<typeof ClientTokenRequest>): ClientTokenRequest {
  return ClientTokenRequest.parse(fields);
}

function policyOf(result: PolicyResult): EffectiveTokenPolicy {
  if (!result.ok) throw new Error(`expected a policy, got ${result.reason}: ${result.message}`);
  return result.policy;
}

const GATEWAY_TIER = tier({ audiences: ['models-gateway', 'billing'], defaultExpiration: '4h', maxExpiration: '24h', renewBefore: '33%', gracePeriod: '5m' });

describe('effectiveTokenPolicy: the tier alone', () => {
  it('applies the schema defaults: 1h lifetime, renew 33% before, 5m grace, API server audiences', () => {
    expect(policyOf(effectiveTokenPolicy(tier(), undefined, undefined))).toEqual({
      audiences: [],
      expirationSeconds: 3600,
      renewBeforeMs: Math.floor((HOUR * 33) / 100),
      gracePeriodMs: 5 * MINUTE,
      notes: [],
    });
  });

  it("takes the tier's audiences, sorted, and its default expiration", () => {
    expect(policyOf(effectiveTokenPolicy(GATEWAY_TIER, undefined, undefined))).toEqual({
      audiences: ['billing', 'models-gateway'],
      expirationSeconds: 4 * 3600,
      renewBeforeMs: Math.floor((4 * HOUR * 33) / 100),
      gracePeriodMs: 5 * MINUTE,
      notes: [],
    });
  });

  it('does not change the tier object', () => {
    const t = tier({ audiences: ['z', 'a'] });
    effectiveTokenPolicy(t, undefined, undefined);
    expect(t.spec.token.audiences).toEqual(['z', 'a']);
  });

  it.each([
    ['90s', 90 * SECOND],
    ['0s', 0],
    ['1h', HOUR],
  ])('reads the gracePeriod %s', (gracePeriod, ms) => {
    expect(policyOf(effectiveTokenPolicy(tier({ gracePeriod }), undefined, undefined)).gracePeriodMs).toBe(ms);
  });
});

describe('effectiveTokenPolicy: audiences', () => {
  it('lets a client narrow the audiences', () => {
    expect(policyOf(effectiveTokenPolicy(GATEWAY_TIER, undefined, request({ audiences: ['models-gateway'] }))).audiences).toEqual(['models-gateway']);
    expect(policyOf(effectiveTokenPolicy(GATEWAY_TIER, undefined, request({ audiences: ['models-gateway', 'billing'] }))).audiences).toEqual([
      'billing',
      'models-gateway',
    ]);
  });

  it("treats an empty list as all of the tier's audiences", () => {
    expect(policyOf(effectiveTokenPolicy(GATEWAY_TIER, undefined, request({ audiences: [] }))).audiences).toEqual(['billing', 'models-gateway']);
    expect(policyOf(effectiveTokenPolicy(GATEWAY_TIER, undefined, request({ expiration: '1h' }))).audiences).toEqual(['billing', 'models-gateway']);
  });

  it('refuses a client that widens the audiences with AudienceNotAllowed, naming only the audiences outside', () => {
    const result = effectiveTokenPolicy(GATEWAY_TIER, undefined, request({ audiences: ['models-gateway', 'admin-api', 'vault'] }));
    expect(result).toEqual({
      ok: false,
      reason: 'AudienceNotAllowed',
      message: `audiences "admin-api", "vault" are not among tier "premium"'s audiences [models-gateway, billing]`,
    });
  });

  it("refuses any audience when the tier uses the API server's defaults (an empty list)", () => {
    const result = effectiveTokenPolicy(tier({ audiences: [] }), undefined, request({ audiences: ['https://kubernetes.default.svc'] }));
    expect(result.ok).toBe(false);
    expect(!result.ok && result.reason).toBe('AudienceNotAllowed');
  });

  it('compares audiences exactly (case and whitespace matter)', () => {
    expect(effectiveTokenPolicy(GATEWAY_TIER, undefined, request({ audiences: ['Models-Gateway'] })).ok).toBe(false);
    expect(effectiveTokenPolicy(GATEWAY_TIER, undefined, request({ audiences: ['models-gateway '] })).ok).toBe(false);
  });

  it('never widens: the result is always within the tier audiences, or a refusal', () => {
    const pool = ['a', 'b', 'c', 'd'];
    fc.assert(
      fc.property(fc.subarray(pool), fc.subarray(pool), (tierAudiences, asked) => {
        const result = effectiveTokenPolicy(tier({ audiences: tierAudiences }), undefined, request({ audiences: asked }));
        const widens = asked.some((a) => !tierAudiences.includes(a));
        expect(result.ok).toBe(!widens);
        if (result.ok) {
          expect(result.policy.audiences).toEqual([...(asked.length > 0 ? asked : tierAudiences)].sort());
        }
      }),
    );
  });
});

describe('effectiveTokenPolicy: expiration', () => {
  it('grants a requested expiration within the maximum, without a note', () => {
    const p = policyOf(effectiveTokenPolicy(GATEWAY_TIER, undefined, request({ expiration: '2h' })));
    expect(p.expirationSeconds).toBe(7200);
    expect(p.notes).toEqual([]);
  });

  it("grants exactly the tier's maximum without a note", () => {
    const p = policyOf(effectiveTokenPolicy(GATEWAY_TIER, undefined, request({ expiration: '24h' })));
    expect(p.expirationSeconds).toBe(86400);
    expect(p.notes).toEqual([]);
  });

  it("caps a longer request at the tier's maximum and says so", () => {
    const p = policyOf(effectiveTokenPolicy(GATEWAY_TIER, undefined, request({ expiration: '48h' })));
    expect(p.expirationSeconds).toBe(86400);
    expect(p.notes).toEqual(['expiration 48h capped to 24h by tier "premium"']);
  });

  it("caps at a tighter TenantBinding maximum and names the binding", () => {
    const p = policyOf(effectiveTokenPolicy(GATEWAY_TIER, binding('8h'), request({ expiration: '12h' })));
    expect(p.expirationSeconds).toBe(8 * 3600);
    expect(p.notes).toEqual(['expiration 12h capped to 8h by TenantBinding "ml-team-premium"']);
  });

  it("ignores a TenantBinding maximum looser than the tier's (it may only tighten)", () => {
    const p = policyOf(effectiveTokenPolicy(GATEWAY_TIER, binding('72h'), request({ expiration: '48h' })));
    expect(p.expirationSeconds).toBe(86400);
    expect(p.notes).toEqual(['expiration 48h capped to 24h by tier "premium"']);
  });

  it('names the tier when the TenantBinding maximum equals it', () => {
    const p = policyOf(effectiveTokenPolicy(GATEWAY_TIER, binding('24h'), request({ expiration: '30h' })));
    expect(p.notes).toEqual(['expiration 30h capped to 24h by tier "premium"']);
  });

  it("caps the tier's default expiration too when the TenantBinding is tighter", () => {
    const p = policyOf(effectiveTokenPolicy(GATEWAY_TIER, binding('2h'), undefined));
    expect(p.expirationSeconds).toBe(7200);
    expect(p.notes).toEqual(['expiration 4h capped to 2h by TenantBinding "ml-team-premium"']);
  });

  it('leaves a request under the TenantBinding maximum alone', () => {
    const p = policyOf(effectiveTokenPolicy(GATEWAY_TIER, binding('8h'), request({ expiration: '1h' })));
    expect(p.expirationSeconds).toBe(3600);
    expect(p.notes).toEqual([]);
  });

  it('accepts a TenantBinding without a token policy', () => {
    const p = policyOf(effectiveTokenPolicy(GATEWAY_TIER, binding(), request({ expiration: '48h' })));
    expect(p.expirationSeconds).toBe(86400);
  });

  it('writes mixed units in the note in their shortest form', () => {
    const p = policyOf(effectiveTokenPolicy(tier({ defaultExpiration: '1h', maxExpiration: '1h30m' }), undefined, request({ expiration: '120m' })));
    expect(p.notes).toEqual(['expiration 2h capped to 1h30m by tier "premium"']);
  });

  it('rounds the lifetime down to whole seconds', () => {
    expect(policyOf(effectiveTokenPolicy(GATEWAY_TIER, undefined, request({ expiration: '10m1500ms' }))).expirationSeconds).toBe(601);
  });
});

describe('effectiveTokenPolicy: renewBefore', () => {
  it("takes the client's renewBefore over the tier's, as a duration or a percentage", () => {
    expect(policyOf(effectiveTokenPolicy(GATEWAY_TIER, undefined, request({ renewBefore: '1h' }))).renewBeforeMs).toBe(HOUR);
    expect(policyOf(effectiveTokenPolicy(GATEWAY_TIER, undefined, request({ renewBefore: '25%' }))).renewBeforeMs).toBe(HOUR);
  });

  it("takes the tier's duration form", () => {
    expect(policyOf(effectiveTokenPolicy(tier({ defaultExpiration: '4h', renewBefore: '30m' }), undefined, undefined)).renewBeforeMs).toBe(30 * MINUTE);
  });

  it('takes a percentage of the capped lifetime, not of the request', () => {
    const p = policyOf(effectiveTokenPolicy(GATEWAY_TIER, undefined, request({ expiration: '48h', renewBefore: '50%' })));
    expect(p.renewBeforeMs).toBe(12 * HOUR);
  });

  it('falls back to a third of the lifetime, with a note, when a cap makes renewBefore not shorter than the lifetime', () => {
    const t = tier({ defaultExpiration: '4h', maxExpiration: '24h', renewBefore: '2h' });
    const p = policyOf(effectiveTokenPolicy(t, binding('1h'), undefined));
    expect(p.expirationSeconds).toBe(3600);
    expect(p.renewBeforeMs).toBe(20 * MINUTE);
    expect(p.notes).toEqual([
      'expiration 4h capped to 1h by TenantBinding "ml-team-premium"',
      'renewBefore 2h is not shorter than the lifetime; renewing at two thirds of it',
    ]);
  });

  it('falls back as well when renewBefore equals the capped lifetime', () => {
    const p = policyOf(effectiveTokenPolicy(GATEWAY_TIER, binding('2h'), request({ expiration: '6h', renewBefore: '2h' })));
    expect(p.expirationSeconds).toBe(7200);
    expect(p.renewBeforeMs).toBe(40 * MINUTE);
    expect(p.notes).toHaveLength(2);
    expect(p.notes[1]).toContain('renewBefore 2h');
  });

  it("falls back when the client's expiration is shorter than the tier's fixed renewBefore (no cap involved)", () => {
    const t = tier({ defaultExpiration: '4h', renewBefore: '1h' });
    const p = policyOf(effectiveTokenPolicy(t, undefined, request({ expiration: '30m' })));
    expect(p.expirationSeconds).toBe(1800);
    expect(p.renewBeforeMs).toBe(10 * MINUTE);
    expect(p.notes).toEqual(['renewBefore 1h is not shorter than the lifetime; renewing at two thirds of it']);
  });

  it('keeps a renewBefore just below the lifetime', () => {
    const p = policyOf(effectiveTokenPolicy(GATEWAY_TIER, binding('2h'), request({ renewBefore: '119m' })));
    expect(p.renewBeforeMs).toBe(119 * MINUTE);
    expect(p.notes).toEqual(['expiration 4h capped to 2h by TenantBinding "ml-team-premium"']);
  });

  it('for any valid inputs: the lifetime is within every maximum and renewBefore is strictly inside it', () => {
    const minutes = (lo: number, hi: number) => fc.integer({ min: lo, max: hi });
    const renew = fc.oneof(fc.integer({ min: 1, max: 99 }).map((p) => `${p}%`), minutes(1, 3000).map((m) => `${m}m`));
    fc.assert(
      fc.property(
        minutes(10, 600),
        minutes(0, 1500),
        fc.option(minutes(10, 2000), { nil: undefined }),
        fc.option(minutes(10, 3000), { nil: undefined }),
        renew,
        fc.option(renew, { nil: undefined }),
        (defaultMin, extraMax, tenantMaxMin, askedMin, tierRenew, askedRenew) => {
          const maxMin = defaultMin + extraMax;
          // The CRD refuses a tier renewBefore not shorter than its defaultExpiration.
          fc.pre(tierRenew.endsWith('%') || Number.parseInt(tierRenew, 10) < defaultMin);
          const t = tier({ defaultExpiration: `${defaultMin}m`, maxExpiration: `${maxMin}m`, renewBefore: tierRenew });
          const b = binding(tenantMaxMin === undefined ? undefined : `${tenantMaxMin}m`);
          const req = request({ ...(askedMin !== undefined ? { expiration: `${askedMin}m` } : {}), ...(askedRenew !== undefined ? { renewBefore: askedRenew } : {}) });
          const p = policyOf(effectiveTokenPolicy(t, b, req));
          const lifetimeMs = p.expirationSeconds * SECOND;
          const cap = Math.min(maxMin, tenantMaxMin ?? Infinity) * MINUTE;
          const wanted = (askedMin ?? defaultMin) * MINUTE;
          expect(lifetimeMs).toBe(Math.min(wanted, cap));
          expect(lifetimeMs).toBeGreaterThanOrEqual(10 * MINUTE);
          expect(p.renewBeforeMs).toBeGreaterThan(0);
          expect(p.renewBeforeMs).toBeLessThan(lifetimeMs);
          expect(p.notes.some((n) => n.startsWith('expiration '))).toBe(wanted > cap);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('renewalTime', () => {
  it('is renewBefore ahead of expiry', () => {
    expect(renewalTime(0, 4 * HOUR, HOUR)).toBe(3 * HOUR);
    expect(renewalTime(1_000, 11_000, 3_000)).toBe(8_000);
  });

  it('is the expiry when renewBefore is zero', () => {
    expect(renewalTime(1_000, 11_000, 0)).toBe(11_000);
  });

  it('is never earlier than the issue time', () => {
    expect(renewalTime(1_000, 11_000, 10_000)).toBe(1_000);
    expect(renewalTime(1_000, 11_000, 50_000)).toBe(1_000);
  });
});

describe('the rotation floor', () => {
  it('a renewBefore that would renew sooner than 10s after issue is clamped, and the client told', () => {
    const result = effectiveTokenPolicy(tier({ defaultExpiration: '1h', renewBefore: '9m58s' }), undefined, ClientTokenRequest.parse({ expiration: '10m' }));
    const policy = (result as Extract<PolicyResult, { ok: true }>).policy;
    expect(10 * MINUTE - policy.renewBeforeMs).toBe(MIN_ROTATION_INTERVAL_MS);
    expect(policy.notes).toContain('renewBefore 9m58s of a 10m token would renew it less than 10s after issue; renewing 10s after issue');
  });

  it('no tier, binding and client combination renews sooner than the floor', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 10, max: 1440 }),
        fc.integer({ min: 10, max: 1440 }),
        fc.oneof(fc.integer({ min: 1, max: 99 }).map((p) => `${p}%`), fc.integer({ min: 1, max: 86_399 }).map((s) => `${s}s`)),
        fc.option(fc.integer({ min: 10, max: 1440 })),
        (maxM, askM, renewBefore, tenantM) => {
          const t = tier({ defaultExpiration: '10m', maxExpiration: `${maxM}m`, renewBefore: '33%' });
          const b = tenantM === null ? undefined : binding(`${tenantM}m`);
          const result = effectiveTokenPolicy(t, b, ClientTokenRequest.parse({ expiration: `${askM}m`, renewBefore }));
          if (!result.ok) return true;
          return result.policy.expirationSeconds * 1000 - result.policy.renewBeforeMs >= MIN_ROTATION_INTERVAL_MS;
        },
      ),
    );
  });
});
