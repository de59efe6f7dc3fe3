/** The machine and its load: description, CPU time of the processes involved and of everyone else. */
import fs from 'node:fs';
import os from 'node:os';

export interface Machine {
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  os: string;
  node: string;
}

export function machine(): Machine {
  const cpuModel = /^model name\s*:\s*(.*)$/m.exec(safeRead('/proc/cpuinfo'))?.[1] ?? os.cpus()[0]?.model ?? 'unknown';
  return {
    cpuModel,
    cores: os.cpus().length,
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    os: `${os.type()} ${os.release()}`,
    node: process.version,
  };
}

const TICKS_PER_SECOND = 100;

/** CPU seconds (user + system) of one process so far; 0 if it is gone. */
export function processCpuSeconds(pid: number): number {
  const stat = safeRead(`/proc/${pid}/stat`);
  if (!stat) return 0;
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime and stime are fields 14 and 15 of /proc/pid/stat, i.e. 11 and 12 after "(comm) ".
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

/** Busy CPU seconds of the whole machine so far (all cores). */
export function machineBusySeconds(): number {
  const line = safeRead('/proc/stat').split('\n')[0] ?? '';
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, _idle = 0, _iowait = 0, irq = 0, softirq = 0, steal = 0] = v;
  return (user + nice + system + irq + softirq + steal) / TICKS_PER_SECOND;
}

export interface CpuReading {
  at: number;
  machine: number;
  processes: Record<string, number>;
}

/** CPU time of named processes and of the machine, to say how much of the load was someone else's. */
export class CpuMeter {
  private readonly pids: () => Record<string, number>;

  constructor(pids: () => Record<string, number>) {
    this.pids = pids;
  }

  read(): CpuReading {
    const processes: Record<string, number> = {};
    for (const [name, pid] of Object.entries(this.pids())) processes[name] = pid > 0 ? processCpuSeconds(pid) : 0;
    processes.bench = process.cpuUsage().user / 1e6 + process.cpuUsage().system / 1e6;
    return { at: performance.now(), machine: machineBusySeconds(), processes };
  }
}

export interface CpuUsage {
  wallSeconds: number;
  /** Cores in use on average, per process and for everything else on the machine. */
  cores: Record<string, number>;
  machineCores: number;
  otherCores: number;
  loadAverage: number[];
}

/**
 * Average cores used between two readings. A process restarted in between (the operator) is read
 * by pid, so pass readings whose pid maps agree; a missing process counts 0.
 */
export function cpuUsage(a: CpuReading, b: CpuReading): CpuUsage {
  const wall = (b.at - a.at) / 1000;
  const cores: Record<string, number> = {};
  let ours = 0;
  for (const [name, v] of Object.entries(b.processes)) {
    const d = Math.max(0, v - (a.processes[name] ?? 0));
    cores[name] = round2(d / wall);
    ours += d;
  }
  const machineCores = (b.machine - a.machine) / wall;
  return { wallSeconds: round2(wall), cores, machineCores: round2(machineCores), otherCores: round2(Math.max(0, machineCores - ours / wall)), loadAverage: os.loadavg().map(round2) };
}

export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((x, y) => x - y);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank] as number;
}

export function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

function safeRead(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}
