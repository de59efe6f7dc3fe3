/**
 * Issue 4, "Done when" 5: after a known sequence of actions, the metrics read back the right numbers.
 *
 * One operator of this file, with /metrics and the probes on ports of their own (127.0.0.1:0; the
 * bound URLs come from its "serving ..." log lines). Its --selector limits it to this file's objects,
 * so every tokenwarden_* number below is exact, not "at least".
 *
 * Sequence: a Tier (1h tokens), a TenantBinding, two clients Ready (2 issued), revocationEpoch raised
 * on one (1 more issued, 1 revoked), the other deleted (1 revoked). So: issued 3, rotated 0,
 * revoked 2, one Ready client in the tier, its token about an hour from expiry.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { createTestNamespace, kubeconfigPath, waitFor } from './support/cluster.ts';
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

    for (const controller of ['tier', 'tenantbinding', 'serviceaccountclient']) {
      const total = metricSamples(text, 'controller_runtime_reconcile_total')
        .filter((s) => s.labels.controller === controller)
        .reduce((sum, s) => sum + s.value, 0);
      expect(total, `reconciles of ${controller}`).toBeGreaterThan(0);
      expect(valueOf(text, 'controller_runtime_reconcile_time_seconds_count', { controller }), `reconcile times of ${controller}`).toBeGreaterThan(0);
      expect(valueOf(text, 'controller_runtime_reconcile_errors_total', { controller }), `errors series of ${controller}`).toBeDefined();
      for (const result of ['success', 'error', 'requeue', 'requeue_after']) {
        expect(valueOf(text, 'controller_runtime_reconcile_total', { controller, result }), `${controller} ${result}`).toBeDefined();
      }
      expect(valueOf(text, 'workqueue_adds_total', { name: controller }), `adds of ${controller}`).toBeGreaterThan(0);
      expect(valueOf(text, 'workqueue_depth', { name: controller }), `depth of ${controller}`).toBeDefined();
      expect(valueOf(text, 'workqueue_retries_total', { name: controller })).toBeDefined();
      expect(valueOf(text, 'workqueue_queue_duration_seconds_count', { name: controller })).toBeGreaterThan(0);
      expect(valueOf(text, 'workqueue_work_duration_seconds_count', { name: controller })).toBeGreaterThan(0);
    }
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

  it('reports leader_election_master_status with --leader-elect, and a leader is ready', async () => {
    // An operator of its own prefix (it manages nothing of this file), leading its own Lease.
    const leaseName = `${op.prefix}-lease`;
    const leader = await startOperator({
      name: 'mleader',
      // As admin: the manifests' Role allows only the production Lease, and RBAC is rbac.test.ts's subject.
      kubeconfig: kubeconfigPath(),
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
