/**
 * A TenantBinding quota on real clients, and the two passes of a tier move.
 *
 * - maxClients taken: the younger client falls back to the next tier it qualifies for (not
 *   QuotaExceeded, not nothing), and is promoted to the binding's tier, with a token of that tier,
 *   once the oldest client leaves.
 * - A tier move is seen from outside in its order (README "Tier moves"): the old tier's anchor is
 *   deleted and the Secret emptied, THEN the client says Ready=False reason Moving, THEN the Secret
 *   gets a token of the new tier and Ready=True. Watches on the client and on tokenwarden's Secrets
 *   see every write; the API server's resourceVersions (one etcd, so one order) order them.
 *
 * Token values are never printed: tokens are compared by fingerprint.
 */
import { Watch } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminKubeConfig, createTestNamespace, waitFor } from '../support/cluster.ts';
import {
  CLIENT_ANNOTATION,
  MANAGED_BY,
  R,
  condition,
  createBinding,
  createClient,
  createTier,
  decodeJwt,
  fingerprint,
  kube,
  resourcePath,
  review,
  serviceAccountUser,
  sleep,
  startOperator,
  tierNamespace,
  tokenOf,
  waitForClientReady,
  waitForTierReady,
  waitForTokenToFail,
  type Client,
  type KObject,
  type OperatorProcess,
  type Secret,
  type TenantBinding,
} from '../support/operator.ts';

let op: OperatorProcess;
let ns: string;
let gold: string;
let silver: string;
let goldNs: string;
let silverNs: string;
let goldAud: string;
let silverAud: string;
let silverGroup: string;
const watches: AbortController[] = [];

beforeAll(async () => {
  op = await startOperator({ name: 'quota' });
  ns = await createTestNamespace(`${op.prefix}-team`);
  goldAud = `${op.prefix}-gold-gw`;
  silverAud = `${op.prefix}-silver-gw`;
  silverGroup = `${op.prefix}-silver-users`;
  // gold only through a TenantBinding (nobody is in its group); silver for everyone in silverGroup.
  gold = (await createTier(op, 'gold', { level: 50, groups: [`${op.prefix}-nobody`], token: { audiences: [goldAud] } })).metadata.name;
  silver = (await createTier(op, 'silver', { level: 20, groups: [silverGroup], token: { audiences: [silverAud] } })).metadata.name;
  goldNs = tierNamespace(op, gold);
  silverNs = tierNamespace(op, silver);
  await Promise.all([waitForTierReady(gold), waitForTierReady(silver)]);
});

afterAll(() => {
  for (const w of watches) w.abort();
});

/** The namespace of the ServiceAccount a token authenticates as, by TokenReview with `aud`; undefined if it fails. */
async function tokenNamespace(token: string | undefined, aud: string): Promise<string | undefined> {
  if (!token) return undefined;
  const r = await review(token, [aud]);
  return r.authenticated ? r.username?.split(':')[2] : undefined;
}

describe('TenantBinding maxClients on real clients', () => {
  it('the client over the quota falls back to the next tier it qualifies for; it is promoted when the oldest client leaves', async () => {
    const user = 'quota-user@example.com';
    await createBinding(op, ns, 'gold-one', { tierRef: { name: gold }, subjects: [{ kind: 'User', name: user }], maxClients: 1 });
    await createClient(op, ns, 'q1-old', { subject: { user, groups: [silverGroup] } });
    const old = await waitForClientReady(ns, 'q1-old', { extra: (ct) => ct.client.status?.tier === gold });
    expect(old.client.status?.tierReason).toBe('TenantBinding/gold-one');
    // Creation times have a resolution of one second: q2 is younger for sure.
    await sleep(1100);

    await createClient(op, ns, 'q2-young', { subject: { user, groups: [silverGroup] } });
    const fallback = await waitForClientReady(ns, 'q2-young', { extra: (ct) => ct.client.status?.tier !== undefined });
    expect(fallback.client.status?.tier, 'the younger client falls back to silver, the next tier it qualifies for').toBe(silver);
    expect(fallback.client.status?.tierReason).toBe(`Tier/${silver}`);
    const resolved = condition(fallback.client, 'TierResolved');
    expect(resolved?.status).toBe('True');
    expect(resolved?.message, 'the quota that sent it to silver is named').toContain('TenantBinding gold-one allows 1 client(s)');
    expect(await tokenNamespace(fallback.token, silverAud), 'its token is of silver').toBe(silverNs);
    expect(await tokenNamespace(fallback.token, goldAud), 'its token is no gold token').toBeUndefined();
    // The oldest keeps gold, and the binding counts one client.
    expect(await tokenNamespace(old.token, goldAud)).toBe(goldNs);
    await waitFor(async () => (await kube.get<TenantBinding>(R.binding, ns, 'gold-one')).status?.clients === 1, { description: 'gold-one counting 1 client' });

    // The oldest leaves: the younger one is promoted, with a gold token; its silver token is revoked.
    const since = Date.now();
    await kube.remove(R.client, ns, 'q1-old');
    const promoted = await waitForClientReady(ns, 'q2-young', { timeoutMs: 30_000, extra: (ct) => ct.client.status?.tier === gold });
    const promotedMs = Date.now() - since;
    expect(promoted.client.status?.tierReason).toBe('TenantBinding/gold-one');
    expect(condition(promoted.client, 'TierResolved')?.message ?? '').not.toContain('allows 1 client(s)');
    expect(await tokenNamespace(promoted.token, goldAud), 'the promoted client\'s token is of gold').toBe(goldNs);
    expect(fingerprint(promoted.token)).not.toBe(fingerprint(fallback.token));
    await waitForTokenToFail(fallback.token as string, [silverAud], { timeoutMs: 10_000, what: 'the silver token of the promoted client' });
    expect(promotedMs, 'ms from the oldest client deleted to the younger one Ready in gold').toBeLessThan(20_000);
    await waitFor(async () => (await kube.get<TenantBinding>(R.binding, ns, 'gold-one')).status?.clients === 1, { description: 'gold-one counting the promoted client' });
  });
});

describe('quotas of several bindings in one namespace', () => {
  it('a client that fell back to a binding takes one of its places: the next one falls back further', async () => {
    // Everyone here prefers gold (one place), then silver through a binding (one place). silver's own
    // group does not give the user it names silver around that binding's quota (maxClients counts
    // every client of its subjects that holds its tier), so the third is refused.
    const user = 'cascade-user@example.com';
    await createBinding(op, ns, 'cascade-gold', { tierRef: { name: gold }, subjects: [{ kind: 'User', name: user }], maxClients: 1 });
    await createBinding(op, ns, 'cascade-silver', { tierRef: { name: silver }, subjects: [{ kind: 'User', name: user }], maxClients: 1 });
    // Ranked oldest first, then by name: created in this order, the names rank the same way.
    for (const name of ['cascade-1', 'cascade-2', 'cascade-3']) await createClient(op, ns, name, { subject: { user, groups: [silverGroup] } });
    const reasons = await Promise.all(
      ['cascade-1', 'cascade-2'].map(async (name) => (await waitForClientReady(ns, name, { extra: (ct) => ct.client.status?.tier !== undefined })).client.status?.tierReason),
    );
    expect(reasons).toEqual(['TenantBinding/cascade-gold', 'TenantBinding/cascade-silver']);
    const third = await waitFor(async () => {
      const c = await kube.get<Client>(R.client, ns, 'cascade-3');
      return c.status?.observedGeneration === c.metadata.generation && condition(c, 'Ready')?.reason === 'QuotaExceeded' ? c : undefined;
    }, { description: 'cascade-3 QuotaExceeded' });
    expect(third.status?.tier).toBeUndefined();
    expect(condition(third, 'TierResolved')?.message).toBe(
      'TenantBinding cascade-gold allows 1 client(s) and they are taken; TenantBinding cascade-silver allows 1 client(s) and they are taken',
    );
    for (const binding of ['cascade-gold', 'cascade-silver']) {
      await waitFor(async () => (await kube.get<TenantBinding>(R.binding, ns, binding)).status?.clients === 1, { description: `${binding} counting 1 client` });
    }
    // The gold holder leaves: the silver-binding holder moves up, the third takes its silver place.
    await kube.remove(R.client, ns, 'cascade-1');
    await waitForClientReady(ns, 'cascade-2', { timeoutMs: 30_000, extra: (ct) => ct.client.status?.tierReason === 'TenantBinding/cascade-gold' });
    await waitForClientReady(ns, 'cascade-3', { timeoutMs: 30_000, extra: (ct) => ct.client.status?.tierReason === 'TenantBinding/cascade-silver' });
  });
});

describe('counts and sweeps under a burst', () => {
  it('30 clients asking for the tier a binding grants: the binding and the Tier are written a few times, not once per client', async () => {
    const group = `${op.prefix}-burst`;
    await createBinding(op, ns, 'burst-gold', { tierRef: { name: gold }, subjects: [{ kind: 'Group', name: group }] });
    await waitFor(async () => (await kube.get<TenantBinding>(R.binding, ns, 'burst-gold')).status?.clients === 0, { description: 'burst-gold counting 0' });
    const bindingWrites: Seen[] = [];
    const tierWrites: Seen[] = [];
    const see = (type: string, obj: KObject) => ({ rv: Number(obj.metadata.resourceVersion), type, what: `clients=${(obj as TenantBinding).status?.clients}` });
    await record(resourcePath(R.binding, ns), { fieldSelector: 'metadata.name=burst-gold' }, see, bindingWrites);
    await record(resourcePath(R.tier), { fieldSelector: `metadata.name=${gold}` }, see, tierWrites);
    await waitFor(async () => bindingWrites.length > 0 && tierWrites.length > 0, { timeoutMs: 10_000, description: 'the watches started' });
    const tierClientsBefore = Number(tierWrites[0]?.what.slice('clients='.length));
    // A user each, so a ServiceAccount each: every one of them is an event the Tier hears of.
    const names = Array.from({ length: 30 }, (_, i) => `burst-${String(i).padStart(2, '0')}`);
    const start = Date.now();
    await Promise.all(names.map((name) => createClient(op, ns, name, { subject: { user: `${name}@example.com`, groups: [group] }, tierRef: { name: gold } })));
    await Promise.all(names.map((name) => waitForClientReady(ns, name, { timeoutMs: 60_000, extra: (ct) => ct.client.status?.tierReason === 'Requested' })));
    await waitFor(async () => (await kube.get<TenantBinding>(R.binding, ns, 'burst-gold')).status?.clients === 30, { timeoutMs: 10_000, description: 'burst-gold counting 30' });
    const seconds = Math.ceil((Date.now() - start) / 1000);
    await sleep(2000); // a write still coalescing would show now
    for (const [what, writes, last] of [['TenantBinding', bindingWrites, 30], ['Tier', tierWrites, tierClientsBefore + 30]] as const) {
      const modified = writes.filter((w) => w.type === 'MODIFIED');
      expect(modified.at(-1)?.what, what).toBe(`clients=${last}`);
      // One write a second at most while the burst lasts (COUNT_COALESCE_MS), not one per client.
      expect(modified.length, `${what} in ${seconds} s: ${modified.map((w) => w.what).join(', ')}`).toBeLessThanOrEqual(seconds + 2);
      expect(modified.length, what).toBeLessThan(names.length);
    }
  });
});

interface Seen {
  rv: number;
  type: string;
  what: string;
}

/** Watches `path` (from now), recording each event through `see` (which must keep no token). */
async function record(path: string, query: Record<string, string>, see: (type: string, obj: KObject) => Seen | undefined, into: Seen[]): Promise<void> {
  const w = new Watch(adminKubeConfig());
  watches.push(
    await w.watch(path, query, (type, obj: KObject) => {
      const s = see(type, obj);
      if (s) into.push(s);
    }, () => undefined),
  );
}

describe('a tier move, in its order', () => {
  it('old anchor deleted and Secret emptied, then Ready=False reason Moving, then a token of the new tier and Ready=True', async () => {
    const user = 'mover@example.com';
    const name = 'mover';
    await createClient(op, ns, name, { subject: { user, groups: [silverGroup] } });
    const before = await waitForClientReady(ns, name, { extra: (ct) => ct.client.status?.tier === silver });
    const oldAnchor = before.client.status?.tokens?.[0]?.id as string;
    expect(oldAnchor).toBeDefined();
    expect(await tokenNamespace(before.token, silverAud)).toBe(silverNs);

    const clientEvents: Seen[] = [];
    const secretEvents: Seen[] = [];
    await record(resourcePath(R.client, ns), { fieldSelector: `metadata.name=${name}` }, (type, obj) => {
      const c = obj as Client;
      const ready = condition(c, 'Ready');
      return { rv: Number(c.metadata.resourceVersion), type, what: `client ${ready?.status}/${ready?.reason} tier=${c.status?.tier} tokens=${c.status?.tokens?.length ?? 0}` };
    }, clientEvents);
    await record(resourcePath(R.secret), { labelSelector: `${MANAGED_BY}=tokenwarden` }, (type, obj) => {
      const s = obj as Secret;
      const rv = Number(s.metadata.resourceVersion);
      if (s.metadata.namespace === silverNs && s.metadata.name === oldAnchor) return { rv, type, what: `old-anchor ${type}` };
      if (s.metadata.namespace !== ns || s.metadata.annotations?.[CLIENT_ANNOTATION] !== name) return undefined;
      const token = tokenOf(s);
      // Only the namespace the token was minted in is kept, never the token.
      const minted = token ? decodeJwt(token)['kubernetes.io']?.namespace : undefined;
      return { rv, type, what: `secret token=${minted ?? 'none'}` };
    }, secretEvents);
    // The watches deliver the current state first (ADDED): wait for it, so the move is seen whole.
    await waitFor(async () => clientEvents.length > 0 && secretEvents.some((e) => e.what.startsWith('old-anchor')), { timeoutMs: 10_000, description: 'the watches started' });

    await createBinding(op, ns, 'mover-gold', { tierRef: { name: gold }, subjects: [{ kind: 'User', name: user }] });
    const after = await waitForClientReady(ns, name, { timeoutMs: 30_000, extra: (ct) => ct.client.status?.tier === gold });
    expect(await tokenNamespace(after.token, goldAud)).toBe(goldNs);
    await waitForTokenToFail(before.token as string, [silverAud], { timeoutMs: 10_000, what: 'the silver token after the move' });
    await sleep(500); // the last watch events in flight

    const all = [...clientEvents, ...secretEvents].sort((a, b) => a.rv - b.rv);
    const trace = all.map((e) => `${e.rv} ${e.type} ${e.what}`).join('\n');
    const first = (match: (e: Seen) => boolean) => all.find(match);
    const moving = first((e) => e.what.startsWith('client False/Moving') && e.what.includes(`tier=${gold}`));
    expect(moving, `Ready=False reason Moving with status.tier ${gold}; seen:\n${trace}`).toBeDefined();
    expect(moving?.what, 'no tokens in status while moving').toContain('tokens=0');
    const anchorGone = first((e) => e.what === 'old-anchor DELETED');
    const emptied = first((e) => e.what === 'secret token=none' && e.type === 'MODIFIED');
    const goldToken = first((e) => e.what === `secret token=${goldNs}`);
    const readyGold = first((e) => e.what.startsWith('client True/') && e.what.includes(`tier=${gold}`));
    expect(anchorGone, `the old anchor deleted; seen:\n${trace}`).toBeDefined();
    expect(emptied, `the Secret emptied; seen:\n${trace}`).toBeDefined();
    expect(goldToken, `a gold token in the Secret; seen:\n${trace}`).toBeDefined();
    expect(readyGold, `Ready=True in gold; seen:\n${trace}`).toBeDefined();
    const rv = (e: Seen | undefined) => e?.rv ?? Number.NaN;
    expect(rv(anchorGone), `the old tier's anchor is deleted before Moving is reported:\n${trace}`).toBeLessThan(rv(moving));
    expect(rv(emptied), `the Secret is emptied before Moving is reported:\n${trace}`).toBeLessThan(rv(moving));
    expect(rv(moving), `Moving comes before the new tier's token:\n${trace}`).toBeLessThan(rv(goldToken));
    expect(rv(goldToken), `the token is in the Secret before Ready=True:\n${trace}`).toBeLessThan(rv(readyGold));
    // Never a gold token before the silver one was revoked.
    expect(all.filter((e) => e.what === `secret token=${goldNs}` && e.rv < rv(anchorGone)), trace).toEqual([]);
    expect(serviceAccountUser(goldNs, after.client.status?.serviceAccount?.name as string)).toBe((await review(after.token as string, [goldAud])).username);
  });
});
