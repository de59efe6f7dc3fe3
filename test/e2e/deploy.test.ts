/**
 * `make test-e2e`: the operator as it ships, on a real node (test/node/node.sh: kubelet, containerd,
 * runc), installed twice, each time checked the same way through kubectl and the users' contexts:
 * first by `helm install` of charts/tokenwarden with its default values, then (after `helm
 * uninstall`) by `make deploy` from manifests/ unchanged. The node and the image are brought up by the Makefile before this file runs
 * (TOKENWARDEN_DEV_DIR names them) and taken down after it.
 *
 * A few checks read what only the node can show (the container's cgroup memory limit, the user its
 * process runs as, its root mount) from the host, and one uses the ServiceAccount token the kubelet
 * mounted into the Pod, read from the kubelet's volume folder, to show the API server sees the Pod
 * as the operator's ServiceAccount and the fence refuses it. No test-only overlay is needed: the
 * node routes the `kubernetes` Service to the API server (node.sh), so the Deployment's in-cluster
 * configuration works as in any cluster.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';

const run = promisify(execFile);
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const dev = path.resolve(process.env.TOKENWARDEN_DEV_DIR || path.join(repoRoot, '.dev'));
const kubeconfig = path.join(dev, 'kubeconfig');
const nodeState = path.join(dev, 'node');
const NS = 'tokenwarden-system';
const SA_USER = `system:serviceaccount:${NS}:tokenwarden`;
const ALICE = 'alice@example.com';
const LIMIT_BYTES = 192 * 1024 * 1024; // manifests/deployment.yaml
const LEASE_DURATION_S = 15; // src/config.ts defaults, as the Deployment runs them
const RETRY_PERIOD_S = 2;

let kubectlBin = '';
let helmBin = '';

async function kubectl(args: string[], opts: { context?: string; input?: string; allowFail?: boolean; kubeconfig?: string } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const argv = [`--kubeconfig=${opts.kubeconfig ?? kubeconfig}`, ...(opts.context ? [`--context=${opts.context}`] : []), ...args];
  const child = execFile(kubectlBin, argv, { maxBuffer: 64 << 20 });
  if (opts.input !== undefined) child.stdin!.end(opts.input);
  else child.stdin!.end();
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const code = await new Promise<number>((resolve) => child.on('close', (c) => resolve(c ?? 1)));
  if (code !== 0 && !opts.allowFail) throw new Error(`kubectl ${args.join(' ')} (exit ${code}): ${stderr.trim()}`);
  return { code, stdout, stderr };
}
const json = async <T>(args: string[], context?: string): Promise<T> => JSON.parse((await kubectl([...args, '-o', 'json'], { context })).stdout) as T;

async function make(target: string): Promise<string> {
  const { stdout, stderr } = await run('make', ['--no-print-directory', target, `KUBECTL=${kubectlBin}`], {
    cwd: repoRoot,
    env: { ...process.env, KUBECONFIG: kubeconfig },
    maxBuffer: 16 << 20,
  });
  return stdout + stderr;
}

async function until<T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined | false>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

interface Pod { metadata: { name: string; uid: string; deletionTimestamp?: string }; status: { podIP?: string; phase?: string; conditions?: Array<{ type: string; status: string }>; containerStatuses?: Array<{ containerID?: string; ready: boolean; restartCount: number }> } }
const isReady = (p: Pod) => p.status.phase === 'Running' && !p.metadata.deletionTimestamp && p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
const operatorPods = async () => (await json<{ items: Pod[] }>(['get', 'pods', '-n', NS, '-l', 'app.kubernetes.io/name=tokenwarden'])).items;
const leaseHolder = async () => (await json<{ spec: { holderIdentity?: string } }>(['get', 'lease', '-n', NS, 'tokenwarden-leader'])).spec.holderIdentity ?? '';
/** The Lease identity is `<pod name>_<random>` (src/controller/leader-election.ts). */
const podOf = (holder: string) => holder.replace(/_[^_]*$/, '');

/** The operator container's memory cgroup folder on the node, found by its container id. */
function containerCgroup(pod: Pod): string {
  const id = pod.status.containerStatuses?.[0]?.containerID?.replace(/^containerd:\/\//, '');
  if (!id) throw new Error(`no container id for ${pod.metadata.name}`);
  const podDir = `pod${pod.metadata.uid}`;
  const base = '/sys/fs/cgroup/memory/tokenwarden-node/kubepods';
  for (const qos of ['', 'burstable', 'besteffort']) {
    const dir = path.join(base, qos, podDir, id);
    if (fs.existsSync(dir)) return dir;
  }
  throw new Error(`no memory cgroup for container ${id} under ${base}`);
}

/** A kubeconfig holding only the token the kubelet mounted into the Pod (the operator's in-cluster credential). */
async function podKubeconfig(pod: Pod): Promise<string> {
  const admin = JSON.parse((await kubectl(['config', 'view', '--raw', '--minify', '-o', 'json'])).stdout) as { clusters: Array<{ cluster: { server: string; 'certificate-authority-data': string } }> };
  const file = path.join(dev, 'e2e-pod.kubeconfig');
  fs.writeFileSync(file, JSON.stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'c', cluster: admin.clusters[0]!.cluster }],
    users: [{ name: 'pod', user: { token: podToken(pod) } }],
    contexts: [{ name: 'pod', context: { cluster: 'c', user: 'pod' } }],
    'current-context': 'pod',
  }), { mode: 0o600 });
  return file;
}

function podToken(pod: Pod): string {
  const volumes = path.join(nodeState, 'kubelet/pods', pod.metadata.uid, 'volumes/kubernetes.io~projected');
  const dir = fs.readdirSync(volumes).find((d) => d.startsWith('kube-api-access-'));
  if (!dir) throw new Error(`no kube-api-access volume in ${volumes}`);
  return fs.readFileSync(path.join(volumes, dir, 'token'), 'utf8').trim();
}

async function helm(args: string[]): Promise<string> {
  const { stdout, stderr } = await run(helmBin, [...args, '--kubeconfig', kubeconfig], { cwd: repoRoot, maxBuffer: 16 << 20 });
  return stdout + stderr;
}

async function createClient(name: string): Promise<void> {
  await kubectl(['create', '-n', 'team-a', '-f', '-'], {
    context: ALICE,
    input: JSON.stringify({
      apiVersion: 'tokenwarden.io/v1alpha1',
      kind: 'ServiceAccountClient',
      metadata: { name },
      spec: { subject: { user: ALICE, groups: ['premium-users', 'ml-engineers'] } },
    }),
  });
}
const clientReady = async (name: string) =>
  (await kubectl(['wait', '-n', 'team-a', `sac/${name}`, '--for=condition=Ready', '--timeout=90s'], { context: ALICE })).code === 0;

async function tokenOf(client: string): Promise<string> {
  const secret = await json<{ data: Record<string, string> }>(['get', 'secret', '-n', 'team-a', `${client}-token`], ALICE);
  return Buffer.from(secret.data.token!, 'base64').toString('utf8');
}
async function review(token: string): Promise<{ authenticated?: boolean; user?: { username: string } }> {
  const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as { aud: string[] };
  // One extra audience never used before, so the answer is never the API server's 10 s cache.
  const res = await kubectl(['create', '-f', '-', '-o', 'json'], {
    input: JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: [...claims.aud, `e2e-${Date.now()}`] } }),
  });
  return (JSON.parse(res.stdout) as { status: { authenticated?: boolean; user?: { username: string } } }).status;
}

beforeAll(async () => {
  kubectlBin = path.join((await run('bash', [path.join(repoRoot, 'test/controlplane/build.sh'), '--dir'])).stdout.trim(), 'kubectl');
  helmBin = path.join((await run('bash', [path.join(repoRoot, 'test/controlplane/build.sh'), '--helm'])).stdout.trim(), 'helm');
  if (!fs.existsSync(path.join(nodeState, 'kubelet.pid'))) throw new Error(`no node in ${dev}: run \`make test-e2e\` (it brings the node up first)`);
  await kubectl(['wait', '--for=condition=Ready', 'node/tokenwarden-node', '--timeout=60s']);
}, 120_000);

afterAll(async () => {
  // On failure, what the kubelet saw of the operator's Pods helps more than anything else.
  if (kubectlBin) {
    const ev = await kubectl(['get', 'events', '-n', NS, '--sort-by=.lastTimestamp'], { allowFail: true });
    if (ev.code === 0) console.log(ev.stdout.split('\n').slice(-15).join('\n'));
  }
});

interface Install {
  name: string;
  /** Installs the operator, its CRDs, access/ and the fence. */
  install(): Promise<void>;
  /** Removes what install() did but the CRDs; returns what it printed. */
  uninstall(): Promise<string>;
}

const installs: Install[] = [
  {
    name: 'helm install of charts/tokenwarden with default values',
    async install() {
      // The chart leaves the Namespace to the installer (Helm stores the release in it): created
      // enforcing Pod Security restricted, as manifests/namespace.yaml does.
      await kubectl(['create', 'namespace', NS]);
      await kubectl(['label', 'namespace', NS, 'pod-security.kubernetes.io/enforce=restricted']);
      const out = await helm(['install', 'tokenwarden', 'charts/tokenwarden', '--namespace', NS]);
      // NOTES.txt: what uninstalling means for issued tokens; no Pod Security hint for a restricted namespace
      expect(out).toContain('tokens already issued stay valid until they expire');
      expect(out).not.toContain('does not enforce Pod Security restricted');
    },
    async uninstall() {
      const out = await helm(['uninstall', 'tokenwarden', '--namespace', NS]);
      await kubectl(['delete', 'namespace', NS]);
      return out;
    },
  },
  {
    name: 'make deploy of manifests/ as shipped',
    install: async () => void (await make('deploy')),
    uninstall: () => make('undeploy'),
  },
];

describe.sequential.each(installs)('the operator as it ships, on a real node: $name', (method) => {
  const prefix = method.name.startsWith('helm') ? 'helm' : 'kustomize';
  test('two replicas Running and Ready through their probes, one holds the Lease', async () => {
    await method.install();
    await kubectl(['rollout', 'status', '-n', NS, 'deployment/tokenwarden', '--timeout=150s']);
    const pods = await until('two Ready operator Pods', 60_000, async () => {
      const p = (await operatorPods()).filter(isReady);
      return p.length === 2 ? p : undefined;
    });
    // Ready comes from the readiness probe (/readyz on 8081): a Pod with a readiness probe is Ready only once it passes.
    const deployment = await json<{ spec: { template: { spec: { containers: Array<{ readinessProbe?: unknown; livenessProbe?: unknown }> } } } }>(['get', 'deployment', '-n', NS, 'tokenwarden']);
    expect(deployment.spec.template.spec.containers[0]!.readinessProbe).toBeDefined();
    expect(deployment.spec.template.spec.containers[0]!.livenessProbe).toBeDefined();
    const holder = await until('a Lease holder', 60_000, async () => (await leaseHolder()) || undefined);
    expect(pods.map((p) => p.metadata.name)).toContain(podOf(holder));
    // and the API server reaches the kubelet for logs (the node IP is not loopback)
    const logs = await kubectl(['logs', '-n', NS, podOf(holder), '--tail=50']);
    expect(logs.stdout).toContain('became leader');
  });

  test('a client becomes Ready through alice\'s own context and its token passes TokenReview', async () => {
    await kubectl(['apply', '--server-side', '-k', 'config/samples']);
    await kubectl(['create', 'rolebinding', 'alice-edit', '-n', 'team-a', '--clusterrole=edit', `--user=${ALICE}`], { allowFail: true });
    await createClient(`${prefix}-notebook`);
    expect(await clientReady(`${prefix}-notebook`)).toBe(true);
    const status = await review(await tokenOf(`${prefix}-notebook`));
    expect(status.authenticated).toBe(true);
    expect(status.user?.username).toMatch(/^system:serviceaccount:tokenwarden-tier-premium:alice-example-com-/);
  }, 180_000);

  test('the Pod runs as 65532 with a read-only root filesystem, in a namespace enforcing Pod Security restricted', async () => {
    const ns = await json<{ metadata: { labels: Record<string, string> } }>(['get', 'namespace', NS]);
    expect(ns.metadata.labels['pod-security.kubernetes.io/enforce']).toBe('restricted');
    // enforced, not only labelled: a root Pod is refused there (server-side dry run)
    const root = await kubectl(['run', 'e2e-root', '-n', NS, '--image=tokenwarden:dev', '--dry-run=server', '--overrides={"spec":{"securityContext":{"runAsUser":0}}}'], { allowFail: true });
    expect(root.code).not.toBe(0);
    expect(root.stderr).toContain('violates PodSecurity "restricted');
    for (const pod of (await operatorPods()).filter(isReady)) {
      const cgroup = containerCgroup(pod);
      const pid = fs.readFileSync(path.join(cgroup, 'cgroup.procs'), 'utf8').trim().split('\n')[0]!;
      const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
      expect(status).toMatch(/^Uid:\t65532\t65532\t65532\t65532$/m);
      expect(status).toMatch(/^Gid:\t65532\t65532\t65532\t65532$/m);
      const rootMount = fs.readFileSync(`/proc/${pid}/mountinfo`, 'utf8').split('\n').find((l) => l.split(' ')[4] === '/');
      expect(rootMount?.split(' ')[5]?.split(',')).toContain('ro');
      expect(fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').slice(0, 2)).toEqual(['/usr/local/bin/node', 'src/main.ts']);
      // no shell in the image
      const sh = await kubectl(['exec', '-n', NS, pod.metadata.name, '--', 'sh', '-c', 'true'], { allowFail: true });
      expect(sh.code).not.toBe(0);
      expect(sh.stderr + sh.stdout).toMatch(/no such file or directory|executable file not found/);
    }
  });

  test('the container\'s cgroup memory limit is the Deployment\'s', async () => {
    const deployment = await json<{ spec: { template: { spec: { containers: Array<{ resources: { limits: { memory: string } } }> } } } }>(['get', 'deployment', '-n', NS, 'tokenwarden']);
    expect(deployment.spec.template.spec.containers[0]!.resources.limits.memory).toBe('192Mi');
    for (const pod of (await operatorPods()).filter(isReady)) {
      expect(Number(fs.readFileSync(path.join(containerCgroup(pod), 'memory.limit_in_bytes'), 'utf8'))).toBe(LIMIT_BYTES);
    }
  });

  test('the operator acts as its own ServiceAccount, and the fence refuses a write it must not make', async () => {
    const pod = (await operatorPods()).find(isReady)!;
    const asPod = { kubeconfig: await podKubeconfig(pod) };
    const whoami = JSON.parse((await kubectl(['auth', 'whoami', '-o', 'json'], asPod)).stdout) as { status: { userInfo: { username: string; extra?: Record<string, string[]> } } };
    expect(whoami.status.userInfo.username).toBe(SA_USER);
    expect(whoami.status.userInfo.extra?.['authentication.kubernetes.io/pod-name']).toEqual([pod.metadata.name]);
    // RBAC lets it create ServiceAccounts anywhere; the fence allows them only in tier namespaces.
    const refused = await kubectl(['create', 'serviceaccount', 'e2e-fence-probe', '-n', 'kube-system'], { ...asPod, allowFail: true });
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('tokenwarden-operator-fence');
    expect(refused.stderr).toContain('only in tier namespaces');
    // and what it may do passes: the operator's own reads
    expect((await kubectl(['get', 'tiers'], asPod)).code).toBe(0);
    fs.rmSync(asPod.kubeconfig);
  });

  test('metrics are scraped from the Pods: the leader reports 1, the standby 0', async () => {
    const holder = podOf(await leaseHolder());
    for (const pod of (await operatorPods()).filter(isReady)) {
      const metrics = (await kubectl(['get', '--raw', `/api/v1/namespaces/${NS}/pods/${pod.metadata.name}:8080/proxy/metrics`])).stdout;
      expect(metrics).toMatch(new RegExp(`^leader_election_master_status\\{name="tokenwarden-leader"\\} ${pod.metadata.name === holder ? 1 : 0}$`, 'm'));
      expect(metrics).toMatch(/^process_resident_memory_bytes \d/m);
      if (pod.metadata.name === holder) expect(metrics).toMatch(/^tokenwarden_clients\{tier="premium",ready="true"\} [1-9]/m);
    }
  });

  test('deleting the leader Pod hands over within the lease\'s bounds, and a client created meanwhile becomes Ready', async () => {
    const old = podOf(await leaseHolder());
    const t0 = Date.now();
    await kubectl(['delete', 'pod', '-n', NS, old, '--wait=false']);
    await createClient(`${prefix}-during-handover`);
    const next = await until('a new Lease holder', (LEASE_DURATION_S + 3 * RETRY_PERIOD_S + 5) * 1000, async () => {
      const h = await leaseHolder();
      return h && podOf(h) !== old ? h : undefined;
    });
    const handoverS = (Date.now() - t0) / 1000;
    console.log(`hand-over from ${old} to ${podOf(next)} in ${handoverS.toFixed(1)} s`);
    // SIGTERM releases the Lease; a crash would wait out the lease duration plus up to two retries.
    expect(handoverS).toBeLessThanOrEqual(LEASE_DURATION_S + 2 * RETRY_PERIOD_S + 2);
    expect(await clientReady(`${prefix}-during-handover`)).toBe(true);
    expect((await review(await tokenOf(`${prefix}-during-handover`))).authenticated).toBe(true);
    // the Deployment is back to two Ready replicas
    await kubectl(['rollout', 'status', '-n', NS, 'deployment/tokenwarden', '--timeout=120s']);
    await until('two Ready operator Pods again', 60_000, async () => ((await operatorPods()).filter(isReady).length === 2 ? true : undefined));
  }, 180_000);

  test('uninstalling leaves nothing behind; tokens already issued stay valid until they expire', async () => {
    const token = await tokenOf(`${prefix}-notebook`);
    const out = await method.uninstall();
    if (prefix === 'kustomize') expect(out).toContain('stay valid until they expire');
    await until('namespace tokenwarden-system gone', 120_000, async () => (await kubectl(['get', 'namespace', NS], { allowFail: true })).code !== 0);
    for (const [kind, name] of [
      ['clusterrole', 'tokenwarden-operator'], ['clusterrole', 'tokenwarden-tier-roles'],
      ['clusterrolebinding', 'tokenwarden-operator'], ['clusterrolebinding', 'tokenwarden-tier-roles'],
      ['validatingadmissionpolicy', 'tokenwarden-operator-fence'], ['validatingadmissionpolicybinding', 'tokenwarden-operator-fence'],
    ] as const) {
      expect((await kubectl(['get', kind, name], { allowFail: true })).code, `${kind}/${name}`).not.toBe(0);
    }
    if (prefix === 'helm') {
      // the chart's admission policies of access/ go with it (the CRDs stay, as Helm leaves crds/)
      expect((await kubectl(['get', 'validatingadmissionpolicy', 'tokenwarden-client-subject'], { allowFail: true })).code).not.toBe(0);
      expect((await helm(['list', '--namespace', NS, '--short'])).trim()).toBe('');
    }
    const left = await kubectl(['get', 'pods', '-A', '-l', 'app.kubernetes.io/name=tokenwarden', '-o', 'name']);
    expect(left.stdout.trim()).toBe('');
    expect((await review(token)).authenticated).toBe(true);
  }, 180_000);
});
