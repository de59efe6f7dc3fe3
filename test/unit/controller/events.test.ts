import { describe, expect, it } from 'vitest';
import {
  EventRecorder,
  buildEvent,
  eventName,
  eventNamespace,
  EventSeriesCache,
  microTime,
  NOTE_MAX_BYTES,
  seriesKey,
  truncateUtf8,
} from '../../../src/controller/events.ts';
import type { KubeObject } from '../../../src/kube/resources.ts';

const client: KubeObject = {
  apiVersion: 'tokenwarden.io/v1alpha1',
  kind: 'ServiceAccountClient',
  metadata: { namespace: 'team-a', name: 'alice-notebook', uid: 'u-1', resourceVersion: '42' },
};
const tier: KubeObject = { apiVersion: 'tokenwarden.io/v1alpha1', kind: 'Tier', metadata: { name: 'premium', uid: 'u-2', resourceVersion: '7' } };
const NOW = new Date('2006-01-02T15:04:05.123Z');

describe('microTime', () => {
  it('formats with six fractional digits', () => {
    expect(microTime(NOW)).toBe('2006-01-02T15:04:05.123000Z');
    expect(microTime(new Date('2024-01-01T00:00:00Z'))).toBe('2024-01-01T00:00:00.000000Z');
  });
});

describe('truncateUtf8', () => {
  it('leaves short strings alone', () => {
    expect(truncateUtf8('hello', 10)).toBe('hello');
  });

  it('cuts long strings to the byte limit with a marker', () => {
    const out = truncateUtf8('x'.repeat(2000), NOTE_MAX_BYTES);
    expect(Buffer.byteLength(out)).toBe(NOTE_MAX_BYTES);
    expect(out.endsWith('...')).toBe(true);
  });

  it('never splits a multi-byte character', () => {
    const out = truncateUtf8('é'.repeat(1000), 11);
    expect(out).toBe('éééé...');
    expect(Buffer.byteLength(out)).toBeLessThanOrEqual(11);
  });
});

describe('buildEvent', () => {
  it('escapes control characters in the note', () => {
    const ev = buildEvent(client, { type: 'Warning', reason: 'TierUnresolved', note: 'tier "a\u0007\u202eb"' }, { reportingController: 'tokenwarden.io/operator', reportingInstance: 'pod-1', now: NOW, name: 'n' });
    expect(ev.note).toBe('tier "a\\u0007\\u202eb"');
  });

  it('builds an events.k8s.io/v1 Event about a namespaced object', () => {
    const ev = buildEvent(client, { type: 'Normal', reason: 'Issued', note: 'token issued' }, { reportingController: 'tokenwarden.io/operator', reportingInstance: 'pod-1', now: NOW, name: 'n' });
    expect(ev).toEqual({
      apiVersion: 'events.k8s.io/v1',
      kind: 'Event',
      metadata: { name: 'n', namespace: 'team-a' },
      eventTime: '2006-01-02T15:04:05.123000Z',
      reportingController: 'tokenwarden.io/operator',
      reportingInstance: 'pod-1',
      action: 'Issued',
      reason: 'Issued',
      regarding: { apiVersion: 'tokenwarden.io/v1alpha1', kind: 'ServiceAccountClient', namespace: 'team-a', name: 'alice-notebook', uid: 'u-1', resourceVersion: '42' },
      note: 'token issued',
      type: 'Normal',
    });
  });

  it('puts events about cluster-scoped objects in default', () => {
    const ev = buildEvent(tier, { type: 'Warning', reason: 'Invalid', note: 'x', action: 'Validate' }, { reportingController: 'c', reportingInstance: 'i', now: NOW });
    expect(ev.metadata?.namespace).toBe('default');
    expect(ev.regarding.namespace).toBeUndefined();
    expect(ev.action).toBe('Validate');
    expect(eventNamespace(tier)).toBe('default');
  });

  it('truncates the note and the short fields', () => {
    const ev = buildEvent(client, { type: 'Normal', reason: 'R'.repeat(300), note: 'n'.repeat(5000) }, { reportingController: 'c', reportingInstance: 'i'.repeat(300), now: NOW });
    expect(Buffer.byteLength(ev.note)).toBeLessThanOrEqual(1024);
    expect(ev.reason.length).toBe(128);
    expect(ev.action.length).toBe(128);
    expect(ev.reportingInstance.length).toBe(128);
  });

  it('references a related object', () => {
    const ev = buildEvent(client, { type: 'Normal', reason: 'Moved', note: 'x', related: tier }, { reportingController: 'c', reportingInstance: 'i', now: NOW });
    expect(ev.related?.name).toBe('premium');
  });
});

describe('eventName', () => {
  it('is the object name with a unique hex suffix', () => {
    const a = eventName(client, NOW);
    const b = eventName(client, NOW);
    expect(a).toMatch(/^alice-notebook\.[0-9a-f]+$/);
    expect(a).not.toBe(b);
  });

  it('stays within the name length limit', () => {
    const long: KubeObject = { metadata: { name: 'a'.repeat(253) } };
    expect(eventName(long, NOW).length).toBeLessThanOrEqual(253);
  });
});

describe('seriesKey', () => {
  it('is the same for the same object, reason and note, and differs otherwise', () => {
    const k = seriesKey(client, 'Issued', 'n');
    expect(seriesKey({ ...client }, 'Issued', 'n')).toBe(k);
    expect(seriesKey(client, 'Rotated', 'n')).not.toBe(k);
    expect(seriesKey(client, 'Issued', 'other')).not.toBe(k);
    expect(seriesKey(tier, 'Issued', 'n')).not.toBe(k);
  });
});

describe('EventSeriesCache', () => {
  it('finds a repeat within the window and counts from 2', () => {
    const c = new EventSeriesCache(10 * 60_000);
    expect(c.lookup('k', 0)).toBeUndefined();
    c.created('k', 'ns', 'ev1', 0);
    expect(c.lookup('k', 5 * 60_000)?.name).toBe('ev1');
    expect(c.repeated('k', 5 * 60_000)).toEqual({ count: 2 });
    expect(c.repeated('k', 6 * 60_000)).toEqual({ count: 3 });
  });

  it('forgets an entry not observed within the window', () => {
    const c = new EventSeriesCache(10 * 60_000);
    c.created('k', 'ns', 'ev1', 0);
    expect(c.lookup('k', 10 * 60_000 + 1)).toBeUndefined();
    expect(c.size).toBe(0);
  });

  it('measures the window from the last observation', () => {
    const c = new EventSeriesCache(10 * 60_000);
    c.created('k', 'ns', 'ev1', 0);
    c.repeated('k', 9 * 60_000);
    expect(c.lookup('k', 18 * 60_000)?.name).toBe('ev1');
  });

  it('stays bounded, dropping the least recently observed', () => {
    const c = new EventSeriesCache(60_000, 2);
    c.created('a', 'ns', 'a', 0);
    c.created('b', 'ns', 'b', 1);
    c.repeated('a', 2);
    c.created('c', 'ns', 'c', 3);
    expect(c.size).toBe(2);
    expect(c.lookup('b', 4)).toBeUndefined();
    expect(c.lookup('a', 4)).toBeDefined();
    expect(c.lookup('c', 4)).toBeDefined();
  });

  it('forget() drops an entry', () => {
    const c = new EventSeriesCache();
    c.created('k', 'ns', 'ev', 0);
    c.forget('k');
    expect(c.lookup('k', 1)).toBeUndefined();
  });
});

describe('EventRecorder bound', () => {
  /** A client whose writes hang until released: Events pile up as they would behind a slow API server. */
  function stalledClient() {
    const waiting: (() => void)[] = [];
    let creates = 0;
    const client = {
      create: () => {
        creates++;
        return new Promise<never>((resolve) => waiting.push(() => resolve(undefined as never)));
      },
      patch: () => Promise.reject(new Error('not used')),
    };
    return { client, waiting, creates: () => creates };
  }

  it('drops and counts Events beyond maxInFlight pending, and records again once they drain', async () => {
    const { client, waiting, creates } = stalledClient();
    const dropped: string[] = [];
    const recorder = new EventRecorder({ client: client as never, reportingInstance: 'test', maxInFlight: 5, onDropped: (e) => dropped.push(`${e.type}/${e.reason}`) });
    const all = Array.from({ length: 8 }, (_, i) => recorder.warning(client as never as KubeObject, 'IssuanceFailed', `note ${i}`));
    await Promise.resolve();
    expect(recorder.inFlightCount).toBe(5);
    expect(recorder.dropped).toBe(3);
    expect(dropped).toEqual(['Warning/IssuanceFailed', 'Warning/IssuanceFailed', 'Warning/IssuanceFailed']);
    await new Promise((r) => setTimeout(r, 0));
    expect(creates()).toBe(5);
    // Drain: every pending write finishes; the count goes back to zero and Events are recorded again.
    for (const release of waiting.splice(0)) release();
    await Promise.all(all);
    expect(recorder.inFlightCount).toBe(0);
    const next = recorder.normal(tier, 'Ready', 'after the burst');
    await new Promise((r) => setTimeout(r, 0));
    expect(creates()).toBe(6);
    expect(recorder.dropped).toBe(3);
    for (const release of waiting.splice(0)) release();
    await next;
  });

  it('counts repeats of one series waiting behind each other against the bound', async () => {
    const { client, waiting } = stalledClient();
    const recorder = new EventRecorder({ client: client as never, reportingInstance: 'test', maxInFlight: 3 });
    for (let i = 0; i < 5; i++) void recorder.warning(tier, 'Repeated', 'same note');
    expect(recorder.inFlightCount).toBe(3);
    expect(recorder.dropped).toBe(2);
    for (const release of waiting.splice(0)) release();
  });
});
