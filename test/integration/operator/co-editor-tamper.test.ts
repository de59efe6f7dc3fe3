/**
 * Tampering by a co-editor: mallory and alice both have `edit` in a shared namespace, so mallory may
 * write alice's client's Secret. Whatever she does to it, the Secret never keeps a token that is not
 * the one the operator issued, and it is repaired within seconds.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { createTestNamespace, waitFor } from '../support/cluster.ts';
import { API_VERSION, R, clientEvents, createTier, review, startOperator, waitForClientReady, waitForTierReady, type OperatorProcess, type Secret } from '../support/operator.ts';
import { asUser, grantEdit } from '../support/users.ts';

const ALICE = 'alice@example.com';
const MALLORY = 'mallory@example.com';

let op: OperatorProcess;
let ns: string;
let aud: string;

beforeAll(async () => {
  op = await startOperator({ name: 'coedit' });
  ns = await createTestNamespace(`${op.prefix}-shared`);
  aud = `${op.prefix}-gateway`;
  await Promise.all([grantEdit(ns, ALICE), grantEdit(ns, MALLORY)]);
  const tier = await createTier(op, 'std', { level: 10, groups: ['premium-users'], token: { audiences: [aud] } });
  await waitForTierReady(tier.metadata.name);
});

/** Alice's own client, created with her credentials. */
async function aliceClient(name: string): Promise<void> {
  const res = await asUser(ALICE).create(R.client, ns, {
    apiVersion: API_VERSION,
    kind: 'ServiceAccountClient',
    metadata: { name, namespace: ns, labels: { ...op.labels } },
    spec: { subject: { user: ALICE, groups: ['premium-users'] } },
  });
  expect(res.code, res.body.message).toBe(201);
}

async function expectWorking(token: string | undefined, what: string): Promise<void> {
  expect(token, what).toBeDefined();
  const r = await review(token as string, [aud]);
  expect(r.authenticated, `${what} passes TokenReview (${r.error ?? ''})`).toBe(true);
}

describe('a co-editor tampering with alice client Secret', () => {
  it('made immutable by mallory: the operator replaces the Secret with a new one holding a new working token', async () => {
    await aliceClient('alice-svc3');
    const before = await waitForClientReady(ns, 'alice-svc3');
    const mallory = asUser(MALLORY);
    const res = await mallory.patch(R.secret, ns, 'alice-svc3-token', { immutable: true });
    expect(res.code, res.body.message).toBe(200);

    const after = await waitForClientReady(ns, 'alice-svc3', {
      timeoutMs: 15_000,
      // A new, mutable Secret, and the new token's record in status (written just after it).
      extra: (ct) =>
        ct.secret !== null &&
        ct.secret.metadata.uid !== before.secret?.metadata.uid &&
        (ct.secret as Secret & { immutable?: boolean }).immutable !== true &&
        ct.client.status?.tokens?.[0]?.id !== before.client.status?.tokens?.[0]?.id,
      description: 'alice-svc3-token replaced by a mutable Secret',
    });
    await expectWorking(after.token, 'the token in the replaced Secret');
    // The Secret deleted took its token with it: a new one was issued, the old one superseded.
    expect(after.token).not.toBe(before.token);
    expect(after.client.status?.tokens?.[0]?.id).not.toBe(before.client.status?.tokens?.[0]?.id);
    expect(after.secret?.metadata.ownerReferences?.[0]?.uid).toBe(before.client.metadata.uid);
    const told = (await clientEvents(ns, 'alice-svc3')).find((e) => e.reason === 'SecretImmutable');
    expect(told?.type).toBe('Warning');
  });

  it('its token signature replaced by mallory with junk: taken for a token other than the one issued, and repaired with a new working token', async () => {
    await aliceClient('alice-sig');
    const before = await waitForClientReady(ns, 'alice-sig');
    expect(before.client.status?.tokens?.[0]?.digest, 'the digest of the token the operator minted is recorded').toMatch(/^[0-9a-f]{32}$/);
    const [header, claims] = (before.token as string).split('.');
    const forged = `${header}.${claims}.AAAAforged`;
    expect((await review(forged, [aud])).authenticated).toBe(false);

    const mallory = asUser(MALLORY);
    const res = await mallory.patch(R.secret, ns, 'alice-sig-token', { data: { token: Buffer.from(forged).toString('base64') } });
    expect(res.code, res.body.message).toBe(200);

    const after = await waitForClientReady(ns, 'alice-sig', {
      timeoutMs: 15_000,
      // The new token in the Secret, and its record in status (written just after it).
      extra: (ct) => ct.token !== forged && ct.token !== before.token && ct.client.status?.tokens?.[0]?.digest !== before.client.status?.tokens?.[0]?.digest,
      description: 'alice-sig-token repaired with a new token, recorded in status',
    });
    await expectWorking(after.token, 'the repaired token');
    // Repaired as a mismatch, within seconds, not as a renewal falling due.
    await waitFor(async () => (await clientEvents(ns, 'alice-sig')).some((e) => e.reason === 'Repaired' && e.note?.includes('other than the one issued')), {
      timeoutMs: 5000,
      description: 'a Repaired Event for a token other than the one issued',
    });
    expect(after.client.status?.tokens?.[0]?.digest).toMatch(/^[0-9a-f]{32}$/);
    expect(after.client.status?.tokens?.[0]?.digest).not.toBe(before.client.status?.tokens?.[0]?.digest);
    // Nothing in status is the token, or a part of it.
    const status = JSON.stringify(after.client.status);
    for (const part of [after.token as string, ...(after.token as string).split('.')]) expect(status).not.toContain(part);
  });
});
