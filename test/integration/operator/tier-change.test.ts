/**
 * Issue 3, "Done when" 8: a tier change by (a) editing a Tier's groups, (b) adding a TenantBinding
 * with a higher tier, (c) deleting that TenantBinding. The client moves (status.tier), its old token
 * fails at once, and no ServiceAccount is left without a client.
 *
 * All tiers share one audience, as one gateway in front of all of them would: the old token is
 * checked with the audience it was minted for, so a failure means "revoked", not "wrong audience".
 *
 * And when many clients move at once, every one of them loses its old tier's tokens before any of
 * them gets its new one: a demotion takes effect in one pass over the queue, not one per client.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { KubeClient } from '../../../src/kube/client.ts';
import { SECRETS, type KubeObject } from '../../../src/kube/resources.ts';
import { adminKubeConfig, createTestNamespace, waitFor } from '../support/cluster.ts';
import {
  R,
  createBinding,
  createClient,
  createTier,
  getClient,
  kube,
  operatorWritesOutsideStatus,
  orphanServiceAccounts,
  review,
  serviceAccountsOf,
  sleep,
  startOperator,
  tierNamespace,
  waitForClientReady,
  waitForTierReady,
  ANCHOR_TYPE,
  clientEvents,
  condition,
  type ClientToken,
  type OperatorProcess,
} from '../support/operator.ts';

let op: OperatorProcess;
let aud: string;
let basic: string;
let pro: string;
let enterprise: string;
let groupA: string;
let proGroup: string;

beforeAll(async () => {
  op = await startOperator({ name: 'move' });
  aud = `${op.prefix}-gateway`;
  groupA = `${op.prefix}-group-a`;
  proGroup = `${op.prefix}-pro-users`;
  const token = { audiences: [aud], defaultExpiration: '1h', gracePeriod: '5m' };
  basic = (await createTier(op, 'basic', { level: 10, groups: [`${op.prefix}-basic-users`, groupA], token })).metadata.name;
  pro = (await createTier(op, 'pro', { level: 30, groups: [proGroup], token })).metadata.name;
  enterprise = (await createTier(op, 'enterprise', { level: 50, groups: [], token })).metadata.name;
  await Promise.all([basic, pro, enterprise].map((t) => waitForTierReady(t)));
});

/**
 * After `change` (made at `changedAt`): the client's status.tier becomes `to`, its old token fails
 * within 2s of that move (and within 5s of the change), its new token authenticates in the new tier,
 * and the user keeps no ServiceAccount in the old tier's namespace.
 */
async function expectMove(ns: string, name: string, old: ClientToken, from: string, to: string, changedAt: number, reason: string): Promise<void> {
  const user = old.client.spec.subject.user;
  let movedAt: number | undefined;
  let failedAt: number | undefined;
  const deadline = changedAt + 20_000;
  while (Date.now() < deadline && (movedAt === undefined || failedAt === undefined)) {
    const at = Date.now();
    const [client, r] = await Promise.all([getClient(ns, name), failedAt === undefined ? review(old.token as string, [aud]) : undefined]);
    if (movedAt === undefined && client.status?.tier === to) movedAt = at;
    if (failedAt === undefined && r && !r.authenticated) failedAt = at;
    await sleep(100);
  }
  expect(movedAt, `${name}: status.tier ${from} -> ${to} within 20s`).toBeDefined();
  expect(failedAt, `${name}: its old token (tier ${from}) fails`).toBeDefined();
  expect((failedAt as number) - (movedAt as number), `${name}: ms from the move to the old token failing`).toBeLessThanOrEqual(2000);
  expect((failedAt as number) - changedAt, `${name}: ms from the change to the old token failing`).toBeLessThanOrEqual(5000);

  const now = await waitForClientReady(ns, name, {
    extra: (ct) => ct.client.status?.tier === to && ct.token !== old.token,
    description: `${name} Ready in tier ${to}`,
  });
  expect(now.client.status?.tierReason).toBe(reason);
  const toNs = tierNamespace(op, to);
  expect(now.client.status?.serviceAccount?.namespace).toBe(toNs);
  const r = await review(now.token as string, [aud]);
  expect(r.authenticated, `${name}: the new token passes`).toBe(true);
  expect(r.username?.startsWith(`system:serviceaccount:${toNs}:`), `${name}: new token is of the ${to} namespace (${r.username})`).toBe(true);
  // Still failing once the move is complete.
  expect((await review(old.token as string, [aud])).authenticated, `${name}: the old token after the move`).toBe(false);

  // No ServiceAccount left for the user in the old tier; none without a client anywhere.
  const fromNs = tierNamespace(op, from);
  const left = await serviceAccountsOf(fromNs, user);
  expect(left.map((sa) => sa.metadata.name), `ServiceAccounts of ${user} left in ${fromNs}`).toEqual([]);
  expect(await orphanServiceAccounts(op, [basic, pro, enterprise])).toEqual([]);
  expect(await kube.list(R.secret, fromNs, { labelSelector: `tokenwarden.io/client-uid=${old.client.metadata.uid}` })).toEqual([]);
}

describe('8: tier changes move the client', () => {
  it('(a) editing a Tier\'s groups moves the client to the higher tier', async () => {
    const ns = await createTestNamespace(`${op.prefix}-a`);
    await createClient(op, ns, 'mover-a', { subject: { user: 'mover-a@example.com', groups: [groupA] } });
    const old = await waitForClientReady(ns, 'mover-a');
    expect(old.client.status?.tier).toBe(basic);
    expect((await review(old.token as string, [aud])).authenticated).toBe(true);

    const changedAt = Date.now();
    await kube.patch(R.tier, undefined, pro, { spec: { groups: [proGroup, groupA] } });
    await expectMove(ns, 'mover-a', old, basic, pro, changedAt, `Tier/${pro}`);
  });

  it('(b) adding a TenantBinding with a higher tier moves the client to it', async () => {
    const ns = await createTestNamespace(`${op.prefix}-b`);
    const user = 'mover-b@example.com';
    await createClient(op, ns, 'mover-b', { subject: { user, groups: [proGroup] } });
    const old = await waitForClientReady(ns, 'mover-b');
    expect(old.client.status?.tier).toBe(pro);
    expect((await review(old.token as string, [aud])).authenticated).toBe(true);

    const changedAt = Date.now();
    await createBinding(op, ns, 'enterprise-for-b', { tierRef: { name: enterprise }, subjects: [{ kind: 'User', name: user }] });
    await expectMove(ns, 'mover-b', old, pro, enterprise, changedAt, 'TenantBinding/enterprise-for-b');
  });

  it('(c) deleting that TenantBinding moves the client back', async () => {
    const ns = await createTestNamespace(`${op.prefix}-c`);
    const user = 'mover-c@example.com';
    await createBinding(op, ns, 'enterprise-for-c', { tierRef: { name: enterprise }, subjects: [{ kind: 'Group', name: `${op.prefix}-team-c` }] });
    await createClient(op, ns, 'mover-c', { subject: { user, groups: [proGroup, `${op.prefix}-team-c`] } });
    const old = await waitForClientReady(ns, 'mover-c', { extra: (ct) => ct.client.status?.tier === enterprise });
    expect(old.client.status?.tierReason).toBe('TenantBinding/enterprise-for-c');
    expect((await review(old.token as string, [aud])).authenticated).toBe(true);

    const changedAt = Date.now();
    await kube.remove(R.binding, ns, 'enterprise-for-c');
    await expectMove(ns, 'mover-c', old, enterprise, pro, changedAt, `Tier/${pro}`);
  });
});

describe('many clients moving at once', () => {
  it('every old-tier token is revoked before the first new-tier token is minted; then all are Ready in the new tier', { timeout: 180_000 }, async () => {
    // One worker: the order of the queue is the order of the writes, so the claim is exact.
    const mass = await startOperator({ name: 'mass', extraArgs: ['--workers=1'] });
    const group = `${mass.prefix}-movers`;
    const token = { audiences: [aud], defaultExpiration: '1h', gracePeriod: '5m' };
    const low = (await createTier(mass, 'low', { level: 10, groups: [group], token })).metadata.name;
    const high = (await createTier(mass, 'high', { level: 20, groups: [], token })).metadata.name;
    await Promise.all([low, high].map((t) => waitForTierReady(t)));
    const ns = await createTestNamespace(`${mass.prefix}-team`);
    const names = Array.from({ length: 12 }, (_, i) => `mover-${i}`);
    for (const name of names) await createClient(mass, ns, name, { subject: { user: `${name}@mass.example.com`, groups: [group] } });
    const before = await Promise.all(names.map((name) => waitForClientReady(ns, name)));
    expect(before.every((ct) => ct.client.status?.tier === low)).toBe(true);

    // Every anchor written in either tier namespace, in the API server's order.
    const lowNs = tierNamespace(mass, low);
    const highNs = tierNamespace(mass, high);
    const seen: { type: string; namespace: string }[] = [];
    const client = new KubeClient(adminKubeConfig());
    const watch = client.watch<KubeObject & { type?: string }>(
      SECRETS,
      undefined,
      { labelSelector: `tokenwarden.io/tier in (${low},${high})`, resourceVersion: (await client.list(SECRETS, undefined, { labelSelector: `tokenwarden.io/tier in (${low},${high})` })).resourceVersion },
      (e) => {
        const obj = e.object as KubeObject & { type?: string };
        if (e.type !== 'BOOKMARK' && obj.type === ANCHOR_TYPE) seen.push({ type: e.type, namespace: obj.metadata?.namespace as string });
      },
      () => undefined,
    );
    try {
      await kube.patch(R.tier, undefined, high, { spec: { groups: [group] } });
      const after = await Promise.all(
        names.map((name) => waitForClientReady(ns, name, { timeoutMs: 60_000, extra: (ct) => ct.client.status?.tier === high, description: `${name} Ready in ${high}` })),
      );
      await waitFor(async () => seen.filter((e) => e.type === 'DELETED' && e.namespace === lowNs).length >= names.length, { description: 'the watch to see every old anchor deleted' });

      const lastOldDeleted = seen.findLastIndex((e) => e.type === 'DELETED' && e.namespace === lowNs);
      const firstNewAdded = seen.findIndex((e) => e.type === 'ADDED' && e.namespace === highNs);
      expect(firstNewAdded, JSON.stringify(seen)).toBeGreaterThan(lastOldDeleted);
      expect(seen.filter((e) => e.type === 'ADDED' && e.namespace === highNs).length).toBe(names.length);

      for (const [i, name] of names.entries()) {
        expect((await review(before[i]?.token as string, [aud])).authenticated, `${name}: the old token`).toBe(false);
        const now = after[i] as ClientToken;
        expect(condition(now.client, 'Ready')?.reason).toBe('TokenIssued');
        const who = await review(now.token as string, [aud]);
        expect(who.username?.startsWith(`system:serviceaccount:${highNs}:`), `${name}: ${who.username}`).toBe(true);
        // One Moved Event, however many passes the move took.
        expect((await clientEvents(ns, name)).filter((e) => e.reason === 'Moved').length, `${name}: Moved Events`).toBe(1);
      }
      expect(await orphanServiceAccounts(mass, [low, high])).toEqual([]);
      expect((await kube.list(R.serviceAccount, lowNs, { labelSelector: 'app.kubernetes.io/managed-by=tokenwarden' })).map((sa) => sa.metadata.name)).toEqual([]);
    } finally {
      watch.abort();
      await client.close();
    }
  });
});

describe('the operator never writes a spec', () => {
  it('by the API server\'s record (managedFields), it wrote only status and finalizers of this file\'s Tiers, TenantBindings and clients', async () => {
    const { offending, checked } = await operatorWritesOutsideStatus(op);
    expect(offending).toEqual([]);
    expect(checked.Tier?.status).toBeGreaterThan(0);
    expect(checked.TenantBinding?.status).toBeGreaterThan(0);
    expect(checked.ServiceAccountClient?.status).toBeGreaterThan(0);
    expect(checked.ServiceAccountClient?.finalizers).toBeGreaterThan(0);
  });
});
