/**
 * A real, local Kubernetes control plane for integration tests and development: etcd,
 * kube-apiserver and kube-controller-manager built from source by build.sh, on loopback ports,
 * with certificates written by the `pki` program beside them. No Docker, no kubelet, no network.
 *
 * Library:  startControlPlane() starts one and returns a handle; attachControlPlane() rebuilds a
 *           handle from a state folder (another process, e.g. a test worker or the CLI).
 * CLI:      node test/controlplane/launcher.ts up|down|status
 *           (state in .dev/controlplane/, logs in .dev/logs/, pids in .dev/*.pid, .dev/kubeconfig)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify as toYaml } from 'yaml';

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '../..');

export const COMPONENTS = ['etcd', 'kube-apiserver', 'kube-controller-manager'] as const;
export type Component = (typeof COMPONENTS)[number];

export const SERVICE_ACCOUNT_ISSUER = 'https://kubernetes.default.svc.cluster.local';
export const SERVICE_CLUSTER_IP_RANGE = '10.0.0.0/24';
export const CLUSTER_NAME = 'tokenwarden-test';
export const ADMIN_CONTEXT = 'admin';

export interface TestUser {
  name: string;
  groups: readonly string[];
  /** The kubeconfig context (and its user entry); default `name`. */
  context?: string;
}

/** Static-token users of the API server; each gets a kubeconfig context named by `context`, else exactly by `name`. */
export const TEST_USERS: readonly TestUser[] = [
  { name: 'alice@example.com', groups: ['premium-users', 'ml-engineers'] },
  { name: 'bob@example.com', groups: ['free-users'] },
  { name: 'mallory@example.com', groups: [] },
  // alice after she left premium-users: the same user as the identity provider now reports her, a
  // second token with fewer groups (a token file may hold several tokens for one user).
  { name: 'alice@example.com', groups: ['ml-engineers'], context: 'alice@example.com/left-premium-users' },
];

export interface ControlPlaneOptions {
  stateDir: string;
  logDir: string;
  /** Folder with the binaries; default: build.sh's output, building first when needed. */
  binDir?: string;
  /** Default `<stateDir>/kubeconfig`. */
  kubeconfigPath?: string;
  /** Where `<component>.pid` files go; default stateDir. */
  pidDir?: string;
  /**
   * false (default): the components are stopped if this process dies without calling stop().
   * true: they run in their own session and outlive this process (the CLI's `up`).
   */
  detached?: boolean;
  /** Progress lines; default stderr. */
  log?: (line: string) => void;
  /**
   * true: ready for a node (test/node/node.sh, `make node-up`) to join: the Node authorizer and
   * NodeRestriction, the API server's client certificate for kubelets, and the controllers Pods
   * need (ServiceAccounts, kube-root-ca.crt, Deployments, ReplicaSets, PodDisruptionBudgets,
   * EndpointSlices; nodelifecycle lifts the not-ready taint the kubelet registers with). Off for the integration tests, whose namespaces must stay as bare as they expect.
   */
  node?: boolean;
}

export interface ControlPlane {
  readonly server: string;
  readonly kubeconfigPath: string;
  readonly stateDir: string;
  readonly logDir: string;
  readonly binDir: string;
  /** Current pid of each component, 0 when it is not running; read live (restarts change them). */
  readonly pids: Record<Component, number>;
  /** The static-token users and their tokens (test secrets, also in the kubeconfig). */
  readonly users: ReadonlyArray<TestUser & { token: string }>;
  /** Stops all three components (SIGTERM, then SIGKILL after a bound). Keeps the state folder. */
  stop(): Promise<void>;
  /** Stops kube-apiserver only; `kill` skips the graceful SIGTERM (a crash rather than a shutdown). */
  stopApiServer(opts?: { kill?: boolean }): Promise<void>;
  /** Starts kube-apiserver again with the same flags and port and waits for /readyz. */
  startApiServer(): Promise<void>;
}

/** Everything needed to drive a running control plane from any process; state.json. */
interface State {
  version: 1;
  server: string;
  kubeconfigPath: string;
  stateDir: string;
  logDir: string;
  pidDir: string;
  binDir: string;
  ports: { etcdClient: number; etcdPeer: number; apiserver: number };
  users: Array<TestUser & { token: string }>;
  /** Started for a node (ControlPlaneOptions.node). */
  node?: boolean;
  /** argv of each component, binary first. */
  commands: Record<Component, string[]>;
}

const defaultLog = (line: string): void => {
  process.stderr.write(`[controlplane] ${line}\n`);
};

const READY_TIMEOUT_MS: Record<Component, number> = {
  etcd: 60_000,
  'kube-apiserver': 150_000,
  'kube-controller-manager': 90_000,
};
// kube-apiserver drains in-flight requests on SIGTERM; the others exit at once.
const STOP_GRACE_MS: Record<Component, number> = {
  etcd: 10_000,
  'kube-apiserver': 20_000,
  'kube-controller-manager': 10_000,
};

/** Runs build.sh (its progress goes to stderr) and returns the folder holding the binaries. */
export async function buildControlPlane(): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [path.join(here, 'build.sh')], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.on('error', reject);
    child.on('close', (code) => {
      const dir = out.trim().split('\n').pop() ?? '';
      if (code === 0 && dir) resolve(dir);
      else reject(new Error(`test/controlplane/build.sh failed (exit ${code})`));
    });
  });
}

export async function startControlPlane(opts: ControlPlaneOptions): Promise<ControlPlane> {
  const log = opts.log ?? defaultLog;
  const t0 = performance.now();
  const stateDir = path.resolve(opts.stateDir);
  const logDir = path.resolve(opts.logDir);
  const pidDir = path.resolve(opts.pidDir ?? stateDir);
  const kubeconfigPath = path.resolve(opts.kubeconfigPath ?? path.join(stateDir, 'kubeconfig'));
  const binDir = opts.binDir ? path.resolve(opts.binDir) : await buildControlPlane();
  for (const b of [...COMPONENTS, 'pki']) {
    if (!fs.existsSync(path.join(binDir, b))) throw new Error(`${b} not found in ${binDir}; run test/controlplane/build.sh`);
  }

  // A previous run's processes would hold the ports and the etcd data: refuse rather than guess.
  const live = COMPONENTS.filter((c) => ownedPid(stateDir, pidDir, c) !== 0);
  if (live.length) throw new Error(`a control plane is still running from ${stateDir} (${live.join(', ')}); stop it first`);
  // Always a fresh cluster: drop what an earlier run left (only the files this module writes).
  for (const p of ['etcd', 'pki', 'apiserver-certs', 'state.json', 'tokens.csv', 'controller-manager.kubeconfig']) {
    await fsp.rm(path.join(stateDir, p), { recursive: true, force: true });
  }
  await Promise.all([stateDir, logDir, pidDir, path.dirname(kubeconfigPath)].map((d) => fsp.mkdir(d, { recursive: true })));
  // Fresh logs per cluster; the previous ones are kept once (they may explain why it was replaced).
  for (const c of COMPONENTS) {
    await fsp.rename(path.join(logDir, `${c}.log`), path.join(logDir, `${c}.previous.log`)).catch(() => {});
  }

  const pki = path.join(stateDir, 'pki');
  await run(path.join(binDir, 'pki'), ['-dir', pki]);

  const [etcdClient, etcdPeer, apiserver] = await freePorts(3) as [number, number, number];
  const server = `https://127.0.0.1:${apiserver}`;
  const users = TEST_USERS.map((u) => ({ ...u, token: randomBytes(24).toString('base64url') }));
  const tokensFile = path.join(stateDir, 'tokens.csv');
  // token,user,uid[,"group1,group2"]: no groups column at all for no groups ("" would be a group named "").
  await writePrivate(tokensFile, users.map((u) => `${u.token},${u.name},${u.name}${u.groups.length ? `,"${u.groups.join(',')}"` : ''}\n`).join(''));
  const kcmKubeconfig = path.join(stateDir, 'controller-manager.kubeconfig');
  await writePrivate(kcmKubeconfig, toYaml({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: CLUSTER_NAME, cluster: { server, 'certificate-authority': path.join(pki, 'ca.crt') } }],
    users: [{ name: 'kube-controller-manager', user: {
      'client-certificate': path.join(pki, 'controller-manager.crt'),
      'client-key': path.join(pki, 'controller-manager.key'),
    } }],
    contexts: [{ name: 'default', context: { cluster: CLUSTER_NAME, user: 'kube-controller-manager' } }],
    'current-context': 'default',
  }));
  await writeKubeconfig(kubeconfigPath, server, pki, users);

  const etcdUrl = `http://127.0.0.1:${etcdClient}`;
  const peerUrl = `http://127.0.0.1:${etcdPeer}`;
  // Flags as --name=value so every argv names stateDir: that is how a pid is proven to be ours.
  const node = opts.node ?? false;
  const state: State = {
    version: 1, server, kubeconfigPath, stateDir, logDir, pidDir, binDir,
    ports: { etcdClient, etcdPeer, apiserver },
    users,
    node,
    commands: {
      etcd: [
        path.join(binDir, 'etcd'),
        `--name=${CLUSTER_NAME}`,
        `--data-dir=${path.join(stateDir, 'etcd')}`,
        `--listen-client-urls=${etcdUrl}`,
        `--advertise-client-urls=${etcdUrl}`,
        `--listen-peer-urls=${peerUrl}`,
        `--initial-advertise-peer-urls=${peerUrl}`,
        `--initial-cluster=${CLUSTER_NAME}=${peerUrl}`,
        '--initial-cluster-state=new',
        // Throwaway data: durability buys nothing and fsync is most of etcd's latency on a busy disk.
        '--unsafe-no-fsync',
        // A cap, not an allocation: generous so a long test or bench run never hits NOSPACE.
        '--quota-backend-bytes=4294967296',
        '--log-level=warn',
      ],
      'kube-apiserver': [
        path.join(binDir, 'kube-apiserver'),
        `--etcd-servers=${etcdUrl}`,
        '--bind-address=127.0.0.1',
        '--advertise-address=127.0.0.1',
        `--secure-port=${apiserver}`,
        `--cert-dir=${path.join(stateDir, 'apiserver-certs')}`,
        `--tls-cert-file=${path.join(pki, 'apiserver.crt')}`,
        `--tls-private-key-file=${path.join(pki, 'apiserver.key')}`,
        `--client-ca-file=${path.join(pki, 'ca.crt')}`,
        `--token-auth-file=${tokensFile}`,
        ...(node
          ? [
              '--authorization-mode=Node,RBAC',
              '--enable-admission-plugins=NodeRestriction',
              // The API server reaches the kubelet (logs, exec) with the admin certificate; the
              // kubelet authorizes it by SubjectAccessReview (system:masters).
              `--kubelet-client-certificate=${path.join(pki, 'admin.crt')}`,
              `--kubelet-client-key=${path.join(pki, 'admin.key')}`,
              '--kubelet-preferred-address-types=InternalIP',
            ]
          : ['--authorization-mode=RBAC']),
        `--service-account-issuer=${SERVICE_ACCOUNT_ISSUER}`,
        `--service-account-key-file=${path.join(pki, 'sa.pub')}`,
        `--service-account-signing-key-file=${path.join(pki, 'sa.key')}`,
        `--service-cluster-ip-range=${SERVICE_CLUSTER_IP_RANGE}`,
        // The kubernetes Service's Endpoints cannot hold a loopback address (rejected every 10s).
        '--endpoint-reconciler-type=none',
        // On SIGTERM: drain in-flight requests, then give open watches 2s instead of --request-timeout
        // (60s), so a graceful stop takes seconds while clients are connected.
        '--shutdown-send-retry-after=true',
        '--profiling=false',
      ],
      'kube-controller-manager': [
        path.join(binDir, 'kube-controller-manager'),
        `--kubeconfig=${kcmKubeconfig}`,
        node
          ? '--controllers=garbagecollector,namespace,clusterrole-aggregation,serviceaccount,root-ca-cert-publisher,deployment,replicaset,disruption,endpointslice,podgc,nodelifecycle'
          : '--controllers=garbagecollector,namespace,clusterrole-aggregation',
        // root-ca-cert-publisher writes this CA into every namespace's kube-root-ca.crt (the
        // ServiceAccount volume of every Pod).
        ...(node ? [`--root-ca-file=${path.join(pki, 'ca.crt')}`] : []),
        '--leader-elect=false',
        // Each controller acts as its own ServiceAccount (TokenRequest), as kubeadm runs it, so the
        // bootstrap RBAC roles of the real controllers apply.
        '--use-service-account-credentials=true',
        // No serving endpoint: nothing here scrapes it, and it would need its own port and certs.
        '--secure-port=0',
      ],
    },
  };
  await writePrivate(path.join(stateDir, 'state.json'), JSON.stringify(state, null, 2));

  const cp = new Handle(state, opts.detached ?? false, log);
  try {
    if (!cp.detached) cp.startReaper();
    for (const c of COMPONENTS) {
      const t = performance.now();
      await cp.start(c);
      log(`${c} ready in ${seconds(performance.now() - t)}`);
    }
  } catch (err) {
    await cp.stop().catch(() => {});
    throw err;
  }
  log(`control plane ready in ${seconds(performance.now() - t0)}: ${server}, ${path.basename(binDir)} (logs in ${logDir})`);
  return cp;
}

/**
 * A handle on a control plane started elsewhere (another process), from its state folder. Anything
 * it (re)starts runs detached, since the calling process may be short-lived.
 */
export async function attachControlPlane(stateDir: string, log: (line: string) => void = defaultLog): Promise<ControlPlane> {
  const state = await readState(path.resolve(stateDir));
  if (!state) throw new Error(`no control plane state in ${stateDir}`);
  return new Handle(state, true, log);
}

async function readState(stateDir: string): Promise<State | undefined> {
  try {
    return JSON.parse(await fsp.readFile(path.join(stateDir, 'state.json'), 'utf8')) as State;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

class Handle implements ControlPlane {
  readonly state: State;
  readonly detached: boolean;
  readonly log: (line: string) => void;
  private reaper: ChildProcess | undefined;

  constructor(state: State, detached: boolean, log: (line: string) => void) {
    this.state = state;
    this.detached = detached;
    this.log = log;
  }

  get server(): string { return this.state.server; }
  get kubeconfigPath(): string { return this.state.kubeconfigPath; }
  get stateDir(): string { return this.state.stateDir; }
  get logDir(): string { return this.state.logDir; }
  get binDir(): string { return this.state.binDir; }
  get users(): ReadonlyArray<TestUser & { token: string }> { return this.state.users; }
  get pids(): Record<Component, number> {
    const { stateDir, pidDir } = this.state;
    return {
      etcd: ownedPid(stateDir, pidDir, 'etcd'),
      'kube-apiserver': ownedPid(stateDir, pidDir, 'kube-apiserver'),
      'kube-controller-manager': ownedPid(stateDir, pidDir, 'kube-controller-manager'),
    };
  }

  async stop(): Promise<void> {
    const errors: unknown[] = [];
    for (const c of [...COMPONENTS].reverse()) {
      await this.stopComponent(c).catch((e: unknown) => errors.push(e));
    }
    if (this.reaper?.pid && isAlive(this.reaper.pid)) this.reaper.kill('SIGKILL');
    this.reaper = undefined;
    if (errors.length) throw new AggregateError(errors, 'control plane did not stop cleanly');
  }

  stopApiServer(opts: { kill?: boolean } = {}): Promise<void> {
    return this.stopComponent('kube-apiserver', opts.kill);
  }

  async startApiServer(): Promise<void> {
    await this.start('kube-apiserver');
  }

  /** Starts a component unless it already runs, then waits until it is ready. */
  async start(c: Component): Promise<void> {
    const { stateDir, pidDir, logDir, commands } = this.state;
    let pid = ownedPid(stateDir, pidDir, c);
    if (!pid) {
      const [bin, ...args] = commands[c];
      const logFile = path.join(logDir, `${c}.log`);
      const fd = fs.openSync(logFile, 'a');
      let child: ChildProcess;
      try {
        fs.writeSync(fd, `\n===== ${new Date().toISOString()} starting ${c}\n`);
        child = spawn(bin!, args, { stdio: ['ignore', fd, fd], detached: this.detached });
      } finally {
        fs.closeSync(fd);
      }
      await new Promise<void>((resolve, reject) => {
        child.once('spawn', resolve);
        child.once('error', reject);
      });
      child.unref(); // never keeps the caller's event loop alive; stop() or the reaper ends it
      pid = child.pid!;
      await fsp.writeFile(path.join(pidDir, `${c}.pid`), `${pid}\n`);
    }
    await this.waitReady(c, pid);
  }

  private async stopComponent(c: Component, kill = false): Promise<void> {
    const { stateDir, pidDir } = this.state;
    const pid = ownedPid(stateDir, pidDir, c);
    if (pid) {
      signal(pid, kill ? 'SIGKILL' : 'SIGTERM');
      if (!(await waitGone(pid, STOP_GRACE_MS[c]))) {
        this.log(`${c} (pid ${pid}) ignored SIGTERM for ${STOP_GRACE_MS[c] / 1000}s; killing it`);
        signal(pid, 'SIGKILL');
        if (!(await waitGone(pid, 10_000))) throw new Error(`${c} (pid ${pid}) survived SIGKILL`);
      }
    }
    await fsp.rm(path.join(pidDir, `${c}.pid`), { force: true });
  }

  private async waitReady(c: Component, pid: number): Promise<void> {
    const { ports, stateDir } = this.state;
    const pki = path.join(stateDir, 'pki');
    const tls = () => ({
      ca: fs.readFileSync(path.join(pki, 'ca.crt')),
      cert: fs.readFileSync(path.join(pki, 'admin.crt')),
      key: fs.readFileSync(path.join(pki, 'admin.key')),
    });
    const probes: Record<Component, () => Promise<string | true>> = {
      etcd: async () => {
        const r = await httpGet(`http://127.0.0.1:${ports.etcdClient}/health`);
        return r.status === 200 && r.body.includes('"health":"true"') ? true : `health: ${r.body.trim()}`;
      },
      'kube-apiserver': async () => {
        const r = await httpGet(`${this.state.server}/readyz?verbose`, tls());
        if (r.status === 200) return true;
        const failing = r.body.split('\n').filter((l) => l.startsWith('[-]')).map((l) => l.replace(/ failed:.*$/, ''));
        return failing.length ? failing.join(' ') : `HTTP ${r.status}`;
      },
      // The controller manager serves nothing; the ServiceAccounts it creates for its controllers
      // show it is up and talking to the API server.
      'kube-controller-manager': async () => {
        const missing: string[] = [];
        for (const sa of ['generic-garbage-collector', 'namespace-controller']) {
          const r = await httpGet(`${this.state.server}/api/v1/namespaces/kube-system/serviceaccounts/${sa}`, tls());
          if (r.status !== 200) missing.push(sa);
        }
        return missing.length ? `waiting for ServiceAccounts ${missing.join(', ')}` : true;
      },
    };
    const t0 = performance.now();
    let lastShown = '';
    let lastShownAt = 0;
    for (;;) {
      if (!isAlive(pid)) {
        throw new Error(`${c} exited while starting; last lines of ${path.join(this.state.logDir, `${c}.log`)}:\n${await tail(path.join(this.state.logDir, `${c}.log`))}`);
      }
      let detail: string;
      try {
        const r = await probes[c]();
        if (r === true) return;
        detail = r;
      } catch (err) {
        detail = (err as NodeJS.ErrnoException).code === 'ECONNREFUSED' ? 'not listening yet' : String(err);
      }
      const elapsed = performance.now() - t0;
      if (elapsed > READY_TIMEOUT_MS[c]) {
        throw new Error(`${c} not ready after ${seconds(elapsed)} (${detail}); see ${path.join(this.state.logDir, `${c}.log`)}`);
      }
      // Progress for a slow start, without repeating the same line every poll.
      if (elapsed > 2000 && (detail !== lastShown || performance.now() - lastShownAt > 10_000)) {
        this.log(`waiting for ${c} (${seconds(elapsed)}): ${detail}`);
        lastShown = detail;
        lastShownAt = performance.now();
      }
      await sleep(250);
    }
  }

  /**
   * A watchdog shell that stops the components if this process dies without stop() (a killed test
   * run, Ctrl-C): no etcd or API server is ever left behind. It reads the pid files when it fires,
   * so restarted components are covered, and checks each pid still belongs to this state folder.
   */
  startReaper(): void {
    const script = `
      parent=$1 state=$2; shift 2
      while kill -0 "$parent" 2>/dev/null; do sleep 1; done
      owned() { [ -r "/proc/$1/cmdline" ] && tr '\\0' '\\n' < "/proc/$1/cmdline" | grep -qF -- "$state"; }
      for sig in TERM KILL; do
        for f in "$@"; do
          pid=$(cat "$f" 2>/dev/null) || continue
          owned "$pid" && kill -$sig "$pid" 2>/dev/null
        done
        [ $sig = TERM ] && sleep 5
      done
      exit 0`;
    const pidFiles = COMPONENTS.map((c) => path.join(this.state.pidDir, `${c}.pid`));
    this.reaper = spawn('sh', ['-c', script, 'controlplane-reaper', String(process.pid), this.state.stateDir, ...pidFiles], {
      stdio: 'ignore',
      detached: true,
    });
    this.reaper.unref();
  }
}

// ---------------------------------------------------------------------------------------------
// Processes

function readPidFile(pidDir: string, c: Component): number {
  try {
    const pid = Number.parseInt(fs.readFileSync(path.join(pidDir, `${c}.pid`), 'utf8'), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : 0;
  } catch {
    return 0;
  }
}

/** The component's pid if it runs and its argv names stateDir (so a recycled pid is never signalled), else 0. */
function ownedPid(stateDir: string, pidDir: string, c: Component): number {
  const pid = readPidFile(pidDir, c);
  return pid && isAlive(pid) && cmdline(pid).some((a) => a.includes(stateDir)) ? pid : 0;
}

function cmdline(pid: number): string[] {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return [];
  }
}

/** Alive and not a zombie (a zombie still answers kill(pid, 0)). */
function isAlive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

async function waitGone(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (isAlive(pid)) {
    if (performance.now() > deadline) return false;
    await sleep(100);
  }
  return true;
}

/** Processes running one of our binaries with stateDir in their argv (strays a lost pid file would miss). */
function findProcesses(stateDir: string): Array<{ pid: number; name: string }> {
  const found: Array<{ pid: number; name: string }> = [];
  for (const entry of fs.readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid || !isAlive(pid)) continue;
    const argv = cmdline(pid);
    const name = path.basename(argv[0] ?? '');
    if ((COMPONENTS as readonly string[]).includes(name) && argv.some((a) => a.includes(stateDir))) found.push({ pid, name });
  }
  return found;
}

async function run(bin: string, args: string[]): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const child = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${path.basename(bin)} failed (exit ${code}): ${err.trim()}`))));
  });
}

// ---------------------------------------------------------------------------------------------
// Files, ports, HTTP

async function writePrivate(file: string, content: string): Promise<void> {
  await fsp.writeFile(file, content, { mode: 0o600 });
}

async function writeKubeconfig(file: string, server: string, pki: string, users: State['users']): Promise<void> {
  const b64 = (f: string) => fs.readFileSync(path.join(pki, f)).toString('base64');
  await writePrivate(file, toYaml({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: CLUSTER_NAME, cluster: { server, 'certificate-authority-data': b64('ca.crt') } }],
    users: [
      { name: ADMIN_CONTEXT, user: { 'client-certificate-data': b64('admin.crt'), 'client-key-data': b64('admin.key') } },
      ...users.map((u) => ({ name: u.context ?? u.name, user: { token: u.token } })),
    ],
    contexts: [ADMIN_CONTEXT, ...users.map((u) => u.context ?? u.name)].map((name) => ({ name, context: { cluster: CLUSTER_NAME, user: name } })),
    'current-context': ADMIN_CONTEXT,
  }));
}

/**
 * Free loopback ports below the kernel's ephemeral range, so an outgoing connection can never
 * take one while kube-apiserver is stopped for a restart.
 */
async function freePorts(n: number): Promise<number[]> {
  let low = 32768;
  try {
    low = Number(fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || low;
  } catch { /* not Linux: keep the default */ }
  const base = 15000;
  const held: net.Server[] = [];
  try {
    for (let attempt = 0; held.length < n; attempt++) {
      if (attempt > 200) throw new Error('no free loopback port found');
      const port = base + Math.floor(Math.random() * Math.max(1, low - base));
      const srv = net.createServer();
      const ok = await new Promise<boolean>((resolve) => {
        srv.once('error', () => resolve(false));
        srv.listen(port, '127.0.0.1', () => resolve(true));
      });
      if (ok) held.push(srv);
    }
    return held.map((s) => (s.address() as net.AddressInfo).port);
  } finally {
    await Promise.all(held.map((s) => new Promise((resolve) => s.close(resolve))));
  }
}

function httpGet(url: string, tls?: { ca: Buffer; cert: Buffer; key: Buffer }, timeoutMs = 5000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const mod = u.protocol === 'https:' ? https : http;
    const req = mod.get(u, { ...tls, agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`timed out after ${timeoutMs}ms`)));
    req.on('error', reject);
  });
}

async function tail(file: string, lines = 25): Promise<string> {
  try {
    return (await fsp.readFile(file, 'utf8')).trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)}s`;

// ---------------------------------------------------------------------------------------------
// CLI

// TOKENWARDEN_DEV_DIR (the Makefile's DEV): another folder, e.g. for a second local control plane.
const dev = path.resolve(process.env.TOKENWARDEN_DEV_DIR || path.join(repoRoot, '.dev'));
const devPaths = {
  stateDir: path.join(dev, 'controlplane'),
  logDir: path.join(dev, 'logs'),
  pidDir: dev,
  kubeconfigPath: path.join(dev, 'kubeconfig'),
};
const say = (line: string) => console.log(`[controlplane] ${line}`);

/** Health of a control plane: which components run and whether /readyz answers ok. */
async function health(cp: Handle): Promise<{ running: Component[]; stopped: Component[]; readyz: string }> {
  const pids = cp.pids;
  const running = COMPONENTS.filter((c) => pids[c] !== 0);
  const stopped = COMPONENTS.filter((c) => pids[c] === 0);
  let readyz = 'unreachable';
  try {
    const pki = path.join(cp.stateDir, 'pki');
    const r = await httpGet(`${cp.server}/readyz`, {
      ca: fs.readFileSync(path.join(pki, 'ca.crt')),
      cert: fs.readFileSync(path.join(pki, 'admin.crt')),
      key: fs.readFileSync(path.join(pki, 'admin.key')),
    }, 3000);
    readyz = r.status === 200 ? r.body.trim() : `HTTP ${r.status}`;
  } catch { /* stays unreachable */ }
  return { running, stopped, readyz };
}

async function up(node: boolean): Promise<number> {
  const state = await readState(devPaths.stateDir);
  if (state) {
    const cp = new Handle(state, true, defaultLog);
    const h = await health(cp);
    if (node && !state.node) {
      say('found a control plane started without --node; replacing it');
      await cp.stop();
    } else if (h.stopped.length === 0 && h.readyz === 'ok') {
      say(`already up: ${cp.server} (pids ${JSON.stringify(cp.pids)}); KUBECONFIG=${path.relative(process.cwd(), cp.kubeconfigPath)}`);
      return 0;
    }
    say(`found an unhealthy control plane (stopped: ${h.stopped.join(', ') || 'none'}; readyz: ${h.readyz}); replacing it`);
    await cp.stop();
  }
  await down({ quiet: true });
  const t0 = performance.now();
  const cp = await startControlPlane({ ...devPaths, detached: true, node });
  say(`up in ${seconds(performance.now() - t0)}: ${cp.server}; pids ${JSON.stringify(cp.pids)}`);
  say(`export KUBECONFIG=${path.relative(process.cwd(), cp.kubeconfigPath)}   # contexts: ${[ADMIN_CONTEXT, ...TEST_USERS.map((u) => u.context ?? u.name)].join(', ')}`);
  return 0;
}

async function down(opts: { quiet?: boolean } = {}): Promise<number> {
  const state = await readState(devPaths.stateDir);
  const stopped: number[] = [];
  if (state) {
    const cp = new Handle(state, true, defaultLog);
    stopped.push(...Object.values(cp.pids).filter((p) => p !== 0));
    await cp.stop();
  }
  // Strays (a lost or overwritten pid file): anything running our binaries on this state folder.
  for (const p of findProcesses(devPaths.stateDir)) {
    say(`stopping stray ${p.name} (pid ${p.pid})`);
    signal(p.pid, 'SIGTERM');
    if (!(await waitGone(p.pid, 10_000))) signal(p.pid, 'SIGKILL');
    await waitGone(p.pid, 5_000);
  }
  // Dead, but init reaps orphans in its own time; wait a little so `ps` right after is clean.
  const deadline = performance.now() + 5000;
  while (stopped.some((p) => fs.existsSync(`/proc/${p}`)) && performance.now() < deadline) await sleep(100);
  const left = findProcesses(devPaths.stateDir);
  if (left.length) {
    console.error(`[controlplane] still running: ${left.map((p) => `${p.name} (pid ${p.pid})`).join(', ')}`);
    return 1;
  }
  await fsp.rm(devPaths.stateDir, { recursive: true, force: true });
  await fsp.rm(devPaths.kubeconfigPath, { force: true });
  for (const c of COMPONENTS) await fsp.rm(path.join(devPaths.pidDir, `${c}.pid`), { force: true });
  if (!opts.quiet) say(state ? 'down: stopped, state removed, no process left' : 'down: nothing was running');
  return 0;
}

async function status(): Promise<number> {
  const state = await readState(devPaths.stateDir);
  if (!state) {
    say(`not up (no state in ${path.relative(process.cwd(), devPaths.stateDir)})`);
    return 1;
  }
  const cp = new Handle(state, true, defaultLog);
  const h = await health(cp);
  const pids = cp.pids;
  for (const c of COMPONENTS) say(`${c.padEnd(24)} ${pids[c] ? `running (pid ${pids[c]})` : 'STOPPED'}`);
  say(`${'readyz'.padEnd(24)} ${h.readyz}`);
  say(`${'server'.padEnd(24)} ${cp.server}`);
  say(`${'kubeconfig'.padEnd(24)} ${path.relative(process.cwd(), cp.kubeconfigPath)}`);
  say(`${'logs'.padEnd(24)} ${path.relative(process.cwd(), cp.logDir)}`);
  return h.stopped.length === 0 && h.readyz === 'ok' ? 0 : 1;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const commands: Record<string, () => Promise<number>> = { up: () => up(process.argv.includes('--node')), down: () => down(), status };
  const command = commands[process.argv[2] ?? ''];
  if (!command) {
    console.error('usage: node test/controlplane/launcher.ts up [--node]|down|status');
    process.exit(2);
  }
  command().then(
    (code) => process.exit(code),
    (err: unknown) => {
      console.error(`[controlplane] ${err instanceof Error ? err.message : String(err)}`);
      process.exit(1);
    },
  );
}
