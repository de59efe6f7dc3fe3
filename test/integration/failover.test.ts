/**
 * Issue 4, "Done when" 2 and 3: two operator processes with --leader-elect=true on one Lease.
 *
 * 2. Failover: the leader is SIGKILLed while 200 clients are being created. The standby takes over
 *    once the lease has expired by its own observation (client-go semantics: the lease duration from
 *    when it last saw the record change, then its next retry), never earlier; all 200 clients become
 *    Ready, each holding exactly the tokens the design allows (one; two only inside a grace period),
 *    the same in status and as anchors, and no anchor or ServiceAccount is left without a client.
 * 3. Graceful hand-over: SIGTERM to the leader; it drains, releases the lease (holder "", 1s) and
 *    exits 0, and the standby leads within a few seconds, far less than a lease duration.
 *
 * Short but legal timings keep this quick: lease 8s, renew deadline 6s, retry 1s.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { createTestNamespace, waitFor } from './support/cluster.ts';
import {
  ANCHOR_TYPE,
  CLIENT_UID_LABEL,
  R,
  condition,
  createClient,
  createTier,
  kube,
  orphanServiceAccounts,
  readClientToken,
  review,
  startOperator,
  tierNamespace,
  uniquePrefix,
  waitForTierReady,
  type Client,
  type KObject,
  type OperatorProcess,
  type Secret,
  serviceAccountKubeconfig,
} from './support/operator.ts';

const LEASE_MS = 8_000;
const RENEW_MS = 6_000;
const RETRY_MS = 1_000;
/** The acquire loop waits retryPeriod × (1 + 1.2 × random) between looks (client-go's jitter). */
const MAX_LOOK_MS = 2.2 * RETRY_MS;
const CLIENTS = 200;
const USERS = 50;
/** The tier's gracePeriod: an earlier token may live this long after its successor was issued. */
const GRACE_MS = 60_000;

const LEASE: { group: string; version: string; plural: string; namespaced: boolean } = { group: 'coordination.k8s.io', version: 'v1', plural: 'leases', namespaced: true };

interface Lease extends KObject {
  spec?: { holderIdentity?: string; leaseDurationSeconds?: number; acquireTime?: string; renewTime?: string; leaseTransitions?: number };
}

const prefix = uniquePrefix('fo');
const leaseId = `${prefix}-leader`;
let leaseNs: string;
let ns: string;
let aud: string;
let group: string;
let tierName: string;
let tierNs: string;

function replica(): Promise<OperatorProcess> {
  return startOperator({
    namespacePrefix: prefix,
    waitForStarted: false,
    // The manifests' RBAC, with the leader-election Role copied for this file's own Lease.
    kubeconfig: operatorKubeconfig,
    extraArgs: [
      '--leader-elect=true',
      `--leader-election-namespace=${leaseNs}`,
      `--leader-election-id=${leaseId}`,
      `--lease-duration=${LEASE_MS / 1000}s`,
      `--renew-deadline=${RENEW_MS / 1000}s`,
      `--retry-period=${RETRY_MS / 1000}s`,
      '--log-level=info',
    ],
  });
}

/** The time (ms since the epoch) of the first log line with this message, if any. */
function loggedAt(op: OperatorProcess, msg: string): number | undefined {
  for (const line of op.logs().split('\n')) {
    if (!line.includes(`"msg":"${msg}"`)) continue;
    return Date.parse((JSON.parse(line) as { time: string }).time);
  }
  return undefined;
}

async function waitForLeader(candidates: OperatorProcess[], timeoutMs: number): Promise<OperatorProcess> {
  return waitFor(async () => candidates.find((op) => op.running() && loggedAt(op, 'operator started') !== undefined), {
    timeoutMs,
    intervalMs: 50,
    description: 'one replica to lead and start reconciling',
  });
}

const getLease = () => kube.get<Lease>(LEASE, leaseNs, leaseId);

async function allClients(): Promise<Client[]> {
  return kube.list<Client>(R.client, ns, { labelSelector: `tokenwarden.io/test-run=${prefix}` });
}

const isReady = (c: Client) => condition(c, 'Ready')?.status === 'True' && c.status?.observedGeneration === c.metadata.generation;

/** Every client Ready with 1 (2 inside a grace period) tokens, each an anchor, and no stray anchor or ServiceAccount. */
async function expectConverged(op: OperatorProcess, expected: number): Promise<void> {
  const clients = await waitFor(
    async () => {
      const list = await allClients();
      return list.length === expected && list.every(isReady) ? list : undefined;
    },
    { timeoutMs: 180_000, intervalMs: 1000, description: `${expected} clients Ready` },
  );
  await waitFor(
    async () => {
      const anchors = (await kube.list<Secret>(R.secret, tierNs)).filter((s) => s.type === ANCHOR_TYPE);
      const current = await allClients();
      const byUid = new Map(current.map((c) => [c.metadata.uid as string, c]));
      const problems: string[] = [];
      for (const c of current) {
        const ids = (c.status?.tokens ?? []).map((t) => t.id);
        if (ids.length < 1 || ids.length > 2) problems.push(`${c.metadata.name}: ${ids.length} tokens`);
        if (ids.length === 2) {
          // Two only while the older one is inside its grace period: it must be the newer one's predecessor.
          const [newer, older] = c.status?.tokens ?? [];
          if (!newer || !older || Date.parse(newer.issuedAt) < Date.parse(older.issuedAt)) problems.push(`${c.metadata.name}: tokens out of order`);
          // ...and only inside that grace period, which runs from the newer one's issue (2 s of slack for clocks and polling).
          else if (Date.now() > Date.parse(newer.issuedAt) + GRACE_MS + 2_000) problems.push(`${c.metadata.name}: an older token kept past its grace period`);
        }
        const mine = anchors.filter((a) => a.metadata.labels?.[CLIENT_UID_LABEL] === c.metadata.uid).map((a) => a.metadata.name).sort();
        if (JSON.stringify(mine) !== JSON.stringify([...ids].sort())) problems.push(`${c.metadata.name}: anchors ${mine.join(',')} vs status ${ids.join(',')}`);
      }
      for (const a of anchors) if (!byUid.has(a.metadata.labels?.[CLIENT_UID_LABEL] ?? '')) problems.push(`orphan anchor ${a.metadata.name}`);
      const orphans = await orphanServiceAccounts(op, [tierName]);
      problems.push(...orphans.map((o) => `orphan ServiceAccount ${o}`));
      const accounts = await kube.list(R.serviceAccount, tierNs, { labelSelector: 'app.kubernetes.io/managed-by=tokenwarden' });
      if (accounts.length !== USERS) problems.push(`${accounts.length} ServiceAccounts for ${USERS} users`);
      if (problems.length > 0) throw new Error(problems.slice(0, 10).join('; '));
      return true;
    },
    { timeoutMs: 90_000, intervalMs: 1000, description: 'exactly the tokens, anchors and ServiceAccounts the design allows' },
  );
  // And the tokens work: a sample checked the way a gateway does.
  for (const c of clients.filter((_, i) => i % 20 === 0)) {
    const ct = await readClientToken(ns, c.metadata.name);
    const who = await review(ct.token as string, [aud]);
    expect(who.authenticated, `${c.metadata.name}'s token`).toBe(true);
    expect(ct.secret?.metadata.annotations?.['tokenwarden.io/token-id']).toBe(ct.client.status?.tokens?.[0]?.id);
  }
}

let a: OperatorProcess;
let b: OperatorProcess;
let survivor: OperatorProcess;

let operatorKubeconfig: string;

beforeAll(async () => {
  leaseNs = await createTestNamespace(`${prefix}-lease`);
  ({ path: operatorKubeconfig } = await serviceAccountKubeconfig(prefix, leaseNs, 'operator', { lease: { namespace: leaseNs, name: leaseId } }));
  ns = await createTestNamespace(`${prefix}-team`);
  aud = `${prefix}-gateway`;
  group = `${prefix}-users`;
  a = await replica();
  b = await replica();
  const first = await waitForLeader([a, b], 60_000);
  const tier = await createTier(first, 'fo', { level: 10, groups: [group], token: { audiences: [aud], defaultExpiration: '1h', gracePeriod: `${GRACE_MS / 1000}s` } });
  tierName = tier.metadata.name;
  tierNs = tierNamespace(first, tierName);
  await waitForTierReady(tierName);
});

describe('2: the leader is SIGKILLed while 200 clients are being created', () => {
  it('the standby takes over once the lease expired, and all 200 clients converge exactly', { timeout: 400_000 }, async () => {
    const leader = await waitForLeader([a, b], 10_000);
    const standby = leader === a ? b : a;
    expect(loggedAt(standby, 'became leader'), 'only one leads').toBeUndefined();

    let created = 0;
    let killedAt = 0;
    let renewedAtKill = 0;
    const names = Array.from({ length: CLIENTS }, (_, i) => `c-${String(i).padStart(3, '0')}`);
    for (let i = 0; i < CLIENTS; i += 10) {
      await Promise.all(names.slice(i, i + 10).map((name, j) =>
        createClient(leader, ns, name, { subject: { user: `user-${(i + j) % USERS}@example.com`, groups: [group] } })));
      created += 10;
      if (killedAt === 0 && created >= CLIENTS / 2) {
        // Mid-way, with the leader busy issuing tokens.
        await leader.kill();
        killedAt = Date.now();
        renewedAtKill = Date.parse((await getLease()).spec?.renewTime ?? '');
      }
    }

    await waitForLeader([standby], LEASE_MS + 4 * MAX_LOOK_MS + 30_000);
    const tookOverAt = loggedAt(standby, 'became leader') as number;
    const takeoverMs = tookOverAt - killedAt;
    console.error(`[failover] takeover ${takeoverMs}ms after SIGKILL (lease ${LEASE_MS}ms, retry ${RETRY_MS}ms)`);
    // Not before the lease expired: the standby waits a full lease duration from its last sight of a renewal...
    expect(tookOverAt - renewedAtKill).toBeGreaterThanOrEqual(LEASE_MS - 50);
    // ...and not much after: the lease duration, plus at most one look to see the last renewal and one to take it.
    expect(takeoverMs).toBeLessThanOrEqual(LEASE_MS + 2 * MAX_LOOK_MS + 500);
    const lease = await getLease();
    expect(lease.spec?.holderIdentity).toMatch(/_[0-9a-f]{8}$/);
    expect(lease.spec?.leaseTransitions).toBeGreaterThanOrEqual(1);

    survivor = standby;
    await expectConverged(survivor, CLIENTS);
  });
});

describe('3: SIGTERM to the leader hands over within seconds', () => {
  it('drains, releases the lease, exits 0; the standby leads well within a lease duration', { timeout: 120_000 }, async () => {
    const standby = await replica();
    await waitFor(async () => standby.logs().includes('"msg":"waiting to acquire the lease"') && (await getLease()).spec?.holderIdentity !== '', {
      timeoutMs: 30_000,
      description: 'the new replica to wait for the lease',
    });
    await new Promise((resolve) => setTimeout(resolve, 2 * RETRY_MS)); // it has looked at least once
    expect(loggedAt(standby, 'became leader')).toBeUndefined();

    const sentAt = Date.now();
    const exit = await survivor.stop(30_000);
    expect(exit).toEqual({ code: 0, signal: null });
    expect(survivor.logs()).toContain('"msg":"released the lease"');
    await waitForLeader([standby], 15_000);
    const handoverMs = (loggedAt(standby, 'became leader') as number) - sentAt;
    console.error(`[failover] hand-over ${handoverMs}ms after SIGTERM`);
    expect(handoverMs).toBeLessThan(5_000);
    expect(handoverMs).toBeLessThan(LEASE_MS);

    // The new leader reconciles: a client created now becomes Ready, the others stay as they were.
    await createClient(standby, ns, 'after-handover', { subject: { user: 'user-0@example.com', groups: [group] } });
    await expectConverged(standby, CLIENTS + 1);
  });
});
