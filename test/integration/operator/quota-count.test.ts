/**
 * What a TenantBinding's maxClients counts, on real clients that alice and bob create through their
 * own contexts, against the operator as its fenced ServiceAccount: every client of a subject the
 * binding names that holds the binding's tier in its namespace, whatever else the subject qualifies
 * for. alice qualifies for gold through her group premium-users too; once the binding's one place is
 * hers, her next client does not get gold around the quota through that group (it falls back to the
 * default tier), so the binding's count and the clients holding gold agree.
 */
import https from 'node:https';
import { beforeAll, describe, expect, it } from 'vitest';
import { API_VERSION } from '../../../src/api/index.ts';
import { createTestNamespace, userKubeConfig, waitFor } from '../support/cluster.ts';
import { adminRequest } from '../support/crds.ts';
import {
  R,
  condition,
  createBinding,
  createTier,
  getClient,
  kube,
  resourcePath,
  startOperator,
  waitForTierReady,
  type Client,
  type OperatorProcess,
  type TenantBinding,
} from '../support/operator.ts';

const ALICE = 'alice@example.com';
const BOB = 'bob@example.com';

let op: OperatorProcess;
let ns: string;
let gold: string;
let free: string;

/** Creates a client with the user's own credentials (the subject admission policy sees them ask). */
async function createAs(user: string, name: string, groups: string[]): Promise<void> {
  const kc = userKubeConfig(user);
  const opts: https.RequestOptions = { method: 'POST', timeout: 30_000, headers: { Accept: 'application/json', 'Content-Type': 'application/json' } };
  await kc.applyToHTTPSOptions(opts);
  const body = { apiVersion: API_VERSION, kind: 'ServiceAccountClient', metadata: { name, namespace: ns, labels: { ...op.labels } }, spec: { subject: { user, groups } } };
  const code = await new Promise<number>((resolve, reject) => {
    const req = https.request(new URL(resourcePath(R.client, ns), kc.getCurrentCluster()?.server), opts, (res) => {
      res.resume().on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
  expect(code, `${user} creates ${name}`).toBe(201);
}

/** The client once the operator resolved it at its current generation. */
const resolved = (name: string, pred: (c: Client) => boolean = () => true) =>
  waitFor(
    async () => {
      const c = await getClient(ns, name);
      return c.status?.observedGeneration === c.metadata.generation && condition(c, 'TierResolved') && pred(c) ? c : undefined;
    },
    { timeoutMs: 30_000, description: `${name} resolved` },
  );

beforeAll(async () => {
  op = await startOperator({ name: 'qcount' });
  ns = await createTestNamespace(`${op.prefix}-quota`);
  for (const user of [ALICE, BOB]) {
    await kube.create(R.roleBinding, ns, {
      metadata: { name: `${user.split('@')[0]}-edit` },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'edit' },
      subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: user }],
    });
  }
  gold = (await createTier(op, 'gold', { level: 50, groups: ['premium-users'] })).metadata.name;
  free = (await createTier(op, 'free', { level: 10, default: true })).metadata.name;
  await createBinding(op, ns, 'gold-one', { tierRef: { name: gold }, subjects: [{ kind: 'User', name: ALICE }, { kind: 'User', name: BOB }], maxClients: 1 });
  await Promise.all([
    waitForTierReady(gold),
    waitForTierReady(free),
    ...[ALICE, BOB].map((user) =>
      waitFor(async () => {
        const res = await adminRequest<{ status?: { allowed?: boolean } }>('POST', '/apis/authorization.k8s.io/v1/subjectaccessreviews', {
          apiVersion: 'authorization.k8s.io/v1',
          kind: 'SubjectAccessReview',
          spec: { user, groups: ['system:authenticated'], resourceAttributes: { verb: 'create', group: 'tokenwarden.io', resource: 'serviceaccountclients', namespace: ns } },
        });
        return res.body.status?.allowed === true;
      }, { description: `${user} may create clients` }),
    ),
  ]);
}, 120_000);

describe('maxClients counts every client of the subjects it names that holds its tier', () => {
  it('alice, who also qualifies for gold by group, takes the one place; her next client does not get gold around the quota; the count and the holders agree', async () => {
    // alice's own groups: premium-users (gold's group) and ml-engineers.
    await createAs(ALICE, 'a1', ['premium-users', 'ml-engineers']);
    const a1 = await resolved('a1', (c) => c.status?.tier === gold);
    expect(a1.status?.tierReason).toBe('TenantBinding/gold-one');
    await createAs(ALICE, 'a2', ['premium-users', 'ml-engineers']);
    await createAs(BOB, 'b1', ['free-users']);
    const [a2, b1] = await Promise.all([resolved('a2'), resolved('b1')]);
    // Before, a2 got gold through premium-users, uncounted, while a1 held the binding's place.
    expect(a2.status?.tier).toBe(free);
    expect(a2.status?.tierReason).toBe('Default');
    expect(condition(a2, 'TierResolved')?.message).toContain('TenantBinding gold-one allows 1 client(s) and they are taken');
    expect(b1.status?.tier).toBe(free);
    const holdingGold = (await kube.list<Client>(R.client, ns)).filter((c) => c.status?.tier === gold).map((c) => c.metadata.name);
    expect(holdingGold).toEqual(['a1']);
    const binding = await waitFor(async () => {
      const b = await kube.get<TenantBinding>(R.binding, ns, 'gold-one');
      return b.status?.clients === 1 ? b : undefined;
    }, { description: 'gold-one counts 1 client' });
    expect(binding.spec.maxClients).toBe(1);

    // The place freed, the oldest waiting client of the binding's subjects takes it.
    await kube.remove(R.client, ns, 'a1');
    const promoted = await resolved('a2', (c) => c.status?.tier === gold);
    expect(promoted.status?.tierReason).toBe('TenantBinding/gold-one');
    expect((await getClient(ns, 'b1')).status?.tier).toBe(free);
  });

  it('someone the binding does not name is neither counted nor limited by it', async () => {
    // The admin declares carol (premium-users) here: gold through its group, not through gold-one.
    await kube.create(R.client, ns, { apiVersion: API_VERSION, kind: 'ServiceAccountClient', metadata: { name: 'c1', namespace: ns, labels: { ...op.labels } }, spec: { subject: { user: 'carol@example.com', groups: ['premium-users'] } } });
    const c1 = await resolved('c1', (c) => c.status?.tier === gold);
    expect(c1.status?.tierReason).toBe(`Tier/${gold}`);
    expect((await kube.get<TenantBinding>(R.binding, ns, 'gold-one')).status?.clients).toBe(1);
  });
});
