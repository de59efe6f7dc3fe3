/**
 * src/policy/tier-change.ts: which clients a Tier change can move. The property that matters: every
 * client whose resolution differs before and after the change is inside the scope (its member or
 * requester, a qualifier through its groups or a TenantBinding, or on the default tier or none), so
 * enqueueing only those misses nobody. And the scope is narrow where it can be.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { API_VERSION, ClientSubject, TenantBinding, Tier, type TierSpec } from '../../src/api/index.ts';
import { tierChangeScope } from '../../src/policy/tier-change.ts';
import { bindingMatches, resolveTier, type Resolution } from '../../src/policy/tier-resolution.ts';

function tier(name: string, spec: z.input<typeof TierSpec> = {}, deleting = false): Tier {
  return Tier.parse({
    apiVersion: API_VERSION,
    kind: 'Tier',
    metadata: { name, ...(deleting ? { deletionTimestamp: '2026-12-01T00:00:00Z' } : {}) },
    spec,
  });
}

describe('tierChangeScope', () => {
  it('a change of token policy, access or limits concerns only its members and requesters', () => {
    const before = tier('t', { level: 10, groups: ['g'], default: true, token: { defaultExpiration: '1h' } });
    const after = tier('t', { level: 10, groups: ['g'], default: true, token: { defaultExpiration: '2h' }, access: [{ clusterRole: 'view' }] });
    expect(tierChangeScope(before, after)).toEqual({ members: true, groups: [], bindings: false, defaults: false });
  });

  it('a level change ranks it anew for its qualifiers, and for the default clients when it is a default', () => {
    expect(tierChangeScope(tier('t', { level: 1, groups: ['g'] }), tier('t', { level: 2, groups: ['g'] }))).toEqual({ members: false, groups: ['g'], bindings: true, defaults: false });
    expect(tierChangeScope(tier('t', { level: 1, default: true }), tier('t', { level: 2, default: true }))).toEqual({ members: false, groups: [], bindings: true, defaults: true });
  });

  it('a groups change concerns the clients of the groups added or removed only, not the bindings nor the members', () => {
    expect(tierChangeScope(tier('t', { groups: ['a', 'b'] }), tier('t', { groups: ['b', 'c'] }))).toEqual({ members: false, groups: ['a', 'c'], bindings: false, defaults: false });
  });

  it('a new groupGrantMaxAge concerns the clients of every group it has, including those it no longer grants to', () => {
    expect(tierChangeScope(tier('t', { groups: ['a', 'b'] }), tier('t', { groups: ['a', 'b'], groupGrantMaxAge: '720h' })).groups).toEqual(['a', 'b']);
    expect(tierChangeScope(tier('t', { groups: ['a'], groupGrantMaxAge: '1h' }), tier('t', { groups: ['a'] })).groups).toEqual(['a']);
  });

  it('a groups change with a new level concerns the clients of every group before and after', () => {
    expect(tierChangeScope(tier('t', { level: 1, groups: ['a', 'b'] }), tier('t', { level: 2, groups: ['b', 'c'] })).groups).toEqual(['a', 'b', 'c']);
  });

  it('becoming or ceasing to be the default concerns the default clients', () => {
    expect(tierChangeScope(tier('t'), tier('t', { default: true })).defaults).toBe(true);
    expect(tierChangeScope(tier('t', { default: true }), tier('t')).defaults).toBe(true);
  });

  it('a new Tier, a deleted one and one starting to be deleted concern every kind of qualifier', () => {
    const t = tier('t', { groups: ['g'], default: true });
    for (const [old, next] of [[undefined, t], [t, undefined], [t, tier('t', { groups: ['g'], default: true }, true)]] as const) {
      expect(tierChangeScope(old, next)).toEqual({ members: true, groups: ['g'], bindings: true, defaults: true });
    }
  });
});

// ---------------------------------------------------------------------------------------------
// The property: a client whose resolution changes is in the scope.
// ---------------------------------------------------------------------------------------------

const GROUPS = ['g1', 'g2', 'g3'];
const groupsArb = fc.subarray(GROUPS);
const specArb = fc.record({ level: fc.integer({ min: 0, max: 3 }), default: fc.boolean(), groups: groupsArb });
/** The changed tier "t" before or after: absent, present, or being deleted. */
const tArb = fc.option(fc.tuple(specArb, fc.boolean()).map(([spec, deleting]) => tier('t', spec, deleting)), { nil: undefined });
const othersArb = fc.tuple(fc.option(specArb, { nil: undefined }), fc.option(specArb, { nil: undefined })).map(([u, v]) => [
  ...(u ? [tier('u', u)] : []),
  ...(v ? [tier('v', v)] : []),
]);
const bindingSubjectArb = fc.oneof(
  fc.constantFrom(...GROUPS).map((name) => ({ kind: 'Group', name })),
  fc.constantFrom('alice', 'bob').map((name) => ({ kind: 'User', name })),
);
const bindingsArb = fc.array(fc.tuple(fc.constantFrom('t', 'u', 'v'), bindingSubjectArb), { maxLength: 3 }).map((specs) =>
  specs.map(([tierName, subject], i) =>
    TenantBinding.parse({ apiVersion: API_VERSION, kind: 'TenantBinding', metadata: { name: `b${i}`, namespace: 'team' }, spec: { tierRef: { name: tierName }, subjects: [subject] } }),
  ),
);
const subjectArb = fc.record({ user: fc.constantFrom('alice', 'bob'), groups: groupsArb }).map((s) => ClientSubject.parse(s));
const requestedArb = fc.option(fc.constantFrom('t', 'u'), { nil: undefined });

const live = (t: Tier | undefined): Tier[] => (t !== undefined && t.metadata.deletionTimestamp === undefined ? [t] : []);
const outcome = (r: Resolution): string => (r.resolved ? `${r.tier.metadata.name} ${r.source}` : r.reason);

describe('tierChangeScope misses no client whose tier can change', () => {
  it('holds for every Tier change, other tiers, bindings, subject and requested tier', () => {
    fc.assert(
      fc.property(tArb, tArb, othersArb, bindingsArb, subjectArb, requestedArb, (old, next, others, bindings, subject, requestedTier) => {
        const resolve = (t: Tier | undefined) =>
          resolveTier({ subject, tiers: [...live(t), ...others], bindings, ...(requestedTier ? { requestedTier } : {}) });
        const before = resolve(old);
        const after = resolve(next);
        if (outcome(before) === outcome(after)) return;
        const scope = tierChangeScope(old, next);
        const member = scope.members && before.resolved && before.tier.metadata.name === 't';
        const requester = requestedTier === 't';
        const byGroup = subject.groups.some((g) => scope.groups.includes(g));
        const byBinding = scope.bindings && bindings.some((b) => b.spec.tierRef.name === 't' && bindingMatches(b, subject));
        const requestsADefault = others.some((o) => o.metadata.name === requestedTier && o.spec.default);
        const onDefault = scope.defaults && (!before.resolved || before.source === 'Default' || requestsADefault);
        expect(member || requester || byGroup || byBinding || onDefault, `${outcome(before)} -> ${outcome(after)}`).toBe(true);
      }),
      { numRuns: 5000 },
    );
  });
});
