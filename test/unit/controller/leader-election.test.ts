import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  acquireWait,
  decide,
  desiredRecord,
  isExpired,
  LeaderElector,
  microTime,
  runLeaderElected,
  observe,
  releasedRecord,
  timingError,
  type Lease,
  type LeaseClient,
  type LeaseRecord,
  type Observation,
  type Stoppable,
} from '../../../src/controller/leader-election.ts';
import { silentLogger } from '../../../src/controller/logger.ts';
import { KubeApiError } from '../../../src/kube/errors.ts';
import type { KubeObject } from '../../../src/kube/resources.ts';

const lease = (spec: LeaseRecord, resourceVersion = '1'): Lease => ({ metadata: { name: 'l', namespace: 'ns', resourceVersion }, spec });

describe('timingError', () => {
  it('accepts the client-go defaults and short legal settings', () => {
    expect(timingError({ leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 })).toBeUndefined();
    expect(timingError({ leaseDurationMs: 3_000, renewDeadlineMs: 2_000, retryPeriodMs: 500 })).toBeUndefined();
  });

  it('names the setting that is wrong, in one line', () => {
    expect(timingError({ leaseDurationMs: 15_000, renewDeadlineMs: 15_000, retryPeriodMs: 2_000 })).toBe('--renew-deadline=15s: must be shorter than --lease-duration=15s');
    expect(timingError({ leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 10_000 })).toBe('--retry-period=10s: must be shorter than --renew-deadline=10s');
    expect(timingError({ leaseDurationMs: 1_500, renewDeadlineMs: 1_000, retryPeriodMs: 200 })).toMatch(/^--lease-duration=1500ms: must be whole seconds/);
    expect(timingError({ leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 0 })).toMatch(/^--retry-period=0s/);
  });
});

describe('observe and expiry: the local observation time decides, not the holder clock', () => {
  it('keeps observedAt while the record stays the same, even though its renewTime claims to be recent', () => {
    const record = desiredRecord(undefined, 'a', 15, new Date('2030-01-01T00:00:00Z')); // a holder whose clock runs years ahead
    let obs = observe(undefined, lease(record, '5'), 1_000);
    expect(obs.observedAt).toBe(1_000);
    obs = observe(obs, lease(record, '5'), 10_000);
    expect(obs.observedAt).toBe(1_000);
    expect(isExpired(obs, 15_999)).toBe(false);
    expect(isExpired(obs, 16_000)).toBe(true);
  });

  it('moves observedAt when the record changes, even to a renewTime in the past (a holder whose clock lags)', () => {
    const first = desiredRecord(undefined, 'a', 15, new Date('2001-01-01T00:00:00Z'));
    let obs = observe(undefined, lease(first, '5'), 1_000);
    const renewed = desiredRecord(first, 'a', 15, new Date('2001-01-01T00:00:02Z'));
    obs = observe(obs, lease(renewed, '6'), 14_000);
    expect(obs.observedAt).toBe(14_000);
    expect(isExpired(obs, 20_000)).toBe(false);
    expect(obs.resourceVersion).toBe('6');
  });

  it('ignores a change of resourceVersion alone (a label edit is no renewal)', () => {
    const record = desiredRecord(undefined, 'a', 15, new Date());
    let obs = observe(undefined, lease(record, '5'), 1_000);
    obs = observe(obs, lease({ ...record }, '9'), 9_000);
    expect(obs.observedAt).toBe(1_000);
    expect(obs.resourceVersion).toBe('9');
  });

  it('uses the leaseDurationSeconds of the record, so a released lease (1s) expires fast', () => {
    const released = releasedRecord(desiredRecord(undefined, 'a', 15, new Date()), new Date());
    const obs = observe(undefined, lease(released), 0);
    expect(isExpired(obs, 999)).toBe(false);
    expect(isExpired(obs, 1_000)).toBe(true);
  });
});

describe('decide', () => {
  const at = (holder: string, observedAt = 0, seconds = 15): Observation => ({ record: { holderIdentity: holder, leaseDurationSeconds: seconds }, resourceVersion: '1', observedAt });

  it('renews its own lease, waits for a valid one of another, takes a free or expired one', () => {
    expect(decide(at('me'), 'me', 1_000, true)).toBe('renew');
    expect(decide(at('me'), 'me', 1_000, false)).toBe('renew'); // same identity after a restart: still ours
    expect(decide(at('other'), 'me', 14_999, false)).toBe('wait');
    expect(decide(at('other'), 'me', 15_000, false)).toBe('acquire');
    expect(decide(at(''), 'me', 1, false)).toBe('acquire');
    expect(decide({ record: {}, resourceVersion: '1', observedAt: 0 }, 'me', 1, false)).toBe('acquire');
  });

  it('a leader that reads another holder has lost, expired or not', () => {
    expect(decide(at('other'), 'me', 1, true)).toBe('lost');
    expect(decide(at(''), 'me', 1, true)).toBe('lost');
  });
});

describe('records', () => {
  const t0 = new Date('2025-03-04T05:06:07.089Z');
  const t1 = new Date('2025-03-04T05:06:09.000Z');

  it('writes MicroTime with microseconds', () => {
    expect(microTime(t0)).toBe('2025-03-04T05:06:07.089000Z');
  });

  it('creates with 0 transitions, renews keeping acquireTime, counts a takeover', () => {
    const created = desiredRecord(undefined, 'a', 15, t0);
    expect(created).toEqual({ holderIdentity: 'a', leaseDurationSeconds: 15, acquireTime: microTime(t0), renewTime: microTime(t0), leaseTransitions: 0 });
    const renewed = desiredRecord(created, 'a', 15, t1);
    expect(renewed).toMatchObject({ acquireTime: microTime(t0), renewTime: microTime(t1), leaseTransitions: 0 });
    const taken = desiredRecord(renewed, 'b', 15, t1);
    expect(taken).toMatchObject({ holderIdentity: 'b', acquireTime: microTime(t1), leaseTransitions: 1 });
    const released = releasedRecord(taken, t1);
    expect(released).toMatchObject({ holderIdentity: '', leaseDurationSeconds: 1, leaseTransitions: 1 });
    expect(desiredRecord(released, 'a', 15, t1).leaseTransitions).toBe(2);
  });

  it('waits retryPeriod to 2.2 × retryPeriod between acquire attempts', () => {
    expect(acquireWait(2_000, 0)).toBe(2_000);
    expect(acquireWait(2_000, 0.999999)).toBe(4_400);
  });
});

// ---------------------------------------------------------------------------------------------
// The elector against an in-memory Lease API, on fake timers
// ---------------------------------------------------------------------------------------------

class FakeLeaseApi {
  lease: Lease | undefined;
  private rv = 0;
  /** Identities whose requests fail as if the network were down. */
  readonly partitioned = new Set<string>();
  writes: { by: string; spec: LeaseRecord }[] = [];
  /** How long a GET of this identity takes (fake timers). */
  readonly getDelayMs = new Map<string, number>();
  /** Runs once, just before the next replace is applied: another writer slipping in between. */
  beforeNextReplace: (() => void) | undefined;
  conflicts = 0;

  clientFor(id: string): LeaseClient {
    const fail = () => {
      if (this.partitioned.has(id)) throw new KubeApiError({ statusCode: 0, reason: 'NetworkError', message: 'ECONNREFUSED', method: 'GET', path: '/lease' });
    };
    return {
      get: async <T extends KubeObject>() => {
        await Promise.resolve();
        const delay = this.getDelayMs.get(id);
        if (delay) await new Promise((resolve) => setTimeout(resolve, delay));
        fail();
        if (!this.lease) throw new KubeApiError({ statusCode: 404, reason: 'NotFound', message: 'not found', method: 'GET', path: '/lease' });
        return structuredClone(this.lease) as T;
      },
      create: async <T extends KubeObject>(_t: unknown, _ns: unknown, body: T) => {
        await Promise.resolve();
        fail();
        if (this.lease) throw new KubeApiError({ statusCode: 409, reason: 'AlreadyExists', message: 'exists', method: 'POST', path: '/lease' });
        this.lease = { ...(structuredClone(body) as Lease), metadata: { ...body.metadata, resourceVersion: String(++this.rv) } };
        this.writes.push({ by: id, spec: structuredClone(this.lease.spec ?? {}) });
        return structuredClone(this.lease) as T;
      },
      replace: async <T extends KubeObject>(_t: unknown, _ns: unknown, _name: string, body: T) => {
        await Promise.resolve();
        fail();
        if (!this.lease) throw new KubeApiError({ statusCode: 404, reason: 'NotFound', message: 'not found', method: 'PUT', path: '/lease' });
        const slipIn = this.beforeNextReplace;
        this.beforeNextReplace = undefined;
        slipIn?.();
        if (body.metadata?.resourceVersion !== this.lease.metadata?.resourceVersion) {
          this.conflicts++;
          throw new KubeApiError({ statusCode: 409, reason: 'Conflict', message: 'the object has been modified', method: 'PUT', path: '/lease' });
        }
        this.lease = { ...(structuredClone(body) as Lease), metadata: { ...body.metadata, resourceVersion: String(++this.rv) } };
        this.writes.push({ by: id, spec: structuredClone(this.lease.spec ?? {}) });
        return structuredClone(this.lease) as T;
      },
    };
  }

  /** Another writer (a replica this test does not run) sets the holder. */
  overwrite(spec: LeaseRecord): void {
    this.lease = { ...(this.lease as Lease), spec, metadata: { ...this.lease?.metadata, resourceVersion: String(++this.rv) } };
  }
}

interface Replica {
  elector: LeaderElector;
  events: string[];
  outcome: Promise<'lost' | 'stopped'>;
}

const TIMINGS = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 };

function replica(api: FakeLeaseApi, id: string): Replica {
  const events: string[] = [];
  const elector = new LeaderElector({
    ...TIMINGS,
    client: api.clientFor(id),
    namespace: 'ns',
    name: 'l',
    identity: id,
    now: () => Date.now(),
    random: () => 0.5, // acquire attempts every 3.2s
    onStartedLeading: () => events.push(`started@${Date.now()}`),
    onStoppedLeading: ({ lost }) => events.push(`${lost ? 'lost' : 'released'}@${Date.now()}`),
  });
  return { elector, events, outcome: elector.run() };
}

describe('LeaderElector', () => {
  let api: FakeLeaseApi;
  const running: Replica[] = [];
  beforeEach(() => {
    vi.useFakeTimers({ now: 0 });
    api = new FakeLeaseApi();
  });
  afterEach(async () => {
    for (const r of running.splice(0)) {
      const stopped = r.elector.stop({ release: false });
      await vi.runOnlyPendingTimersAsync();
      await stopped;
    }
    vi.useRealTimers();
  });
  const start = (id: string) => {
    const r = replica(api, id);
    running.push(r);
    return r;
  };

  it('creates the lease when absent and renews it every retry period', async () => {
    const a = start('a');
    await vi.advanceTimersByTimeAsync(0);
    expect(a.elector.isLeader()).toBe(true);
    expect(a.events).toEqual(['started@0']);
    expect(api.lease?.spec).toMatchObject({ holderIdentity: 'a', leaseDurationSeconds: 15, leaseTransitions: 0 });
    await vi.advanceTimersByTimeAsync(10_000);
    expect(api.writes.filter((w) => w.by === 'a')).toHaveLength(6); // create + 5 renewals
  });

  it('a standby takes over a dead leader only once the lease has expired by its own observation', async () => {
    const a = start('a');
    await vi.advanceTimersByTimeAsync(0);
    const b = start('b');
    await vi.advanceTimersByTimeAsync(5_000);
    expect(b.elector.isLeader()).toBe(false);
    // a dies (its requests fail from now on): the record stops changing at its last renewal, 4s.
    api.partitioned.add('a');
    const lastRenewal = 4_000;
    await vi.advanceTimersByTimeAsync(lastRenewal + 15_000 - 5_000 - 1);
    expect(b.elector.isLeader()).toBe(false);
    // b saw that last renewal on its next look (at most 3.2s later) and takes over at most one look
    // after that observation has aged 15s.
    await vi.advanceTimersByTimeAsync(2 * 3_200);
    expect(b.elector.isLeader()).toBe(true);
    expect(api.lease?.spec).toMatchObject({ holderIdentity: 'b', leaseTransitions: 1 });
    // a gave up when its renew deadline passed, before b could take over.
    const lost = a.events.find((e) => e.startsWith('lost@'));
    expect(lost).toBeDefined();
    expect(Number(lost?.slice('lost@'.length))).toBeLessThanOrEqual(lastRenewal + 10_000);
    const started = b.events.find((e) => e.startsWith('started@'));
    expect(Number(started?.slice('started@'.length))).toBeGreaterThan(Number(lost?.slice('lost@'.length)));
    expect(await a.outcome).toBe('lost');
  });

  it('does not take a lease whose holder renews, however old its renewTime looks', async () => {
    const b = start('b');
    // Another replica holds it with a renewTime of 1970 and keeps renewing (the record changes).
    api.overwrite({ holderIdentity: 'x', leaseDurationSeconds: 15, renewTime: microTime(new Date(0)), acquireTime: microTime(new Date(0)), leaseTransitions: 3 });
    for (let i = 1; i <= 20; i++) {
      await vi.advanceTimersByTimeAsync(2_000);
      api.overwrite({ ...api.lease?.spec, renewTime: microTime(new Date(i)) });
    }
    expect(b.elector.isLeader()).toBe(false);
    // It stops renewing: 15s later by b's clock the lease is b's.
    await vi.advanceTimersByTimeAsync(15_000 + 3_200);
    expect(b.elector.isLeader()).toBe(true);
    expect(api.lease?.spec).toMatchObject({ holderIdentity: 'b', leaseTransitions: 4 });
  });

  it('a leader that reads another holder stops at once, not after the renew deadline', async () => {
    const a = start('a');
    await vi.advanceTimersByTimeAsync(0);
    api.overwrite({ holderIdentity: 'intruder', leaseDurationSeconds: 15, leaseTransitions: 1 });
    await vi.advanceTimersByTimeAsync(2_000);
    expect(a.elector.isLeader()).toBe(false);
    expect(a.events).toEqual(['started@0', 'lost@2000']);
    expect(await a.outcome).toBe('lost');
  });

  it('a leader whose renewal gets a 409 reads again at once and stops on finding another holder', async () => {
    const a = start('a');
    await vi.advanceTimersByTimeAsync(0);
    // Between a's GET and its PUT at 2s, another replica takes the lease.
    api.beforeNextReplace = () => api.overwrite({ holderIdentity: 'intruder', leaseDurationSeconds: 15, leaseTransitions: 1 });
    await vi.advanceTimersByTimeAsync(2_000);
    expect(api.conflicts).toBe(1);
    // Not a retry period later (4s), and not after the renew deadline: the 409 made it look again now.
    expect(a.events).toEqual(['started@0', 'lost@2000']);
    expect(await a.outcome).toBe('lost');
    expect(api.lease?.spec?.holderIdentity).toBe('intruder');
  });

  it('a standby whose acquiring write gets a 409 does not lead, and waits out the winner', async () => {
    api.overwrite({ holderIdentity: 'old', leaseDurationSeconds: 15, leaseTransitions: 0 });
    const b = start('b');
    await vi.advanceTimersByTimeAsync(0);
    // At b's first look after expiry, a third replica acquires between b's GET and b's PUT.
    let raced = false;
    for (let t = 0; t < 30_000 && !raced; t += 100) {
      await vi.advanceTimersByTimeAsync(100);
      if (t >= 14_000 && api.beforeNextReplace === undefined && api.conflicts === 0) {
        api.beforeNextReplace = () => {
          raced = true;
          api.overwrite({ holderIdentity: 'c', leaseDurationSeconds: 15, leaseTransitions: 1 });
        };
      }
    }
    expect(raced).toBe(true);
    expect(api.conflicts).toBe(1);
    expect(b.elector.isLeader()).toBe(false);
    expect(api.lease?.spec?.holderIdentity).toBe('c');
    // c never renews: b takes over once c's record has aged a full lease by b's observation.
    await vi.advanceTimersByTimeAsync(15_000 + 2 * 3_200);
    expect(b.elector.isLeader()).toBe(true);
  });

  it('dates an observation when the GET answers, not when it was sent: a slow GET does not shorten the lease', async () => {
    api.overwrite({ holderIdentity: 'x', leaseDurationSeconds: 15, leaseTransitions: 0 });
    api.getDelayMs.set('b', 3_000);
    const b = new LeaderElector({ ...TIMINGS, client: api.clientFor('b'), namespace: 'ns', name: 'l', identity: 'b', now: () => Date.now(), random: () => 0 });
    running.push({ elector: b, events: [], outcome: b.run() });
    // Looks start at 0, 5s, 10s, 15s, 20s (2s wait + 3s GET) and each answer comes 3s later. The
    // record was first seen at 3s, so it expires at 18s: the look sent at 15s must still wait.
    await vi.advanceTimersByTimeAsync(19_000);
    expect(b.isLeader()).toBe(false);
    await vi.advanceTimersByTimeAsync(5_000);
    expect(b.isLeader()).toBe(true);
  });

  it('keeps leading through failed renewals shorter than the renew deadline', async () => {
    const a = start('a');
    await vi.advanceTimersByTimeAsync(0);
    api.partitioned.add('a');
    await vi.advanceTimersByTimeAsync(6_000); // renewals at 2s, 4s and 6s fail; 8s is within the 10s deadline
    api.partitioned.delete('a');
    await vi.advanceTimersByTimeAsync(20_000);
    expect(a.elector.isLeader()).toBe(true);
    expect(a.events).toEqual(['started@0']);
  });

  it('stop() releases the lease, and the standby takes over on its next attempt', async () => {
    const a = start('a');
    await vi.advanceTimersByTimeAsync(0);
    const b = start('b');
    await vi.advanceTimersByTimeAsync(1_000);
    const stopped = a.elector.stop();
    await vi.advanceTimersByTimeAsync(0);
    await stopped;
    expect(a.events).toEqual(['started@0', 'released@1000']);
    expect(api.lease?.spec).toMatchObject({ holderIdentity: '', leaseDurationSeconds: 1 });
    await vi.advanceTimersByTimeAsync(3_200);
    expect(b.elector.isLeader()).toBe(true);
    expect(Number(b.events[0]?.slice('started@'.length))).toBeLessThanOrEqual(1_000 + 3_200);
  });

  it('two replicas starting together: exactly one leads', async () => {
    const a = start('a');
    const b = start('b');
    await vi.advanceTimersByTimeAsync(30_000);
    expect([a.elector.isLeader(), b.elector.isLeader()].filter(Boolean)).toHaveLength(1);
  });
});

describe('runLeaderElected', () => {
  beforeEach(() => vi.useFakeTimers({ now: 0 }));
  afterEach(() => vi.useRealTimers());

  const elector = (api: FakeLeaseApi, id: string) => ({ ...TIMINGS, client: api.clientFor(id), namespace: 'ns', name: 'l', identity: id, now: () => Date.now(), random: () => 0 });

  it('starts the work only when leading; stop() stops it within the bound, then releases the lease', async () => {
    const api = new FakeLeaseApi();
    const log: string[] = [];
    api.overwrite({ holderIdentity: 'other', leaseDurationSeconds: 15 });
    const run = runLeaderElected({
      elector: elector(api, 'me'),
      logger: silentLogger(),
      start: async () => {
        log.push(`start@${Date.now()}`);
        return {
          stop: async (ms?: number) => {
            log.push(`stop(${ms})@${Date.now()}`);
            return true;
          },
        };
      },
      onLeadingChange: (leading) => log.push(`leading=${leading}`),
      exit: (code) => log.push(`exit(${code})`),
    });
    await vi.advanceTimersByTimeAsync(10_000);
    expect(log).toEqual([]); // "other" holds a valid lease
    await vi.advanceTimersByTimeAsync(8_000); // 15s after it was seen, it expired
    expect(log).toEqual(['leading=true', expect.stringMatching(/^start@/)]);
    expect(run.current()).toBeDefined();
    const stopped = run.stop(10_000);
    await vi.advanceTimersByTimeAsync(0);
    await stopped;
    expect(log.slice(2)).toEqual([expect.stringMatching(/^stop\(10000\)@/), 'leading=false']);
    expect(api.lease?.spec?.holderIdentity).toBe('');
  });

  it('exits non-zero at once when leadership is lost', async () => {
    const api = new FakeLeaseApi();
    const exits: number[] = [];
    let stoppedWork = false;
    runLeaderElected({
      elector: elector(api, 'me'),
      logger: silentLogger(),
      start: async () => ({
        stop: async () => {
          stoppedWork = true;
          return true;
        },
      }),
      exit: (code) => exits.push(code),
    });
    await vi.advanceTimersByTimeAsync(0);
    api.overwrite({ holderIdentity: 'usurper', leaseDurationSeconds: 15 });
    await vi.advanceTimersByTimeAsync(2_000);
    expect(exits).toEqual([1]);
    expect(stoppedWork).toBe(false); // no drain: the process ends now
  });

  /** Leading at once; the work takes startMs to start, and records the drain bound of each stop(). */
  function slowStart(startMs: number) {
    const api = new FakeLeaseApi();
    const stops: number[] = [];
    const work: Stoppable = {
      stop: async (ms?: number) => {
        stops.push(ms ?? -1);
        return true;
      },
    };
    const run = runLeaderElected({
      elector: elector(api, 'me'),
      logger: silentLogger(),
      start: () => new Promise<Stoppable>((resolve) => setTimeout(() => resolve(work), startMs)),
      exit: () => undefined,
    });
    return { api, stops, run };
  }

  it('leaves the lease to expire, not released, when the work is still running at the end of the drain', async () => {
    const api = new FakeLeaseApi();
    const run = runLeaderElected({
      elector: elector(api, 'me'),
      logger: silentLogger(),
      start: async () => ({ stop: async () => false }), // a reconcile outlived the drain
      exit: () => undefined,
    });
    await vi.advanceTimersByTimeAsync(0);
    expect(api.lease?.spec?.holderIdentity).toBe('me');
    const stopped = run.stop(1_000);
    await vi.advanceTimersByTimeAsync(0);
    expect(await stopped).toBe(false);
    expect(api.lease?.spec).toMatchObject({ holderIdentity: 'me', leaseDurationSeconds: 15 });
  });

  it('does not release while the work is still starting at the end of the bound, and stops it once it has started', async () => {
    const { api, stops, run } = slowStart(5_000);
    await vi.advanceTimersByTimeAsync(0);
    const stopped = run.stop(1_000);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(await stopped).toBe(false);
    expect(api.lease?.spec?.holderIdentity).toBe('me');
    await vi.advanceTimersByTimeAsync(4_000);
    expect(stops).toEqual([0]);
  });

  it('drains work that finishes starting within the bound with the time left, not at once', async () => {
    const { api, stops, run } = slowStart(3_000);
    await vi.advanceTimersByTimeAsync(0);
    const stopped = run.stop(10_000);
    await vi.advanceTimersByTimeAsync(3_000);
    expect(await stopped).toBe(true);
    // One stop, with the 7s left of the bound: the reconciles in flight get their drain.
    expect(stops).toEqual([7_000]);
    expect(api.lease?.spec?.holderIdentity).toBe('');
  });
});
