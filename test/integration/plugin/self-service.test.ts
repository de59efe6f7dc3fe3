/**
 * Issue 10, "Done when" 1, 2 and 4, through the BUILT executable (bin/kubectl-tokenwarden, `make
 * plugin`), run with no Node on PATH, by alice, bob and mallory through their own contexts of the
 * test kubeconfig; admin only sets up (namespace, Tiers, RoleBindings) and checks as a gateway would
 * (TokenReview). Tokens are compared by fingerprint, never printed.
 *
 * Several test files share the API server and the test users, so every command that reads Tiers is
 * scoped to this file's with -l tokenwarden.io/test-run=<prefix> (the operator's own --selector),
 * and `request` labels its client the same way so this file's operator manages it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { createTestNamespace, kubeconfigPath, waitFor } from '../support/cluster.ts';
import {
  R,
  RUN_LABEL,
  createTier,
  expectedServiceAccountName,
  fingerprint,
  getClient,
  kube,
  readClientToken,
  review,
  scopedName,
  serviceAccountUser,
  startOperator,
  tierNamespace,
  trackClusterObject,
  waitForTierReady,
  type OperatorProcess,
} from '../support/operator.ts';
import { JWT_PATTERN, buildPlugin, pathWith, runExecutable, tempDir, type RunResult } from './support.ts';
import { userMay } from '../support/users.ts';

const ALICE = 'alice@example.com';
const BOB = 'bob@example.com';
const MALLORY = 'mallory@example.com';

let plugin: string;
let op: OperatorProcess;
let ns: string;
let aud: string;
let free: string;
let premium: string;
let selector: string;
let aliceToken: string;

/** The plugin as `user` (a context of the test kubeconfig), in the test namespace, with no Node on PATH. */
const as = (user: string, ...args: string[]): Promise<RunResult> =>
  runExecutable(plugin, ['--kubeconfig', kubeconfigPath(), '--context', user, '-n', ns, ...args]);
const asAdmin = (...args: string[]): Promise<RunResult> => runExecutable(plugin, ['--kubeconfig', kubeconfigPath(), '-n', ns, ...args]);

/** One line on stderr, no stack trace. */
function expectOneLineError(res: RunResult, ...parts: string[]): void {
  expect(res.code, res.stdout + res.stderr).not.toBe(0);
  expect(res.stderr.trimEnd().split('\n'), res.stderr).toHaveLength(1);
  expect(res.stderr).toMatch(/^error: /);
  expect(res.stderr).not.toMatch(/\n\s+at /);
  for (const part of parts) expect(res.stderr).toContain(part);
}

beforeAll(async () => {
  [plugin, op] = await Promise.all([buildPlugin(), startOperator({ name: 'plugin' })]);
  selector = `${RUN_LABEL}=${op.prefix}`;
  aud = `${op.prefix}-gateway`;
  free = scopedName(op, 'free');
  premium = scopedName(op, 'premium');
  await createTier(op, 'free', { level: 10, default: true, token: { audiences: [aud] } });
  await createTier(op, 'premium', { level: 20, groups: ['premium-users'], token: { audiences: [aud] } });
  ns = await createTestNamespace('plugin');
  for (const user of [ALICE, BOB, MALLORY]) {
    await kube.create(R.roleBinding, ns, {
      metadata: { name: `${user.split('@')[0]}-edit` },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'edit' },
      subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: user }],
    });
  }
  // alice and mallory may read Tiers cluster-wide (whoami needs them); bob may not.
  const reader = `${op.prefix}-tier-reader`;
  trackClusterObject(R.clusterRole, reader);
  trackClusterObject(R.clusterRoleBinding, reader);
  await kube.create(R.clusterRole, undefined, { metadata: { name: reader }, rules: [{ apiGroups: ['tokenwarden.io'], resources: ['tiers'], verbs: ['get', 'list'] }] });
  await kube.create(R.clusterRoleBinding, undefined, {
    metadata: { name: reader },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: reader },
    subjects: [ALICE, MALLORY].map((name) => ({ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name })),
  });
  await Promise.all([
    ...[ALICE, BOB, MALLORY].map((u) => waitFor(() => userMay(u, { verb: 'create', group: 'tokenwarden.io', resource: 'serviceaccountclients', namespace: ns }), { description: `${u} may create clients` })),
    ...[ALICE, MALLORY].map((u) => waitFor(() => userMay(u, { verb: 'list', group: 'tokenwarden.io', resource: 'tiers' }), { description: `${u} may list tiers` })),
    waitForTierReady(free),
    waitForTierReady(premium),
  ]);
}, 180_000);

describe('request, whoami, token: self-service through your own identity (Done when 1)', () => {
  it('alice requests a token: alone on stdout, accepted by TokenReview as her ServiceAccount in premium, her client proven as hers', async () => {
    const res = await as(ALICE, 'request', 'nb', '--label', selector);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stderr).toBe('');
    // The token alone, so TOKEN=$(kubectl tokenwarden request nb) works.
    expect(res.stdout.endsWith('\n')).toBe(true);
    aliceToken = res.stdout.slice(0, -1);
    expect(aliceToken).toMatch(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
    const who = await review(aliceToken, [aud]);
    expect(who.authenticated).toBe(true);
    expect(who.username).toBe(serviceAccountUser(tierNamespace(op, premium), expectedServiceAccountName(ALICE)));
    // The client the plugin made declares alice with her groups (the admission policy accepted it
    // because she asked), and its Secret holds exactly the printed token.
    const ct = await readClientToken(ns, 'nb');
    expect(ct.client.spec.subject).toEqual({ user: ALICE, groups: ['premium-users', 'ml-engineers'] });
    expect(ct.client.status?.tier).toBe(premium);
    expect(fingerprint(ct.token)).toBe(fingerprint(aliceToken));
  });

  it('token NAME prints the same token again; asking again with request is idempotent', async () => {
    const again = await as(ALICE, 'token', 'nb');
    expect(again.code, again.stderr).toBe(0);
    expect(fingerprint(again.stdout.trimEnd())).toBe(fingerprint(aliceToken));
    const twice = await as(ALICE, 'request', 'nb', '--label', selector);
    expect(twice.code, twice.stderr).toBe(0);
    expect(fingerprint(twice.stdout.trimEnd())).toBe(fingerprint(aliceToken));
  });

  it("mallory's request --tier premium fails with TierNotAllowed on stderr, a non-zero exit, nothing on stdout and no client left", async () => {
    const res = await as(MALLORY, 'request', 'mb', '--tier', premium, '--label', selector, '--wait', '30s');
    expectOneLineError(res, 'TierNotAllowed', `"${premium}"`, 'the client was deleted');
    expect(res.stdout).toBe('');
    await waitFor(async () => (await kube.tryGet(R.client, ns, 'mb')) === null, { description: 'mallory\'s refused client deleted' });
  });

  it('mallory cannot ask for a token for alice: the subject is always the caller', async () => {
    // The plugin has no way to name another subject; her request is for herself and gets free.
    const res = await as(MALLORY, 'request', 'mine', '--label', selector);
    expect(res.code, res.stderr).toBe(0);
    const who = await review(res.stdout.trimEnd(), [aud]);
    expect(who.username).toBe(serviceAccountUser(tierNamespace(op, free), expectedServiceAccountName(MALLORY)));
    expect((await getClient(ns, 'mine')).spec.subject.user).toBe(MALLORY);
  });

  it('whoami tells alice premium through her group and mallory the default tier, with the operator\'s reasons; bob, who may not list Tiers, is told so', async () => {
    const alice = await as(ALICE, 'whoami', '-l', selector);
    expect(alice.code, alice.stderr).toBe(0);
    expect(alice.stdout).toContain(`User:       ${ALICE}`);
    expect(alice.stdout).toContain(`Tier:       ${premium} (Tier/${premium})`);
    const mallory = await as(MALLORY, 'whoami', '-l', selector, '-o', 'json');
    expect(mallory.code, mallory.stderr).toBe(0);
    expect(JSON.parse(mallory.stdout)).toMatchObject({ username: MALLORY, namespace: ns, tier: free, tierReason: 'Default' });
    // Asking about a tier she does not qualify for: the operator's TierNotAllowed, in words.
    const wouldPremium = await as(MALLORY, 'whoami', '-l', selector, '--tier', premium);
    expect(wouldPremium.stdout).toContain('Tier:       none (TierNotAllowed)');
    const bob = await as(BOB, 'whoami', '-l', selector);
    expect(bob.stdout).toContain(`User:       ${BOB}`);
    expectOneLineError(bob, `you (${BOB}) may not list Tiers cluster-wide`);
  });
});

describe('status, list, inspect secret, check api show what is there, and never a token (Done when 2)', () => {
  let stuck: string;

  beforeAll(async () => {
    // A client that is not Ready: mallory keeps her refused request.
    stuck = 'stuck';
    const res = await as(MALLORY, 'request', stuck, '--tier', premium, '--label', selector, '--keep', '--wait', '30s');
    expect(res.code).not.toBe(0);
    expect(res.stderr).not.toContain('deleted');
  });

  const noToken = (res: RunResult) => {
    expect(res.stdout + res.stderr).not.toMatch(JWT_PATTERN);
    expect(res.stdout + res.stderr).not.toContain(aliceToken.split('.')[2] as string);
  };

  it('status: subject, tier and why, ServiceAccount, tokens, conditions, Events; for a stuck client the reason and what to do', async () => {
    const ready = await as(ALICE, 'status', 'nb');
    expect(ready.code, ready.stderr).toBe(0);
    noToken(ready);
    const client = await getClient(ns, 'nb');
    const id = client.status?.tokens?.[0]?.id as string;
    expect(ready.stdout).toContain(`Subject:         ${ALICE} (groups: premium-users, ml-engineers)`);
    expect(ready.stdout).toContain(`Tier:            ${premium} (Tier/${premium})`);
    expect(ready.stdout).toContain(`ServiceAccount:  ${tierNamespace(op, premium)}/${expectedServiceAccountName(ALICE)}`);
    expect(ready.stdout).toContain(`current  ${id}`);
    expect(ready.stdout).toMatch(/Ready\s+True\s+TokenIssued/);
    expect(ready.stdout).toMatch(/Normal\s+Issued\s+issued a token in tier/);
    expect(ready.stdout).not.toContain('What to do');

    const bad = await as(MALLORY, 'status', stuck);
    expect(bad.code, bad.stderr).toBe(0);
    noToken(bad);
    expect(bad.stdout).toMatch(/Ready\s+False\s+TierNotAllowed/);
    expect(bad.stdout).toMatch(/Warning\s+TierUnresolved/);
    expect(bad.stdout).toContain(`What to do:      the subject does not qualify for tier "${premium}" here: ask a tenant admin for a TenantBinding granting it in ${ns}`);
  });

  it('list: every client with tier, Ready, reason and expiry; --user and --tier filter; -o wide and json', async () => {
    const all = await as(ALICE, 'list');
    expect(all.code, all.stderr).toBe(0);
    noToken(all);
    const rows = all.stdout.trimEnd().split('\n');
    expect(rows[0]).toMatch(/^NAME\s+SUBJECT\s+TIER\s+READY\s+REASON\s+EXPIRES$/);
    expect(rows.find((r) => r.startsWith('nb '))).toMatch(new RegExp(`^nb\\s+${ALICE}\\s+${premium}\\s+True\\s+TokenIssued\\s+in \\d+[hm]`));
    expect(rows.find((r) => r.startsWith(`${stuck} `))).toMatch(new RegExp(`^${stuck}\\s+${MALLORY}\\s+<none>\\s+False\\s+TierNotAllowed`));
    const mine = await as(ALICE, 'list', '--user', MALLORY);
    expect(mine.stdout).not.toMatch(/^nb /m);
    expect(mine.stdout).toMatch(new RegExp(`^${stuck} `, 'm'));
    const byTier = await as(ALICE, 'list', '--tier', free);
    expect(byTier.stdout.trimEnd().split('\n').slice(1).map((r) => r.split(/\s+/)[0])).toEqual(['mine']);
    const wide = await as(ALICE, 'list', '-o', 'wide');
    expect(wide.stdout).toContain(`${tierNamespace(op, premium)}/${expectedServiceAccountName(ALICE)}`);
    expect(wide.stdout).toContain('does not qualify for requested tier');
    const json = await as(ALICE, 'list', '-o', 'json');
    noToken(json);
    expect((JSON.parse(json.stdout) as { items: { metadata: { name: string } }[] }).items.map((c) => c.metadata.name).sort()).toEqual(['mine', 'nb', stuck]);
  });

  it('inspect secret: the claims of the token (subject, audiences, times, bound anchor), --review the API server\'s answer; never the token', async () => {
    const client = await getClient(ns, 'nb');
    const id = client.status?.tokens?.[0]?.id as string;
    const res = await as(ALICE, 'inspect', 'secret', 'nb-token');
    expect(res.code, res.stderr).toBe(0);
    noToken(res);
    const sa = `${tierNamespace(op, premium)}/${expectedServiceAccountName(ALICE)}`;
    expect(res.stdout).toContain(`Subject:         ${serviceAccountUser(tierNamespace(op, premium), expectedServiceAccountName(ALICE))}`);
    expect(res.stdout).toContain(`ServiceAccount:  ${sa}`);
    expect(res.stdout).toContain(`Audiences:       ${aud}`);
    expect(res.stdout).toContain(`Bound to:        Secret ${tierNamespace(op, premium)}/${id} (the anchor`);
    expect(res.stdout).toContain(`Expires:         ${client.status?.expiresAt}`);
    // alice may not create TokenReviews: said in one line.
    expectOneLineError(await as(ALICE, 'inspect', 'secret', 'nb-token', '--review'), 'you may not create TokenReviews');
    const reviewed = await asAdmin('inspect', 'secret', 'nb-token', '--review', '-o', 'json');
    expect(reviewed.code, reviewed.stderr).toBe(0);
    noToken(reviewed);
    expect(JSON.parse(reviewed.stdout)).toMatchObject({
      client: 'nb',
      tier: premium,
      claims: { audiences: [aud], boundSecret: { name: id } },
      review: { authenticated: true, username: serviceAccountUser(tierNamespace(op, premium), expectedServiceAccountName(ALICE)), audiences: [aud] },
    });
    // A Secret with no token in it is one clear line.
    await kube.create(R.secret, ns, { metadata: { name: 'empty' }, type: 'Opaque', data: {} });
    expectOneLineError(await as(ALICE, 'inspect', 'secret', 'empty'), `secret ${ns}/empty holds no token`);
  });

  it('check api: CRDs, admission policies and the operator pass; with nothing of the operator\'s to judge by it fails, naming what', async () => {
    const ok = await asAdmin('check', 'api', '-l', selector);
    expect(ok.code, ok.stdout + ok.stderr).toBe(0);
    noToken(ok);
    for (const line of [
      'ok    CRD serviceaccountclients.tokenwarden.io: established',
      'ok    admission policy tokenwarden-client-subject: installed and bound',
      'ok    admission policy tokenwarden-tenantbinding-bind: installed and bound',
      'ok    admission policy tokenwarden-tier-namespace-no-pods: installed and bound',
      'ok    admission policy tokenwarden-operator-events: installed and bound',
    ]) expect(ok.stdout).toContain(line);
    expect(ok.stdout).toMatch(/ok {4}operator: no Lease tokenwarden-system\/tokenwarden-leader .*every one of \d+ Tiers and clients reconciled/);
    const none = await asAdmin('check', 'api', '-l', `${RUN_LABEL}=nothing-${op.prefix}`);
    expect(none.stdout).toMatch(/FAIL {2}operator: .*no Tier or client to judge by/);
    expectOneLineError(none, 'not ready: operator');
  });
});

describe('the executable itself (Done when 4)', () => {
  it('runs with no Node anywhere on PATH (every test here does), and errors are one line with no stack trace', async () => {
    const version = await runExecutable(plugin, ['version', '--client', '-o', 'json']);
    expect(version.code, version.stderr).toBe(0);
    expect(JSON.parse(version.stdout).client.node).toMatch(/^v24\./);
    // A user's NODE_OPTIONS do not reach it: it is not a Node for them to configure.
    const withNodeOptions = await runExecutable(plugin, ['version', '--client'], { env: { NODE_OPTIONS: '--require /nonexistent/preload.js' } });
    expect(withNodeOptions.code, withNodeOptions.stderr).toBe(0);
    const missing = await as(ALICE, 'status', 'no-such-client');
    expectOneLineError(missing, `serviceaccountclient "no-such-client" not found in namespace ${ns}`);
    expectOneLineError(await as(ALICE, 'frobnicate'), 'unknown command "frobnicate"');
    expectOneLineError(await as(ALICE, 'request', 'x', '--wait', 'soon'), '--wait: "soon" is not a duration');
  });

  it('kubectl plugin list finds it on PATH, and kubectl tokenwarden passes its flags through', async () => {
    const { kubectlPath } = inject('controlPlane');
    const dir = pathWith({ 'kubectl-tokenwarden': plugin, kubectl: kubectlPath });
    const listed = await runExecutable(kubectlPath, ['plugin', 'list'], { env: { PATH: dir } });
    expect(listed.stdout).toContain(path.join(dir, 'kubectl-tokenwarden'));
    expect(listed.stderr).not.toContain('warning');
    const whoami = await runExecutable(kubectlPath, ['tokenwarden', '--kubeconfig', kubeconfigPath(), '--context', MALLORY, '-n', ns, 'whoami', '-l', selector], { env: { PATH: dir } });
    expect(whoami.code, whoami.stderr).toBe(0);
    expect(whoami.stdout).toContain(`User:       ${MALLORY}`);
    expect(whoami.stdout).toContain(`Tier:       ${free} (Default)`);
  });

  it('--kubeconfig, KUBECONFIG, --context and -n behave as in kubectl', async () => {
    // A kubeconfig whose current context is mallory's, with the test namespace as its namespace.
    const raw = fs.readFileSync(kubeconfigPath(), 'utf8');
    const dir = tempDir('tokenwarden-plugin-kc-');
    const yaml = await import('yaml');
    const doc = yaml.parse(raw) as { 'current-context': string; contexts: { name: string; context: { namespace?: string } }[] };
    doc['current-context'] = MALLORY;
    for (const c of doc.contexts) if (c.name === MALLORY) c.context.namespace = ns;
    const malloryFile = path.join(dir, 'mallory.yaml');
    fs.writeFileSync(malloryFile, yaml.stringify(doc));

    // KUBECONFIG alone: its current context and that context's namespace.
    const viaEnv = await runExecutable(plugin, ['list'], { env: { KUBECONFIG: malloryFile } });
    expect(viaEnv.code, viaEnv.stderr).toBe(0);
    expect(viaEnv.stdout).toMatch(/^nb\s/m);
    const whoViaEnv = await runExecutable(plugin, ['whoami', '-l', selector, '-o', 'json'], { env: { KUBECONFIG: malloryFile } });
    expect(JSON.parse(whoViaEnv.stdout)).toMatchObject({ username: MALLORY, namespace: ns });
    // KUBECONFIG as a list: missing files skipped, the first file's current context wins.
    const listed = await runExecutable(plugin, ['whoami', '-l', selector, '-o', 'json'], { env: { KUBECONFIG: [path.join(dir, 'missing.yaml'), malloryFile, kubeconfigPath()].join(':') } });
    expect(JSON.parse(listed.stdout)).toMatchObject({ username: MALLORY });
    // --kubeconfig wins over KUBECONFIG; --context over the current context; -n over the context's namespace.
    const flags = await runExecutable(plugin, ['--kubeconfig', malloryFile, '--context', ALICE, 'whoami', '-n', 'default', '-o', 'json'], { env: { KUBECONFIG: path.join(dir, 'missing.yaml') } });
    // (alice may not read TenantBindings in default: whoami still says who and where, and why no tier.)
    expect(JSON.parse(flags.stdout)).toMatchObject({ username: ALICE, namespace: 'default', error: expect.stringContaining('TenantBindings in namespace default') });
    // Global flags anywhere, in any of kubectl's spellings.
    const spelled = await runExecutable(plugin, [`--kubeconfig=${malloryFile}`, `--namespace=${ns}`, 'status', 'nb', `--context=${ALICE}`]);
    expect(spelled.code, spelled.stderr).toBe(0);
    expect(spelled.stdout).toContain(`Name:            ${ns}/nb`);
    // Without -n and with a context that names no namespace: "default", as kubectl.
    const plain = await runExecutable(plugin, ['--kubeconfig', kubeconfigPath(), '--context', ALICE, 'status', 'nb']);
    expectOneLineError(plain, 'in the namespace "default"');
    expectOneLineError(await runExecutable(plugin, ['--kubeconfig', malloryFile, '--context', 'nobody', 'list']), 'context "nobody" does not exist in the kubeconfig');
    expectOneLineError(await runExecutable(plugin, ['--kubeconfig', path.join(dir, 'missing.yaml'), 'list']), 'no such file');
    fs.rmSync(dir, { recursive: true, force: true });
  });
});

describe('check api judges the operator by its Lease, or by what it has reconciled; completion', () => {
  it('a Lease renewed within its duration passes; one left unrenewed fails, saying for how long', async () => {
    const leases = { group: 'coordination.k8s.io', version: 'v1', plural: 'leases', namespaced: true };
    const micro = (ms: number) => new Date(ms).toISOString().replace('Z', '000Z');
    await kube.create(leases, ns, { metadata: { name: 'leader' }, spec: { holderIdentity: 'replica-a', leaseDurationSeconds: 15, renewTime: micro(Date.now()) } });
    const fresh = await asAdmin('check', 'api', '--lease-namespace', ns, '--lease-name', 'leader');
    expect(fresh.code, fresh.stdout + fresh.stderr).toBe(0);
    expect(fresh.stdout).toMatch(new RegExp(`ok {4}operator: leader replica-a \\(Lease ${ns}/leader renewed \\d+s ago\\)`));
    await kube.patch(leases, ns, 'leader', { spec: { renewTime: micro(Date.now() - 90_000) } });
    const stale = await asAdmin('check', 'api', '--lease-namespace', ns, '--lease-name', 'leader');
    expect(stale.stdout).toMatch(new RegExp(`FAIL {2}operator: Lease ${ns}/leader held by replica-a but not renewed for 1m3\\ds`));
    expectOneLineError(stale, 'not ready: operator');
  });

  it('completion bash is a script bash accepts; an unknown shell is one line', async () => {
    const script = await runExecutable(plugin, ['completion', 'bash']);
    expect(script.code, script.stderr).toBe(0);
    expect(script.stdout).toContain('complete -F _kubectl_tokenwarden kubectl-tokenwarden');
    const checked = await runExecutable('/bin/bash', ['-n'], { input: script.stdout });
    expect(checked.code, checked.stderr).toBe(0);
    expect(script.stdout).toContain('"inspect secret") flags="--review --audience --output -o"');
    expectOneLineError(await runExecutable(plugin, ['completion', 'fish']), 'completion takes one argument: bash or zsh');
  });

  it('whoami counts a TenantBinding\'s quota as the operator does: a full binding withholds its tier, and said so', async () => {
    // free for mallory through a binding of one client, which her client "mine" already holds.
    await kube.create(R.binding, ns, {
      apiVersion: 'tokenwarden.io/v1alpha1',
      kind: 'TenantBinding',
      metadata: { name: 'mallory-free', labels: { ...op.labels } },
      spec: { tierRef: { name: free }, subjects: [{ kind: 'User', name: MALLORY }], maxClients: 1 },
    });
    await waitFor(async () => (await getClient(ns, 'mine')).status?.tierReason === 'TenantBinding/mallory-free', { description: 'mine bound through mallory-free' });
    const res = await as(MALLORY, 'whoami', '-l', selector);
    expect(res.code, res.stderr).toBe(0);
    // maxClients counts every client of hers that holds free here: being the default does not
    // give her free around the binding's quota.
    expect(res.stdout).toContain('Tier:       none (QuotaExceeded)');
    expect(res.stdout).toContain('Quota:      TenantBinding mallory-free allows 1 client(s) and they are taken');
    // The operator agrees: a second client of hers is refused with QuotaExceeded, and request says so.
    const second = await as(MALLORY, 'request', 'second', '--label', selector);
    expectOneLineError(second, 'QuotaExceeded: TenantBinding mallory-free allows 1 client(s) and they are taken', 'the client was deleted');
  });

  it('with the operator stopped, a change it has not reconciled makes check api fail (also after --wait)', async () => {
    const before = await asAdmin('check', 'api', '-l', selector);
    expect(before.code, before.stdout).toBe(0);
    await op.stop();
    expectOk(await as(ALICE, 'suspend', 'nb', '--wait', '0'));
    const started = Date.now();
    const after = await asAdmin('check', 'api', '-l', selector, '--wait', '3s');
    expect(Date.now() - started).toBeGreaterThanOrEqual(3_000);
    expect(after.stdout).toMatch(/FAIL {2}operator: .*1 of \d+ Tiers and clients not reconciled at their current generation \(e\.g\. ServiceAccountClient .*\/nb\): is the operator running\?/);
    expectOneLineError(after, 'not ready: operator');
    // And status says so too, with what to do.
    const status = await as(ALICE, 'status', 'nb');
    expect(status.stdout).toContain('(the operator has not caught up)');
    expect(status.stdout).toContain('What to do:      the operator has not caught up with the latest change yet');
  });
});

function expectOk(res: RunResult): string {
  expect(res.code, res.stdout + res.stderr).toBe(0);
  expect(res.stdout + res.stderr).not.toMatch(JWT_PATTERN);
  return res.stdout;
}
