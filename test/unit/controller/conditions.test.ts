import { describe, expect, it } from 'vitest';
import {
  conditionsDiffer,
  formatTime,
  getCondition,
  isConditionFalse,
  isConditionTrue,
  removeCondition,
  setCondition,
  type Condition,
} from '../../../src/controller/conditions.ts';

const T1 = new Date('2024-05-01T10:00:00.123Z');
const T2 = new Date('2024-05-01T11:30:00.999Z');

describe('setCondition', () => {
  it('escapes control characters in the message: API server errors and quoted tenant text reach terminals inert', () => {
    const [c] = setCondition(undefined, { type: 'Ready', status: 'False', reason: 'SecretInvalid', message: 'label "x\u001b[2J\u009b" refused\nnext' }, 1, T1);
    expect(c?.message).toBe('label "x\\u001b[2J\\u009b" refused\\nnext');
  });

  it('adds a new condition with lastTransitionTime = now, second precision', () => {
    const out = setCondition(undefined, { type: 'Ready', status: 'True', reason: 'Reconciled', message: 'ok' }, 3, T1);
    expect(out).toEqual([
      { type: 'Ready', status: 'True', reason: 'Reconciled', message: 'ok', observedGeneration: 3, lastTransitionTime: '2024-05-01T10:00:00Z' },
    ]);
  });

  it('keeps lastTransitionTime when the status does not change', () => {
    const a = setCondition([], { type: 'Ready', status: 'False', reason: 'Pending', message: 'a' }, 1, T1);
    const b = setCondition(a, { type: 'Ready', status: 'False', reason: 'TierNotFound', message: 'b' }, 2, T2);
    expect(b[0]?.lastTransitionTime).toBe('2024-05-01T10:00:00Z');
    expect(b[0]?.reason).toBe('TierNotFound');
    expect(b[0]?.message).toBe('b');
    expect(b[0]?.observedGeneration).toBe(2);
  });

  it('changes lastTransitionTime when the status flips', () => {
    const a = setCondition([], { type: 'Ready', status: 'False', reason: 'Pending' }, 1, T1);
    const b = setCondition(a, { type: 'Ready', status: 'True', reason: 'Reconciled' }, 1, T2);
    expect(b[0]?.lastTransitionTime).toBe('2024-05-01T11:30:00Z');
    expect(b[0]?.status).toBe('True');
  });

  it('does not change its input and keeps other conditions in order', () => {
    const input: Condition[] = [
      { type: 'A', status: 'True', reason: 'R', message: '', lastTransitionTime: '2020-01-01T00:00:00Z' },
      { type: 'B', status: 'True', reason: 'R', message: '', lastTransitionTime: '2020-01-01T00:00:00Z' },
    ];
    const frozen = structuredClone(input);
    const out = setCondition(input, { type: 'A', status: 'False', reason: 'X' }, 5, T1);
    expect(input).toEqual(frozen);
    expect(out.map((c) => c.type)).toEqual(['A', 'B']);
    expect(out[1]).toEqual(input[1]);
    expect(out[1]).not.toBe(input[1]);
  });

  it('defaults the message to empty and omits an undefined observedGeneration', () => {
    const out = setCondition([], { type: 'Ready', status: 'Unknown', reason: 'Starting' }, undefined, T1);
    expect(out[0]?.message).toBe('');
    expect(out[0] && 'observedGeneration' in out[0]).toBe(false);
  });
});

describe('condition lookups', () => {
  const list = setCondition(setCondition([], { type: 'Ready', status: 'True', reason: 'R' }, 1, T1), { type: 'Suspended', status: 'False', reason: 'R' }, 1, T1);

  it('finds conditions by type', () => {
    expect(getCondition(list, 'Ready')?.status).toBe('True');
    expect(getCondition(list, 'Missing')).toBeUndefined();
    expect(getCondition(undefined, 'Ready')).toBeUndefined();
  });

  it('tells True and False apart from absent', () => {
    expect(isConditionTrue(list, 'Ready')).toBe(true);
    expect(isConditionTrue(list, 'Suspended')).toBe(false);
    expect(isConditionFalse(list, 'Suspended')).toBe(true);
    expect(isConditionTrue(list, 'Missing')).toBe(false);
    expect(isConditionFalse(list, 'Missing')).toBe(false);
  });

  it('removes a condition', () => {
    expect(removeCondition(list, 'Ready').map((c) => c.type)).toEqual(['Suspended']);
    expect(list.length).toBe(2);
  });
});

describe('conditionsDiffer', () => {
  const base = setCondition(setCondition([], { type: 'Ready', status: 'True', reason: 'R', message: 'm' }, 1, T1), { type: 'B', status: 'False', reason: 'R' }, 1, T1);

  it('is false for the same conditions, whatever the order', () => {
    expect(conditionsDiffer(base, [...base].reverse())).toBe(false);
    expect(conditionsDiffer(undefined, [])).toBe(false);
  });

  it('is false when setCondition re-sets the same values later', () => {
    const again = setCondition(base, { type: 'Ready', status: 'True', reason: 'R', message: 'm' }, 1, T2);
    expect(conditionsDiffer(base, again)).toBe(false);
  });

  it('ignores lastTransitionTime alone', () => {
    const moved = base.map((c) => ({ ...c, lastTransitionTime: '1999-01-01T00:00:00Z' }));
    expect(conditionsDiffer(base, moved)).toBe(false);
  });

  it.each([
    ['status', { status: 'False' as const }],
    ['reason', { reason: 'Other' }],
    ['message', { message: 'other' }],
    ['observedGeneration', { observedGeneration: 2 }],
    ['type', { type: 'Other' }],
  ])('is true when %s changes', (_field, change) => {
    const changed = base.map((c, i) => (i === 0 ? { ...c, ...change } : c));
    expect(conditionsDiffer(base, changed)).toBe(true);
  });

  it('is true when a condition is added or removed', () => {
    expect(conditionsDiffer(base, base.slice(1))).toBe(true);
    expect(conditionsDiffer([], base)).toBe(true);
  });
});

describe('formatTime', () => {
  it('formats as RFC 3339 without fractional seconds', () => {
    expect(formatTime(new Date('2006-01-02T15:04:05.678Z'))).toBe('2006-01-02T15:04:05Z');
  });
});
