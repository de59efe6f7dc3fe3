/**
 * src/policy/tier-quota.ts: TenantBinding maxClients over a namespace. Clients are ranked oldest
 * first; each takes the best tier whose binding still has a place, falling back past full bindings;
 * a binding never has more holders than its maxClients, whichever way its holders came to it.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { API_VERSION, ClientSubject, TenantBinding, Tier, type TierSpec } from '../../src/api/index.ts';
import { planQuotas, resolveWithinQuotas, type QuotaCandidate, type QuotaResolution } from '../../src/policy/tier-quota.ts';
import { bindingMatches, resolveTier } from '../../src/policy/tier-resolution.ts';

const tier = (name: string, spec: z.input<typeof TierSpec> = {}): Tier => Tier.parse({ apiVersion: API_VERSION, kind: 'Tier', metadata: { name }, spec });

function binding(name: string, tierName: string, users: string[], maxClients?: number): TenantBinding {
  return TenantBinding.parse({
    apiVersion: API_VERSION,
    kind: 'TenantBinding',
    metadata: { name, namespace: 'team-a' },
    spec: { tierRef: { name: tierName }, subjects: users.map((name) => ({ kind: 'User', name })), ...(maxClients === undefined ? {} : { maxClients }) },
  });
}

const day = (d: number) => `2025-01-${String(d).padStart(2, '0')}T00:00:00Z`;
function client(name: string, created: string, user = 'u', extra: Partial<QuotaCandidate> = {}): QuotaCandidate {
  return { key: name, name, creationTimestamp: created, subject: ClientSubject.parse({ user, groups: ['everyone'] }), ...extra };
}

const gold = tier('gold', { level: 50 });
const silver = tier('silver', { level: 20 });
const bronze = tier('bronze', { level: 10, groups: ['everyone'] });
const tiers = [gold, silver, bronze];

/** "tier via source", "QuotaExceeded" or the refusal reason. */
const shown = (r: QuotaResolution | undefined) => (r === undefined ? 'absent' : r.resolved ? `${r.tier.metadata.name} via ${r.source}` : r.reason);

describe('planQuotas', () => {
  it('gives the binding to the oldest maxClients clients, whatever order they come in', () => {
    const bindings = [binding('gold-two', 'gold', ['u'], 2)];
    const clients = [client('c', day(3)), client('a', day(1)), client('b', day(2))];
    const plan = planQuotas(clients, tiers, bindings);
    expect(['a', 'b', 'c'].map((k) => shown(plan.resolutions.get(k)))).toEqual(['gold via TenantBinding/gold-two', 'gold via TenantBinding/gold-two', 'bronze via Tier/bronze']);
    expect(plan.holders.get('gold-two')).toBe(2);
    const fellBack = plan.resolutions.get('c');
    expect(fellBack?.resolved && fellBack.message).toContain('TenantBinding gold-two allows 2 client(s) and they are taken');
  });

  it('ranks clients created in the same second by name', () => {
    const plan = planQuotas([client('zed', day(1)), client('amy', day(1))], tiers, [binding('gold-one', 'gold', ['u'], 1)]);
    expect(shown(plan.resolutions.get('amy'))).toBe('gold via TenantBinding/gold-one');
    expect(shown(plan.resolutions.get('zed'))).toBe('bronze via Tier/bronze');
  });

  it('counts clients that fell back to a binding against that binding too', () => {
    // Everyone prefers gold (one place), then silver (one place), then bronze through its group.
    const bindings = [binding('gold-one', 'gold', ['u'], 1), binding('silver-one', 'silver', ['u'], 1)];
    const plan = planQuotas([client('q1', day(1)), client('q2', day(2)), client('q3', day(3))], tiers, bindings);
    expect(['q1', 'q2', 'q3'].map((k) => shown(plan.resolutions.get(k)))).toEqual([
      'gold via TenantBinding/gold-one',
      'silver via TenantBinding/silver-one',
      'bronze via Tier/bronze',
    ]);
  });

  it('refuses with QuotaExceeded, naming every full binding, when nothing else is left', () => {
    const noGroups = [gold, silver];
    const bindings = [binding('gold-one', 'gold', ['u'], 1), binding('silver-zero', 'silver', ['u'], 0)];
    const plan = planQuotas([client('q1', day(1)), client('q2', day(2))], noGroups, bindings);
    const refused = plan.resolutions.get('q2');
    expect(shown(refused)).toBe('QuotaExceeded');
    expect(!refused?.resolved && refused?.message).toBe(
      'TenantBinding gold-one allows 1 client(s) and they are taken; TenantBinding silver-zero allows 0 client(s) and they are taken',
    );
  });

  it('counts a subject who also qualifies by group: once the places are taken, the group does not give the tier around the quota', () => {
    // bronze is everyone's through its group; the tenant's binding gives u bronze with one place.
    const bindings = [binding('bronze-one', 'bronze', ['u'], 1)];
    const plan = planQuotas([client('first', day(1)), client('second', day(2)), client('other', day(3), 'v')], tiers, bindings);
    expect(shown(plan.resolutions.get('first'))).toBe('bronze via TenantBinding/bronze-one');
    const second = plan.resolutions.get('second');
    expect(shown(second)).toBe('QuotaExceeded');
    expect(!second?.resolved && second?.message).toBe('TenantBinding bronze-one allows 1 client(s) and they are taken');
    // Someone the binding does not name is not counted and not limited by it.
    expect(shown(plan.resolutions.get('other'))).toBe('bronze via Tier/bronze');
    expect(plan.holders.get('bronze-one')).toBe(1);
  });

  it('a full binding withholds its tier as the default too, and a requested one; another binding of the tier with a place still grants it', () => {
    const withDefault = [gold, tier('silver', { level: 20, default: true })];
    const full = [binding('silver-one', 'silver', ['u'], 1)];
    const plan = planQuotas([client('a', day(1)), client('b', day(2)), client('c', day(3), 'u', { requestedTier: 'silver' })], withDefault, full);
    expect(['a', 'b', 'c'].map((k) => shown(plan.resolutions.get(k)))).toEqual(['silver via TenantBinding/silver-one', 'QuotaExceeded', 'QuotaExceeded']);
    const two = [...full, binding('silver-two', 'silver', ['u'], 5)];
    const more = planQuotas([client('a', day(1)), client('b', day(2))], withDefault, two);
    expect(['a', 'b'].map((k) => shown(more.resolutions.get(k)))).toEqual(['silver via TenantBinding/silver-one', 'silver via TenantBinding/silver-two']);
  });

  it('a full binding leaves higher tiers its subject qualifies for alone, and falls back to lower ones', () => {
    const goldByGroup = tier('gold', { level: 50, groups: ['everyone'] });
    const plan = planQuotas([client('a', day(1)), client('b', day(2))], [goldByGroup, silver, bronze], [binding('silver-zero', 'silver', ['u'], 0)]);
    expect(['a', 'b'].map((k) => shown(plan.resolutions.get(k)))).toEqual(['gold via Tier/gold', 'gold via Tier/gold']);
    const lower = planQuotas([client('a', day(1)), client('b', day(2))], tiers, [binding('silver-one', 'silver', ['u'], 1)]);
    expect(['a', 'b'].map((k) => shown(lower.resolutions.get(k)))).toEqual(['silver via TenantBinding/silver-one', 'bronze via Tier/bronze']);
  });

  it('gives a requested tier through its binding within the quota', () => {
    const bindings = [binding('silver-one', 'silver', ['u'], 1)];
    const plan = planQuotas([client('a', day(1), 'u', { requestedTier: 'silver' }), client('b', day(2), 'u', { requestedTier: 'silver' })], tiers, bindings);
    expect(shown(plan.resolutions.get('a'))).toBe('silver via Requested');
    expect(shown(plan.resolutions.get('b'))).toBe('QuotaExceeded');
  });

  it('never gives a binding more holders than maxClients, and a client is only ever refused a binding that is full', () => {
    const users = ['u1', 'u2', 'u3'];
    const arbitraryBinding = fc.record({
      tierName: fc.constantFrom('gold', 'silver', 'bronze'),
      users: fc.subarray(users, { minLength: 1 }),
      max: fc.option(fc.integer({ min: 0, max: 4 }), { nil: undefined }),
    });
    const arbitraryClient = fc.record({ user: fc.constantFrom(...users), day: fc.integer({ min: 1, max: 9 }), requested: fc.option(fc.constantFrom('gold', 'silver', 'bronze'), { nil: undefined }) });
    fc.assert(
      fc.property(fc.array(arbitraryBinding, { maxLength: 4 }), fc.array(arbitraryClient, { maxLength: 14 }), (specs, rows) => {
        const bindings = specs.map((s, i) => binding(`b${i}`, s.tierName, s.users, s.max));
        const clients = rows.map((r, i) => client(`c${i}`, day(r.day), r.user, r.requested === undefined ? {} : { requestedTier: r.requested }));
        const plan = planQuotas(clients, tiers, bindings);
        for (const b of bindings) {
          const holding = clients.filter((c) => {
            const r = plan.resolutions.get(c.key);
            return r?.resolved && r.binding?.metadata.name === b.metadata.name;
          });
          expect(plan.holders.get(b.metadata.name) ?? 0).toBe(holding.length);
          if (b.spec.maxClients !== undefined) expect(holding.length).toBeLessThanOrEqual(b.spec.maxClients);
          // Whatever else its subject qualifies for, a client of this binding's subjects that holds
          // its tier holds it through a binding: the tier's groups or default never go around a quota.
          if (b.spec.maxClients === undefined) continue;
          for (const c of clients) {
            const r = plan.resolutions.get(c.key);
            if (r?.resolved && r.tier.metadata.name === b.spec.tierRef.name && bindingMatches(b, c.subject)) expect(r.binding, `${c.key} holds ${r.tier.metadata.name} via ${r.source}`).toBeDefined();
          }
        }
        // Without quotas the plan is each client's own resolution.
        const free = specs.map((s, i) => binding(`b${i}`, s.tierName, s.users));
        const unlimited = planQuotas(clients, tiers, free);
        for (const c of clients) {
          const own = resolveTier({ subject: c.subject, tiers, bindings: free, ...(c.requestedTier ? { requestedTier: c.requestedTier } : {}) });
          expect(shown(unlimited.resolutions.get(c.key))).toBe(shown(own));
        }
      }),
    );
  });
});

describe('resolveWithinQuotas', () => {
  it('ranks a client the plan has not seen after the planned ones', () => {
    const bindings = [binding('gold-one', 'gold', ['u'], 1)];
    expect(shown(resolveWithinQuotas(client('late', day(9)), tiers, bindings, new Map([['gold-one', 1]])))).toBe('bronze via Tier/bronze');
    expect(shown(resolveWithinQuotas(client('late', day(9)), tiers, bindings, new Map()))).toBe('gold via TenantBinding/gold-one');
  });
});
