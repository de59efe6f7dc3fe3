/**
 * A work queue with client-go's semantics (workqueue.TypedRateLimitingInterface):
 * - a key is held by at most one worker at a time;
 * - adding a key that is already queued does nothing (de-duplication);
 * - adding a key that is being processed marks it dirty; done() queues it again;
 * - addAfter() keeps, per key, the earliest pending time;
 * - addRateLimited() delays by a per-key exponential backoff, reset by forget().
 *
 * One difference: after shutDown(), get() returns undefined at once even if keys are still
 * queued (client-go hands them out). A stopping controller finishes what is in flight and
 * leaves the rest to the next leader or process.
 */
import { exponentialDelay } from './backoff.ts';

/** The longest delay setTimeout honours. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface RateLimiter {
  /** The delay before the key's next try; each call counts as one more failure. */
  when(key: string): number;
  forget(key: string): void;
  numRequeues(key: string): number;
}

/** Per-key exponential backoff: base * 2^failures, capped (client-go's ItemExponentialFailureRateLimiter). */
export class ItemExponentialRateLimiter implements RateLimiter {
  private readonly failures = new Map<string, number>();
  private readonly baseMs: number;
  private readonly capMs: number;

  constructor(baseMs = 100, capMs = 5 * 60_000) {
    this.baseMs = baseMs;
    this.capMs = capMs;
  }

  when(key: string): number {
    const n = this.failures.get(key) ?? 0;
    this.failures.set(key, n + 1);
    return exponentialDelay(n, this.baseMs, this.capMs);
  }

  forget(key: string): void {
    this.failures.delete(key);
  }

  numRequeues(key: string): number {
    return this.failures.get(key) ?? 0;
  }
}

/** Hooks for queue metrics (prom-client wiring lives elsewhere). Times are in seconds. */
export interface WorkQueueMetrics {
  /** Keys waiting to be handed out (not counting delayed ones). */
  depth(depth: number): void;
  /** An add() that was accepted (including de-duplicated ones, as client-go counts). */
  add(): void;
  /** Time between a key being queued and a worker taking it. */
  queueDuration(seconds: number): void;
  /** Time a worker held a key, from get() to done(). */
  workDuration(seconds: number): void;
  /** An addRateLimited() call. */
  retry(): void;
}

export const noopWorkQueueMetrics: WorkQueueMetrics = {
  depth: () => {},
  add: () => {},
  queueDuration: () => {},
  workDuration: () => {},
  retry: () => {},
};

export interface WorkQueueOptions {
  rateLimiter?: RateLimiter;
  /** Used when no rateLimiter is given: first retry delay, default 100ms. */
  baseDelayMs?: number;
  /** Used when no rateLimiter is given: longest retry delay, default 5 minutes. */
  maxDelayMs?: number;
  metrics?: WorkQueueMetrics;
}

export class WorkQueue {
  private queue: string[] = [];
  /** Keys that need processing: queued, or re-added while processing. */
  private readonly dirty = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly waiting = new Map<string, { readyAt: number; timer: NodeJS.Timeout }>();
  private readonly getters: ((key: string | undefined) => void)[] = [];
  private readonly queuedAt = new Map<string, number>();
  private readonly startedAt = new Map<string, number>();
  private drainWaiters: (() => void)[] = [];
  private stopping = false;
  private readonly rateLimiter: RateLimiter;
  private readonly metrics: WorkQueueMetrics;

  constructor(opts: WorkQueueOptions = {}) {
    this.rateLimiter = opts.rateLimiter ?? new ItemExponentialRateLimiter(opts.baseDelayMs ?? 100, opts.maxDelayMs ?? 5 * 60_000);
    this.metrics = opts.metrics ?? noopWorkQueueMetrics;
  }

  add(key: string): void {
    if (this.stopping) return;
    this.metrics.add();
    if (this.dirty.has(key)) return;
    this.dirty.add(key);
    if (this.processing.has(key)) return; // done() will queue it again
    this.push(key);
    this.dispatch();
  }

  /** Adds the key after ms. A key already waiting keeps the earlier of the two times. */
  addAfter(key: string, ms: number): void {
    if (this.stopping) return;
    if (!(ms > 0)) {
      this.add(key);
      return;
    }
    const readyAt = Date.now() + ms;
    const pending = this.waiting.get(key);
    if (pending) {
      if (pending.readyAt <= readyAt) return;
      clearTimeout(pending.timer);
    }
    // setTimeout fires at once for a delay past 2^31-1 ms (about 24.8 days): a far-off renewal would
    // otherwise be reconciled in a loop. Waking early is harmless; the reconcile asks again.
    const timer = setTimeout(() => {
      this.waiting.delete(key);
      this.add(key);
    }, Math.min(ms, MAX_TIMER_MS));
    timer.unref();
    this.waiting.set(key, { readyAt, timer });
  }

  /** Adds the key after its backoff delay, and counts one more failure for it. */
  addRateLimited(key: string): void {
    if (this.stopping) return;
    this.metrics.retry();
    this.addAfter(key, this.rateLimiter.when(key));
  }

  /** Resets the key's backoff (call after a successful reconcile). */
  forget(key: string): void {
    this.rateLimiter.forget(key);
  }

  numRequeues(key: string): number {
    return this.rateLimiter.numRequeues(key);
  }

  /** The next key, once one is ready; undefined once the queue is shut down. Call done(key) after. */
  get(): Promise<string | undefined> {
    if (this.stopping) return Promise.resolve(undefined);
    const key = this.take();
    if (key !== undefined) return Promise.resolve(key);
    return new Promise((resolve) => this.getters.push(resolve));
  }

  /** The worker is finished with the key. If it was added meanwhile, it is queued again. */
  done(key: string): void {
    if (!this.processing.delete(key)) return;
    const started = this.startedAt.get(key);
    this.startedAt.delete(key);
    if (started !== undefined) this.metrics.workDuration((Date.now() - started) / 1000);
    if (!this.stopping && this.dirty.has(key)) {
      this.push(key);
      this.dispatch();
    }
    if (this.processing.size === 0 && this.drainWaiters.length > 0) {
      const waiters = this.drainWaiters;
      this.drainWaiters = [];
      for (const w of waiters) w();
    }
  }

  /** Keys ready to be handed out. */
  len(): number {
    return this.queue.length;
  }

  /** Keys currently held by workers. */
  inFlight(): number {
    return this.processing.size;
  }

  /** Keys waiting for their addAfter/addRateLimited time. */
  delayed(): number {
    return this.waiting.size;
  }

  isProcessing(key: string): boolean {
    return this.processing.has(key);
  }

  get shuttingDown(): boolean {
    return this.stopping;
  }

  /** Stops handing out keys: get() returns undefined, adds are ignored, delayed keys are dropped. */
  shutDown(): void {
    if (this.stopping) return;
    this.stopping = true;
    for (const { timer } of this.waiting.values()) clearTimeout(timer);
    this.waiting.clear();
    this.queue = [];
    this.queuedAt.clear();
    for (const key of [...this.dirty]) if (!this.processing.has(key)) this.dirty.delete(key);
    this.metrics.depth(0);
    const getters = this.getters.splice(0);
    for (const g of getters) g(undefined);
  }

  /** shutDown(), then waits until every key handed out is done(), at most timeoutMs. True if drained. */
  async shutDownWithDrain(timeoutMs: number): Promise<boolean> {
    this.shutDown();
    if (this.processing.size === 0) return true;
    let timer: NodeJS.Timeout | undefined;
    const drained = new Promise<boolean>((resolve) => this.drainWaiters.push(() => resolve(true)));
    const timedOut = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
      timer.unref();
    });
    try {
      return await Promise.race([drained, timedOut]);
    } finally {
      clearTimeout(timer);
    }
  }

  private push(key: string): void {
    this.queue.push(key);
    this.queuedAt.set(key, Date.now());
    this.metrics.depth(this.queue.length);
  }

  private take(): string | undefined {
    const key = this.queue.shift();
    if (key === undefined) return undefined;
    this.dirty.delete(key);
    this.processing.add(key);
    const now = Date.now();
    const queued = this.queuedAt.get(key);
    this.queuedAt.delete(key);
    if (queued !== undefined) this.metrics.queueDuration((now - queued) / 1000);
    this.startedAt.set(key, now);
    this.metrics.depth(this.queue.length);
    return key;
  }

  private dispatch(): void {
    while (this.getters.length > 0 && this.queue.length > 0) {
      const getter = this.getters.shift();
      const key = this.take();
      if (getter && key !== undefined) getter(key);
    }
  }
}
