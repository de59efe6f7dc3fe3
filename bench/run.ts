/**
 * `make bench`: tokenwarden against the floor set by the API server itself (issue 5).
 *
 * For each N of --sizes, on a fresh local control plane built from source:
 *   floor     bench/floor.ts: the operator's writes for N new clients and nothing else, same concurrency;
 *   create    N ServiceAccountClients applied at once; time to all Ready, create-to-Ready p50/p95/p99,
 *             requests per client by verb and resource (APF counts of the operator's identity, and
 *             apiserver_request_total), reconciles per client, ratio to the floor;
 *   steady    a window with nothing to do (tokens of 1h): the operator's writes (should be 0) and reads;
 *   cold      restart over N Ready clients: spawn -> ready (caches synced) -> every client reconciled, writes;
 *   ballast   a tenant's objects labelled as tokenwarden's in her own namespace (50 token and 50 anchor
 *             Secrets, 100 ServiceAccounts, 250 KiB of annotations each, fake tokens with 35,000
 *             audiences): the operator's heap and RSS before, with them and after a restart over them
 *             (bench/lib/phases/ballast.ts); the ballast is deleted afterwards;
 *   move      N/10 clients change tier at once (the premium Tier gains their group): time until every
 *             old token fails TokenReview (uncached: a one-off extra audience), time until all Ready again;
 *   failure   TokenRequest refused by an admission policy for --refusal (1m) while N/20 new clients and
 *             N/20 renewals need a token, then allowed: how soon each says so (Ready=False IssuanceFailed/
 *             RenewalFailed), the operator's requests meanwhile, how soon all are Ready again
 *             (bench/lib/phases/failure.ts);
 *   rotation  tiers switched to 10m tokens renewed after 30s: the switch-over burst, then rotations per
 *             second sustained over a window, and how late each token was replaced after its renewAt;
 *   memory    per phase, the operator inside a memory cgroup with the Deployment's limit, heap flags and MALLOC_ARENA_MAX
 *             (--memory-limit, --node-options): the cgroup's peak, peak RSS, V8 heap used/total and
 *             external memory; an OOM kill fails the run (exit code 3). Also peak RSS (VmHWM) overall.
 * Writes bench/results/<timestamp>.json after every phase and regenerates docs/benchmarks.md.
 *
 *   node bench/run.ts [--sizes=100,1000,5000] [--quick] [--steady=5m] [--rotation=3m] [--workers=4]
 *                     [--apply-concurrency=32] [--log-level=warn] [--operator-root=DIR] [--label=NAME]
 *                     [--phases=floor,create,steady,cold,move,failure,rotation] [--no-docs] [--keep]
 *                     [--shape=classic|bindings|ssa|realistic] [--refusal=1m]
 *                     [--memory-limit=192Mi|none] [--node-options='--max-old-space-size=96']
 *
 * --shape (bench/lib/workload.ts): classic is the shape of every result before issue 9; bindings adds
 * TenantBindings with quotas in every tenant; ssa creates the clients by server-side apply with a
 * last-applied-configuration annotation, as a GitOps tool leaves them; realistic is both. Every shape
 * waits, while creating, for each client to settle where the operator's own resolution policy says it
 * must (bench/lib/resolution.ts): Ready on its tier through its grant, or QuotaExceeded.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { parseDuration } from '../src/policy/duration.ts';
import { floorTierNamespace, prepareFloor, runFloor, type FloorResult } from './floor.ts';
import { apiserverSnapshot, breakdown, repoRoot, startCluster, type ApiserverSnapshot, type BenchCluster, type RequestBreakdown } from './lib/cluster.ts';
import { Kube, R, Tracker, pool, retrying, sleep, type KObject } from './lib/kube.ts';
import { MemoryCgroup, MemorySampler, deploymentMemory, maxOldSpaceMiB, mib, parseQuantity, type PhaseMemory } from './lib/cgroup.ts';
import { OperatorProcess, logOffset, profileLog, summarizeCpuProfiles, waitQuiet, type CpuProfileSummary, type OperatorMetrics, type ReconcileProfile } from './lib/operator.ts';
import { CpuMeter, cpuUsage, machine, percentile, round2, type CpuReading, type CpuUsage } from './lib/system.ts';
import {
  AUDIENCE,
  EXPIRATION_ANNOTATION,
  EXPIRES_AT_ANNOTATION,
  MANAGED_BY,
  MOVERS_GROUP,
  RENEW_AT_ANNOTATION,
  ROTATION_TOKEN,
  RUN_LABEL,
  TENANTS,
  TIERS,
  TOKEN_ID_ANNOTATION,
  TOKEN_SECRET_TYPE,
  clientObject,
  clients as workload,
  tenantNamespace,
  tierObject,
  type ClientDef,
} from './lib/workload.ts';
import { runBallast, type BallastResult } from './lib/phases/ballast.ts';
import { runFailure, type FailureResult } from './lib/phases/failure.ts';
import { expectedResolutions, resolutionSummary, settled, type Expected, type ResolutionSummary } from './lib/resolution.ts';
import { SHAPES, GITOPS_FIELD_MANAGER, appliedClientObject, bindingObject, bindings as bindingDefs, shapeHasBindings, shapeUsesSsa, type Shape } from './lib/workload.ts';
import { writeReport } from './report.ts';

const PHASES = ['floor', 'create', 'steady', 'cold', 'ballast', 'move', 'failure', 'rotation'] as const;
type Phase = (typeof PHASES)[number];

const { values: flags } = parseArgs({
  options: {
    sizes: { type: 'string' },
    quick: { type: 'boolean', default: false },
    steady: { type: 'string' },
    rotation: { type: 'string' },
    workers: { type: 'string', default: '4' },
    'apply-concurrency': { type: 'string', default: '32' },
    'log-level': { type: 'string', default: 'warn' },
    'operator-root': { type: 'string', default: repoRoot },
    label: { type: 'string' },
    phases: { type: 'string', default: PHASES.join(',') },
    quiet: { type: 'string', default: '5s' },
    'ready-timeout': { type: 'string', default: '3h' },
    docs: { type: 'boolean', default: true },
    'no-docs': { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    'cpu-prof': { type: 'boolean', default: false },
    shape: { type: 'string', default: 'classic' },
    refusal: { type: 'string', default: '1m' },
    'memory-limit': { type: 'string' },
    'node-options': { type: 'string' },
  },
  strict: true,
});

const quick = flags.quick;
const options = {
  sizes: (flags.sizes ?? (quick ? '100' : '100,1000,5000')).split(',').map((s) => Number(s.trim())),
  steadyMs: parseDuration(flags.steady ?? (quick ? '30s' : '5m')),
  rotationMs: parseDuration(flags.rotation ?? (quick ? '45s' : '3m')),
  workers: Number(flags.workers),
  applyConcurrency: Number(flags['apply-concurrency']),
  logLevel: flags['log-level'],
  operatorRoot: path.resolve(flags['operator-root']),
  label: flags.label ?? (quick ? 'quick' : 'current'),
  phases: new Set(flags.phases.split(',').map((p) => p.trim()) as Phase[]),
  quietMs: parseDuration(flags.quiet),
  readyTimeoutMs: parseDuration(flags['ready-timeout']),
  quick,
  cpuProf: flags['cpu-prof'],
  shape: flags.shape as Shape,
  refusalMs: parseDuration(flags.refusal),
  ...memoryOptions(),
};
if (!SHAPES.includes(options.shape)) throw new Error(`--shape: unknown shape ${options.shape} (one of ${SHAPES.join(', ')})`);

/**
 * The operator's memory limit and Node flags: by default the Deployment's (manifests/deployment.yaml).
 * At another --memory-limit, the Deployment's --max-old-space-size is scaled by the same ratio;
 * --memory-limit=none runs it unconstrained and without heap flags (how the bench ran before).
 */
function memoryOptions(): { memoryLimitBytes: number | undefined; nodeOptions: string | undefined; mallocArenaMax: string | undefined } {
  const dep = deploymentMemory(path.join(repoRoot, 'manifests/deployment.yaml'));
  const text = flags['memory-limit'];
  if (text === 'none') return { memoryLimitBytes: undefined, nodeOptions: flags['node-options'], mallocArenaMax: undefined };
  const limit = text ? parseQuantity(text) : dep.limitBytes;
  if (limit === undefined) throw new Error('--memory-limit: the Deployment sets no memory limit; give one, or none');
  let nodeOptions = flags['node-options'] ?? dep.nodeOptions;
  const oldSpace = maxOldSpaceMiB(dep.nodeOptions);
  if (flags['node-options'] === undefined && oldSpace !== undefined && dep.limitBytes && limit !== dep.limitBytes) {
    nodeOptions = (dep.nodeOptions ?? '').replace(/--max-old-space-size[= ]\d+/, `--max-old-space-size=${Math.floor((oldSpace * limit) / dep.limitBytes)}`);
  }
  return { memoryLimitBytes: limit, nodeOptions, mallocArenaMax: dep.mallocArenaMax };
}
for (const n of options.sizes) if (!Number.isInteger(n) || n <= 0 || n % 20 !== 0) throw new Error(`--sizes: ${n} is not a positive multiple of 20`);
for (const p of options.phases) if (!PHASES.includes(p)) throw new Error(`--phases: unknown phase ${p}`);

const stamp = new Date().toISOString().replace(/[:.]/g, '-').replace(/-\d{3}Z$/, 'Z');
const resultsDir = path.join(repoRoot, 'bench/results');
const resultsFile = path.join(resultsDir, `${stamp}${quick ? '-quick' : ''}.json`);
const workRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenwarden-bench-'));
const log = (line: string) => console.log(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}`);

const results = {
  version: 1,
  startedAt: new Date().toISOString(),
  finishedAt: undefined as string | undefined,
  label: options.label,
  quick,
  machine: machine(),
  git: gitInfo(),
  options: { ...options, phases: [...options.phases] },
  kubernetes: undefined as string | undefined,
  etcd: undefined as string | undefined,
  runs: [] as SizeResult[],
};

interface Latencies {
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

interface SizeResult {
  n: number;
  users: number;
  tenants: number;
  tiers: number;
  shape: Shape;
  /** TenantBindings created (bindings shapes): how many, how many with maxClients, and what clients should settle to. */
  bindings?: { count: number; withQuota: number; members: number };
  resolution?: ResolutionSummary;
  errors: Record<string, string>;
  floor?: Omit<FloorResult, 'perClientMs'> & { perClientMs: Latencies; cpu: CpuUsage };
  create?: {
    applyMs: number;
    allReadyMs: number;
    quietMs: number;
    quiet: boolean;
    /** Create to settled: Ready on the tier the resolution policy gives it (or QuotaExceeded), for good. */
    latencyMs: Latencies;
    /** Create to the first Ready=True, whatever the tier. */
    firstReadyMs?: Latencies;
    /** Clients Ready on some tier before they settled on another (quota ranking seen late). */
    movedBeforeSettling?: number;
    /** Clients not settled when the phase ended (timeout). */
    unsettled?: number;
    /** Bytes of one client as applied (the SSA shape's annotation included). */
    clientBytes?: number;
    ratioToFloor?: number;
    requests: RequestBreakdown;
    perClient: { writes: number; reads: number; byVerb: Record<string, number> };
    reconciles: Record<string, number>;
    reconcilesPerClient: number;
    operatorRequests: Record<string, number>;
    /** The operator's heap in use and RSS once every client is Ready. */
    operatorMemory: { heapUsedBytes: number; rssBytes: number };
    cpu: CpuUsage;
    /** With --log-level=debug: reconciles per client and their durations, from the operator's log. */
    profile: ReconcileProfile | undefined;
  };
  steady?: { windowMs: number; requests: RequestBreakdown; operatorWrites: number; reconciles: Record<string, number>; operatorMemory: { heapUsedBytes: number; rssBytes: number }; cpu: CpuUsage };
  cold?: {
    readyMs: number;
    allReconciledMs: number | null;
    quietMs: number;
    quiet: boolean;
    writes: number;
    requests: RequestBreakdown;
    reconciles: Record<string, number>;
    cpu: CpuUsage;
  };
  move?: {
    clients: number;
    allOldTokensFailedMs: number | null;
    oldTokenFailMs: Latencies;
    stillPassing: number;
    allMovedReadyMs: number | null;
    quietMs: number;
    requests: RequestBreakdown;
    reconciles: Record<string, number>;
    cpu: CpuUsage;
  };
  rotation?: {
    burstMs: number | null;
    windowMs: number;
    demandPerSecond: number;
    rotationsPerSecond: number;
    rotationsInWindow: number;
    /** Renewals whose renewAt fell in the window (what keeping up means). */
    dueInWindow: number;
    operatorRotatedPerSecond: number;
    lateMs: Latencies;
    late: { over1s: number; over5s: number; over30s: number; pastExpiry: number };
    requestsPerRotation: { writes: number; reads: number; byVerb: Record<string, number> };
    requests: RequestBreakdown;
    cpu: CpuUsage;
    profile: ReconcileProfile | undefined;
  };
  failure?: FailureResult;
  ballast?: BallastResult;
  /** Per phase: the operator's memory (cgroup figures when it ran inside one). */
  memory?: Record<string, PhaseMemory>;
  /** Set when the kernel OOM-killed the operator: the run failed. */
  oomKilled?: { phase: string; oomKills: number };
  /** Set when the operator exited by itself (e.g. V8's "heap out of memory"): the run failed. */
  crashed?: { code: number | null; signal: string | null; logTail: string };
  operator?: {
    peakRssBytes: number;
    peakRssByProcess: number[];
    /** With --cpu-prof: where each operator process spent its CPU (1: floor, create, steady; 2: cold, move, rotation). */
    cpuProfiles?: (CpuProfileSummary | undefined)[];
  };
}

function saveResults(): void {
  fs.mkdirSync(resultsDir, { recursive: true });
  fs.writeFileSync(resultsFile, `${JSON.stringify(results, null, 2)}\n`);
}

function latencies(values: number[]): Latencies {
  return { p50: Math.round(percentile(values, 50)), p95: Math.round(percentile(values, 95)), p99: Math.round(percentile(values, 99)), max: Math.round(percentile(values, 100)) };
}

function perClient(b: RequestBreakdown, n: number) {
  const byVerb: Record<string, number> = {};
  for (const [k, v] of Object.entries(b.operator)) byVerb[k] = round2(v / n);
  return { writes: round2(b.operatorWrites / n), reads: round2(b.operatorReads / n), byVerb };
}

const diffRecord = (a: Record<string, number>, b: Record<string, number>) =>
  Object.fromEntries(Object.entries(b).map(([k, v]) => [k, v - (a[k] ?? 0)]).filter(([, v]) => (v as number) !== 0));

/** performance.now() time <-> Date.now() time. */
const epochOf = (perf: number): number => perf + (Date.now() - performance.now());
const perfOf = (epoch: number): number => epoch - (Date.now() - performance.now());

const isReady = (obj: KObject): boolean =>
  ((obj.status as { conditions?: { type: string; status: string }[] } | undefined)?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');

async function runSize(n: number): Promise<SizeResult> {
  const res: SizeResult = { n, users: n / 2, tenants: TENANTS, tiers: TIERS.length, shape: options.shape, errors: {} };
  results.runs.push(res);
  const workDir = path.join(workRoot, `n${n}`);
  fs.mkdirSync(workDir, { recursive: true });
  log(`N=${n}: starting a control plane in ${workDir}`);
  const bc: BenchCluster = await startCluster(workDir, log);
  results.kubernetes = bc.kubernetesVersion;
  results.etcd = bc.etcdVersion;
  const admin = bc.admin;
  let op: OperatorProcess | undefined;
  const peakRss: number[] = [];
  const cgroup = options.memoryLimitBytes === undefined ? undefined : MemoryCgroup.create(`tokenwarden-bench-${process.pid}-n${n}`, options.memoryLimitBytes);
  if (cgroup) log(`N=${n}: operator in memory cgroup ${cgroup.dir}, limit ${mib(cgroup.limitBytes)} MiB, NODE_OPTIONS=${options.nodeOptions ?? ''}${options.mallocArenaMax ? `, MALLOC_ARENA_MAX=${options.mallocArenaMax}` : ''}`);
  const sampler = new MemorySampler(
    () => (op?.running() ? op.pid : 0),
    async () => (op?.running() ? await op.metrics() : undefined),
    cgroup,
  );
  sampler.onOom = (r) => log(`N=${n}: !!! OOM KILL: the kernel killed the operator at the ${mib(cgroup?.limitBytes ?? 0)} MiB limit (oom_kill ${r.oomKills})`);
  const memoryOf = { cgroup, nodeOptions: options.nodeOptions, mallocArenaMax: options.mallocArenaMax };
  const meter = new CpuMeter(() => ({
    operator: op?.running() ? op.pid : 0,
    apiserver: bc.cp.pids['kube-apiserver'],
    etcd: bc.cp.pids.etcd,
    controllerManager: bc.cp.pids['kube-controller-manager'],
  }));
  const runId = `bench-${randomBytes(3).toString('hex')}`;
  const profDir = (k: number) => path.join(workDir, `cpuprof-${k}`);
  const profArgs = (k: number) => (options.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${profDir(k)}`] : []);
  const runLabels = { [RUN_LABEL]: runId };
  const defs = workload(n, options.shape);
  const ssa = shapeUsesSsa(options.shape);
  const namespaceOf = (def: ClientDef) => tenantNamespace('bench', def.tenant);
  /** One client, created as the shape says: POST, or server-side apply by a GitOps tool's field manager. */
  const applyClient = (def: ClientDef, ns: string): Promise<KObject> =>
    ssa
      ? retrying(() =>
          admin.patch(R.client, ns, def.name, appliedClientObject(def, ns, runLabels), undefined, 'application/apply-patch+yaml', {
            fieldManager: GITOPS_FIELD_MANAGER,
            force: 'true',
          }),
        )
      : retrying(() => admin.create(R.client, ns, clientObject(def, ns, runLabels)));
  /** What each client settles to (set once the create phase has applied them all). */
  let expected = new Map<string, Expected>();
  /** Clients that hold a token once settled (all but QuotaExceeded). */
  let holders = n;
  const mark = async (): Promise<{ snap: ApiserverSnapshot; bench: Map<string, number>; cpu: CpuReading; op?: OperatorMetrics }> => {
    const bench = new Map(admin.counts);
    const snap = await apiserverSnapshot(bc);
    const cpu = meter.read();
    return { snap, bench, cpu, ...(op?.running() ? { op: await op.metrics() } : {}) };
  };
  const between = async (a: Awaited<ReturnType<typeof mark>>) => {
    const b = await mark();
    return { b, requests: breakdown(a.snap, b.snap, a.bench, b.bench), cpu: cpuUsage(a.cpu, b.cpu) };
  };
  const phase = async (name: Phase, fn: () => Promise<void>) => {
    if (!options.phases.has(name)) return;
    log(`N=${n}: ${name}`);
    sampler.start();
    try {
      await fn();
    } catch (err) {
      res.errors[name] = err instanceof Error ? err.message : String(err);
      log(`N=${n}: ${name} failed: ${res.errors[name]}`);
    }
    const mem = await sampler.stop();
    (res.memory ??= {})[name] = mem;
    log(`N=${n}: ${name} memory: ${memoryLine(mem)}`);
    saveResults();
    if (sampler.oomKills() > 0) {
      res.oomKilled = { phase: name, oomKills: sampler.oomKills() };
      throw new Error(`OOM: the operator was OOM-killed during ${name} at a ${mib(cgroup?.limitBytes ?? 0)} MiB limit`);
    }
  };

  // Clients' readiness, as the bench sees it (watch, local clock).
  const sentAt = new Map<string, number>();
  const readyAt = new Map<string, number>();
  /** While creating: each client's states as seen, to tell when it settled for good. */
  const history = new Map<string, { at: number; obj: KObject }[]>();
  let recordHistory = false;
  const clientTracker = new Tracker<KObject>(admin, R.client, { labelSelector: `${RUN_LABEL}=${runId}` }, (type, obj, at) => {
    const key = `${obj.metadata.namespace}/${obj.metadata.name}`;
    if (type !== 'DELETED' && isReady(obj) && !readyAt.has(key)) readyAt.set(key, at);
    if (recordHistory && type !== 'DELETED') {
      const { status } = obj;
      const h = history.get(key) ?? [];
      h.push({ at, obj: { metadata: { name: obj.metadata.name }, status } });
      history.set(key, h);
    }
  });

  try {
    // ---------------------------------------------------------------- floor
    await phase('floor', async () => {
      const floorKube = new Kube(bc.floorKubeconfig);
      try {
        log(`N=${n}: floor: pre-creating ${n} clients (not timed)`);
        const prepared = await prepareFloor(admin, n, options.applyConcurrency);
        for (const t of TIERS) await retrying(() => admin.create(R.namespace, undefined, { metadata: { name: floorTierNamespace(t.name) } })).catch(() => undefined);
        const c0 = meter.read();
        const floor = await runFloor(floorKube, prepared, options.workers);
        res.floor = { ...floor, perClientMs: latencies(floor.perClientMs), cpu: cpuUsage(c0, meter.read()) };
        log(`N=${n}: floor: ${Math.round(floor.durationMs)} ms, ${floor.writesPerClient.toFixed(2)} writes/client`);
      } finally {
        floorKube.close();
      }
    });

    // ---------------------------------------------------------------- operator + tiers
    for (let t = 0; t < TENANTS; t++) await retrying(() => admin.create(R.namespace, undefined, { metadata: { name: tenantNamespace('bench', t) } }));
    op = await OperatorProcess.start({
      root: options.operatorRoot,
      kubeconfig: bc.operatorKubeconfig,
      namespacePrefix: 'bench',
      selector: `${RUN_LABEL}=${runId}`,
      workers: options.workers,
      logLevel: options.logLevel,
      logPath: path.join(workDir, 'operator-1.log'),
      nodeArgs: profArgs(1),
      ...memoryOf,
    });
    await op.waitReady();
    for (const t of TIERS) await retrying(() => admin.create(R.tier, undefined, tierObject(t, runLabels)));
    const tierDeadline = Date.now() + 60_000;
    for (const t of TIERS) {
      for (;;) {
        if (isReady(await admin.get(R.tier, undefined, t.name))) break;
        if (Date.now() > tierDeadline) throw new Error(`tier ${t.name} not Ready in 60s`);
        await sleep(200);
      }
    }
    if (shapeHasBindings(options.shape)) {
      const bdefs = bindingDefs(defs);
      for (const b of bdefs) await retrying(() => admin.create(R.binding, tenantNamespace('bench', b.tenant), bindingObject(b, tenantNamespace('bench', b.tenant), runLabels)));
      res.bindings = { count: bdefs.length, withQuota: bdefs.filter((b) => b.maxClients !== undefined).length, members: bdefs.reduce((a, b) => a + b.members, 0) };
      const bindingDeadline = Date.now() + 60_000;
      for (;;) {
        const list = await admin.list(R.binding, undefined, { labelSelector: `${RUN_LABEL}=${runId}` });
        if (list.items.length === bdefs.length && list.items.every(isReady)) break;
        if (Date.now() > bindingDeadline) throw new Error('TenantBindings not Ready in 60s');
        await sleep(200);
      }
      log(`N=${n}: ${bdefs.length} TenantBindings Ready (${res.bindings.withQuota} with maxClients) naming ${res.bindings.members} clients' subjects`);
    }
    await waitQuiet(op, performance.now(), 2000, 60_000);
    await clientTracker.start();

    // ---------------------------------------------------------------- create
    await phase('create', async () => {
      const m0 = await mark();
      const logFrom = logOffset((op as OperatorProcess).logPath);
      const t0 = Date.now();
      recordHistory = true;
      const created: KObject[] = [];
      await pool(defs, options.applyConcurrency, async (def) => {
        const ns = namespaceOf(def);
        sentAt.set(`${ns}/${def.name}`, Date.now());
        created.push(await applyClient(def, ns));
      });
      const applyMs = Date.now() - t0;
      log(`N=${n}: applied ${n} clients in ${applyMs} ms${ssa ? ` (server-side apply by ${GITOPS_FIELD_MANAGER})` : ''}`);
      // Where each client must settle, from the objects as created (creationTimestamp ranks quotas).
      const tiers = (await admin.list(R.tier, undefined, { labelSelector: `${RUN_LABEL}=${runId}` })).items;
      const bindings = (await admin.list(R.binding, undefined, { labelSelector: `${RUN_LABEL}=${runId}` })).items;
      expected = expectedResolutions(created, tiers, bindings);
      res.resolution = resolutionSummary(expected);
      holders = n - res.resolution.quotaExceeded;
      log(`N=${n}: expected: ${JSON.stringify(res.resolution)}`);
      const settledCount = () => [...expected].filter(([k, e]) => settled(clientTracker.objects.get(k), e)).length;
      const deadline = Date.now() + options.readyTimeoutMs;
      let lastLog = Date.now();
      let unsettled: number;
      // An operator that has stopped writing with its queue empty while clients are not where the
      // policy says is a finding, not a wait: stop after a minute of that.
      let opWrites = -1;
      let opChangedAt = Date.now();
      let stalled = false;
      for (;;) {
        unsettled = n - settledCount();
        if (unsettled === 0) break;
        if (Date.now() > deadline) break;
        if (!op?.running()) throw new Error('the operator exited');
        const m = await op.metrics().catch(() => undefined);
        if (m && (m.writes !== opWrites || Object.values(m.queueDepth).some((d) => d > 0))) {
          opWrites = m.writes;
          opChangedAt = Date.now();
        } else if (Date.now() - opChangedAt > 60_000) {
          stalled = true;
          break;
        }
        if (Date.now() - lastLog > 30_000) {
          log(`N=${n}: ${n - unsettled}/${n} settled (${readyAt.size} Ready) after ${Math.round((Date.now() - t0) / 1000)} s`);
          lastLog = Date.now();
        }
        await sleep(100);
      }
      recordHistory = false;
      // Each client settled at the first of its states from which every later one is settled.
      const settledAt = new Map<string, number>();
      let movedBeforeSettling = 0;
      for (const [k, e] of expected) {
        const h = history.get(k) ?? [];
        let at: number | undefined;
        for (let i = h.length - 1; i >= 0 && settled((h[i] as { obj: KObject }).obj, e); i--) at = (h[i] as { at: number }).at;
        if (at !== undefined) settledAt.set(k, at);
        if (!('quotaExceeded' in e) && h.some((x) => isReady(x.obj) && (x.obj.status as { tier?: string }).tier !== e.tier)) movedBeforeSettling++;
      }
      history.clear();
      if (unsettled > 0) {
        const examples = [...expected]
          .filter(([k, e]) => !settled(clientTracker.objects.get(k), e))
          .slice(0, 5)
          .map(([k, e]) => {
            const st = clientTracker.objects.get(k)?.status as { tier?: string; tierReason?: string; conditions?: { type: string; status: string; reason?: string }[] } | undefined;
            const cond = (st?.conditions ?? []).map((c) => `${c.type}=${c.status}/${c.reason ?? ''}`).join(',');
            return `${k}: expected ${JSON.stringify(e)}, is ${st?.tier ?? '-'} (${st?.tierReason ?? '-'}; ${cond})`;
          });
        throw new Error(`only ${n - unsettled} of ${n} clients settled ${stalled ? 'when the operator had been idle for 60 s' : `after ${options.readyTimeoutMs} ms`}: ${examples.join('; ')}`);
      }
      const allReady = Math.max(...settledAt.values());
      const quiet = await waitQuiet(op as OperatorProcess, perfOf(allReady), options.quietMs, 300_000);
      const { b, requests, cpu } = await between(m0);
      const lat = [...sentAt].map(([k, s]) => (settledAt.get(k) as number) - s);
      const firstReady = [...sentAt].filter(([k]) => readyAt.has(k)).map(([k, s]) => (readyAt.get(k) as number) - s);
      res.create = {
        applyMs,
        allReadyMs: allReady - t0,
        quietMs: Math.round(epochOf(quiet.lastWriteAt) - t0),
        quiet: quiet.quiet,
        latencyMs: latencies(lat),
        firstReadyMs: latencies(firstReady),
        movedBeforeSettling,
        unsettled,
        clientBytes: JSON.stringify(ssa ? appliedClientObject(defs[0] as ClientDef, namespaceOf(defs[0] as ClientDef), runLabels) : clientObject(defs[0] as ClientDef, namespaceOf(defs[0] as ClientDef), runLabels)).length,
        requests,
        perClient: perClient(requests, n),
        reconciles: diffRecord(m0.op?.reconciles ?? {}, b.op?.reconciles ?? {}),
        reconcilesPerClient: round2(((b.op?.reconciles.serviceaccountclient ?? 0) - (m0.op?.reconciles.serviceaccountclient ?? 0)) / n),
        operatorRequests: diffRecord(m0.op?.requests ?? {}, b.op?.requests ?? {}),
        operatorMemory: { heapUsedBytes: b.op?.heapUsedBytes ?? 0, rssBytes: b.op?.rssBytes ?? 0 },
        cpu,
        profile: profileLog((op as OperatorProcess).logPath, logFrom),
        ...(res.floor ? { ratioToFloor: round2((allReady - t0) / res.floor.durationMs) } : {}),
      };
      log(`N=${n}: all settled in ${res.create.allReadyMs} ms, ${movedBeforeSettling} Ready on another tier first (floor ${Math.round(res.floor?.durationMs ?? NaN)} ms); ${res.create.perClient.writes} writes, ${res.create.perClient.reads} reads per client`);
    });

    // ---------------------------------------------------------------- steady
    await phase('steady', async () => {
      const m0 = await mark();
      log(`N=${n}: steady window of ${options.steadyMs / 1000} s`);
      await sleep(options.steadyMs);
      const { b, requests, cpu } = await between(m0);
      res.steady = {
        windowMs: options.steadyMs,
        requests,
        operatorWrites: (b.op?.writes ?? 0) - (m0.op?.writes ?? 0),
        reconciles: diffRecord(m0.op?.reconciles ?? {}, b.op?.reconciles ?? {}),
        operatorMemory: { heapUsedBytes: b.op?.heapUsedBytes ?? 0, rssBytes: b.op?.rssBytes ?? 0 },
        cpu,
      };
      log(`N=${n}: steady: ${requests.operatorWrites} writes, ${requests.operatorReads} reads`);
    });

    // ---------------------------------------------------------------- cold start
    await phase('cold', async () => {
      peakRss.push(op?.peakRss() ?? 0);
      await op?.stop();
      sampler.start(); // the cold phase's memory is the new process's, from here
      const m0 = await mark();
      op = await OperatorProcess.start({
        root: options.operatorRoot,
        kubeconfig: bc.operatorKubeconfig,
        namespacePrefix: 'bench',
        selector: `${RUN_LABEL}=${runId}`,
        workers: options.workers,
        logLevel: options.logLevel,
        logPath: path.join(workDir, 'operator-2.log'),
        nodeArgs: profArgs(2),
        ...memoryOf,
      });
      const readyAtMs = await op.waitReady();
      let allReconciled: number | null = null;
      const deadline = performance.now() + 600_000;
      while (performance.now() < deadline) {
        const m = await op.metrics().catch(() => undefined);
        if (m && (m.reconciles.serviceaccountclient ?? 0) >= n && Object.values(m.queueDepth).every((d) => d === 0)) {
          allReconciled = performance.now();
          break;
        }
        await sleep(100);
      }
      const quiet = await waitQuiet(op, readyAtMs, options.quietMs, 300_000);
      const { b, requests, cpu } = await between(m0);
      res.cold = {
        readyMs: Math.round(readyAtMs - op.spawnedAt),
        allReconciledMs: allReconciled === null ? null : Math.round(allReconciled - op.spawnedAt),
        quietMs: Math.round(quiet.lastWriteAt - op.spawnedAt),
        quiet: quiet.quiet,
        writes: b.op?.writes ?? 0,
        requests,
        reconciles: b.op?.reconciles ?? {},
        cpu,
      };
      log(`N=${n}: cold start: ready ${res.cold.readyMs} ms, all reconciled ${res.cold.allReconciledMs} ms, ${res.cold.writes} writes`);
    });

    // ---------------------------------------------------------------- a tenant's ballast
    await phase('ballast', async () => {
      const victim = defs[0];
      if (victim === undefined) throw new Error('no client to name');
      const victimObj = await admin.get(R.client, namespaceOf(victim), victim.name);
      let restarts = 0;
      res.ballast = await runBallast({
        admin,
        namespace: tenantNamespace('bench', (victim.tenant + 1) % TENANTS),
        count: 50,
        clientUid: victimObj.metadata.uid as string,
        tier: 'free',
        memory: async () => {
          const m = await (op as OperatorProcess).metrics();
          return { heapUsedBytes: m.heapUsedBytes, rssBytes: m.rssBytes };
        },
        restart: async () => {
          peakRss.push(op?.peakRss() ?? 0);
          await op?.stop();
          op = await OperatorProcess.start({
            root: options.operatorRoot,
            kubeconfig: bc.operatorKubeconfig,
            namespacePrefix: 'bench',
            selector: `${RUN_LABEL}=${runId}`,
            workers: options.workers,
            logLevel: options.logLevel,
            logPath: path.join(workDir, `operator-ballast-${++restarts}.log`),
            ...memoryOf,
          });
          return Math.round((await op.waitReady()) - op.spawnedAt);
        },
        log: (line) => log(`N=${n}: ${line}`),
      });
      const b = res.ballast;
      log(
        `N=${n}: ballast: heap ${mib(b.before.heapUsedBytes)} -> ${mib(b.withBallast.heapUsedBytes)} MiB (${(b.heapChange * 100).toFixed(1)} %), RSS ${mib(b.before.rssBytes)} -> ${mib(b.withBallast.rssBytes)} MiB; restarted over it in ${b.restarted.readyMs} ms: heap ${mib(b.restarted.heapUsedBytes)} MiB, RSS ${mib(b.restarted.rssBytes)} MiB`,
      );
    });

    // ---------------------------------------------------------------- tier move
    await phase('move', async () => {
      const movers = defs.filter((d) => d.mover);
      const tokens = await tokensOf(admin, movers);
      const m0 = await mark();
      const t0 = Date.now();
      const premium = TIERS.find((t) => t.name === 'premium');
      await admin.patch(R.tier, undefined, 'premium', { spec: { groups: [...(premium?.groups ?? []), MOVERS_GROUP] } });
      const failedAt = new Map<string, number>();
      let pending = [...tokens.keys()];
      const deadline = t0 + 300_000;
      const reviewer = new Kube(bc.cp.kubeconfigPath, 'admin');
      let nonce = 0;
      try {
        while (pending.length > 0 && Date.now() < deadline) {
          const still: string[] = [];
          await pool(pending, options.applyConcurrency, async (key) => {
            const started = Date.now();
            const r = await retrying(() =>
              reviewer.create<KObject & { status?: { authenticated?: boolean } }>(R.tokenReview, undefined, {
                apiVersion: 'authentication.k8s.io/v1',
                kind: 'TokenReview',
                spec: { token: tokens.get(key), audiences: [AUDIENCE, `bench-nonce-${process.pid}-${++nonce}`] },
              }),
            );
            if (r.status?.authenticated) still.push(key);
            else failedAt.set(key, started - t0);
          });
          pending = still;
          if (pending.length > 0) await sleep(100);
        }
      } finally {
        reviewer.close();
      }
      const moverKeys = movers.map((d) => `${tenantNamespace('bench', d.tenant)}/${d.name}`);
      let allMoved: number | null = null;
      while (Date.now() < deadline) {
        const done = moverKeys.every((k) => {
          const obj = clientTracker.objects.get(k);
          return obj && isReady(obj) && (obj.status as { tier?: string }).tier === 'premium';
        });
        if (done) {
          allMoved = Date.now() - t0;
          break;
        }
        await sleep(100);
      }
      const quiet = await waitQuiet(op as OperatorProcess, performance.now(), options.quietMs, 300_000);
      const { b, requests, cpu } = await between(m0);
      const fails = [...failedAt.values()];
      res.move = {
        clients: movers.length,
        allOldTokensFailedMs: pending.length === 0 ? Math.max(...fails) : null,
        oldTokenFailMs: latencies(fails),
        stillPassing: pending.length,
        allMovedReadyMs: allMoved,
        quietMs: Math.round(epochOf(quiet.lastWriteAt) - t0),
        requests,
        reconciles: diffRecord(m0.op?.reconciles ?? {}, b.op?.reconciles ?? {}),
        cpu,
      };
      log(`N=${n}: tier move of ${movers.length}: every old token failed after ${res.move.allOldTokensFailedMs} ms; all Ready in premium after ${allMoved} ms`);
    });

    // ---------------------------------------------------------------- failure
    await phase('failure', async () => {
      if (!options.phases.has('create')) throw new Error('the failure phase needs the create phase');
      res.failure = await runFailure({
        n,
        admin,
        mark,
        between: between as (m: unknown) => ReturnType<typeof between>,
        quiet: async () => void (await waitQuiet(op as OperatorProcess, performance.now(), options.quietMs, 300_000)),
        runLabel: RUN_LABEL,
        runId,
        labels: runLabels,
        defs,
        apply: applyClient,
        namespaceOf,
        refusalMs: options.refusalMs,
        concurrency: options.applyConcurrency,
        log: (line) => log(`N=${n}: ${line}`),
      });
    });

    // ---------------------------------------------------------------- rotation
    await phase('rotation', async () => {
      interface Held { tokenId: string; renewAt: number; expiresAt: number; expiration: string }
      const held = new Map<string, Held>();
      const rotations: { at: number; renewAt: number; lateMs: number; pastExpiryMs: number; steady: boolean }[] = [];
      const read = (s: KObject): Held | undefined => {
        const a = s.metadata.annotations ?? {};
        const id = a[TOKEN_ID_ANNOTATION];
        if (!id) return undefined;
        return { tokenId: id, renewAt: Date.parse(a[RENEW_AT_ANNOTATION] ?? ''), expiresAt: Date.parse(a[EXPIRES_AT_ANNOTATION] ?? ''), expiration: a[EXPIRATION_ANNOTATION] ?? '' };
      };
      const secrets = new Tracker<KObject>(admin, R.secret, { labelSelector: `${MANAGED_BY}=tokenwarden`, fieldSelector: `type=${TOKEN_SECRET_TYPE}` }, (type, s, at) => {
        const key = `${s.metadata.namespace}/${s.metadata.name}`;
        if (type === 'DELETED') return void held.delete(key);
        const now = read(s);
        if (!now) return;
        const before = held.get(key);
        if (before && before.tokenId !== now.tokenId) {
          rotations.push({ at, renewAt: before.renewAt, lateMs: at - before.renewAt, pastExpiryMs: at - before.expiresAt, steady: before.expiration === '600' && now.expiration === '600' });
        }
        held.set(key, now);
      });
      await secrets.start();
      try {
        const t0 = Date.now();
        for (const t of TIERS) await admin.patch(R.tier, undefined, t.name, { spec: { token: ROTATION_TOKEN } });
        // The switch-over: every client reissues for the new lifetime (ExpirationChanged).
        let burstEnd: number | null = null;
        const burstDeadline = t0 + options.readyTimeoutMs;
        while (Date.now() < burstDeadline) {
          if (!op?.running()) throw new Error(`the operator exited (${JSON.stringify(op?.exitedWith())})`);
          const switched = [...held.values()].filter((h) => h.expiration === '600').length;
          if (switched >= holders) {
            burstEnd = Date.now();
            break;
          }
          await sleep(200);
        }
        const burstMs = burstEnd === null ? null : burstEnd - t0;
        log(`N=${n}: rotation: all switched to 10m tokens after ${burstMs} ms; window of ${options.rotationMs / 1000} s`);
        const w0 = Date.now();
        const opBefore = await op?.metrics();
        const mw = await mark();
        const logFrom = logOffset((op as OperatorProcess).logPath);
        await sleep(options.rotationMs);
        const w1 = Date.now();
        const { b, requests, cpu } = await between(mw);
        const inWindow = rotations.filter((r) => r.steady && r.at >= w0 && r.at < w1);
        // Renewals that fell due in the window: of tokens replaced since, and of tokens still held.
        const due =
          rotations.filter((r) => r.steady && r.renewAt >= w0 && r.renewAt < w1).length +
          [...held.values()].filter((h) => h.expiration === '600' && h.renewAt >= w0 && h.renewAt < w1).length;
        // Tokens still held past their renewAt at the end count with their lateness so far.
        const pendingLate = [...held.values()].filter((h) => h.expiration === '600' && h.renewAt < w1).map((h) => w1 - h.renewAt);
        const late = [...inWindow.map((r) => r.lateMs), ...pendingLate];
        const all = rotations.filter((r) => r.steady);
        const seconds = (w1 - w0) / 1000;
        const nRot = inWindow.length;
        res.rotation = {
          burstMs,
          windowMs: w1 - w0,
          demandPerSecond: round2(holders / 30),
          rotationsPerSecond: round2(nRot / seconds),
          rotationsInWindow: nRot,
          dueInWindow: due,
          operatorRotatedPerSecond: round2(((b.op?.rotated ?? 0) - (opBefore?.rotated ?? 0)) / seconds),
          lateMs: latencies(late),
          late: {
            over1s: late.filter((x) => x > 1000).length,
            over5s: late.filter((x) => x > 5000).length,
            over30s: late.filter((x) => x > 30_000).length,
            pastExpiry: [...all.map((r) => r.pastExpiryMs), ...[...held.values()].map((h) => w1 - h.expiresAt)].filter((x) => x > 0).length,
          },
          requestsPerRotation: perClient(requests, Math.max(1, nRot)),
          requests,
          cpu,
          profile: profileLog((op as OperatorProcess).logPath, logFrom),
        };
        log(`N=${n}: rotation: ${res.rotation.rotationsPerSecond}/s sustained (demand ${res.rotation.demandPerSecond}/s); late p99 ${res.rotation.lateMs.p99} ms, max ${res.rotation.lateMs.max} ms`);
      } finally {
        await secrets.stop();
      }
    });
  } catch (err) {
    res.errors.setup = err instanceof Error ? err.message : String(err);
    log(`N=${n}: failed: ${res.errors.setup}`);
  } finally {
    const exited = op?.exitedWith();
    if (op && exited) {
      res.crashed = { ...exited, logTail: fs.readFileSync(op.logPath, 'utf8').split('\n').slice(-8).join('\n') };
      log(`N=${n}: !!! the operator exited by itself (${JSON.stringify(exited)}):\n${res.crashed.logTail}`);
    }
    if (op) {
      peakRss.push(op.peakRss());
      await op.stop();
    }
    if (!res.oomKilled && sampler.oomKills() > 0) {
      res.oomKilled = { phase: Object.keys(res.errors).at(-1) ?? 'startup', oomKills: sampler.oomKills() };
      log(`N=${n}: !!! OOM KILL outside a measured phase (${res.oomKilled.phase})`);
    }
    res.operator = { peakRssBytes: Math.max(0, ...peakRss), peakRssByProcess: peakRss };
    if (options.cpuProf) {
      res.operator.cpuProfiles = [1, 2].map((k) => {
        const dir = profDir(k);
        const files = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')).map((f) => path.join(dir, f)) : [];
        return files.length ? summarizeCpuProfiles(files) : undefined;
      });
    }
    await clientTracker.stop();
    saveResults();
    cgroup?.destroy();
    await bc.stop().catch((err: unknown) => log(`stopping the control plane: ${String(err)}`));
    if (!flags.keep) fs.rmSync(path.join(workDir, 'state'), { recursive: true, force: true });
  }
  return res;
}

/** The token in each client's Secret, by "namespace/name" of the client. */
async function tokensOf(admin: Kube, defs: ClientDef[]): Promise<Map<string, string>> {
  const list = await admin.list(R.secret, undefined, { labelSelector: `${MANAGED_BY}=tokenwarden`, fieldSelector: `type=${TOKEN_SECRET_TYPE}` });
  const byKey = new Map(list.items.map((s) => [`${s.metadata.namespace}/${s.metadata.name}`, s]));
  const out = new Map<string, string>();
  for (const d of defs) {
    const ns = tenantNamespace('bench', d.tenant);
    const secret = byKey.get(`${ns}/${d.name}-token`) as (KObject & { data?: { token?: string } }) | undefined;
    const token = secret?.data?.token;
    if (!token) throw new Error(`no token in ${ns}/${d.name}-token`);
    out.set(`${ns}/${d.name}`, Buffer.from(token, 'base64').toString('utf8'));
  }
  return out;
}

function gitInfo(): { commit: string; dirtySrc: boolean } {
  try {
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: repoRoot, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src'], { cwd: repoRoot, encoding: 'utf8' }).trim() !== '';
    return { commit, dirtySrc: dirty };
  } catch {
    return { commit: 'unknown', dirtySrc: false };
  }
}

async function main(): Promise<void> {
  log(`sizes ${options.sizes.join(', ')}; results in ${path.relative(repoRoot, resultsFile)}; work dir ${workRoot}`);
  if (options.operatorRoot !== repoRoot) log(`operator from ${options.operatorRoot}`);
  let interrupted = false;
  process.on('SIGINT', () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    log('interrupted: finishing the current size is skipped at the next phase boundary; Ctrl-C again to quit now');
  });
  for (const n of options.sizes) {
    if (interrupted) break;
    await runSize(n);
  }
  results.finishedAt = new Date().toISOString();
  saveResults();
  const oom = results.runs.filter((r) => r.oomKilled || r.crashed);
  if (!quick && flags.docs && !flags['no-docs']) {
    const doc = writeReport(resultsDir, path.join(repoRoot, 'docs/benchmarks.md'));
    log(`wrote ${path.relative(repoRoot, doc)}`);
  }
  log(`results: ${path.relative(repoRoot, resultsFile)}`);
  if (!flags.keep) fs.rmSync(workRoot, { recursive: true, force: true });
  if (oom.length > 0) {
    for (const r of oom) {
      if (r.oomKilled) console.error(`\nFAILED: OOM KILL at N=${r.n} during ${r.oomKilled.phase}: the operator exceeded its ${mib(options.memoryLimitBytes ?? 0)} MiB memory limit\n`);
      else console.error(`\nFAILED: the operator exited by itself at N=${r.n} (${JSON.stringify({ code: r.crashed?.code, signal: r.crashed?.signal })}):\n${r.crashed?.logTail}\n`);
    }
    process.exit(3);
  }
}

function memoryLine(m: PhaseMemory): string {
  const cg = m.cgroupPeakBytes === undefined ? '' : `cgroup peak ${mib(m.cgroupPeakBytes)} MiB (anon ${mib(m.cgroupAnonPeakBytes ?? 0)}), limit hits ${m.limitHits}, OOM kills ${m.oomKills}; `;
  return `${cg}RSS peak ${mib(m.rssPeakBytes)} MiB, heap used ${mib(m.heapUsedPeakBytes)}/${mib(m.heapTotalPeakBytes)} MiB, external ${mib(m.externalPeakBytes)} MiB`;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
