/**
 * src/policy/tier-resolution.ts: which tier a client gets (design brief, "What the operator does":
 * the requested tierRef if the subject qualifies; otherwise the highest level among its TenantBindings
 * and the tiers whose groups it is in; otherwise the default tier; otherwise no tier). Quotas:
 * policy-tier-quota.test.ts.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { API_VERSION, ClientSubject, TenantBinding, Tier, type TierSpec } from '../../src/api/index.ts';
import { bindingMatches, defaultTier, resolveTier, type ResolutionInput } from '../../src/policy/tier-resolution.ts';

function tier(name: string, spec: z.input<typeof TierSpec> = {}): Tier {
  return Tier.parse({ apiVersion: API_VERSION, kind: 'Tier', metadata: { name }, spec });
}

type SubjectRef = `User:${string}` | `Group:${string}`;

function binding(name: string, tierName: string, subjects: SubjectRef[], spec: { maxClients?: number } = {}): TenantBinding {
  return TenantBinding.parse({
    apiVersion: API_VERSION,
    kind: 'TenantBinding',
    metadata: { name, namespace: 'team-a' },
    spec: {
      tierRef: { name: tierName },
      subjects: subjects.map((s) => {
        const [kind, ...rest] = s.split(':');
        return { kind, name: rest.join(':') };
      }),
      ...spec,
    },
  });
}

function subject(user: string, groups: string[] = []): ClientSubject {
  return ClientSubject.parse({ user, groups });
}

const ALICE = subject('alice@example.com', ['ml-engineers', 'premium-users']);
const BOB = subject('bob@example.com');

function resolve(input: Partial<ResolutionInput> & Pick<ResolutionInput, 'tiers'>) {
  return resolveTier({ subject: ALICE, bindings: [], ...input });
}

/** The resolved tier name and source, or the refusal reason. */
function outcome(input: Partial<ResolutionInput> & Pick<ResolutionInput, 'tiers'>): string {
  const r = resolve(input);
  return r.resolved ? `${r.tier.metadata.name} via ${r.source}${r.binding ? ` (binding ${r.binding.metadata.name})` : ''}` : r.reason;
}

describe('bindingMatches', () => {
  it('matches a User subject by the exact user name', () => {
    expect(bindingMatches(binding('b', 't', ['User:alice@example.com']), ALICE)).toBe(true);
    expect(bindingMatches(binding('b', 't', ['User:Alice@example.com']), ALICE)).toBe(false);
    expect(bindingMatches(binding('b', 't', ['User:alice']), ALICE)).toBe(false);
  });

  it('matches a Group subject by one of the groups', () => {
    expect(bindingMatches(binding('b', 't', ['Group:premium-users']), ALICE)).toBe(true);
    expect(bindingMatches(binding('b', 't', ['Group:ml-engineers']), ALICE)).toBe(true);
    expect(bindingMatches(binding('b', 't', ['Group:other']), ALICE)).toBe(false);
    expect(bindingMatches(binding('b', 't', ['Group:premium-users']), BOB)).toBe(false);
  });

  it('does not confuse a user with a group of the same name', () => {
    const carol = subject('carol', ['admins']);
    expect(bindingMatches(binding('b', 't', ['Group:carol']), carol)).toBe(false);
    expect(bindingMatches(binding('b', 't', ['User:admins']), carol)).toBe(false);
  });

  it('matches when any one of several subjects does', () => {
    expect(bindingMatches(binding('b', 't', ['User:someone', 'Group:nobody', 'Group:ml-engineers']), ALICE)).toBe(true);
    expect(bindingMatches(binding('b', 't', ['User:someone', 'Group:nobody']), ALICE)).toBe(false);
  });
});

describe('defaultTier', () => {
  it('is undefined without a default tier', () => {
    expect(defaultTier([])).toBeUndefined();
    expect(defaultTier([tier('free'), tier('premium', { level: 20 })])).toBeUndefined();
  });

  it('is the tier marked default', () => {
    expect(defaultTier([tier('premium', { level: 20 }), tier('free', { default: true }), tier('basic', { level: 5 })])?.metadata.name).toBe('free');
  });

  it('with several (a misconfiguration) is the highest level, then the first name', () => {
    expect(defaultTier([tier('a', { default: true, level: 1 }), tier('b', { default: true, level: 9 })])?.metadata.name).toBe('b');
    expect(defaultTier([tier('zeta', { default: true }), tier('alpha', { default: true })])?.metadata.name).toBe('alpha');
    expect(defaultTier([tier('alpha', { default: true }), tier('zeta', { default: true })])?.metadata.name).toBe('alpha');
  });
});

describe('resolveTier without a requested tier', () => {
  const free = tier('free', { default: true });
  const basic = tier('basic', { level: 10, groups: ['ml-engineers'] });
  const premium = tier('premium', { level: 20, groups: ['premium-users'] });
  const enterprise = tier('enterprise', { level: 30 });

  it('refuses with NoMatchingTier when there are no tiers', () => {
    const r = resolve({ tiers: [] });
    expect(r).toMatchObject({ resolved: false, reason: 'NoMatchingTier' });
    expect(r.message).toContain('alice@example.com');
  });

  it('refuses with NoMatchingTier when nothing matches and there is no default', () => {
    expect(resolve({ tiers: [basic, premium, enterprise], subject: BOB }).resolved).toBe(false);
    expect(outcome({ tiers: [basic, premium, enterprise], subject: BOB })).toBe('NoMatchingTier');
  });

  it('gives the default tier when nothing matches', () => {
    const r = resolve({ tiers: [basic, free, premium], subject: BOB });
    expect(r).toMatchObject({ resolved: true, source: 'Default', message: 'no tier matches; default tier "free"' });
    expect(r.resolved && r.tier).toBe(free);
    expect(r.resolved && r.binding).toBeUndefined();
  });

  it("gives a tier through the tier's own groups, source Tier/<name>", () => {
    const r = resolve({ tiers: [free, basic], subject: subject('u', ['ml-engineers']) });
    expect(r).toMatchObject({ resolved: true, source: 'Tier/basic', message: 'tier "basic" granted by Tier/basic' });
    expect(r.resolved && r.binding).toBeUndefined();
  });

  it('gives a tier through a TenantBinding naming the user, source TenantBinding/<name>', () => {
    const b = binding('ml-team-enterprise', 'enterprise', ['User:bob@example.com']);
    const r = resolve({ tiers: [free, enterprise], bindings: [b], subject: BOB });
    expect(r).toMatchObject({ resolved: true, source: 'TenantBinding/ml-team-enterprise' });
    expect(r.resolved && r.tier).toBe(enterprise);
    expect(r.resolved && r.binding).toBe(b);
  });

  it('gives a tier through a TenantBinding naming one of the groups', () => {
    const b = binding('ml', 'enterprise', ['Group:ml-engineers']);
    expect(outcome({ tiers: [free, enterprise], bindings: [b] })).toBe('enterprise via TenantBinding/ml (binding ml)');
  });

  it('ignores a TenantBinding whose tier does not exist', () => {
    const b = binding('ghost', 'platinum', ['User:bob@example.com']);
    expect(outcome({ tiers: [free, basic], bindings: [b], subject: BOB })).toBe('free via Default');
    expect(outcome({ tiers: [basic], bindings: [b], subject: BOB })).toBe('NoMatchingTier');
  });

  it('ignores a TenantBinding that does not match the subject', () => {
    const b = binding('others', 'enterprise', ['User:carol', 'Group:carols']);
    expect(outcome({ tiers: [free, enterprise], bindings: [b], subject: BOB })).toBe('free via Default');
  });

  it('takes the highest level among bindings and group tiers', () => {
    const toBasic = binding('to-basic', 'basic', ['User:alice@example.com']);
    const toEnterprise = binding('to-enterprise', 'enterprise', ['Group:ml-engineers']);
    // group tier (premium, 20) beats a binding to a lower tier (basic, 10)
    expect(outcome({ tiers: [free, basic, premium, enterprise], bindings: [toBasic] })).toBe('premium via Tier/premium');
    // a binding to a higher tier (enterprise, 30) beats the group tiers
    expect(outcome({ tiers: [free, basic, premium, enterprise], bindings: [toBasic, toEnterprise] })).toBe(
      'enterprise via TenantBinding/to-enterprise (binding to-enterprise)',
    );
    // among group tiers only
    expect(outcome({ tiers: [basic, premium] })).toBe('premium via Tier/premium');
    expect(outcome({ tiers: [premium, basic] })).toBe('premium via Tier/premium');
  });

  it('prefers any match to the default, even a default of a higher level', () => {
    const highDefault = tier('vip-default', { default: true, level: 999 });
    const low = tier('low', { level: 0, groups: ['ml-engineers'] });
    expect(outcome({ tiers: [highDefault, low] })).toBe('low via Tier/low');
  });

  it('reports a default tier the subject qualifies for by groups as Tier/<name>, not Default', () => {
    const groupDefault = tier('free', { default: true, groups: ['ml-engineers'] });
    expect(outcome({ tiers: [groupDefault] })).toBe('free via Tier/free');
  });

  it('lets a binding win a tie with the groups for the same tier', () => {
    const b = binding('zz-premium', 'premium', ['User:alice@example.com']);
    for (const tiers of [
      [premium, free],
      [free, premium],
    ]) {
      expect(outcome({ tiers, bindings: [b] })).toBe('premium via TenantBinding/zz-premium (binding zz-premium)');
    }
  });

  it('between two bindings for the same tier, takes the first by name whatever the order given', () => {
    const a = binding('a-premium', 'premium', ['Group:ml-engineers']);
    const b = binding('b-premium', 'premium', ['User:alice@example.com']);
    expect(outcome({ tiers: [premium], bindings: [b, a] })).toBe('premium via TenantBinding/a-premium (binding a-premium)');
    expect(outcome({ tiers: [premium], bindings: [a, b] })).toBe('premium via TenantBinding/a-premium (binding a-premium)');
  });

  it('breaks a tie between levels by tier name, whatever the order given or how each is granted', () => {
    const alpha = tier('alpha', { level: 20, groups: ['premium-users'] });
    const beta = tier('beta', { level: 20 });
    const toBeta = binding('to-beta', 'beta', ['User:alice@example.com']);
    expect(outcome({ tiers: [alpha, beta], bindings: [toBeta] })).toBe('alpha via Tier/alpha');
    expect(outcome({ tiers: [beta, alpha], bindings: [toBeta] })).toBe('alpha via Tier/alpha');
    const gamma = tier('gamma', { level: 20, groups: ['ml-engineers'] });
    expect(outcome({ tiers: [gamma, beta], bindings: [toBeta] })).toBe('beta via TenantBinding/to-beta (binding to-beta)');
  });

  it('is independent of the order of tiers and bindings', () => {
    const tiers = [free, basic, premium, enterprise, tier('x', { level: 20, groups: ['ml-engineers'] })];
    const bindings = [
      binding('b1', 'basic', ['User:alice@example.com']),
      binding('b2', 'premium', ['Group:ml-engineers']),
      binding('b3', 'x', ['Group:premium-users']),
      binding('b4', 'enterprise', ['User:bob@example.com']),
    ];
    const expected = outcome({ tiers, bindings });
    expect(expected).toBe('premium via TenantBinding/b2 (binding b2)');
    fc.assert(
      fc.property(fc.shuffledSubarray(tiers, { minLength: tiers.length }), fc.shuffledSubarray(bindings, { minLength: bindings.length }), (t, b) => {
        expect(outcome({ tiers: t, bindings: b })).toBe(expected);
      }),
    );
  });

  it('passes over excluded bindings (their quota is taken) to the next grant, then the default', () => {
    const toEnterprise = binding('to-enterprise', 'enterprise', ['User:bob@example.com']);
    const toBasic = binding('to-basic', 'basic', ['User:bob@example.com']);
    const input = { tiers: [free, basic, enterprise], bindings: [toEnterprise, toBasic], subject: BOB };
    expect(outcome(input)).toBe('enterprise via TenantBinding/to-enterprise (binding to-enterprise)');
    expect(outcome({ ...input, excludedBindings: new Set(['to-enterprise']) })).toBe('basic via TenantBinding/to-basic (binding to-basic)');
    expect(outcome({ ...input, excludedBindings: new Set(['to-enterprise', 'to-basic']) })).toBe('free via Default');
  });

  it('falls back to the group grant when the binding for the same tier is excluded', () => {
    const b = binding('premium-quota', 'premium', ['User:alice@example.com']);
    expect(outcome({ tiers: [premium], bindings: [b], excludedBindings: new Set(['premium-quota']) })).toBe('premium via Tier/premium');
  });
});

describe('resolveTier with a requested tier', () => {
  const free = tier('free', { default: true });
  const basic = tier('basic', { level: 10, groups: ['ml-engineers'] });
  const premium = tier('premium', { level: 20 });
  const enterprise = tier('enterprise', { level: 30, groups: ['premium-users'] });
  const tiers = [free, basic, premium, enterprise];

  it('refuses a tier that does not exist with TierNotFound, even when others match', () => {
    const r = resolve({ tiers, requestedTier: 'platinum' });
    expect(r).toEqual({ resolved: false, reason: 'TierNotFound', message: 'requested tier "platinum" does not exist' });
  });

  it('grants a requested tier the groups qualify for, even below the best one', () => {
    const r = resolve({ tiers, requestedTier: 'basic' });
    expect(r).toMatchObject({ resolved: true, source: 'Requested', message: 'requested tier "basic" granted by Tier/basic' });
    expect(r.resolved && r.tier).toBe(basic);
    expect(r.resolved && r.binding).toBeUndefined();
  });

  it('grants a requested tier a binding qualifies for, and carries the binding', () => {
    const b = binding('premium-for-alice', 'premium', ['User:alice@example.com']);
    const r = resolve({ tiers, bindings: [b], requestedTier: 'premium' });
    expect(r).toMatchObject({ resolved: true, source: 'Requested', message: 'requested tier "premium" granted by TenantBinding/premium-for-alice' });
    expect(r.resolved && r.binding).toBe(b);
  });

  it('prefers the binding over the groups for a requested tier, as it may carry a quota or policy', () => {
    const b = binding('zz', 'enterprise', ['Group:ml-engineers']);
    const r = resolve({ tiers, bindings: [b], requestedTier: 'enterprise' });
    expect(r.resolved && r.binding).toBe(b);
  });

  it('grants the default tier to anyone who asks for it', () => {
    const r = resolve({ tiers, subject: BOB, requestedTier: 'free' });
    expect(r).toMatchObject({ resolved: true, source: 'Requested', message: 'requested tier "free" is the default tier' });
    expect(r.resolved && r.tier).toBe(free);
  });

  it('refuses a tier the subject does not qualify for with TierNotAllowed', () => {
    const r = resolve({ tiers, requestedTier: 'premium' });
    expect(r).toMatchObject({ resolved: false, reason: 'TierNotAllowed' });
    expect(r.message).toContain('"alice@example.com"');
    expect(r.message).toContain('"premium"');
  });

  it('refuses a tier granted only by a binding for another user, or by an excluded binding', () => {
    const forBob = binding('premium-for-bob', 'premium', ['User:bob@example.com']);
    expect(outcome({ tiers, bindings: [forBob], requestedTier: 'premium' })).toBe('TierNotAllowed');
    const forAlice = binding('premium-for-alice', 'premium', ['User:alice@example.com']);
    expect(outcome({ tiers, bindings: [forAlice], requestedTier: 'premium', excludedBindings: new Set(['premium-for-alice']) })).toBe('TierNotAllowed');
  });

  it('refuses, when two tiers are marked default, the one that is not the effective default', () => {
    const twoDefaults = [tier('a-default', { default: true }), tier('b-default', { default: true })];
    expect(outcome({ tiers: twoDefaults, subject: BOB, requestedTier: 'a-default' })).toBe('a-default via Requested');
    expect(outcome({ tiers: twoDefaults, subject: BOB, requestedTier: 'b-default' })).toBe('TierNotAllowed');
  });
});

describe('messages quote tenant text', () => {
  it('a requested tier and a user are JSON string literals, their control characters escaped', () => {
    const r = resolveTier({ subject: { user: 'eve\u001b[31m', groups: [] }, requestedTier: 'gold\u0007\u202e', tiers: [tier('free')], bindings: [] });
    expect(r).toMatchObject({ resolved: false, reason: 'TierNotFound', message: 'requested tier "gold\\u0007\\u202e" does not exist' });
    const none = resolveTier({ subject: { user: 'eve"\u001b', groups: [] }, tiers: [], bindings: [] });
    expect(none.message).toBe('no tier matches user "eve\\"\\u001b" or its groups, and there is no default tier');
  });
});
