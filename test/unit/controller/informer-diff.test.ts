import { describe, expect, it } from 'vitest';
import { dictionaryObjects } from '../support/v8-shape.ts';
import { LAST_APPLIED_ANNOTATION, auditDisagreements, diffSnapshot, isGoneStatus, olderResourceVersion, slimMetadata } from '../../../src/controller/informer.ts';
import type { KubeObject } from '../../../src/kube/resources.ts';

function obj(name: string, rv: string, uid = `uid-${name}`, namespace: string | undefined = 'ns'): KubeObject {
  return { metadata: { name, namespace, resourceVersion: rv, uid } };
}

const names = (objs: KubeObject[]): string[] => objs.map((o) => o.metadata?.name ?? '').sort();

describe('diffSnapshot', () => {
  it('reports everything as added against an empty cache', () => {
    const d = diffSnapshot([], [obj('a', '1'), obj('b', '2')]);
    expect(names(d.added)).toEqual(['a', 'b']);
    expect(d.updated).toEqual([]);
    expect(d.deleted).toEqual([]);
  });

  it('reports nothing when nothing changed', () => {
    const cached = [obj('a', '1'), obj('b', '2')];
    const d = diffSnapshot(cached, [obj('a', '1'), obj('b', '2')]);
    expect(d).toEqual({ added: [], updated: [], deleted: [] });
  });

  it('reports an update, with old and new, when the resourceVersion changed', () => {
    const oldA = obj('a', '1');
    const newA = obj('a', '5');
    const d = diffSnapshot([oldA, obj('b', '2')], [newA, obj('b', '2')]);
    expect(d.updated).toEqual([{ oldObj: oldA, newObj: newA }]);
    expect(d.added).toEqual([]);
    expect(d.deleted).toEqual([]);
  });

  it('reports objects that vanished as deleted, with their last known state', () => {
    const b = obj('b', '2');
    const d = diffSnapshot([obj('a', '1'), b], [obj('a', '1')]);
    expect(d.deleted).toEqual([b]);
  });

  it('reports everything as deleted when the list is empty', () => {
    const d = diffSnapshot([obj('a', '1'), obj('b', '2')], []);
    expect(names(d.deleted)).toEqual(['a', 'b']);
  });

  it('reports a recreated object (new uid) as delete + add, not update', () => {
    const old = obj('a', '1', 'uid-1');
    const recreated = obj('a', '9', 'uid-2');
    const d = diffSnapshot([old], [recreated]);
    expect(d.deleted).toEqual([old]);
    expect(d.added).toEqual([recreated]);
    expect(d.updated).toEqual([]);
  });

  it('handles adds, updates and deletes together', () => {
    const d = diffSnapshot([obj('keep', '1'), obj('change', '1'), obj('gone', '1')], [obj('keep', '1'), obj('change', '2'), obj('new', '1')]);
    expect(names(d.added)).toEqual(['new']);
    expect(d.updated.map((u) => u.newObj.metadata?.name)).toEqual(['change']);
    expect(names(d.deleted)).toEqual(['gone']);
  });

  it('keys by namespace and name: the same name in two namespaces is two objects', () => {
    const d = diffSnapshot([obj('a', '1', 'u1', 'ns1')], [obj('a', '1', 'u1', 'ns1'), obj('a', '1', 'u2', 'ns2')]);
    expect(d.added.map((o) => o.metadata?.namespace)).toEqual(['ns2']);
    expect(d.deleted).toEqual([]);
  });

  it('handles cluster-scoped objects', () => {
    const d = diffSnapshot([obj('premium', '1', 'u', undefined)], [obj('premium', '2', 'u', undefined)]);
    expect(d.updated.length).toBe(1);
  });
});

describe('isGoneStatus', () => {
  it('recognizes 410 and reason Expired', () => {
    expect(isGoneStatus({ kind: 'Status', code: 410, reason: 'Expired', message: 'too old resource version' })).toBe(true);
    expect(isGoneStatus({ code: 410 })).toBe(true);
    expect(isGoneStatus({ reason: 'Expired' })).toBe(true);
  });

  it('rejects other errors', () => {
    expect(isGoneStatus({ code: 500, reason: 'InternalError' })).toBe(false);
    expect(isGoneStatus(undefined)).toBe(false);
  });
});

describe('slimMetadata', () => {
  it('removes metadata.managedFields and keeps the rest', () => {
    const o = { metadata: { name: 'a', managedFields: [{ manager: 'x' }] } } as KubeObject;
    const out = slimMetadata(o);
    expect(out.metadata).toEqual({ name: 'a' });
  });

  it('drops managedFields and the last-applied annotation, keeping every other annotation and label', () => {
    const obj = {
      metadata: {
        name: 'a',
        labels: { x: '1' },
        annotations: { [LAST_APPLIED_ANNOTATION]: '{"big":"copy"}', 'tokenwarden.io/renew-at': 't' },
        managedFields: [{ manager: 'kubectl' }],
      },
      spec: { v: 1 },
    };
    expect(slimMetadata(obj as KubeObject)).toEqual({ metadata: { name: 'a', labels: { x: '1' }, annotations: { 'tokenwarden.io/renew-at': 't' } }, spec: { v: 1 } });
  });

  it('removes an annotations map left empty', () => {
    const obj = { metadata: { name: 'a', annotations: { [LAST_APPLIED_ANNOTATION]: '{}' } } };
    expect(slimMetadata(obj as KubeObject).metadata).toEqual({ name: 'a' });
  });

  it('builds what it keeps whole: no object of the result is a V8 dictionary, as a delete would leave it', () => {
    const text = JSON.stringify({
      apiVersion: 'v1',
      kind: 'ServiceAccount',
      metadata: {
        name: 'a',
        namespace: 'n',
        uid: 'u',
        resourceVersion: '7',
        annotations: { [LAST_APPLIED_ANNOTATION]: '{}', 'tokenwarden.io/user': 'alice', 'example.com/owner': 'team-a' },
        labels: { 'app.kubernetes.io/managed-by': 'tokenwarden' },
        managedFields: [{ manager: 'kubectl' }],
      },
    });
    const out = slimMetadata(JSON.parse(text) as KubeObject);
    expect(out.metadata).toEqual({ name: 'a', namespace: 'n', uid: 'u', resourceVersion: '7', annotations: { 'tokenwarden.io/user': 'alice', 'example.com/owner': 'team-a' }, labels: { 'app.kubernetes.io/managed-by': 'tokenwarden' } });
    expect(dictionaryObjects(out)).toEqual([]);
  });
});

describe('audit', () => {
  const stamp = (key: string, resourceVersion: string, uid = `uid-${key}`) => ({ key, uid, resourceVersion });
  const cacheOf = (entries: ReturnType<typeof stamp>[]) => {
    const m = new Map(entries.map((e) => [e.key, { uid: e.uid, resourceVersion: e.resourceVersion }]));
    return { get: (k: string) => m.get(k), keys: [...m.keys()] };
  };

  it('orders integer resourceVersions, and counts anything else as older unless equal', () => {
    expect(olderResourceVersion('9', '10')).toBe(true);
    expect(olderResourceVersion('10', '9')).toBe(false);
    expect(olderResourceVersion('10', '10')).toBe(false);
    expect(olderResourceVersion('abc', 'abd')).toBe(true);
    expect(olderResourceVersion('abc', 'abc')).toBe(false);
    expect(olderResourceVersion(undefined, '1')).toBe(true);
  });

  it('agrees with a cache equal to the list, or ahead of it (the watch delivered newer versions)', () => {
    const c = cacheOf([stamp('ns/a', '10'), stamp('ns/b', '25'), stamp('ns/new', '30')]);
    expect(auditDisagreements(c.get, c.keys, [stamp('ns/a', '10'), stamp('ns/b', '20')], '20')).toEqual([]);
  });

  it('finds an update, an add and a delete the cache missed, and a recreated object', () => {
    const c = cacheOf([stamp('ns/stale', '5'), stamp('ns/deleted', '6'), stamp('ns/recreated', '7', 'old-uid')]);
    const listed = [stamp('ns/stale', '12'), stamp('ns/added', '13'), stamp('ns/recreated', '14', 'new-uid')];
    expect(auditDisagreements(c.get, c.keys, listed, '20').sort()).toEqual(['ns/added', 'ns/deleted', 'ns/recreated', 'ns/stale']);
  });
});
