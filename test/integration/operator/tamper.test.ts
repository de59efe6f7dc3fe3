/**
 * Issue 3, "Done when" 10: tampering is repaired within seconds: the client's Secret deleted, its
 * token overwritten with garbage, its anchor Secret deleted.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { createTestNamespace, kubectl } from '../support/cluster.ts';
import {
  ANCHOR_TYPE,
  CLIENT_NAMESPACE_LABEL,
  CLIENT_UID_LABEL,
  R,
  createClient,
  createTier,
  kube,
  review,
  startOperator,
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

beforeAll(async () => {
  op = await startOperator({ name: 'tamper' });
  ns = await createTestNamespace(`${op.prefix}-team`);
  aud = `${op.prefix}-gateway`;
  group = `${op.prefix}-users`;
  const tier = await createTier(op, 'std', { level: 10, groups: [group], token: { audiences: [aud] } });
  await waitForTierReady(tier.metadata.name);
});

async function expectWorking(token: string | undefined, what: string): Promise<void> {
  expect(token, what).toBeDefined();
  const r = await review(token as string, [aud]);
  expect(r.authenticated, `${what} passes TokenReview (${r.error ?? ''})`).toBe(true);
}

describe('10: tampering is repaired', () => {
  it('the client Secret deleted: recreated with a working token', async () => {
    await createClient(op, ns, 'victim-secret', { subject: { user: 'ts@example.com', groups: [group] } });
    const before = await waitForClientReady(ns, 'victim-secret');
    const del = await kubectl(['delete', 'secret', '-n', ns, 'victim-secret-token', '--wait=false']);
    expect(del.code, del.stderr).toBe(0);
    const after = await waitForClientReady(ns, 'victim-secret', {
      timeoutMs: 10_000,
      extra: (ct) => ct.secret !== null && ct.secret.metadata.uid !== before.secret?.metadata.uid,
      description: 'victim-secret-token recreated',
    });
    await expectWorking(after.token, 'the token in the recreated Secret');
    expect(after.secret?.metadata.ownerReferences?.[0]?.uid).toBe(before.client.metadata.uid);
  });

  it('the token overwritten with garbage: repaired with a working token', async () => {
    await createClient(op, ns, 'victim-garbage', { subject: { user: 'tg@example.com', groups: [group] } });
    await waitForClientReady(ns, 'victim-garbage');
    await kube.patch(R.secret, ns, 'victim-garbage-token', { data: { token: Buffer.from('garbage.not-a.jwt').toString('base64') } });
    const after = await waitForClientReady(ns, 'victim-garbage', {
      timeoutMs: 10_000,
      extra: (ct) => ct.token !== 'garbage.not-a.jwt',
      description: 'victim-garbage-token repaired',
    });
    await expectWorking(after.token, 'the repaired token');

    // Another kind of damage: the key removed altogether.
    await kube.patch(R.secret, ns, 'victim-garbage-token', { data: { token: null } });
    const again = await waitForClientReady(ns, 'victim-garbage', { timeoutMs: 10_000, description: 'victim-garbage-token refilled' });
    await expectWorking(again.token, 'the refilled token');
  });

  it('its anchor Secret deleted: the token fails and a new working token is written', async () => {
    await createClient(op, ns, 'victim-anchor', { subject: { user: 'ta@example.com', groups: [group] } });
    const before = await waitForClientReady(ns, 'victim-anchor');
    const tierNs = before.client.status?.serviceAccount?.namespace as string;
    // Found by the contract's labels, as an administrator would (the anchor labels are checked in client.test.ts).
    const anchors = await kube.list<Secret>(R.secret, tierNs, {
      labelSelector: `${CLIENT_NAMESPACE_LABEL}=${ns},${CLIENT_UID_LABEL}=${before.client.metadata.uid}`,
    });
    expect(anchors.map((a) => a.type)).toEqual([ANCHOR_TYPE]);
    const anchor = anchors[0] as Secret;
    expect(anchor.metadata.name).toBe(before.client.status?.tokens?.[0]?.id);

    const since = Date.now();
    const del = await kubectl(['delete', 'secret', '-n', tierNs, anchor.metadata.name, '--wait=false']);
    expect(del.code, del.stderr).toBe(0);
    await waitForTokenToFail(before.token as string, [aud], { since, timeoutMs: 5000, what: 'the token of the deleted anchor' });

    const after = await waitForClientReady(ns, 'victim-anchor', {
      timeoutMs: 10_000,
      extra: (ct) => ct.token !== before.token && ct.client.status?.tokens?.[0]?.id !== anchor.metadata.name,
      description: 'victim-anchor reissued',
    });
    await expectWorking(after.token, 'the new token');
    expect(after.client.status?.tokens?.map((t) => t.id)).not.toContain(anchor.metadata.name);
  });
});
