/**
 * Issue 9, item 1: a client whose token cannot be issued or renewed says so on the object, backs off
 * exponentially (5s, 10s, 20s, 40s, ... at most 1h: src/policy/issuance-backoff.ts) and recovers by
 * itself once the cause is gone.
 *
 * Issuance fails the real way: a ValidatingAdmissionPolicy (admin-applied, bound to one tier
 * namespace) refuses `serviceaccounts/token` CREATE there. The operator runs as a ServiceAccount of
 * its own (support/writes.ts), and a FlowSchema of this file that matches only that identity's
 * TokenRequests counts them: one persistently refused client costs a handful over a minute.
 *
 * A restart of the operator does not shorten the wait: it is read from the client's status.
 *
 * Token values are never printed: tokens are compared by fingerprint.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestNamespace, kubectl, waitFor } from '../support/cluster.ts';
import {
  R,
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
import { countedTokenRequests, tokenRequestRefusals } from './support/token-request-refusal.ts';

type FailingClient = Client & { status?: Client['status'] & { failedAttempts?: number; lastFailureTime?: string } };

/** Attempts the backoff allows from a first failure at 0s: at 0, 5, 15, 35 s (the next one at 75 s). */
const ATTEMPTS_IN_A_MINUTE = 4;
const WINDOW_MS = 60_000;

const prefix = uniquePrefix('ifail');
let op: OperatorProcess;
let ns: string;
let aud: string;
let group: string;
let operatorKubeconfig: string;

const refusals = tokenRequestRefusals(prefix);
let tokenRequests: () => Promise<number>;
const refuseTokenRequests = (namespace: string, message: string) => refusals.refuse(namespace, message);
const allowTokenRequests = (name: string) => refusals.allow(name);

beforeAll(async () => {
  const counter = await countedTokenRequests(prefix);
  tokenRequests = () => counter.tokenRequests();
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
    await createClient(op, ns, 'refused', { subject: { user: `refused@${prefix}.example.com`, groups: [group] } });
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

    // A minute of a persistently refused client.
    await sleep(Math.max(0, started + WINDOW_MS - Date.now()));
    const sent = (await tokenRequests()) - before;
    const during = (await getClient(ns, 'refused')) as FailingClient;
    expect(readyOf(during)?.reason).toBe('IssuanceFailed');
    expect(sent, `TokenRequests in ${WINDOW_MS / 1000}s`).toBeGreaterThanOrEqual(ATTEMPTS_IN_A_MINUTE - 1);
    expect(sent, `TokenRequests in ${WINDOW_MS / 1000}s`).toBeLessThanOrEqual(ATTEMPTS_IN_A_MINUTE + 1);
    expect(during.status?.failedAttempts).toBe(sent);

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
    await waitFor(async () => ((await clientEvents(ns, 'refused')).some((e) => e.reason === 'Recovered' && e.type === 'Normal') ? true : undefined), {
      timeoutMs: 10_000,
      description: 'a Recovered Event',
    });
    await removeClient('refused');
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
