/**
 * The benchmark's workload shapes (bench/lib/workload.ts) and the bench's expectation of where each
 * client settles (bench/lib/resolution.ts): the bindings shape puts a realistic share of clients
 * behind TenantBindings, full quotas pass some over and refuse the ones that asked for a tier only a
 * full binding grants, and movers stay out of bindings so the tier move still moves all of them.
 */
import { describe, expect, it } from 'vitest';
import { expectedResolutions, resolutionSummary } from '../../bench/lib/resolution.ts';
import {
  LAST_APPLIED_ANNOTATION,
  RUN_LABEL,
  TIERS,
  appliedClientObject,
  bindingObject,
  bindings,
  clientObject,
  clients,
  tenantNamespace,
  tierObject,
} from '../../bench/lib/workload.ts';

const labels = { [RUN_LABEL]: 'test' };

function objects(n: number) {
  const defs = clients(n, 'bindings');
  // Created in index order, one second apart per 100: the quota ranks the oldest first.
  const created = defs.map((d) => ({
    ...clientObject(d, tenantNamespace('bench', d.tenant), labels),
    metadata: { ...clientObject(d, tenantNamespace('bench', d.tenant), labels).metadata, creationTimestamp: new Date(Date.UTC(2026, 0, 1, 0, 0, Math.floor(d.index / 100))).toISOString() },
  }));
  const tiers = TIERS.map((t) => tierObject(t, labels));
  const bs = bindings(defs).map((b) => bindingObject(b, tenantNamespace('bench', b.tenant), labels));
  return { defs, created, tiers, bs, bindingDefs: bindings(defs) };
}

describe('bench workload shapes', () => {
  it('classic has no binding members and no tierRef, as every result before issue 9', () => {
    const defs = clients(1000);
    expect(defs.every((d) => d.team === undefined && d.tierRef === undefined)).toBe(true);
    expect(bindings(defs)).toEqual([]);
  });

  it('bindings: about half the clients are binding subjects, never a mover', () => {
    const { defs, bindingDefs } = objects(1000);
    const members = defs.filter((d) => d.team !== undefined);
    expect(members.length).toBeGreaterThan(400);
    expect(members.length).toBeLessThan(600);
    expect(members.some((d) => d.mover)).toBe(false);
    expect(bindingDefs.filter((b) => b.maxClients !== undefined).length).toBe(20);
    for (const b of bindingDefs) expect(b.subjects.length).toBeLessThanOrEqual(256);
  });

  it('expected resolution: quotas hold, the rest fall back, QuotaExceeded only for a requested tier', () => {
    const { created, tiers, bs, bindingDefs } = objects(1000);
    const expected = expectedResolutions(created, tiers, bs);
    expect(expected.size).toBe(1000);
    const summary = resolutionSummary(expected);
    expect(summary.throughBindings).toBeGreaterThan(250);
    expect(summary.quotaFallback).toBeGreaterThan(0);
    expect(summary.quotaExceeded).toBeGreaterThan(0);
    // No binding holds more clients than its maxClients.
    for (const b of bindingDefs) {
      const holding = [...expected].filter(([k, e]) => k.startsWith(`${tenantNamespace('bench', b.tenant)}/`) && 'binding' in e && e.binding === b.name).length;
      if (b.maxClients !== undefined) expect(holding).toBeLessThanOrEqual(b.maxClients);
      expect(holding).toBeGreaterThan(0);
    }
    // QuotaExceeded clients are exactly some of those asking for a tier.
    const byKey = new Map(created.map((c) => [`${c.metadata.namespace}/${c.metadata.name}`, c]));
    for (const [k, e] of expected) if ('quotaExceeded' in e) expect(byKey.get(k)?.spec.tierRef).toEqual({ name: 'standard' });
    // The oldest members of a full quota hold it: c-0's cohort is older than c-999's.
    const ml = [...expected].filter(([, e]) => 'binding' in e && e.binding === 'ml-premium').map(([k]) => Number(k.split('/c-')[1]));
    const passedOver = [...expected].filter(([k, e]) => 'fellBack' in e && e.fellBack && byKey.get(k)?.spec.subject.groups.some((g) => g.endsWith('-ml'))).map(([k]) => Number(k.split('/c-')[1]));
    expect(passedOver.length).toBeGreaterThan(0);
    expect(Math.max(...ml)).toBeLessThan(Math.max(...passedOver));
  });

  it('ssa: the applied object carries the manifest itself as last-applied-configuration', () => {
    const [d] = clients(20, 'realistic');
    const obj = appliedClientObject(d!, 'bench-t0', labels);
    const last = JSON.parse(obj.metadata.annotations[LAST_APPLIED_ANNOTATION]!) as { spec: unknown; metadata: { annotations: Record<string, string> } };
    expect(last.spec).toEqual(obj.spec);
    expect(last.metadata.annotations[LAST_APPLIED_ANNOTATION]).toBeUndefined();
    expect(JSON.stringify(obj).length).toBeGreaterThan(1000);
  });
});
