/**
 * The ballast phase (issue 16, "Only what it made, where it made it"): a tenant labels objects of her
 * own namespace as tokenwarden's, as big as the API server lets her make them, and the operator's
 * memory must follow its real clients, not her objects. In one tenant namespace (not a tier
 * namespace): `count` Secrets of type tokenwarden.io/token holding a fake token whose aud has 35,000
 * entries, `count` Secrets of the anchor type naming a real client, and `2 × count` ServiceAccounts
 * recording a real client's use, each with 250 KiB of annotations (half of them under tokenwarden's
 * own keys), labelled app.kubernetes.io/managed-by=tokenwarden.
 *
 * Measured: the operator's heap in use and RSS (its /metrics: the lowest of several samples over a
 * window, the closest a scrape comes to the live heap) before, with the ballast, and after a restart
 * over it, with the time that restart took to be ready; the memory cgroup's peak is the phase's (the
 * run fails on an OOM kill). The ballast is deleted at the end, so later phases see the same cluster.
 */
import { Kube, R, pool, retrying, sleep, type KObject } from '../kube.ts';

export interface BallastResult {
  objects: { tokenSecrets: number; anchorSecrets: number; serviceAccounts: number; bytesEach: number };
  createMs: number;
  before: { heapUsedBytes: number; rssBytes: number };
  withBallast: { heapUsedBytes: number; rssBytes: number };
  restarted: { heapUsedBytes: number; rssBytes: number; readyMs: number };
  heapChange: number;
  restartHeapChange: number;
}

export interface BallastInput {
  admin: Kube;
  namespace: string;
  count: number;
  /** A real client's uid, named by the anchors and the ServiceAccounts. */
  clientUid: string;
  tier: string;
  /** The operator's heap and RSS now. */
  memory(): Promise<{ heapUsedBytes: number; rssBytes: number }>;
  /** Restarts the operator; resolves with how long it took to be ready. */
  restart(): Promise<number>;
  log(line: string): void;
}

const FILL = 'x'.repeat(250 * 1024);

function fakeToken(i: number): string {
  const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const aud = Array.from({ length: 35_000 }, (_, n) => `a${i}-${n}`);
  const now = Math.floor(Date.now() / 1000);
  return `${b64({ alg: 'RS256' })}.${b64({ aud, iat: now, exp: now + 3600, 'kubernetes.io': { namespace: 'x', serviceaccount: { name: 'x', uid: 'x' }, secret: { name: `x${i}` } } })}.c2ln`;
}

/** The lowest heap and RSS of `samples` readings a second apart. */
async function settled(memory: BallastInput['memory'], samples = 8): Promise<{ heapUsedBytes: number; rssBytes: number }> {
  const readings = [];
  for (let i = 0; i < samples; i++) {
    readings.push(await memory());
    await sleep(1000);
  }
  return { heapUsedBytes: Math.min(...readings.map((r) => r.heapUsedBytes)), rssBytes: Math.min(...readings.map((r) => r.rssBytes)) };
}

export async function runBallast(input: BallastInput): Promise<BallastResult> {
  const { admin, namespace, count } = input;
  const before = await settled(input.memory);
  const labels = { 'app.kubernetes.io/managed-by': 'tokenwarden', 'tokenwarden.io/tier': input.tier };
  const fill = (i: number): Record<string, string> => (i % 2 === 0 ? { 'ballast.example.com/fill': FILL } : { 'tokenwarden.io/requested-audiences': FILL });
  const objects: { type: typeof R.secret; body: KObject }[] = [];
  for (let i = 0; i < count; i++) {
    objects.push({ type: R.secret, body: { apiVersion: 'v1', kind: 'Secret', type: 'tokenwarden.io/token', metadata: { name: `ballast-token-${i}`, labels, annotations: fill(i) }, data: { token: Buffer.from(fakeToken(i)).toString('base64') } } });
    objects.push({
      type: R.secret,
      body: { apiVersion: 'v1', kind: 'Secret', type: 'tokenwarden.io/anchor', metadata: { name: `ballast-anchor-${i}`, labels: { ...labels, 'tokenwarden.io/client-uid': input.clientUid }, annotations: fill(i) } },
    });
  }
  for (let i = 0; i < 2 * count; i++) {
    objects.push({
      type: R.serviceAccount,
      body: { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: `ballast-sa-${i}`, labels, annotations: { ...fill(i), [`clients.tokenwarden.io/${input.clientUid}`]: 'x' } } },
    });
  }
  const t0 = Date.now();
  await pool(objects, 8, async (o) => {
    await retrying(() => admin.create(o.type, namespace, o.body));
  });
  const createMs = Date.now() - t0;
  input.log(`ballast: ${objects.length} objects created in ${createMs} ms`);
  await sleep(10_000);
  const withBallast = await settled(input.memory);
  const readyMs = await input.restart();
  await sleep(5_000);
  const restarted = { ...(await settled(input.memory)), readyMs };
  await pool(objects, 8, async (o) => {
    await admin.remove(o.type, namespace, o.body.metadata.name);
  });
  const change = (a: number, b: number) => Math.round(((b - a) / a) * 1000) / 1000;
  return {
    objects: { tokenSecrets: count, anchorSecrets: count, serviceAccounts: 2 * count, bytesEach: FILL.length },
    createMs,
    before,
    withBallast,
    restarted,
    heapChange: change(before.heapUsedBytes, withBallast.heapUsedBytes),
    restartHeapChange: change(before.heapUsedBytes, restarted.heapUsedBytes),
  };
}
