/**
 * policy/issuance-events.ts: the Event a new token comes with says why it was issued, and a cap on
 * the client's request is told once, not on every token.
 */
import { describe, expect, it } from 'vitest';
import { isRotation, issuedEvents, type IssuedInput } from '../../src/policy/issuance-events.ts';
import type { ReissueDecision, ReissueReason } from '../../src/policy/reissue.ts';

const decision = (reason: ReissueReason, over: Partial<ReissueDecision> = {}): ReissueDecision => ({ reason, message: `because ${reason}`, revokeEarlierTokens: false, repair: false, ...over });
const input = (over: Partial<IssuedInput> = {}): IssuedInput => ({
  decision: decision('NotIssued'),
  first: true,
  resumed: false,
  revokedEpoch: 0,
  tierName: 'gold',
  notes: [],
  toldIn: '',
  ...over,
});

describe('issuedEvents', () => {
  it('says Issued for the first token', () => {
    expect(issuedEvents(input())).toEqual([{ type: 'Normal', reason: 'Issued', note: 'issued a token in tier gold' }]);
  });

  it('says Resumed for the first token after a suspension, whatever the reason', () => {
    expect(issuedEvents(input({ resumed: true, decision: decision('SecretMissing') }))).toEqual([{ type: 'Normal', reason: 'Resumed', note: 'resumed: issued a new token in tier gold' }]);
  });

  it('says Rotated for a renewal or an expiry', () => {
    for (const reason of ['RenewalDue', 'Expired'] as const) {
      expect(issuedEvents(input({ first: false, decision: decision(reason) }))).toEqual([{ type: 'Normal', reason: 'Rotated', note: `rotated the token: because ${reason}` }]);
    }
  });

  it('names the revocation epoch a fresh token answers', () => {
    expect(issuedEvents(input({ first: false, revokedEpoch: 3, decision: decision('RevocationRequested', { revokeEarlierTokens: true }) }))).toEqual([
      { type: 'Normal', reason: 'Issued', note: 'issued a fresh token after revocation epoch 3' },
    ]);
  });

  it('says Repaired for a token that replaces one changed behind the operator', () => {
    expect(issuedEvents(input({ first: false, decision: decision('TokenMismatch', { repair: true }) }))[0]).toEqual({ type: 'Normal', reason: 'Repaired', note: 'issued a new token: because TokenMismatch' });
  });

  it('says Issued, with why, for any other new token', () => {
    expect(issuedEvents(input({ first: false, decision: decision('AudiencesChanged') }))[0]).toEqual({ type: 'Normal', reason: 'Issued', note: 'issued a new token: because AudiencesChanged' });
    // Not the first token only because status lost it: still says why.
    expect(issuedEvents(input({ first: true, decision: decision('SecretMissing') }))[0]?.note).toBe('issued a new token: because SecretMissing');
  });

  it('warns of caps the client was not told of, and only those', () => {
    const notes = ['expiration capped at 1h', 'audiences narrowed to gw'];
    expect(issuedEvents(input({ notes, toldIn: 'token valid until …; expiration capped at 1h' }))[1]).toEqual({ type: 'Warning', reason: 'Capped', note: 'audiences narrowed to gw' });
    expect(issuedEvents(input({ notes, toldIn: '' }))[1]?.note).toBe('expiration capped at 1h; audiences narrowed to gw');
    expect(issuedEvents(input({ notes, toldIn: notes.join('; ') }))).toHaveLength(1);
  });
});

describe('isRotation', () => {
  it('is a renewal or an expiry, nothing else', () => {
    expect(isRotation(decision('RenewalDue'))).toBe(true);
    expect(isRotation(decision('Expired'))).toBe(true);
    expect(isRotation(decision('NotIssued'))).toBe(false);
    expect(isRotation(decision('RenewalRequested'))).toBe(false);
  });
});
