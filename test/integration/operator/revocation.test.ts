/**
 * Issue 3, "Done when" 5, 6 and 7: client revocation (revocationEpoch), subject revocation (an admin
 * deletes the ServiceAccount with kubectl), suspension and resumption. Every token check is an
 * uncached TokenReview with the tier's audience (see support/operator.ts on the 10s authn cache).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { createTestNamespace, kubectl, waitFor } from '../support/cluster.ts';
import {
  R,
  anchorsOf,
  condition,
  createClient,
  createTier,
  fingerprint,
  getClient,
  kube,
  operatorWritesOutsideStatus,
  readClientToken,
  review,
  secretNameOf,
  serviceAccountUser,
  startOperator,
  tierNamespace,
  tokenOf,
  waitForClient,
  waitForClientReady,
  waitForTierReady,
  waitForTokenToFail,
  type OperatorProcess,
  type Secret,
} from '../support/operator.ts';

let op: OperatorProcess;
let ns: string;
let aud: string;
let group: string;
let tierName: string;
let tierNs: string;

beforeAll(async () => {
  op = await startOperator({ name: 'revoke' });
  ns = await createTestNamespace(`${op.prefix}-team`);
  aud = `${op.prefix}-gateway`;
  group = `${op.prefix}-users`;
  const tier = await createTier(op, 'std', {
    level: 10,
    groups: [group],
    token: { audiences: [aud], defaultExpiration: '1h', gracePeriod: '5m' },
  });
  tierName = tier.metadata.name;
  tierNs = tierNamespace(op, tierName);
  await waitForTierReady(tierName);
});

async function mustPass(token: string | undefined, what: string): Promise<void> {
  expect(token, `${what}: a token`).toBeDefined();
  const r = await review(token as string, [aud]);
  expect(r.authenticated, `${what} passes TokenReview (${r.error ?? ''})`).toBe(true);
}

async function mustFail(token: string, what: string): Promise<void> {
  const r = await review(token, [aud]);
  expect(r.authenticated, `${what} fails TokenReview (it authenticated as ${r.username})`).toBe(false);
}

describe('5: raising revocationEpoch', () => {
  it('revokes every earlier token of the client within 2s, leaves the user\'s other client working, and issues a fresh token', async () => {
    const user = 'rev-user@example.com';
    await createClient(op, ns, 'rev-a', { subject: { user, groups: [group] } });
    await createClient(op, ns, 'rev-b', { subject: { user, groups: [group] } });
    const a = await waitForClientReady(ns, 'rev-a');
    const b = await waitForClientReady(ns, 'rev-b');
    await mustPass(a.token, 'rev-a before');
    await mustPass(b.token, 'rev-b before');

    const since = Date.now();
    await kube.patch(R.client, ns, 'rev-a', { spec: { revocationEpoch: 1 } });
    const elapsed = await waitForTokenToFail(a.token as string, [aud], { since, timeoutMs: 10_000, what: 'the earlier token of rev-a' });
    expect(elapsed, 'ms from raising revocationEpoch to the earlier token failing').toBeLessThanOrEqual(2000);

    const after = await waitForClientReady(ns, 'rev-a', {
      extra: (ct) => ct.client.status?.revocationEpoch === 1 && ct.token !== a.token,
      description: 'rev-a with a fresh token and status.revocationEpoch 1',
    });
    await mustPass(after.token, 'the fresh token of rev-a');
    await mustFail(a.token as string, 'the earlier token of rev-a, once reissued');
    expect(after.client.status?.serviceAccount).toEqual(a.client.status?.serviceAccount);
    const anchors = (await anchorsOf(after.client.metadata.uid as string)).map((s) => s.metadata.name);
    expect(anchors).not.toContain(a.client.status?.tokens?.[0]?.id);

    // The same user's other client is untouched.
    const bNow = await readClientToken(ns, 'rev-b');
    expect(fingerprint(bNow.token), 'rev-b keeps its token (fingerprint)').toBe(fingerprint(b.token));
    await mustPass(bNow.token, 'rev-b after rev-a was revoked');
  });

  it('revokes both tokens of a client that is in a grace period', async () => {
    // The client renews every 10s (10m tokens, renewBefore 9m50s) and the tier's grace is 5m, so
    // after the first renewal it holds two valid tokens.
    const user = 'rev-grace@example.com';
    await createClient(op, ns, 'rev-grace', { subject: { user, groups: [group] }, token: { expiration: '10m', renewBefore: '9m50s' } });
    const first = await waitForClientReady(ns, 'rev-grace');
    const second = await waitForClientReady(ns, 'rev-grace', {
      timeoutMs: 30_000,
      extra: (ct) => ct.token !== first.token && (ct.client.status?.tokens?.length ?? 0) >= 2,
      description: 'rev-grace rotated once (two valid tokens)',
    });
    await mustPass(first.token, 'rev-grace token #1 in its grace period');
    await mustPass(second.token, 'rev-grace token #2');

    const since = Date.now();
    await kube.patch(R.client, ns, 'rev-grace', { spec: { revocationEpoch: 1 } });
    const [e1, e2] = await Promise.all([
      waitForTokenToFail(first.token as string, [aud], { since, what: 'rev-grace token #1' }),
      waitForTokenToFail(second.token as string, [aud], { since, what: 'rev-grace token #2' }),
    ]);
    expect(Math.max(e1, e2), 'ms to revoke both').toBeLessThanOrEqual(2000);
    const after = await waitForClientReady(ns, 'rev-grace', {
      extra: (ct) => ct.client.status?.revocationEpoch === 1 && ct.token !== first.token && ct.token !== second.token,
    });
    await mustPass(after.token, 'rev-grace fresh token');
  });
});

describe('6: an admin deletes the ServiceAccount with kubectl', () => {
  it('fails all that user\'s tokens in the tier; the operator recreates it and reissues for every client of the user', async () => {
    const user = 'sa-victim@example.com';
    await createClient(op, ns, 'victim-a', { subject: { user, groups: [group] } });
    await createClient(op, ns, 'victim-b', { subject: { user, groups: [group] }, secretName: 'victim-b-credentials' });
    await createClient(op, ns, 'bystander', { subject: { user: 'sa-bystander@example.com', groups: [group] } });
    const before = await Promise.all(['victim-a', 'victim-b', 'bystander'].map((n) => waitForClientReady(ns, n)));
    const [va, vb, by] = before as [typeof before[0], typeof before[0], typeof before[0]];
    const sa = va.client.status?.serviceAccount;
    expect(sa?.name).toBeDefined();
    expect(vb.client.status?.serviceAccount).toEqual(sa);

    const del = await kubectl(['delete', 'serviceaccount', '-n', tierNs, sa?.name as string, '--wait=false']);
    expect(del.code, del.stderr).toBe(0);

    // All of the user's tokens in the tier fail at once.
    await Promise.all([
      waitForTokenToFail(va.token as string, [aud], { timeoutMs: 2000, what: 'victim-a old token' }),
      waitForTokenToFail(vb.token as string, [aud], { timeoutMs: 2000, what: 'victim-b old token' }),
    ]);

    // The operator recreates the ServiceAccount (a new uid) and reissues for both clients.
    const recreated = await waitFor(async () => {
      const now = await kube.tryGet(R.serviceAccount, tierNs, sa?.name as string);
      return now && now.metadata.uid !== sa?.uid && !now.metadata.deletionTimestamp ? now : undefined;
    }, { timeoutMs: 15_000, description: `ServiceAccount ${tierNs}/${sa?.name} recreated` });
    for (const [name, old] of [['victim-a', va], ['victim-b', vb]] as const) {
      const now = await waitForClientReady(ns, name, {
        timeoutMs: 15_000,
        extra: (ct) => ct.token !== old.token && ct.client.status?.serviceAccount?.uid === recreated.metadata.uid,
        description: `${name} Ready with a token of the recreated ServiceAccount`,
      });
      const r = await review(now.token as string, [aud]);
      expect(r.authenticated, `${name} new token`).toBe(true);
      expect(r.username).toBe(serviceAccountUser(tierNs, sa?.name as string));
      await mustFail(old.token as string, `${name} old token after the ServiceAccount was recreated`);
    }

    // Another user's client in the same tier kept its token, which still works.
    const bystander = await readClientToken(ns, 'bystander');
    expect(fingerprint(bystander.token), 'the bystander keeps its token (fingerprint)').toBe(fingerprint(by.token));
    await mustPass(bystander.token, 'bystander');
  });
});

describe('7: suspend and resume', () => {
  it('suspension revokes the tokens and empties the Secret; resuming issues a new working token', async () => {
    await createClient(op, ns, 'sleepy', { subject: { user: 'sleepy@example.com', groups: [group] } });
    const before = await waitForClientReady(ns, 'sleepy');
    await mustPass(before.token, 'sleepy before suspension');

    const since = Date.now();
    await kube.patch(R.client, ns, 'sleepy', { spec: { suspended: true } });
    const elapsed = await waitForTokenToFail(before.token as string, [aud], { since, what: 'the token of the suspended client' });
    expect(elapsed, 'ms from suspended: true to the token failing').toBeLessThanOrEqual(2000);

    const suspended = await waitForClient(ns, 'sleepy', (c) =>
      condition(c, 'Suspended')?.status === 'True' && c.status?.observedGeneration === c.metadata.generation,
    { description: 'sleepy Suspended=True' });
    expect(condition(suspended, 'Ready')?.status).not.toBe('True');
    await waitFor(async () => {
      const s = await kube.tryGet<Secret>(R.secret, ns, secretNameOf(suspended));
      return tokenOf(s) === undefined;
    }, { timeoutMs: 5000, description: 'the Secret of the suspended client to hold no token' });
    expect(await anchorsOf(suspended.metadata.uid as string)).toEqual([]);
    // It stays that way: no token reappears while suspended.
    await new Promise((r) => setTimeout(r, 3000));
    expect(fingerprint(tokenOf(await kube.tryGet<Secret>(R.secret, ns, secretNameOf(suspended)))), 'no token in the Secret while suspended').toBe('<none>');

    await kube.patch(R.client, ns, 'sleepy', { spec: { suspended: false } });
    const resumed = await waitForClientReady(ns, 'sleepy', {
      extra: (ct) => ct.token !== before.token && condition(ct.client, 'Suspended')?.status === 'False',
      description: 'sleepy resumed with a new token',
    });
    await mustPass(resumed.token, 'sleepy after resuming');
    await mustFail(before.token as string, 'the pre-suspension token after resuming');
    expect(fingerprint(resumed.token)).not.toBe(fingerprint(before.token));
    const latest = await getClient(ns, 'sleepy');
    expect(condition(latest, 'Suspended')?.status).toBe('False');
  });
});

describe('the operator never writes a spec', () => {
  it('by the API server\'s record (managedFields), it wrote only status and finalizers of this file\'s objects', async () => {
    const { offending, checked } = await operatorWritesOutsideStatus(op);
    expect(offending).toEqual([]);
    expect(checked.Tier?.status).toBeGreaterThan(0);
    expect(checked.Tier?.finalizers).toBeGreaterThan(0);
    expect(checked.ServiceAccountClient?.status).toBeGreaterThan(0);
    expect(checked.ServiceAccountClient?.finalizers).toBeGreaterThan(0);
  });
});
