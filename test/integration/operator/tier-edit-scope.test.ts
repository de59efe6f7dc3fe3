/**
 * Issue 9, item 4: a Tier edit costs work in proportion to the clients it concerns. Editing a Tier's
 * token policy reconciles its members only; raising its level with a new group reconciles its
 * members and the clients of that group (which move), and never the clients of the default tier or
 * of a tier the edit cannot reach. Counted from the operator's own "reconciled" log lines.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { createTestNamespace } from '../support/cluster.ts';
import {
  R,
  createClient,
  createTier,
  getClient,
  kube,
  scopedName,
  sleep,
  startOperator,
  waitForClientReady,
  waitForTierReady,
  type ClientToken,
  type OperatorProcess,
} from '../support/operator.ts';
import { reconcilesByKey } from '../support/writes.ts';

let op: OperatorProcess;
let ns: string;
let tierA: string;
let tierB: string;
let tierC: string;
const CLIENTS = { a1: 'ga', a2: 'ga', b1: 'gb', b2: 'gb', c1: 'gc', d1: undefined } as const;
type Name = keyof typeof CLIENTS;

beforeAll(async () => {
  op = await startOperator({ name: 'scope' });
  ns = await createTestNamespace(`${op.prefix}-team`);
  const aud = `${op.prefix}-gateway`;
  const group = (g: string) => `${op.prefix}-${g}`;
  tierA = scopedName(op, 'a');
  tierB = scopedName(op, 'b');
  tierC = scopedName(op, 'c');
  await createTier(op, 'a', { level: 10, groups: [group('ga')], token: { audiences: [aud] } });
  await createTier(op, 'b', { level: 20, groups: [group('gb')], token: { audiences: [aud] } });
  await createTier(op, 'c', { level: 30, groups: [group('gc')], token: { audiences: [aud] } });
  await createTier(op, 'd', { level: 1, default: true, token: { audiences: [aud] } });
  await Promise.all([tierA, tierB, tierC, scopedName(op, 'd')].map((t) => waitForTierReady(t)));
  for (const [name, g] of Object.entries(CLIENTS)) {
    await createClient(op, ns, name, { subject: { user: `${name}@example.com`, groups: g ? [group(g)] : [] } });
  }
  await Promise.all(Object.keys(CLIENTS).map((name) => waitForClientReady(ns, name)));
});

/** Waits until no client of the file has been reconciled for `quietMs`; returns the log offset then. */
async function quiet(quietMs = 2_000): Promise<number> {
  for (let last = op.logs().length; ; ) {
    await sleep(quietMs);
    const now = op.logs().length;
    if (reconcilesByKey(op.logs(), last, `${ns}/`).size === 0) return now;
    last = now;
  }
}

const lifetimeOver = (ms: number) => (ct: ClientToken): boolean =>
  Date.parse(ct.client.status?.expiresAt ?? '') - Date.parse(ct.client.status?.tokens?.[0]?.issuedAt ?? '') > ms;

const reconciled = (from: number): Set<Name> =>
  new Set([...reconcilesByKey(op.logs(), from, `${ns}/`).keys()].map((key) => key.slice(key.lastIndexOf('/') + 1) as Name));

describe('a Tier edit reconciles only the clients it concerns', () => {
  it('a token policy change: its members only', async () => {
    const from = await quiet();
    await kube.patch(R.tier, undefined, tierA, { spec: { token: { defaultExpiration: '2h' } } });
    for (const name of ['a1', 'a2']) await waitForClientReady(ns, name, { extra: lifetimeOver(90 * 60_000) });
    await sleep(2_000);
    expect([...reconciled(from)].sort()).toEqual(['a1', 'a2']);
  });

  it('a higher level and a new group: its members and that group\'s clients, who move; not the default tier\'s or another tier\'s', async () => {
    const from = await quiet();
    await kube.patch(R.tier, undefined, tierA, { spec: { level: 25, groups: [`${op.prefix}-ga`, `${op.prefix}-gb`] } });
    for (const name of ['b1', 'b2']) await waitForClientReady(ns, name, { extra: (ct) => ct.client.status?.tier === tierA });
    await sleep(2_000);
    const touched = reconciled(from);
    expect(touched.has('b1') && touched.has('b2')).toBe(true);
    expect([...touched].filter((name) => !['a1', 'a2', 'b1', 'b2'].includes(name))).toEqual([]);
    expect((await getClient(ns, 'c1')).status?.tier).toBe(tierC);
  });

  it('a group added at the same level: that group\'s clients, who move; not its members', async () => {
    const from = await quiet();
    await kube.patch(R.tier, undefined, tierC, { spec: { groups: [`${op.prefix}-gc`, `${op.prefix}-gb`] } });
    for (const name of ['b1', 'b2']) await waitForClientReady(ns, name, { extra: (ct) => ct.client.status?.tier === tierC });
    await sleep(2_000);
    expect([...reconciled(from)].sort()).toEqual(['b1', 'b2']);
    expect((await getClient(ns, 'c1')).status?.tier).toBe(tierC);
  });
});
