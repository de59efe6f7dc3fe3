/**
 * The controller loop: N workers take keys from a WorkQueue and reconcile them. Success forgets the
 * key's backoff (and schedules a requeue if asked); failure requeues with backoff, unless the
 * error is terminal (retrying cannot help; the next change to the object will bring it back).
 */
import { randomBytes } from 'node:crypto';
import { errorMessage, isConflict } from '../kube/errors.ts';
import { silentLogger, type Logger } from './logger.ts';
import { WorkQueue, type WorkQueueOptions } from './workqueue.ts';

export interface ReconcileContext {
  key: string;
  /** Short random id, also on every line of ctx.logger, to follow one reconcile in the logs. */
  reconcileId: string;
  /** Child logger with {controller, key, reconcileId}. */
  logger: Logger;
  /** Aborted when the controller stops and the drain time is over. */
  signal: AbortSignal;
  /** How many times in a row this key has failed before this attempt. */
  attempt: number;
}

export type ReconcileResult = { requeueAfterMs?: number } | void;

export type ReconcileFunc = (key: string, ctx: ReconcileContext) => Promise<ReconcileResult>;

/** An error that retrying will not fix (invalid spec, say): logged, not requeued. */
export class TerminalError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TerminalError';
  }
}

export function isTerminalError(err: unknown): boolean {
  return err instanceof TerminalError || (typeof err === 'object' && err !== null && (err as { terminal?: unknown }).terminal === true);
}

export type ReconcileOutcome = 'success' | 'requeue' | 'error' | 'terminal';

/** Hooks for reconcile metrics (prom-client wiring lives elsewhere). */
export interface ControllerMetrics {
  /** One finished reconcile: how it ended and how long it took. */
  reconciled(controller: string, outcome: ReconcileOutcome, durationSeconds: number): void;
  /** One failed reconcile (outcome error or terminal). */
  error(controller: string): void;
}

export const noopControllerMetrics: ControllerMetrics = {
  reconciled: () => {},
  error: () => {},
};

export interface ControllerOptions {
  name: string;
  reconcile: ReconcileFunc;
  /** Concurrent reconciles (never two for the same key); default 1. */
  workers?: number;
  logger?: Logger;
  /** A queue to use, or options for a new one. */
  queue?: WorkQueue | WorkQueueOptions;
  metrics?: ControllerMetrics;
}

export class Controller {
  readonly name: string;
  readonly queue: WorkQueue;
  private readonly reconcile: ReconcileFunc;
  private readonly workers: number;
  private readonly log: Logger;
  private readonly metrics: ControllerMetrics;
  private readonly abort = new AbortController();
  private workerLoops: Promise<void>[] = [];
  private started = false;

  constructor(opts: ControllerOptions) {
    this.name = opts.name;
    this.reconcile = opts.reconcile;
    this.workers = Math.max(1, opts.workers ?? 1);
    this.log = (opts.logger ?? silentLogger()).child({ controller: opts.name });
    this.metrics = opts.metrics ?? noopControllerMetrics;
    this.queue = opts.queue instanceof WorkQueue ? opts.queue : new WorkQueue(opts.queue);
  }

  enqueue(key: string): void {
    this.queue.add(key);
  }

  enqueueAfter(key: string, ms: number): void {
    this.queue.addAfter(key, ms);
  }

  /** Starts the workers. A controller runs once: after stop() it cannot be started again. */
  start(): void {
    if (this.queue.shuttingDown) throw new Error(`controller ${this.name} was stopped; create a new one`);
    if (this.started) return;
    this.started = true;
    for (let i = 0; i < this.workers; i++) this.workerLoops.push(this.work());
    this.log.info({ workers: this.workers }, 'controller started');
  }

  /**
   * Stops taking work and waits for reconciles in flight, at most drainTimeoutMs; then aborts
   * their signal. Returns true if everything in flight finished in time.
   */
  async stop(drainTimeoutMs = 30_000): Promise<boolean> {
    const drained = await this.queue.shutDownWithDrain(drainTimeoutMs);
    if (drained) {
      await Promise.all(this.workerLoops);
    } else {
      this.log.warn({ inFlight: this.queue.inFlight(), drainTimeoutMs }, 'reconciles still running at the end of the drain; aborting them');
    }
    this.abort.abort(new Error(`controller ${this.name} stopped`));
    this.log.info({ drained }, 'controller stopped');
    return drained;
  }

  private async work(): Promise<void> {
    for (;;) {
      const key = await this.queue.get();
      if (key === undefined) return;
      try {
        await this.process(key);
      } finally {
        this.queue.done(key);
      }
    }
  }

  /** Reconciles one key; never throws. */
  private async process(key: string): Promise<void> {
    const reconcileId = randomBytes(4).toString('hex');
    const logger = this.log.child({ key, reconcileId });
    const attempt = this.queue.numRequeues(key);
    const started = performance.now();
    let outcome: ReconcileOutcome;
    try {
      const result = await this.reconcile(key, { key, reconcileId, logger, signal: this.abort.signal, attempt });
      this.queue.forget(key);
      if (result && result.requeueAfterMs !== undefined) {
        this.queue.addAfter(key, result.requeueAfterMs);
        outcome = 'requeue';
      } else {
        outcome = 'success';
      }
    } catch (err) {
      if (isTerminalError(err)) {
        this.queue.forget(key);
        outcome = 'terminal';
        logger.error({ err: errorMessage(err) }, 'reconcile failed; not retrying');
      } else {
        this.queue.addRateLimited(key);
        outcome = 'error';
        // A conflict is routine (a stale cache): worth a line, not an alarm.
        const level = isConflict(err) ? 'info' : 'error';
        logger[level]({ err: errorMessage(err), failures: this.queue.numRequeues(key) }, 'reconcile failed; will retry');
      }
      this.metrics.error(this.name);
    }
    const seconds = (performance.now() - started) / 1000;
    this.metrics.reconciled(this.name, outcome, seconds);
    logger.debug({ outcome, durationMs: Math.round(seconds * 1000) }, 'reconciled');
  }
}
