/**
 * Floods a tenant can start on her own client, tried through her own context (alice, `edit` in her
 * namespace): a burst of renewal requests, a token policy that would rotate without pause and
 * overflow status.tokens, a secretTemplate the API server refuses. Each is bounded: renewal requests
 * are honoured at most once per 30 s (policy/reissue.ts RENEW_REQUEST_INTERVAL_MS), no token is
 * renewed sooner than 10 s after issue (policy/token-policy.ts MIN_ROTATION_INTERVAL_MS; refused at
 * admission where the client or Tier sets both fields), status.tokens holds at most 8 (MAX_TOKENS),
 * and a refused Secret is SecretInvalid until the spec changes.
 *
 * The operator runs as a ServiceAccount of its own (support/writes.ts), whose TokenRequests and
 * writes FlowSchemas count. Tokens are never printed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KubeClient } from '../../../src/kube/client.ts';
import { SERVICE_ACCOUNT_CLIENTS } from '../../../src/kube/resources.ts';
import { createTestNamespace, userKubeConfig, waitFor } from '../support/cluster.ts';
import { adminRequest } from '../support/crds.ts';
import {
  API_VERSION,
  R,
  clientEvents,
  condition,
  createTier,
  getClient,
  kube,
  readClientToken,
  sleep,
  startOperator,
  uniquePrefix,
  waitForClient,
  waitForClientReady,
  waitForTierReady,
  type Client,
  type OperatorProcess,
} from '../support/operator.ts';
import type { RequestCounts } from '../support/writes.ts';
import { countedTokenRequests } from './support/token-request-refusal.ts';

const ALICE = 'alice@example.com';
const GROUP = 'ml-engineers';
const RENEW_REQUESTED_AT = 'tokenwarden.io/renew-requested-at';
const RENEWED_FOR = 'tokenwarden.io/renewed-for';

const prefix = uniquePrefix('flood');
let op: OperatorProcess;
let tokenRequests: () => Promise<number>;
let counts: () => Promise<RequestCounts>;
let ns: string;
let aud: string;
let asAlice: KubeClient;

beforeAll(async () => {
  const counter = await countedTokenRequests(prefix);
  tokenRequests = () => counter.tokenRequests();
  counts = () => counter.identity.counts();
  op = await startOperator({ namespacePrefix: prefix, kubeconfig: counter.identity.kubeconfig });
  ns = await createTestNamespace(`${prefix}-alice`);
  aud = `${prefix}-gateway`;
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
  }, { description: 'alice may edit clients' });
  asAlice = new KubeClient(userKubeConfig(ALICE));
}, 120_000);

afterAll(async () => {
  await asAlice?.close();
});

function clientBody(name: string, tierName: string, extra: Record<string, unknown> = {}) {
  return {
    apiVersion: API_VERSION,
    kind: 'ServiceAccountClient',
    metadata: { name, labels: { ...op.labels } },
    spec: { subject: { user: ALICE, groups: [GROUP] }, tierRef: { name: tierName }, ...extra },
  } as never;
}

async function tier(short: string, token: Record<string, string | string[]>): Promise<string> {
  const created = await createTier(op, short, { level: 10, groups: [GROUP], token: { audiences: [aud], ...token } });
  await waitForTierReady(created.metadata.name);
  return created.metadata.name;
}

const readyOf = (c: Client) => condition(c, 'Ready');

describe('renewal requests', () => {
  it('60 renewal requests in 9 s through alice\'s context: one honoured at once, the last one 30 s after it, two TokenRequests in all; the deferral is told', async () => {
    const tierName = await tier('renew', { gracePeriod: '1m' });
    await asAlice.create(SERVICE_ACCOUNT_CLIENTS, ns, clientBody('burst', tierName));
    await waitForClientReady(ns, 'burst');
    const before = await tokenRequests();
    const started = Date.now();
    let last = '';
    for (let i = 0; i < 60; i++) {
      last = new Date(started + i).toISOString();
      await asAlice.patch(SERVICE_ACCOUNT_CLIENTS, ns, 'burst', { metadata: { annotations: { [RENEW_REQUESTED_AT]: last } } });
      await sleep(150);
    }
    expect(Date.now() - started, 'the burst took at most 9 s and a little').toBeLessThan(12_000);
    const deferred = await waitForClient(ns, 'burst', (c) => readyOf(c)?.message.includes('a renewal request is deferred until') === true, {
      timeoutMs: 10_000,
      description: 'Ready tells of the deferred request',
    });
    expect(readyOf(deferred)?.status, 'still Ready: the token in the Secret is valid').toBe('True');
    expect(readyOf(deferred)?.message).toContain('renewal requests are honoured at most once per 30s');
    const duringBurst = (await tokenRequests()) - before;
    expect(duringBurst, 'TokenRequests during the burst').toBeLessThanOrEqual(1);
    expect((await clientEvents(ns, 'burst')).some((e) => e.reason === 'RenewalDeferred' && e.type === 'Normal'), 'a RenewalDeferred Event').toBe(true);

    // The last request is honoured once the interval has passed.
    const renewed = await waitForClientReady(ns, 'burst', { timeoutMs: 45_000, extra: (ct) => ct.secret?.metadata.annotations?.[RENEWED_FOR] === last });
    expect(readyOf(renewed.client)?.message).not.toContain('deferred');
    await sleep(3_000);
    const sent = (await tokenRequests()) - before;
    console.log(`60 renewal requests: ${sent} TokenRequests`);
    expect(sent, 'TokenRequests for 60 renewal requests').toBe(2);
    await asAlice.delete(SERVICE_ACCOUNT_CLIENTS, ns, 'burst');
  });
});

describe('a token policy that would rotate without pause', () => {
  it('expiration 10m with renewBefore 99% is refused at admission, for alice\'s client and for a Tier', async () => {
    const tierName = await tier('fast', {});
    const refused = await asAlice.create(SERVICE_ACCOUNT_CLIENTS, ns, clientBody('fast', tierName, { token: { expiration: '10m', renewBefore: '99%' } })).then(
      () => undefined,
      (err: unknown) => String(err),
    );
    expect(refused, 'the 10m/99% client is refused').toBeDefined();
    expect(refused).toContain('renewBefore must leave at least 10s between a token\'s issue and its renewal');
    const refusedDuration = await asAlice.create(SERVICE_ACCOUNT_CLIENTS, ns, clientBody('fast', tierName, { token: { expiration: '10m', renewBefore: '9m55s' } })).then(
      () => undefined,
      (err: unknown) => String(err),
    );
    expect(refusedDuration).toContain('renewBefore must leave at least 10s');
    const tierRefused = await createTier(op, 'fast-tier', { level: 1, token: { defaultExpiration: '10m', renewBefore: '99%' } }).then(
      () => undefined,
      (err: unknown) => JSON.stringify(err) + String(err),
    );
    expect(tierRefused).toContain('renewBefore must leave at least 10s');
    // 98% of 10m leaves 12 s: admitted.
    await asAlice.create(SERVICE_ACCOUNT_CLIENTS, ns, clientBody('fast', tierName, { token: { expiration: '10m', renewBefore: '98%' } }));
    await waitForClientReady(ns, 'fast');
    await asAlice.delete(SERVICE_ACCOUNT_CLIENTS, ns, 'fast');
  });

  it('where CEL cannot tell (the Tier\'s renewBefore, the client\'s expiration) it is clamped to a renewal 10 s after issue, told in Ready and a Capped Event; status.tokens never holds more than 8 and every status write goes through', async () => {
    // The Tier renews 9m58s before expiry: fine for its 1h tokens, 2 s after issue for a 10m one.
    const tierName = await tier('clamp', { defaultExpiration: '1h', renewBefore: '9m58s', gracePeriod: '5m' });
    const before = await tokenRequests();
    const started = Date.now();
    await asAlice.create(SERVICE_ACCOUNT_CLIENTS, ns, clientBody('clamped', tierName, { token: { expiration: '10m' } }));
    const ready = await waitForClientReady(ns, 'clamped');
    expect(readyOf(ready.client)?.message).toContain('renewing 10s after issue');
    await waitFor(async () => ((await clientEvents(ns, 'clamped')).some((e) => e.reason === 'Capped' && e.note?.includes('renewing 10s after issue')) ? true : undefined), {
      timeoutMs: 10_000,
      description: 'a Capped Event',
    });
    // 95 s: ten rotations, past the 8 tokens status.tokens holds (5 min grace would keep them all).
    const WINDOW_MS = 95_000;
    let most = 0;
    while (Date.now() - started < WINDOW_MS) {
      const c = await getClient(ns, 'clamped');
      most = Math.max(most, c.status?.tokens?.length ?? 0);
      await sleep(2_000);
    }
    const sent = (await tokenRequests()) - before;
    const c = await getClient(ns, 'clamped');
    console.log(`clamped client: ${sent} TokenRequests in ${WINDOW_MS / 1000}s, at most ${most} tokens in status`);
    expect(most, 'status.tokens at most').toBeLessThanOrEqual(8);
    expect(most, 'status.tokens reached its cap').toBe(8);
    // One at creation, then one each 10 s at most.
    expect(sent, `TokenRequests in ${WINDOW_MS / 1000}s`).toBeLessThanOrEqual(Math.ceil(WINDOW_MS / 10_000) + 1);
    // Status keeps up: its newest token is the one in the Secret, issued within the last rotation.
    const now = await readClientToken(ns, 'clamped');
    expect(c.status?.tokens?.[0]?.id).toBeDefined();
    expect(Date.now() - Date.parse(now.client.status?.tokens?.[0]?.issuedAt ?? ''), 'the newest token in status is recent').toBeLessThan(25_000);
    expect(readyOf(now.client)?.status).toBe('True');
    await asAlice.delete(SERVICE_ACCOUNT_CLIENTS, ns, 'clamped');
  }, 150_000);
});

describe('a secretTemplate the API server refuses', () => {
  it('an invalid label value through alice\'s context: Ready=False SecretInvalid with a Warning Event, and a bounded number of writes', async () => {
    const tierName = await tier('tmpl', {});
    await asAlice.create(SERVICE_ACCOUNT_CLIENTS, ns, clientBody('tmpl', tierName));
    await waitForClientReady(ns, 'tmpl');
    const writesBefore = (await counts()).writes;
    const before = await tokenRequests();
    const started = Date.now();
    await asAlice.patch(SERVICE_ACCOUNT_CLIENTS, ns, 'tmpl', { spec: { secretTemplate: { labels: { team: 'not a valid label value!' } } } });
    const invalid = await waitForClient(ns, 'tmpl', (c) => readyOf(c)?.reason === 'SecretInvalid', { timeoutMs: 15_000, description: 'Ready=False SecretInvalid' });
    expect(readyOf(invalid)?.status).toBe('False');
    expect(readyOf(invalid)?.message).toContain('the API server refuses the Secret');
    await waitFor(async () => ((await clientEvents(ns, 'tmpl')).some((e) => e.type === 'Warning' && e.reason === 'SecretInvalid') ? true : undefined), {
      timeoutMs: 10_000,
      description: 'a Warning SecretInvalid Event',
    });
    await sleep(Math.max(0, started + 20_000 - Date.now()));
    const writes = (await counts()).writes - writesBefore;
    const sent = (await tokenRequests()) - before;
    console.log(`invalid secretTemplate: ${writes} writes, ${sent} TokenRequests in 20s`);
    // The refused patch, the status, the Event: a handful, not a retry loop.
    expect(writes, 'writes in 20 s').toBeLessThanOrEqual(6);
    expect(sent, 'TokenRequests in 20 s').toBe(0);
    // Fixed by alice: Ready again.
    await asAlice.patch(SERVICE_ACCOUNT_CLIENTS, ns, 'tmpl', { spec: { secretTemplate: { labels: { team: 'ml' } } } });
    await waitForClientReady(ns, 'tmpl', { timeoutMs: 20_000 });
    expect((await readClientToken(ns, 'tmpl')).secret?.metadata.labels?.team).toBe('ml');
  });
});
