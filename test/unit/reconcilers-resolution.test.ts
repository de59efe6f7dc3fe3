/**
 * src/reconcilers/resolution.ts: with a TenantBinding quota in a namespace, resolving every client of
 * it is one plan over the namespace (linear per pass), not one re-resolution of the namespace per
 * client; the plan is redone only when what it was made from changes.
 */
import { describe, expect, it } from 'vitest';
import { API_VERSION, ServiceAccountClient, TenantBinding, Tier } from '../../src/api/index.ts';
import { NAMESPACE_INDEX, Store, namespaceIndexFunc } from '../../src/controller/store.ts';
import type { Caches, OperatorContext } from '../../src/reconcilers/context.ts';
import { subjectProof } from '../../src/policy/subject-proof.ts';
import { quotaInputsChanged, resolveClientTier } from '../../src/reconcilers/resolution.ts';

/** A client Store that counts how often the namespace's clients are listed. */
class CountingStore extends Store<ServiceAccountClient> {
  listings = 0;
  override byIndex(indexName: string, value: string): ServiceAccountClient[] {
    this.listings++;
    return super.byIndex(indexName, value);
  }
}

function setup(n: number) {
  const tiers = new Store<Tier>();
  for (const [name, level, groups] of [['gold', 50, []], ['bronze', 10, ['everyone']]] as const) {
    tiers.upsert(Tier.parse({ apiVersion: API_VERSION, kind: 'Tier', metadata: { name }, spec: { level, groups: [...groups] } }));
  }
  const bindings = new Store<TenantBinding>({ [NAMESPACE_INDEX]: namespaceIndexFunc });
  bindings.upsert(
    TenantBinding.parse({
      apiVersion: API_VERSION,
      kind: 'TenantBinding',
      metadata: { name: 'gold-ten', namespace: 'team-a' },
      spec: { tierRef: { name: 'gold' }, subjects: [{ kind: 'Group', name: 'everyone' }], maxClients: 10 },
    }),
  );
  const clients = new CountingStore({ [NAMESPACE_INDEX]: namespaceIndexFunc });
  for (let i = 0; i < n; i++) {
    const name = `c${String(i).padStart(5, '0')}`;
    clients.upsert(
      ServiceAccountClient.parse({
        apiVersion: API_VERSION,
        kind: 'ServiceAccountClient',
        metadata: { name, namespace: 'team-a', uid: `uid-${name}`, generation: 1, creationTimestamp: '2025-01-01T00:00:00Z' },
        spec: { subject: { user: `${name}@example.com`, groups: ['everyone'] } },
      }),
    );
  }
  const caches = { tiers, bindings, clients } as unknown as Caches;
  const op = { caches, now: () => Date.now() } as unknown as OperatorContext;
  const tierOf = (c: ServiceAccountClient) => {
    const r = resolveClientTier(op, c);
    return r.resolved ? r.tier.metadata.name : r.reason;
  };
  return { op, caches, clients, tierOf };
}

describe('resolveClientTier with a quota', () => {
  it('lists the namespace once for a whole pass, and gives the places to the oldest clients', () => {
    const { clients, tierOf } = setup(2000);
    const all = clients.list();
    const tiers = all.map(tierOf);
    expect(clients.listings, 'namespace listings for a pass over 2000 clients').toBe(1);
    expect(tiers.filter((t) => t === 'gold')).toHaveLength(10);
    expect(tiers.slice(0, 10)).toEqual(Array(10).fill('gold'));
  });

  it('plans again after quotaInputsChanged, and only then', () => {
    const { caches, clients, tierOf } = setup(50);
    const first = clients.list()[0] as ServiceAccountClient;
    tierOf(first);
    tierOf(first);
    expect(clients.listings).toBe(1);
    quotaInputsChanged(caches, 'team-b');
    tierOf(first);
    expect(clients.listings, 'another namespace changed').toBe(1);
    clients.delete('team-a/c00000');
    quotaInputsChanged(caches, 'team-a');
    const eleventh = clients.getByKey('team-a/c00010') as ServiceAccountClient;
    expect(tierOf(eleventh), 'the 11th client takes the place the first left').toBe('gold');
    expect(clients.listings).toBe(2);
    quotaInputsChanged(caches);
    tierOf(eleventh);
    expect(clients.listings, 'a Tier changed').toBe(3);
  });

  it('resolves a version of a client the plan has not seen in its own place, and leaves the plan alone', () => {
    const { clients, tierOf } = setup(20);
    const oldest = clients.list()[0] as ServiceAccountClient;
    expect(tierOf(oldest)).toBe('gold');
    const edited = { ...oldest, metadata: { ...oldest.metadata, generation: 2 } };
    expect(tierOf(edited), 'still the oldest: its place is its own').toBe('gold');
    const unseen = { ...oldest, metadata: { ...oldest.metadata, name: 'late', uid: 'uid-late', creationTimestamp: '2025-02-01T00:00:00Z' } };
    expect(tierOf(unseen), 'a client newer than the plan ranks after the planned ones').toBe('bronze');
    const deleting = { ...oldest, metadata: { ...oldest.metadata, uid: 'uid-gone', deletionTimestamp: '2025-03-01T00:00:00Z' } };
    expect(tierOf(deleting), 'a client being deleted holds no place').toBe('bronze');
    expect(tierOf(oldest), 'the plan is unchanged').toBe('gold');
  });
});

describe('resolveClientTier with a group grant that expires (groupGrantMaxAge)', () => {
  const CREATED = Date.parse('2025-01-01T00:00:00Z');
  const HOUR = 3_600_000;

  function aging(n: number) {
    const s = setup(n);
    let now = CREATED + HOUR / 2;
    (s.op as unknown as { now: () => number }).now = () => now;
    const tiers = (s.caches as unknown as { tiers: Store<Tier> }).tiers;
    tiers.upsert(Tier.parse({ apiVersion: API_VERSION, kind: 'Tier', metadata: { name: 'platinum' }, spec: { level: 60, groups: ['everyone'], groupGrantMaxAge: '1h' } }));
    quotaInputsChanged(s.caches);
    return { ...s, at: (ms: number) => (now = ms) };
  }

  it('gives the tier through the groups until the age passes, then plans the namespace again without it, by itself', () => {
    const { clients, tierOf, at } = aging(20);
    const all = clients.list();
    expect(all.map(tierOf)).toEqual(Array(20).fill('platinum'));
    at(CREATED + 2 * HOUR);
    // The plan counted on a grant that expired: the first client that sees it makes the plan again
    // (no quotaInputsChanged), once for the whole pass, and the binding's ten places go to the oldest.
    const listings = clients.listings;
    const tiers = all.map(tierOf);
    expect(clients.listings - listings, 'namespace listings for the pass after the expiry').toBe(1);
    expect(tiers.slice(0, 10)).toEqual(Array(10).fill('gold'));
    expect(tiers.slice(10)).toEqual(Array(10).fill('bronze'));
  });

  it('a client proven again since (a new digest, no new generation) gets the grant back, and its binding place goes to the next', () => {
    const { clients, tierOf, at } = aging(12);
    at(CREATED + 2 * HOUR);
    const [oldest] = clients.list() as ServiceAccountClient[];
    expect(tierOf(oldest as ServiceAccountClient)).toBe('gold');
    const eleventh = clients.getByKey('team-a/c00010') as ServiceAccountClient;
    expect(tierOf(eleventh)).toBe('bronze');
    // The operator recorded the proof at creation; the new annotation is a new digest.
    const recorded = { ...(oldest as ServiceAccountClient), status: { subjectProof: subjectProof(oldest as ServiceAccountClient, CREATED) } };
    const touched = { ...recorded, metadata: { ...recorded.metadata, annotations: { 'tokenwarden.io/subject-proof': 'again' } } };
    clients.upsert(touched);
    expect(tierOf(touched)).toBe('platinum');
    expect(tierOf(eleventh), 'the place the touched client left').toBe('gold');
  });
});
