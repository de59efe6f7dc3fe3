/**
 * Leader election on a coordination.k8s.io/v1 Lease, with client-go's semantics.
 *
 * - A replica trusts its OWN clock only: it records when it observed the lease record change
 *   (observedAt, on the local monotonic clock) and judges the lease expired once
 *   observedAt + leaseDurationSeconds has passed without the record changing. The holder's
 *   renewTime is written for humans and never compared across machines, so clock skew between
 *   nodes does not matter, only clock rate.
 * - Acquire: create the Lease if absent; take it when its holder is empty or it expired; retried
 *   every retryPeriod (with client-go's jitter, up to +120%).
 * - Renew: every retryPeriod, a read and a write with the resourceVersion read (optimistic
 *   concurrency: a 409 means another replica wrote the lease first). A leader that sees another
 *   holder in the record has lost at once; one that cannot renew for renewDeadline has lost too
 *   (renewDeadline < leaseDuration, so it gives up before any other replica may take over).
 * - release(): holderIdentity "" and leaseDurationSeconds 1, so a standby takes over on its next
 *   retry instead of waiting out the lease.
 *
 * The pure decisions (observe, decide, desiredRecord, releasedRecord, timingError) are exported
 * for unit tests; LeaderElector runs the loops, and runLeaderElected puts a component under it.
 */
import { randomBytes } from 'node:crypto';
import type { RequestOptions } from '../kube/client.ts';
import { errorMessage, isAlreadyExists, isConflict, isNotFound } from '../kube/errors.ts';
import { LEASES, type KubeObject } from '../kube/resources.ts';
import { silentLogger, type Logger } from './logger.ts';

/** coordination.k8s.io/v1 LeaseSpec. */
export interface LeaseRecord {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
}

export interface Lease extends KubeObject {
  spec?: LeaseRecord;
}

export interface LeaderElectionTimings {
  /** How long a lease stays valid after a replica observed its last change; default 15s. */
  leaseDurationMs: number;
  /** How long the leader keeps trying to renew before it gives up leadership; default 10s. */
  renewDeadlineMs: number;
  /** Interval between attempts to acquire or renew; default 2s. */
  retryPeriodMs: number;
}

export const DEFAULT_TIMINGS: Readonly<LeaderElectionTimings> = Object.freeze({ leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 });

/** client-go's wait.JitterUntil factor for the acquire loop: a wait of retryPeriod to 2.2 × retryPeriod. */
export const ACQUIRE_JITTER = 1.2;

/** The wait between two attempts to acquire, for a random number in [0, 1): client-go's JitterUntil. */
export function acquireWait(retryPeriodMs: number, random: number): number {
  return Math.round(retryPeriodMs * (1 + ACQUIRE_JITTER * random));
}

/** "15s", "1500ms": for messages. */
export function formatMs(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

export interface TimingNames {
  leaseDuration: string;
  renewDeadline: string;
  retryPeriod: string;
}

const FLAG_NAMES: TimingNames = { leaseDuration: '--lease-duration', renewDeadline: '--renew-deadline', retryPeriod: '--retry-period' };

/** Why these timings cannot work, or undefined. Names the settings by their flags unless told otherwise. */
export function timingError(t: LeaderElectionTimings, names: TimingNames = FLAG_NAMES): string | undefined {
  const lease = `${names.leaseDuration}=${formatMs(t.leaseDurationMs)}`;
  const renew = `${names.renewDeadline}=${formatMs(t.renewDeadlineMs)}`;
  const retry = `${names.retryPeriod}=${formatMs(t.retryPeriodMs)}`;
  if (!(t.leaseDurationMs >= 1000) || t.leaseDurationMs % 1000 !== 0) return `${lease}: must be whole seconds, at least 1s`;
  if (!(t.renewDeadlineMs > 0)) return `${renew}: must be more than 0`;
  if (!(t.retryPeriodMs > 0)) return `${retry}: must be more than 0`;
  if (!(t.renewDeadlineMs < t.leaseDurationMs)) return `${renew}: must be shorter than ${lease}`;
  if (!(t.retryPeriodMs < t.renewDeadlineMs)) return `${retry}: must be shorter than ${renew}`;
  return undefined;
}

/** What this replica knows of the lease: the record last read, and when (local monotonic ms) it last changed. */
export interface Observation {
  record: LeaseRecord;
  resourceVersion: string | undefined;
  observedAt: number;
}

function sameRecord(a: LeaseRecord, b: LeaseRecord): boolean {
  return (
    (a.holderIdentity ?? '') === (b.holderIdentity ?? '') &&
    (a.leaseDurationSeconds ?? 0) === (b.leaseDurationSeconds ?? 0) &&
    (a.acquireTime ?? '') === (b.acquireTime ?? '') &&
    (a.renewTime ?? '') === (b.renewTime ?? '') &&
    (a.leaseTransitions ?? 0) === (b.leaseTransitions ?? 0)
  );
}

/**
 * The observation after reading `lease` at local time `now`: observedAt moves only when the record
 * changed. A record that stays the same (a dead holder) therefore expires, whatever its renewTime says.
 */
export function observe(previous: Observation | undefined, lease: Lease, now: number): Observation {
  const record = { ...(lease.spec ?? {}) };
  const resourceVersion = lease.metadata?.resourceVersion;
  if (previous !== undefined && sameRecord(previous.record, record)) return { record, resourceVersion, observedAt: previous.observedAt };
  return { record, resourceVersion, observedAt: now };
}

/** True once leaseDurationSeconds have passed since this replica saw the record change. */
export function isExpired(obs: Observation, now: number): boolean {
  return obs.observedAt + (obs.record.leaseDurationSeconds ?? 0) * 1000 <= now;
}

export type Decision =
  /** The lease is ours: write a renewal. */
  | 'renew'
  /** Free (no holder) or expired: try to take it. */
  | 'acquire'
  /** Another replica holds a valid lease: wait. */
  | 'wait'
  /** We were leading and the record names someone else: leadership is gone, now. */
  | 'lost';

export function decide(obs: Observation, identity: string, now: number, leading: boolean): Decision {
  const holder = obs.record.holderIdentity ?? '';
  if (holder === identity) return 'renew';
  if (leading) return 'lost';
  if (holder === '' || isExpired(obs, now)) return 'acquire';
  return 'wait';
}

/** Kubernetes MicroTime: RFC 3339 with microseconds. */
export function microTime(date: Date): string {
  return date.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

/** The record to write to hold the lease: a renewal keeps acquireTime and transitions, a takeover counts one more. */
export function desiredRecord(old: LeaseRecord | undefined, identity: string, leaseDurationSeconds: number, wallNow: Date): LeaseRecord {
  const now = microTime(wallNow);
  const mine = old !== undefined && old.holderIdentity === identity;
  return {
    holderIdentity: identity,
    leaseDurationSeconds,
    acquireTime: mine ? (old.acquireTime ?? now) : now,
    renewTime: now,
    leaseTransitions: old === undefined ? 0 : mine ? (old.leaseTransitions ?? 0) : (old.leaseTransitions ?? 0) + 1,
  };
}

/** The record a leader writes when it steps down: nobody holds it, and it is as good as expired. */
export function releasedRecord(old: LeaseRecord, wallNow: Date): LeaseRecord {
  const now = microTime(wallNow);
  return { holderIdentity: '', leaseDurationSeconds: 1, acquireTime: now, renewTime: now, leaseTransitions: old.leaseTransitions ?? 0 };
}

/** The part of KubeClient the elector needs. */
export interface LeaseClient {
  get<T extends KubeObject>(type: typeof LEASES, namespace: string | undefined, name: string, opts?: RequestOptions): Promise<T>;
  create<T extends KubeObject>(type: typeof LEASES, namespace: string | undefined, body: T, opts?: RequestOptions): Promise<T>;
  replace<T extends KubeObject>(type: typeof LEASES, namespace: string | undefined, name: string, body: T, opts?: RequestOptions): Promise<T>;
}

export interface LeaderElectorOptions extends Partial<LeaderElectionTimings> {
  client: LeaseClient;
  namespace: string;
  /** The Lease's name. */
  name: string;
  /** Unique per process: two replicas with one identity would both believe they lead. */
  identity: string;
  logger?: Logger;
  /** Called when this replica becomes the leader. */
  onStartedLeading?: () => void;
  /**
   * Called when leadership ends: `lost` true when it was lost (renew deadline passed, or another
   * replica holds the lease), false after stop() released it.
   */
  onStoppedLeading?: (info: { lost: boolean }) => void;
  /** Called whenever the observed holder changes (including to ""). */
  onNewLeader?: (identity: string) => void;
  /** Local monotonic clock in ms; default performance.now(). */
  now?: () => number;
  /** Wall clock for the record's acquireTime/renewTime; default new Date(). */
  wallClock?: () => Date;
  random?: () => number;
}

type Attempt = 'ok' | 'wait' | 'lost' | 'conflict' | 'failed';

export class LeaderElector {
  readonly identity: string;
  readonly timings: LeaderElectionTimings;
  private readonly opts: LeaderElectorOptions;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly wallClock: () => Date;
  private readonly stopping = new AbortController();
  private observation: Observation | undefined;
  private leading = false;
  private running: Promise<'lost' | 'stopped'> | undefined;
  private lastHolder: string | undefined;
  private acquiredWhileStopping = false;

  constructor(opts: LeaderElectorOptions) {
    this.opts = opts;
    this.identity = opts.identity;
    this.timings = {
      leaseDurationMs: opts.leaseDurationMs ?? DEFAULT_TIMINGS.leaseDurationMs,
      renewDeadlineMs: opts.renewDeadlineMs ?? DEFAULT_TIMINGS.renewDeadlineMs,
      retryPeriodMs: opts.retryPeriodMs ?? DEFAULT_TIMINGS.retryPeriodMs,
    };
    const problem = timingError(this.timings);
    if (problem !== undefined) throw new Error(`leader election: ${problem}`);
    if (opts.identity === '') throw new Error('leader election: the identity must not be empty');
    this.log = (opts.logger ?? silentLogger()).child({ component: 'leader-election', lease: `${opts.namespace}/${opts.name}`, identity: opts.identity });
    this.now = opts.now ?? (() => performance.now());
    this.wallClock = opts.wallClock ?? (() => new Date());
  }

  isLeader(): boolean {
    return this.leading;
  }

  /** The holder this replica last observed ("" for none), or undefined before the first read. */
  observedLeader(): string | undefined {
    return this.observation?.record.holderIdentity;
  }

  /**
   * Acquires, then renews until leadership is lost ('lost', after onStoppedLeading({lost: true}))
   * or stop() is called ('stopped'). Runs once per elector.
   */
  run(): Promise<'lost' | 'stopped'> {
    this.running ??= this.loop();
    return this.running;
  }

  /**
   * Stops acquiring or renewing; if leading, releases the lease and calls onStoppedLeading({lost:
   * false}). Call it after the work done under leadership has stopped.
   */
  async stop(opts: { release?: boolean } = {}): Promise<void> {
    this.stopping.abort();
    const outcome = await this.running;
    if (outcome === 'lost' || !(this.leading || this.acquiredWhileStopping)) return;
    if (opts.release !== false) await this.release();
    if (!this.leading) return;
    this.leading = false;
    this.opts.onStoppedLeading?.({ lost: false });
  }

  /**
   * Gives the lease up if this replica still holds it: holder "" and a 1s duration. Returns whether
   * it was released. Best effort: a failure only means the others wait the lease out.
   */
  async release(): Promise<boolean> {
    const { client, namespace, name } = this.opts;
    const timeoutMs = this.timings.renewDeadlineMs;
    try {
      const lease = await client.get<Lease>(LEASES, namespace, name, { timeoutMs });
      if ((lease.spec?.holderIdentity ?? '') !== this.identity) return false;
      await client.replace<Lease>(LEASES, namespace, name, { metadata: leaseMeta(lease), spec: releasedRecord(lease.spec ?? {}, this.wallClock()) }, { timeoutMs });
      this.log.info('released the lease');
      return true;
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, 'could not release the lease; the other replicas will wait for it to expire');
      return false;
    }
  }

  private async loop(): Promise<'lost' | 'stopped'> {
    const { retryPeriodMs, renewDeadlineMs } = this.timings;
    const signal = this.stopping.signal;
    this.log.info({ ...this.timings }, 'waiting to acquire the lease');
    for (;;) {
      if (signal.aborted) return 'stopped';
      const attempt = await this.tryAcquireOrRenew(renewDeadlineMs);
      if (signal.aborted) {
        // Stopped while the acquiring write was in flight: give it back rather than let it expire.
        this.acquiredWhileStopping = attempt === 'ok';
        return 'stopped';
      }
      if (attempt === 'ok') break;
      await abortableSleep(acquireWait(retryPeriodMs, (this.opts.random ?? Math.random)()), signal);
    }
    this.leading = true;
    this.log.info('became leader');
    this.opts.onStartedLeading?.();

    let lastRenewal = this.now();
    let reason: string;
    for (let retryAtOnce = false; ; ) {
      if (!retryAtOnce) await abortableSleep(retryPeriodMs, signal);
      retryAtOnce = false;
      if (signal.aborted) return 'stopped';
      const started = this.now();
      const remaining = lastRenewal + renewDeadlineMs - started;
      const attempt = remaining > 0 ? await this.tryAcquireOrRenew(remaining) : 'failed';
      if (signal.aborted && attempt !== 'lost') return 'stopped';
      if (attempt === 'ok') {
        lastRenewal = started;
        continue;
      }
      if (attempt === 'lost') {
        reason = `the lease is held by ${JSON.stringify(this.observation?.record.holderIdentity ?? '')}`;
        break;
      }
      if (this.now() - lastRenewal >= renewDeadlineMs) {
        reason = `could not renew the lease for ${formatMs(renewDeadlineMs)}`;
        break;
      }
      // A 409: someone else wrote the lease. Read it again now rather than a retry period later.
      if (attempt === 'conflict') retryAtOnce = true;
    }
    this.leading = false;
    this.log.error({ reason }, 'lost leadership');
    this.opts.onStoppedLeading?.({ lost: true });
    return 'lost';
  }

  private async tryAcquireOrRenew(timeoutMs: number): Promise<Attempt> {
    const { client, namespace, name } = this.opts;
    const leaseDurationSeconds = this.timings.leaseDurationMs / 1000;
    const now = this.now();
    const reqOpts: RequestOptions = { timeoutMs: Math.max(1, Math.round(timeoutMs)), signal: this.stopping.signal };
    let lease: Lease;
    try {
      lease = await client.get<Lease>(LEASES, namespace, name, reqOpts);
    } catch (err) {
      if (!isNotFound(err)) {
        this.log.warn({ err: errorMessage(err) }, 'could not read the lease');
        return 'failed';
      }
      try {
        const created = await client.create<Lease>(
          LEASES,
          namespace,
          { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name, namespace }, spec: desiredRecord(undefined, this.identity, leaseDurationSeconds, this.wallClock()) },
          reqOpts,
        );
        this.observation = observe(this.observation, created, this.now());
        this.noteHolder();
        return 'ok';
      } catch (createErr) {
        if (isAlreadyExists(createErr)) return 'conflict';
        this.log.warn({ err: errorMessage(createErr) }, 'could not create the lease');
        return 'failed';
      }
    }
    // Observed when the answer arrived, as client-go does: stamped before a slow GET, the record
    // would look older than it is and a standby would take the lease early.
    this.observation = observe(this.observation, lease, this.now());
    this.noteHolder();
    const decision = decide(this.observation, this.identity, now, this.leading);
    if (decision === 'wait' || decision === 'lost') return decision;
    try {
      const updated = await client.replace<Lease>(
        LEASES,
        namespace,
        name,
        { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: leaseMeta(lease), spec: desiredRecord(lease.spec, this.identity, leaseDurationSeconds, this.wallClock()) },
        reqOpts,
      );
      this.observation = observe(this.observation, updated, this.now());
      this.noteHolder();
      return 'ok';
    } catch (err) {
      if (isConflict(err)) {
        this.log.debug('the lease was written by another replica first (409)');
        return 'conflict';
      }
      this.log.warn({ err: errorMessage(err), decision }, decision === 'renew' ? 'could not renew the lease' : 'could not acquire the lease');
      return 'failed';
    }
  }

  private noteHolder(): void {
    const holder = this.observation?.record.holderIdentity ?? '';
    if (holder === this.lastHolder) return;
    this.lastHolder = holder;
    if (holder !== this.identity) this.log.info({ holder: holder || '(none)' }, 'observed a new lease holder');
    this.opts.onNewLeader?.(holder);
  }
}

/**
 * Resolves after ms, or early when the signal aborts. Unlike backoff.ts's sleep the timer is NOT
 * unref'd: a standby has nothing else keeping the process alive while it waits for the lease.
 */
function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

function leaseMeta(lease: Lease): Lease['metadata'] {
  const meta = lease.metadata ?? {};
  return { name: meta.name, namespace: meta.namespace, resourceVersion: meta.resourceVersion, ...(meta.labels ? { labels: meta.labels } : {}), ...(meta.annotations ? { annotations: meta.annotations } : {}) };
}

/** `<instance>_<random>`: unique even for two processes with one hostname or a restarted pod. */
export function leaderIdentity(instance: string): string {
  return `${instance}_${randomBytes(4).toString('hex')}`;
}

/** Anything that runs under leadership and can be stopped within a bound. */
export interface Stoppable {
  /** Resolves true when nothing of it runs any more, false when work was still in flight at the bound. */
  stop(drainTimeoutMs?: number): Promise<boolean>;
}

export interface RunLeaderElectedOptions<T extends Stoppable> {
  elector: Omit<LeaderElectorOptions, 'onStartedLeading' | 'onStoppedLeading'>;
  /** Starts the work: called once, when this replica becomes the leader. */
  start: () => Promise<T>;
  logger: Logger;
  /** Leadership changes, e.g. for leader_election_master_status. */
  onLeadingChange?: (leading: boolean) => void;
  /**
   * The process must end now with this code: leadership lost (1) or the work failed to start (1).
   * The work must not go on after this: in main it is process.exit.
   */
  exit: (code: number) => void;
}

export interface LeaderElected<T> extends Stoppable {
  elector: LeaderElector;
  /** The work, once started under leadership. */
  current(): T | undefined;
}

/**
 * Runs `start` only while this replica leads. On loss of leadership, `exit(1)` at once: the
 * reconciles in flight must not write as a second leader, and a fresh process (the Deployment's
 * restart) starts from clean caches. stop(drain) stops the work within the drain bound, then
 * releases the lease so a standby takes over at its next retry — but only when the work is known to
 * be stopped: a reconcile still running past the bound could write beside the new leader, so then
 * the lease is left to expire.
 */
export function runLeaderElected<T extends Stoppable>(opts: RunLeaderElectedOptions<T>): LeaderElected<T> {
  const log = opts.logger;
  let starting: Promise<T | undefined> | undefined;
  let work: T | undefined;
  let stopping = false;
  /** stop() stopped waiting for a start still syncing: whatever starts after that must not run. */
  let gaveUpOnStart = false;
  const elector = new LeaderElector({
    ...opts.elector,
    logger: log,
    onStartedLeading: () => {
      opts.onLeadingChange?.(true);
      starting = opts.start().then(
        (started) => {
          work = started;
          if (gaveUpOnStart) void started.stop(0);
          return started;
        },
        (err: unknown) => {
          log.error({ err: errorMessage(err) }, 'could not start under leadership');
          if (!stopping) opts.exit(1);
          return undefined;
        },
      );
    },
    onStoppedLeading: ({ lost }) => {
      opts.onLeadingChange?.(false);
      if (lost) opts.exit(1);
    },
  });
  void elector.run();
  return {
    elector,
    current: () => work,
    async stop(drainTimeoutMs = 10_000) {
      stopping = true;
      const deadline = performance.now() + drainTimeoutMs;
      let quiet = true;
      if (starting !== undefined) {
        // Still syncing its caches: wait within the bound, then give up on it (the process ends).
        let timer: NodeJS.Timeout | undefined;
        const late = Symbol('late');
        const started = await Promise.race([starting, new Promise<typeof late>((r) => (timer = setTimeout(() => r(late), drainTimeoutMs)))]);
        clearTimeout(timer);
        if (started === late) {
          gaveUpOnStart = true;
          quiet = false;
        } else if (started !== undefined) quiet = await started.stop(Math.max(0, deadline - performance.now()));
      }
      if (!quiet) log.warn({ drainTimeoutMs }, 'work still running at the end of the drain: leaving the lease to expire rather than releasing it');
      await elector.stop({ release: quiet });
      return quiet;
    },
  };
}
