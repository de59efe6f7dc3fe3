/**
 * A renamed spec.secretName removes the Secret under the former name, only when it is the client's
 * own, and revokes (not rotates) the token that was delivered there: whoever could read the former
 * Secret must not keep a valid token for the grace period.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { createTestNamespace, waitFor } from '../support/cluster.ts';
import { MANAGED_BY, R, condition, createClient, getClient, createTier, fingerprint, kube, review, scopedName, startOperator, tokenOf, waitForClientReady, waitForTierReady, waitForTokenToFail, type OperatorProcess, type Secret } from '../support/operator.ts';

let op: OperatorProcess;
let ns: string;
let aud: string;

beforeAll(async () => {
  op = await startOperator({ name: 'rename' });
  ns = await createTestNamespace(`${op.prefix}-team`);
  aud = `${op.prefix}-gateway`;
  await createTier(op, 'std', { level: 10, default: true, token: { audiences: [aud] } });
  await waitForTierReady(scopedName(op, 'std'));
});

describe('renaming spec.secretName', () => {
  it('moves the token to the new Secret and deletes the former one', async () => {
    await createClient(op, ns, 'renamed', { subject: { user: 'rn@example.com' }, secretName: 'first-name' });
    const before = await waitForClientReady(ns, 'renamed');
    expect(before.secret?.metadata.name).toBe('first-name');
    await kube.patch(R.client, ns, 'renamed', { spec: { secretName: 'second-name' } });
    const renamedAt = Date.now();
    // Revoked, not kept for the tier's grace period (5m by default) as a rotation would.
    expect(await waitForTokenToFail(before.token as string, [aud], { since: renamedAt, timeoutMs: 5_000, what: 'the token left at the former name' })).toBeLessThan(5_000);
    const after = await waitForClientReady(ns, 'renamed', { extra: (ct) => ct.client.status?.secretName === 'second-name' });
    expect(after.client.status?.tokens?.map((t) => t.id)).toEqual([after.client.status?.tokens?.[0]?.id]);
    expect((await review(after.token as string, [aud])).authenticated).toBe(true);
    await waitFor(async () => (await kube.tryGet(R.secret, ns, 'first-name')) === null, { timeoutMs: 10_000, description: 'the Secret under the former name deleted' });
    expect(fingerprint(tokenOf(await kube.get<Secret>(R.secret, ns, 'second-name')))).toBe(fingerprint(after.token));
  });

  it('revokes the token at the former name even when the new name is someone else\'s Secret', async () => {
    await createClient(op, ns, 'renamed-3', { subject: { user: 'rn3@example.com' }, secretName: 'third-name' });
    const before = await waitForClientReady(ns, 'renamed-3');
    // Labelled as tokenwarden's, so the operator's cache holds it and the claim sees the conflict first.
    await kube.create(R.secret, ns, { type: 'Opaque', metadata: { name: 'taken-name', labels: { [MANAGED_BY]: 'tokenwarden' } }, data: {} });
    await kube.patch(R.client, ns, 'renamed-3', { spec: { secretName: 'taken-name' } });
    const renamedAt = Date.now();
    expect(await waitForTokenToFail(before.token as string, [aud], { since: renamedAt, timeoutMs: 5_000, what: 'the token left at the former name' })).toBeLessThan(5_000);
    await waitFor(async () => condition(await getClient(ns, 'renamed-3'), 'Ready')?.reason === 'SecretConflict', { timeoutMs: 10_000, description: 'SecretConflict' });
    expect((await kube.get<Secret>(R.secret, ns, 'taken-name')).data ?? {}).toEqual({});
  });

  it('leaves a Secret under the former name alone when it is not the client\'s', async () => {
    await createClient(op, ns, 'renamed-2', { subject: { user: 'rn2@example.com' }, secretName: 'owned-name' });
    await waitForClientReady(ns, 'renamed-2');
    // Another object takes control of the Secret in one patch (the operator never touches a Secret
    // another object controls, so nothing races this), then the client is renamed away from it.
    const owner = await kube.create({ group: '', version: 'v1', plural: 'configmaps', namespaced: true }, ns, { metadata: { name: 'other-owner' } });
    await kube.patch(R.secret, ns, 'owned-name', {
      metadata: { ownerReferences: [{ apiVersion: 'v1', kind: 'ConfigMap', name: 'other-owner', uid: owner.metadata.uid, controller: true }] },
    });
    await waitFor(async () => condition(await getClient(ns, 'renamed-2'), 'Ready')?.reason === 'SecretConflict', { timeoutMs: 10_000, description: 'SecretConflict' });
    await kube.patch(R.client, ns, 'renamed-2', { spec: { secretName: 'new-name' } });
    await waitForClientReady(ns, 'renamed-2', { extra: (ct) => ct.client.status?.secretName === 'new-name' });
    const former = await kube.get<Secret>(R.secret, ns, 'owned-name');
    expect(former.metadata.ownerReferences?.map((r) => r.uid)).toEqual([owner.metadata.uid]);
    // Left alone, but the token in it no longer works.
    expect((await review(tokenOf(former) as string, [aud])).authenticated).toBe(false);
  });
});
