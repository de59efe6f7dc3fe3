/**
 * Issue 9, item 2: the races between the operator's caches and the API server, made to happen every
 * time. The client reconciler is driven step by step (support/in-process.ts) against the real API
 * server, and a reconcile is handed a cache view frozen at the moment the race needs.
 *
 * 1. A ServiceAccount is never deleted under a client that uses it: client Y of user u starts using
 *    u's ServiceAccount while client X of u is being deleted, and X's finalizer runs from caches
 *    that do not show Y's use yet (the clients cache without Y's status; the ServiceAccount cache
 *    before Y's record of use). Y's token must keep working.
 * 2. Finalize sees every anchor it created: an anchor made just before the deletion, which the
 *    Secret cache does not show yet, is not left behind.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestNamespace } from '../support/cluster.ts';
import {
  R,
  RUN_LABEL,
  anchorsOf,
  createTier,
  fingerprint,
  kube,
  review,
  secretNameOf,
  startOperator,
  tierNamespace,
  tokenOf,
  waitForTierReady,
  type Client,
  type KObject,
  type OperatorProcess,
  type Secret,
} from '../support/operator.ts';
import { startInProcess, type InProcess } from './support/in-process.ts';
import { useAnnotation } from '../../../src/policy/service-account-use.ts';
import type { ServiceAccountClient } from '../../../src/api/index.ts';
import type { ServiceAccount } from '../../../src/reconcilers/context.ts';

let op: OperatorProcess;
let ip: InProcess;
let ns: string;
let tier: string;
let tierNs: string;
let labels: Record<string, string>;
const AUD = 'races-gateway';
const USER = 'race-user@example.com';

const isReady = (c: ServiceAccountClient | undefined) => c !== undefined && c.status?.conditions?.find((x) => x.type === 'Ready')?.status === 'True';

async function tokenOfClient(name: string): Promise<string | undefined> {
  const client = await kube.get<Client>(R.client, ns, name);
  return tokenOf(await kube.tryGet<Secret>(R.secret, ns, secretNameOf(client)));
}

beforeAll(async () => {
  op = await startOperator({ name: 'races' });
  ns = await createTestNamespace('races');
  tier = (await createTier(op, 'race', { level: 10, default: false, groups: ['racers'], token: { audiences: [AUD] } })).metadata.name;
  await waitForTierReady(tier);
  tierNs = tierNamespace(op, tier);
  // This instance's clients: a label the operator process does not select.
  labels = { [RUN_LABEL]: `${op.prefix}-ip` };
  ip = await startInProcess({ tierSelector: op.selector, selector: `${RUN_LABEL}=${op.prefix}-ip`, namespacePrefix: op.namespacePrefix });
});

afterAll(async () => {
  // Nothing reconciles this instance's clients once it stops: strip the finalizers, then delete.
  for (const c of await kube.list<Client>(R.client, ns, { labelSelector: `${RUN_LABEL}=${op.prefix}-ip` }).catch(() => [])) {
    await kube.patch(R.client, ns, c.metadata.name, { metadata: { finalizers: null } }).catch(() => undefined);
    await kube.remove(R.client, ns, c.metadata.name).catch(() => undefined);
  }
  await ip?.stop();
});

describe('a ServiceAccount is never deleted under a client that uses it', () => {
  it('X deleted while Y of the same user starts using the ServiceAccount: X finalizes from caches without Y, and Y keeps a working token', async () => {
    // The subject's groups qualify it for the tier.
    await kube.create<Client>(R.client, ns, { apiVersion: 'tokenwarden.io/v1alpha1', kind: 'ServiceAccountClient', metadata: { name: 'x', namespace: ns, labels }, spec: { subject: { user: USER, groups: ['racers'] } } });
    await ip.waitForCache((o) => o.caches.clients.get(ns, 'x') !== undefined);
    await ip.settle(`${ns}/x`, isReady);
    const x = ip.op.caches.clients.get(ns, 'x') as ServiceAccountClient;
    const sa = x.status?.serviceAccount;
    expect(sa?.namespace).toBe(tierNs);

    // What the caches show before Y does anything: the ServiceAccount without Y's record.
    await kube.create<Client>(R.client, ns, { apiVersion: 'tokenwarden.io/v1alpha1', kind: 'ServiceAccountClient', metadata: { name: 'y', namespace: ns, labels }, spec: { subject: { user: USER, groups: ['racers'] } } });
    await ip.waitForCache((o) => o.caches.clients.get(ns, 'y') !== undefined);
    const yBefore = ip.op.caches.clients.get(ns, 'y') as ServiceAccountClient;
    expect(yBefore.status?.serviceAccount).toBeUndefined();
    const saBefore = ip.freezeServiceAccounts();
    const saObjBefore = saBefore.get(sa?.namespace, sa?.name as string) as ServiceAccount;
    expect(saObjBefore.metadata?.annotations?.[useAnnotation(yBefore.metadata.uid as string)]).toBeUndefined();

    // Y starts using it: a token of that ServiceAccount in Y's Secret.
    await ip.settle(`${ns}/y`, isReady);
    const yToken = await tokenOfClient('y');
    expect((await review(yToken as string, [AUD])).authenticated).toBe(true);
    const y = ip.op.caches.clients.get(ns, 'y') as ServiceAccountClient;
    expect(y.status?.serviceAccount?.uid).toBe(sa?.uid);

    // X is deleted; its finalizer runs from caches that do not show Y's use: Y without status
    // (its status not seen yet), and, the harder case, the ServiceAccount as it was before Y.
    await kube.remove(R.client, ns, 'x');
    await ip.waitForCache((o) => o.caches.clients.get(ns, 'x')?.metadata.deletionTimestamp !== undefined);
    const staleClients = ip.freezeClients((objects) => objects.map((c) => (c.metadata.uid === yBefore.metadata.uid ? yBefore : c)));
    // (a) the ServiceAccount cache shows Y's record; the clients cache does not show Y's status.
    const seenRecord = ip.withCaches({ clients: staleClients });
    await ip.reconcile(`${ns}/x`, seenRecord).catch(() => undefined);
    // (b) neither cache shows Y's use: the delete, if any, carries a precondition the API server refuses.
    const stale = ip.withCaches({ clients: staleClients, serviceAccounts: saBefore });
    await ip.reconcile(`${ns}/x`, stale).catch(() => undefined);

    const account = await kube.tryGet<KObject>(R.serviceAccount, sa?.namespace, sa?.name as string);
    expect(account?.metadata?.uid, 'the ServiceAccount Y uses was deleted under it').toBe(sa?.uid);
    expect((await review(yToken as string, [AUD])).authenticated, `Y's token ${fingerprint(yToken)} stopped working`).toBe(true);

    // From fresh caches X finalizes: gone, its record removed, the ServiceAccount kept for Y.
    await ip.settle(`${ns}/x`, (c) => c === undefined);
    await ip.waitForCache((o) => o.caches.clients.get(ns, 'x') === undefined);
    const after = await kube.get<KObject>(R.serviceAccount, sa?.namespace, sa?.name as string);
    expect(after.metadata?.uid).toBe(sa?.uid);
    expect(Object.keys(after.metadata?.annotations ?? {})).toContain(useAnnotation(y.metadata.uid as string));
    expect(Object.keys(after.metadata?.annotations ?? {})).not.toContain(useAnnotation(x.metadata.uid as string));
    expect((await review(yToken as string, [AUD])).authenticated).toBe(true);

    // And the last client takes it with it.
    await kube.remove(R.client, ns, 'y');
    await ip.waitForCache((o) => o.caches.clients.get(ns, 'y')?.metadata.deletionTimestamp !== undefined);
    await ip.settle(`${ns}/y`, (c) => c === undefined);
    expect(await kube.tryGet(R.serviceAccount, sa?.namespace, sa?.name as string)).toBeNull();
  });
});

describe('the cost of recording use', () => {
  it('a first client creates the ServiceAccount with its record (no PATCH), a second client of the user writes one PATCH, a renewal none', async () => {
    const user = 'cost-user@example.com';
    const make = (name: string) =>
      kube.create<Client>(R.client, ns, { apiVersion: 'tokenwarden.io/v1alpha1', kind: 'ServiceAccountClient', metadata: { name, namespace: ns, labels }, spec: { subject: { user, groups: ['racers'] } } });
    const counts = () => ({ create: ip.requests('create serviceaccounts'), patch: ip.requests('patch serviceaccounts') });
    const start = counts();
    await make('p');
    await ip.waitForCache((o) => o.caches.clients.get(ns, 'p') !== undefined);
    await ip.settle(`${ns}/p`, isReady);
    expect(counts()).toEqual({ create: start.create + 1, patch: start.patch });
    await make('q');
    await ip.waitForCache((o) => o.caches.clients.get(ns, 'q') !== undefined);
    await ip.settle(`${ns}/q`, isReady);
    expect(counts()).toEqual({ create: start.create + 1, patch: start.patch + 1 });
    const first = ip.op.caches.clients.get(ns, 'q')?.status?.tokens?.[0]?.id;
    await kube.patch(R.client, ns, 'q', { metadata: { annotations: { 'tokenwarden.io/renew-requested-at': new Date().toISOString() } } });
    await ip.waitForCache((o) => o.caches.clients.get(ns, 'q')?.metadata.annotations?.['tokenwarden.io/renew-requested-at'] !== undefined);
    await ip.settle(`${ns}/q`, (c) => isReady(c) && c?.status?.tokens?.[0]?.id !== first);
    expect(counts()).toEqual({ create: start.create + 1, patch: start.patch + 1 });
  });
});

describe('finalize sees every anchor it created', () => {
  it('an anchor made just before the deletion, not yet in the Secret cache, is revoked with the others', async () => {
    await kube.create<Client>(R.client, ns, { apiVersion: 'tokenwarden.io/v1alpha1', kind: 'ServiceAccountClient', metadata: { name: 'z', namespace: ns, labels }, spec: { subject: { user: 'z-user@example.com', groups: ['racers'] } } });
    await ip.waitForCache((o) => o.caches.clients.get(ns, 'z') !== undefined);
    await ip.settle(`${ns}/z`, isReady);
    const z = ip.op.caches.clients.get(ns, 'z') as ServiceAccountClient;
    const uid = z.metadata.uid as string;
    const first = z.status?.tokens?.[0]?.id;
    const anchorsBefore = ip.freezeAnchors();
    expect(anchorsBefore.byIndex('clientUid', uid).map((a) => a.metadata?.name)).toEqual([first]);

    // A renewal: a second anchor and token, the first kept for the grace period.
    await kube.patch(R.client, ns, 'z', { metadata: { annotations: { 'tokenwarden.io/renew-requested-at': new Date().toISOString() } } });
    await ip.waitForCache((o) => o.caches.clients.get(ns, 'z')?.metadata.annotations?.['tokenwarden.io/renew-requested-at'] !== undefined);
    await ip.reconcile(`${ns}/z`);
    const anchors = (await anchorsOf(uid)).map((a) => a.metadata.name).sort();
    expect(anchors.length).toBe(2);
    const second = anchors.find((n) => n !== first) as string;

    // Deleted; the finalizer runs from a Secret cache that shows the client's Secret as last written
    // but has not seen the second anchor yet (a watch delivers them in order; a lagging cache has
    // read up to a version before the anchor).
    await kube.remove(R.client, ns, 'z');
    await ip.waitForCache((o) => o.caches.clients.get(ns, 'z')?.metadata.deletionTimestamp !== undefined);
    await ip.waitForCache((o) => o.caches.anchors.byIndex('clientUid', uid).length === 2);
    const lagging = ip.freezeAnchors((objects) => objects.filter((s) => s.metadata?.name !== second), anchorsBefore.lastResourceVersion());
    expect(lagging.byIndex('clientUid', uid).map((x) => x.metadata?.name)).toEqual([first]);
    await ip.reconcile(`${ns}/z`, ip.withCaches({ anchors: lagging }));
    const still = await kube.tryGet<Client>(R.client, ns, 'z');
    const left = (await anchorsOf(uid)).map((a) => a.metadata.name);
    // Either the finalizer waited (the client still there with its finalizer) or it revoked both.
    if (still === null) expect(left, `anchor ${second} outlived its client`).toEqual([]);
    else expect(still.metadata.finalizers).toContain('tokenwarden.io/revoke-tokens');

    await ip.settle(`${ns}/z`, (c) => c === undefined);
    await ip.waitForCache((o) => o.caches.clients.get(ns, 'z') === undefined);
    expect(await kube.tryGet(R.client, ns, 'z')).toBeNull();
    expect((await anchorsOf(uid)).map((a) => a.metadata.name)).toEqual([]);
  });
});
