/**
 * Issue 3, "Done when" 9: tier resolution failures. No tier matches: TierResolved=False with reason
 * NoMatchingTier, a Warning Event, no Secret; adding a default Tier fixes it. A requested tier the
 * subject does not qualify for: TierNotAllowed. A TenantBinding quota exceeded: QuotaExceeded.
 *
 * The tests run in order: the default Tier is created last, so that the failures before it cannot be
 * hidden by a fallback to the default tier.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { createTestNamespace, waitFor } from '../support/cluster.ts';
import {
  R,
  clientEvents,
  condition,
  createBinding,
  createClient,
  createTier,
  kube,
  review,
  secretNameOf,
  sleep,
  startOperator,
  tierNamespace,
  tokenOf,
  waitForClient,
  waitForClientReady,
  waitForTierReady,
  type Client,
  type KEvent,
  type OperatorProcess,
  type Secret,
  type TenantBinding,
} from '../support/operator.ts';

let op: OperatorProcess;
let ns: string;
let gold: string;
let goldAud: string;
let goldGroup: string;

beforeAll(async () => {
  op = await startOperator({ name: 'resolve' });
  ns = await createTestNamespace(`${op.prefix}-team`);
  goldAud = `${op.prefix}-gold-gateway`;
  goldGroup = `${op.prefix}-gold-users`;
  gold = (await createTier(op, 'gold', { level: 50, groups: [goldGroup], token: { audiences: [goldAud] } })).metadata.name;
  await waitForTierReady(gold);
});

const resolvedFalse = (reason: string) => (c: Client) => {
  const tr = condition(c, 'TierResolved');
  return tr?.status === 'False' && tr.reason === reason && c.status?.observedGeneration === c.metadata.generation;
};

/** The client holds no token of `tierName`: no Secret, an empty one, or a token of another tier. */
async function expectNoTokenOf(client: Client, tierName: string, aud: string): Promise<void> {
  const secret = await kube.tryGet<Secret>(R.secret, client.metadata.namespace, secretNameOf(client));
  const token = tokenOf(secret);
  if (!token) return;
  const r = await review(token, [aud]);
  expect(r.authenticated && r.username?.startsWith(`system:serviceaccount:${tierNamespace(op, tierName)}:`), `a token of ${tierName}`).toBeFalsy();
}

describe('9: tier resolution', () => {
  it('no tier matches: TierResolved=False NoMatchingTier, a Warning Event, no Secret', async () => {
    await createClient(op, ns, 'nobody', { subject: { user: 'nobody@example.com', groups: [`${op.prefix}-no-such-group`] } });
    const client = await waitForClient(ns, 'nobody', resolvedFalse('NoMatchingTier'), { description: 'nobody TierResolved=False/NoMatchingTier' });
    expect(condition(client, 'Ready')?.status).not.toBe('True');
    expect(client.status?.tier ?? '').toBe('');
    const events = await waitFor(async () => {
      const list = await clientEvents(ns, 'nobody');
      return list.some((e) => e.type === 'Warning' && e.reason === 'TierUnresolved') ? list : undefined;
    }, { timeoutMs: 10_000, description: 'a Warning Event TierUnresolved about nobody' });
    expect(events.find((e) => e.reason === 'TierUnresolved')?.regarding?.uid).toBe(client.metadata.uid);
    // No Secret, now or a moment later.
    expect(await kube.tryGet(R.secret, ns, 'nobody-token')).toBeNull();
    await sleep(2000);
    expect(await kube.tryGet(R.secret, ns, 'nobody-token')).toBeNull();
  });

  it('a requested tier the subject does not qualify for: TierResolved=False TierNotAllowed', async () => {
    await createClient(op, ns, 'gatecrasher', {
      subject: { user: 'gatecrasher@example.com', groups: [`${op.prefix}-no-such-group`] },
      tierRef: { name: gold },
    });
    const client = await waitForClient(ns, 'gatecrasher', resolvedFalse('TierNotAllowed'), { description: 'gatecrasher TierResolved=False/TierNotAllowed' });
    expect(client.status?.tier).not.toBe(gold);
    await expectNoTokenOf(client, gold, goldAud);

    // Control: the same request from a member of the tier's group is granted.
    await createClient(op, ns, 'member', { subject: { user: 'member@example.com', groups: [goldGroup] }, tierRef: { name: gold } });
    const member = await waitForClientReady(ns, 'member');
    expect(member.client.status?.tier).toBe(gold);
    expect(member.client.status?.tierReason).toBe('Requested');
    expect((await review(member.token as string, [goldAud])).authenticated).toBe(true);
  });

  it('a TenantBinding with maxClients 1 and two clients: the second gets QuotaExceeded', async () => {
    const user = 'quota-user@example.com';
    await createBinding(op, ns, 'gold-quota', { tierRef: { name: gold }, subjects: [{ kind: 'User', name: user }], maxClients: 1 });
    await createClient(op, ns, 'quota-1', { subject: { user } });
    const first = await waitForClientReady(ns, 'quota-1');
    expect(first.client.status?.tier).toBe(gold);
    expect(first.client.status?.tierReason).toBe('TenantBinding/gold-quota');

    await createClient(op, ns, 'quota-2', { subject: { user } });
    const second = await waitForClient(ns, 'quota-2', resolvedFalse('QuotaExceeded'), { description: 'quota-2 TierResolved=False/QuotaExceeded' });
    expect(second.status?.tier).not.toBe(gold);
    await expectNoTokenOf(second, gold, goldAud);
    // The first one keeps its place and its token.
    expect((await review(first.token as string, [goldAud])).authenticated).toBe(true);
    // status.clients counts the clients bound through this binding: quota-1 only (not 'member', which
    // is in gold by its groups, nor quota-2, refused).
    const binding = await waitFor(async () => {
      const b = await kube.get<TenantBinding>(R.binding, ns, 'gold-quota');
      return b.status?.clients === 1 ? b : undefined;
    }, { timeoutMs: 10_000, description: 'gold-quota status.clients 1' }).catch(async (err: unknown) => {
      const b = await kube.get<TenantBinding>(R.binding, ns, 'gold-quota');
      throw new Error(`${(err as Error).message}; last seen status: ${JSON.stringify(b.status)}`);
    });
    expect(binding.status?.clients).toBe(1);
  });

  it('a TenantBinding whose tier does not exist: Ready=False TierNotFound and a Warning Event; Ready within seconds of the Tier appearing, TierNotFound again when it goes', async () => {
    const tierName = `${op.prefix}-later`;
    await createBinding(op, ns, 'to-later', { tierRef: { name: tierName }, subjects: [{ kind: 'User', name: 'later@example.com' }] });
    const bindingReady = (status: 'True' | 'False', reason: string) =>
      waitFor(
        async () => {
          const b = await kube.get<TenantBinding>(R.binding, ns, 'to-later');
          const ready = condition(b, 'Ready');
          return ready?.status === status && ready.reason === reason && ready.observedGeneration === b.metadata.generation ? b : undefined;
        },
        // Seconds, not the informers' 10-minute relist: the Tier's coming and going must reach the binding.
        { timeoutMs: 10_000, description: `TenantBinding to-later Ready=${status} ${reason}` },
      );
    const missing = await bindingReady('False', 'TierNotFound');
    expect(condition(missing, 'Ready')?.message).toContain(tierName);
    await waitFor(
      async () => (await kube.list<KEvent>(R.event, ns)).some((e) => e.regarding?.kind === 'TenantBinding' && e.regarding.name === 'to-later' && e.reason === 'TierNotFound' && e.type === 'Warning'),
      { timeoutMs: 10_000, description: 'a Warning Event TierNotFound about the binding' },
    );

    await createTier(op, 'later', { level: 1, groups: [] });
    await bindingReady('True', 'Bound');
    await kube.remove(R.tier, undefined, tierName);
    await bindingReady('False', 'TierNotFound');
  });

  it('adding a default Tier resolves the client that matched nothing', async () => {
    const freeAud = `${op.prefix}-free-gateway`;
    const free = (await createTier(op, 'free', { level: 0, default: true, token: { audiences: [freeAud] } })).metadata.name;
    await waitForTierReady(free);
    const { client, token } = await waitForClientReady(ns, 'nobody', { timeoutMs: 20_000, description: 'nobody Ready in the default tier' });
    expect(client.status?.tier).toBe(free);
    expect(client.status?.tierReason).toBe('Default');
    expect(condition(client, 'TierResolved')).toMatchObject({ status: 'True', reason: 'Resolved' });
    const r = await review(token as string, [freeAud]);
    expect(r.authenticated).toBe(true);
    expect(r.username?.startsWith(`system:serviceaccount:${tierNamespace(op, free)}:`)).toBe(true);
  });
});
