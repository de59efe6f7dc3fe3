/**
 * Issue 9, item 1: a client whose token cannot be issued or renewed says so on the object, backs off
 * exponentially (5s, 10s, 20s, 40s, ... at most 1h: src/policy/issuance-backoff.ts) and recovers by
 * itself once the cause is gone.
 *
 * Issuance fails the real way: a ValidatingAdmissionPolicy (admin-applied, bound to one tier
 * namespace) refuses `serviceaccounts/token` CREATE there. The operator runs as a ServiceAccount of
 * its own (support/writes.ts), and a FlowSchema that matches only that identity's TokenRequests
 * counts them (support/token-request-refusal.ts): one persistently refused client costs a handful
 * over a minute, and a status patch per attempt besides: the anchor of the first refused attempt
 * carries the later ones (policy/anchor-reuse.ts) and is deleted with the client.
 *
 * A restart of the operator does not shorten the wait: it is read from the client's status.
 *
 * Token values are never printed: tokens are compared by fingerprint.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestNamespace, kubectl, waitFor } from '../support/cluster.ts';
import {
  R,
  anchorsOf,
  clientEvents,
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
  waitForClientReady,
  waitForTierReady,
  type Client,
  type OperatorProcess,
} from '../support/operator.ts';
import type { RequestCounts } from '../support/writes.ts';
import { countedTokenRequests, tokenRequestRefusals } from './support/token-request-refusal.ts';

type FailingClient = Client & { status?: Client['status'] & { failedAttempts?: number; lastFailureTime?: string } };

/** Attempts the backoff allows from a first failure at 0s: at 0, 5, 15, 35 s (the next one at 75 s). */
const ATTEMPTS_IN_A_MINUTE = 4;
/**
 * Writes other than TokenRequests in that minute: measured 9 (16 while every attempt created an
 * anchor and deleted it again); an attempt more (5 in the window) would make 10.
 */
const WRITES_IN_A_MINUTE = 11;
const WINDOW_MS = 60_000;

const prefix = uniquePrefix('ifail');
let op: OperatorProcess;
let ns: string;
let aud: string;
let group: string;
let operatorKubeconfig: string;

const refusals = tokenRequestRefusals(prefix);
let tokenRequests: () => Promise<number>;
let counts: () => Promise<RequestCounts>;
const refuseTokenRequests = (namespace: string, message: string) => refusals.refuse(namespace, message);
const allowTokenRequests = (name: string) => refusals.allow(name);

beforeAll(async () => {
  const counter = await countedTokenRequests(prefix);
  tokenRequests = () => counter.tokenRequests();
  counts = () => counter.identity.counts();
  operatorKubeconfig = counter.identity.kubeconfig;
  op = await startOperator({ namespacePrefix: prefix, kubeconfig: operatorKubeconfig });
  ns = await createTestNamespace(`${prefix}-team`);
  aud = `${prefix}-gateway`;
  group = `${prefix}-users`;
});

afterAll(async () => {
  await refusals.allowAll();
});

const readyOf = (client: Client) => condition(client, 'Ready');

/** Deletes a client and waits until the operator has finalized it: no TokenRequest of it after this. */
async function removeClient(name: string): Promise<void> {
  await kube.remove(R.client, ns, name);
  await waitFor(async () => ((await kube.tryGet(R.client, ns, name)) === null ? true : undefined), { timeoutMs: 20_000, description: `client ${name} gone` });
}

describe('a TokenRequest refused by an admission policy', () => {
  it('shows IssuanceFailed with the reason and a Warning Event, backs off to a handful of attempts a minute, and recovers by itself', async () => {
    const tier = await createTier(op, 'refused', { level: 10, groups: [group], token: { audiences: [aud] } });
    await waitForTierReady(tier.metadata.name);
    const tierNs = tierNamespace(op, tier.metadata.name);
    const message = `${prefix}: no tokens in ${tierNs} today`;
    const policy = await refuseTokenRequests(tierNs, message);

    const before = await tokenRequests();
    const writesBefore = (await counts()).writes;
    const created = await createClient(op, ns, 'refused', { subject: { user: `refused@${prefix}.example.com`, groups: [group] } });
    const started = Date.now();

    const failed = (await waitForClient(ns, 'refused', (c) => readyOf(c)?.reason === 'IssuanceFailed', {
      timeoutMs: 20_000,
      description: 'Ready=False IssuanceFailed',
    })) as FailingClient;
    const ready = readyOf(failed);
    expect(ready?.status).toBe('False');
    expect(ready?.message).toContain(message);
    expect(failed.status?.failedAttempts).toBeGreaterThanOrEqual(1);
    expect(Number.isNaN(Date.parse(failed.status?.lastFailureTime ?? ''))).toBe(false);
    expect(failed.status?.lastFailureTime).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(failed.status?.tokens ?? []).toEqual([]);
    expect(fingerprint((await readClientToken(ns, 'refused')).token), 'no token in the refused client\'s Secret').toBe('<none>');
    const table = await kubectl(['get', 'sac', '-n', ns, 'refused']);
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/^refused\s+\S+\s+\S+\s+False\s+IssuanceFailed\s/m);

    // The anchor of the first refused attempt carries every later attempt: no token was bound to it.
    const [anchor, ...more] = await anchorsOf(created.metadata.uid as string);
    expect(more, 'one anchor for every refused attempt').toEqual([]);
    expect(anchor?.metadata.namespace).toBe(tierNs);

    // A minute of a persistently refused client.
    await sleep(Math.max(0, started + WINDOW_MS - Date.now()));
    const sent = (await tokenRequests()) - before;
    const writes = (await counts()).writes - writesBefore;
    const during = (await getClient(ns, 'refused')) as FailingClient;
    expect(readyOf(during)?.reason).toBe('IssuanceFailed');
    expect(sent, `TokenRequests in ${WINDOW_MS / 1000}s`).toBeGreaterThanOrEqual(ATTEMPTS_IN_A_MINUTE - 1);
    expect(sent, `TokenRequests in ${WINDOW_MS / 1000}s`).toBeLessThanOrEqual(ATTEMPTS_IN_A_MINUTE + 1);
    expect(during.status?.failedAttempts).toBe(sent);
    expect((await anchorsOf(created.metadata.uid as string)).map((a) => a.metadata.uid), 'the same anchor after every attempt').toEqual([anchor?.metadata.uid]);
    // Besides the TokenRequests (counted apart): the finalizer, the ServiceAccount and its record of
    // use, one anchor, one status patch per attempt, one Warning Event, the tier's count of clients.
    // Creating and deleting an anchor per attempt as before costs 2 more per attempt.
    console.log(`refused client: ${sent} TokenRequests and ${writes} other writes in ${WINDOW_MS / 1000}s`);
    expect(writes, `writes other than TokenRequests in ${WINDOW_MS / 1000}s`).toBeLessThanOrEqual(WRITES_IN_A_MINUTE);

    // One Warning Event for the streak, not one per attempt.
    const warnings = (await clientEvents(ns, 'refused')).filter((e) => e.reason === 'IssuanceFailed');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.type).toBe('Warning');
    expect(warnings[0]?.note).toContain(message);
    // And the operator's own log says why, not only the client's status.
    const logged = op.logs().split('\n').filter((line) => line.includes('"msg":"issuing failed; backing off"') && line.includes('refused'));
    expect(logged.length).toBeGreaterThan(0);
    expect(logged.every((line) => (JSON.parse(line) as { cause?: string }).cause?.includes(message))).toBe(true);

    // The cause goes away: the next attempt the backoff allows (at 75s at the latest) succeeds.
    await allowTokenRequests(policy);
    const recovered = (await waitForClientReady(ns, 'refused', { timeoutMs: 60_000 })).client as FailingClient;
    expect(readyOf(recovered)?.reason).toBe('TokenIssued');
    expect(recovered.status?.failedAttempts).toBeUndefined();
    expect(recovered.status?.lastFailureTime).toBeUndefined();
    const { token, audiences } = await readClientToken(ns, 'refused');
    expect(token).toBeDefined();
    expect((await review(token as string, audiences)).authenticated).toBe(true);
    // The token is bound to the anchor the refused attempts left; nothing else is left over.
    expect(recovered.status?.tokens?.map((t) => t.id)).toEqual([anchor?.metadata.name]);
    await waitFor(async () => ((await anchorsOf(created.metadata.uid as string)).length === 1 ? true : undefined), { timeoutMs: 10_000, description: 'one anchor' });
    await waitFor(async () => ((await clientEvents(ns, 'refused')).some((e) => e.reason === 'Recovered' && e.type === 'Normal') ? true : undefined), {
      timeoutMs: 10_000,
      description: 'a Recovered Event',
    });
    await removeClient('refused');
    expect(await anchorsOf(created.metadata.uid as string), 'finalize deleted the anchor').toEqual([]);
  });

  it('deleting a client that is still refused deletes the anchor its refused attempts left', async () => {
    const tier = await createTier(op, 'refused-gone', { level: 10, groups: [group], token: { audiences: [aud] } });
    await waitForTierReady(tier.metadata.name);
    const tierNs = tierNamespace(op, tier.metadata.name);
    const policy = await refuseTokenRequests(tierNs, `${prefix}: refused, then deleted`);
    const created = await createClient(op, ns, 'refused-gone', { subject: { user: `gone@${prefix}.example.com`, groups: [group] }, tierRef: { name: tier.metadata.name } });
    await waitForClient(ns, 'refused-gone', (c) => ((c as FailingClient).status?.failedAttempts ?? 0) >= 2, { timeoutMs: 20_000, description: 'two failed attempts' });
    const anchors = await anchorsOf(created.metadata.uid as string);
    expect(anchors, 'the unused anchor the attempts share').toHaveLength(1);
    await removeClient('refused-gone');
    expect(await anchorsOf(created.metadata.uid as string), 'finalize deleted the unused anchor').toEqual([]);
    expect(await kube.tryGet(R.secret, tierNs, anchors[0]?.metadata.name as string)).toBeNull();
    await allowTokenRequests(policy);
  });
});

describe('a renewal refused by an admission policy', () => {
  it('shows RenewalFailed while the still-valid token stays in the Secret and passes TokenReview, then recovers', async () => {
    // Renewal 15s after each issue (10m tokens renewed 9m45s before expiry).
    const tier = await createTier(op, 'renew', {
      level: 10,
      groups: [group],
      token: { audiences: [aud], defaultExpiration: '10m', maxExpiration: '10m', renewBefore: '9m45s', gracePeriod: '10s' },
    });
    await waitForTierReady(tier.metadata.name);
    const tierNs = tierNamespace(op, tier.metadata.name);
    await createClient(op, ns, 'renewing', { subject: { user: `renewing@${prefix}.example.com`, groups: [group] }, tierRef: { name: tier.metadata.name } });
    await waitForClientReady(ns, 'renewing');

    const message = `${prefix}: renewals frozen in ${tierNs}`;
    const policy = await refuseTokenRequests(tierNs, message);
    // From here on no token can be minted there: what the Secret holds now is what it must keep.
    const held = await readClientToken(ns, 'renewing');
    expect(held.token).toBeDefined();
    const heldFp = fingerprint(held.token);

    const failed = (await waitForClient(ns, 'renewing', (c) => readyOf(c)?.reason === 'RenewalFailed', {
      timeoutMs: 40_000,
      description: 'Ready=False RenewalFailed',
    })) as FailingClient;
    expect(readyOf(failed)?.status).toBe('False');
    expect(readyOf(failed)?.message).toContain(message);
    expect(failed.status?.failedAttempts).toBeGreaterThanOrEqual(1);
    expect(failed.status?.lastFailureTime).toBeDefined();
    expect(Date.parse(failed.status?.expiresAt ?? '')).toBeGreaterThan(Date.now());

    const now = await readClientToken(ns, 'renewing');
    expect(fingerprint(now.token), 'the Secret keeps the still-valid token').toBe(heldFp);
    expect(failed.status?.tokens?.[0]?.id).toBe(now.secret?.metadata.annotations?.['tokenwarden.io/token-id']);
    expect((await review(now.token as string, now.audiences)).authenticated).toBe(true);
    const warnings = (await clientEvents(ns, 'renewing')).filter((e) => e.reason === 'RenewalFailed');
    expect(warnings.length).toBeGreaterThanOrEqual(1);
    expect(warnings.every((e) => e.type === 'Warning')).toBe(true);

    await allowTokenRequests(policy);
    const recovered = (await waitForClient(ns, 'renewing', (c) => readyOf(c)?.reason === 'TokenIssued', {
      timeoutMs: 30_000,
      description: 'Ready=True again',
    })) as FailingClient;
    expect(readyOf(recovered)?.status).toBe('True');
    expect(recovered.status?.failedAttempts).toBeUndefined();
    expect(recovered.status?.lastFailureTime).toBeUndefined();
    const renewed = await readClientToken(ns, 'renewing');
    expect(fingerprint(renewed.token)).not.toBe(heldFp);
    expect((await review(renewed.token as string, renewed.audiences)).authenticated).toBe(true);
    // It renews every 15s: gone before the next test counts TokenRequests.
    await removeClient('renewing');
  });
});

describe('an operator restart during the backoff', () => {
  it('does not bring the next attempt forward: the wait is read from the status', async () => {
    const tier = await createTier(op, 'restart', { level: 10, groups: [group], token: { audiences: [aud] } });
    await waitForTierReady(tier.metadata.name);
    const tierNs = tierNamespace(op, tier.metadata.name);
    const message = `${prefix}: still no tokens in ${tierNs}`;
    const policy = await refuseTokenRequests(tierNs, message);
    await createClient(op, ns, 'restarted', { subject: { user: `restarted@${prefix}.example.com`, groups: [group] }, tierRef: { name: tier.metadata.name } });

    // Three failures (at 0, 5 and 15 s): the next attempt is due 20 s after the third.
    const third = (await waitForClient(ns, 'restarted', (c) => ((c as FailingClient).status?.failedAttempts ?? 0) >= 3, {
      timeoutMs: 40_000,
      description: 'three failed attempts',
    })) as FailingClient;
    expect(third.status?.failedAttempts).toBe(3);
    const dueAt = Date.parse(third.status?.lastFailureTime as string) + 20_000;

    await op.stop();
    const before = await tokenRequests();
    op = await startOperator({ namespacePrefix: prefix, kubeconfig: operatorKubeconfig });
    // The new process reconciles every client at once; none of its TokenRequests may come before dueAt.
    await sleep(Math.max(0, dueAt - 2000 - Date.now()));
    expect(Date.now()).toBeLessThan(dueAt);
    expect((await tokenRequests()) - before, 'TokenRequests after the restart, before the backoff allows one').toBe(0);
    const held = (await getClient(ns, 'restarted')) as FailingClient;
    expect(held.status?.failedAttempts).toBe(3);
    expect(readyOf(held)?.reason).toBe('IssuanceFailed');

    // And it does attempt once the wait is over.
    await waitForClient(ns, 'restarted', (c) => ((c as FailingClient).status?.failedAttempts ?? 0) >= 4, {
      timeoutMs: 15_000,
      description: 'the fourth attempt, after the wait',
    });
    await allowTokenRequests(policy);
  });
});
