/**
 * The informer against a real API server: it sees adds, updates and deletes; a stop/start
 * emits what changed meanwhile; a too-old resourceVersion (410) leads to a relist; a watch the
 * server closes, or one that goes silent past the watchdog, is restarted without losing events; an
 * event lost on the way is repaired by the periodic relist. And CacheFreshness over it: a write is
 * "seen" once the informer has read past it, also when the object has left the cache meanwhile.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Informer, type ListWatcher } from '../../src/controller/informer.ts';
import { createLogger } from '../../src/controller/logger.ts';
import { KubeClient } from '../../src/kube/client.ts';
import { isAlreadyExists } from '../../src/kube/errors.ts';
import { CONFIG_MAPS, resourceType, type KubeObject } from '../../src/kube/resources.ts';
import { CacheFreshness } from '../../src/reconcilers/cache-freshness.ts';
import { adminKubeConfig, createTestNamespace, waitFor } from './support/cluster.ts';

interface ConfigMap extends KubeObject {
  data?: Record<string, string>;
}

const LABEL = 'tokenwarden.io/informer-test';

type Seen = { kind: 'add' | 'update' | 'delete'; name: string; data?: string; oldData?: string };

function recorder(): { seen: Seen[]; handler: Parameters<Informer<ConfigMap>['addEventHandler']>[0] } {
  const seen: Seen[] = [];
  return {
    seen,
    handler: {
      onAdd: (o) => seen.push({ kind: 'add', name: o.metadata?.name ?? '', data: o.data?.v }),
      onUpdate: (old, o) => seen.push({ kind: 'update', name: o.metadata?.name ?? '', data: o.data?.v, oldData: old.data?.v }),
      onDelete: (o) => seen.push({ kind: 'delete', name: o.metadata?.name ?? '', data: o.data?.v }),
    },
  };
}

function logCapture(): { lines: Record<string, unknown>[]; logger: ReturnType<typeof createLogger> } {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({ level: 'debug', destination: { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) } });
  return { lines, logger };
}

let client: KubeClient;
let ns: string;

const CRDS = resourceType('apiextensions.k8s.io', 'v1', 'customresourcedefinitions', 'CustomResourceDefinition', false);
const WIDGET_GROUP = 'informer-test.tokenwarden.io';
const WIDGETS = resourceType(WIDGET_GROUP, 'v1', 'widgets', 'Widget', true);

/** A throwaway namespaced CRD (shared by the run; deleted with the control plane). */
async function ensureWidgetCrd(): Promise<void> {
  const name = `widgets.${WIDGET_GROUP}`;
  try {
    await client.create(CRDS, undefined, {
      metadata: { name },
      spec: {
        group: WIDGET_GROUP,
        scope: 'Namespaced',
        names: { plural: 'widgets', singular: 'widget', kind: 'Widget', listKind: 'WidgetList' },
        versions: [{ name: 'v1', served: true, storage: true, schema: { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } } }],
      },
    } as KubeObject);
  } catch (err) {
    if (!isAlreadyExists(err)) throw err;
  }
  await waitFor(
    async () => {
      const crd = await client.get<KubeObject & { status?: { conditions?: { type: string; status: string }[] } }>(CRDS, undefined, name);
      return crd.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True');
    },
    { description: 'the Widget CRD to be established' },
  );
  await waitFor(async () => (await client.list(WIDGETS, ns)).resourceVersion !== '', { description: 'widgets to be served' });
}

const cm = (name: string, v: string): ConfigMap => ({ metadata: { name, labels: { [LABEL]: 'yes' } }, data: { v } });
const has = (seen: Seen[], s: Partial<Seen>): boolean => seen.some((e) => Object.entries(s).every(([k, v]) => e[k as keyof Seen] === v));

beforeAll(async () => {
  client = new KubeClient(adminKubeConfig());
  ns = await createTestNamespace('informer');
});

afterAll(async () => {
  await client?.close();
});

describe('Informer', () => {
  it('lists, then sees adds, updates and deletes', async () => {
    await client.create(CONFIG_MAPS, ns, cm('pre', '0'));
    const { seen, handler } = recorder();
    const inf = new Informer<ConfigMap>({ client, type: CONFIG_MAPS, namespace: ns, labelSelector: `${LABEL}=yes`, handlers: [handler] });
    inf.start();
    try {
      await inf.waitForSync(AbortSignal.timeout(20_000));
      expect(inf.hasSynced()).toBe(true);
      expect(seen).toEqual([{ kind: 'add', name: 'pre', data: '0' }]);
      expect(inf.get(ns, 'pre')?.data?.v).toBe('0');
      expect(inf.get(ns, 'pre')?.kind).toBe('ConfigMap');

      await client.create(CONFIG_MAPS, ns, cm('a', '1'));
      await waitFor(async () => has(seen, { kind: 'add', name: 'a', data: '1' }), { description: 'add of a' });
      await client.patch(CONFIG_MAPS, ns, 'a', { data: { v: '2' } });
      await waitFor(async () => has(seen, { kind: 'update', name: 'a', data: '2', oldData: '1' }), { description: 'update of a' });
      expect(inf.get(ns, 'a')?.data?.v).toBe('2');
      await client.delete(CONFIG_MAPS, ns, 'a');
      await waitFor(async () => has(seen, { kind: 'delete', name: 'a' }), { description: 'delete of a' });
      expect(inf.get(ns, 'a')).toBeUndefined();

      // A ConfigMap without the label is not ours.
      await client.create(CONFIG_MAPS, ns, { metadata: { name: 'unlabelled' }, data: { v: 'x' } });
      await client.create(CONFIG_MAPS, ns, cm('after', '1'));
      await waitFor(async () => has(seen, { kind: 'add', name: 'after' }), { description: 'add of after' });
      expect(has(seen, { name: 'unlabelled' })).toBe(false);
    } finally {
      await inf.stop();
    }
  });

  it('emits what changed while it was stopped when started again', async () => {
    const sub = await createTestNamespace('informer-restart');
    await client.create(CONFIG_MAPS, sub, cm('stays', '1'));
    await client.create(CONFIG_MAPS, sub, cm('changes', '1'));
    await client.create(CONFIG_MAPS, sub, cm('goes', '1'));
    const { seen, handler } = recorder();
    const inf = new Informer<ConfigMap>({ client, type: CONFIG_MAPS, namespace: sub, labelSelector: `${LABEL}=yes`, handlers: [handler] });
    inf.start();
    try {
      await inf.waitForSync(AbortSignal.timeout(20_000));
      expect(seen.filter((s) => s.kind === 'add').length).toBe(3);
      await inf.stop();
      seen.length = 0;

      await client.patch(CONFIG_MAPS, sub, 'changes', { data: { v: '2' } });
      await client.delete(CONFIG_MAPS, sub, 'goes');
      await client.create(CONFIG_MAPS, sub, cm('new', '1'));
      await new Promise((r) => setTimeout(r, 200));
      expect(seen).toEqual([]);

      inf.start();
      await waitFor(async () => seen.length >= 3, { description: 'the diff after restart' });
      await new Promise((r) => setTimeout(r, 300));
      expect(seen.sort((a, b) => a.name.localeCompare(b.name))).toEqual([
        { kind: 'update', name: 'changes', data: '2', oldData: '1' },
        { kind: 'delete', name: 'goes', data: '1' },
        { kind: 'add', name: 'new', data: '1' },
      ]);
      expect(inf.list().map((o) => o.metadata?.name).sort()).toEqual(['changes', 'new', 'stays']);

      await client.create(CONFIG_MAPS, sub, cm('live', '1'));
      await waitFor(async () => has(seen, { kind: 'add', name: 'live' }), { description: 'watch after restart' });
    } finally {
      await inf.stop();
    }
  });

  it('relists when the watch starts from a too-old resourceVersion (410 Gone)', async () => {
    // A custom resource: its watch cache starts when the CRD is established, so resourceVersion 1
    // is older than anything it holds and the API server answers 410 (configmaps' cache, started
    // with the cluster, would still accept it on a fresh control plane).
    await ensureWidgetCrd();
    const sub = await createTestNamespace('informer-gone');
    const { lines, logger } = logCapture();
    const { seen, handler } = recorder();
    const inf = new Informer<ConfigMap>({ client, type: WIDGETS, namespace: sub, handlers: [handler], logger });
    inf.start();
    try {
      await inf.waitForSync(AbortSignal.timeout(20_000));
      expect(lines.filter((l) => l.msg === 'listed').length).toBe(1);
      await client.create(WIDGETS, sub, { metadata: { name: 'before' }, data: { v: '1' } } as ConfigMap);
      await waitFor(async () => has(seen, { kind: 'add', name: 'before' }), { description: 'add of before' });

      inf.restartWatch('1');
      await waitFor(async () => lines.some((l) => l.msg === 'resourceVersion too old; relisting'), { description: 'the 410' });
      await waitFor(async () => lines.filter((l) => l.msg === 'listed').length === 2, { description: 'the relist' });
      expect(inf.lastResourceVersion()).not.toBe('1');
      // The relist found nothing new: no duplicate add.
      expect(seen.filter((s) => s.name === 'before').length).toBe(1);

      // And it keeps watching afterwards.
      await client.create(WIDGETS, sub, { metadata: { name: 'after-gone' }, data: { v: '1' } } as ConfigMap);
      await waitFor(async () => has(seen, { kind: 'add', name: 'after-gone' }), { description: 'add after the relist' });
      expect(seen.filter((s) => s.name === 'after-gone').length).toBe(1);
    } finally {
      await inf.stop();
    }
  });

  it('restarts watches the server closes, and watches the watchdog finds silent', async () => {
    const sub = await createTestNamespace('informer-restarts');
    const { lines, logger } = logCapture();
    const { seen, handler } = recorder();
    const inf = new Informer<ConfigMap>({
      client,
      type: CONFIG_MAPS,
      namespace: sub,
      labelSelector: `${LABEL}=yes`,
      handlers: [handler],
      logger,
      watchTimeoutSeconds: [1, 1],
      watchdogMs: 60_000,
    });
    const silent = new Informer<ConfigMap>({ client, type: CONFIG_MAPS, namespace: sub, labelSelector: `${LABEL}=yes`, logger, watchdogMs: 700 });
    inf.start();
    silent.start();
    try {
      await inf.waitForSync(AbortSignal.timeout(20_000));
      await silent.waitForSync(AbortSignal.timeout(20_000));
      await waitFor(async () => lines.filter((l) => l.msg === 'watch closed; restarting').length >= 2, { description: 'server-side closes', timeoutMs: 20_000 });
      await waitFor(async () => lines.some((l) => l.msg === 'watch silent too long; restarting'), { description: 'the watchdog', timeoutMs: 20_000 });
      await client.create(CONFIG_MAPS, sub, cm('still-seen', '1'));
      await waitFor(async () => has(seen, { kind: 'add', name: 'still-seen' }), { description: 'add across restarts' });
      await waitFor(async () => silent.get(sub, 'still-seen') !== undefined, { description: 'the silent informer caught up' });
      // Restarts from the last resourceVersion: no relist, no duplicate add.
      expect(lines.filter((l) => l.msg === 'listed').length).toBe(2);
      expect(seen.filter((s) => s.name === 'still-seen').length).toBe(1);
    } finally {
      await inf.stop();
      await silent.stop();
    }
  });

  it('repairs an event lost on the way by the periodic relist', async () => {
    const sub = await createTestNamespace('informer-resync');
    await client.create(CONFIG_MAPS, sub, cm('lost', '1'));
    // The real API server, seen through a connection that drops every MODIFIED event of "lost": what
    // a stalled proxy or a half-dead connection does. Only a fresh list can bring the change in.
    const lossy: ListWatcher = {
      list: (type, namespace, opts) => client.list(type, namespace, opts),
      watch: (type, namespace, query, onEvent, onDone) =>
        client.watch(type, namespace, query, (e) => (e.type === 'MODIFIED' && (e.object as KubeObject).metadata?.name === 'lost' ? undefined : onEvent(e as never)), onDone),
    };
    const { lines, logger } = logCapture();
    const { seen, handler } = recorder();
    const relisting = new Informer<ConfigMap>({ client: lossy, type: CONFIG_MAPS, namespace: sub, labelSelector: `${LABEL}=yes`, handlers: [handler], logger, resyncPeriodMs: 1_500, auditGraceMs: 500 });
    const never = new Informer<ConfigMap>({ client: lossy, type: CONFIG_MAPS, namespace: sub, labelSelector: `${LABEL}=yes`, resyncPeriodMs: 0 });
    relisting.start();
    never.start();
    try {
      await relisting.waitForSync(AbortSignal.timeout(20_000));
      await never.waitForSync(AbortSignal.timeout(20_000));
      await client.patch(CONFIG_MAPS, sub, 'lost', { data: { v: '2' } });
      await waitFor(async () => has(seen, { kind: 'update', name: 'lost', data: '2', oldData: '1' }), { description: 'the lost update, from the relist', timeoutMs: 15_000 });
      expect(relisting.get(sub, 'lost')?.data?.v).toBe('2');
      expect(lines.filter((l) => l.msg === 'listed').length).toBeGreaterThanOrEqual(2);
      // The audit found the miss and relisted.
      expect(relisting.audits.relisted).toBeGreaterThanOrEqual(1);
      expect(lines.some((l) => l.msg === 'audit: the cache missed changes; relisting' && l.missed === 1)).toBe(true);
      // Without the relist the change never arrives: the loss is real, the relist is what repaired it.
      expect(never.get(sub, 'lost')?.data?.v).toBe('1');
    } finally {
      await relisting.stop();
      await never.stop();
    }
  });

  it('at rest, audits with a metadata-only list and never relists; a change the watch delivers is no miss', async () => {
    const sub = await createTestNamespace('informer-audit');
    for (let i = 0; i < 5; i++) await client.create(CONFIG_MAPS, sub, { ...cm(`quiet-${i}`, 'x'.repeat(10_000)) });
    const lists: { metadataOnly: boolean; bytesOfData: number }[] = [];
    const counting: ListWatcher = {
      list: async <T extends KubeObject>(type: Parameters<ListWatcher['list']>[0], namespace?: string, opts?: Parameters<ListWatcher['list']>[2]) => {
        const res = await client.list<T>(type, namespace, opts);
        lists.push({ metadataOnly: opts?.metadataOnly === true, bytesOfData: res.items.reduce((n, o) => n + ((o as ConfigMap).data ? JSON.stringify((o as ConfigMap).data).length : 0), 0) });
        return res;
      },
      watch: (type, namespace, query, onEvent, onDone) => client.watch(type, namespace, query, onEvent, onDone),
    };
    const { lines, logger } = logCapture();
    const inf = new Informer<ConfigMap>({ client: counting, type: CONFIG_MAPS, namespace: sub, labelSelector: `${LABEL}=yes`, logger, resyncPeriodMs: 700, auditGraceMs: 3_000 });
    inf.start();
    try {
      await inf.waitForSync(AbortSignal.timeout(20_000));
      // A change delivered by the watch meanwhile: the audit may see the cache behind for a moment, and must wait for it.
      await client.patch(CONFIG_MAPS, sub, 'quiet-0', { data: { v: 'changed' } });
      await waitFor(async () => inf.audits.agreed >= 3, { description: 'three audits', timeoutMs: 20_000 });
      expect(inf.audits.relisted).toBe(0);
      expect(lines.filter((l) => l.msg === 'listed')).toHaveLength(1);
      expect(inf.get(sub, 'quiet-0')?.data?.v).toBe('changed');
      // The one full list is the first; every audit list carried metadata only, no data.
      expect(lists[0]).toEqual({ metadataOnly: false, bytesOfData: expect.any(Number) as number });
      expect(lists[0]?.bytesOfData).toBeGreaterThan(50_000);
      expect(lists.slice(1).length).toBeGreaterThanOrEqual(3);
      expect(lists.slice(1).every((l) => l.metadataOnly && l.bytesOfData === 0)).toBe(true);
    } finally {
      await inf.stop();
    }
  });

  it('rejects waitForSync when stopped before it synced, and honours an abort signal', async () => {
    const inf = new Informer<ConfigMap>({ client, type: CONFIG_MAPS, namespace: ns });
    const ac = new AbortController();
    const aborted = inf.waitForSync(ac.signal);
    ac.abort(new Error('gave up'));
    await expect(aborted).rejects.toThrow('gave up');
    inf.start();
    const pending = inf.waitForSync();
    await inf.stop();
    if (!inf.hasSynced()) await expect(pending).rejects.toThrow(/stopped before it synced/);
    else await expect(pending).resolves.toBeUndefined();
  });
});

describe('CacheFreshness over a real informer', () => {
  // Found by the fight fault test: the operator wrote a client's Secret, the fighter deleted it before
  // a reconcile looked, and the reconcile waited for a version of the Secret that would never come.
  it('waits for the informer to read past a write, and then also takes an object gone from the cache as seen', async () => {
    const sub = await createTestNamespace('freshness');
    const inf = new Informer<ConfigMap>({ client, type: CONFIG_MAPS, namespace: sub, labelSelector: `${LABEL}=yes` });
    const freshness = new CacheFreshness();
    const caughtUp = (name: string): boolean => freshness.caughtUp(`ConfigMap/${sub}/${name}`, inf.get(sub, name), inf.lastResourceVersion());
    inf.start();
    try {
      await inf.waitForSync(AbortSignal.timeout(20_000));
      await client.create(CONFIG_MAPS, sub, cm('deleted', '1'));
      await client.create(CONFIG_MAPS, sub, cm('unlabelled', '1'));
      await waitFor(async () => inf.get(sub, 'deleted') !== undefined && inf.get(sub, 'unlabelled') !== undefined, { description: 'both ConfigMaps in the cache' });

      // While the informer is stopped it cannot have read the writes: not caught up.
      await inf.stop();
      freshness.wrote(`ConfigMap/${sub}/deleted`, await client.patch<ConfigMap>(CONFIG_MAPS, sub, 'deleted', { data: { v: '2' } }));
      freshness.wrote(`ConfigMap/${sub}/unlabelled`, await client.patch<ConfigMap>(CONFIG_MAPS, sub, 'unlabelled', { data: { v: '2' } }));
      expect(caughtUp('deleted'), 'a write the cache has not seen').toBe(false);
      expect(caughtUp('unlabelled'), 'a write the cache has not seen').toBe(false);

      // Someone else removes them from the cache's view before it looks: one deleted, one unlabelled.
      await client.delete(CONFIG_MAPS, sub, 'deleted');
      await client.patch(CONFIG_MAPS, sub, 'unlabelled', { metadata: { labels: { [LABEL]: null } } });
      inf.start();
      await waitFor(async () => inf.get(sub, 'deleted') === undefined && inf.get(sub, 'unlabelled') === undefined, { description: 'both gone from the cache' });
      expect(caughtUp('deleted'), 'a written object deleted since').toBe(true);
      expect(caughtUp('unlabelled'), 'a written object that left the label selection since').toBe(true);
    } finally {
      await inf.stop();
    }
  });
});
