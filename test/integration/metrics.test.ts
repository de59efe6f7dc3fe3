/**
 * Issue 4, "Done when" 5: after a known sequence of actions, the metrics read back the right numbers.
 *
 * One operator of this file, with /metrics and the probes on ports of their own (127.0.0.1:0; the
 * bound URLs come from its "serving ..." log lines). Its --selector limits it to this file's objects,
 * so every tokenwarden_* number below is exact, not "at least".
 *
 * Sequence: a Tier (1h tokens), a TenantBinding, two clients Ready (2 issued), revocationEpoch raised
 * on one (1 more issued, 1 revoked), the other deleted (1 revoked). So: issued 3, rotated 0,
 * revoked 2, one Ready client in the tier, its token about an hour from expiry. Then, in a tier of
 * 10-minute tokens renewed after 10 s: one client issued, rotated once, suspended (2 revoked).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { createTestNamespace, waitFor } from './support/cluster.ts';
import {
  R,
  createBinding,
  createClient,
  createTier,
  getClient,
  kube,
  metricSamples,
  startOperator,
  waitForClientReady,
  waitForTierReady,
  type OperatorProcess,
  type Sample,
  serviceAccountKubeconfig,
} from './support/operator.ts';

let op: OperatorProcess;
let metricsUrl: string;
let healthUrl: string;
let ns: string;
let tierName: string;
let group: string;

/** The `url` of the operator's first JSON log line with this msg. */
function loggedUrl(msg: string): string {
  for (const line of op.logs().split('\n')) {
    if (!line.includes(`"msg":"${msg}"`)) continue;
    const url = (JSON.parse(line) as { url?: string }).url;
    if (url) return url.replace(/\/(metrics|healthz)$/, '');
  }
  throw new Error(`no "${msg}" line in ${op.logPath}:\n${op.tail()}`);
}

async function scrape(): Promise<string> {
  const res = await fetch(`${metricsUrl}/metrics`);
  expect(res.status).toBe(200);
  return res.text();
}

/** The one sample of `name` whose labels are exactly `labels`; undefined if none. */
function valueOf(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const matches = metricSamples(text, name).filter(
    (s: Sample) => Object.keys(s.labels).length === Object.keys(labels).length && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
  if (matches.length > 1) throw new Error(`${name}${JSON.stringify(labels)}: ${matches.length} samples`);
  return matches[0]?.value;
}

beforeAll(async () => {
  op = await startOperator({
    name: 'metrics',
    extraArgs: ['--metrics-bind-address=127.0.0.1:0', '--health-probe-bind-address=127.0.0.1:0'],
  });
  metricsUrl = loggedUrl('serving metrics');
  healthUrl = loggedUrl('serving health probes');
  ns = await createTestNamespace(`${op.prefix}-team`);
  group = `${op.prefix}-users`;
});

describe('5: metrics after a known sequence', () => {
  it('serves /healthz and /readyz on the probe port, /metrics on the metrics port, nothing else', async () => {
    expect(metricsUrl).not.toBe(healthUrl);
    expect((await fetch(`${healthUrl}/healthz`)).status).toBe(200);
    expect((await fetch(`${healthUrl}/readyz`)).status).toBe(200);
    expect((await fetch(`${healthUrl}/metrics`)).status).toBe(404);
    expect((await fetch(`${metricsUrl}/healthz`)).status).toBe(404);
    expect((await fetch(`${metricsUrl}/`)).status).toBe(404);
    const text = await scrape();
    expect(text).toContain('process_cpu_seconds_total');
    // No client yet: no expiry sample at all (rather than a misleading 0).
    expect(metricSamples(text, 'tokenwarden_token_earliest_expiry_seconds')).toEqual([]);
  });

  it('counts issued and revoked tokens per tier, clients by tier and Ready, and the earliest expiry', async () => {
    const tier = await createTier(op, 'gold', { level: 10, groups: [group], token: { audiences: [`${op.prefix}-gw`], defaultExpiration: '1h', gracePeriod: '5m' } });
    tierName = tier.metadata.name;
    await waitForTierReady(tierName);
    // A binding no client uses, so the tenantbinding controller has something to reconcile.
    await createBinding(op, ns, 'nobody', { tierRef: { name: tierName }, subjects: [{ kind: 'User', name: 'nobody@example.com' }] });

    await createClient(op, ns, 'm-a', { subject: { user: 'ma@example.com', groups: [group] } });
    await createClient(op, ns, 'm-b', { subject: { user: 'mb@example.com', groups: [group] } });
    await waitForClientReady(ns, 'm-a');
    await waitForClientReady(ns, 'm-b');
    let text = await scrape();
    expect(valueOf(text, 'tokenwarden_tokens_issued_total', { tier: tierName })).toBe(2);

    await kube.patch(R.client, ns, 'm-a', { spec: { revocationEpoch: 1 } });
    const a = await waitForClientReady(ns, 'm-a', {
      extra: (ct) => ct.client.status?.revocationEpoch === 1 && ct.client.status.tokens?.length === 1,
      description: 'm-a re-issued after revocationEpoch 1, the earlier token revoked',
    });
    await kube.remove(R.client, ns, 'm-b');
    await waitFor(async () => (await kube.tryGet(R.client, ns, 'm-b')) === null, { description: 'm-b gone (finalized)' });

    // The gauges read the operator's cache: wait until it has seen the deletion.
    const labels = { tier: tierName, ready: 'true' };
    text = await waitFor(
      async () => {
        const t = await scrape();
        return valueOf(t, 'tokenwarden_clients', labels) === 1 && valueOf(t, 'tokenwarden_clients', { tier: tierName, ready: 'false' }) === 0 ? t : undefined;
      },
      { timeoutMs: 15_000, description: `tokenwarden_clients{tier="${tierName}",ready="true"} 1` },
    );
    const scrapedAt = Date.now();

    expect(valueOf(text, 'tokenwarden_tokens_issued_total', { tier: tierName })).toBe(3);
    expect(valueOf(text, 'tokenwarden_tokens_rotated_total', { tier: tierName }) ?? 0).toBe(0);
    expect(valueOf(text, 'tokenwarden_tokens_revoked_total', { tier: tierName })).toBe(2);
    // The selector keeps every other test file's clients out: our tier is the only one.
    expect(metricSamples(text, 'tokenwarden_tokens_issued_total').map((s) => s.labels.tier)).toEqual([tierName]);
    expect(metricSamples(text, 'tokenwarden_clients').filter((s) => s.value > 0)).toEqual([{ labels, value: 1 }]);

    // m-a's current token, issued after the revocation with 1h expiry.
    const expiresAt = Date.parse((await getClient(ns, 'm-a')).status?.expiresAt as string);
    expect(a.client.status?.expiresAt).toBeDefined();
    const earliest = valueOf(text, 'tokenwarden_token_earliest_expiry_seconds') as number;
    expect(earliest).toBeGreaterThan(3600 - 120);
    expect(earliest).toBeLessThanOrEqual(3600);
    expect(Math.abs(earliest - (expiresAt - scrapedAt) / 1000)).toBeLessThan(5);

    // The controller-runtime numbers: how many reconciles there were depends on event timing, so
    // they are held to the exact relations between them, at rest (nothing in flight, nothing queued).
    const relations = (t: string, controller: string): string[] => {
      const problems: string[] = [];
      const byResult = Object.fromEntries(['success', 'error', 'requeue', 'requeue_after'].map((result) => [result, valueOf(t, 'controller_runtime_reconcile_total', { controller, result })]));
      if (Object.values(byResult).some((v) => v === undefined)) problems.push(`a result series missing: ${JSON.stringify(byResult)}`);
      const reconciles = Object.values(byResult).reduce((sum: number, v) => sum + (v ?? 0), 0);
      const want = (what: string, actual: number | undefined, wanted: number) => {
        if (actual !== wanted) problems.push(`${what} = ${actual}, want ${wanted}`);
      };
      want('controller_runtime_reconcile_time_seconds_count', valueOf(t, 'controller_runtime_reconcile_time_seconds_count', { controller }), reconciles);
      want('controller_runtime_reconcile_errors_total', valueOf(t, 'controller_runtime_reconcile_errors_total', { controller }), byResult.error ?? -1);
      const terminal = valueOf(t, 'controller_runtime_terminal_reconcile_errors_total', { controller }) ?? -1;
      want('workqueue_retries_total', valueOf(t, 'workqueue_retries_total', { name: controller }), (byResult.error ?? 0) - terminal);
      want('workqueue_work_duration_seconds_count', valueOf(t, 'workqueue_work_duration_seconds_count', { name: controller }), reconciles);
      want('workqueue_queue_duration_seconds_count', valueOf(t, 'workqueue_queue_duration_seconds_count', { name: controller }), reconciles);
      want('workqueue_depth', valueOf(t, 'workqueue_depth', { name: controller }), 0);
      if (!(reconciles > 0)) problems.push('no reconcile at all');
      if (!((valueOf(t, 'workqueue_adds_total', { name: controller }) ?? 0) >= reconciles)) problems.push('fewer adds than reconciles');
      return problems.map((p) => `${controller}: ${p}`);
    };
    text = await waitFor(
      async () => {
        const t = await scrape();
        const problems = ['tier', 'tenantbinding', 'serviceaccountclient'].flatMap((c) => relations(t, c));
        if (problems.length > 0) throw new Error(problems.join('; '));
        return t;
      },
      { timeoutMs: 15_000, description: 'the controller-runtime metrics to agree with each other at rest' },
    );
    // Clients reconcile successfully, and come back for renewal: requeue_after.
    expect(valueOf(text, 'controller_runtime_reconcile_total', { controller: 'serviceaccountclient', result: 'requeue_after' })).toBeGreaterThan(0);
    // The REST client: the token requests (POST) answered 201, the deletions 200.
    expect(valueOf(text, 'rest_client_requests_total', { code: '201', method: 'POST' })).toBeGreaterThanOrEqual(3);
    expect(valueOf(text, 'rest_client_requests_total', { code: '200', method: 'DELETE' })).toBeGreaterThanOrEqual(2);
    // Without --leader-elect there is no lease, and no leader_election_master_status.
    expect(metricSamples(text, 'leader_election_master_status')).toEqual([]);

    expect((await fetch(`${healthUrl}/healthz`)).status).toBe(200);
    expect((await fetch(`${healthUrl}/readyz`)).status).toBe(200);
  });

  it('counts a rotation: tokens_rotated_total, with issued and revoked, exactly', async () => {
    // A tier of its own: 10-minute tokens renewed 10 s after issue, a grace period longer than the test.
    const fast = await createTier(op, 'fast', {
      level: 5,
      groups: [`${group}-fast`],
      token: { audiences: [`${op.prefix}-gw`], defaultExpiration: '10m', maxExpiration: '10m', renewBefore: '9m50s', gracePeriod: '5m' },
    });
    await waitForTierReady(fast.metadata.name);
    await createClient(op, ns, 'm-r', { subject: { user: 'mr@example.com', groups: [`${group}-fast`] } });
    const first = await waitForClientReady(ns, 'm-r');
    const firstId = first.client.status?.tokens?.[0]?.id;
    await waitForClientReady(ns, 'm-r', { timeoutMs: 30_000, extra: (ct) => ct.client.status?.tokens?.[0]?.id !== firstId, description: 'm-r rotated once' });
    // Suspend before the next renewal (10 s later): both tokens revoked, no more rotations.
    await kube.patch(R.client, ns, 'm-r', { spec: { suspended: true } });
    const tier = { tier: fast.metadata.name };
    const text = await waitFor(
      async () => {
        const t = await scrape();
        return valueOf(t, 'tokenwarden_tokens_revoked_total', tier) === 2 ? t : undefined;
      },
      { timeoutMs: 15_000, description: 'the two tokens of m-r revoked by the suspension' },
    );
    expect(valueOf(text, 'tokenwarden_tokens_issued_total', tier)).toBe(1);
    expect(valueOf(text, 'tokenwarden_tokens_rotated_total', tier)).toBe(1);
    expect(valueOf(text, 'tokenwarden_clients', { ...tier, ready: 'false' })).toBe(1);
    // The first tier's numbers are untouched.
    expect(valueOf(text, 'tokenwarden_tokens_issued_total', { tier: tierName })).toBe(3);
    expect(valueOf(text, 'tokenwarden_tokens_rotated_total', { tier: tierName }) ?? 0).toBe(0);
  });

  it('reports leader_election_master_status with --leader-elect, and a leader is ready', async () => {
    // An operator of its own prefix (it manages nothing of this file), leading its own Lease.
    const leaseName = `${op.prefix}-lease`;
    const leader = await startOperator({
      name: 'mleader',
      // The manifests' RBAC, with the leader-election Role copied for this Lease.
      kubeconfig: (await serviceAccountKubeconfig(op.prefix, ns, 'mleader', { lease: { namespace: ns, name: leaseName } })).path,
      extraArgs: [
        '--metrics-bind-address=127.0.0.1:0',
        '--health-probe-bind-address=127.0.0.1:0',
        '--leader-elect=true',
        `--leader-election-namespace=${ns}`,
        `--leader-election-id=${leaseName}`,
      ],
    });
    try {
      const urlOf = (msg: string) => {
        const line = leader.logs().split('\n').find((l) => l.includes(`"msg":"${msg}"`));
        return (JSON.parse(line as string) as { url: string }).url.replace(/\/(metrics|healthz)$/, '');
      };
      const text = await (await fetch(`${urlOf('serving metrics')}/metrics`)).text();
      expect(metricSamples(text, 'leader_election_master_status')).toEqual([{ labels: { name: leaseName }, value: 1 }]);
      expect((await fetch(`${urlOf('serving health probes')}/readyz`)).status).toBe(200);
    } finally {
      await leader.stop(15_000);
    }
  });

  it('stops serving when the operator stops (SIGTERM)', async () => {
    const status = await op.stop(15_000);
    expect(status.code, op.tail()).toBe(0);
    await expect(fetch(`${healthUrl}/healthz`)).rejects.toThrow();
    await expect(fetch(`${metricsUrl}/metrics`)).rejects.toThrow();
  });
});
