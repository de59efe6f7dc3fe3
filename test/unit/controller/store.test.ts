import { describe, expect, it } from 'vitest';
import { NAMESPACE_INDEX, namespaceIndexFunc, Store } from '../../../src/controller/store.ts';
import type { KubeObject } from '../../../src/kube/resources.ts';

interface Client extends KubeObject {
  spec: { user: string; groups?: string[] };
}

function client(ns: string, name: string, user: string, groups: string[] = [], rv = '1'): Client {
  return { metadata: { namespace: ns, name, resourceVersion: rv }, spec: { user, groups } };
}

const bySubject = (c: Client): string[] => [c.spec.user];
const byGroup = (c: Client): string[] => c.spec.groups ?? [];

describe('Store', () => {
  it('keys namespaced objects as namespace/name and cluster-scoped ones as name', () => {
    const s = new Store<KubeObject>();
    s.upsert({ metadata: { namespace: 'a', name: 'x' } });
    s.upsert({ metadata: { name: 'premium' } });
    expect(s.keys().sort()).toEqual(['a/x', 'premium']);
    expect(s.get('a', 'x')?.metadata?.name).toBe('x');
    expect(s.get(undefined, 'premium')?.metadata?.name).toBe('premium');
    expect(s.getByKey('premium')).toBeDefined();
    expect(s.get('b', 'x')).toBeUndefined();
  });

  it('upsert returns the previous object and replaces it', () => {
    const s = new Store<Client>();
    expect(s.upsert(client('a', 'x', 'alice', [], '1'))).toBeUndefined();
    const old = s.upsert(client('a', 'x', 'alice', [], '2'));
    expect(old?.metadata?.resourceVersion).toBe('1');
    expect(s.get('a', 'x')?.metadata?.resourceVersion).toBe('2');
    expect(s.size).toBe(1);
  });

  it('delete returns the removed object, undefined when absent', () => {
    const s = new Store<Client>();
    s.upsert(client('a', 'x', 'alice'));
    expect(s.delete('a/x')?.spec.user).toBe('alice');
    expect(s.delete('a/x')).toBeUndefined();
    expect(s.size).toBe(0);
    expect(s.has('a/x')).toBe(false);
  });

  it('indexes by a named index function', () => {
    const s = new Store<Client>({ subject: bySubject });
    s.upsert(client('a', 'x', 'alice'));
    s.upsert(client('b', 'y', 'alice'));
    s.upsert(client('a', 'z', 'bob'));
    expect(s.byIndex('subject', 'alice').map((c) => c.metadata?.name).sort()).toEqual(['x', 'y']);
    expect(s.indexKeys('subject', 'bob')).toEqual(['a/z']);
    expect(s.byIndex('subject', 'carol')).toEqual([]);
    expect(s.indexValues('subject').sort()).toEqual(['alice', 'bob']);
  });

  it('moves an object between index values when it changes', () => {
    const s = new Store<Client>({ subject: bySubject });
    s.upsert(client('a', 'x', 'alice'));
    s.upsert(client('a', 'x', 'bob'));
    expect(s.byIndex('subject', 'alice')).toEqual([]);
    expect(s.byIndex('subject', 'bob').map((c) => c.metadata?.name)).toEqual(['x']);
    expect(s.indexValues('subject')).toEqual(['bob']);
  });

  it('removes deleted objects from indexes', () => {
    const s = new Store<Client>({ subject: bySubject });
    s.upsert(client('a', 'x', 'alice'));
    s.delete('a/x');
    expect(s.byIndex('subject', 'alice')).toEqual([]);
    expect(s.indexValues('subject')).toEqual([]);
  });

  it('supports multi-valued indexes', () => {
    const s = new Store<Client>({ group: byGroup });
    s.upsert(client('a', 'x', 'alice', ['g1', 'g2']));
    s.upsert(client('a', 'y', 'bob', ['g2']));
    expect(s.byIndex('group', 'g1').length).toBe(1);
    expect(s.byIndex('group', 'g2').length).toBe(2);
    s.upsert(client('a', 'x', 'alice', ['g3']));
    expect(s.byIndex('group', 'g1')).toEqual([]);
    expect(s.byIndex('group', 'g2').map((c) => c.metadata?.name)).toEqual(['y']);
  });

  it('indexes existing objects when an index is added later', () => {
    const s = new Store<Client>();
    s.upsert(client('a', 'x', 'alice'));
    s.addIndexer('subject', bySubject);
    expect(s.byIndex('subject', 'alice').length).toBe(1);
    expect(() => s.addIndexer('subject', bySubject)).toThrow(/already exists/);
  });

  it('throws on an unknown index name', () => {
    const s = new Store<Client>();
    expect(() => s.byIndex('nope', 'x')).toThrow(/no index/);
  });

  it('replace swaps the whole content and rebuilds indexes', () => {
    const s = new Store<Client>({ subject: bySubject });
    s.upsert(client('a', 'x', 'alice'));
    s.replace([client('b', 'y', 'bob')]);
    expect(s.keys()).toEqual(['b/y']);
    expect(s.byIndex('subject', 'alice')).toEqual([]);
    expect(s.byIndex('subject', 'bob').length).toBe(1);
  });

  it('has a namespace index', () => {
    const s = new Store<KubeObject>({ [NAMESPACE_INDEX]: namespaceIndexFunc });
    s.upsert({ metadata: { namespace: 'a', name: 'x' } });
    s.upsert({ metadata: { namespace: 'a', name: 'y' } });
    s.upsert({ metadata: { name: 'cluster-wide' } });
    expect(s.byIndex(NAMESPACE_INDEX, 'a').length).toBe(2);
    expect(s.indexValues(NAMESPACE_INDEX)).toEqual(['a']);
  });

  it('leaves an object out of an index whose function throws', () => {
    const s = new Store<Client>({
      subject: (c) => {
        if (c.spec.user === 'bad') throw new Error('boom');
        return [c.spec.user];
      },
    });
    s.upsert(client('a', 'x', 'bad'));
    s.upsert(client('a', 'y', 'alice'));
    expect(s.size).toBe(2);
    expect(s.indexValues('subject')).toEqual(['alice']);
    s.delete('a/x');
    expect(s.size).toBe(1);
  });
});
