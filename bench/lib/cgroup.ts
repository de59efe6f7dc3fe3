/**
 * The operator's memory as a pod sees it: a real memory cgroup (v1, /sys/fs/cgroup/memory; root
 * may create a child there) with the Deployment's limit, the process put in it before Node starts
 * (so V8 sizes itself from the limit, as in a container), and a sampler that reports per phase the
 * cgroup's peak usage, the process's peak RSS and the V8 heap and external memory.
 *
 * An OOM kill is detected from memory.oom_control's oom_kill counter (and the process's SIGKILL).
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';

export const CGROUP_V1_MEMORY_ROOT = '/sys/fs/cgroup/memory';

/** "192Mi", "256M", "1Gi", "201326592" -> bytes. */
export function parseQuantity(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|K|M|G|k)?$/.exec(text.trim());
  if (!m) throw new Error(`not a memory quantity: ${JSON.stringify(text)} (e.g. 192Mi)`);
  const units: Record<string, number> = { '': 1, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, k: 1e3, K: 1e3, M: 1e6, G: 1e9 };
  return Math.round(Number(m[1]) * (units[m[2] ?? ''] as number));
}

export const mib = (bytes: number): number => Math.round((bytes / 2 ** 20) * 10) / 10;

/** What the Deployment (manifests/deployment.yaml) gives the operator container. */
export interface DeploymentMemory {
  requestBytes: number | undefined;
  limitBytes: number | undefined;
  /** The container's NODE_OPTIONS env value, if it sets one. */
  nodeOptions: string | undefined;
  /** The container's MALLOC_ARENA_MAX env value (glibc's malloc arenas), if it sets one. */
  mallocArenaMax: string | undefined;
}

export function deploymentMemory(manifestPath: string): DeploymentMemory {
  const docs = parseAllDocuments(fs.readFileSync(manifestPath, 'utf8')).map((d) => d.toJS() as Record<string, unknown>);
  const dep = docs.find((d) => d?.kind === 'Deployment') as
    | { spec: { template: { spec: { containers: { name: string; resources?: { requests?: { memory?: string }; limits?: { memory?: string } }; env?: { name: string; value?: string }[] }[] } } } }
    | undefined;
  const c = dep?.spec.template.spec.containers.find((x) => x.name === 'operator');
  if (!c) throw new Error(`${manifestPath}: no Deployment with an "operator" container`);
  const req = c.resources?.requests?.memory;
  const lim = c.resources?.limits?.memory;
  return {
    requestBytes: req ? parseQuantity(req) : undefined,
    limitBytes: lim ? parseQuantity(lim) : undefined,
    nodeOptions: c.env?.find((e) => e.name === 'NODE_OPTIONS')?.value,
    mallocArenaMax: c.env?.find((e) => e.name === 'MALLOC_ARENA_MAX')?.value,
  };
}

/** --max-old-space-size=N (MiB) in a NODE_OPTIONS string. */
export function maxOldSpaceMiB(nodeOptions: string | undefined): number | undefined {
  const m = /--max-old-space-size[= ](\d+)/.exec(nodeOptions ?? '');
  return m ? Number(m[1]) : undefined;
}

export interface CgroupReading {
  usageBytes: number;
  maxUsageBytes: number;
  /** Anonymous memory charged to the cgroup (memory.stat total_rss): what cannot be reclaimed without swap. */
  anonBytes: number;
  /** Page cache charged to the cgroup (memory.stat total_cache): reclaimable. */
  cacheBytes: number;
  failcnt: number;
  oomKills: number;
  underOom: boolean;
}

export class MemoryCgroup {
  readonly dir: string;
  readonly limitBytes: number;

  private constructor(dir: string, limitBytes: number) {
    this.dir = dir;
    this.limitBytes = limitBytes;
  }

  /** Creates a child memory cgroup with this limit (no swap: memsw limit equal, where present). */
  static create(name: string, limitBytes: number, root = CGROUP_V1_MEMORY_ROOT): MemoryCgroup {
    if (!fs.existsSync(path.join(root, 'memory.limit_in_bytes'))) {
      throw new Error(`no cgroup v1 memory controller at ${root}: run with --memory-limit=none, or on a machine where root may create memory cgroups`);
    }
    const dir = path.join(root, name);
    fs.mkdirSync(dir);
    const cg = new MemoryCgroup(dir, limitBytes);
    try {
      cg.write('memory.limit_in_bytes', String(limitBytes));
      if (fs.existsSync(path.join(dir, 'memory.memsw.limit_in_bytes'))) cg.write('memory.memsw.limit_in_bytes', String(limitBytes));
      cg.write('memory.swappiness', '0');
    } catch (err) {
      cg.destroy();
      throw err;
    }
    return cg;
  }

  /**
   * The command that runs `command args` inside the cgroup: a shell puts itself in cgroup.procs and
   * execs the command, so the process is limited from its first instruction (and keeps the pid).
   */
  wrap(command: string, args: string[]): { command: string; args: string[] } {
    const procs = path.join(this.dir, 'cgroup.procs');
    return { command: '/bin/sh', args: ['-c', `echo $$ > '${procs}' && exec "$0" "$@"`, command, ...args] };
  }

  read(): CgroupReading {
    const n = (file: string) => Number(this.readFile(file).trim() || 0);
    const stat = parseKeyValues(this.readFile('memory.stat'));
    const oom = parseKeyValues(this.readFile('memory.oom_control'));
    return {
      usageBytes: n('memory.usage_in_bytes'),
      maxUsageBytes: n('memory.max_usage_in_bytes'),
      anonBytes: stat.total_rss ?? stat.rss ?? 0,
      cacheBytes: stat.total_cache ?? stat.cache ?? 0,
      failcnt: n('memory.failcnt'),
      oomKills: oom.oom_kill ?? 0,
      underOom: (oom.under_oom ?? 0) === 1,
    };
  }

  /** Starts a new peak: memory.max_usage_in_bytes restarts from the current usage. */
  resetPeak(): void {
    this.write('memory.max_usage_in_bytes', '0');
  }

  /** Removes the cgroup (its processes must have exited). */
  destroy(): void {
    for (let i = 0; i < 20; i++) {
      try {
        fs.rmdirSync(this.dir);
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
        // EBUSY right after the last process exited: the kernel is still uncharging.
        const until = Date.now() + 50;
        while (Date.now() < until) {
          /* spin briefly */
        }
      }
    }
  }

  private write(file: string, value: string): void {
    fs.writeFileSync(path.join(this.dir, file), value);
  }

  private readFile(file: string): string {
    try {
      return fs.readFileSync(path.join(this.dir, file), 'utf8');
    } catch {
      return '';
    }
  }
}

function parseKeyValues(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const [k, v] = line.trim().split(/\s+/);
    if (k && v !== undefined) out[k] = Number(v);
  }
  return out;
}

/** One phase's memory, the highest value seen of each (cgroup figures only when in a cgroup). */
export interface PhaseMemory {
  /** memory.max_usage_in_bytes over the phase: anon + page cache, what the limit is checked against. */
  cgroupPeakBytes?: number;
  /** Highest anonymous memory charged (memory.stat total_rss), sampled. */
  cgroupAnonPeakBytes?: number;
  /** memory.failcnt during the phase: how often usage hit the limit (page cache then reclaimed). */
  limitHits?: number;
  oomKills?: number;
  /** VmRSS of the operator process, sampled (250 ms). */
  rssPeakBytes: number;
  /** From the operator's /metrics (1 s): nodejs_heap_size_used_bytes, _total_bytes, nodejs_external_memory_bytes. */
  heapUsedPeakBytes: number;
  heapTotalPeakBytes: number;
  externalPeakBytes: number;
  /** At the phase's end. */
  endRssBytes: number;
  endHeapUsedBytes: number;
  samples: number;
}

export interface HeapReading {
  heapUsedBytes: number;
  heapTotalBytes: number;
  externalBytes: number;
}

/**
 * Samples one operator process (and its cgroup) from phase start to phase end. The pid may change
 * (cold start): pass a function.
 */
export class MemorySampler {
  private readonly pid: () => number;
  private readonly heap: () => Promise<HeapReading | undefined>;
  private readonly cgroup: MemoryCgroup | undefined;
  private timer: NodeJS.Timeout | undefined;
  private heapTimer: NodeJS.Timeout | undefined;
  private cur: { rss: number; anon: number; used: number; total: number; ext: number; endRss: number; endUsed: number; samples: number; failcnt0: number; oom0: number } | undefined;
  /** Called once when the cgroup's oom_kill counter moves. */
  onOom: ((reading: CgroupReading) => void) | undefined;
  private oomReported = false;

  constructor(pid: () => number, heap: () => Promise<HeapReading | undefined>, cgroup: MemoryCgroup | undefined) {
    this.pid = pid;
    this.heap = heap;
    this.cgroup = cgroup;
  }

  /** Total OOM kills in the cgroup since it was created. */
  oomKills(): number {
    return this.cgroup?.read().oomKills ?? 0;
  }

  start(): void {
    this.stopTimers();
    const r = this.cgroup?.read();
    this.cgroup?.resetPeak();
    this.cur = { rss: 0, anon: 0, used: 0, total: 0, ext: 0, endRss: 0, endUsed: 0, samples: 0, failcnt0: r?.failcnt ?? 0, oom0: r?.oomKills ?? 0 };
    this.sample();
    this.timer = setInterval(() => this.sample(), 250);
    this.timer.unref();
    const pollHeap = async (): Promise<void> => {
      const h = await this.heap().catch(() => undefined);
      const c = this.cur;
      if (h && c) {
        c.used = Math.max(c.used, h.heapUsedBytes);
        c.total = Math.max(c.total, h.heapTotalBytes);
        c.ext = Math.max(c.ext, h.externalBytes);
        c.endUsed = h.heapUsedBytes;
      }
      if (this.cur === c && this.timer) {
        this.heapTimer = setTimeout(() => void pollHeap(), 1000);
        this.heapTimer.unref();
      }
    };
    void pollHeap();
  }

  /** Ends the phase: its figures. */
  async stop(): Promise<PhaseMemory> {
    this.sample();
    const h = await this.heap().catch(() => undefined);
    const c = this.cur ?? { rss: 0, anon: 0, used: 0, total: 0, ext: 0, endRss: 0, endUsed: 0, samples: 0, failcnt0: 0, oom0: 0 };
    if (h) {
      c.used = Math.max(c.used, h.heapUsedBytes);
      c.total = Math.max(c.total, h.heapTotalBytes);
      c.ext = Math.max(c.ext, h.externalBytes);
      c.endUsed = h.heapUsedBytes;
    }
    this.stopTimers();
    this.cur = undefined;
    const r = this.cgroup?.read();
    return {
      ...(r
        ? { cgroupPeakBytes: r.maxUsageBytes, cgroupAnonPeakBytes: c.anon, limitHits: r.failcnt - c.failcnt0, oomKills: r.oomKills - c.oom0 }
        : {}),
      rssPeakBytes: c.rss,
      heapUsedPeakBytes: c.used,
      heapTotalPeakBytes: c.total,
      externalPeakBytes: c.ext,
      endRssBytes: c.endRss,
      endHeapUsedBytes: c.endUsed,
      samples: c.samples,
    };
  }

  private sample(): void {
    const c = this.cur;
    if (!c) return;
    const rss = procStatusKb(this.pid(), 'VmRSS') * 1024;
    if (rss > 0) c.endRss = rss;
    c.rss = Math.max(c.rss, rss);
    c.samples++;
    if (this.cgroup) {
      const r = this.cgroup.read();
      c.anon = Math.max(c.anon, r.anonBytes);
      if (r.oomKills > 0 && !this.oomReported) {
        this.oomReported = true;
        this.onOom?.(r);
      }
    }
  }

  private stopTimers(): void {
    clearInterval(this.timer);
    clearTimeout(this.heapTimer);
    this.timer = undefined;
    this.heapTimer = undefined;
  }
}

function procStatusKb(pid: number, field: string): number {
  if (pid <= 0) return 0;
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}
