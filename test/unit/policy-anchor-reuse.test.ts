/**
 * src/policy/anchor-reuse.ts and src/reconcilers/unused-anchors.ts: an anchor is reused by the next
 * attempt only when a refusal proved no token was bound to it, only the very object remembered, and
 * only once.
 */
import { describe, expect, it } from 'vitest';
import { mayReuseAnchor, refusedWithoutToken, type AnchorRef } from '../../src/policy/anchor-reuse.ts';
import { UnusedAnchors } from '../../src/reconcilers/unused-anchors.ts';

const anchor: AnchorRef = { namespace: 'tw-tier-free', name: 'c-0a1b2c3d4e', uid: 'u-1', tier: 'free' };
const cached = { ...anchor, deleting: false };
const want = { namespace: 'tw-tier-free', tier: 'free' };

describe('refusedWithoutToken', () => {
  it('a refusal before or by the handler proves no token: 400, 403 (RBAC, admission), 422, 429', () => {
    for (const code of [400, 403, 422, 429]) expect(refusedWithoutToken(code)).toBe(true);
  });

  it('anything that may come after a token was signed, or says the objects are not what was thought, does not', () => {
    for (const code of [undefined, 0, 200, 201, 401, 404, 409, 410, 500, 502, 503, 504]) expect(refusedWithoutToken(code)).toBe(false);
  });
});

describe('mayReuseAnchor', () => {
  it('reuses the remembered anchor when the cache shows the same object in the wanted namespace and tier', () => {
    expect(mayReuseAnchor(anchor, cached, want)).toBe(true);
  });

  it('nothing remembered, or the anchor gone or being deleted: a new one', () => {
    expect(mayReuseAnchor(undefined, cached, want)).toBe(false);
    expect(mayReuseAnchor(anchor, undefined, want)).toBe(false);
    expect(mayReuseAnchor(anchor, { ...cached, deleting: true }, want)).toBe(false);
  });

  it('another object of that name (recreated), another namespace or another tier: a new one', () => {
    expect(mayReuseAnchor(anchor, { ...cached, uid: 'u-2' }, want)).toBe(false);
    expect(mayReuseAnchor(anchor, { ...cached, name: 'other' }, want)).toBe(false);
    expect(mayReuseAnchor(anchor, { ...cached, namespace: 'elsewhere' }, want)).toBe(false);
    expect(mayReuseAnchor(anchor, cached, { ...want, namespace: 'tw-tier-premium' })).toBe(false);
    expect(mayReuseAnchor(anchor, { ...cached, tier: 'premium' }, want)).toBe(false);
  });
});

describe('UnusedAnchors', () => {
  it('hands an anchor out once: taking it forgets it, since a token may be bound to it from then on', () => {
    const unused = new UnusedAnchors();
    unused.remember('client-1', anchor);
    expect(unused.take('client-1')).toEqual(anchor);
    expect(unused.take('client-1')).toBeUndefined();
    expect(unused.size).toBe(0);
  });

  it('forgets an anchor being deleted, and only that one', () => {
    const unused = new UnusedAnchors();
    unused.remember('client-1', anchor);
    unused.forget('client-1', 'another');
    expect(unused.size).toBe(1);
    unused.forget('client-1', anchor.name);
    expect(unused.take('client-1')).toBeUndefined();
  });
});
