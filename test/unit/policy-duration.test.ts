/**
 * src/policy/duration.ts: Go-style durations as the CRDs accept them, the "duration or percentage"
 * form of renewBefore, and the readable form used in status messages.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Duration } from '../../src/api/index.ts';
import { formatDuration, parseDuration, parseRenewBefore } from '../../src/policy/duration.ts';

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;

describe('parseDuration', () => {
  it.each([
    ['90s', 90 * SECOND],
    ['10m', 10 * MINUTE],
    ['4h', 4 * HOUR],
    ['24h', 24 * HOUR],
    ['1h30m', HOUR + 30 * MINUTE],
    ['1h30m15s', HOUR + 30 * MINUTE + 15 * SECOND],
    ['250ms', 250],
    ['1m1ms', MINUTE + 1],
    ['10ms', 10],
    ['1500us', 1.5],
    ['2ns', 2e-6],
    ['0s', 0],
    ['007s', 7 * SECOND],
    ['1h1h', 2 * HOUR],
    ['30s1h', HOUR + 30 * SECOND],
    ['100000h', 100_000 * HOUR],
  ])('parses %s as %d ms', (text, ms) => {
    expect(parseDuration(text)).toBeCloseTo(ms, 9);
  });

  it('refuses the empty string', () => {
    expect(() => parseDuration('')).toThrow('empty duration');
  });

  it.each(['1', 'h', '1.5h', '-1h', '+1h', '1d', '1w', '1 h', ' 1h', '1h ', '1H', '1hx', 'x1h', '1hm', '1µs', '1h-30m', '1h,30m', 'ms'])(
    'refuses %j, naming it',
    (text) => {
      expect(() => parseDuration(text)).toThrow(`invalid duration "${text}"`);
    },
  );

  it('is not confused by an earlier failed or partial parse (shared regex state)', () => {
    expect(() => parseDuration('1h30mx')).toThrow();
    expect(parseDuration('2m')).toBe(2 * MINUTE);
    expect(parseDuration('1h30m')).toBe(90 * MINUTE);
    expect(() => parseDuration('5m!')).toThrow();
    expect(parseDuration('5s')).toBe(5 * SECOND);
  });

  it('accepts exactly what the CRD Duration pattern accepts', () => {
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom(...'0123456789nsumh.- x'), maxLength: 12 }), (text) => {
        let parsed = true;
        try {
          parseDuration(text);
        } catch {
          parsed = false;
        }
        expect(parsed).toBe(Duration.safeParse(text).success);
      }),
      { numRuns: 2000 },
    );
  });

  it('adds up the parts of a composed duration', () => {
    const unit = fc.constantFrom(['h', HOUR], ['m', MINUTE], ['s', SECOND], ['ms', 1]) as fc.Arbitrary<[string, number]>;
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 10_000 }), unit), { minLength: 1, maxLength: 5 }), (parts) => {
        const text = parts.map(([n, [u]]) => `${n}${u}`).join('');
        const expected = parts.reduce((sum, [n, [, ms]]) => sum + n * ms, 0);
        expect(parseDuration(text)).toBe(expected);
      }),
    );
  });
});

describe('parseRenewBefore', () => {
  it.each([
    ['33%', 3 * HOUR, Math.floor((3 * HOUR * 33) / 100)],
    ['50%', HOUR, 30 * MINUTE],
    ['1%', 100 * SECOND, SECOND],
    ['99%', 100 * SECOND, 99 * SECOND],
    ['33%', 1001, 330], // rounded down
    ['25%', 0, 0],
  ])('%s of %d ms is %d ms', (text, lifetime, expected) => {
    expect(parseRenewBefore(text, lifetime)).toBe(expected);
  });

  it('reads a duration regardless of the lifetime', () => {
    expect(parseRenewBefore('1h', 4 * HOUR)).toBe(HOUR);
    expect(parseRenewBefore('1h', 10 * MINUTE)).toBe(HOUR);
    expect(parseRenewBefore('90s', 0)).toBe(90 * SECOND);
  });

  it.each(['100%', '150%', '-5%', '5.5%', 'abc%', '%%', '33%%'])('refuses the percentage %j', (text) => {
    expect(() => parseRenewBefore(text, HOUR)).toThrow(`invalid percentage "${text}"`);
  });

  it.each(['1x', '1.5h', '', '33'])('refuses the duration %j', (text) => {
    expect(() => parseRenewBefore(text, HOUR)).toThrow();
  });

  it('is proportional to the lifetime and below it for every valid percentage', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 99 }), fc.integer({ min: 10 * MINUTE, max: 1000 * HOUR }), (percent, lifetime) => {
        const ms = parseRenewBefore(`${percent}%`, lifetime);
        expect(ms).toBe(Math.floor((lifetime * percent) / 100));
        expect(ms).toBeGreaterThan(0);
        expect(ms).toBeLessThan(lifetime);
      }),
    );
  });

  // The CRD only admits 1%..99% in decimal digits; parseRenewBefore is as strict, so "0%" can never
  // mean "renew at expiry" and Number()'s spellings ("1e1", "0x10") are not percentages.
  it('refuses percentages the CRD refuses (zero, empty, non-decimal spellings)', () => {
    for (const text of ['%', '0%', ' 5%', '1e1%', '0x10%', '5.0%']) {
      expect(() => parseRenewBefore(text, HOUR), text).toThrow();
    }
  });
});

describe('formatDuration', () => {
  it.each([
    [90 * MINUTE, '1h30m'],
    [0, '0s'],
    [SECOND, '1s'],
    [59 * SECOND, '59s'],
    [90 * SECOND, '1m30s'],
    [10 * MINUTE, '10m'],
    [HOUR, '1h'],
    [HOUR + SECOND, '1h1s'],
    [HOUR + MINUTE + SECOND, '1h1m1s'],
    [24 * HOUR, '24h'],
    [48 * HOUR, '48h'],
    [1499, '1s'],
    [1500, '2s'],
    [499, '0s'],
  ])('formats %d ms as %s', (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });

  it('round-trips whole seconds through parseDuration, in a form the CRD accepts', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 10_000_000 }), (seconds) => {
        const text = formatDuration(seconds * SECOND);
        expect(Duration.safeParse(text).success).toBe(true);
        expect(parseDuration(text)).toBe(seconds * SECOND);
      }),
    );
  });

  it('is the shortest form: parse then format gives back a canonical text', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 500 }), fc.integer({ min: 0, max: 500 }), fc.integer({ min: 0, max: 5000 }), (h, m, s) => {
        const canonical = formatDuration(parseDuration(`${h}h${m}m${s}s`));
        expect(canonical).toMatch(/^(?:[1-9][0-9]*h)?(?:[1-5]?[0-9]m)?(?:[1-5]?[0-9]s)?$|^0s$/);
        if (canonical !== '0s') expect(canonical).not.toMatch(/(^|[^0-9])0[hms]/);
        expect(formatDuration(parseDuration(canonical))).toBe(canonical);
      }),
    );
  });
});
