import { describe, expect, it } from 'vitest';
import type { ServiceAccountClient, Tier } from '../../../src/api/index.ts';
import { Controller, TerminalError } from '../../../src/controller/controller.ts';
import { WorkQueue } from '../../../src/controller/workqueue.ts';
import { WORKQUEUE_DURATION_BUCKETS, createMetrics, resultLabel, type OperatorMetrics } from '../../../src/observability/metrics.ts';

interface Sample {
  labels: Record<string, string>;
  value: number;
}

/** Samples of one family from the Prometheus text exposition (what a scrape sees). */
async function samples(metrics: OperatorMetrics, name: string): Promise<Sample[]> {
  const text = await metrics.registry.metrics();
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1] as string] = l[2] as string;
    out.push({ labels, value: Number(m[3]) });
  }
  return out;
}

async function value(metrics: OperatorMetrics, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  const found = (await samples(metrics, name)).filter((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v) && Object.keys(s.labels).length === Object.keys(labels).length);
  if (found.length > 1) throw new Error(`${name} ${JSON.stringify(labels)}: ${found.length} samples`);
  return found[0]?.value;
}

const metricsFor = (now = () => Date.parse('2030-01-01T00:00:00Z')) => createMetrics({ processMetrics: false, now });

function tier(name: string): Tier {
  return { apiVersion: 'tokenwarden.io/v1alpha1', kind: 'Tier', metadata: { name }, spec: {} } as unknown as Tier;
}

function client(name: string, status: { tier?: string; ready?: boolean; expiresAt?: string }): ServiceAccountClient {
  return {
    apiVersion: 'tokenwarden.io/v1alpha1',
    kind: 'ServiceAccountClient',
    metadata: { name, namespace: 'team' },
    spec: { subject: { user: `${name}@example.com` } },
    status: {
      ...(status.tier ? { tier: status.tier } : {}),
      ...(status.expiresAt ? { expiresAt: status.expiresAt } : {}),
      conditions:
        status.ready === undefined
          ? []
          : [{ type: 'Ready', status: status.ready ? 'True' : 'False', reason: 'X', message: '', lastTransitionTime: '2030-01-01T00:00:00Z' }],
    },
  } as unknown as ServiceAccountClient;
}

describe('token counters', () => {
  it('count issued, rotated and revoked per tier', async () => {
    const m = metricsFor();
    m.tokens.issued('gold');
    m.tokens.issued('gold');
    m.tokens.issued('free');
    m.tokens.rotated('gold');
    m.tokens.revoked('gold', 3);
    m.tokens.revoked('free', 0);
    expect(await value(m, 'tokenwarden_tokens_issued_total', { tier: 'gold' })).toBe(2);
    expect(await value(m, 'tokenwarden_tokens_issued_total', { tier: 'free' })).toBe(1);
    expect(await value(m, 'tokenwarden_tokens_rotated_total', { tier: 'gold' })).toBe(1);
    expect(await value(m, 'tokenwarden_tokens_revoked_total', { tier: 'gold' })).toBe(3);
    expect(await value(m, 'tokenwarden_tokens_revoked_total', { tier: 'free' })).toBeUndefined();
  });
});

describe('controller-runtime metrics', () => {
  it('map outcomes to controller-runtime results', () => {
    expect(resultLabel('success')).toBe('success');
    expect(resultLabel('requeue')).toBe('requeue_after');
    expect(resultLabel('error')).toBe('error');
    expect(resultLabel('terminal')).toBe('error');
  });

  it('count reconciles, errors and times of a real Controller and its WorkQueue', async () => {
    const m = metricsFor();
    const seen = new Map<string, number>();
    const controller = new Controller({
      name: 'widget',
      metrics: m.controller,
      queue: new WorkQueue({ baseDelayMs: 1, maxDelayMs: 1, metrics: m.workqueue('widget') }),
      reconcile: async (key) => {
        const n = (seen.get(key) ?? 0) + 1;
        seen.set(key, n);
        if (key === 'flaky' && n === 1) throw new Error('try again');
        if (key === 'broken') throw new TerminalError('never');
        if (key === 'later' && n === 1) return { requeueAfterMs: 1 };
        return undefined;
      },
    });
    // Zero series exist before any reconcile, as controller-runtime creates them.
    for (const result of ['success', 'error', 'requeue', 'requeue_after']) {
      expect(await value(m, 'controller_runtime_reconcile_total', { controller: 'widget', result })).toBe(0);
    }
    expect(await value(m, 'workqueue_depth', { name: 'widget' })).toBe(0);
    for (const key of ['ok', 'flaky', 'broken', 'later']) controller.enqueue(key);
    expect(await value(m, 'workqueue_depth', { name: 'widget' })).toBe(4);
    controller.start();
    const deadline = Date.now() + 5000;
    while ((seen.get('flaky') ?? 0) < 2 || (seen.get('later') ?? 0) < 2) {
      if (Date.now() > deadline) throw new Error(`not done: ${JSON.stringify([...seen])}`);
      await new Promise((r) => setTimeout(r, 5));
    }
    await controller.stop(1000);

    // ok, flaky (2nd), later (2nd): success; flaky (1st), broken: error; later (1st): requeue_after.
    expect(await value(m, 'controller_runtime_reconcile_total', { controller: 'widget', result: 'success' })).toBe(3);
    expect(await value(m, 'controller_runtime_reconcile_total', { controller: 'widget', result: 'error' })).toBe(2);
    expect(await value(m, 'controller_runtime_reconcile_total', { controller: 'widget', result: 'requeue_after' })).toBe(1);
    expect(await value(m, 'controller_runtime_reconcile_total', { controller: 'widget', result: 'requeue' })).toBe(0);
    expect(await value(m, 'controller_runtime_reconcile_errors_total', { controller: 'widget' })).toBe(2);
    expect(await value(m, 'controller_runtime_terminal_reconcile_errors_total', { controller: 'widget' })).toBe(1);
    expect(await value(m, 'controller_runtime_reconcile_time_seconds_count', { controller: 'widget' })).toBe(6);
    expect(await value(m, 'controller_runtime_reconcile_time_seconds_bucket', { controller: 'widget', le: '+Inf' })).toBe(6);

    // 4 enqueues + flaky's retry + later's requeue.
    expect(await value(m, 'workqueue_adds_total', { name: 'widget' })).toBe(6);
    expect(await value(m, 'workqueue_retries_total', { name: 'widget' })).toBe(1);
    expect(await value(m, 'workqueue_depth', { name: 'widget' })).toBe(0);
    expect(await value(m, 'workqueue_queue_duration_seconds_count', { name: 'widget' })).toBe(6);
    expect(await value(m, 'workqueue_work_duration_seconds_count', { name: 'widget' })).toBe(6);
  });

  it('use client-go\'s workqueue buckets, 10ns to 1000s', () => {
    expect(WORKQUEUE_DURATION_BUCKETS).toHaveLength(12);
    expect(WORKQUEUE_DURATION_BUCKETS[0]).toBe(1e-8);
    expect(WORKQUEUE_DURATION_BUCKETS[11]).toBe(1000);
  });
});

describe('leader_election_master_status', () => {
  it('is absent until set, then 1 or 0 for the lease', async () => {
    const m = createMetrics({ processMetrics: false, leaseName: 'tw-lease' });
    expect(await samples(m, 'leader_election_master_status')).toEqual([]);
    m.setLeader(false);
    expect(await value(m, 'leader_election_master_status', { name: 'tw-lease' })).toBe(0);
    m.setLeader(true);
    expect(await value(m, 'leader_election_master_status', { name: 'tw-lease' })).toBe(1);
  });
});

describe('rest_client_requests_total', () => {
  it('counts requests by HTTP method and code, "<error>" when no response came', async () => {
    const m = metricsFor();
    m.onRequest('get', 'secrets', 200);
    m.onRequest('list', 'secrets', 200);
    m.onRequest('watch', 'secrets', 200);
    m.onRequest('create', 'secrets', 409);
    m.onRequest('patch', 'secrets', 200);
    m.onRequest('update', 'secrets', 200);
    m.onRequest('delete', 'secrets', 404);
    m.onRequest('get', 'secrets', 0);
    expect(await value(m, 'rest_client_requests_total', { code: '200', method: 'GET' })).toBe(3);
    expect(await value(m, 'rest_client_requests_total', { code: '409', method: 'POST' })).toBe(1);
    expect(await value(m, 'rest_client_requests_total', { code: '200', method: 'PATCH' })).toBe(1);
    expect(await value(m, 'rest_client_requests_total', { code: '200', method: 'PUT' })).toBe(1);
    expect(await value(m, 'rest_client_requests_total', { code: '404', method: 'DELETE' })).toBe(1);
    expect(await value(m, 'rest_client_requests_total', { code: '<error>', method: 'GET' })).toBe(1);
  });
});

describe('gauges computed from the caches', () => {
  it('report nothing before the caches are attached', async () => {
    const m = metricsFor();
    expect(await samples(m, 'tokenwarden_clients')).toEqual([]);
    expect(await samples(m, 'tokenwarden_token_earliest_expiry_seconds')).toEqual([]);
    const text = await m.registry.metrics();
    expect(text).toContain('# TYPE tokenwarden_token_earliest_expiry_seconds gauge');
  });

  it('count clients by tier and Ready, with zeros for every known tier, at scrape time', async () => {
    const m = metricsFor();
    const caches = { tiers: [tier('gold'), tier('free')], clients: [] as ServiceAccountClient[] };
    m.attachCaches({ tiers: { list: () => caches.tiers }, clients: { list: () => caches.clients } });
    expect(await value(m, 'tokenwarden_clients', { tier: 'gold', ready: 'true' })).toBe(0);
    expect(await value(m, 'tokenwarden_clients', { tier: 'free', ready: 'false' })).toBe(0);

    caches.clients = [
      client('a', { tier: 'gold', ready: true, expiresAt: '2030-01-01T01:00:00Z' }),
      client('b', { tier: 'gold', ready: true, expiresAt: '2030-01-01T00:10:00Z' }),
      client('c', { tier: 'gold', ready: false, expiresAt: '2030-01-01T00:01:00Z' }),
      client('d', {}),
    ];
    expect(await value(m, 'tokenwarden_clients', { tier: 'gold', ready: 'true' })).toBe(2);
    expect(await value(m, 'tokenwarden_clients', { tier: 'gold', ready: 'false' })).toBe(1);
    expect(await value(m, 'tokenwarden_clients', { tier: 'free', ready: 'true' })).toBe(0);
    expect(await value(m, 'tokenwarden_clients', { tier: '', ready: 'false' })).toBe(1);
    // The earliest expiry among Ready clients: b's, 10 minutes away (c is not Ready).
    expect(await value(m, 'tokenwarden_token_earliest_expiry_seconds')).toBe(600);

    // A tier that went away leaves no stale series; no Ready client: no expiry sample at all.
    caches.tiers = [tier('gold')];
    caches.clients = [client('c', { tier: 'gold', ready: false, expiresAt: '2030-01-01T00:01:00Z' })];
    expect((await samples(m, 'tokenwarden_clients')).map((s) => s.labels.tier)).not.toContain('free');
    expect(await value(m, 'tokenwarden_clients', { tier: 'gold', ready: 'true' })).toBe(0);
    expect(await samples(m, 'tokenwarden_token_earliest_expiry_seconds')).toEqual([]);

    m.detachCaches();
    expect(await samples(m, 'tokenwarden_clients')).toEqual([]);
  });
});

describe('process metrics', () => {
  it('are in the registry by default, and each registry is separate', async () => {
    const a = createMetrics();
    const b = createMetrics({ processMetrics: false });
    expect(await a.registry.metrics()).toContain('process_cpu_seconds_total');
    expect(await a.registry.metrics()).toContain('nodejs_eventloop_lag_seconds');
    expect(await b.registry.metrics()).not.toContain('process_cpu_seconds_total');
  });
});
