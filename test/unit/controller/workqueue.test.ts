import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ItemExponentialRateLimiter, WorkQueue, type WorkQueueMetrics } from '../../../src/controller/workqueue.ts';

const NOT_YET = Symbol('pending');

/** The promise's value if it has settled by now, NOT_YET otherwise. */
async function peek<T>(p: Promise<T>): Promise<T | typeof NOT_YET> {
  return Promise.race([p, new Promise<typeof NOT_YET>((r) => setImmediate(() => r(NOT_YET)))]);
}

describe('WorkQueue basics', () => {
  it('hands keys out in FIFO order', async () => {
    const q = new WorkQueue();
    q.add('a');
    q.add('b');
    q.add('c');
    expect(await q.get()).toBe('a');
    expect(await q.get()).toBe('b');
    expect(await q.get()).toBe('c');
  });

  it('de-duplicates a key added while queued', async () => {
    const q = new WorkQueue();
    q.add('a');
    q.add('b');
    q.add('a');
    expect(q.len()).toBe(2);
    expect(await q.get()).toBe('a');
    expect(await q.get()).toBe('b');
    expect(q.len()).toBe(0);
  });

  it('a delay past setTimeout\'s limit (2^31-1 ms) waits instead of firing at once', async () => {
    const q = new WorkQueue();
    q.addAfter('far', 2 ** 31 + 60_000);
    await new Promise((r) => setTimeout(r, 30));
    expect(q.len()).toBe(0);
    q.shutDown();
  });

  it('wakes a waiting get() when a key is added', async () => {
    const q = new WorkQueue();
    const p = q.get();
    expect(await peek(p)).toBe(NOT_YET);
    q.add('x');
    expect(await p).toBe('x');
  });

  it('serves several waiting getters, one key each', async () => {
    const q = new WorkQueue();
    const p1 = q.get();
    const p2 = q.get();
    q.add('a');
    q.add('b');
    expect(await p1).toBe('a');
    expect(await p2).toBe('b');
  });
});

describe('WorkQueue processing', () => {
  it('never hands a key being processed to a second worker', async () => {
    const q = new WorkQueue();
    q.add('a');
    expect(await q.get()).toBe('a');
    q.add('a');
    expect(q.len()).toBe(0);
    const second = q.get();
    expect(await peek(second)).toBe(NOT_YET);
    q.done('a');
    expect(await second).toBe('a');
  });

  it('re-queues a key added during processing only once, after done()', async () => {
    const q = new WorkQueue();
    q.add('a');
    await q.get();
    q.add('a');
    q.add('a');
    q.add('b');
    expect(await q.get()).toBe('b');
    q.done('a');
    expect(q.len()).toBe(1);
    expect(await q.get()).toBe('a');
    q.done('a');
    expect(q.len()).toBe(0);
  });

  it('does not re-queue a key that was not added again', async () => {
    const q = new WorkQueue();
    q.add('a');
    await q.get();
    q.done('a');
    expect(q.len()).toBe(0);
    expect(await peek(q.get())).toBe(NOT_YET);
  });

  it('lets other keys proceed while one is processing', async () => {
    const q = new WorkQueue();
    q.add('a');
    q.add('b');
    expect(await q.get()).toBe('a');
    expect(await q.get()).toBe('b');
    expect(q.inFlight()).toBe(2);
    expect(q.isProcessing('a')).toBe(true);
  });

  it('ignores done() for a key it did not hand out', () => {
    const q = new WorkQueue();
    q.add('a');
    q.done('a');
    expect(q.len()).toBe(1);
  });
});

describe('WorkQueue delays', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('adds a key after the delay', () => {
    const q = new WorkQueue();
    q.addAfter('a', 1000);
    expect(q.len()).toBe(0);
    expect(q.delayed()).toBe(1);
    vi.advanceTimersByTime(999);
    expect(q.len()).toBe(0);
    vi.advanceTimersByTime(1);
    expect(q.len()).toBe(1);
    expect(q.delayed()).toBe(0);
  });

  it('adds at once for a zero or negative delay', () => {
    const q = new WorkQueue();
    q.addAfter('a', 0);
    q.addAfter('b', -5);
    expect(q.len()).toBe(2);
  });

  it('keeps the earliest time when a key is delayed twice (earlier second)', () => {
    const q = new WorkQueue();
    q.addAfter('a', 5000);
    q.addAfter('a', 1000);
    vi.advanceTimersByTime(1000);
    expect(q.len()).toBe(1);
    expect(q.delayed()).toBe(0);
  });

  it('keeps the earliest time when a key is delayed twice (later second)', () => {
    const q = new WorkQueue();
    q.addAfter('a', 1000);
    q.addAfter('a', 5000);
    expect(q.delayed()).toBe(1);
    vi.advanceTimersByTime(1000);
    expect(q.len()).toBe(1);
    vi.advanceTimersByTime(10_000);
    expect(q.len()).toBe(1);
  });

  it('de-duplicates a delayed key that fires while it is queued', () => {
    const q = new WorkQueue();
    q.add('a');
    q.addAfter('a', 100);
    vi.advanceTimersByTime(100);
    expect(q.len()).toBe(1);
  });

  it('unrefs its timers so a process can exit', () => {
    vi.useRealTimers();
    const spy = vi.spyOn(globalThis, 'setTimeout');
    const q = new WorkQueue();
    q.addAfter('a', 60_000);
    const timer = spy.mock.results.at(-1)?.value as NodeJS.Timeout;
    spy.mockRestore();
    expect(timer.hasRef()).toBe(false);
    q.shutDown();
  });
});

describe('WorkQueue rate limiting', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('backs off exponentially per key from 100ms', () => {
    const q = new WorkQueue();
    const expected = [100, 200, 400, 800];
    for (const delay of expected) {
      q.addRateLimited('a');
      vi.advanceTimersByTime(delay - 1);
      expect(q.len()).toBe(0);
      vi.advanceTimersByTime(1);
      expect(q.len()).toBe(1);
      // take it out again for the next round
      void q.get();
      q.done('a');
    }
    expect(q.numRequeues('a')).toBe(4);
    expect(q.numRequeues('b')).toBe(0);
  });

  it('forget() resets the backoff', () => {
    const q = new WorkQueue();
    q.addRateLimited('a');
    q.addRateLimited('a');
    q.addRateLimited('a');
    expect(q.numRequeues('a')).toBe(3);
    q.forget('a');
    expect(q.numRequeues('a')).toBe(0);
    vi.advanceTimersByTime(100);
    expect(q.len()).toBe(1);
  });

  it('caps the delay', () => {
    const rl = new ItemExponentialRateLimiter(100, 5 * 60_000);
    const delays = Array.from({ length: 40 }, () => rl.when('k'));
    expect(delays.slice(0, 3)).toEqual([100, 200, 400]);
    expect(Math.max(...delays)).toBe(300_000);
    expect(delays.at(-1)).toBe(300_000);
    expect(delays.every((d) => Number.isFinite(d))).toBe(true);
  });

  it('takes a configurable base and cap', () => {
    const q = new WorkQueue({ baseDelayMs: 10, maxDelayMs: 35 });
    q.addRateLimited('a'); // 10
    vi.advanceTimersByTime(10);
    expect(q.len()).toBe(1);
    const rl = new ItemExponentialRateLimiter(10, 35);
    expect([rl.when('x'), rl.when('x'), rl.when('x'), rl.when('x')]).toEqual([10, 20, 35, 35]);
  });

  it('keeps backoffs of different keys apart', () => {
    const rl = new ItemExponentialRateLimiter();
    rl.when('a');
    rl.when('a');
    expect(rl.when('b')).toBe(100);
    expect(rl.when('a')).toBe(400);
  });
});

describe('WorkQueue shutdown', () => {
  it('returns undefined to waiting and later getters', async () => {
    const q = new WorkQueue();
    const waiting = q.get();
    q.shutDown();
    expect(await waiting).toBeUndefined();
    expect(await q.get()).toBeUndefined();
    expect(q.shuttingDown).toBe(true);
  });

  it('hands out nothing more and accepts no adds after shutdown', async () => {
    const q = new WorkQueue();
    q.add('a');
    q.shutDown();
    q.add('b');
    q.addAfter('c', 10);
    q.addRateLimited('d');
    expect(q.len()).toBe(0);
    expect(q.delayed()).toBe(0);
    expect(await q.get()).toBeUndefined();
  });

  it('drops delayed keys on shutdown', () => {
    vi.useFakeTimers();
    try {
      const q = new WorkQueue();
      q.addAfter('a', 100);
      q.shutDown();
      vi.advanceTimersByTime(1000);
      expect(q.len()).toBe(0);
      expect(vi.getTimerCount()).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });

  it('drain waits for keys in flight', async () => {
    const q = new WorkQueue();
    q.add('a');
    q.add('b');
    await q.get();
    await q.get();
    const drain = q.shutDownWithDrain(10_000);
    expect(await peek(drain)).toBe(NOT_YET);
    q.done('a');
    expect(await peek(drain)).toBe(NOT_YET);
    q.done('b');
    expect(await drain).toBe(true);
  });

  it('drain returns true at once when nothing is in flight', async () => {
    const q = new WorkQueue();
    q.add('a');
    expect(await q.shutDownWithDrain(10)).toBe(true);
  });

  it('drain gives up after the timeout', async () => {
    vi.useFakeTimers();
    try {
      const q = new WorkQueue();
      q.add('a');
      await q.get();
      const drain = q.shutDownWithDrain(500);
      await vi.advanceTimersByTimeAsync(500);
      expect(await drain).toBe(false);
    } finally {
      vi.useRealTimers();
    }
  });

  it('does not re-queue a key re-added during processing once shut down', async () => {
    const q = new WorkQueue();
    q.add('a');
    await q.get();
    q.add('a');
    const drain = q.shutDownWithDrain(1000);
    q.done('a');
    expect(await drain).toBe(true);
    expect(q.len()).toBe(0);
  });
});

describe('WorkQueue metrics', () => {
  it('reports adds, depth, queue and work durations, and retries', async () => {
    vi.useFakeTimers();
    try {
      const calls = { add: 0, retry: 0, depth: [] as number[], queue: [] as number[], work: [] as number[] };
      const metrics: WorkQueueMetrics = {
        add: () => calls.add++,
        retry: () => calls.retry++,
        depth: (d) => calls.depth.push(d),
        queueDuration: (s) => calls.queue.push(s),
        workDuration: (s) => calls.work.push(s),
      };
      const q = new WorkQueue({ metrics });
      q.add('a');
      q.add('a');
      q.add('b');
      vi.advanceTimersByTime(2000);
      expect(await q.get()).toBe('a');
      vi.advanceTimersByTime(500);
      q.done('a');
      q.addRateLimited('a');
      expect(calls.add).toBe(3);
      expect(calls.retry).toBe(1);
      expect(calls.depth).toEqual([1, 2, 1]);
      expect(calls.queue).toEqual([2]);
      expect(calls.work).toEqual([0.5]);
    } finally {
      vi.useRealTimers();
    }
  });
});
