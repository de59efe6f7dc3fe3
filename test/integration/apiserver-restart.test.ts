/**
 * Issue 4, "Done when" 4: kube-apiserver is stopped, left down, and started again while clients are
 * being created and edited. The operator is not restarted: its watches fail, back off and come back
 * (relisting what they missed), its failed reconciles are retried, and it converges, including the
 * changes made right after the restart while it was still cut off (its watches in backoff).
 *
 * Restarting the API server of the test run would break the other test files running at the same
 * time, so this file starts a control plane of its own (same binaries, ~5s) and talks to it with the
 * operator's own KubeClient. The operator is authenticated as the manifests' ServiceAccount, with
 * the manifests' RBAC applied to that control plane. Without leader election: with --leader-elect an
 * outage longer than --renew-deadline makes the leader exit by design (see README, "Leader election
 * and failover").
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { KubeConfig } from '@kubernetes/client-node';
import { startControlPlane, type ControlPlane } from '../controlplane/launcher.ts';
import { KubeClient } from '../../src/kube/client.ts';
import { SECRETS, SERVICE_ACCOUNT_CLIENTS, SERVICE_ACCOUNTS, TIERS, TOKEN_REVIEWS, resourceType, type KubeObject } from '../../src/kube/resources.ts';
import { waitFor } from './support/cluster.ts';
import { generatedCrds } from './support/crds.ts';
import { OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT, rbacObjects, resourceTypeOf, serviceAccountUser, tokenKubeconfig } from './support/rbac.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CRDS = resourceType('apiextensions.k8s.io', 'v1', 'customresourcedefinitions', 'CustomResourceDefinition', false);
const DOWN_MS = 6_000;

interface Condition {
  type: string;
  status: string;
  reason?: string;
}
interface Client extends KubeObject {
  spec: { subject: { user: string; groups?: string[] }; revocationEpoch?: number; suspended?: boolean };
  status?: { tier?: string; tokens?: { id: string }[]; revocationEpoch?: number; observedGeneration?: number; conditions?: Condition[]; secretName?: string };
}

const binDir = inject('controlPlane').binDir;
const haveBinaries = ['etcd', 'kube-apiserver', 'kube-controller-manager', 'pki'].every((b) => fs.existsSync(path.join(binDir, b)));

let root: string;
let cp: ControlPlane;
let kube: KubeClient;
let operator: ChildProcess;
let operatorExit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
let logPath: string;
const ns = 'team';
const group = 'restart-users';
const aud = 'restart-gateway';
const tierName = 'std';

const ready = (c: Client) => c.status?.conditions?.find((x) => x.type === 'Ready');
const logs = () => fs.readFileSync(logPath, 'utf8');

beforeAll(async () => {
  root = await fsp.mkdtemp(path.join(os.tmpdir(), 'tokenwarden-restart-'));
  cp = await startControlPlane({ stateDir: path.join(root, 'state'), logDir: path.join(root, 'logs'), binDir, log: () => {} });
  const kc = new KubeConfig();
  kc.loadFromFile(cp.kubeconfigPath);
  kube = new KubeClient(kc, { timeoutMs: 15_000, fieldManager: 'tokenwarden-tests' });
  for (const crd of generatedCrds()) await kube.patch(CRDS, undefined, crd.metadata.name, crd, { type: 'apply', force: true });
  await waitFor(async () => {
    for (const crd of generatedCrds()) {
      const live = await kube.get<KubeObject & { status?: { conditions?: Condition[] } }>(CRDS, undefined, crd.metadata.name);
      if (!live.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True')) return false;
    }
    // Established comes a moment before the resource is served.
    await kube.list(SERVICE_ACCOUNT_CLIENTS, undefined, { limit: 1 });
    return true;
  }, { timeoutMs: 60_000, description: 'CRDs established' });
  await kube.create(resourceType('', 'v1', 'namespaces', 'Namespace', false), undefined, { metadata: { name: ns } });
  // The operator's identity and permissions: manifests/ as they are, and a token of its ServiceAccount.
  for (const obj of rbacObjects()) {
    await kube.patch(resourceTypeOf(obj), obj.metadata.namespace, obj.metadata.name, obj as KubeObject, { type: 'apply', force: true });
  }
  const minted = await kube.createSubresource<{ status?: { token?: string } }>(SERVICE_ACCOUNTS, OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT, 'token', {
    apiVersion: 'authentication.k8s.io/v1',
    kind: 'TokenRequest',
    spec: { expirationSeconds: 3 * 3600 },
  });
  const operatorKubeconfig = tokenKubeconfig(minted.status?.token as string, serviceAccountUser(OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT), kc);

  logPath = path.join(root, 'operator.log');
  const fd = fs.openSync(logPath, 'a');
  operator = spawn(process.execPath, [path.join(repoRoot, 'src/main.ts'), '--kubeconfig', operatorKubeconfig, '--metrics-bind-address=0', '--health-probe-bind-address=0', '--log-level=info'], {
    cwd: repoRoot,
    stdio: ['ignore', fd, fd],
    env: Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TOKENWARDEN_'))),
  });
  fs.closeSync(fd);
  operator.on('exit', (code, signal) => (operatorExit = { code, signal }));
  await waitFor(async () => {
    if (operatorExit) throw new Error(`operator exited: ${logs().slice(-2000)}`);
    return logs().includes('"msg":"operator started"');
  }, { timeoutMs: 60_000, description: 'operator started' });
}, 180_000);

afterAll(async () => {
  if (logPath && fs.existsSync(logPath)) fs.copyFileSync(logPath, path.join(os.tmpdir(), `tokenwarden-restart-operator-${process.pid}.log`));
  if (operator && !operatorExit) {
    operator.kill('SIGTERM');
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, 15_000);
      operator.once('exit', () => resolve(clearTimeout(timer)));
    });
    if (!operatorExit) operator.kill('SIGKILL');
  }
  await cp?.stop().catch(() => undefined);
  await kube?.close();
  if (root) await fsp.rm(root, { recursive: true, force: true });
});

const createClient = (name: string, user: string) =>
  kube.create<Client>(SERVICE_ACCOUNT_CLIENTS, ns, { apiVersion: 'tokenwarden.io/v1alpha1', kind: 'ServiceAccountClient', metadata: { name }, spec: { subject: { user, groups: [group] } } });

async function authenticated(token: string): Promise<boolean> {
  const res = await kube.create<KubeObject & { status?: { authenticated?: boolean } }>(TOKEN_REVIEWS, undefined, {
    apiVersion: 'authentication.k8s.io/v1',
    kind: 'TokenReview',
    spec: { token, audiences: [aud, `nonce-${randomBytes(4).toString('hex')}`] },
  } as KubeObject);
  return res.status?.authenticated === true;
}

describe.skipIf(!haveBinaries)('4: kube-apiserver restarted while clients are created and edited', () => {
  it('the operator reconnects without a restart and applies everything, including what changed while it was cut off', { timeout: 300_000 }, async () => {
    await kube.create(TIERS, undefined, {
      apiVersion: 'tokenwarden.io/v1alpha1',
      kind: 'Tier',
      metadata: { name: tierName },
      spec: { level: 10, groups: [group], token: { audiences: [aud], defaultExpiration: '1h' }, deletionPolicy: 'Delete' },
    } as KubeObject);
    const names = Array.from({ length: 30 }, (_, i) => `c-${String(i).padStart(2, '0')}`);
    const user = (i: number) => `user-${i % 10}@example.com`;
    // Before the outage: half the clients, and revocations of five of them, in flight as it stops.
    await Promise.all(names.slice(0, 15).map((n, i) => createClient(n, user(i))));
    await waitFor(async () => (await kube.list<Client>(SERVICE_ACCOUNT_CLIENTS, ns)).items.filter((c) => ready(c)?.status === 'True').length >= 10, {
      timeoutMs: 60_000,
      description: 'the first clients Ready',
    });
    await Promise.all(names.slice(0, 5).map((n) => kube.patch(SERVICE_ACCOUNT_CLIENTS, ns, n, { spec: { revocationEpoch: 1 } })));
    const pid = operator.pid;

    await cp.stopApiServer();
    await new Promise((resolve) => setTimeout(resolve, DOWN_MS));
    await cp.startApiServer();

    // Right after the restart, while the operator's watches are still backing off.
    await Promise.all([
      ...names.slice(15).map((n, i) => createClient(n, user(15 + i))),
      ...names.slice(5, 10).map((n) => kube.patch(SERVICE_ACCOUNT_CLIENTS, ns, n, { spec: { revocationEpoch: 2 } })),
      kube.patch(SERVICE_ACCOUNT_CLIENTS, ns, 'c-11', { spec: { suspended: true } }),
    ]);
    const gone = await kube.get<Client>(SERVICE_ACCOUNT_CLIENTS, ns, 'c-10');
    await kube.delete(SERVICE_ACCOUNT_CLIENTS, ns, 'c-10');

    const clients = await waitFor(
      async () => {
        const list = (await kube.list<Client>(SERVICE_ACCOUNT_CLIENTS, ns)).items;
        if (list.some((c) => c.metadata?.name === 'c-10') || list.length !== 29) throw new Error(`${list.length} clients, c-10 still there`);
        const behind = list.filter((c) => {
          const r = ready(c);
          if (c.status?.observedGeneration !== c.metadata?.generation) return true;
          if (c.metadata?.name === 'c-11') return !(r?.status === 'False' && r.reason === 'Suspended' && (c.status?.tokens ?? []).length === 0);
          return !(r?.status === 'True' && (c.status?.revocationEpoch ?? 0) === (c.spec.revocationEpoch ?? 0) && (c.status?.tokens ?? []).length === 1);
        });
        if (behind.length > 0) {
          const show = (c: Client) => `${c.metadata?.name} gen ${c.metadata?.generation}/${c.status?.observedGeneration} ${ready(c)?.status}/${ready(c)?.reason} tokens ${c.status?.tokens?.length}`;
          throw new Error(`not converged: ${behind.slice(0, 5).map(show).join('; ')}`);
        }
        return list;
      },
      { timeoutMs: 120_000, intervalMs: 1000, description: 'every change applied' },
    );
    expect(operatorExit, 'the operator kept running').toBeUndefined();
    expect(operator.pid).toBe(pid);
    // It did see the outage, and came back by itself.
    expect(logs()).toMatch(/"msg":"(watch failed; restarting|list failed)"/);

    // The deleted client left no anchor behind; the others' tokens work.
    const anchors = (await kube.list<KubeObject & { type?: string }>(SECRETS, undefined, { labelSelector: `tokenwarden.io/client-uid=${gone.metadata?.uid}` })).items;
    expect(anchors).toEqual([]);
    for (const c of clients.filter((x) => x.metadata?.name !== 'c-11')) {
      const secret = await kube.get<KubeObject & { data?: Record<string, string> }>(SECRETS, ns, c.status?.secretName as string);
      const token = Buffer.from(secret.data?.token ?? '', 'base64').toString('utf8');
      expect(await authenticated(token), `${c.metadata?.name}'s token`).toBe(true);
    }
  });
});
