/**
 * Issue 9, item 1 follow-up: `kubectl tokenwarden renew` starts the issuance backoff over, once.
 *
 * After a long outage a client waits up to an hour for its next attempt (policy/issuance-backoff.ts).
 * An admin who fixed the cause and runs `renew` must get a token at once, as cert-manager's
 * `cmctl renew` does: a renewal request (tokenwarden.io/renew-requested-at) whose value the failures
 * were not recorded under starts the backoff over. The value is recorded with the next failure
 * (status.lastFailureRenewRequest), so a refused renewed attempt backs off again normally: the same
 * value set again and again sends no more TokenRequests than the backoff allows.
 *
 * Issuance fails the real way (support/token-request-refusal.ts: an admission policy refusing
 * TokenRequest, the operator's TokenRequests counted by a FlowSchema of its identity). `renew` runs
 * through the built kubectl plugin as alice, the user the client is for, through her own context.
 * Tokens are compared by fingerprint, never printed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminRequest } from '../support/crds.ts';
import { createTestNamespace, kubeconfigPath, userKubeConfig, waitFor } from '../support/cluster.ts';
import {
  R,
  condition,
  createClient,
  createTier,
  fingerprint,
  getClient,
  kube,
  readClientToken,
  review,
  sleep,
  startOperator,
  tierNamespace,
  uniquePrefix,
  waitForClient,
  waitForTierReady,
  type Client,
  type OperatorProcess,
} from '../support/operator.ts';
import { JWT_PATTERN, buildPlugin, runExecutable, type RunResult } from '../plugin/support.ts';
import { KubeClient } from '../../../src/kube/client.ts';
import { SERVICE_ACCOUNT_CLIENTS } from '../../../src/kube/resources.ts';
import { countedTokenRequests, tokenRequestRefusals } from './support/token-request-refusal.ts';

type FailingClient = Client & { status?: Client['status'] & { failedAttempts?: number; lastFailureTime?: string; lastFailureRenewRequest?: string } };

const ALICE = 'alice@example.com';
const RENEW_REQUESTED_AT = 'tokenwarden.io/renew-requested-at';
const RENEWED_FOR = 'tokenwarden.io/renewed-for';

const prefix = uniquePrefix('ifrenew');
const refusals = tokenRequestRefusals(prefix);
let tokenRequests: () => Promise<number>;
let plugin: string;
let op: OperatorProcess;
let ns: string;
let aud: string;
let group: string;

const alice = (...args: string[]): Promise<RunResult> => runExecutable(plugin, ['--kubeconfig', kubeconfigPath(), '--context', ALICE, '-n', ns, ...args]);
const failing = (c: Client) => c as FailingClient;
const attemptsOf = (c: Client) => failing(c).status?.failedAttempts ?? 0;

beforeAll(async () => {
  const counter = await countedTokenRequests(prefix);
  tokenRequests = () => counter.tokenRequests();
  [plugin, op] = await Promise.all([buildPlugin(), startOperator({ namespacePrefix: prefix, kubeconfig: counter.identity.kubeconfig })]);
  ns = await createTestNamespace(`${prefix}-team`);
  aud = `${prefix}-gateway`;
  group = `${prefix}-users`;
  // alice may edit clients in her namespace (the aggregated `edit` role), nothing more.
  await kube.create(R.roleBinding, ns, {
    metadata: { name: 'alice-edit' },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'edit' },
    subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: ALICE }],
  });
  await waitFor(async () => {
    const res = await adminRequest<{ status?: { allowed?: boolean } }>('POST', '/apis/authorization.k8s.io/v1/subjectaccessreviews', {
      apiVersion: 'authorization.k8s.io/v1',
      kind: 'SubjectAccessReview',
      spec: { user: ALICE, groups: ['system:authenticated'], resourceAttributes: { verb: 'patch', group: 'tokenwarden.io', resource: 'serviceaccountclients', namespace: ns } },
    });
    return res.body.status?.allowed === true;
  }, { description: 'alice may patch clients' });
}, 180_000);

afterAll(async () => {
  await refusals.allowAll();
});

/** A tier refusing every TokenRequest, and alice's client in it, failing. */
async function refusedClient(short: string): Promise<{ name: string; policy: string }> {
  const tier = await createTier(op, short, { level: 10, groups: [group], token: { audiences: [aud] } });
  await waitForTierReady(tier.metadata.name);
  const tierNs = tierNamespace(op, tier.metadata.name);
  const policy = await refusals.refuse(tierNs, `${prefix}: no tokens in ${tierNs} (${short})`);
  await createClient(op, ns, short, { subject: { user: ALICE, groups: [group] }, tierRef: { name: tier.metadata.name } });
  return { name: short, policy };
}

describe('kubectl tokenwarden renew after an outage', () => {
  it('gets a token within seconds once the cause is fixed, though the backoff would hold the next attempt much longer', async () => {
    const { name, policy } = await refusedClient('outage');
    // Four failures (at 0, 5, 15, 35 s): the next attempt is due 40 s after the fourth.
    const fourth = failing(await waitForClient(ns, name, (c) => attemptsOf(c) >= 4, { timeoutMs: 60_000, description: 'four failed attempts' }));
    expect(fourth.status?.failedAttempts).toBe(4);
    expect(condition(fourth, 'Ready')?.reason).toBe('IssuanceFailed');
    const dueAt = Date.parse(fourth.status?.lastFailureTime as string) + 40_000;
    expect(condition(fourth, 'Ready')?.message).toContain(`next attempt at ${new Date(dueAt).toISOString().replace('.000Z', 'Z')}`);

    // The admin fixes the cause; the operator is not told.
    await refusals.allow(policy, { settled: true });
    const before = await tokenRequests();
    const started = Date.now();
    const WAIT_S = 15;
    // Without the start-over the backoff would hold the attempt past the CLI's wait.
    expect(started + WAIT_S * 1000, 'time left in the backoff for the CLI to time out without a start-over').toBeLessThan(dueAt);

    const res = await alice('renew', name, '--wait', `${WAIT_S}s`);
    const took = Date.now() - started;
    expect(res.stdout + res.stderr).not.toMatch(JWT_PATTERN);
    expect(res.code, `renew as alice: ${res.stdout}${res.stderr}`).toBe(0);
    expect(res.stdout).toContain(`serviceaccountclient ${ns}/${name}: renewed`);
    expect(took, 'renew answered within seconds').toBeLessThan(10_000);
    expect(Date.now(), 'answered before the backoff would have allowed an attempt').toBeLessThan(dueAt);

    const client = failing(await getClient(ns, name));
    expect(condition(client, 'Ready')?.status).toBe('True');
    expect(client.status?.failedAttempts).toBeUndefined();
    expect(client.status?.lastFailureTime).toBeUndefined();
    expect(client.status?.lastFailureRenewRequest).toBeUndefined();
    const requested = client.metadata.annotations?.[RENEW_REQUESTED_AT];
    expect(requested).toBeDefined();
    const { token, audiences, secret } = await readClientToken(ns, name);
    expect(fingerprint(token)).not.toBe('<none>');
    expect(secret?.metadata.annotations?.[RENEWED_FOR], 'the token answers that renewal request').toBe(requested);
    expect((await review(token as string, audiences)).authenticated).toBe(true);
    // One attempt, the one the request started: not a burst.
    expect((await tokenRequests()) - before, 'TokenRequests from the renewal to the token').toBe(1);
    // Gone before the next test counts TokenRequests.
    await kube.remove(R.client, ns, name);
    await waitFor(async () => ((await kube.tryGet(R.client, ns, name)) === null ? true : undefined), { timeoutMs: 20_000, description: `client ${name} gone` });
  });

  it('a renewal request while still refused starts over once: the same value set again and again sends no more TokenRequests than the backoff allows', async () => {
    const { name, policy } = await refusedClient('hammered');
    const third = failing(await waitForClient(ns, name, (c) => attemptsOf(c) >= 3, { timeoutMs: 40_000, description: 'three failed attempts' }));
    expect(third.status?.failedAttempts).toBe(3);
    expect(third.status?.lastFailureRenewRequest).toBeUndefined();

    // alice, through her own credentials, requests a renewal and then writes the same value again
    // and again, with another annotation changing each time so that every write is a real update
    // the operator is told of.
    const asAlice = new KubeClient(userKubeConfig(ALICE));
    const value = new Date().toISOString();
    const before = await tokenRequests();
    const started = Date.now();
    const WINDOW_MS = 30_000;
    let writes = 0;
    try {
      while (Date.now() - started < WINDOW_MS) {
        await asAlice.patch(SERVICE_ACCOUNT_CLIENTS, ns, name, { metadata: { annotations: { [RENEW_REQUESTED_AT]: value, 'test.tokenwarden.io/poke': String(writes) } } });
        writes++;
        await sleep(250);
      }
    } finally {
      await asAlice.close();
    }
    const sent = (await tokenRequests()) - before;
    const after = failing(await getClient(ns, name));

    expect(writes, 'alice wrote the request many times').toBeGreaterThan(50);
    // Started over once at 0 s, then 5 s and 10 s apart as from a first failure: at 0, 5, 15 s, the
    // next at 35 s, past the window. A start-over on every write would be one per write; none at all
    // would leave the next attempt 20 s after the third failure, with at most one in the window.
    expect(sent, `TokenRequests in ${WINDOW_MS / 1000}s of ${writes} writes of the same request`).toBeGreaterThanOrEqual(3);
    expect(sent, `TokenRequests in ${WINDOW_MS / 1000}s of ${writes} writes of the same request`).toBeLessThanOrEqual(4);
    expect(after.status?.failedAttempts).toBe(sent);
    expect(after.status?.lastFailureRenewRequest, 'the request the failures count under').toBe(value);
    expect(condition(after, 'Ready')?.reason).toBe('IssuanceFailed');
    await refusals.allow(policy);
  });
});
