import { describe, expect, it } from 'vitest';
import { API_VERSION, Tier } from '../../src/api/index.ts';
import { clientUidSelector, hasLeftTier, uidChunks } from '../../src/policy/tier-departure.ts';

const clientUidSelectors = (label: string, uids: string[], perRequest?: number): string[] => uidChunks(uids, perRequest).map((chunk) => clientUidSelector(label, chunk));

const tier = (name: string): Tier => Tier.parse({ apiVersion: API_VERSION, kind: 'Tier', metadata: { name }, spec: {} });

describe('hasLeftTier', () => {
  it('a client resolved to the tier that holds its tokens stays', () => {
    expect(hasLeftTier({ resolved: true, tier: tier('gold'), source: 'Tier/gold', message: '' }, 'gold')).toBe(false);
  });
  it('a client resolved to another tier, or to none, or out of quota, has left', () => {
    expect(hasLeftTier({ resolved: true, tier: tier('silver'), source: 'Tier/silver', message: '' }, 'gold')).toBe(true);
    expect(hasLeftTier({ resolved: false, reason: 'NoMatchingTier', message: '' }, 'gold')).toBe(true);
    expect(hasLeftTier({ resolved: false, reason: 'QuotaExceeded', message: '' }, 'gold')).toBe(true);
  });
});

describe('uidChunks and clientUidSelector', () => {
  it('no clients, no request', () => {
    expect(clientUidSelectors('l', [])).toEqual([]);
  });
  it('one set-based selector per chunk, sorted and without repeats, so a retry sends the same requests', () => {
    expect(clientUidSelectors('tokenwarden.io/client-uid', ['c', 'a', 'b', 'a'], 2)).toEqual(['tokenwarden.io/client-uid in (a,b)', 'tokenwarden.io/client-uid in (c)']);
  });
  it('every uid lands in exactly one selector', () => {
    const uids = Array.from({ length: 450 }, (_, i) => `uid-${String(i).padStart(3, '0')}`);
    const selectors = clientUidSelectors('l', uids, 200);
    expect(selectors).toHaveLength(3);
    const seen = selectors.flatMap((s) => s.slice('l in ('.length, -1).split(','));
    expect(seen.sort()).toEqual(uids);
  });
});
