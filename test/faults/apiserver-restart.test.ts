/**
 * Issue 5, faults: kube-apiserver and etcd restarted in the middle of the workload of sigkill.test.ts
 * (creations, edits, moves, revocations, suspensions, deletions), with the same checks after each
 * round, and the operator process itself never restarted: one process from start to end (same pid,
 * one "operator started" line), which rides out the outage with its retries, watch restarts and
 * relists.
 *
 * Rounds cycle through the faults: kube-apiserver SIGKILL, etcd SIGKILL, kube-apiserver SIGTERM
 * (graceful), etcd SIGTERM; each at a random moment of the edits, down for a random 2-6s. The
 * test's own edits retry while the API server cannot answer (support/workload.ts retrying()).
 *
 * Size: TOKENWARDEN_FAULT_CLIENTS and TOKENWARDEN_FAULT_RESTART_ROUNDS; seed printed,
 * TOKENWARDEN_FAULT_SEED replays.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { sleep, startOperator, uniquePrefix, type OperatorProcess } from '../integration/support/operator.ts';
import { busiest, countedIdentity, delta, reconcilesByKey, type CountedIdentity } from '../integration/support/writes.ts';
import { controlPlane, startEtcd, stopEtcd } from './support/controlplane.ts';
import { envInt, faultSeed } from './support/rng.ts';
import { Workload } from './support/workload.ts';

const CLIENTS = envInt('TOKENWARDEN_FAULT_CLIENTS', 500);
const ROUNDS = envInt('TOKENWARDEN_FAULT_RESTART_ROUNDS', 4);
const NAMESPACES = 5;
const EDIT_FRACTION = 0.2;
const QUIET_MS = 15_000;
const SWEEP_AGE_MS = 31_000;

type Fault = 'kube-apiserver SIGKILL' | 'etcd SIGKILL' | 'kube-apiserver SIGTERM' | 'etcd SIGTERM';
const FAULTS: Fault[] = ['kube-apiserver SIGKILL', 'etcd SIGKILL', 'kube-apiserver SIGTERM', 'etcd SIGTERM'];

const rng = faultSeed('apiserver-restart.test.ts');
const prefix = uniquePrefix('outage');
let identity: CountedIdentity;
let op: OperatorProcess;
let workload: Workload;
const outages: string[] = [];

async function inject(fault: Fault, round: number, windowMs: number): Promise<void> {
  const at = rng.int(0, windowMs);
  const downMs = rng.int(2000, 6000);
  await sleep(at);
  const cp = await controlPlane();
  const t = Date.now();
  if (fault.startsWith('kube-apiserver')) {
    await cp.stopApiServer({ kill: fault.endsWith('SIGKILL') });
    await sleep(downMs);
    await cp.startApiServer();
  } else {
    await stopEtcd({ kill: fault.endsWith('SIGKILL') });
    await sleep(downMs);
    await startEtcd();
  }
  outages.push(`round ${round}: ${fault} at +${at}ms, back after ${Date.now() - t}ms`);
}

beforeAll(async () => {
  identity = await countedIdentity(prefix);
  op = await startOperator({ namespacePrefix: prefix, kubeconfig: identity.kubeconfig, startTimeoutMs: 120_000 });
  workload = new Workload(() => op, { clients: CLIENTS, namespaces: NAMESPACES, rng, tag: 'r' });
  await workload.setup();
}, 300_000);

describe(`kube-apiserver and etcd restarted under load: ${CLIENTS} clients, ${ROUNDS} rounds`, () => {
  it('converges after every outage, same checks as under SIGKILL, and the operator process never restarts', async () => {
    const t0 = Date.now();
    const pid = op.pid;
    let t = Date.now();
    await workload.apply(workload.newClients(CLIENTS).map((key) => ({ kind: 'create' as const, key })), 16);
    let converged = await workload.converge(Math.max(120_000, CLIENTS * 600), 'creation');
    console.error(`[faults] ${CLIENTS} created and converged in ${Date.now() - t}ms (${converged}ms after the last create)`);

    let lastEdit = Date.now();
    for (let round = 1; round <= ROUNDS; round++) {
      t = Date.now();
      const fault = FAULTS[(round - 1) % FAULTS.length] as Fault;
      const ops = workload.planRound(EDIT_FRACTION);
      await Promise.all([workload.apply(ops).then(() => (lastEdit = Date.now())), inject(fault, round, Math.max(2000, ops.length * 30))]);
      expect(op.running() ? 'running' : `exited ${JSON.stringify(await op.exited)}`, `the operator process after ${fault}; ${op.logPath}`).toBe('running');
      converged = await workload.converge(Math.max(120_000, CLIENTS * 300), `round ${round} (${fault})`);
      console.error(`[faults] round ${round} (${fault}): ${ops.length} edits; converged ${converged}ms after the edits; ${Date.now() - t}ms; ${JSON.stringify(workload.summary())}`);
      expect(op.running() ? 'running' : `exited ${JSON.stringify(await op.exited)}`, `the operator process after ${fault}; ${op.logPath}`).toBe('running');
    }
    expect(workload.pendingRevoked.size).toBe(0);
    expect(workload.revokedConfirmed).toBeGreaterThan(0);
    console.error(`[faults] outages: ${outages.join('; ')}; ${Math.round((Date.now() - t0) / 1000)}s`);

    // One process from start to end.
    expect(op.pid).toBe(pid);
    expect(op.running()).toBe(true);
    const starts = op.logs().split('\n').filter((l) => l.includes('"msg":"operator started"')).length;
    expect(starts, 'lines "operator started" in the operator log').toBe(1);

    // And it goes quiet (the counters restarted with kube-apiserver; this window has no restart).
    await sleep(Math.max(0, lastEdit + SWEEP_AGE_MS - Date.now()));
    const logFrom = op.logs().length;
    const before = await identity.counts();
    await sleep(QUIET_MS);
    const quiet = delta(before, await identity.counts());
    const hot = busiest(reconcilesByKey(op.logs(), logFrom, op.prefix));
    console.error(`[faults] quiet window ${QUIET_MS}ms: ${JSON.stringify(quiet)}; busiest keys: ${hot.join(', ')}`);
    expect(quiet.writes, `writes in ${QUIET_MS}ms of quiet (busiest keys: ${hot.join(', ')})`).toBeLessThanOrEqual(2);
  });

  // Under load, a request in flight or a timer that holds the event loop can hide it; idle, nothing does.
  it('survives a kube-apiserver outage while it is idle (no reconcile or request in flight)', async () => {
    const pid = op.pid;
    const cp = await controlPlane();
    await cp.stopApiServer({ kill: true });
    await sleep(5000);
    const during = op.running() ? 'running' : `exited ${JSON.stringify(await op.exited)}`;
    await cp.startApiServer();
    expect(during, `the operator process during a 5s outage while idle; ${op.logPath}`).toBe('running');
    await workload.converge(60_000, 'after an idle outage');
    expect(op.pid).toBe(pid);
    expect(op.running()).toBe(true);
  });
});
