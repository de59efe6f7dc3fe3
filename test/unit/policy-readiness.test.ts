/**
 * policy/readiness.ts: Ready comes from what the Secret holds, so a client is never Ready with a
 * missing, foreign, superseded or expired token, nor while a failed issuance is on record.
 */
import { describe, expect, it } from 'vitest';
import { readiness, type ReadinessInput } from '../../src/policy/readiness.ts';

const NOW = Date.parse('2026-12-01T12:00:00Z');
const sa = { namespace: 'tw-tier-gold', name: 'alice-0123456789', uid: 'sa-uid' };
const newest = { id: 'anchor-1', issuedAt: '2026-12-01T11:00:00Z', expiresAt: '2026-12-01T13:00:00Z', renewAt: '2026-12-01T12:30:00Z' };
const claims = {
  audiences: ['gw'],
  issuedAtMs: Date.parse(newest.issuedAt),
  expiresAtMs: Date.parse(newest.expiresAt),
  namespace: sa.namespace,
  serviceAccountName: sa.name,
  serviceAccountUid: sa.uid,
  boundSecretName: 'anchor-1',
};
const input = (over: Partial<ReadinessInput> = {}): ReadinessInput => ({ now: NOW, secretToken: claims, serviceAccount: sa, newest, failedAttempts: undefined, notes: [], ...over });

describe('readiness', () => {
  it('is True when the digest of the token in the Secret is the one recorded, and for a token issued before digests were recorded', () => {
    expect(readiness(input({ newest: { ...newest, digest: 'a'.repeat(32) }, secretToken: { ...claims, digest: 'a'.repeat(32) } })).reason).toBe('TokenIssued');
    expect(readiness(input({ secretToken: { ...claims, digest: 'b'.repeat(32) } })).reason).toBe('TokenIssued');
  });

  it('is True, with the expiry and renewal of the newest token, when the Secret holds it', () => {
    expect(readiness(input({ notes: ['expiration capped at 1h'] }))).toEqual({
      type: 'Ready',
      status: 'True',
      reason: 'TokenIssued',
      message: 'token valid until 2026-12-01T13:00:00Z, renewal at 2026-12-01T12:30:00Z; expiration capped at 1h',
    });
  });

  it.each<[string, Partial<ReadinessInput>, string]>([
    ['no token in the Secret', { secretToken: undefined }, 'TokenMissing'],
    ['something that is not a ServiceAccount token', { secretToken: 'unreadable' }, 'TokenUnreadable'],
    ["another tier's token", { secretToken: { ...claims, namespace: 'tw-tier-free' } }, 'TokenMismatch'],
    ["another user's ServiceAccount", { secretToken: { ...claims, serviceAccountName: 'bob-0123456789' } }, 'TokenMismatch'],
    ['a recreated ServiceAccount', { secretToken: { ...claims, serviceAccountUid: 'old-uid' } }, 'TokenMismatch'],
    ['a superseded token', { secretToken: { ...claims, boundSecretName: 'anchor-0' } }, 'TokenMismatch'],
    ['no token in status', { newest: undefined }, 'TokenMismatch'],
    [
      'the issued token with its signature swapped: same claims, another digest',
      { newest: { ...newest, digest: 'a'.repeat(32) }, secretToken: { ...claims, digest: 'b'.repeat(32) } },
      'TokenMismatch',
    ],
    ['a token whose digest the cache could not take, where one is recorded', { newest: { ...newest, digest: 'a'.repeat(32) } }, 'TokenMismatch'],
    ['an expired token', { now: claims.expiresAtMs }, 'TokenExpired'],
    ['a failed issuance on record', { failedAttempts: 1 }, 'IssuanceFailed'],
  ])('is False for %s', (_what, over, reason) => {
    const ready = readiness(input(over));
    expect(ready.status).toBe('False');
    expect(ready.reason).toBe(reason);
  });
});
