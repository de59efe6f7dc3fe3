/**
 * The operator under measurement, as a child process: `node src/main.ts` with its own kubeconfig,
 * namespace prefix and selector, metrics and health probes on loopback ports picked here (so it
 * works at --log-level warn, which does not log the bound URLs or "operator started").
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import type { MemoryCgroup } from './cgroup.ts';
import { metricSamples, sleep } from './kube.ts';

export interface OperatorOptions {
  /** The folder holding src/main.ts (the repository, or a copy of it to try a change). */
  root: string;
  kubeconfig: string;
  namespacePrefix: string;
  selector: string;
  workers: number;
  logLevel: string;
  logPath: string;
  extraArgs?: string[];
  /** Flags for node itself, e.g. --cpu-prof. */
  nodeArgs?: string[];
  /** NODE_OPTIONS for the operator (the Deployment's heap flags); unset when undefined. */
  nodeOptions?: string;
  /** MALLOC_ARENA_MAX for the operator (the Deployment's); unset when undefined. */
  mallocArenaMax?: string;
  /** Run inside this memory cgroup from the first instruction, as in a pod with a memory limit. */
  cgroup?: MemoryCgroup;
}

export interface OperatorMetrics {
  /** rest_client_requests_total by method. */
  requests: Record<string, number>;
  writes: number;
  reconciles: Record<string, number>;
  queueDepth: Record<string, number>;
  issued: number;
  rotated: number;
  revoked: number;
  /** nodejs_heap_size_used_bytes, _total_bytes, nodejs_external_memory_bytes and process_resident_memory_bytes at this moment. */
  heapUsedBytes: number;
  heapTotalBytes: number;
  externalBytes: number;
  rssBytes: number;
}

export class OperatorProcess {
  readonly pid: number;
  /** performance.now() when spawned. */
  readonly spawnedAt: number;
  readonly metricsUrl: string;
  readonly readyUrl: string;
  readonly logPath: string;
  private readonly child: ChildProcess;
  private exitStatus: { code: number | null; signal: string | null } | undefined;
  readonly exited: Promise<{ code: number | null; signal: string | null }>;

  private constructor(child: ChildProcess, spawnedAt: number, metricsPort: number, healthPort: number, logPath: string) {
    this.child = child;
    this.pid = child.pid ?? -1;
    this.spawnedAt = spawnedAt;
    this.metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
    this.readyUrl = `http://127.0.0.1:${healthPort}/readyz`;
    this.logPath = logPath;
    this.exited = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        this.exitStatus = { code, signal };
        resolve(this.exitStatus);
      });
    });
  }

  static async start(opts: OperatorOptions): Promise<OperatorProcess> {
    const [metricsPort, healthPort] = [await freePort(), await freePort()];
    fs.mkdirSync(path.dirname(opts.logPath), { recursive: true });
    const fd = fs.openSync(opts.logPath, 'a');
    const args = [
      ...(opts.nodeArgs ?? []),
      path.join(opts.root, 'src/main.ts'),
      '--kubeconfig', opts.kubeconfig,
      '--namespace-prefix', opts.namespacePrefix,
      '--selector', opts.selector,
      '--workers', String(opts.workers),
      '--log-level', opts.logLevel,
      `--metrics-bind-address=127.0.0.1:${metricsPort}`,
      `--health-probe-bind-address=127.0.0.1:${healthPort}`,
      ...(opts.extraArgs ?? []),
    ];
    let child: ChildProcess;
    const spawnedAt = performance.now();
    try {
      const env: NodeJS.ProcessEnv = { ...process.env };
      delete env.NODE_OPTIONS;
      if (opts.nodeOptions) env.NODE_OPTIONS = opts.nodeOptions;
      delete env.MALLOC_ARENA_MAX;
      if (opts.mallocArenaMax) env.MALLOC_ARENA_MAX = opts.mallocArenaMax;
      const cmd = opts.cgroup ? opts.cgroup.wrap(process.execPath, args) : { command: process.execPath, args };
      child = spawn(cmd.command, cmd.args, { cwd: opts.root, stdio: ['ignore', fd, fd], env });
    } finally {
      fs.closeSync(fd);
    }
    return new OperatorProcess(child, spawnedAt, metricsPort, healthPort, opts.logPath);
  }

  running(): boolean {
    return this.exitStatus === undefined;
  }

  /** How it exited, once it has. */
  exitedWith(): { code: number | null; signal: string | null } | undefined {
    return this.exitStatus;
  }

  /** Polls /readyz (200 once the caches are synced, i.e. "operator started"); returns performance.now() of the first 200. */
  async waitReady(timeoutMs = 600_000): Promise<number> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      if (!this.running()) throw new Error(`the operator exited (${JSON.stringify(this.exitStatus)}) before it was ready; log ${this.logPath}:\n${tail(this.logPath)}`);
      const status = await httpStatus(this.readyUrl).catch(() => 0);
      if (status === 200) return performance.now();
      if (performance.now() > deadline) throw new Error(`operator not ready in ${timeoutMs} ms; log ${this.logPath}`);
      await sleep(25);
    }
  }

  async metrics(): Promise<OperatorMetrics> {
    const text = await httpText(this.metricsUrl);
    const sumBy = (name: string, label: string) => {
      const out: Record<string, number> = {};
      for (const s of metricSamples(text, name)) {
        const k = s.labels[label] ?? '';
        out[k] = (out[k] ?? 0) + s.value;
      }
      return out;
    };
    const total = (name: string) => metricSamples(text, name).reduce((n, s) => n + s.value, 0);
    const requests = sumBy('rest_client_requests_total', 'method');
    const writes = ['POST', 'PUT', 'PATCH', 'DELETE'].reduce((n, m) => n + (requests[m] ?? 0), 0);
    return {
      requests,
      writes,
      reconciles: sumBy('controller_runtime_reconcile_total', 'controller'),
      queueDepth: sumBy('workqueue_depth', 'name'),
      issued: total('tokenwarden_tokens_issued_total'),
      rotated: total('tokenwarden_tokens_rotated_total'),
      revoked: total('tokenwarden_tokens_revoked_total'),
      heapUsedBytes: total('nodejs_heap_size_used_bytes'),
      heapTotalBytes: total('nodejs_heap_size_total_bytes'),
      externalBytes: total('nodejs_external_memory_bytes'),
      rssBytes: total('process_resident_memory_bytes'),
    };
  }

  /** Peak resident set size so far (VmHWM), bytes. */
  peakRss(): number {
    return procStatusKb(this.pid, 'VmHWM') * 1024;
  }

  rss(): number {
    return procStatusKb(this.pid, 'VmRSS') * 1024;
  }

  /** SIGTERM and wait (SIGKILL after timeoutMs). */
  async stop(timeoutMs = 30_000): Promise<void> {
    if (!this.running()) return;
    this.child.kill('SIGTERM');
    const done = await Promise.race([this.exited, sleep(timeoutMs).then(() => undefined)]);
    if (!done) {
      this.child.kill('SIGKILL');
      await this.exited;
    }
  }
}

/**
 * Waits until the operator has made no write for `quietMs` and its client queue is empty; returns
 * performance.now() of its last write seen (or `since` if it wrote nothing), the metrics at the end,
 * and whether it got there before the timeout.
 */
export async function waitQuiet(op: OperatorProcess, since: number, quietMs: number, timeoutMs: number): Promise<{ lastWriteAt: number; metrics: OperatorMetrics; quiet: boolean }> {
  let m = await op.metrics();
  let writes = m.writes;
  let lastWriteAt = since;
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    await sleep(200);
    m = await op.metrics();
    if (m.writes !== writes) {
      writes = m.writes;
      lastWriteAt = performance.now();
    }
    const idle = Object.values(m.queueDepth).every((d) => d === 0);
    if (idle && performance.now() - lastWriteAt >= quietMs && performance.now() - since >= quietMs) return { lastWriteAt, metrics: m, quiet: true };
    if (performance.now() > deadline) return { lastWriteAt, metrics: m, quiet: false };
  }
}

function procStatusKb(pid: number, field: string): number {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

function tail(file: string, lines = 30): string {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function httpStatus(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

function httpText(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { timeout: 10_000 }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (d: string) => (text += d));
      res.on('end', () => ((res.statusCode ?? 0) === 200 ? resolve(text) : reject(new Error(`${url}: HTTP ${res.statusCode}`))));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${url}: timeout`)));
    req.on('error', reject);
  });
}

export interface ReconcileProfile {
  /** Reconciles of serviceaccountclient keys: per key, as a distribution. */
  perClient: { mean: number; p50: number; p99: number; max: number };
  outcomes: Record<string, number>;
  /** Reconcile durations (ms) by controller: sum, p50, p99. */
  durationMs: Record<string, { count: number; sum: number; p50: number; p99: number }>;
  /** Log lines by message, at info and above (errors, conflicts, revocations). */
  messages: Record<string, number>;
}

/**
 * From the operator's debug log (its "reconciled" lines), starting at byte `from`: how often each
 * client was reconciled and how long reconciles took. Empty unless the log level is debug or trace.
 */
export function profileLog(logPath: string, from: number): ReconcileProfile | undefined {
  let text: string;
  try {
    const fd = fs.openSync(logPath, 'r');
    const size = fs.fstatSync(fd).size;
    const buf = Buffer.alloc(Math.max(0, size - from));
    fs.readSync(fd, buf, 0, buf.length, from);
    fs.closeSync(fd);
    text = buf.toString('utf8');
  } catch {
    return undefined;
  }
  const perKey = new Map<string, number>();
  const outcomes: Record<string, number> = {};
  const durations = new Map<string, number[]>();
  const messages: Record<string, number> = {};
  let any = false;
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    let rec: { msg?: string; controller?: string; key?: string; outcome?: string; durationMs?: number; level?: number };
    try {
      rec = JSON.parse(line) as typeof rec;
    } catch {
      continue;
    }
    if ((rec.level ?? 0) >= 30 && rec.msg) messages[rec.msg] = (messages[rec.msg] ?? 0) + 1;
    if (rec.msg !== 'reconciled') continue;
    any = true;
    const controller = rec.controller ?? '?';
    if (controller === 'serviceaccountclient' && rec.key) {
      perKey.set(rec.key, (perKey.get(rec.key) ?? 0) + 1);
      outcomes[rec.outcome ?? '?'] = (outcomes[rec.outcome ?? '?'] ?? 0) + 1;
    }
    const list = durations.get(controller) ?? [];
    list.push(rec.durationMs ?? 0);
    durations.set(controller, list);
  }
  if (!any) return undefined;
  const pct = (values: number[], p: number) => {
    const sorted = [...values].sort((a, b) => a - b);
    return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? 0;
  };
  const counts = [...perKey.values()];
  return {
    perClient: { mean: counts.reduce((a, b) => a + b, 0) / Math.max(1, counts.length), p50: pct(counts, 50), p99: pct(counts, 99), max: pct(counts, 100) },
    outcomes,
    durationMs: Object.fromEntries([...durations].map(([c, v]) => [c, { count: v.length, sum: v.reduce((a, b) => a + b, 0), p50: pct(v, 50), p99: pct(v, 99) }])),
    messages,
  };
}

/** Size of the log now (to profile a phase from here on). */
export function logOffset(logPath: string): number {
  try {
    return fs.statSync(logPath).size;
  } catch {
    return 0;
  }
}

export interface CpuProfileSummary {
  totalMs: number;
  /** Self time by function, top entries. */
  functions: { name: string; where: string; selfMs: number; percent: number }[];
  /** Self time by module group: src/..., node_modules/<pkg>, node:internal, (garbage collector), (idle)... */
  modules: { module: string; selfMs: number; percent: number }[];
}

/** Summarises V8 .cpuprofile files (node --cpu-prof) by self time. */
export function summarizeCpuProfiles(files: string[], top = 30): CpuProfileSummary | undefined {
  const byFn = new Map<string, { name: string; where: string; selfMs: number }>();
  const byModule = new Map<string, number>();
  let total = 0;
  for (const file of files) {
    const prof = JSON.parse(fs.readFileSync(file, 'utf8')) as {
      nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; hitCount?: number }[];
      samples: number[];
      timeDeltas: number[];
    };
    const nodes = new Map(prof.nodes.map((n) => [n.id, n]));
    const selfUs = new Map<number, number>();
    prof.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (prof.timeDeltas[i] ?? 0)));
    for (const [id, us] of selfUs) {
      const node = nodes.get(id);
      if (!node) continue;
      const { functionName, url, lineNumber } = node.callFrame;
      const ms = us / 1000;
      total += ms;
      const mod = moduleOf(url, functionName);
      byModule.set(mod, (byModule.get(mod) ?? 0) + ms);
      if (functionName === '(idle)' || functionName === '(program)') continue;
      const where = url ? `${url.replace(/^file:\/\/.*?\/(src|node_modules)\//, '$1/')}:${lineNumber + 1}` : '';
      const key = `${functionName}@${where}`;
      const e = byFn.get(key) ?? { name: functionName || '(anonymous)', where, selfMs: 0 };
      e.selfMs += ms;
      byFn.set(key, e);
    }
  }
  if (total === 0) return undefined;
  const busy = total - (byModule.get('(idle)') ?? 0);
  const pct = (ms: number) => Math.round((ms / busy) * 1000) / 10;
  return {
    totalMs: Math.round(busy),
    functions: [...byFn.values()].sort((a, b) => b.selfMs - a.selfMs).slice(0, top).map((e) => ({ ...e, selfMs: Math.round(e.selfMs), percent: pct(e.selfMs) })),
    modules: [...byModule].filter(([m]) => m !== '(idle)').sort((a, b) => b[1] - a[1]).slice(0, top).map(([module, ms]) => ({ module, selfMs: Math.round(ms), percent: pct(ms) })),
  };
}

function moduleOf(url: string, fn: string): string {
  if (!url) return fn.startsWith('(') ? fn : '(native)';
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return `node_modules/${nm[1]}`;
  const src = /\/src\/(.*)$/.exec(url);
  if (src) return `src/${src[1]}`;
  if (url.startsWith('node:')) return 'node:internal';
  return url;
}
