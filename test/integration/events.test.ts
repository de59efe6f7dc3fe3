/** EventRecorder against a real API server: valid events.k8s.io/v1 Events, and series for repeats. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventRecorder, type EventObject } from '../../src/controller/events.ts';
import { createLogger } from '../../src/controller/logger.ts';
import { KubeClient } from '../../src/kube/client.ts';
import { CONFIG_MAPS, EVENTS, NAMESPACES, type KubeObject } from '../../src/kube/resources.ts';
import { adminKubeConfig, createTestNamespace } from './support/cluster.ts';

let client: KubeClient;
let ns: string;
const warnings: Record<string, unknown>[] = [];
let recorder: EventRecorder;

beforeAll(async () => {
  client = new KubeClient(adminKubeConfig());
  ns = await createTestNamespace('events');
  const logger = createLogger({ destination: { write: (s: string) => void warnings.push(JSON.parse(s) as Record<string, unknown>) } });
  recorder = new EventRecorder({ client, reportingInstance: 'test-instance', logger });
});

afterAll(async () => {
  await client?.close();
});

async function eventsAbout(namespace: string, name: string): Promise<EventObject[]> {
  const { items } = await client.list<EventObject>(EVENTS, namespace, { fieldSelector: `regarding.name=${name}` });
  return items;
}

describe('EventRecorder', () => {
  it('writes an Event in the object namespace that the API server accepts', async () => {
    const cm = await client.create<KubeObject>(CONFIG_MAPS, ns, { metadata: { name: 'subject' } });
    await recorder.normal(cm, 'Issued', 'token issued for alice');
    expect(warnings).toEqual([]);
    const [ev, ...rest] = await eventsAbout(ns, 'subject');
    expect(rest).toEqual([]);
    expect(ev).toMatchObject({
      reason: 'Issued',
      note: 'token issued for alice',
      type: 'Normal',
      action: 'Issued',
      reportingController: 'tokenwarden.io/operator',
      reportingInstance: 'test-instance',
      regarding: { kind: 'ConfigMap', apiVersion: 'v1', namespace: ns, name: 'subject', uid: cm.metadata?.uid },
    });
    expect(ev?.eventTime).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    expect(ev?.series).toBeUndefined();
  });

  it('turns repeats into a series on one Event', async () => {
    const cm = await client.create<KubeObject>(CONFIG_MAPS, ns, { metadata: { name: 'repeated' } });
    await recorder.warning(cm, 'TierUnresolved', 'no tier matches');
    await recorder.warning(cm, 'TierUnresolved', 'no tier matches');
    await Promise.all([recorder.warning(cm, 'TierUnresolved', 'no tier matches'), recorder.warning(cm, 'TierUnresolved', 'no tier matches')]);
    await recorder.warning(cm, 'TierUnresolved', 'another note');
    expect(warnings).toEqual([]);
    const events = await eventsAbout(ns, 'repeated');
    expect(events.length).toBe(2);
    const series = events.find((e) => e.note === 'no tier matches');
    expect(series?.series?.count).toBe(4);
    expect(series?.series?.lastObservedTime).toMatch(/\.\d{6}Z$/);
  });

  it('writes events about cluster-scoped objects in default, and truncates long notes', async () => {
    const nsObj = await client.get<KubeObject>(NAMESPACES, undefined, ns);
    await recorder.normal(nsObj, 'Checked', 'x'.repeat(3000));
    expect(warnings).toEqual([]);
    const events = await eventsAbout('default', ns);
    expect(events.length).toBe(1);
    expect(events[0]?.note.length).toBeLessThanOrEqual(1024);
  });

  it('logs instead of throwing when the API server refuses the Event', async () => {
    await recorder.normal({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { namespace: 'no-such-namespace-xyz', name: 'x', uid: 'u' } }, 'Issued', 'n');
    expect(warnings.some((w) => w.msg === 'could not record event')).toBe(true);
  });
});
