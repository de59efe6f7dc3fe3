/**
 * Issue 8: proven identity. Every request here is made through the users' own credentials (the
 * contexts alice@example.com, bob@example.com, mallory@example.com of the test kubeconfig, and a
 * GitOps ServiceAccount's token), never as admin, except the setup an admin does (namespaces, Tiers,
 * RoleBindings) and the checks a gateway does (TokenReview).
 *
 * 1. mallory may create clients in her namespace: declaring alice, or a group she lacks, is refused;
 *    declaring herself is accepted and gets the default tier.
 * 2. alice declaring herself with her real groups gets a premium token.
 * 3. A GitOps ServiceAccount declares any subject with the delegation grant, nobody without it, and
 *    only the named users with a grant scoped by resourceNames.
 * 4. Changing spec.subject is checked like a create; an editor cannot re-point someone else's client
 *    at themselves; the operator's finalizer and status writes pass.
 * 4a. Every other spec edit re-proves the subject too: where the token goes (secretName,
 *    secretTemplate) only the subject or a delegate may change; after alice left premium-users she
 *    cannot extend, renew by spec or retarget her premium client, but anyone who may edit it can
 *    still suspend it, raise revocationEpoch or delete it.
 * 5. A TenantBinding needs `bind` on its tier.
 * 6. A look-alike anchor revokes nothing, and the operator makes no write for it.
 * 7. The operator's own identity is fenced (manifests/operator-fence.yaml).
 * 8. No Pod runs in a tier namespace.
 */
import { KubeConfig } from '@kubernetes/client-node';
import { beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { createTestNamespace, waitFor } from './support/cluster.ts';
import { adminRequest } from './support/crds.ts';
import {
  API_VERSION,
  CLIENT_NAMESPACE_LABEL,
  CLIENT_UID_LABEL,
  MANAGED_BY,
  R,
  TIER_LABEL,
  anchorsOf,
  condition,
  createTier,
  expectedServiceAccountName,
  fingerprint,
  getClient,
  kube,
  resourcePath,
  review,
  scopedName,
  sleep,
  startOperator,
  tierNamespace,
  uniquePrefix,
  waitForClientReady,
  waitForTokenToFail,
  waitForTierReady,
  type Client,
  type ClientSpec,
  type KObject,
  type OperatorProcess,
} from './support/operator.ts';
import { operatorServiceAccountKubeconfig, serviceAccountToken, serviceAccountUser, tokenKubeconfig } from './support/rbac.ts';
import { asUser, restAs, userMay, type Answer, type Rest } from './support/users.ts';
import { countedIdentity, delta, type CountedIdentity } from './support/writes.ts';

const ALICE = 'alice@example.com';
const BOB = 'bob@example.com';
const MALLORY = 'mallory@example.com';
/** alice as the identity provider reports her after she left premium-users (launcher.ts: same user, fewer groups). */
const ALICE_LEFT_PREMIUM = 'alice@example.com/left-premium-users';

const fromFile = (file: string): Rest => {
  const kc = new KubeConfig();
  kc.loadFromFile(file);
  return restAs(kc);
};

let op: OperatorProcess;
let counted: CountedIdentity;
let aud: string;
let free: string;
let premium: string;
let malloryNs: string;
let aliceNs: string;
let sharedNs: string;
let gitopsNs: string;
let gitops: { rest: Rest; user: string };

const clientBody = (namespace: string, name: string, spec: ClientSpec) => ({
  apiVersion: API_VERSION,
  kind: 'ServiceAccountClient',
  metadata: { name, namespace, labels: { ...op.labels } },
  spec,
});

/** Admin: a RoleBinding of `role` (a ClusterRole, or a Role with kind) in `namespace` for `subject`. */
async function bindRole(namespace: string, name: string, role: { kind: 'ClusterRole' | 'Role'; name: string }, subject: Record<string, string>): Promise<void> {
  await kube.create(R.roleBinding, namespace, {
    metadata: { name },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', ...role },
    subjects: [subject],
  });
}
const userSubject = (name: string) => ({ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name });

const waitUntilMay = (user: string, groups: string[], attrs: Record<string, string>) =>
  waitFor(() => userMay(user, attrs, groups), { timeoutMs: 15_000, description: `${user} allowed ${JSON.stringify(attrs)}` });
const waitUntilMayNot = (user: string, groups: string[], attrs: Record<string, string>) =>
  waitFor(async () => !(await userMay(user, attrs, groups)), { timeoutMs: 15_000, description: `${user} no longer allowed ${JSON.stringify(attrs)}` });

const createSac = { verb: 'create', group: 'tokenwarden.io', resource: 'serviceaccountclients' };

/** The admission refusal: 403 from the policy, with the message the issue asks for. */
function expectRefused(res: Answer, policy: string, ...parts: string[]): void {
  expect(res.code, JSON.stringify(res.body)).toBe(403);
  expect(res.body.message).toContain(policy);
  for (const part of parts) expect(res.body.message).toContain(part);
}

beforeAll(async () => {
  const prefix = uniquePrefix('trust');
  counted = await countedIdentity(prefix);
  op = await startOperator({ namespacePrefix: prefix, kubeconfig: counted.kubeconfig });
  aud = `${prefix}-gateway`;
  free = scopedName(op, 'free');
  premium = scopedName(op, 'premium');
  await createTier(op, 'free', { level: 10, default: true, token: { audiences: [aud] } });
  await createTier(op, 'premium', { level: 20, groups: ['premium-users'], token: { audiences: [aud] } });
  [malloryNs, aliceNs, sharedNs, gitopsNs] = (await Promise.all(['mallory', 'alice', 'shared', 'gitops'].map((n) => createTestNamespace(`trust-${n}`)))) as [string, string, string, string];
  // Namespace editors through the built-in `edit` role, which the aggregation controller extends
  // with access/user-roles.yaml's tokenwarden-edit.
  const edit = { kind: 'ClusterRole', name: 'edit' } as const;
  await bindRole(malloryNs, 'mallory-edit', edit, userSubject(MALLORY));
  await bindRole(aliceNs, 'alice-edit', edit, userSubject(ALICE));
  await bindRole(sharedNs, 'alice-edit', edit, userSubject(ALICE));
  await bindRole(sharedNs, 'bob-edit', edit, userSubject(BOB));
  await kube.create(R.serviceAccount, gitopsNs, { metadata: { name: 'gitops' } });
  const gitopsUser = serviceAccountUser(gitopsNs, 'gitops');
  await bindRole(sharedNs, 'gitops-edit', edit, { kind: 'ServiceAccount', name: 'gitops', namespace: gitopsNs });
  gitops = { rest: fromFile(tokenKubeconfig(await serviceAccountToken(gitopsNs, 'gitops'), gitopsUser)), user: gitopsUser };
  await Promise.all([
    waitUntilMay(MALLORY, [], { ...createSac, namespace: malloryNs }),
    waitUntilMay(ALICE, [], { ...createSac, namespace: aliceNs }),
    waitUntilMay(ALICE, [], { ...createSac, namespace: sharedNs }),
    waitUntilMay(BOB, [], { ...createSac, namespace: sharedNs }),
    waitUntilMay(gitopsUser, ['system:serviceaccounts', `system:serviceaccounts:${gitopsNs}`], { ...createSac, namespace: sharedNs }),
    waitForTierReady(free),
    waitForTierReady(premium),
  ]);
}, 180_000);

describe('a client for yourself, and only for yourself', () => {
  it('mallory: declaring alice is refused, declaring a group she lacks is refused, declaring herself gets the default tier', async () => {
    const mallory = asUser(MALLORY);
    const asAlice = await mallory.create(R.client, malloryNs, clientBody(malloryNs, 'as-alice', { subject: { user: ALICE, groups: ['premium-users'] } }));
    expectRefused(
      asAlice,
      'tokenwarden-client-subject',
      `spec.subject.user: "${ALICE}" is not the requester "${MALLORY}"; declaring another subject needs the verb impersonate on tokenwarden.io users/${ALICE}`,
    );
    const withGroup = await mallory.create(R.client, malloryNs, clientBody(malloryNs, 'with-group', { subject: { user: MALLORY, groups: ['premium-users'] } }));
    expectRefused(withGroup, 'tokenwarden-client-subject', `spec.subject.groups: "premium-users" not among the groups of the requester "${MALLORY}"`);
    // More than eight groups not her own are refused by count, with what would allow them.
    const nine = Array.from({ length: 9 }, (_, i) => `g-${i}`);
    expectRefused(
      await mallory.create(R.client, malloryNs, clientBody(malloryNs, 'nine-groups', { subject: { user: MALLORY, groups: nine } })),
      'tokenwarden-client-subject',
      `spec.subject.groups: 9 groups are not among the groups of the requester "${MALLORY}"; more than 8 such groups need the verb impersonate on every tokenwarden.io group`,
    );
    // Nothing of either was stored.
    expect((await kube.tryGet(R.client, malloryNs, 'as-alice')) === null && (await kube.tryGet(R.client, malloryNs, 'with-group')) === null).toBe(true);

    const herself = await mallory.create(R.client, malloryNs, clientBody(malloryNs, 'herself', { subject: { user: MALLORY } }));
    expect(herself.code, JSON.stringify(herself.body)).toBe(201);
    const ct = await waitForClientReady(malloryNs, 'herself');
    expect(ct.client.status?.tier).toBe(free);
    expect(ct.client.status?.tierReason).toBe('Default');
    const who = await review(ct.token as string, [aud]);
    expect(who.username).toBe(serviceAccountUser(tierNamespace(op, free), expectedServiceAccountName(MALLORY)));
  });

  it('alice: declaring herself with her real groups gets her premium token', async () => {
    const res = await asUser(ALICE).create(R.client, aliceNs, clientBody(aliceNs, 'notebook', { subject: { user: ALICE, groups: ['premium-users'] } }));
    expect(res.code, JSON.stringify(res.body)).toBe(201);
    const ct = await waitForClientReady(aliceNs, 'notebook');
    expect(ct.client.status?.tier).toBe(premium);
    const who = await review(ct.token as string, [aud]);
    expect(who.authenticated).toBe(true);
    expect(who.username).toBe(serviceAccountUser(tierNamespace(op, premium), expectedServiceAccountName(ALICE)));
  });
});

describe('a GitOps ServiceAccount speaks for others only with the delegation grant', () => {
  const gitopsGroups = () => ['system:serviceaccounts', `system:serviceaccounts:${gitopsNs}`];
  const impersonate = (resource: string, name: string) => ({ verb: 'impersonate', group: 'tokenwarden.io', resource, name, namespace: sharedNs });

  it('without the grant: refused; with tokenwarden-subject-delegate: any subject; with a grant naming bob: bob only', async () => {
    const declareAlice = clientBody(sharedNs, 'gitops-alice', { subject: { user: ALICE, groups: ['premium-users'] } });
    expectRefused(
      await gitops.rest.create(R.client, sharedNs, declareAlice),
      'tokenwarden-client-subject',
      `spec.subject.user: "${ALICE}" is not the requester "${gitops.user}"`,
    );

    await bindRole(sharedNs, 'gitops-delegate', { kind: 'ClusterRole', name: 'tokenwarden-subject-delegate' }, { kind: 'ServiceAccount', name: 'gitops', namespace: gitopsNs });
    await waitUntilMay(gitops.user, gitopsGroups(), impersonate('groups', 'premium-users'));
    const accepted = await gitops.rest.create(R.client, sharedNs, declareAlice);
    expect(accepted.code, JSON.stringify(accepted.body)).toBe(201);
    const ct = await waitForClientReady(sharedNs, 'gitops-alice');
    expect(ct.client.status?.tier).toBe(premium);
    // However many groups: one authorizer check covers them all (CEL allows only two per expression).
    const many = Array.from({ length: 12 }, (_, i) => `team-${i}`);
    const manyGroups = await gitops.rest.create(R.client, sharedNs, clientBody(sharedNs, 'gitops-many', { subject: { user: BOB, groups: many } }));
    expect(manyGroups.code, JSON.stringify(manyGroups.body)).toBe(201);

    // Only some users: a Role with resourceNames, instead of the delegate role.
    await kube.remove(R.roleBinding, sharedNs, 'gitops-delegate');
    await kube.create({ ...R.roleBinding, plural: 'roles' }, sharedNs, {
      metadata: { name: 'gitops-declares-bob' },
      rules: [
        { apiGroups: ['tokenwarden.io'], resources: ['users'], verbs: ['impersonate'], resourceNames: [BOB] },
        { apiGroups: ['tokenwarden.io'], resources: ['groups'], verbs: ['impersonate'], resourceNames: ['free-users', 'team-1', 'team-2', 'team-3'] },
      ],
    });
    await bindRole(sharedNs, 'gitops-declares-bob', { kind: 'Role', name: 'gitops-declares-bob' }, { kind: 'ServiceAccount', name: 'gitops', namespace: gitopsNs });
    await waitUntilMayNot(gitops.user, gitopsGroups(), impersonate('users', ALICE));
    await waitUntilMay(gitops.user, gitopsGroups(), impersonate('users', BOB));
    const bob = await gitops.rest.create(R.client, sharedNs, clientBody(sharedNs, 'gitops-bob', { subject: { user: BOB, groups: ['free-users'] } }));
    expect(bob.code, JSON.stringify(bob.body)).toBe(201);
    // Groups granted one by one are checked one by one, four of them within CEL's cost limits.
    const named = await gitops.rest.create(R.client, sharedNs, clientBody(sharedNs, 'gitops-bob-teams', { subject: { user: BOB, groups: ['free-users', 'team-1', 'team-2', 'team-3'] } }));
    expect(named.code, JSON.stringify(named.body)).toBe(201);
    expectRefused(
      await gitops.rest.create(R.client, sharedNs, { ...declareAlice, metadata: { ...declareAlice.metadata, name: 'gitops-alice-2' } }),
      'tokenwarden-client-subject',
      `tokenwarden.io users/${ALICE}`,
    );
    // A group the grant does not name is refused even for a user it does.
    expectRefused(
      await gitops.rest.create(R.client, sharedNs, clientBody(sharedNs, 'gitops-bob-premium', { subject: { user: BOB, groups: ['premium-users'] } })),
      'tokenwarden-client-subject',
      'spec.subject.groups: "premium-users" declared for another user',
    );
    await waitForClientReady(sharedNs, 'gitops-bob');
  });
});

describe('changing the subject of a client', () => {
  it('is checked like a create; an editor cannot re-point alice\'s client at himself; other edits and the operator\'s writes pass', async () => {
    const alice = asUser(ALICE);
    const bob = asUser(BOB);
    const created = await alice.create(R.client, sharedNs, clientBody(sharedNs, 'alice-shared', { subject: { user: ALICE } }));
    expect(created.code, JSON.stringify(created.body)).toBe(201);
    // The operator's finalizer patch and status writes pass the policy: the client becomes Ready.
    const ready = await waitForClientReady(sharedNs, 'alice-shared');
    expect(ready.client.metadata.finalizers).toContain('tokenwarden.io/revoke-tokens');

    expectRefused(
      await bob.patch(R.client, sharedNs, 'alice-shared', { spec: { subject: { user: BOB } } }),
      'tokenwarden-client-subject',
      `spec.subject: the client belongs to "${ALICE}", not to the requester "${BOB}"`,
    );
    // alice widening her own client to a group she lacks is checked like a create.
    expectRefused(
      await alice.patch(R.client, sharedNs, 'alice-shared', { spec: { subject: { user: ALICE, groups: ['free-users'] } } }),
      'tokenwarden-client-subject',
      'spec.subject.groups: "free-users"',
    );
    // Raising revocationEpoch only takes away: any editor may.
    const edited = await bob.patch<Client>(R.client, sharedNs, 'alice-shared', { spec: { revocationEpoch: 1 } });
    expect(edited.code, JSON.stringify(edited.body)).toBe(200);
    const after = await waitForClientReady(sharedNs, 'alice-shared', { extra: (ct) => ct.client.status?.revocationEpoch === 1 });
    expect(after.client.spec.subject.user).toBe(ALICE);
    expect(fingerprint(after.token)).not.toBe(fingerprint(ready.token));
    // alice adding a group she has is fine.
    const own = await alice.patch(R.client, sharedNs, 'alice-shared', { spec: { subject: { user: ALICE, groups: ['premium-users'] } } });
    expect(own.code, JSON.stringify(own.body)).toBe(200);
    await waitForClientReady(sharedNs, 'alice-shared', { extra: (ct) => ct.client.status?.tier === premium });
  });
});

describe('every edit of a client re-proves its subject', () => {
  let teamNs: string;
  const secretOf = async (namespace: string, name: string) => kube.tryGet<KObject & { data?: Record<string, string> }>(R.secret, namespace, name);

  beforeAll(async () => {
    // alice's team namespace: bob and mallory edit it too (the built-in edit role, which also reads
    // its Secrets); the GitOps ServiceAccount edits it and may speak for bob only.
    teamNs = await createTestNamespace('trust-team');
    const edit = { kind: 'ClusterRole', name: 'edit' } as const;
    await bindRole(teamNs, 'alice-edit', edit, userSubject(ALICE));
    await bindRole(teamNs, 'bob-edit', edit, userSubject(BOB));
    await bindRole(teamNs, 'mallory-edit', edit, userSubject(MALLORY));
    await bindRole(teamNs, 'gitops-edit', edit, { kind: 'ServiceAccount', name: 'gitops', namespace: gitopsNs });
    await kube.create({ ...R.roleBinding, plural: 'roles' }, teamNs, {
      metadata: { name: 'gitops-declares-bob' },
      rules: [{ apiGroups: ['tokenwarden.io'], resources: ['users'], verbs: ['impersonate'], resourceNames: [BOB] }],
    });
    await bindRole(teamNs, 'gitops-declares-bob', { kind: 'Role', name: 'gitops-declares-bob' }, { kind: 'ServiceAccount', name: 'gitops', namespace: gitopsNs });
    await Promise.all([
      ...[ALICE, BOB, MALLORY].map((u) => waitUntilMay(u, [], { ...createSac, namespace: teamNs })),
      waitUntilMay(gitops.user, ['system:serviceaccounts', `system:serviceaccounts:${gitopsNs}`], { verb: 'impersonate', group: 'tokenwarden.io', resource: 'users', name: BOB, namespace: teamNs }),
    ]);
  }, 60_000);

  it('where the token goes: bob and mallory cannot redirect alice\'s token to a Secret or replicator of theirs; alice can, and the token left at the old name is revoked within 5 s', async () => {
    const alice = asUser(ALICE);
    expect((await alice.create(R.client, teamNs, clientBody(teamNs, 'delivered', { subject: { user: ALICE } }))).code).toBe(201);
    const ready = await waitForClientReady(teamNs, 'delivered');
    const stolenName = 'where-bob-reads';
    for (const [who, rest] of [[BOB, asUser(BOB)], [MALLORY, asUser(MALLORY)], [gitops.user, gitops.rest]] as const) {
      expectRefused(
        await rest.patch(R.client, teamNs, 'delivered', { spec: { secretName: stolenName } }),
        'tokenwarden-client-subject',
        `spec.subject.user: "${ALICE}" is not the requester "${who}"; editing a client (anything but suspending it or raising revocationEpoch) needs the verb impersonate on tokenwarden.io users/${ALICE}`,
      );
      expectRefused(
        await rest.patch(R.client, teamNs, 'delivered', { spec: { secretTemplate: { annotations: { 'replicator.example.com/replicate-to': malloryNs } } } }),
        'tokenwarden-client-subject',
        `is not the requester "${who}"`,
      );
    }
    const unchanged = await getClient(teamNs, 'delivered');
    expect(unchanged.metadata.generation).toBe(ready.client.metadata.generation);
    expect(await secretOf(teamNs, stolenName)).toBeNull();

    // alice herself may move it, and the token left under the old name stops working at once.
    const moved = await alice.patch(R.client, teamNs, 'delivered', { spec: { secretName: 'delivered-elsewhere', secretTemplate: { annotations: { note: 'moved' } } } });
    expect(moved.code, JSON.stringify(moved.body)).toBe(200);
    const movedAt = Date.now();
    const failedAfter = await waitForTokenToFail(ready.token as string, [aud], { since: movedAt, timeoutMs: 5_000, what: 'the token left at the old name' });
    expect(failedAfter).toBeLessThan(5_000);
    const after = await waitForClientReady(teamNs, 'delivered', { extra: (ct) => ct.client.status?.secretName === 'delivered-elsewhere' });
    expect(after.secret?.metadata.annotations?.note).toBe('moved');
    expect((await review(after.token as string, [aud])).authenticated).toBe(true);
  });

  it('a delegate edits the clients of the users it speaks for, and only those', async () => {
    const created = await gitops.rest.create(R.client, teamNs, clientBody(teamNs, 'bob-by-gitops', { subject: { user: BOB } }));
    expect(created.code, JSON.stringify(created.body)).toBe(201);
    const edited = await gitops.rest.patch(R.client, teamNs, 'bob-by-gitops', { spec: { secretName: 'bob-by-gitops-moved', token: { expiration: '2h' } } });
    expect(edited.code, JSON.stringify(edited.body)).toBe(200);
    // bob is no delegate of his own client's other edits either way: he is its subject.
    expect((await asUser(BOB).patch(R.client, teamNs, 'bob-by-gitops', { spec: { token: { expiration: '3h' } } })).code).toBe(200);
  });

  it('after alice left premium-users she cannot extend, renew by spec or retarget her premium client; she and every editor can still suspend, revoke and delete it', async () => {
    const alice = asUser(ALICE);
    const aliceNow = asUser(ALICE_LEFT_PREMIUM);
    const created = await alice.create(R.client, teamNs, clientBody(teamNs, 'premium-by-group', { subject: { user: ALICE, groups: ['premium-users'] }, token: { expiration: '1h' } }));
    expect(created.code, JSON.stringify(created.body)).toBe(201);
    const ready = await waitForClientReady(teamNs, 'premium-by-group');
    expect(ready.client.status?.tier).toBe(premium);
    expect(ready.client.status?.tierReason).toBe(`Tier/${premium}`);

    const stale = (res: Answer) =>
      expectRefused(res, 'tokenwarden-client-subject', `spec.subject.groups: "premium-users" not among the groups of the requester "${ALICE}"`);
    stale(await aliceNow.patch(R.client, teamNs, 'premium-by-group', { spec: { token: { expiration: '24h' } } }));
    stale(await aliceNow.patch(R.client, teamNs, 'premium-by-group', { spec: { secretName: 'premium-elsewhere' } }));
    stale(await aliceNow.patch(R.client, teamNs, 'premium-by-group', { spec: { tierRef: { name: premium } } }));
    stale(await aliceNow.patch(R.client, teamNs, 'premium-by-group', { metadata: { annotations: { 'tokenwarden.io/subject-proof': 'now' } } }));
    expect((await getClient(teamNs, 'premium-by-group')).metadata.generation).toBe(ready.client.metadata.generation);

    // What only takes away stays open: a raised revocationEpoch, by alice and by another editor.
    const revoked = await aliceNow.patch(R.client, teamNs, 'premium-by-group', { spec: { revocationEpoch: 1 } });
    expect(revoked.code, JSON.stringify(revoked.body)).toBe(200);
    await waitForTokenToFail(ready.token as string, [aud], { timeoutMs: 10_000, what: 'the token revoked by the epoch' });
    expect((await asUser(MALLORY).patch(R.client, teamNs, 'premium-by-group', { spec: { revocationEpoch: 2 } })).code).toBe(200);
    // Suspending, with the epoch raised in the same request.
    const suspended = await aliceNow.patch(R.client, teamNs, 'premium-by-group', { spec: { suspended: true, revocationEpoch: 3 } });
    expect(suspended.code, JSON.stringify(suspended.body)).toBe(200);
    // Resuming renews by spec: it gives a new token, so it re-proves the subject.
    stale(await aliceNow.patch(R.client, teamNs, 'premium-by-group', { spec: { suspended: false } }));
    // Dropping the group she lost is a subject she can prove.
    expect((await aliceNow.patch(R.client, teamNs, 'premium-by-group', { spec: { subject: { user: ALICE, groups: [] } } })).code).toBe(200);
    // And deleting it is open to any editor.
    const deleted = await asUser(BOB).remove(R.client, teamNs, 'premium-by-group');
    expect(deleted.code, JSON.stringify(deleted.body)).toBe(200);
    await waitFor(async () => (await kube.tryGet(R.client, teamNs, 'premium-by-group')) === null, { timeoutMs: 15_000, description: 'the client gone' });
  });

  it('alice, still in premium-users, edits and re-proves her client; bob may suspend it but not resume it', async () => {
    const alice = asUser(ALICE);
    expect((await alice.create(R.client, teamNs, clientBody(teamNs, 'premium-kept', { subject: { user: ALICE, groups: ['premium-users'] } }))).code).toBe(201);
    await waitForClientReady(teamNs, 'premium-kept');
    expect((await alice.patch(R.client, teamNs, 'premium-kept', { spec: { token: { expiration: '4h' } } })).code).toBe(200);
    expect((await alice.patch(R.client, teamNs, 'premium-kept', { metadata: { annotations: { 'tokenwarden.io/subject-proof': 'again' } } })).code).toBe(200);
    const bob = asUser(BOB);
    expect((await bob.patch(R.client, teamNs, 'premium-kept', { spec: { suspended: true } })).code).toBe(200);
    expectRefused(await bob.patch(R.client, teamNs, 'premium-kept', { spec: { suspended: false } }), 'tokenwarden-client-subject', `is not the requester "${BOB}"`);
    // Other metadata (labels, the renewal annotation) is no proof and not checked.
    expect((await bob.patch(R.client, teamNs, 'premium-kept', { metadata: { labels: { team: 'ml' } } })).code).toBe(200);
    expect((await alice.patch(R.client, teamNs, 'premium-kept', { spec: { suspended: false } })).code).toBe(200);
    await waitForClientReady(teamNs, 'premium-kept', { extra: (ct) => ct.client.status?.tier === premium });
  });
});

describe('a group grant lasts groupGrantMaxAge after the subject was last proven', () => {
  it('the client falls back, with a condition, until alice proves it again; an editor who is not alice cannot', async () => {
    const maxAge = 15;
    await createTier(op, 'aging', { level: 25, groups: ['ml-engineers'], groupGrantMaxAge: `${maxAge}s`, token: { audiences: [aud] } });
    const aging = scopedName(op, 'aging');
    await waitForTierReady(aging);
    const alice = asUser(ALICE_LEFT_PREMIUM); // still in ml-engineers
    const created = await alice.create(R.client, sharedNs, clientBody(sharedNs, 'aging-grant', { subject: { user: ALICE, groups: ['ml-engineers'] } }));
    expect(created.code, JSON.stringify(created.body)).toBe(201);
    const fresh = await waitForClientReady(sharedNs, 'aging-grant', { extra: (ct) => ct.client.status?.tier === aging });
    expect(fresh.client.status?.tierReason).toBe(`Tier/${aging}`);
    expect(condition(fresh.client, 'GroupGrantExpired')).toMatchObject({ status: 'False', reason: 'Proven' });
    expect(fresh.client.status?.subjectProof?.provenAt).toBe(fresh.client.metadata.creationTimestamp);
    const createdAt = Date.parse(fresh.client.metadata.creationTimestamp as string);

    // Past the maximum age: as if the tier's groups did not apply, so the default tier, and the old
    // tier's token revoked.
    const stale = await waitForClientReady(sharedNs, 'aging-grant', { timeoutMs: (maxAge + 20) * 1000, extra: (ct) => ct.client.status?.tier === free });
    expect(Date.now() - createdAt).toBeGreaterThanOrEqual(maxAge * 1000);
    expect(stale.client.status?.tierReason).toBe('Default');
    const expired = condition(stale.client, 'GroupGrantExpired');
    expect(expired).toMatchObject({ status: 'True', reason: 'ProofTooOld' });
    expect(expired?.message).toContain(`the groups of tier ${aging} (groupGrantMaxAge ${maxAge}s) no longer apply`);
    expect((await review(fresh.token as string, [aud])).authenticated).toBe(false);

    // Neither bob's proof annotation (refused) nor his raised revocationEpoch (a take-away, no proof) brings it back.
    expectRefused(
      await asUser(BOB).patch(R.client, sharedNs, 'aging-grant', { metadata: { annotations: { 'tokenwarden.io/subject-proof': 'bob' } } }),
      'tokenwarden-client-subject',
      `is not the requester "${BOB}"`,
    );
    expect((await asUser(BOB).patch(R.client, sharedNs, 'aging-grant', { spec: { revocationEpoch: 1 } })).code).toBe(200);
    const revoked = await waitForClientReady(sharedNs, 'aging-grant', { extra: (ct) => ct.client.status?.revocationEpoch === 1 });
    expect(revoked.client.status?.tier).toBe(free);

    // alice proves it again: the grant applies anew.
    const touched = await alice.patch(R.client, sharedNs, 'aging-grant', { metadata: { annotations: { 'tokenwarden.io/subject-proof': new Date().toISOString() } } });
    expect(touched.code, JSON.stringify(touched.body)).toBe(200);
    const proven = await waitForClientReady(sharedNs, 'aging-grant', { extra: (ct) => ct.client.status?.tier === aging });
    expect(condition(proven.client, 'GroupGrantExpired')).toMatchObject({ status: 'False', reason: 'Proven' });
    expect(Date.parse(proven.client.status?.subjectProof?.provenAt as string)).toBeGreaterThan(createdAt);
  }, 90_000);
});

describe('granting a tier needs bind on it', () => {
  it('a TenantBinding is refused without bind on its tier and accepted with it', async () => {
    const binding = (namespace: string, name: string) => ({
      apiVersion: API_VERSION,
      kind: 'TenantBinding',
      metadata: { name, namespace, labels: { ...op.labels } },
      spec: { tierRef: { name: premium }, subjects: [{ kind: 'User', name: MALLORY }] },
    });
    expectRefused(
      await asUser(MALLORY).create(R.binding, malloryNs, binding(malloryNs, 'premium-for-me')),
      'tokenwarden-tenantbinding-bind',
      `spec.tierRef.name: the requester "${MALLORY}" may not grant tier "${premium}"; a TenantBinding needs the verb bind on tokenwarden.io tiers/${premium}`,
    );
    expectRefused(await asUser(ALICE).create(R.binding, aliceNs, binding(aliceNs, 'premium-team')), 'tokenwarden-tenantbinding-bind', `tiers/${premium}`);

    await kube.create({ ...R.roleBinding, plural: 'roles' }, aliceNs, {
      metadata: { name: 'grant-premium' },
      rules: [{ apiGroups: ['tokenwarden.io'], resources: ['tiers'], verbs: ['bind'], resourceNames: [premium] }],
    });
    await bindRole(aliceNs, 'alice-grants-premium', { kind: 'Role', name: 'grant-premium' }, userSubject(ALICE));
    await waitUntilMay(ALICE, [], { verb: 'bind', group: 'tokenwarden.io', resource: 'tiers', name: premium, namespace: aliceNs });
    const accepted = await asUser(ALICE).create(R.binding, aliceNs, binding(aliceNs, 'premium-team'));
    expect(accepted.code, JSON.stringify(accepted.body)).toBe(201);
    // The grant is for premium only: re-pointing the binding at another tier is refused.
    expectRefused(await asUser(ALICE).patch(R.binding, aliceNs, 'premium-team', { spec: { tierRef: { name: free } } }), 'tokenwarden-tenantbinding-bind', `tiers/${free}`);
  });
});

describe('the operator trusts only what it made', () => {
  it('a look-alike anchor of alice\'s client, made by mallory, revokes nothing and costs no write', async () => {
    const victim = await waitForClientReady(aliceNs, 'notebook');
    const uid = victim.client.metadata.uid as string;
    const anchorsBefore = (await anchorsOf(uid)).map((a) => a.metadata.uid).sort();
    expect(anchorsBefore.length).toBeGreaterThan(0);
    // Start from a quiet operator: the earlier tests' status writes and Events have landed.
    let before = await counted.counts();
    await waitFor(
      async () => {
        await sleep(2_000);
        const now = await counted.counts();
        const quiet = now.writes === before.writes;
        before = now;
        return quiet;
      },
      { timeoutMs: 30_000, intervalMs: 0, description: 'the operator to make no write for 2 s' },
    );
    const labels = { [MANAGED_BY]: 'tokenwarden', [CLIENT_UID_LABEL]: uid, [TIER_LABEL]: premium, [CLIENT_NAMESPACE_LABEL]: aliceNs };
    for (const [name, type] of [['fake-anchor', 'tokenwarden.io/anchor'], ['fake-opaque', 'Opaque']]) {
      const res = await asUser(MALLORY).create(R.secret, malloryNs, { apiVersion: 'v1', kind: 'Secret', type, metadata: { name, labels } });
      expect(res.code, JSON.stringify(res.body)).toBe(201);
    }
    // Long enough for the operator to have acted on them (it acts within a second on a real anchor).
    await sleep(5_000);
    expect(delta(before, await counted.counts()).writes).toBe(0);
    const after = await getClient(aliceNs, 'notebook');
    expect(after.metadata.resourceVersion).toBe(victim.client.metadata.resourceVersion);
    expect((await anchorsOf(uid)).filter((a) => a.metadata.namespace !== malloryNs).map((a) => a.metadata.uid).sort()).toEqual(anchorsBefore);
    // Reviewed with a one-off audience: the answer is the API server's, not its 10 s cache's.
    expect((await review(victim.token as string, [aud])).authenticated).toBe(true);
    // And the look-alikes are still there: the operator did not touch mallory's Secrets either.
    expect((await kube.tryGet(R.secret, malloryNs, 'fake-anchor')) !== null && (await kube.tryGet(R.secret, malloryNs, 'fake-opaque')) !== null).toBe(true);
  });
});

describe('a token Secret planted under a client\'s name', () => {
  it('is taken over whole: none of the planter\'s labels or annotations stay on the Secret that holds alice\'s token', async () => {
    // bob, an editor of the shared namespace, plants a Secret where alice's next client will write,
    // with an annotation a replicator would act on.
    const planted = await asUser(BOB).create(R.secret, sharedNs, {
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'tokenwarden.io/token',
      metadata: {
        name: 'alice-planted-token',
        labels: { [MANAGED_BY]: 'tokenwarden', 'example.com/team': 'bob' },
        annotations: { 'replicator.example.com/replicate-to': malloryNs },
      },
    });
    expect(planted.code, JSON.stringify(planted.body)).toBe(201);
    const created = await asUser(ALICE).create(R.client, sharedNs, clientBody(sharedNs, 'alice-planted', { subject: { user: ALICE } }));
    expect(created.code, JSON.stringify(created.body)).toBe(201);
    const ct = await waitForClientReady(sharedNs, 'alice-planted');
    const meta = ct.secret?.metadata;
    expect(meta?.uid).toBe(planted.body.metadata.uid);
    expect(meta?.annotations?.['replicator.example.com/replicate-to']).toBeUndefined();
    expect(meta?.labels?.['example.com/team']).toBeUndefined();
    expect(meta?.ownerReferences?.filter((r) => r.controller).map((r) => r.uid)).toEqual([ct.client.metadata.uid]);
    expect((await review(ct.token as string, [aud])).authenticated).toBe(true);
  });
});

describe('the operator\'s own identity is fenced by admission', () => {
  let asOperator: Rest;
  beforeAll(async () => {
    asOperator = fromFile(await operatorServiceAccountKubeconfig());
  });
  const fence = 'tokenwarden-operator-fence';

  it('cannot mint a token for a ServiceAccount outside a tier namespace, though RBAC would let it', async () => {
    const tokenRequest = { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { expirationSeconds: 600 } };
    // A ServiceAccount of kube-system (this control plane runs no ServiceAccount controller, so
    // `default` does not exist there; a real one is made for the test).
    const victim = `${op.prefix}-victim`;
    await kube.create(R.serviceAccount, 'kube-system', { metadata: { name: victim } });
    onTestFinished(() => kube.remove(R.serviceAccount, 'kube-system', victim).then(() => undefined));
    const url = resourcePath(R.serviceAccount, 'kube-system', victim, 'token');
    // RBAC allows it (serviceaccounts/token create is cluster-wide): only the fence stands in the way.
    expect(await userMay(serviceAccountUser('tokenwarden-system', 'tokenwarden'), {
      verb: 'create', resource: 'serviceaccounts', subresource: 'token', namespace: 'kube-system', name: victim,
    }, ['system:serviceaccounts', 'system:serviceaccounts:tokenwarden-system'])).toBe(true);
    // The fence was applied with the manifests' RBAC just now: wait until the API server enforces it.
    const res = await waitFor(
      async () => {
        const answer = await asOperator.post(url, { ...tokenRequest, spec: { ...tokenRequest.spec, boundObjectRef: { apiVersion: 'v1', kind: 'Secret', name: 'x' } } });
        return answer.code === 403 ? answer : undefined;
      },
      { timeoutMs: 30_000, description: 'the fence refusing a TokenRequest in kube-system' },
    );
    expectRefused(res, fence, 'only in tier namespaces');
    // Nor an unbound token, anywhere.
    expectRefused(
      await asOperator.post(resourcePath(R.serviceAccount, tierNamespace(op, free), expectedServiceAccountName(MALLORY), 'token'), tokenRequest),
      fence,
      'bound to an anchor Secret',
    );
  });

  it('cannot label a namespace it did not create as a tier namespace, nor write a Secret of a foreign type', async () => {
    expectRefused(await asOperator.patch(R.namespace, undefined, malloryNs, { metadata: { labels: { [TIER_LABEL]: premium } } }), fence, 'may not add, change or remove that label');
    expectRefused(
      await asOperator.create(R.secret, malloryNs, { apiVersion: 'v1', kind: 'Secret', type: 'Opaque', metadata: { name: 'foreign' }, data: {} }),
      fence,
      'only Secrets of type tokenwarden.io/anchor or tokenwarden.io/token',
    );
    expectRefused(
      await asOperator.create(R.secret, malloryNs, { apiVersion: 'v1', kind: 'Secret', type: 'tokenwarden.io/anchor', metadata: { name: 'anchor-outside' } }),
      fence,
      'anchor Secrets belong in tier namespaces only',
    );
    expectRefused(
      await asOperator.create(R.serviceAccount, 'kube-system', { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'tokenwarden-fence-probe' } }),
      fence,
      'only in tier namespaces',
    );
    expect(await kube.tryGet(R.namespace, undefined, malloryNs).then((ns) => ns?.metadata.labels?.[TIER_LABEL])).toBeUndefined();
  });

  it('cannot bulk-delete a Secret that is not its own, even in a tier namespace, and the refusal names that Secret', async () => {
    // RBAC lets it deletecollection Secrets (departures); admission judges each item, with an empty request.name.
    const namespace = tierNamespace(op, free);
    const probe = { 'tokenwarden-test/fence-probe': op.prefix };
    await kube.create(R.secret, namespace, { type: 'Opaque', metadata: { name: 'not-tokenwardens', labels: probe }, data: {} });
    onTestFinished(() => kube.remove(R.secret, namespace, 'not-tokenwardens').then(() => undefined));
    expectRefused(
      await asOperator.deleteAll(R.secret, namespace, `tokenwarden-test/fence-probe=${op.prefix}`),
      fence,
      `secret not-tokenwardens in namespace ${namespace}: the operator writes only Secrets of type tokenwarden.io/anchor or tokenwarden.io/token, not Opaque`,
    );
    expect(await kube.tryGet(R.secret, namespace, 'not-tokenwardens'), 'the Secret').not.toBeNull();
  });
});

describe('tier namespaces run no pods', () => {
  it('are labelled Pod Security restricted, and an admission policy refuses every Pod there, a restricted-compliant one too', async () => {
    const namespace = tierNamespace(op, premium);
    const ns = await kube.get(R.namespace, undefined, namespace);
    expect(ns.metadata.labels?.['pod-security.kubernetes.io/enforce']).toBe('restricted');
    const pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'sneaky' },
      spec: {
        serviceAccountName: expectedServiceAccountName(ALICE),
        securityContext: { runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } },
        containers: [{
          name: 'c',
          image: 'registry.invalid/none:1',
          securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] }, runAsUser: 1000 },
        }],
      },
    };
    // Even the cluster admin's: the policy binds everyone.
    const res = await adminRequest<{ message?: string }>('POST', `/api/v1/namespaces/${namespace}/pods`, pod);
    expect(`${res.code} ${res.body.message}`).toMatch(/^403 .*ValidatingAdmissionPolicy 'tokenwarden-tier-namespace-no-pods'.* is the tier namespace of tier .*so no Pod may run there/);
    // And a Pod that breaks the standard is refused by Pod Security as well.
    const unrestricted = { ...pod, metadata: { name: 'unrestricted' }, spec: { ...pod.spec, securityContext: {}, containers: [{ name: 'c', image: 'registry.invalid/none:1' }] } };
    const refused = await adminRequest<{ message?: string }>('POST', `/api/v1/namespaces/${namespace}/pods?dryRun=All`, unrestricted);
    expect(`${refused.code} ${refused.body.message}`).toMatch(/^403 .*violates PodSecurity "restricted/);
  });
});
