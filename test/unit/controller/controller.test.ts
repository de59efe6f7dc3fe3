import { afterEach, describe, expect, it } from 'vitest';
import { Controller, TerminalError, type ControllerMetrics, type ReconcileContext, type ReconcileFunc } from '../../../src/controller/controller.ts';
import { createLogger } from '../../../src/controller/logger.ts';
import { KubeApiError } from '../../../src/kube/errors.ts';

const controllers: Controller[] = [];
afterEach(async () => {
  await Promise.all(controllers.splice(0).map((c) => c.stop(100)));
});

function make(reconcile: ReconcileFunc, extra: Partial<ConstructorParameters<typeof Controller>[0]> = {}): Controller {
  const c = new Controller({ name: 'test', reconcile, queue: { baseDelayMs: 5, maxDelayMs: 50 }, ...extra });
  controllers.push(c);
  return c;
}

/** Polls until cond() holds (real time, small steps). */
async function until(cond: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 2));
  }
}

const delay = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('Controller', () => {
  it('reconciles enqueued keys with a context', async () => {
    const seen: ReconcileContext[] = [];
    const c = make(async (_key, ctx) => {
      seen.push(ctx);
    });
    c.start();
    c.enqueue('ns/a');
    await until(() => seen.length === 1);
    expect(seen[0]?.key).toBe('ns/a');
    expect(seen[0]?.reconcileId).toMatch(/^[0-9a-f]{8}$/);
    expect(seen[0]?.attempt).toBe(0);
    expect(seen[0]?.signal.aborted).toBe(false);
  });

  it('retries a failing key with backoff, then forgets the failures on success', async () => {
    const attempts: number[] = [];
    const c = make(async (_key, ctx) => {
      attempts.push(ctx.attempt);
      if (attempts.length < 3) throw new Error('transient');
    });
    c.start();
    c.enqueue('k');
    await until(() => attempts.length === 3);
    await until(() => c.queue.numRequeues('k') === 0);
    expect(attempts).toEqual([0, 1, 2]);
  });

  it('does not retry a terminal error', async () => {
    let calls = 0;
    const c = make(async () => {
      calls++;
      throw new TerminalError('bad spec');
    });
    c.start();
    c.enqueue('k');
    await until(() => calls === 1);
    await delay(60);
    expect(calls).toBe(1);
    expect(c.queue.numRequeues('k')).toBe(0);
    expect(c.queue.delayed()).toBe(0);
  });

  it('requeues after the asked delay on success', async () => {
    const times: number[] = [];
    const c = make(async () => {
      times.push(Date.now());
      return times.length === 1 ? { requeueAfterMs: 40 } : undefined;
    });
    c.start();
    c.enqueue('k');
    await until(() => times.length === 2);
    expect((times[1] ?? 0) - (times[0] ?? 0)).toBeGreaterThanOrEqual(35);
    await delay(60);
    expect(times.length).toBe(2);
  });

  it('never reconciles the same key concurrently, even with many workers', async () => {
    let active = 0;
    let maxActive = 0;
    let total = 0;
    const c = make(
      async () => {
        active++;
        maxActive = Math.max(maxActive, active);
        await delay(5);
        active--;
        total++;
      },
      { workers: 4 },
    );
    c.start();
    for (let i = 0; i < 20; i++) {
      c.enqueue('same');
      await delay(1);
    }
    await until(() => c.queue.len() === 0 && c.queue.inFlight() === 0);
    expect(maxActive).toBe(1);
    expect(total).toBeGreaterThanOrEqual(2);
  });

  it('runs different keys in parallel with several workers', async () => {
    let active = 0;
    let maxActive = 0;
    const c = make(
      async () => {
        active++;
        maxActive = Math.max(maxActive, active);
        await delay(20);
        active--;
      },
      { workers: 3 },
    );
    c.start();
    c.enqueue('a');
    c.enqueue('b');
    c.enqueue('c');
    await until(() => maxActive === 3);
    expect(maxActive).toBe(3);
  });

  it('stop() waits for reconciles in flight and takes no more work', async () => {
    let finished = 0;
    let started = 0;
    const c = make(async () => {
      started++;
      await delay(30);
      finished++;
    });
    c.start();
    c.enqueue('a');
    c.enqueue('b');
    await until(() => started === 1);
    expect(await c.stop(1000)).toBe(true);
    expect(finished).toBe(1);
    await delay(50);
    expect(started).toBe(1);
  });

  it('stop() gives up after the drain time and aborts the reconcile signal', async () => {
    let signal: AbortSignal | undefined;
    const c = make(async (_k, ctx) => {
      signal = ctx.signal;
      await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve()));
    });
    c.start();
    c.enqueue('a');
    await until(() => signal !== undefined);
    expect(await c.stop(20)).toBe(false);
    expect(signal?.aborted).toBe(true);
  });

  it('cannot be started again after stop', async () => {
    const c = make(async () => {});
    c.start();
    await c.stop(10);
    expect(() => c.start()).toThrow(/stopped/);
  });

  it('reports outcomes and durations to the metrics hook', async () => {
    const outcomes: string[] = [];
    let errors = 0;
    const metrics: ControllerMetrics = {
      reconciled: (name, outcome, seconds) => {
        expect(name).toBe('test');
        expect(seconds).toBeGreaterThanOrEqual(0);
        outcomes.push(outcome);
      },
      error: () => errors++,
    };
    let n = 0;
    const c = make(
      async () => {
        n++;
        if (n === 1) throw new Error('x');
        if (n === 2) return { requeueAfterMs: 1 };
        if (n === 3) throw new TerminalError('y');
        return undefined;
      },
      { metrics },
    );
    c.start();
    c.enqueue('k');
    await until(() => outcomes.length === 3);
    c.enqueue('k');
    await until(() => outcomes.length === 4);
    expect(outcomes).toEqual(['error', 'requeue', 'terminal', 'success']);
    expect(errors).toBe(2);
  });

  it('logs failures with controller, key and reconcile id, message only', async () => {
    const lines: Record<string, unknown>[] = [];
    const logger = createLogger({ destination: { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) } });
    const c = make(
      async () => {
        throw new TerminalError('it broke');
      },
      { logger },
    );
    c.start();
    c.enqueue('ns/x');
    await until(() => lines.some((l) => l.msg === 'reconcile failed; not retrying'));
    const line = lines.find((l) => l.msg === 'reconcile failed; not retrying');
    expect(line).toMatchObject({ level: 'error', controller: 'test', key: 'ns/x', err: 'it broke' });
    expect(line?.reconcileId).toMatch(/^[0-9a-f]{8}$/);
  });

  it('logs conflicts at info level, other errors at error level', async () => {
    const lines: Record<string, unknown>[] = [];
    const logger = createLogger({ destination: { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) } });
    let n = 0;
    const c = make(
      async () => {
        n++;
        if (n === 1) throw KubeApiError.fromResponse('PUT', '/x', 409, '', JSON.stringify({ kind: 'Status', code: 409, reason: 'Conflict', message: 'modified' }));
        if (n === 2) throw new Error('boom');
      },
      { logger },
    );
    c.start();
    c.enqueue('k');
    await until(() => n === 3);
    const failures = lines.filter((l) => l.msg === 'reconcile failed; will retry');
    expect(failures.map((l) => l.level)).toEqual(['info', 'error']);
  });
});
