/**
 * Issue 5, faults: the operator killed with SIGKILL at random moments while clients are created,
 * edited (expiration, audiences), moved (tier groups, TenantBindings), revoked (revocationEpoch),
 * suspended, sent to a missing tier and deleted; R rounds from one seeded generator.
 *
 * Each round: plan the edits, apply them while a chaos task SIGKILLs the operator once or twice at
 * random offsets (during the edits or while it converges) and starts it again after a random pause;
 * then wait until the cluster matches the model (support/workload.ts: every client Ready in the
 * right tier or correctly not, no orphan anchor or ServiceAccount, every Secret's token passes
 * TokenReview as the right ServiceAccount, every token recorded before a revoking edit fails).
 * At the end: the converged operator makes (almost) no writes over a quiet window.
 *
 * Size: TOKENWARDEN_FAULT_CLIENTS (default below) and TOKENWARDEN_FAULT_ROUNDS; the seed is printed,
 * TOKENWARDEN_FAULT_SEED=<seed> replays a run.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { sleep, startOperator, uniquePrefix, type OperatorProcess } from '../integration/support/operator.ts';
import { busiest, countedIdentity, delta, reconcilesByKey, type CountedIdentity } from '../integration/support/writes.ts';
import { envInt, faultSeed } from './support/rng.ts';
import { Workload } from './support/workload.ts';

const CLIENTS = envInt('TOKENWARDEN_FAULT_CLIENTS', 500);
const ROUNDS = envInt('TOKENWARDEN_FAULT_ROUNDS', 10);
const NAMESPACES = 5;
/** Share of the live clients edited per round. */
const EDIT_FRACTION = 0.2;
const QUIET_MS = 15_000;
/** ServiceAccounts no status names any more (a suspended client's) are swept once 30s old: legit writes. */
const SWEEP_AGE_MS = 31_000;

const rng = faultSeed('sigkill.test.ts');
const prefix = uniquePrefix('kill');
let identity: CountedIdentity;
let op: OperatorProcess;
let workload: Workload;
const kills: string[] = [];

async function restart(): Promise<void> {
  op = await startOperator({ namespacePrefix: prefix, kubeconfig: identity.kubeconfig, startTimeoutMs: 120_000 });
}

/** SIGKILLs the operator (checking it had not died on its own), waits `pauseMs`, starts it again. */
async function killAndRestart(label: string, pauseMs: number): Promise<void> {
  if (!op.running()) throw new Error(`the operator exited on its own before ${label}; ${op.logPath}:\n${op.tail()}`);
  const t = Date.now();
  await op.kill();
  await sleep(pauseMs);
  await restart();
  kills.push(`${label}: down ${Date.now() - t}ms`);
}

/** Kills once or twice at random offsets within `windowMs` of now. */
async function chaos(round: number, windowMs: number): Promise<void> {
  const times = [rng.int(0, windowMs)];
  if (rng.chance(0.5)) times.push(rng.int(0, windowMs));
  times.sort((a, b) => a - b);
  const start = Date.now();
  for (const [i, at] of times.entries()) {
    await sleep(Math.max(0, start + at - Date.now()));
    await killAndRestart(`round ${round} kill ${i + 1} at +${at}ms`, rng.int(0, 1500));
  }
}

beforeAll(async () => {
  identity = await countedIdentity(prefix);
  await restart();
  workload = new Workload(() => op, { clients: CLIENTS, namespaces: NAMESPACES, rng, tag: 'k' });
  await workload.setup();
}, 300_000);

describe(`SIGKILL at random moments: ${CLIENTS} clients, ${ROUNDS} rounds`, () => {
  it('converges after every restart; no orphans; every Secret token works; every revoked token fails; no hot loop after', async () => {
    const t0 = Date.now();
    const creates = workload.newClients(CLIENTS).map((key) => ({ kind: 'create' as const, key }));
    // Round 0: the clients are created while the operator is killed.
    let t = Date.now();
    await Promise.all([workload.apply(creates, 16), chaos(0, Math.max(5000, CLIENTS * 20))]);
    let converged = await workload.converge(Math.max(120_000, CLIENTS * 600), 'round 0 (creation)');
    console.error(`[faults] round 0: ${CLIENTS} created, converged ${converged}ms after the last restart; ${Date.now() - t}ms in all; ${JSON.stringify(workload.summary())}`);

    let lastEdit = Date.now();
    for (let round = 1; round <= ROUNDS; round++) {
      t = Date.now();
      const ops = workload.planRound(EDIT_FRACTION);
      const counts: Record<string, number> = {};
      for (const o of ops) counts[o.kind] = (counts[o.kind] ?? 0) + 1;
      await Promise.all([workload.apply(ops).then(() => (lastEdit = Date.now())), chaos(round, Math.max(3000, ops.length * 40))]);
      converged = await workload.converge(Math.max(90_000, CLIENTS * 300), `round ${round}`);
      console.error(`[faults] round ${round}: ${ops.length} edits ${JSON.stringify(counts)}; converged ${converged}ms after; ${Date.now() - t}ms; ${JSON.stringify(workload.summary())}`);
    }
    expect(workload.pendingRevoked.size, 'recorded revoked tokens not yet seen failing').toBe(0);
    expect(workload.revokedConfirmed, 'the run revoked tokens at all').toBeGreaterThan(0);
    console.error(`[faults] sigkill: ${kills.length} kills (${kills.join('; ')}); ${Math.round((Date.now() - t0) / 1000)}s`);

    // Converged: the last operator must go quiet (once the delayed sweep of ServiceAccounts is due).
    await sleep(Math.max(0, lastEdit + SWEEP_AGE_MS - Date.now()));
    const logFrom = op.logs().length;
    const before = await identity.counts();
    expect(before.writes, 'the FlowSchema counts the operator\'s writes at all').toBeGreaterThan(0);
    await sleep(QUIET_MS);
    const quiet = delta(before, await identity.counts());
    const hot = busiest(reconcilesByKey(op.logs(), logFrom, op.prefix));
    console.error(`[faults] quiet window ${QUIET_MS}ms after convergence: ${JSON.stringify(quiet)}; busiest keys: ${hot.join(', ')}`);
    expect(quiet.writes, `writes in ${QUIET_MS}ms of quiet (busiest keys: ${hot.join(', ')})`).toBeLessThanOrEqual(2);
    expect(op.running(), 'the operator is still running').toBe(true);
  });
});
