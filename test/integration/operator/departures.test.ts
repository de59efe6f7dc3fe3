/**
 * Issue 9, item 4: a tier move revokes the old tokens at once. After a Tier edit moves clients off a
 * tier, that tier's departures (src/reconcilers/departures.ts) delete their anchors together, in
 * one `deletecollection` request, instead of each client waiting for its turn in the queue; the
 * clients that stay keep their tokens. When the API server refuses the bulk request, every client
 * still revokes its own old tokens, the Tier says why in a Warning Event, and the bulk request backs
 * off instead of looping.
 *
 * The operator runs as a ServiceAccount with the manifests' RBAC (support/writes.ts), so the verb
 * is shown to be granted; a FlowSchema of this file counts that identity's deletecollections.
 * Tokens are compared by fingerprint only.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestNamespace, waitFor } from '../support/cluster.ts';
import {
  R,
  anchorsOf,
  condition,
  createClient,
  createTier,
  kube,
  request,
  resourcePath,
  review,
  sleep,
  startOperator,
  tierEvents,
  tierNamespace,
  uniquePrefix,
  waitForClient,
  waitForClientReady,
  waitForTierReady,
  waitForTokenToFail,
  type ClientToken,
  type OperatorProcess,
} from '../support/operator.ts';
import { countedIdentity, countedRequests } from '../support/writes.ts';
import { createRefusalPolicy, removeRefusalPolicy } from './support/refusal-policy.ts';


const prefix = uniquePrefix('depart');
const MOVERS = ['m1', 'm2', 'm3', 'm4', 'm5'];
let op: OperatorProcess;
let ns: string;
let aud: string;
let moveGroup: string;
let stayGroup: string;
let low: string;
let high: string;
/** deletecollections of Secrets the operator's identity sent since kube-apiserver started. */
let deleteCollections: () => Promise<number>;
const policies: string[] = [];

beforeAll(async () => {
  const identity = await countedIdentity(prefix);
  deleteCollections = await countedRequests(identity, `${prefix}-deletecollections`, { verbs: ['deletecollection'], resources: ['secrets'] });
  op = await startOperator({ namespacePrefix: prefix, kubeconfig: identity.kubeconfig });
  ns = await createTestNamespace(`${prefix}-team`);
  aud = `${prefix}-gateway`;
  moveGroup = `${prefix}-movers`;
  stayGroup = `${prefix}-stayers`;
  low = (await createTier(op, 'low', { level: 10, groups: [moveGroup, stayGroup], token: { audiences: [aud] } })).metadata.name;
  high = (await createTier(op, 'high', { level: 20, groups: [], token: { audiences: [aud] } })).metadata.name;
  await Promise.all([low, high].map((t) => waitForTierReady(t)));
  for (const name of MOVERS) await createClient(op, ns, name, { subject: { user: `${name}@${prefix}.example.com`, groups: [moveGroup] } });
  await createClient(op, ns, 'stays', { subject: { user: `stays@${prefix}.example.com`, groups: [stayGroup] } });
  await Promise.all([...MOVERS, 'stays'].map((name) => waitForClientReady(ns, name, { extra: (ct) => ct.client.status?.tier === low })));
});

afterAll(async () => {
  for (const name of policies) {
    await removeRefusalPolicy(name);
  }
});

const onTier = (tier: string) => (ct: ClientToken) => ct.client.status?.tier === tier;

async function tokensOf(tier: string): Promise<Map<string, ClientToken>> {
  const entries = await Promise.all(MOVERS.map(async (name) => [name, await waitForClientReady(ns, name, { extra: onTier(tier) })] as const));
  return new Map(entries);
}

/** Every old token fails TokenReview; returns how long the slowest took from `since`. */
async function allFail(tokens: Map<string, ClientToken>, since: number, timeoutMs: number): Promise<number> {
  const took = await Promise.all([...tokens].map(([name, ct]) => waitForTokenToFail(ct.token as string, [aud], { since, timeoutMs, what: `${name}'s old token` })));
  return Math.max(...took);
}

/** A policy refusing every deletecollection of Secrets in `namespace`. */
async function refuseDeleteCollections(namespace: string, message: string): Promise<void> {
  const name = `${prefix}-refuse-deletecollection`;
  // A deletecollection's items come to admission without a name.
  await createRefusalPolicy({ name, namespace, operation: 'DELETE', resource: 'secrets', allowIf: "has(request.name) && request.name != ''", message });
  policies.push(name);
  // In effect once the admin's own deletecollection of a probe Secret there is refused (policies are
  // compiled asynchronously after the create).
  const probe = { apiVersion: 'v1', kind: 'Secret', metadata: { name: `${prefix}-probe`, labels: { [`${prefix}-probe`]: 'yes' } }, type: 'Opaque' };
  await kube.create(R.secret, namespace, probe);
  await waitFor(
    async () => {
      try {
        await request('DELETE', `${resourcePath(R.secret, namespace)}?labelSelector=${encodeURIComponent(`${prefix}-probe=yes`)}`);
        await kube.create(R.secret, namespace, probe);
        return undefined;
      } catch (err) {
        if (String(err).includes(message)) return true;
        throw err;
      }
    },
    { timeoutMs: 30_000, description: `the policy ${name} refusing deletecollections in ${namespace}` },
  );
  await kube.remove(R.secret, namespace, probe.metadata.name);
}

describe('departures: the clients a Tier edit moves lose their old tokens at once', () => {
  it('one deletecollection revokes the old tokens of all five movers; the client that stays keeps its token', async () => {
    const old = await tokensOf(low);
    const stays = await waitForClientReady(ns, 'stays');
    const staysAnchors = (await anchorsOf(stays.client.metadata.uid as string)).map((a) => a.metadata.uid).sort();
    const before = await deleteCollections();
    const since = Date.now();

    await kube.patch(R.tier, undefined, high, { spec: { groups: [moveGroup] } });

    await allFail(old, since, 20_000);
    await Promise.all(MOVERS.map((name) => waitForClientReady(ns, name, { extra: onTier(high) })));
    expect(await deleteCollections(), 'one deletecollection for the five movers').toBe(before + 1);
    const revoked = await waitFor(async () => (await tierEvents(low)).find((e) => e.reason === 'TokensRevoked'), { timeoutMs: 10_000, description: 'TokensRevoked on the old tier' });
    expect(revoked.type).toBe('Normal');
    expect(revoked.note).toContain(`revoked the tokens of ${MOVERS.length} client(s) that left tier ${low}`);

    const after = await waitForClientReady(ns, 'stays');
    expect(after.client.status?.tier).toBe(low);
    expect((await review(stays.token as string, [aud])).authenticated, 'the token of the client that stays still works').toBe(true);
    expect((await anchorsOf(stays.client.metadata.uid as string)).map((a) => a.metadata.uid).sort()).toEqual(staysAnchors);
  });

  it('refused: each client revokes its own old tokens, the Tier says why, and the bulk request backs off', async () => {
    const old = await tokensOf(high);
    const message = `${prefix}: no bulk deletes in ${tierNamespace(op, high)}`;
    await refuseDeleteCollections(tierNamespace(op, high), message);
    const before = await deleteCollections();
    const since = Date.now();

    // Low now outranks high: the movers (in both tiers' groups) go back; "stays" does not move.
    await kube.patch(R.tier, undefined, low, { spec: { level: 30 } });

    await allFail(old, since, 30_000);
    for (const name of MOVERS) {
      const moved = await waitForClient(ns, name, (c) => c.status?.tier === low && condition(c, 'Ready')?.status === 'True', { timeoutMs: 30_000, description: `${name} Ready on ${low}` });
      expect(moved.status?.serviceAccount?.namespace).toBe(tierNamespace(op, low));
    }
    const deferred = await waitFor(async () => (await tierEvents(high)).find((e) => e.reason === 'RevocationDeferred'), { timeoutMs: 10_000, description: 'RevocationDeferred on the tier' });
    expect(deferred.type).toBe('Warning');
    expect(deferred.note).toContain(message);
    expect(deferred.note).toContain('each client revokes its own');

    // Once the clients have revoked their own, the departures find nothing left: no more requests.
    await sleep(3_000);
    const settled = await deleteCollections();
    expect(settled - before, 'the refused bulk request is retried a few times at most, with backoff').toBeGreaterThanOrEqual(1);
    expect(settled - before).toBeLessThanOrEqual(8);
    await sleep(10_000);
    expect(await deleteCollections(), 'no deletecollection once nothing is left to revoke').toBe(settled);
  });
});
