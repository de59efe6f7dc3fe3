/**
 * Records events.k8s.io/v1 Events about objects. A repeat of the same (object, reason, note)
 * within the series window updates the existing Event's series instead of creating another, as
 * client-go's events recorder does. Recording never throws: failures are logged and dropped.
 *
 * Bounded: at most maxInFlight recordings wait or run at once (reconcilers fire and forget them);
 * beyond that an Event is dropped and counted (onDropped, the tokenwarden_events_dropped_total
 * metric), so a burst of Events can neither hold memory without bound nor flood the API server.
 */
import { randomBytes } from 'node:crypto';
import type { KubeClient } from '../kube/client.ts';
import { errorMessage, isNotFound } from '../kube/errors.ts';
import { EVENTS, type KubeObject } from '../kube/resources.ts';
import { escapeControls } from '../policy/text.ts';
import { silentLogger, type Logger } from './logger.ts';

export type EventType = 'Normal' | 'Warning';

export const REPORTING_CONTROLLER = 'tokenwarden.io/operator';
export const NOTE_MAX_BYTES = 1024;
const SHORT_FIELD_MAX = 128;

export interface ObjectReference {
  apiVersion?: string;
  kind?: string;
  namespace?: string;
  name?: string;
  uid?: string;
  resourceVersion?: string;
}

export interface EventSeries {
  count: number;
  lastObservedTime: string;
}

/** An events.k8s.io/v1 Event, as written. */
export interface EventObject extends KubeObject {
  eventTime: string;
  series?: EventSeries;
  reportingController: string;
  reportingInstance: string;
  action: string;
  reason: string;
  regarding: ObjectReference;
  related?: ObjectReference;
  note: string;
  type: EventType;
}

export interface EventInput {
  type: EventType;
  /** CamelCase, why it happened: Issued, Rotated, Revoked... */
  reason: string;
  /** Human-readable; cut to 1024 bytes. Must never contain a token. */
  note: string;
  /** What was done, CamelCase; defaults to the reason. */
  action?: string;
  related?: KubeObject;
}

/** metav1.MicroTime: "2006-01-02T15:04:05.000000Z". */
export function microTime(d: Date): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

/** Cuts to at most maxBytes of UTF-8, on a character boundary, marking the cut with "...". */
export function truncateUtf8(s: string, maxBytes: number): string {
  if (Buffer.byteLength(s, 'utf8') <= maxBytes) return s;
  const suffix = '...';
  let out = '';
  let bytes = 0;
  for (const ch of s) {
    const n = Buffer.byteLength(ch, 'utf8');
    if (bytes + n > maxBytes - suffix.length) break;
    out += ch;
    bytes += n;
  }
  return out + suffix;
}

export function referenceTo(obj: KubeObject): ObjectReference {
  const m = obj.metadata ?? {};
  const ref: ObjectReference = { apiVersion: obj.apiVersion, kind: obj.kind, name: m.name, uid: m.uid, resourceVersion: m.resourceVersion };
  if (m.namespace) ref.namespace = m.namespace;
  return ref;
}

/** Events about cluster-scoped objects go to "default", as kubectl and client-go expect them. */
export function eventNamespace(regarding: KubeObject): string {
  return regarding.metadata?.namespace || 'default';
}

/** "<object name>.<hex time><hex random>": unique, a DNS subdomain when the object name is one. */
export function eventName(regarding: KubeObject, now: Date): string {
  const base = (regarding.metadata?.name ?? 'object').slice(0, 200);
  return `${base}.${now.getTime().toString(16)}${randomBytes(3).toString('hex')}`;
}

/** The dedupe key: the same object, reason and note. */
export function seriesKey(regarding: KubeObject, reason: string, note: string): string {
  const m = regarding.metadata ?? {};
  const who = m.uid ?? `${regarding.kind ?? ''}/${m.namespace ?? ''}/${m.name ?? ''}`;
  return JSON.stringify([who, reason, note]);
}

export function buildEvent(
  regarding: KubeObject,
  input: EventInput,
  opts: { reportingController: string; reportingInstance: string; now: Date; name?: string },
): EventObject {
  const reason = input.reason.slice(0, SHORT_FIELD_MAX);
  const ev: EventObject = {
    apiVersion: 'events.k8s.io/v1',
    kind: 'Event',
    metadata: { name: opts.name ?? eventName(regarding, opts.now), namespace: eventNamespace(regarding) },
    eventTime: microTime(opts.now),
    reportingController: opts.reportingController,
    reportingInstance: opts.reportingInstance.slice(0, SHORT_FIELD_MAX),
    action: (input.action ?? input.reason).slice(0, SHORT_FIELD_MAX),
    reason,
    regarding: referenceTo(regarding),
    note: truncateUtf8(escapeControls(input.note), NOTE_MAX_BYTES),
    type: input.type,
  };
  if (input.related) ev.related = referenceTo(input.related);
  return ev;
}

interface SeriesEntry {
  namespace: string;
  name: string;
  count: number;
  lastObservedMs: number;
}

/**
 * Remembers recent Events for series updates. Pure bookkeeping (no I/O), so it can be tested on
 * its own; bounded in size.
 */
export class EventSeriesCache {
  private readonly entries = new Map<string, SeriesEntry>();
  private readonly windowMs: number;
  private readonly maxEntries: number;

  constructor(windowMs = 10 * 60_000, maxEntries = 4096) {
    this.windowMs = windowMs;
    this.maxEntries = maxEntries;
  }

  /** The Event to update, if an identical one was recorded within the window. */
  lookup(key: string, nowMs: number): SeriesEntry | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    if (nowMs - e.lastObservedMs > this.windowMs) {
      this.entries.delete(key);
      return undefined;
    }
    return e;
  }

  /** A new Event was created. */
  created(key: string, namespace: string, name: string, nowMs: number): void {
    this.entries.delete(key); // re-insert: Map order is our recency order
    this.entries.set(key, { namespace, name, count: 1, lastObservedMs: nowMs });
    this.prune();
  }

  /** A repeat: returns the series to write (count starts at 2, as the API requires). */
  repeated(key: string, nowMs: number): { count: number } | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    e.count += 1;
    e.lastObservedMs = nowMs;
    this.entries.delete(key);
    this.entries.set(key, e);
    return { count: e.count };
  }

  forget(key: string): void {
    this.entries.delete(key);
  }

  get size(): number {
    return this.entries.size;
  }

  private prune(): void {
    // Map order is recency order: drop the least recently observed first.
    for (const key of this.entries.keys()) {
      if (this.entries.size <= this.maxEntries) break;
      this.entries.delete(key);
    }
  }
}

export interface EventRecorderOptions {
  client: Pick<KubeClient, 'create' | 'patch'>;
  /** This replica, e.g. the pod name; shown as the Event's reportingInstance. */
  reportingInstance: string;
  reportingController?: string;
  logger?: Logger;
  /** Repeats within this window update the series; default 10 minutes. */
  seriesWindowMs?: number;
  now?: () => Date;
  /** Most recordings pending at once; more are dropped. Default DEFAULT_MAX_IN_FLIGHT_EVENTS. */
  maxInFlight?: number;
  /** Called for each Event dropped because maxInFlight recordings were pending. */
  onDropped?: (input: { type: EventType; reason: string }) => void;
}

/** Default bound on pending Event recordings. */
export const DEFAULT_MAX_IN_FLIGHT_EVENTS = 64;

export class EventRecorder {
  private readonly client: Pick<KubeClient, 'create' | 'patch'>;
  private readonly reportingInstance: string;
  private readonly reportingController: string;
  private readonly log: Logger;
  private readonly now: () => Date;
  private readonly cache: EventSeriesCache;
  /** Per series key, the last recording in flight: repeats wait for it, so they find its Event. */
  private readonly inFlight = new Map<string, Promise<void>>();
  private readonly maxInFlight: number;
  private readonly onDropped: EventRecorderOptions['onDropped'];
  private pending = 0;
  private droppedCount = 0;

  constructor(opts: EventRecorderOptions) {
    this.client = opts.client;
    this.reportingInstance = opts.reportingInstance;
    this.reportingController = opts.reportingController ?? REPORTING_CONTROLLER;
    this.log = (opts.logger ?? silentLogger()).child({ component: 'events' });
    this.now = opts.now ?? (() => new Date());
    this.cache = new EventSeriesCache(opts.seriesWindowMs ?? 10 * 60_000);
    this.maxInFlight = opts.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT_EVENTS;
    this.onDropped = opts.onDropped;
  }

  /** Recordings pending now (waiting for an earlier one of their series, or being written). */
  get inFlightCount(): number {
    return this.pending;
  }

  /** Events dropped so far because too many were pending. */
  get dropped(): number {
    return this.droppedCount;
  }

  normal(regarding: KubeObject, reason: string, note: string, action?: string): Promise<void> {
    return this.record(regarding, { type: 'Normal', reason, note, action });
  }

  warning(regarding: KubeObject, reason: string, note: string, action?: string): Promise<void> {
    return this.record(regarding, { type: 'Warning', reason, note, action });
  }

  /** Records the Event; resolves when written (or given up on, or dropped). Never rejects. */
  record(regarding: KubeObject, input: EventInput): Promise<void> {
    if (this.pending >= this.maxInFlight) {
      this.droppedCount++;
      this.onDropped?.({ type: input.type, reason: input.reason });
      // Warn on the first drop of a burst and every 1000th after, not on each.
      if (this.droppedCount % 1000 === 1) {
        this.log.warn({ reason: input.reason, dropped: this.droppedCount, maxInFlight: this.maxInFlight }, 'too many events pending; dropping');
      }
      return Promise.resolve();
    }
    this.pending++;
    // Escaped before it is cut: a note may quote tenant text or an API server error echoing it.
    const note = truncateUtf8(escapeControls(input.note), NOTE_MAX_BYTES);
    const key = seriesKey(regarding, input.reason, note);
    const previous = this.inFlight.get(key) ?? Promise.resolve();
    const current = previous.then(() => this.write(key, regarding, { ...input, note }));
    this.inFlight.set(key, current);
    void current.finally(() => {
      this.pending--;
      if (this.inFlight.get(key) === current) this.inFlight.delete(key);
    });
    return current;
  }

  private async write(key: string, regarding: KubeObject, input: EventInput): Promise<void> {
    const now = this.now();
    const nowMs = now.getTime();
    try {
      const existing = this.cache.lookup(key, nowMs);
      if (existing) {
        const series = this.cache.repeated(key, nowMs);
        try {
          await this.client.patch(EVENTS, existing.namespace, existing.name, {
            series: { count: series?.count ?? 2, lastObservedTime: microTime(now) },
          });
          return;
        } catch (err) {
          // The Event expired (TTL) or was deleted: start a new one.
          if (!isNotFound(err)) throw err;
          this.cache.forget(key);
        }
      }
      const ev = buildEvent(regarding, input, { reportingController: this.reportingController, reportingInstance: this.reportingInstance, now });
      const ns = ev.metadata?.namespace ?? 'default';
      await this.client.create(EVENTS, ns, ev);
      this.cache.created(key, ns, ev.metadata?.name ?? '', nowMs);
    } catch (err) {
      this.log.warn(
        {
          err: errorMessage(err),
          reason: input.reason,
          regarding: { kind: regarding.kind, namespace: regarding.metadata?.namespace, name: regarding.metadata?.name },
        },
        'could not record event',
      );
    }
  }
}
