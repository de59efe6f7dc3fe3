import { afterEach, describe, expect, it, vi } from 'vitest';
import { Backoff, exponentialDelay, jittered, sleep } from '../../../src/controller/backoff.ts';

describe('exponentialDelay', () => {
  it('doubles from the base up to the cap', () => {
    expect([0, 1, 2, 3, 4, 5].map((n) => exponentialDelay(n, 100, 1000))).toEqual([100, 200, 400, 800, 1000, 1000]);
  });

  it('stays finite for huge attempt counts', () => {
    expect(exponentialDelay(10_000, 100, 5000)).toBe(5000);
  });

  it('honours a custom factor', () => {
    expect(exponentialDelay(2, 10, 1e9, 3)).toBe(90);
  });
});

describe('jittered', () => {
  it('spreads within ±fraction', () => {
    expect(jittered(1000, 0.2, () => 0)).toBe(800);
    expect(jittered(1000, 0.2, () => 1)).toBe(1200);
    expect(jittered(1000, 0.2, () => 0.5)).toBe(1000);
  });

  it('returns the delay unchanged without jitter', () => {
    expect(jittered(1000, 0, () => 0)).toBe(1000);
  });
});

describe('Backoff', () => {
  it('grows, caps and resets', () => {
    const b = new Backoff({ baseMs: 500, capMs: 4000, jitter: 0 });
    expect([b.next(), b.next(), b.next(), b.next(), b.next()]).toEqual([500, 1000, 2000, 4000, 4000]);
    expect(b.attempts).toBe(5);
    b.reset();
    expect(b.next()).toBe(500);
  });

  it('applies jitter', () => {
    const b = new Backoff({ baseMs: 1000, capMs: 10_000, jitter: 0.5, random: () => 0 });
    expect(b.next()).toBe(500);
  });
});

describe('sleep', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('resolves after the delay', async () => {
    vi.useFakeTimers();
    let done = false;
    void sleep(1000).then(() => (done = true));
    await vi.advanceTimersByTimeAsync(999);
    expect(done).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(done).toBe(true);
  });

  it('resolves early when aborted, and at once when already aborted', async () => {
    vi.useFakeTimers();
    const ac = new AbortController();
    let done = false;
    void sleep(60_000, ac.signal).then(() => (done = true));
    await vi.advanceTimersByTimeAsync(10);
    expect(done).toBe(false);
    ac.abort();
    await vi.advanceTimersByTimeAsync(0);
    expect(done).toBe(true);
    expect(vi.getTimerCount()).toBe(0);
    await sleep(60_000, ac.signal);
  });
});
