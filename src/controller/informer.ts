/**
 * An informer: a local cache of one resource type kept current by list + watch, with handlers.
 *
 * Robustness is the point: the watch is restarted whenever it ends, with capped jittered backoff
 * on errors; a 410 Gone (too old resourceVersion) triggers a relist whose diff against the cache is
 * emitted, so nothing is lost; a watchdog restarts a watch that went silent; and a periodic audit
 * catches anything else: a metadata-only list (names and resourceVersions, a page at a time) compared
 * with the cache while the watch keeps running, which relists only when the cache really missed a
 * change. At rest that costs one small list per period and no second copy of the cache. The loop
 * only ends on stop().
 *
 * Memory: every object is transformed (default: managedFields and the last-applied annotation
 * dropped) as its LIST page or watch event arrives, before it is cached.
 */
import { isGone, errorMessage } from '../kube/errors.ts';
import type { KubeStatus } from '../kube/errors.ts';
import type { ListOptions, ListResult, WatchEvent, WatchHandle, WatchQuery } from '../kube/client.ts';
import { apiVersionOf, objectKey, resourceName, type KubeObject, type ResourceType } from '../kube/resources.ts';
import { Backoff, sleep } from './backoff.ts';
import { silentLogger, type Logger } from './logger.ts';
import { Store, type Indexers } from './store.ts';

/** The part of KubeClient an informer needs. */
export interface ListWatcher {
  list<T extends KubeObject>(type: ResourceType, namespace?: string, opts?: ListOptions): Promise<ListResult<T>>;
  watch<T extends KubeObject>(
    type: ResourceType,
    namespace: string | undefined,
    query: WatchQuery,
    onEvent: (event: WatchEvent<T>) => void,
    onDone: (err?: Error) => void,
  ): WatchHandle;
}

export interface EventHandler<T> {
  onAdd?(obj: T): void;
  onUpdate?(oldObj: T, newObj: T): void;
  onDelete?(obj: T): void;
}

export interface InformerOptions<T extends KubeObject> {
  client: ListWatcher;
  type: ResourceType;
  /** Only this namespace; default all namespaces (or cluster-scoped). */
  namespace?: string;
  labelSelector?: string;
  fieldSelector?: string;
  logger?: Logger;
  indexers?: Indexers<T>;
  handlers?: EventHandler<T>[];
  /**
   * Audit the cache against the API server this often (a metadata-only list), relisting and
   * emitting the diff only if it missed a change; default 10 minutes; 0 disables.
   */
  resyncPeriodMs?: number;
  /**
   * How long the audit lets the running watch catch up on an object the cache has older than the
   * list before it counts as missed; default 10 seconds.
   */
  auditGraceMs?: number;
  /**
   * Restart a watch that delivered nothing, not even a bookmark, for this long. Default 6 minutes:
   * longer than the server-side watch timeout, so it only fires on a connection that is dead
   * without the server having closed it.
   */
  watchdogMs?: number;
  /** Server-side watch timeout, picked at random in [min, max] seconds per watch; default [240, 290]. */
  watchTimeoutSeconds?: [number, number];
  /** Delay between failed attempts: default 500ms growing to 30s, ±20% jitter. */
  backoff?: { baseMs: number; capMs: number };
  /**
   * Applied to every object before it is cached, as each LIST page or watch event arrives; default
   * slimMetadata (drops managedFields and the last-applied annotation).
   */
  transform?: (obj: T) => T;
}

export interface SnapshotDiff<T> {
  added: T[];
  updated: { oldObj: T; newObj: T }[];
  deleted: T[];
}

/**
 * What changed between the cache and a fresh list. An object whose uid changed (deleted and
 * recreated while we were not watching) is reported as a delete and an add, not an update, so
 * handlers that track uids do not mix the two.
 */
export function diffSnapshot<T extends KubeObject>(cached: readonly T[], listed: readonly T[], keyFn: (obj: T) => string = objectKey): SnapshotDiff<T> {
  const before = new Map<string, T>();
  for (const obj of cached) before.set(keyFn(obj), obj);
  const diff: SnapshotDiff<T> = { added: [], updated: [], deleted: [] };
  const seen = new Set<string>();
  for (const obj of listed) {
    const key = keyFn(obj);
    seen.add(key);
    const old = before.get(key);
    if (old === undefined) {
      diff.added.push(obj);
    } else if (old.metadata?.uid && obj.metadata?.uid && old.metadata.uid !== obj.metadata.uid) {
      diff.deleted.push(old);
      diff.added.push(obj);
    } else if (old.metadata?.resourceVersion !== obj.metadata?.resourceVersion) {
      diff.updated.push({ oldObj: old, newObj: obj });
    }
  }
  for (const [key, old] of before) {
    if (!seen.has(key)) diff.deleted.push(old);
  }
  return diff;
}

/** True when a watch ERROR event's Status means "resourceVersion too old": relist. */
export function isGoneStatus(status: KubeStatus | undefined): boolean {
  return !!status && (status.code === 410 || status.reason === 'Expired' || status.reason === 'Gone');
}

/** kubectl's (and GitOps tools') copy of the whole applied object: as large as the object, never read. */
export const LAST_APPLIED_ANNOTATION = 'kubectl.kubernetes.io/last-applied-configuration';

/**
 * Drops what no reconciler reads and can be as large as the rest of the object: metadata.managedFields
 * and the last-applied-configuration annotation.
 *
 * It copies rather than `delete`s: V8 turns an object that lost a property into a dictionary, about
 * twice the memory of one built whole (measured: ~900 B more per cached ServiceAccountClient).
 */
export function slimMetadata<T extends KubeObject>(obj: T): T {
  const meta = obj.metadata;
  if (!meta) return obj;
  const annotations = meta.annotations;
  const lastApplied = annotations !== undefined && LAST_APPLIED_ANNOTATION in annotations;
  if (!('managedFields' in meta) && !lastApplied) return obj;
  const { managedFields: _managedFields, annotations: _annotations, ...rest } = meta as typeof meta & { managedFields?: unknown };
  const kept = lastApplied ? pickKeys(annotations, (key) => key !== LAST_APPLIED_ANNOTATION) : annotations;
  return { ...obj, metadata: kept ? { ...rest, annotations: kept } : rest };
}

/** The entries of `map` whose key passes `keep`, as a new map; undefined when none does. */
export function pickKeys(map: Record<string, string> | undefined, keep: (key: string) => boolean): Record<string, string> | undefined {
  let out: Record<string, string> | undefined;
  for (const key in map) if (keep(key)) (out ??= {})[key] = map[key] as string;
  return out;
}

/**
 * Whether resourceVersion `a` is older than `b`. Resource versions are opaque to clients; the API
 * server's are etcd revisions, and only the audit uses this, where a wrong answer costs one extra
 * relist, never a missed change: anything that is not a pair of integers counts as older.
 */
export function olderResourceVersion(a: string | undefined, b: string | undefined): boolean {
  if (!a || !b || !/^\d+$/.test(a) || !/^\d+$/.test(b)) return a !== b;
  return BigInt(a) < BigInt(b);
}

/** An object as the audit lists it: identity and version only. */
interface Stamp {
  key: string;
  uid: string | undefined;
  resourceVersion: string | undefined;
}

/**
 * Which cached objects disagree with a metadata-only list at `listRv`: missing from the cache, a
 * different uid, an older resourceVersion than listed, or cached but not listed and not newer than
 * the list (a delete the cache missed). A cached object newer than the list is the watch being ahead.
 */
export function auditDisagreements(cached: (key: string) => { uid?: string; resourceVersion?: string } | undefined, cachedKeys: Iterable<string>, listed: readonly Stamp[], listRv: string): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  for (const s of listed) {
    seen.add(s.key);
    const c = cached(s.key);
    if (c === undefined) out.push(s.key);
    else if (c.uid && s.uid && c.uid !== s.uid) {
      if (olderResourceVersion(c.resourceVersion, s.resourceVersion)) out.push(s.key);
    } else if (olderResourceVersion(c.resourceVersion, s.resourceVersion)) out.push(s.key);
  }
  for (const key of cachedKeys) {
    if (seen.has(key)) continue;
    if (!olderResourceVersion(listRv, cached(key)?.resourceVersion)) out.push(key);
  }
  return out;
}

type WatchEnd = 'closed' | 'gone' | 'error' | 'watchdog' | 'resync' | 'restart' | 'stopped';

/** The audit's outcomes: the cache agreed with the server, or it missed something and was relisted. */
export type AuditOutcome = 'agreed' | 'relisted' | 'failed';

interface WatchOutcome {
  end: WatchEnd;
  err?: unknown;
  delivered: boolean;
}

export class Informer<T extends KubeObject> {
  readonly type: ResourceType;
  readonly store: Store<T>;
  private readonly opts: InformerOptions<T>;
  private readonly log: Logger;
  private readonly handlers: EventHandler<T>[] = [];
  private readonly transform: (obj: T) => T;
  private resourceVersion = '';
  private needList = true;
  private synced = false;
  private syncWaiters: { resolve: () => void; reject: (err: unknown) => void }[] = [];
  private running = false;
  private generation = 0;
  private loop: Promise<void> | undefined;
  private stopController: AbortController | undefined;
  private endWatch: ((end: WatchEnd) => void) | undefined;
  private resyncTimer: NodeJS.Timeout | undefined;
  private auditing = false;
  /** Audits so far by outcome (tests, metrics). */
  readonly audits: Record<AuditOutcome, number> = { agreed: 0, relisted: 0, failed: 0 };

  constructor(opts: InformerOptions<T>) {
    this.opts = opts;
    this.type = opts.type;
    this.store = new Store<T>(opts.indexers);
    this.transform = opts.transform ?? slimMetadata;
    for (const h of opts.handlers ?? []) this.handlers.push(h);
    const what = opts.namespace ? `${resourceName(opts.type)} in ${opts.namespace}` : resourceName(opts.type);
    this.log = (opts.logger ?? silentLogger()).child({ informer: `${apiVersionOf(opts.type)}/${what}` });
  }

  /**
   * Adds a handler; returns a function that removes it. When added after the first sync, the
   * handler gets onAdd for every cached object first, so it misses nothing.
   */
  addEventHandler(handler: EventHandler<T>): () => void {
    this.handlers.push(handler);
    if (this.synced) {
      for (const obj of this.store.list()) this.call('onAdd', () => handler.onAdd?.(obj));
    }
    return () => {
      const i = this.handlers.indexOf(handler);
      if (i >= 0) this.handlers.splice(i, 1);
    };
  }

  /** Starts listing and watching. Calling it while running does nothing. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.needList = true;
    const gen = ++this.generation;
    this.stopController = new AbortController();
    this.loop = this.run(gen, this.stopController.signal).catch((err: unknown) => {
      // run() handles its own errors; reaching here is a bug, and silence would be the worst outcome.
      this.log.error({ err: errorMessage(err) }, 'informer loop failed unexpectedly; restarting');
      if (this.running && gen === this.generation) {
        this.running = false;
        this.start();
      }
    });
  }

  /** Stops watching; the cache is kept (a later start() relists and emits the diff). */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.generation++;
    this.stopController?.abort();
    this.endWatch?.('stopped');
    clearTimeout(this.resyncTimer);
    const waiters = this.syncWaiters.splice(0);
    for (const w of waiters) w.reject(new Error(`informer for ${this.type.plural} stopped before it synced`));
    await this.loop;
  }

  /** True once the first list has been applied to the cache and handed to the handlers. */
  hasSynced(): boolean {
    return this.synced;
  }

  waitForSync(signal?: AbortSignal): Promise<void> {
    if (this.synced) return Promise.resolve();
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise((resolve, reject) => {
      const waiter = {
        resolve: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
        reject: (err: unknown) => {
          signal?.removeEventListener('abort', onAbort);
          reject(err);
        },
      };
      const onAbort = (): void => {
        this.syncWaiters = this.syncWaiters.filter((w) => w !== waiter);
        reject(signal?.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.syncWaiters.push(waiter);
    });
  }

  get(namespace: string | undefined, name: string): T | undefined {
    return this.store.get(namespace, name);
  }

  getByKey(key: string): T | undefined {
    return this.store.getByKey(key);
  }

  list(): T[] {
    return this.store.list();
  }

  byIndex(indexName: string, value: string): T[] {
    return this.store.byIndex(indexName, value);
  }

  /** The resourceVersion the next watch starts from. */
  lastResourceVersion(): string {
    return this.resourceVersion;
  }

  /**
   * Ends the current watch and starts a new one, from `fromResourceVersion` if given. Used to
   * exercise recovery (a too-old version must lead to a relist), and by operators who want a
   * fresh connection.
   */
  restartWatch(fromResourceVersion?: string): void {
    if (fromResourceVersion !== undefined) this.resourceVersion = fromResourceVersion;
    this.endWatch?.('restart');
  }

  private async run(gen: number, signal: AbortSignal): Promise<void> {
    const backoff = new Backoff({ baseMs: this.opts.backoff?.baseMs ?? 500, capMs: this.opts.backoff?.capMs ?? 30_000 });
    const live = (): boolean => this.running && gen === this.generation;
    while (live()) {
      if (this.needList) {
        try {
          await this.relist(live, signal);
        } catch (err) {
          if (!live()) break;
          const delay = backoff.next();
          this.log.warn({ err: errorMessage(err), retryInMs: delay }, 'list failed');
          await sleep(delay, signal);
          continue;
        }
        if (!live()) break;
      }
      const outcome = await this.watchOnce(live);
      if (!live() || outcome.end === 'stopped') break;
      if (outcome.delivered) backoff.reset();
      let delay = 0;
      switch (outcome.end) {
        case 'closed':
          // The server's timeoutSeconds elapsed: the normal end of a watch.
          if (!outcome.delivered) delay = backoff.next();
          this.log.debug({ resourceVersion: this.resourceVersion }, 'watch closed; restarting');
          break;
        case 'gone':
          this.needList = true;
          if (!outcome.delivered) delay = backoff.next();
          this.log.info({ resourceVersion: this.resourceVersion, reason: errorMessage(outcome.err) }, 'resourceVersion too old; relisting');
          break;
        case 'error':
          delay = backoff.next();
          this.log.warn({ err: errorMessage(outcome.err), resourceVersion: this.resourceVersion, retryInMs: delay }, 'watch failed; restarting');
          break;
        case 'watchdog':
          delay = outcome.delivered ? 0 : backoff.next();
          this.log.warn({ resourceVersion: this.resourceVersion, silentForMs: this.watchdogMs(), retryInMs: delay }, 'watch silent too long; restarting');
          break;
        case 'resync':
          this.needList = true;
          this.log.debug('periodic relist');
          break;
        case 'restart':
          this.log.info({ resourceVersion: this.resourceVersion }, 'watch restart requested');
          break;
      }
      if (delay > 0) await sleep(delay, signal);
    }
  }

  private async relist(live: () => boolean, signal: AbortSignal): Promise<void> {
    const res = await this.opts.client.list<T>(this.type, this.opts.namespace, {
      labelSelector: this.opts.labelSelector,
      fieldSelector: this.opts.fieldSelector,
      signal,
      // Each page is transformed as it arrives: the raw list is never held whole.
      transform: (o) => this.transform(o as T),
    });
    if (!live()) return;
    const listed = res.items;
    const diff = diffSnapshot(this.store.list(), listed);
    // Apply the whole snapshot first, so handlers that read the cache see a consistent one.
    for (const obj of diff.deleted) this.store.delete(objectKey(obj));
    for (const obj of diff.added) this.store.upsert(obj);
    for (const { newObj } of diff.updated) this.store.upsert(newObj);
    this.resourceVersion = res.resourceVersion;
    this.needList = false;
    this.log.info(
      { objects: listed.length, added: diff.added.length, updated: diff.updated.length, deleted: diff.deleted.length, resourceVersion: res.resourceVersion },
      'listed',
    );
    for (const obj of diff.deleted) this.emit('onDelete', (h) => h.onDelete?.(obj));
    for (const obj of diff.added) this.emit('onAdd', (h) => h.onAdd?.(obj));
    for (const { oldObj, newObj } of diff.updated) this.emit('onUpdate', (h) => h.onUpdate?.(oldObj, newObj));
    if (!this.synced) {
      this.synced = true;
      const waiters = this.syncWaiters.splice(0);
      for (const w of waiters) w.resolve();
    }
    this.scheduleResync();
  }

  private scheduleResync(): void {
    clearTimeout(this.resyncTimer);
    const period = this.opts.resyncPeriodMs ?? 10 * 60_000;
    if (period <= 0 || !this.running) return;
    const gen = this.generation;
    this.resyncTimer = setTimeout(() => {
      void this.audit(gen).finally(() => {
        if (this.running && gen === this.generation && !this.needList) this.scheduleResync();
      });
    }, period);
    this.resyncTimer.unref();
  }

  /**
   * Compares the cache with a metadata-only list while the watch keeps running. Objects the cache
   * has older than the list get auditGraceMs for the watch to bring them; whatever still disagrees
   * then was missed, and the informer relists (emitting the diff). Returns what happened.
   */
  async audit(gen = this.generation): Promise<AuditOutcome> {
    if (this.auditing || !this.synced) return 'agreed';
    this.auditing = true;
    const live = (): boolean => this.running && gen === this.generation;
    try {
      const res = await this.opts.client.list<KubeObject>(this.type, this.opts.namespace, {
        labelSelector: this.opts.labelSelector,
        fieldSelector: this.opts.fieldSelector,
        metadataOnly: true,
        signal: this.stopController?.signal,
        transform: (o) => ({ metadata: { name: o.metadata?.name, namespace: o.metadata?.namespace, uid: o.metadata?.uid, resourceVersion: o.metadata?.resourceVersion } }) as KubeObject,
      });
      if (!live()) return 'agreed';
      const listed: Stamp[] = res.items.map((o) => ({ key: objectKey(o), uid: o.metadata?.uid, resourceVersion: o.metadata?.resourceVersion }));
      const cachedStamp = (key: string) => {
        const c = this.store.getByKey(key);
        return c === undefined ? undefined : { uid: c.metadata?.uid, resourceVersion: c.metadata?.resourceVersion };
      };
      let missed = auditDisagreements(cachedStamp, this.store.keys(), listed, res.resourceVersion);
      if (missed.length > 0) {
        // The watch may simply not have delivered them yet: give it a moment, then look again.
        await sleep(this.opts.auditGraceMs ?? 10_000, this.stopController?.signal).catch(() => undefined);
        if (!live()) return 'agreed';
        const recheck = new Set(missed);
        missed = auditDisagreements(cachedStamp, missed, listed.filter((s) => recheck.has(s.key)), res.resourceVersion);
      }
      if (missed.length === 0) {
        this.audits.agreed++;
        this.log.debug({ objects: listed.length }, 'audited: cache agrees');
        return 'agreed';
      }
      this.audits.relisted++;
      this.log.warn({ objects: listed.length, missed: missed.length, example: missed[0] }, 'audit: the cache missed changes; relisting');
      this.needList = true;
      this.endWatch?.('resync');
      return 'relisted';
    } catch (err) {
      if (!live()) return 'agreed';
      this.audits.failed++;
      this.log.warn({ err: errorMessage(err) }, 'audit list failed; trying again next period');
      return 'failed';
    } finally {
      this.auditing = false;
    }
  }

  private watchdogMs(): number {
    return this.opts.watchdogMs ?? 6 * 60_000;
  }

  private watchOnce(live: () => boolean): Promise<WatchOutcome> {
    return new Promise((resolve) => {
      let ended = false;
      let delivered = false;
      let handle: WatchHandle | undefined = undefined;
      let watchdog: NodeJS.Timeout | undefined;
      const end = (kind: WatchEnd, err?: unknown): void => {
        if (ended) return;
        ended = true;
        clearTimeout(watchdog);
        if (this.endWatch === endThis) this.endWatch = undefined;
        handle?.abort();
        resolve({ end: kind, err, delivered });
      };
      const endThis = (kind: WatchEnd): void => end(kind);
      const resetWatchdog = (): void => {
        clearTimeout(watchdog);
        watchdog = setTimeout(() => end('watchdog'), this.watchdogMs());
        watchdog.unref();
      };
      if (!live()) return resolve({ end: 'stopped', delivered });
      this.endWatch = endThis;
      const [min, max] = this.opts.watchTimeoutSeconds ?? [240, 290];
      const timeoutSeconds = Math.floor(min + Math.random() * (max - min + 1));
      resetWatchdog();
      handle = this.opts.client.watch<T>(
        this.type,
        this.opts.namespace,
        {
          resourceVersion: this.resourceVersion,
          allowWatchBookmarks: true,
          timeoutSeconds,
          labelSelector: this.opts.labelSelector,
          fieldSelector: this.opts.fieldSelector,
        },
        (event) => {
          if (ended) return;
          resetWatchdog();
          // An ERROR is not progress: counting it would keep the backoff from growing.
          if (event.type !== 'ERROR') delivered = true;
          const problem = this.onWatchEvent(event);
          if (problem) end(problem.end, problem.err);
        },
        (err) => {
          if (!err) end('closed');
          else end(isGone(err) ? 'gone' : 'error', err);
        },
      );
      if (ended) handle.abort();
    });
  }

  /** Applies one watch event; returns how the watch must end, if it must. */
  private onWatchEvent(event: WatchEvent<T>): { end: WatchEnd; err: unknown } | undefined {
    if (event.type === 'ERROR') {
      const status = event.object as KubeStatus;
      const err = new Error(`watch error: ${status.code ?? '?'} ${status.reason ?? ''}: ${status.message ?? ''}`);
      return { end: isGoneStatus(status) ? 'gone' : 'error', err };
    }
    const raw = event.object as T;
    const rv = raw.metadata?.resourceVersion;
    if (event.type === 'BOOKMARK') {
      if (rv) this.resourceVersion = rv;
      return undefined;
    }
    if (event.type !== 'ADDED' && event.type !== 'MODIFIED' && event.type !== 'DELETED') {
      return { end: 'error', err: new Error(`unexpected watch event type ${String(event.type)}`) };
    }
    const obj = this.transform(raw);
    obj.apiVersion ??= apiVersionOf(this.type);
    obj.kind ??= this.type.kind;
    if (rv) this.resourceVersion = rv;
    const key = objectKey(obj);
    if (event.type === 'DELETED') {
      this.store.delete(key);
      this.emit('onDelete', (h) => h.onDelete?.(obj));
      return undefined;
    }
    const old = this.store.upsert(obj);
    if (old === undefined) this.emit('onAdd', (h) => h.onAdd?.(obj));
    else this.emit('onUpdate', (h) => h.onUpdate?.(old, obj));
    return undefined;
  }

  private emit(what: string, fn: (h: EventHandler<T>) => void): void {
    for (const h of [...this.handlers]) this.call(what, () => fn(h));
  }

  private call(what: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      // Message only: the object may be a Secret.
      this.log.error({ err: errorMessage(err), handler: what }, 'event handler threw');
    }
  }
}
