/**
 * src/policy/text.ts: tenant text made inert for terminals. Every control, separator and bidi
 * control becomes a JSON escape; everything printable, in any script, is left alone; JSON stays
 * JSON with the same value.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { escapeControls, escapeLines, hasControls, quote, quoteShort } from '../../src/policy/text.ts';

/** Nothing a terminal would act on: C0, DEL, C1, separators, bidi controls. */
// eslint-disable-next-line no-control-regex
const RAW = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

describe('escapeControls', () => {
  it('escapes ANSI sequences, the 8-bit CSI, BEL, backspace, DEL and newlines', () => {
    expect(escapeControls('\u001b[2J\u001b]0;owned\u0007x\u0008\u007f\u009b31m')).toBe('\\u001b[2J\\u001b]0;owned\\u0007x\\u0008\\u007f\\u009b31m');
    expect(escapeControls('a\nb\rc\td')).toBe('a\\nb\\rc\\td');
  });

  it('escapes bidi overrides, isolates, marks and line separators', () => {
    expect(escapeControls('alice\u202emoc.elpmaxe\u202c \u2066x\u2069 \u200e\u200f\u061c \u2028\u2029')).toBe(
      'alice\\u202emoc.elpmaxe\\u202c \\u2066x\\u2069 \\u200e\\u200f\\u061c \\u2028\\u2029',
    );
  });

  it('leaves printable text of every script, emoji and backslashes as they are', () => {
    for (const text of ['alice@example.com', 'Ålice Dupré', '研究チーム', 'اليس', '👩\u200d💻', 'C:\\path', 'tier "premium"']) expect(escapeControls(text)).toBe(text);
  });

  it('never leaves a raw control, and a string with none is unchanged', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 60 }), (text) => {
        const out = escapeControls(text);
        expect(RAW.test(out)).toBe(false);
        expect(hasControls(text)).toBe(out !== text);
      }),
    );
  });
});

describe('quote', () => {
  it('is a JSON string literal of the text, with every control escaped', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 60 }), (text) => {
        const q = quote(text);
        expect(RAW.test(q)).toBe(false);
        expect(JSON.parse(q)).toBe(text);
      }),
    );
    expect(quote('premium')).toBe('"premium"');
    expect(quote('x"\u001b[31m')).toBe('"x\\"\\u001b[31m"');
  });
});

describe('escapeLines', () => {
  it('keeps the printer\'s own newlines and JSON output valid with the same value', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string({ maxLength: 5 }), fc.string({ unit: 'binary', maxLength: 30 })), (obj) => {
        const json = JSON.stringify(obj, null, 2);
        const out = escapeLines(json);
        expect(RAW.test(out.replaceAll('\n', ''))).toBe(false);
        expect(JSON.parse(out)).toEqual(obj);
      }),
    );
  });
});

describe('quoteShort', () => {
  it('quotes short text as quote() does', () => {
    expect(quoteShort('2025-01-01T12:00:00Z')).toBe('"2025-01-01T12:00:00Z"');
    expect(quoteShort('x) run: sh (')).toBe('"x) run: sh ("');
  });

  it('cuts longer text to its first 64 characters and says how long it was, never splitting a surrogate pair', () => {
    expect(quoteShort('a'.repeat(65))).toBe(`"${'a'.repeat(64)}"… (65 characters)`);
    expect(quoteShort('😀'.repeat(70))).toBe(`"${'😀'.repeat(64)}"… (70 characters)`);
    expect(quoteShort('abcdef', 3)).toBe('"abc"… (6 characters)');
  });

  it('leaves nothing raw a terminal would act on, and always ends its quoted part with a quote', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 200 }), (text) => {
        const q = quoteShort(text);
        expect(q).not.toMatch(RAW);
        expect(q.startsWith('"')).toBe(true);
        expect(/"(… \(\d+ characters\))?$/.test(q)).toBe(true);
      }),
    );
  });
});
