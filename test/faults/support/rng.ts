/**
 * A small seeded random generator (mulberry32) for the fault suite: every random choice of a run
 * (which clients, which edits, when to kill) comes from one seed, printed at the start, so a failing
 * run can be replayed with TOKENWARDEN_FAULT_SEED=<seed>. Replays are as exact as the timing of a
 * real cluster allows: the same edits in the same order, kills at the same offsets.
 */
export class Rng {
  private state: number;
  readonly seed: number;

  constructor(seed: number) {
    this.seed = seed >>> 0;
    this.state = this.seed;
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from an empty list');
    return items[Math.floor(this.next() * items.length)] as T;
  }

  /** `n` distinct items in random order (all of them if there are fewer). */
  sample<T>(items: readonly T[], n: number): T[] {
    const copy = [...items];
    for (let i = copy.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      [copy[i], copy[j]] = [copy[j] as T, copy[i] as T];
    }
    return copy.slice(0, Math.max(0, n));
  }
}

/** The seed of this run: TOKENWARDEN_FAULT_SEED if set (a replay), else a fresh one. Printed either way. */
export function faultSeed(file: string): Rng {
  const fromEnv = process.env.TOKENWARDEN_FAULT_SEED;
  const seed = fromEnv !== undefined && fromEnv !== '' ? Number(fromEnv) : Math.floor(Math.random() * 2 ** 32);
  if (!Number.isInteger(seed) || seed < 0 || seed >= 2 ** 32) throw new Error(`TOKENWARDEN_FAULT_SEED must be an integer in [0, 2^32): ${fromEnv}`);
  console.error(`[faults] ${file}: seed ${seed}${fromEnv ? ' (from TOKENWARDEN_FAULT_SEED)' : ''}; replay with TOKENWARDEN_FAULT_SEED=${seed}`);
  return new Rng(seed);
}

/** A positive integer from the environment, else `fallback`. */
export function envInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer: ${raw}`);
  return n;
}
