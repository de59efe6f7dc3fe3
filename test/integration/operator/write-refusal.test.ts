/**
 * A write refused after the TokenRequest never loops, and never keeps a client from being revoked,
 * suspended or deleted.
 *
 * The API server refuses the operator's writes the real way: an admin's ValidatingAdmissionPolicy
 * (support/refusal-policy.ts) refusing the client's token Secret, or a ServiceAccount in the tier
 * namespace that records the client's use; and, as a tenant would arrange it, a look-alike
 * ServiceAccount mallory makes in her own namespace naming alice's client, whose release the
 * operator's fence refuses. The operator runs as a ServiceAccount of its own with the manifests'
 * RBAC and fence (support/writes.ts), its TokenRequests counted by a FlowSchema of that identity;
 * with TOKENWARDEN_TEST_AS_SERVICE_ACCOUNT=0 the same identity is a cluster admin, unfenced, as
 * `make run` runs it.
 *
 * Before the write failures were recorded, each refused write threw out of the reconcile with status
 * unwritten; the operator's own Secret and anchor writes echoed back through its informers and
 * brought the next pass forward at once, and a raised revocationEpoch (never recorded as carried
 * out) minted again on every pass: tens of TokenRequests a second.
 *
 * Users act through their own contexts (alice edits her namespace, mallory hers); tokens are
 * compared by fingerprint, never printed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KubeClient } from '../../../src/kube/client.ts';
import { SERVICE_ACCOUNT_CLIENTS, SERVICE_ACCOUNTS } from '../../../src/kube/resources.ts';
import { useAnnotation, instanceScope } from '../../../src/policy/service-account-use.ts';
import { createTestNamespace, userKubeConfig, waitFor } from '../support/cluster.ts';
import { adminRequest } from '../support/crds.ts';
import {
  API_VERSION,
  MANAGED_BY,
  R,
  TIER_LABEL,
  TOKEN_SECRET_TYPE,
  USER_ANNOTATION,
  anchorsOf,
  clientEvents,
  condition,
  createTier,
  fingerprint,
  kube,
  readClientToken,
  review,
  sleep,
  startOperator,
  tierNamespace,
  uniquePrefix,
  waitForClient,
  waitForClientReady,
  waitForTierReady,
  type Client,
  type OperatorProcess,
} from '../support/operator.ts';
import { asServiceAccount } from '../support/rbac.ts';
import { createRefusalPolicy, removeRefusalPolicy } from './support/refusal-policy.ts';
import { countedTokenRequests } from './support/token-request-refusal.ts';

type FailingClient = Client & { status?: Client['status'] & { failedAttempts?: number; lastFailureTime?: string } };

const ALICE = 'alice@example.com';
const MALLORY = 'mallory@example.com';
const GROUP = 'ml-engineers';
/**
 * TokenRequests allowed in WINDOW_MS. A refused Secret: the raise at 0 s tries at once, then 5 s
 * and 10 s later (0, 5, 15 s); the raise at 12 s starts over (12, 17, 27 s): 5, one more for a slow
 * machine. A hot loop sends hundreds.
 */
const WINDOW_MS = 30_000;
const MAX_IN_WINDOW = 6;

const prefix = uniquePrefix('wref');
const fenced = asServiceAccount();
let op: OperatorProcess;
let tokenRequests: () => Promise<number>;
let ns: string;
let malloryNs: string;
let aud: string;
let tierName: string;
let tierNs: string;
let asAlice: KubeClient;
let asMallory: KubeClient;
const policies: string[] = [];

async function mayEdit(user: string, namespace: string): Promise<void> {
  await kube.create(R.roleBinding, namespace, {
    metadata: { name: `${user.split('@')[0]}-edit` },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'edit' },
    subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: user }],
  });
  await waitFor(async () => {
    const res = await adminRequest<{ status?: { allowed?: boolean } }>('POST', '/apis/authorization.k8s.io/v1/subjectaccessreviews', {
      apiVersion: 'authorization.k8s.io/v1',
      kind: 'SubjectAccessReview',
      spec: { user, groups: ['system:authenticated'], resourceAttributes: { verb: 'patch', group: 'tokenwarden.io', resource: 'serviceaccountclients', namespace } },
    });
    return res.body.status?.allowed === true;
  }, { description: `${user} may edit clients in ${namespace}` });
}

beforeAll(async () => {
  const counter = await countedTokenRequests(prefix);
  tokenRequests = () => counter.tokenRequests();
  op = await startOperator({ namespacePrefix: prefix, kubeconfig: counter.identity.kubeconfig });
  ns = await createTestNamespace(`${prefix}-alice`);
  malloryNs = await createTestNamespace(`${prefix}-mallory`);
  aud = `${prefix}-gateway`;
  await mayEdit(ALICE, ns);
  await mayEdit(MALLORY, malloryNs);
  asAlice = new KubeClient(userKubeConfig(ALICE));
  asMallory = new KubeClient(userKubeConfig(MALLORY));
  const tier = await createTier(op, 'w', { level: 10, groups: [GROUP], token: { audiences: [aud], gracePeriod: '30s' } });
  tierName = tier.metadata.name;
  tierNs = tierNamespace(op, tierName);
  await waitForTierReady(tierName);
}, 120_000);

afterAll(async () => {
  for (const name of policies) await removeRefusalPolicy(name);
  await asAlice?.close();
  await asMallory?.close();
});

/** alice creates a client for herself, through her own context. */
async function aliceCreates(name: string): Promise<Client> {
  await asAlice.create(SERVICE_ACCOUNT_CLIENTS, ns, {
    apiVersion: API_VERSION,
    kind: 'ServiceAccountClient',
    metadata: { name, labels: { ...op.labels } },
    spec: { subject: { user: ALICE, groups: [GROUP] }, tierRef: { name: tierName } },
  } as never);
  return (await waitForClientReady(ns, name)).client;
}

const aliceEdits = (name: string, spec: Record<string, unknown>) => asAlice.patch(SERVICE_ACCOUNT_CLIENTS, ns, name, { spec });

/** A policy of the admin, in effect once `probe` is refused with its message. */
async function refuse(p: Parameters<typeof createRefusalPolicy>[0], probe: () => Promise<unknown>): Promise<void> {
  await createRefusalPolicy(p);
  policies.push(p.name);
  await waitFor(async () => {
    try {
      await probe();
      return undefined;
    } catch (err) {
      return String(JSON.stringify(err)).includes(p.message) || String(err).includes(p.message) ? true : undefined;
    }
  }, { timeoutMs: 30_000, description: `policy ${p.name} in effect` });
}

const readyOf = (c: Client) => condition(c, 'Ready');
const failing = (c: Client) => c as FailingClient;

describe(`a write refused after the TokenRequest (operator ${fenced ? 'fenced' : 'unfenced, as make run'})`, () => {
  it('a refused ServiceAccount release: revocations, suspension and deletion are carried out, status says WriteFailed naming it, TokenRequests stay bounded, and it recovers', async () => {
    const client = await aliceCreates('sa-refused');
    const other = await aliceCreates('sa-gone');
    const uid = client.metadata.uid as string;
    const otherUid = other.metadata.uid as string;
    // A ServiceAccount in the tier namespace recording both clients' use (and another instance's):
    // giving it up is a PATCH removing the client's record, which the admin's policy refuses.
    await kube.create(R.serviceAccount, tierNs, {
      metadata: {
        name: 'stale',
        labels: { [MANAGED_BY]: 'tokenwarden', [TIER_LABEL]: tierName },
        annotations: {
          [USER_ANNOTATION]: `nobody@${prefix}.example.com`,
          [useAnnotation(uid)]: instanceScope(op.selector),
          [useAnnotation(otherUid)]: instanceScope(op.selector),
          [useAnnotation('00000000-0000-0000-0000-000000000000')]: 'other-instance',
        },
      },
    });
    const message = `${prefix}: ServiceAccount stale is frozen`;
    await refuse(
      { name: `${prefix}-sa`, namespace: tierNs, operation: ['UPDATE', 'DELETE'], resource: 'serviceaccounts', allowIf: "request.name != 'stale'", message },
      () => kube.patch(R.serviceAccount, tierNs, 'stale', { metadata: { labels: { probe: String(Date.now()) } } }),
    );

    const old = await readClientToken(ns, 'sa-refused');
    const before = await tokenRequests();
    const started = Date.now();
    await aliceEdits('sa-refused', { revocationEpoch: 1 });
    const failed = failing(await waitForClient(ns, 'sa-refused', (c) => readyOf(c)?.reason === 'WriteFailed' && c.status?.revocationEpoch === 1, {
      timeoutMs: 20_000,
      description: 'Ready=False WriteFailed with the revocation recorded',
    }));
    expect(readyOf(failed)?.status).toBe('False');
    expect(readyOf(failed)?.message).toContain(`ServiceAccount ${tierNs}/stale`);
    expect(readyOf(failed)?.message).toContain(message);
    expect(failed.status?.failedAttempts).toBeGreaterThanOrEqual(1);
    // The revocation was carried out, and the fresh token was delivered.
    expect((await review(old.token as string, old.audiences)).authenticated, 'the revoked token').toBe(false);
    const fresh = await readClientToken(ns, 'sa-refused');
    expect(fingerprint(fresh.token)).not.toBe(fingerprint(old.token));
    expect((await review(fresh.token as string, fresh.audiences)).authenticated, 'the fresh token').toBe(true);
    await waitFor(async () => ((await clientEvents(ns, 'sa-refused')).some((e) => e.type === 'Warning' && e.reason === 'WriteFailed' && e.note?.includes(`ServiceAccount ${tierNs}/stale`)) ? true : undefined), {
      timeoutMs: 10_000,
      description: 'a Warning WriteFailed Event naming the ServiceAccount',
    });

    // Raised again while still refused: one more TokenRequest, not a loop.
    await sleep(Math.max(0, started + 12_000 - Date.now()));
    const second = await readClientToken(ns, 'sa-refused');
    await aliceEdits('sa-refused', { revocationEpoch: 2 });
    await waitForClient(ns, 'sa-refused', (c) => c.status?.revocationEpoch === 2, { timeoutMs: 15_000, description: 'revocationEpoch 2 carried out' });
    expect((await review(second.token as string, second.audiences)).authenticated, 'the token revoked by the second raise').toBe(false);
    await sleep(Math.max(0, started + WINDOW_MS - Date.now()));
    const sent = (await tokenRequests()) - before;
    console.log(`refused ServiceAccount release (${fenced ? 'fenced' : 'unfenced'}): ${sent} TokenRequests in ${WINDOW_MS / 1000}s`);
    expect(sent, `TokenRequests in ${WINDOW_MS / 1000}s while the release is refused`).toBeGreaterThanOrEqual(2);
    expect(sent, `TokenRequests in ${WINDOW_MS / 1000}s while the release is refused`).toBeLessThanOrEqual(MAX_IN_WINDOW);
    const during = failing(await waitForClient(ns, 'sa-refused', (c) => readyOf(c)?.reason === 'WriteFailed', { description: 'still WriteFailed' }));
    expect(during.status?.failedAttempts ?? 0, 'attempts at the release, by the backoff').toBeLessThanOrEqual(5);

    // Suspension while refused: every token revoked, the Secret emptied, status says both.
    const current = await readClientToken(ns, 'sa-refused');
    await aliceEdits('sa-refused', { suspended: true });
    const suspended = await waitForClient(ns, 'sa-refused', (c) => condition(c, 'Suspended')?.status === 'True', { timeoutMs: 15_000, description: 'Suspended=True' });
    expect(readyOf(suspended)?.status).toBe('False');
    expect((await readClientToken(ns, 'sa-refused')).token, 'the Secret holds no token').toBeUndefined();
    expect((await review(current.token as string, current.audiences)).authenticated, 'the suspended token').toBe(false);

    // Deletion while refused: finalized, tokens revoked.
    await asAlice.delete(SERVICE_ACCOUNT_CLIENTS, ns, 'sa-gone');
    await waitFor(async () => ((await kube.tryGet(R.client, ns, 'sa-gone')) === null ? true : undefined), { timeoutMs: 20_000, description: 'sa-gone deleted' });
    expect(await anchorsOf(otherUid), 'the deleted client\'s tokens are revoked').toEqual([]);

    // The admin lifts the policy: the next attempt the backoff allows releases the ServiceAccount.
    await removeRefusalPolicy(`${prefix}-sa`);
    const recovered = failing(await waitForClient(ns, 'sa-refused', (c) => readyOf(c)?.reason === 'Suspended' && failing(c).status?.failedAttempts === undefined, {
      timeoutMs: 90_000,
      description: 'suspended, with no failure on record',
    }));
    expect(recovered.status?.lastFailureTime).toBeUndefined();
    const stale = await kube.get(R.serviceAccount, tierNs, 'stale');
    expect(stale.metadata.annotations?.[useAnnotation(uid)], 'the record of use removed').toBeUndefined();
    await aliceEdits('sa-refused', { suspended: false });
    await waitForClientReady(ns, 'sa-refused', { timeoutMs: 30_000 });
  });

  it('a refused write of the token Secret: IssuanceFailed naming it, a revocation still carried out, bounded TokenRequests, recovery', async () => {
    await aliceCreates('secret-refused');
    // A token Secret of the admin's, to probe the policy with (not tokenwarden's: no label).
    await kube.create(R.secret, ns, { metadata: { name: 'probe' }, type: TOKEN_SECRET_TYPE, data: {} });
    const message = `${prefix}: no token Secrets written in ${ns}`;
    await refuse(
      { name: `${prefix}-secret`, namespace: ns, operation: ['CREATE', 'UPDATE'], resource: 'secrets', allowIf: `object.type != '${TOKEN_SECRET_TYPE}'`, message },
      () => kube.patch(R.secret, ns, 'probe', { metadata: { labels: { probe: String(Date.now()) } } }),
    );
    const old = await readClientToken(ns, 'secret-refused');
    const before = await tokenRequests();
    const started = Date.now();
    await aliceEdits('secret-refused', { revocationEpoch: 1 });
    const failed = failing(await waitForClient(ns, 'secret-refused', (c) => ['IssuanceFailed', 'RenewalFailed'].includes(readyOf(c)?.reason ?? '') && c.status?.revocationEpoch === 1, {
      timeoutMs: 20_000,
      description: 'issuing failed, the revocation recorded',
    }));
    expect(readyOf(failed)?.reason, 'no valid token left: the old one is revoked').toBe('IssuanceFailed');
    expect(readyOf(failed)?.message).toContain(`Secret ${ns}/secret-refused-token`);
    expect(readyOf(failed)?.message).toContain(message);
    expect((await review(old.token as string, old.audiences)).authenticated, 'the token the raise revoked').toBe(false);
    await waitFor(async () => ((await clientEvents(ns, 'secret-refused')).some((e) => e.type === 'Warning' && e.reason === 'IssuanceFailed' && e.note?.includes(message)) ? true : undefined), {
      timeoutMs: 10_000,
      description: 'a Warning IssuanceFailed Event',
    });
    await sleep(Math.max(0, started + 12_000 - Date.now()));
    await aliceEdits('secret-refused', { revocationEpoch: 2 });
    await sleep(Math.max(0, started + WINDOW_MS - Date.now()));
    const sent = (await tokenRequests()) - before;
    console.log(`refused token Secret (${fenced ? 'fenced' : 'unfenced'}): ${sent} TokenRequests in ${WINDOW_MS / 1000}s`);
    expect(sent, `TokenRequests in ${WINDOW_MS / 1000}s while the Secret is refused`).toBeLessThanOrEqual(MAX_IN_WINDOW);
    expect((await getClientNow('secret-refused')).status?.revocationEpoch).toBe(2);

    await removeRefusalPolicy(`${prefix}-secret`);
    await waitForClientReady(ns, 'secret-refused', { timeoutMs: 90_000 });
  });

  it('a refused status write: the pass is not repeated before the backoff allows, a Warning Event says why, and it recovers', async () => {
    await aliceCreates('status-refused');
    const message = `${prefix}: no status written for status-refused`;
    await refuse(
      {
        name: `${prefix}-status`,
        namespace: ns,
        operation: 'UPDATE',
        resource: 'serviceaccountclients/status',
        apiGroup: 'tokenwarden.io',
        allowIf: "request.name != 'status-refused'",
        message,
      },
      () => kube.patch(R.client, ns, 'status-refused', { status: {} }, 'merge', 'status'),
    );
    const old = await readClientToken(ns, 'status-refused');
    const before = await tokenRequests();
    const started = Date.now();
    await aliceEdits('status-refused', { revocationEpoch: 1 });
    await waitFor(async () => ((await clientEvents(ns, 'status-refused')).some((e) => e.type === 'Warning' && e.reason === 'WriteFailed' && e.note?.includes(message)) ? true : undefined), {
      timeoutMs: 20_000,
      description: 'a Warning WriteFailed Event naming the refused status write',
    });
    // The revocation itself was carried out: the old token fails.
    expect((await review(old.token as string, old.audiences)).authenticated, 'the revoked token').toBe(false);
    await sleep(Math.max(0, started + WINDOW_MS - Date.now()));
    const sent = (await tokenRequests()) - before;
    console.log(`refused status write (${fenced ? 'fenced' : 'unfenced'}): ${sent} TokenRequests in ${WINDOW_MS / 1000}s`);
    // Each pass mints (status never records the revocation): at 0, 5, 15 s, then 35 s.
    expect(sent, `TokenRequests in ${WINDOW_MS / 1000}s while status is refused`).toBeLessThanOrEqual(MAX_IN_WINDOW);
    await removeRefusalPolicy(`${prefix}-status`);
    await waitForClient(ns, 'status-refused', (c) => c.status?.revocationEpoch === 1 && readyOf(c)?.status === 'True', { timeoutMs: 90_000, description: 'recovered: the revocation recorded, Ready' });
  });

  it("mallory's look-alike ServiceAccount naming alice's client neither loops alice's client nor keeps her revocation from being recorded", async () => {
    const client = await aliceCreates('target');
    // What mallory can do with `edit` in her own namespace, knowing the uid of alice's client.
    await asMallory.create(SERVICE_ACCOUNTS, malloryNs, {
      apiVersion: 'v1',
      kind: 'ServiceAccount',
      metadata: { name: 'lookalike', labels: { [MANAGED_BY]: 'tokenwarden' }, annotations: { [useAnnotation(client.metadata.uid as string)]: 'x' } },
    } as never);
    await sleep(1_000);
    const before = await tokenRequests();
    const started = Date.now();
    await aliceEdits('target', { revocationEpoch: 1 });
    await waitForClient(ns, 'target', (c) => c.status?.revocationEpoch === 1, { timeoutMs: 20_000, description: 'the revocation recorded' });
    await sleep(Math.max(0, started + 20_000 - Date.now()));
    const sent = (await tokenRequests()) - before;
    console.log(`look-alike ServiceAccount (${fenced ? 'fenced' : 'unfenced'}): ${sent} TokenRequests in 20s`);
    expect(sent, 'TokenRequests in 20s after one revocation').toBeLessThanOrEqual(4);
    await asAlice.delete(SERVICE_ACCOUNT_CLIENTS, ns, 'target');
    await waitFor(async () => ((await kube.tryGet(R.client, ns, 'target')) === null ? true : undefined), { timeoutMs: 20_000, description: 'target deleted' });
  });
});

const getClientNow = (name: string) => kube.get<Client>(R.client, ns, name);
