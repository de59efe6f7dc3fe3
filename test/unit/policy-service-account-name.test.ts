/**
 * src/policy/service-account-name.ts: the per-user ServiceAccount name. Lowercase, runs of characters
 * outside [a-z0-9-] become "-", trimmed, cut so that "-" and a 10-hex-digit SHA-256 suffix of the exact
 * user string fit in 63 characters (design brief, "Per subject and tier").
 *
 * The pinned suffixes below were computed with `printf '%s' USER | sha256sum`, not with node:crypto.
 */
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SUFFIX_LENGTHS, sanitize, serviceAccountName, serviceAccountNameCandidates } from '../../src/policy/service-account-name.ts';

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const sha256 = (text: string): string => createHash('sha256').update(text, 'utf8').digest('hex');

/** Any user string: ASCII with the troublesome characters, full unicode, and long ones. */
const anyUser = fc.oneof(
  fc.string({ unit: fc.constantFrom(...'aAzZ09-_.@:/ +!É日ß\u212a\u0130'), maxLength: 80 }),
  fc.string({ unit: 'binary', maxLength: 80 }),
  fc.string({ unit: 'grapheme-ascii', minLength: 40, maxLength: 300 }),
);

describe('sanitize', () => {
  it.each([
    ['alice@example.com', 'alice-example-com'],
    ['Alice@Example.COM', 'alice-example-com'],
    ['system:serviceaccount:team-a:ci', 'system-serviceaccount-team-a-ci'],
    ['oidc:https://idp.example.com/u/42', 'oidc-https-idp-example-com-u-42'],
    ['a//b', 'a-b'],
    ['a@@..b', 'a-b'],
    ['--alice--', 'alice'],
    ['@alice@', 'alice'],
    ['a--b', 'a--b'],
    ['a_-_b', 'a---b'],
    ['José Müller', 'jos-m-ller'],
    ['ÀB', 'b'],
    ['日本語', ''],
    ['@@@', ''],
    ['', ''],
    ['0123', '0123'],
  ])('%j → %j', (user, expected) => {
    expect(sanitize(user)).toBe(expected);
  });

  it('only ever yields [a-z0-9-] with no dash at either end', () => {
    fc.assert(
      fc.property(anyUser, (user) => {
        const text = sanitize(user);
        expect(text).toMatch(/^(?:[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)?$/);
        expect(sanitize(text)).toBe(text);
      }),
    );
  });
});

describe('serviceAccountName', () => {
  it.each([
    ['alice@example.com', 'alice-example-com-ff8d9819fc'],
    ['Alice@example.com', 'alice-example-com-cdbc73c237'],
    ['system:serviceaccount:ns:sa', 'system-serviceaccount-ns-sa-6c01eca262'],
    ['日本語', 'u-77710aedc7'],
    ['', 'u-e3b0c44298'],
  ])('%j → %s', (user, name) => {
    expect(serviceAccountName(user)).toBe(name);
  });

  it('separates users that sanitize alike (case, e-mail vs colon form)', () => {
    const users = ['alice@example.com', 'Alice@example.com', 'ALICE@EXAMPLE.COM', 'alice:example:com', 'alice/example/com', 'alice-example-com'];
    expect(new Set(users.map(sanitize)).size).toBe(1);
    const names = users.map(serviceAccountName);
    expect(new Set(names).size).toBe(users.length);
    for (const name of names) expect(name).toMatch(/^alice-example-com-[0-9a-f]{10}$/);
  });

  it('separates users that sanitize to nothing', () => {
    const users = ['日本語', '中文', '@', '!!', 'ß'];
    expect(users.map(sanitize)).toEqual(['', '', '', '', '']);
    const names = users.map(serviceAccountName);
    expect(new Set(names).size).toBe(users.length);
    for (const name of names) expect(name).toMatch(/^u-[0-9a-f]{10}$/);
  });

  it('cuts a 300-character user to exactly 63 characters', () => {
    const user = 'a'.repeat(300);
    expect(serviceAccountName(user)).toBe(`${'a'.repeat(52)}-${sha256(user).slice(0, 10)}`);
    expect(serviceAccountName(user)).toHaveLength(63);
  });

  it('keeps a user of exactly 52 sanitized characters whole, and cuts one of 53', () => {
    const fits = 'b'.repeat(52);
    const cut = 'b'.repeat(53);
    expect(serviceAccountName(fits)).toBe(`${fits}-${sha256(fits).slice(0, 10)}`);
    expect(serviceAccountName(cut)).toBe(`${'b'.repeat(52)}-${sha256(cut).slice(0, 10)}`);
    expect(serviceAccountName(fits)).not.toBe(serviceAccountName(cut));
  });

  it('drops dashes left at the end of the cut, so no "--" precedes the suffix', () => {
    const user = `${'a'.repeat(50)}@@--tail`; // sanitized: 50 a's, "---tail"; the cut at 52 ends in "--"
    const name = serviceAccountName(user);
    expect(name).toBe(`${'a'.repeat(50)}-${sha256(user).slice(0, 10)}`);
    expect(name).toMatch(DNS_LABEL);
  });

  it('hashes the exact user string, not its sanitized form', () => {
    fc.assert(
      fc.property(anyUser, (user) => {
        expect(serviceAccountName(user).endsWith(`-${sha256(user).slice(0, 10)}`)).toBe(true);
      }),
    );
  });

  it('is a valid DNS-1123 label of at most 63 characters, for any user', () => {
    fc.assert(
      fc.property(anyUser, (user) => {
        const name = serviceAccountName(user);
        expect(name.length).toBeLessThanOrEqual(63);
        expect(name).toMatch(DNS_LABEL);
      }),
      { numRuns: 500 },
    );
  });

  it('is deterministic', () => {
    fc.assert(
      fc.property(anyUser, (user) => {
        expect(serviceAccountName(user)).toBe(serviceAccountName(user));
        expect(serviceAccountNameCandidates(user)).toEqual(serviceAccountNameCandidates(user));
      }),
    );
  });

  it('keeps as much of the sanitized user as fits: its longest prefix of at most 52 characters, minus trailing dashes', () => {
    fc.assert(
      fc.property(anyUser, (user) => {
        const name = serviceAccountName(user);
        const base = name.slice(0, -11);
        const sanitized = sanitize(user);
        if (sanitized === '') {
          expect(base).toBe('u');
        } else {
          expect(base).toBe(sanitized.slice(0, 52).replace(/-+$/, ''));
        }
      }),
    );
  });

  it('differs for different users with the same sanitized form', () => {
    // A user and a variant that only differs where sanitize cannot see it: case, or which separator.
    const variant = fc
      .tuple(fc.string({ unit: fc.constantFrom(...'abcXYZ09@.:/_ -'), minLength: 1, maxLength: 70 }), fc.nat())
      .map(([user, seed]) => {
        const chars = [...user];
        const i = seed % chars.length;
        const c = chars[i] as string;
        chars[i] = /[a-z]/.test(c) ? c.toUpperCase() : /[A-Z]/.test(c) ? c.toLowerCase() : '@.:/_ '.includes(c) ? (c === '@' ? ':' : '@') : c;
        return [user, chars.join('')] as const;
      })
      .filter(([a, b]) => a !== b);
    fc.assert(
      fc.property(variant, ([a, b]) => {
        expect(sanitize(a)).toBe(sanitize(b));
        const ca = serviceAccountNameCandidates(a);
        const cb = serviceAccountNameCandidates(b);
        for (let i = 0; i < SUFFIX_LENGTHS.length; i++) expect(ca[i]).not.toBe(cb[i]);
      }),
      { numRuns: 500 },
    );
  });
});

describe('serviceAccountNameCandidates', () => {
  it('offers suffixes of 10, 16 and 24 hex digits, the first being serviceAccountName', () => {
    expect(SUFFIX_LENGTHS).toEqual([10, 16, 24]);
    expect(serviceAccountNameCandidates('alice@example.com')).toEqual([
      'alice-example-com-ff8d9819fc',
      'alice-example-com-ff8d9819fc0e12bf',
      'alice-example-com-ff8d9819fc0e12bf0d24892e',
    ]);
    expect(serviceAccountNameCandidates('')).toEqual(['u-e3b0c44298', 'u-e3b0c44298fc1c14', 'u-e3b0c44298fc1c149afbf4c8']);
  });

  it('cuts each candidate to fit 63 characters with its own suffix', () => {
    const user = 'x'.repeat(300);
    const candidates = serviceAccountNameCandidates(user);
    expect(candidates.map((c) => c.length)).toEqual([63, 63, 63]);
    expect(candidates[2]).toBe(`${'x'.repeat(38)}-${sha256(user).slice(0, 24)}`);
  });

  it('gives three distinct valid names, each ending in a longer prefix of the same digest', () => {
    fc.assert(
      fc.property(anyUser, (user) => {
        const candidates = serviceAccountNameCandidates(user);
        const digest = sha256(user);
        expect(candidates).toHaveLength(3);
        expect(new Set(candidates).size).toBe(3);
        expect(candidates[0]).toBe(serviceAccountName(user));
        candidates.forEach((name, i) => {
          expect(name.length).toBeLessThanOrEqual(63);
          expect(name).toMatch(DNS_LABEL);
          expect(name.endsWith(`-${digest.slice(0, SUFFIX_LENGTHS[i])}`)).toBe(true);
        });
      }),
    );
  });
});
