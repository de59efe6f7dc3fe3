/**
 * policy/token-record.ts: the status record of a token, and the token a crash left named only by
 * the Secret, adopted into the token list rather than replaced.
 */
import { describe, expect, it } from 'vitest';
import { adoptTokenInSecret, tokenRecord, type AdoptionInput } from '../../src/policy/token-record.ts';

const at = (iso: string): number => Date.parse(iso);
const MINUTE = 60_000;
const older = { id: 'anchor-old', issuedAt: '2026-12-01T10:00:00Z', expiresAt: '2026-12-01T11:00:00Z', renewAt: '2026-12-01T10:45:00Z' };
const claims = {
  audiences: ['gw'],
  issuedAtMs: at('2026-12-01T10:30:00.250Z'),
  expiresAtMs: at('2026-12-01T11:30:00.750Z'),
  namespace: 'tw-tier-gold',
  serviceAccountName: 'alice-0123456789',
  serviceAccountUid: 'sa-uid',
  boundSecretName: 'anchor-new',
};
const input = (over: Partial<AdoptionInput> = {}): AdoptionInput => ({
  tokens: [older],
  secretClaims: claims,
  secretRenewAt: undefined,
  anchors: new Set(['anchor-old', 'anchor-new']),
  renewBeforeMs: 15 * MINUTE,
  ...over,
});

describe('tokenRecord', () => {
  it('records issue, expiry and renewal (expiry less renewBefore) to the second', () => {
    expect(tokenRecord('a', at('2026-12-01T10:00:00.400Z'), at('2026-12-01T11:00:00.900Z'), 15 * MINUTE)).toEqual({
      id: 'a',
      issuedAt: '2026-12-01T10:00:00Z',
      expiresAt: '2026-12-01T11:00:00Z',
      renewAt: '2026-12-01T10:45:00Z',
    });
  });

  it('never renews before the token was issued', () => {
    expect(tokenRecord('a', at('2026-12-01T10:00:00Z'), at('2026-12-01T10:10:00Z'), 15 * MINUTE).renewAt).toBe('2026-12-01T10:00:00Z');
  });
});

describe('adoptTokenInSecret', () => {
  it('adopts the token only the Secret names, newest first, with renewal from its claims', () => {
    expect(adoptTokenInSecret(input())).toEqual([
      { id: 'anchor-new', issuedAt: '2026-12-01T10:30:00Z', expiresAt: '2026-12-01T11:30:00Z', renewAt: '2026-12-01T11:15:00Z' },
      older,
    ]);
  });

  it('takes the renewal time the Secret was written with when it has one', () => {
    expect(adoptTokenInSecret(input({ secretRenewAt: '2026-12-01T11:05:00Z' }))[0]?.renewAt).toBe('2026-12-01T11:05:00Z');
  });

  it('adopts into an empty list', () => {
    expect(adoptTokenInSecret(input({ tokens: [] })).map((t) => t.id)).toEqual(['anchor-new']);
  });

  it('leaves the list alone when the Secret holds no token, an unreadable one, or one bound to nothing', () => {
    for (const secretClaims of [undefined, 'unreadable' as const, { ...claims, boundSecretName: undefined }]) {
      expect(adoptTokenInSecret(input({ secretClaims }))).toEqual([older]);
    }
  });

  it('leaves the list alone when the token is revoked (its anchor gone)', () => {
    expect(adoptTokenInSecret(input({ anchors: new Set(['anchor-old']) }))).toEqual([older]);
  });

  it('leaves the list alone when status already names the token', () => {
    const named = { ...older, id: 'anchor-new' };
    expect(adoptTokenInSecret(input({ tokens: [named] }))).toEqual([named]);
  });

  it('leaves the list alone when the Secret token is older than the newest token status names', () => {
    const newer = { ...older, id: 'anchor-newer', issuedAt: '2026-12-01T10:40:00Z' };
    expect(adoptTokenInSecret(input({ tokens: [newer] }))).toEqual([newer]);
  });
});
