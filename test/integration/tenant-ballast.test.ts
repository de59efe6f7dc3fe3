/**
 * A tenant's ballast costs the operator nothing it keeps. mallory, with `edit` in her own namespace
 * only, creates there, labelled as tokenwarden's: 50 Secrets of type tokenwarden.io/token holding a
 * fake token whose aud has 35,000 entries, 50 Secrets of the anchor type naming alice's client, and
 * 100 ServiceAccounts recording alice's client, each with 250 KiB of annotations (half of them under
 * tokenwarden's own keys). The operator runs as its fenced ServiceAccount with the Deployment's heap
 * flags (manifests/deployment.yaml NODE_OPTIONS).
 *
 * Its memory follows its real clients: the V8 heap in use after a full collection (read from its
 * /metrics; the collection is asked for through the inspector, so garbage does not count) moves by
 * less than 10 %, so does its RSS; it keeps working (a new client gets its token); and a restart lists
 * the ballast and starts, within 10 % of the heap and RSS of a start without it.
 */
import fs from 'node:fs';
import type { KubeConfig } from '@kubernetes/client-node';
import https from 'node:https';
import { beforeAll, describe, expect, it } from 'vitest';
import { deploymentMemory } from '../../bench/lib/cgroup.ts';
import { instanceScope, useAnnotation } from '../../src/policy/service-account-use.ts';
import { createTestNamespace, userKubeConfig, waitFor } from './support/cluster.ts';
import { adminRequest } from './support/crds.ts';
import {
  ANCHOR_TYPE,
  CLIENT_NAMESPACE_LABEL,
  CLIENT_UID_LABEL,
  MANAGED_BY,
  R,
  TIER_LABEL,
  TOKEN_SECRET_TYPE,
  USER_ANNOTATION,
  createClient,
  createTier,
  metricSamples,
  resourcePath,
  scopedName,
  sleep,
  startOperator,
  uniquePrefix,
  waitForClientReady,
  waitForTierReady,
  type OperatorProcess,
} from './support/operator.ts';

const MALLORY = 'mallory@example.com';
const BALLAST = 50;
const FILL = 'x'.repeat(250 * 1024);

/** POST as mallory, through her own context; resolves to the HTTP status. */
function createAs(kc: KubeConfig, urlPath: string, body: unknown): Promise<number> {
  const server = kc.getCurrentCluster()?.server as string;
  return new Promise((resolve, reject) => {
    const opts: https.RequestOptions = { method: 'POST', timeout: 60_000, headers: { Accept: 'application/json', 'Content-Type': 'application/json' } };
    void kc.applyToHTTPSOptions(opts).then(() => {
      const req = https.request(new URL(urlPath, server), opts, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      req.end(JSON.stringify(body));
    });
  });
}

/** The operator's inspector (it runs with --inspect=127.0.0.1:0): asks V8 for a full collection. */
async function collectGarbage(op: OperatorProcess): Promise<void> {
  const url = /Debugger listening on (ws:\/\/\S+)/.exec(fs.readFileSync(op.logPath, 'utf8'))?.[1];
  if (!url) throw new Error(`no inspector URL in ${op.logPath}`);
  const ws = new WebSocket(url);
  await new Promise<void>((resolve, reject) => {
    ws.onopen = () => ws.send(JSON.stringify({ id: 1, method: 'HeapProfiler.collectGarbage' }));
    ws.onmessage = (event) => {
      if ((JSON.parse(String(event.data)) as { id?: number }).id === 1) resolve();
    };
    ws.onerror = () => reject(new Error(`inspector ${url} failed`));
  });
  ws.close();
}

interface Memory {
  heapUsed: number;
  rss: number;
  heapTotal: number;
  external: number;
}

/** Heap in use after a full collection, and RSS, from the operator's /metrics (the lowest of three rounds). */
async function measure(op: OperatorProcess): Promise<Memory> {
  const line = op.logs().split('\n').find((l) => l.includes('"msg":"serving metrics"'));
  const url = line ? (JSON.parse(line) as { url: string }).url : undefined;
  if (!url) throw new Error(`no metrics URL in ${op.logPath}`);
  const rounds: Memory[] = [];
  for (let i = 0; i < 3; i++) {
    await collectGarbage(op);
    const text = await (await fetch(url)).text();
    const value = (name: string) => metricSamples(text, name)[0]?.value ?? NaN;
    rounds.push({ heapUsed: value('nodejs_heap_size_used_bytes'), rss: value('process_resident_memory_bytes'), heapTotal: value('nodejs_heap_size_total_bytes'), external: value('nodejs_external_memory_bytes') });
    await sleep(500);
  }
  const least = (key: keyof Memory) => Math.min(...rounds.map((r) => r[key]));
  return { heapUsed: least('heapUsed'), rss: least('rss'), heapTotal: least('heapTotal'), external: least('external') };
}

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

/** A JWT-shaped text with the claims of a ServiceAccount token and 35,000 audiences. */
function fakeToken(i: number): string {
  const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const aud = Array.from({ length: 35_000 }, (_, n) => `a${i}-${n}`);
  const now = Math.floor(Date.now() / 1000);
  return `${b64({ alg: 'RS256' })}.${b64({ aud, iat: now, exp: now + 3600, 'kubernetes.io': { namespace: 'x', serviceaccount: { name: 'x', uid: 'x' }, secret: { name: `x${i}` } } })}.c2ln`;
}

let op: OperatorProcess;
let prefix: string;
let malloryNs: string;
let clientNs: string;
let start: () => Promise<OperatorProcess>;

beforeAll(async () => {
  prefix = uniquePrefix('ballast');
  const deployment = deploymentMemory(new URL('../../manifests/deployment.yaml', import.meta.url).pathname);
  const nodeOptions = `${deployment.nodeOptions ?? ''} --inspect=127.0.0.1:0`.trim();
  start = () =>
    startOperator({
      namespacePrefix: prefix,
      extraArgs: ['--metrics-bind-address=127.0.0.1:0', '--log-level=info'],
      env: { NODE_OPTIONS: nodeOptions, ...(deployment.mallocArenaMax ? { MALLOC_ARENA_MAX: deployment.mallocArenaMax } : {}) },
    });
  op = await start();
  malloryNs = await createTestNamespace(`${prefix}-mallory`);
  clientNs = await createTestNamespace(`${prefix}-team`);
  await adminRequest('POST', resourcePath(R.roleBinding, malloryNs), {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'RoleBinding',
    metadata: { name: 'mallory-edit' },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'edit' },
    subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: MALLORY }],
  });
  await createTier(op, 'free', { level: 10, default: true });
  await waitForTierReady(scopedName(op, 'free'));
});

describe('a tenant\'s labelled ballast in her own namespace', () => {
  it('moves the operator\'s memory by less than 10 %, never stops it, nor its restart', async () => {
    const tier = scopedName(op, 'free');
    // Real clients, the operator's work.
    for (const name of ['one', 'two', 'three']) await createClient(op, clientNs, name, { subject: { user: `${name}@example.com` } });
    const clients = await Promise.all(['one', 'two', 'three'].map((name) => waitForClientReady(clientNs, name)));
    const victimUid = clients[0]?.client.metadata.uid as string;
    // Measured on a fresh start, as the restart over the ballast will be.
    await op.stop();
    op = await start();
    await sleep(10_000);
    const before = await measure(op);

    const mallory = userKubeConfig(MALLORY);
    await waitFor(async () => (await createAs(mallory, resourcePath(R.secret, malloryNs), { metadata: { name: 'probe' }, type: 'Opaque' })) === 201, {
      timeoutMs: 15_000,
      description: 'mallory may create Secrets in her namespace',
    });
    const scope = instanceScope(op.selector);
    const labels = { [MANAGED_BY]: 'tokenwarden', [TIER_LABEL]: tier };
    // Half under a foreign key, half under tokenwarden's own keys (the cache keeps those, bounded).
    const fill = (i: number): Record<string, string> => (i % 2 === 0 ? { 'ballast.example.com/fill': FILL } : { 'tokenwarden.io/requested-audiences': FILL });
    const objects: [string, unknown][] = [];
    for (let i = 0; i < BALLAST; i++) {
      objects.push([resourcePath(R.secret, malloryNs), { metadata: { name: `token-${i}`, labels, annotations: fill(i) }, type: TOKEN_SECRET_TYPE, data: { token: Buffer.from(fakeToken(i)).toString('base64') } }]);
      objects.push([
        resourcePath(R.secret, malloryNs),
        { metadata: { name: `anchor-${i}`, labels: { ...labels, [CLIENT_UID_LABEL]: victimUid, [CLIENT_NAMESPACE_LABEL]: clientNs }, annotations: fill(i) }, type: ANCHOR_TYPE },
      ]);
    }
    for (let i = 0; i < 2 * BALLAST; i++) {
      objects.push([
        resourcePath(R.serviceAccount, malloryNs),
        { metadata: { name: `sa-${i}`, labels, annotations: { ...fill(i), [USER_ANNOTATION]: 'one@example.com', [useAnnotation(victimUid)]: scope } } },
      ]);
    }
    for (let i = 0; i < objects.length; i += 8) {
      const codes = await Promise.all(objects.slice(i, i + 8).map(([path, body]) => createAs(mallory, path, body)));
      expect(codes.every((c) => c === 201), `mallory's creates: ${codes.join(',')}`).toBe(true);
    }
    await sleep(10_000);
    expect(op.running(), `the operator stopped under the ballast:\n${op.tail()}`).toBe(true);
    const after = await measure(op);

    // Still at work: a new client gets its token.
    await createClient(op, clientNs, 'four', { subject: { user: 'four@example.com' } });
    await waitForClientReady(clientNs, 'four');

    // Restarted over the ballast: it lists it and starts.
    await op.stop();
    op = await start();
    await sleep(10_000);
    expect(op.running(), `the restarted operator stopped:\n${op.tail()}`).toBe(true);
    const restarted = await measure(op);
    console.log(
      `operator memory: before ${mib(before.heapUsed)} heap / ${mib(before.rss)} RSS; with the ballast ${mib(after.heapUsed)} / ${mib(after.rss)}; restarted over it ${mib(restarted.heapUsed)} / ${mib(restarted.rss)}`,
    );
    expect(after.heapUsed - before.heapUsed, `heap ${mib(before.heapUsed)} -> ${mib(after.heapUsed)}`).toBeLessThan(0.1 * before.heapUsed);
    expect(after.rss - before.rss, `RSS ${mib(before.rss)} -> ${mib(after.rss)}`).toBeLessThan(0.1 * before.rss);
    expect(restarted.heapUsed - before.heapUsed, `heap after the restart ${mib(restarted.heapUsed)}, before ${mib(before.heapUsed)}`).toBeLessThan(0.1 * before.heapUsed);
    expect(restarted.rss - before.rss, `RSS after the restart ${mib(restarted.rss)}, before ${mib(before.rss)}`).toBeLessThan(0.1 * before.rss);
    await waitForClientReady(clientNs, 'four');
  }, 300_000);
});
