/** Exponential backoff with jitter, and an abortable sleep. */

export interface BackoffOptions {
  /** First delay. */
  baseMs: number;
  /** Largest delay, before jitter. */
  capMs: number;
  /** Growth per attempt, default 2. */
  factor?: number;
  /** Fraction of the delay that is randomized, 0..1 (default 0.2: the delay is within ±20%). */
  jitter?: number;
  random?: () => number;
}

/** The delay of attempt n (0-based) without jitter: base * factor^n, capped. */
export function exponentialDelay(attempt: number, baseMs: number, capMs: number, factor = 2): number {
  const d = baseMs * factor ** Math.max(0, attempt);
  // factor ** (large n) is Infinity: the cap.
  return Number.isFinite(d) ? Math.min(d, capMs) : capMs;
}

/** Spreads `ms` uniformly over [ms*(1-fraction), ms*(1+fraction)]. */
export function jittered(ms: number, fraction: number, random: () => number = Math.random): number {
  if (fraction <= 0) return ms;
  return Math.max(0, Math.round(ms * (1 - fraction + 2 * fraction * random())));
}

/** Stateful backoff for one retry loop: next() grows the delay, reset() starts over. */
export class Backoff {
  private readonly opts: Required<BackoffOptions>;
  private attempt = 0;

  constructor(opts: BackoffOptions) {
    this.opts = { factor: 2, jitter: 0.2, random: Math.random, ...opts };
  }

  /** The delay to wait now; the following call returns a longer one. */
  next(): number {
    const d = exponentialDelay(this.attempt, this.opts.baseMs, this.opts.capMs, this.opts.factor);
    this.attempt++;
    return jittered(d, this.opts.jitter, this.opts.random);
  }

  reset(): void {
    this.attempt = 0;
  }

  get attempts(): number {
    return this.attempt;
  }
}

/** Resolves after ms, or early (without error) when the signal aborts. The timer never holds the process. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    timer.unref?.();
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
