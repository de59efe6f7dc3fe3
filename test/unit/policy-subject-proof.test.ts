/**
 * src/policy/subject-proof.ts: when the subject was last proven (a new digest of what admission
 * proves), and which Tiers' group grants have outlived their groupGrantMaxAge since.
 */
import { describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { API_VERSION, ServiceAccountClientSpec, Tier, type TierSpec } from '../../src/api/index.ts';
import { groupGrantAge, proofDigest, subjectProof, SUBJECT_PROOF_ANNOTATION, type ProvableClient } from '../../src/policy/subject-proof.ts';
import { resolveTier } from '../../src/policy/tier-resolution.ts';

const tier = (name: string, spec: z.input<typeof TierSpec> = {}): Tier => Tier.parse({ apiVersion: API_VERSION, kind: 'Tier', metadata: { name }, spec });
const spec = (s: z.input<typeof ServiceAccountClientSpec>) => ServiceAccountClientSpec.parse(s);

const CREATED = '2026-01-01T00:00:00Z';
const T0 = Date.parse(CREATED);
const HOUR = 3_600_000;
const base = spec({ subject: { user: 'alice@example.com', groups: ['premium-users', 'ml-engineers'] }, token: { audiences: ['a', 'b'] } });
const client = (s = base, annotations?: Record<string, string>, recorded?: ProvableClient['status']): ProvableClient => ({
  metadata: { creationTimestamp: CREATED, annotations },
  spec: s,
  ...(recorded ? { status: recorded } : {}),
});

describe('proofDigest', () => {
  it('changes with every field admission proves, and with the proof annotation', () => {
    const d = proofDigest(base, undefined);
    expect(proofDigest({ ...base, secretName: 'elsewhere' }, undefined)).not.toBe(d);
    expect(proofDigest({ ...base, secretTemplate: { annotations: { x: 'y' } } }, undefined)).not.toBe(d);
    expect(proofDigest({ ...base, token: { expiration: '24h' } }, undefined)).not.toBe(d);
    expect(proofDigest({ ...base, subject: { user: 'alice@example.com', groups: ['ml-engineers'] } }, undefined)).not.toBe(d);
    expect(proofDigest({ ...base, suspended: true }, undefined)).not.toBe(d);
    expect(proofDigest(base, { [SUBJECT_PROOF_ANNOTATION]: 'again' })).not.toBe(d);
  });

  it('is the same for a raised revocationEpoch, other annotations and reordered sets, which nobody has to prove', () => {
    const d = proofDigest(base, undefined);
    expect(proofDigest({ ...base, revocationEpoch: 7 }, undefined)).toBe(d);
    expect(proofDigest(base, { 'tokenwarden.io/renew-requested-at': 'now' })).toBe(d);
    expect(proofDigest({ ...base, subject: { user: 'alice@example.com', groups: ['ml-engineers', 'premium-users'] }, token: { audiences: ['b', 'a'] } }, undefined)).toBe(d);
  });
});

describe('subjectProof', () => {
  it('is the creation time until something is recorded, then kept while the digest stays, and now for a new digest', () => {
    const first = subjectProof(client(), T0 + 5 * HOUR);
    expect(first.provenAt).toBe(CREATED);
    expect(subjectProof(client({ ...base, revocationEpoch: 3 }, undefined, { subjectProof: first }), T0 + 9 * HOUR)).toEqual(first);
    const touched = subjectProof(client(base, { [SUBJECT_PROOF_ANNOTATION]: 'x' }, { subjectProof: first }), T0 + 9 * HOUR + 123);
    expect(touched.provenAt).toBe('2026-01-01T09:00:00Z');
    expect(touched.digest).not.toBe(first.digest);
  });
});

describe('groupGrantAge and resolution', () => {
  const premium = tier('premium', { level: 20, groups: ['premium-users'], groupGrantMaxAge: '720h' });
  const gold = tier('gold', { level: 30, groups: ['ml-engineers'] });
  const free = tier('free', { level: 10, default: true });
  const subject = base.subject;

  it('a group grant is current until groupGrantMaxAge after the proof, then expired; tiers without one never expire', () => {
    const at = (ms: number) => groupGrantAge([premium, gold, free], subject, T0, ms);
    expect([...at(T0 + 719 * HOUR).expired]).toEqual([]);
    expect(at(T0 + 719 * HOUR).nextExpiryAt).toBe(T0 + 720 * HOUR);
    expect([...at(T0 + 720 * HOUR).expired]).toEqual(['premium']);
    expect(at(T0 + 720 * HOUR).nextExpiryAt).toBeUndefined();
    // A subject not in the tier's groups is not concerned.
    expect(groupGrantAge([premium], { user: 'bob', groups: ['free-users'] }, T0, T0 + 9999 * HOUR).expired.size).toBe(0);
  });

  it('an expired group grant resolves as if the tier\'s groups did not apply: the next grant, else the default', () => {
    const expired = new Set(['premium']);
    const only = resolveTier({ subject: { user: 'alice@example.com', groups: ['premium-users'] }, tiers: [premium, free], bindings: [], expiredGroupGrants: expired });
    expect(only.resolved && `${only.tier.metadata.name} ${only.source}`).toBe('free Default');
    const requested = resolveTier({ subject: { user: 'alice@example.com', groups: ['premium-users'] }, tiers: [premium, free], bindings: [], requestedTier: 'premium', expiredGroupGrants: expired });
    expect(requested.resolved ? 'resolved' : requested.reason).toBe('TierNotAllowed');
    const current = resolveTier({ subject: { user: 'alice@example.com', groups: ['premium-users'] }, tiers: [premium, free], bindings: [] });
    expect(current.resolved && current.source).toBe('Tier/premium');
  });
});
