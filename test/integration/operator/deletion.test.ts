/**
 * Issue 3, "Done when" 11: deleting a client removes its anchors, its Secret, and the per-user
 * ServiceAccount when it was the last client of that user in the tier, but not before.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { createTestNamespace, waitFor } from '../support/cluster.ts';
import {
  R,
  anchorsOf,
  createClient,
  createTier,
  kube,
  review,
  startOperator,
  waitForClientReady,
  waitForTierReady,
  waitForTokenToFail,
  type OperatorProcess,
} from '../support/operator.ts';

let op: OperatorProcess;
let ns: string;
let aud: string;
let group: string;

beforeAll(async () => {
  op = await startOperator({ name: 'delete' });
  ns = await createTestNamespace(`${op.prefix}-team`);
  aud = `${op.prefix}-gateway`;
  group = `${op.prefix}-users`;
  const tier = await createTier(op, 'std', { level: 10, groups: [group], token: { audiences: [aud] } });
  await waitForTierReady(tier.metadata.name);
});

async function gone(what: string, probe: () => Promise<unknown>): Promise<void> {
  await waitFor(async () => (await probe()) === null, { timeoutMs: 15_000, description: `${what} to be deleted` });
}

describe('11: deleting a client', () => {
  it('removes its anchors and Secret; the ServiceAccount stays while another client of the user remains, and goes with the last', async () => {
    const user = 'leaving@example.com';
    await createClient(op, ns, 'first', { subject: { user, groups: [group] } });
    await createClient(op, ns, 'second', { subject: { user, groups: [group] } });
    const first = await waitForClientReady(ns, 'first');
    const second = await waitForClientReady(ns, 'second');
    const sa = first.client.status?.serviceAccount;
    expect(second.client.status?.serviceAccount).toEqual(sa);
    const firstAnchors = await anchorsOf(first.client.metadata.uid as string);
    expect(firstAnchors.length).toBeGreaterThan(0);

    // Delete the first: its anchors, Secret and token go; the ServiceAccount and the second stay.
    let since = Date.now();
    await kube.remove(R.client, ns, 'first');
    await gone('client first (finalizer released)', () => kube.tryGet(R.client, ns, 'first'));
    await waitForTokenToFail(first.token as string, [aud], { since, timeoutMs: 15_000, what: 'the token of the deleted client' });
    await waitFor(async () => (await anchorsOf(first.client.metadata.uid as string)).length === 0, { timeoutMs: 10_000, description: 'anchors of first deleted' });
    await gone('Secret first-token', () => kube.tryGet(R.secret, ns, 'first-token'));
    const saNow = await kube.tryGet(R.serviceAccount, sa?.namespace, sa?.name as string);
    expect(saNow?.metadata.uid, 'the ServiceAccount, while second remains').toBe(sa?.uid);
    expect(saNow?.metadata.deletionTimestamp).toBeUndefined();
    const r = await review(second.token as string, [aud]);
    expect(r.authenticated, 'second still works').toBe(true);

    // Delete the last client of the user: the ServiceAccount goes too.
    since = Date.now();
    await kube.remove(R.client, ns, 'second');
    await gone('client second (finalizer released)', () => kube.tryGet(R.client, ns, 'second'));
    await waitForTokenToFail(second.token as string, [aud], { since, timeoutMs: 15_000, what: 'the token of the last deleted client' });
    await waitFor(async () => (await anchorsOf(second.client.metadata.uid as string)).length === 0, { timeoutMs: 10_000, description: 'anchors of second deleted' });
    await gone('Secret second-token', () => kube.tryGet(R.secret, ns, 'second-token'));
    await gone(`ServiceAccount ${sa?.namespace}/${sa?.name}`, () => kube.tryGet(R.serviceAccount, sa?.namespace, sa?.name as string));
  });

  it('keeps the ServiceAccount of a user whose other client is in another tenant namespace', async () => {
    const user = 'two-tenants@example.com';
    const other = await createTestNamespace(`${op.prefix}-other`);
    await createClient(op, ns, 'here', { subject: { user, groups: [group] } });
    await createClient(op, other, 'there', { subject: { user, groups: [group] } });
    const here = await waitForClientReady(ns, 'here');
    const there = await waitForClientReady(other, 'there');
    const sa = here.client.status?.serviceAccount;
    expect(there.client.status?.serviceAccount).toEqual(sa);

    await kube.remove(R.client, ns, 'here');
    await gone('client here', () => kube.tryGet(R.client, ns, 'here'));
    await gone('Secret here-token', () => kube.tryGet(R.secret, ns, 'here-token'));
    // Give a wrong cleanup the time to happen, then check the ServiceAccount and the other token.
    await new Promise((resolve) => setTimeout(resolve, 2000));
    expect((await kube.tryGet(R.serviceAccount, sa?.namespace, sa?.name as string))?.metadata.uid).toBe(sa?.uid);
    expect((await review(there.token as string, [aud])).authenticated).toBe(true);
  });
});
