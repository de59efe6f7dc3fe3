/**
 * policy/service-account-use.ts: who keeps a ServiceAccount. Records of another instance's scope
 * always count (that instance's clients are not in this cache); records of this scope count while
 * the client is live; the releasing client never counts itself.
 */
import { describe, expect, it } from 'vitest';
import { instanceScope, recordedUses, serviceAccountUsers, useAnnotation, type UseInput } from '../../src/policy/service-account-use.ts';

const MINE = instanceScope('shard=a');
const THEIRS = instanceScope('shard=b');
const input = (over: Partial<UseInput>): UseInput => ({ annotations: {}, scope: MINE, live: () => true, namedByStatus: [], ...over });

describe('instanceScope', () => {
  it('is 10 hex digits, the same for the same selector, different for another', () => {
    expect(MINE).toMatch(/^[0-9a-f]{10}$/);
    expect(instanceScope(' shard=a ')).toBe(MINE);
    expect(THEIRS).not.toBe(MINE);
    expect(instanceScope('')).toMatch(/^[0-9a-f]{10}$/);
  });
});

describe('recordedUses', () => {
  it('reads the records and nothing else', () => {
    expect(recordedUses({ [useAnnotation('u1')]: MINE, 'tokenwarden.io/user': 'alice', other: 'x' })).toEqual([{ clientUid: 'u1', scope: MINE }]);
    expect(recordedUses(undefined)).toEqual([]);
  });
});

describe('serviceAccountUsers', () => {
  it('no records and no status: nobody, so it may go', () => {
    expect(serviceAccountUsers(input({}))).toEqual([]);
  });
  it('the releasing client does not keep it', () => {
    expect(serviceAccountUsers(input({ annotations: { [useAnnotation('x')]: MINE }, releasing: 'x', namedByStatus: ['x'] }))).toEqual([]);
  });
  it('a client of this instance that recorded its use keeps it, even before its status says so', () => {
    expect(serviceAccountUsers(input({ annotations: { [useAnnotation('x')]: MINE, [useAnnotation('y')]: MINE }, releasing: 'x' }))).toEqual(['y']);
  });
  it('a record of this instance whose client is gone does not', () => {
    expect(serviceAccountUsers(input({ annotations: { [useAnnotation('gone')]: MINE }, live: (uid) => uid !== 'gone' }))).toEqual([]);
  });
  it("another instance's record keeps it whatever this cache says", () => {
    expect(serviceAccountUsers(input({ annotations: { [useAnnotation('b1')]: THEIRS }, live: () => false }))).toEqual(['b1']);
  });
  it('a client whose status names it keeps it (ServiceAccounts from before the records)', () => {
    expect(serviceAccountUsers(input({ namedByStatus: ['old'], releasing: 'x' }))).toEqual(['old']);
  });
});
