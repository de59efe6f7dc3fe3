/**
 * Foundation tests: the control plane the integration suite runs on is real. Tokens are signed and
 * reviewed by a real kube-apiserver, the controller manager really collects garbage and deletes
 * namespaces, and the static test users get real identities that RBAC really decides on.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, inject, it } from 'vitest';
import {
  ApiException,
  AuthenticationV1Api,
  AuthorizationV1Api,
  CoreV1Api,
  RbacAuthorizationV1Api,
  type V1ResourceAttributes,
} from '@kubernetes/client-node';
import {
  adminKubeConfig,
  apiserverMetrics,
  createTestNamespace,
  kubectl,
  tokenReview,
  userKubeConfig,
  waitFor,
} from './support/cluster.ts';

const ISSUER = 'https://kubernetes.default.svc.cluster.local';
const ALICE = 'alice@example.com';
const BOB = 'bob@example.com';
const MALLORY = 'mallory@example.com';

const core = () => adminKubeConfig().makeApiClient(CoreV1Api);
const rbac = () => adminKubeConfig().makeApiClient(RbacAuthorizationV1Api);

/** The HTTP status a call ends with: 200 on success, the API error's code otherwise. */
async function statusOf(call: Promise<unknown>): Promise<number> {
  try {
    await call;
    return 200;
  } catch (err) {
    if (err instanceof ApiException) return err.code;
    throw err;
  }
}

async function apiError(call: Promise<unknown>): Promise<ApiException<unknown>> {
  try {
    await call;
  } catch (err) {
    if (err instanceof ApiException) return err;
    throw err;
  }
  throw new Error('expected the call to fail');
}

async function mintToken(namespace: string, serviceAccount: string, boundSecret?: { name: string; uid: string }): Promise<string> {
  const tr = await core().createNamespacedServiceAccountToken({
    name: serviceAccount,
    namespace,
    body: {
      spec: {
        audiences: [], // the API server's own audience (its issuer)
        expirationSeconds: 600,
        ...(boundSecret ? { boundObjectRef: { apiVersion: 'v1', kind: 'Secret', ...boundSecret } } : {}),
      },
    },
  });
  const token = tr.status?.token;
  if (!token) throw new Error('TokenRequest returned no token');
  return token;
}

describe('ServiceAccount tokens (TokenRequest + TokenReview)', () => {
  it('accepts a bound token, rejects it once its Secret is gone, and rejects every token once the ServiceAccount is gone', async () => {
    const ns = await createTestNamespace('cp-tokens');
    await core().createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: 'workload' } } });
    const secret = await core().createNamespacedSecret({
      namespace: ns,
      body: { metadata: { name: 'binding' }, type: 'Opaque', stringData: { purpose: 'token binding' } },
    });

    const bound = await mintToken(ns, 'workload', { name: 'binding', uid: secret.metadata!.uid! });
    const unbound = await mintToken(ns, 'workload');

    const review = await tokenReview(bound);
    expect(review).toMatchObject({ authenticated: true, username: `system:serviceaccount:${ns}:workload` });
    expect(review.groups).toEqual(expect.arrayContaining(['system:serviceaccounts', `system:serviceaccounts:${ns}`, 'system:authenticated']));
    expect(review.audiences).toEqual([ISSUER]);
    // Audiences are enforced: the same token is no good for another audience.
    expect((await tokenReview(bound, ['https://elsewhere.example.com'])).authenticated).toBe(false);
    expect((await tokenReview(unbound)).authenticated).toBe(true);

    await core().deleteNamespacedSecret({ name: 'binding', namespace: ns });
    // Successful authentications are cached for a few seconds by the API server: poll.
    const rejected = await waitFor(async () => {
      const r = await tokenReview(bound);
      return !r.authenticated && r;
    }, { timeoutMs: 60_000, description: 'TokenReview to reject the token bound to the deleted Secret' });
    expect(rejected.username).toBeUndefined();
    // Only the binding broke: the unbound token of the same ServiceAccount still works.
    expect((await tokenReview(unbound)).authenticated).toBe(true);

    await core().deleteNamespacedServiceAccount({ name: 'workload', namespace: ns });
    await waitFor(async () => !(await tokenReview(unbound)).authenticated,
      { timeoutMs: 60_000, description: 'TokenReview to reject the token of the deleted ServiceAccount' });
  });

  it('rejects garbage and the static tokens report their users', async () => {
    expect((await tokenReview('not-a-token')).authenticated).toBe(false);
    const aliceToken = userKubeConfig(ALICE).getCurrentUser()?.token;
    expect(aliceToken).toBeTruthy();
    const review = await tokenReview(aliceToken!);
    expect(review).toMatchObject({ authenticated: true, username: ALICE });
    expect(review.groups).toEqual(expect.arrayContaining(['premium-users', 'ml-engineers']));
  });
});

describe('kube-controller-manager', () => {
  it('deletes a namespace together with its contents (namespace controller)', async () => {
    const ns = await createTestNamespace('cp-nsdel');
    await core().createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'content' }, data: { a: 'b' } } });
    await core().deleteNamespace({ name: ns });
    // The namespace only goes once the controller has emptied it and removed its finalizer.
    await waitFor(async () => (await statusOf(core().readNamespace({ name: ns }))) === 404,
      { timeoutMs: 90_000, intervalMs: 500, description: `namespace ${ns} to be gone` });
  });

  it('garbage-collects an object whose owner is deleted, and only that one', async () => {
    const ns = await createTestNamespace('cp-gc');
    const owner = await core().createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'owner' } } });
    await core().createNamespacedConfigMap({
      namespace: ns,
      body: {
        metadata: {
          name: 'dependent',
          ownerReferences: [{ apiVersion: 'v1', kind: 'ConfigMap', name: 'owner', uid: owner.metadata!.uid! }],
        },
      },
    });
    await core().createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'bystander' } } });

    await core().deleteNamespacedConfigMap({ name: 'owner', namespace: ns });
    await waitFor(async () => (await statusOf(core().readNamespacedConfigMap({ name: 'dependent', namespace: ns }))) === 404,
      { timeoutMs: 90_000, intervalMs: 500, description: 'the dependent ConfigMap to be garbage-collected' });
    expect(await statusOf(core().readNamespacedConfigMap({ name: 'bystander', namespace: ns }))).toBe(200);
  });
});

describe('test users: identity and RBAC are real', () => {
  it('refuses alice secrets until a Role grants them to her, and only to her', async () => {
    const ns = await createTestNamespace('cp-rbac');
    const alice = userKubeConfig(ALICE).makeApiClient(CoreV1Api);

    const refused = await apiError(alice.listNamespacedSecret({ namespace: ns }));
    expect(refused.code).toBe(403);
    const body = typeof refused.body === 'string' ? JSON.parse(refused.body) as unknown : refused.body;
    expect(body).toMatchObject({ reason: 'Forbidden', message: expect.stringContaining(`User "${ALICE}" cannot list resource "secrets"`) });

    await rbac().createNamespacedRole({
      namespace: ns,
      body: { metadata: { name: 'secret-reader' }, rules: [{ apiGroups: [''], resources: ['secrets'], verbs: ['get', 'list'] }] },
    });
    await rbac().createNamespacedRoleBinding({
      namespace: ns,
      body: {
        metadata: { name: 'alice-reads-secrets' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'secret-reader' },
        subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: ALICE }],
      },
    });
    await waitFor(() => alice.listNamespacedSecret({ namespace: ns }), { description: 'alice to be allowed to list secrets' });

    // The same through kubectl and her context; bob is still refused.
    const asAlice = await kubectl(['get', 'secrets', '-n', ns, '-o', 'name'], { user: ALICE });
    expect(asAlice.code, asAlice.stderr).toBe(0);
    const asBob = await kubectl(['get', 'secrets', '-n', ns], { user: BOB });
    expect(asBob.code).not.toBe(0);
    expect(asBob.stderr).toContain(`User "${BOB}" cannot list resource "secrets"`);
    expect(await statusOf(userKubeConfig(BOB).makeApiClient(CoreV1Api).listNamespacedSecret({ namespace: ns }))).toBe(403);
  });

  it('alice is in premium-users and ml-engineers: her reviews report both groups', async () => {
    const ns = await createTestNamespace('cp-groups');
    // Who am I: the API server's own view of each user.
    const whoami = async (user: string) =>
      (await userKubeConfig(user).makeApiClient(AuthenticationV1Api).createSelfSubjectReview({ body: {} })).status?.userInfo;
    const aliceInfo = await whoami(ALICE);
    expect(aliceInfo?.username).toBe(ALICE);
    expect(aliceInfo?.groups).toEqual(expect.arrayContaining(['premium-users', 'ml-engineers', 'system:authenticated']));
    expect((await whoami(BOB))?.groups).toEqual(expect.arrayContaining(['free-users']));
    expect((await whoami(MALLORY))?.groups).toEqual(['system:authenticated']);

    // One grant per group: alice's access reviews are allowed through each of her groups, by name.
    for (const [group, resource] of [['premium-users', 'secrets'], ['ml-engineers', 'configmaps']] as const) {
      await rbac().createNamespacedRole({
        namespace: ns,
        body: { metadata: { name: `${resource}-reader` }, rules: [{ apiGroups: [''], resources: [resource], verbs: ['list'] }] },
      });
      await rbac().createNamespacedRoleBinding({
        namespace: ns,
        body: {
          metadata: { name: `${group}-${resource}` },
          roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: `${resource}-reader` },
          subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: group }],
        },
      });
    }
    const review = async (user: string, resourceAttributes: V1ResourceAttributes) =>
      (await userKubeConfig(user).makeApiClient(AuthorizationV1Api).createSelfSubjectAccessReview({
        body: { spec: { resourceAttributes } },
      })).status!;
    for (const [group, resource] of [['premium-users', 'secrets'], ['ml-engineers', 'configmaps']] as const) {
      const allowed = await waitFor(async () => {
        const s = await review(ALICE, { namespace: ns, verb: 'list', resource });
        return s.allowed && s;
      }, { description: `alice to be allowed to list ${resource} through ${group}` });
      expect(allowed.reason).toContain(`to Group "${group}"`);
      for (const other of [BOB, MALLORY]) {
        expect((await review(other, { namespace: ns, verb: 'list', resource })).allowed).toBe(false);
      }
    }

    // The admin's SubjectAccessReview agrees, given alice's groups, and without them she has nothing.
    const sar = async (groups: string[]) => (await adminKubeConfig().makeApiClient(AuthorizationV1Api).createSubjectAccessReview({
      body: { spec: { user: ALICE, groups, resourceAttributes: { namespace: ns, verb: 'list', resource: 'configmaps' } } },
    })).status!;
    expect((await sar(aliceInfo!.groups!)).allowed).toBe(true);
    expect((await sar([])).allowed).toBe(false);
  });
});

describe('make controlplane-up / controlplane-down (a second control plane, in a folder of its own)', () => {
  const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
  const alive = (pid: number) => fs.existsSync(`/proc/${pid}`) && !/^\S+ \S+ Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/\(.*\)/, 'x'));
  /** Processes whose command line names the folder: the components started there. */
  const processesIn = (dir: string) =>
    fs.readdirSync('/proc').filter((e) => /^\d+$/.test(e) && Number(e) !== process.pid).filter((e) => {
      try {
        return alive(Number(e)) && fs.readFileSync(`/proc/${e}/cmdline`, 'utf8').includes(dir);
      } catch {
        return false;
      }
    });

  it.skipIf(inject('controlPlane').external)('up: /readyz answers ok through the written kubeconfig, one context per test user; down: no process left, state gone', { timeout: 180_000 }, () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tw-cli-'));
    // -o: never re-run `npm ci` from inside the test run, whatever the timestamps say.
    const make = (target: string) => spawnSync('make', ['-s', '-o', 'node_modules/.package-lock.json', target, `DEV=${dir}`], { cwd: repoRoot, encoding: 'utf8', timeout: 120_000 });
    const kubectlPath = inject('controlPlane').kubectlPath;
    try {
      const up = make('controlplane-up');
      expect(up.status, `${up.stdout}\n${up.stderr}`).toBe(0);
      const kubeconfig = path.join(dir, 'kubeconfig');
      const readyz = spawnSync(kubectlPath, ['--kubeconfig', kubeconfig, 'get', '--raw', '/readyz'], { encoding: 'utf8' });
      expect(readyz.stdout, readyz.stderr).toBe('ok');
      const contexts = spawnSync(kubectlPath, ['--kubeconfig', kubeconfig, 'config', 'get-contexts', '-o', 'name'], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
      expect(contexts).toEqual(expect.arrayContaining(['admin', ALICE, BOB, MALLORY]));
      expect(spawnSync(kubectlPath, ['--kubeconfig', kubeconfig, 'config', 'current-context'], { encoding: 'utf8' }).stdout.trim()).toBe('admin');
      const pids = fs.readdirSync(dir).filter((f) => f.endsWith('.pid')).map((f) => Number(fs.readFileSync(path.join(dir, f), 'utf8')));
      expect(pids.length).toBe(3); // etcd, kube-apiserver, kube-controller-manager
      expect(pids.every(alive)).toBe(true);
      expect(processesIn(dir).length).toBeGreaterThanOrEqual(3);

      const down = make('controlplane-down');
      expect(down.status, `${down.stdout}\n${down.stderr}`).toBe(0);
      expect(pids.filter(alive), 'components still running after controlplane-down').toEqual([]);
      expect(processesIn(dir)).toEqual([]);
      expect(fs.existsSync(path.join(dir, 'controlplane'))).toBe(false);
      expect(fs.existsSync(kubeconfig)).toBe(false);
    } finally {
      make('controlplane-down');
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('harness', () => {
  it('kubectl and the metrics endpoint reach the same API server', async () => {
    const readyz = await kubectl(['get', '--raw', '/readyz']);
    expect(readyz).toMatchObject({ code: 0, stdout: 'ok' });
    expect(await apiserverMetrics()).toMatch(/^apiserver_request_total\{/m);
  });
});
