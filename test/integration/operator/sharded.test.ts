/**
 * Issue 9, item 2: every sweep and release respects `--selector`. Two operators with disjoint
 * selectors for clients share one Tier (both selectors match it) and one namespace prefix, so the
 * same tier namespace; a client of each, for the same user, shares that user's ServiceAccount.
 *
 * Neither revokes the other's tokens (the Tier sweep only judges anchors of its own scope), neither
 * deletes the shared ServiceAccount while the other's client uses it (records of use), and the Tier
 * is managed by one of them (its namespace names that instance's scope): one writer of Tier status,
 * which counts the other instance's clients too.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { createTestNamespace, waitFor } from '../support/cluster.ts';
import {
  R,
  RUN_LABEL,
  anchorsOf,
  createTier,
  fingerprint,
  getTier,
  kube,
  review,
  sleep,
  startOperator,
  tierNamespace,
  uniquePrefix,
  waitForClientReady,
  waitForTierReady,
  type Client,
  type KObject,
  type OperatorProcess,
} from '../support/operator.ts';
import { instanceScope } from '../../../src/policy/service-account-use.ts';

const SHARD = 'tokenwarden.io/shard';
const AUD = 'sharded-gateway';
const USER = 'shared-user@example.com';
let a: OperatorProcess;
let b: OperatorProcess;
let selectorA: string;
let selectorB: string;
let ns: string;
let tier: string;
let tierNs: string;

beforeAll(async () => {
  const prefix = uniquePrefix('shard');
  selectorA = `${RUN_LABEL}=${prefix},${SHARD}!=b`;
  selectorB = `${RUN_LABEL}=${prefix},${SHARD}!=a`;
  a = await startOperator({ namespacePrefix: prefix, extraArgs: ['--selector', selectorA] });
  b = await startOperator({ namespacePrefix: prefix, extraArgs: ['--selector', selectorB] });
  ns = await createTestNamespace('sharded');
  tier = (await createTier(a, 'shared', { level: 10, groups: ['sharers'], token: { audiences: [AUD] } })).metadata.name;
  await waitForTierReady(tier);
  tierNs = tierNamespace(a, tier);
});

async function createShardClient(name: string, shard: string): Promise<void> {
  await kube.create<Client>(R.client, ns, {
    apiVersion: 'tokenwarden.io/v1alpha1',
    kind: 'ServiceAccountClient',
    metadata: { name, namespace: ns, labels: { ...a.labels, [SHARD]: shard } },
    spec: { subject: { user: USER, groups: ['sharers'] } },
  });
}

describe('two operators with disjoint selectors sharing a Tier', () => {
  it("leave each other's tokens, anchors and the shared ServiceAccount alone; one of them manages the Tier", async () => {
    expect(a.running() && b.running()).toBe(true);
    await createShardClient('of-a', 'a');
    await createShardClient('of-b', 'b');
    const ca = await waitForClientReady(ns, 'of-a');
    const cb = await waitForClientReady(ns, 'of-b');
    const sa = ca.client.status?.serviceAccount;
    expect(sa?.namespace).toBe(tierNs);
    expect(cb.client.status?.serviceAccount?.uid).toBe(sa?.uid);

    // Both instances reconcile the Tier (a touch wakes both) and sweep its namespace.
    await kube.patch(R.tier, undefined, tier, { metadata: { labels: { 'tokenwarden.io/touched': '1' } } });
    await sleep(4000);
    for (const [ct, what] of [[ca, 'of-a'], [cb, 'of-b']] as const) {
      expect((await review(ct.token as string, [AUD])).authenticated, `${what}'s token ${fingerprint(ct.token)} was revoked by the other instance`).toBe(true);
      const anchors = (await anchorsOf(ct.client.metadata.uid as string)).map((x) => x.metadata.name);
      expect(anchors).toContain(ct.client.status?.tokens?.[0]?.id);
    }

    // One manager: the tier namespace names its scope; it alone writes Tier status, counting both clients.
    const managers = [instanceScope(selectorA), instanceScope(selectorB)];
    const tns = await kube.get<KObject>(R.namespace, undefined, tierNs);
    expect(managers).toContain(tns.metadata.annotations?.['tokenwarden.io/managed-by-scope']);
    await waitFor(async () => (await getTier(tier)).status?.clients === 2, { timeoutMs: 10_000, description: 'Tier status.clients 2 (both instances)' });
    const rv = (await getTier(tier)).metadata.resourceVersion;
    await sleep(3000);
    expect((await getTier(tier)).metadata.resourceVersion, 'the Tier keeps changing: two writers of its status').toBe(rv);

    // A's client goes: A releases the ServiceAccount, which B's client still uses.
    await kube.remove(R.client, ns, 'of-a');
    await waitFor(async () => (await kube.tryGet(R.client, ns, 'of-a')) === null, { timeoutMs: 15_000, description: 'of-a gone' });
    await sleep(2000);
    const account = await kube.tryGet<KObject>(R.serviceAccount, sa?.namespace, sa?.name as string);
    expect(account?.metadata.uid, 'the ServiceAccount of-b uses was deleted by the other instance').toBe(sa?.uid);
    expect((await review(cb.token as string, [AUD])).authenticated).toBe(true);

    // B's client goes too: the last user, so the ServiceAccount goes with it.
    await kube.remove(R.client, ns, 'of-b');
    await waitFor(async () => (await kube.tryGet(R.serviceAccount, sa?.namespace, sa?.name as string)) === null, { timeoutMs: 15_000, description: 'the ServiceAccount deleted with its last client' });
  });
});
