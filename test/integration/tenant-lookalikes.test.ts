/**
 * A tenant's look-alikes in her own namespace change nothing for anyone else. mallory, with `edit` in
 * her namespace only, labels a ServiceAccount there as tokenwarden's and records on it, as a client
 * would, the uids of alice's and bob's clients. The operator watches ServiceAccounts only in tier
 * namespaces, so it neither finds nor writes hers: alice's revocationEpoch raise (one TokenRequest,
 * counted: no token loop), suspension and deletion are carried out, bob's deletion too, and mallory's ServiceAccount is left exactly as she wrote it.
 *
 * Run twice: with the operator as its fenced ServiceAccount (the fence would refuse every write to
 * her ServiceAccount, and a client whose release step writes there would fail on every pass), and as
 * cluster-admin with no fence, as `make run` runs it (the operator would delete or patch her
 * ServiceAccount: a confused deputy). Every request of the users goes through their own contexts.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { instanceScope, useAnnotation } from '../../src/policy/service-account-use.ts';
import { createTestNamespace, waitFor } from './support/cluster.ts';
import {
  API_VERSION,
  MANAGED_BY,
  R,
  TIER_LABEL,
  USER_ANNOTATION,
  condition,
  createTier,
  kube,
  review,
  scopedName,
  sleep,
  startOperator,
  uniquePrefix,
  waitForClient,
  waitForClientReady,
  waitForTierReady,
  type Client,
  type ClientSpec,
  type KObject,
  type OperatorProcess,
} from './support/operator.ts';
import { asUser, grantEdit, type Answer } from './support/users.ts';
import { countedIdentity, countedRequests } from './support/writes.ts';

const ALICE = 'alice@example.com';
const BOB = 'bob@example.com';
const MALLORY = 'mallory@example.com';

function expectCreated(res: Answer, what: string): KObject {
  expect(res.code, `${what}: ${JSON.stringify(res.body.message ?? res.body)}`).toBe(201);
  return res.body;
}

for (const variant of ['fenced', 'unfenced'] as const) {
  describe(`a look-alike ServiceAccount in mallory's namespace, the operator ${variant === 'fenced' ? 'as its fenced ServiceAccount' : 'as cluster-admin without the fence (make run)'}`, () => {
    let op: OperatorProcess;
    let tokenRequests: () => Promise<number>;
    let premium: string;
    let aud: string;
    let malloryNs: string;
    let aliceNs: string;
    let bobNs: string;

    beforeAll(async () => {
      const prefix = uniquePrefix(variant === 'fenced' ? 'lookf' : 'looku');
      const identity = await countedIdentity(prefix, 'operator', { unfenced: variant === 'unfenced' });
      tokenRequests = await countedRequests(identity, `${prefix}-token-requests`, { verbs: ['create'], resources: ['serviceaccounts/token'] });
      op = await startOperator({ namespacePrefix: prefix, kubeconfig: identity.kubeconfig });
      aud = `${prefix}-gateway`;
      premium = scopedName(op, 'premium');
      await createTier(op, 'free', { level: 10, default: true, token: { audiences: [aud] } });
      await createTier(op, 'premium', { level: 20, groups: ['premium-users'], token: { audiences: [aud] } });
      [malloryNs, aliceNs, bobNs] = (await Promise.all(['mallory', 'alice', 'bob'].map((n) => createTestNamespace(`${prefix}-${n}`)))) as [string, string, string];
      await Promise.all([grantEdit(malloryNs, MALLORY), grantEdit(aliceNs, ALICE), grantEdit(bobNs, BOB), waitForTierReady(premium), waitForTierReady(scopedName(op, 'free'))]);
    });

    it('alice\'s and bob\'s clients still suspend, revoke and delete; no token loop; mallory\'s ServiceAccount is untouched', async () => {
      const clientBody = (namespace: string, name: string, spec: ClientSpec) => ({ apiVersion: API_VERSION, kind: 'ServiceAccountClient', metadata: { name, namespace, labels: { ...op.labels } }, spec });
      expectCreated(await asUser(ALICE).create(R.client, aliceNs, clientBody(aliceNs, 'notebook', { subject: { user: ALICE, groups: ['premium-users'] } })), 'alice\'s client');
      expectCreated(await asUser(BOB).create(R.client, bobNs, clientBody(bobNs, 'batch', { subject: { user: BOB } })), 'bob\'s client');
      const alice = await waitForClientReady(aliceNs, 'notebook');
      const bob = await waitForClientReady(bobNs, 'batch');
      expect(alice.client.status?.tier).toBe(premium);

      // mallory's look-alike: labelled as tokenwarden's, of alice's tier, recording both clients as users.
      const scope = instanceScope(op.selector);
      const lookalike = expectCreated(
        await asUser(MALLORY).create(R.serviceAccount, malloryNs, {
          apiVersion: 'v1',
          kind: 'ServiceAccount',
          metadata: {
            name: 'lookalike',
            labels: { [MANAGED_BY]: 'tokenwarden', [TIER_LABEL]: premium },
            annotations: {
              [USER_ANNOTATION]: ALICE,
              [useAnnotation(alice.client.metadata.uid as string)]: scope,
              [useAnnotation(bob.client.metadata.uid as string)]: scope,
            },
          },
        }),
        'mallory\'s look-alike ServiceAccount',
      );
      await sleep(2_000);

      // Every token revoked by a raised revocationEpoch: one TokenRequest for the new token, then
      // quiet. (Its release step once wrote to the look-alike: refused behind the fence after the
      // mint, and requeued by its own watch events, the operator minted and revoked dozens a second.)
      const before = await tokenRequests();
      expect((await asUser(ALICE).patch(R.client, aliceNs, 'notebook', { spec: { revocationEpoch: 1 } })).code).toBe(200);
      await sleep(8_000);
      const minted = (await tokenRequests()) - before;
      expect(minted, 'TokenRequests in the 8 s after a revocationEpoch raise').toBeLessThanOrEqual(2);
      const renewed = await waitForClientReady(aliceNs, 'notebook', { extra: (ct) => ct.token !== alice.token && ct.client.status?.revocationEpoch === 1 });
      expect(minted).toBeGreaterThanOrEqual(1);
      expect((await review(alice.token as string, [aud])).authenticated, 'the token before the revocationEpoch raise').toBe(false);
      expect((await review(renewed.token as string, [aud])).authenticated).toBe(true);

      // Suspended: the suspension is carried out and recorded (it releases the ServiceAccount).
      expect((await asUser(ALICE).patch(R.client, aliceNs, 'notebook', { spec: { suspended: true } })).code).toBe(200);
      const suspended = await waitForClient(aliceNs, 'notebook', (c) => condition(c, 'Suspended')?.status === 'True' && c.status?.observedGeneration === c.metadata.generation, {
        description: 'alice\'s client Suspended=True',
      });
      expect(condition(suspended, 'Ready')?.status).toBe('False');
      expect((await review(renewed.token as string, [aud])).authenticated, 'alice\'s token after the suspension').toBe(false);
      expect((await asUser(ALICE).patch(R.client, aliceNs, 'notebook', { spec: { suspended: false } })).code).toBe(200);
      await waitForClientReady(aliceNs, 'notebook', { extra: (ct) => ct.token !== renewed.token });

      // Deleted: the finalizer completes for both.
      expect((await asUser(BOB).remove(R.client, bobNs, 'batch')).code).toBe(200);
      expect((await asUser(ALICE).remove(R.client, aliceNs, 'notebook')).code).toBe(200);
      for (const [namespace, name] of [[bobNs, 'batch'], [aliceNs, 'notebook']] as const) {
        await waitFor(async () => (await kube.tryGet<Client>(R.client, namespace, name)) === null, { timeoutMs: 30_000, description: `${namespace}/${name} deleted` });
      }

      // mallory's ServiceAccount: never written by the operator.
      const after = await kube.get(R.serviceAccount, malloryNs, 'lookalike');
      expect(after.metadata.resourceVersion, 'mallory\'s ServiceAccount was written').toBe(lookalike.metadata.resourceVersion);
      expect(after.metadata.annotations).toEqual(lookalike.metadata.annotations);
      expect(op.logs()).not.toContain('"name":"lookalike"');
    });
  });
}
