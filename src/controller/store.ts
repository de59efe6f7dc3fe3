/**
 * The informer's cache: objects by key ("namespace/name", or "name" when cluster-scoped), with
 * named secondary indexes, like client-go's ThreadSafeStore + Indexers.
 *
 * Objects are stored as received; callers must treat them as read-only (copy before changing).
 */
import { objectKey, keyOf, type KubeObject } from '../kube/resources.ts';

/** The index values of an object, e.g. the subject of a client; [] to leave it out of the index. */
export type IndexFunc<T> = (obj: T) => readonly string[];

export type Indexers<T> = Record<string, IndexFunc<T>>;

/** Indexes objects by namespace: byIndex(NAMESPACE_INDEX, "team-a"). */
export const NAMESPACE_INDEX = 'namespace';
export function namespaceIndexFunc(obj: KubeObject): string[] {
  return obj.metadata?.namespace ? [obj.metadata.namespace] : [];
}

export class Store<T extends KubeObject> {
  private readonly items = new Map<string, T>();
  private readonly indexers = new Map<string, IndexFunc<T>>();
  /** index name -> index value -> keys */
  private readonly indices = new Map<string, Map<string, Set<string>>>();

  constructor(indexers: Indexers<T> = {}) {
    for (const [name, fn] of Object.entries(indexers)) this.addIndexer(name, fn);
  }

  /** Adds an index; existing objects are indexed at once. */
  addIndexer(name: string, fn: IndexFunc<T>): void {
    if (this.indexers.has(name)) throw new Error(`index ${JSON.stringify(name)} already exists`);
    this.indexers.set(name, fn);
    const index = new Map<string, Set<string>>();
    this.indices.set(name, index);
    for (const [key, obj] of this.items) addToIndex(index, key, safeValues(fn, obj));
  }

  keyOf(obj: T): string {
    return objectKey(obj);
  }

  /** By key ("ns/name" or "name"). */
  getByKey(key: string): T | undefined {
    return this.items.get(key);
  }

  /** By namespace (undefined or "" for cluster-scoped objects) and name. */
  get(namespace: string | undefined, name: string): T | undefined {
    return this.items.get(keyOf(namespace, name));
  }

  has(key: string): boolean {
    return this.items.has(key);
  }

  list(): T[] {
    return [...this.items.values()];
  }

  keys(): string[] {
    return [...this.items.keys()];
  }

  get size(): number {
    return this.items.size;
  }

  /** Inserts or replaces; returns the previous object under that key. */
  upsert(obj: T): T | undefined {
    const key = this.keyOf(obj);
    const old = this.items.get(key);
    if (old !== undefined) this.unindex(key, old);
    this.items.set(key, obj);
    this.index(key, obj);
    return old;
  }

  /** Removes by key; returns the removed object. */
  delete(key: string): T | undefined {
    const old = this.items.get(key);
    if (old === undefined) return undefined;
    this.unindex(key, old);
    this.items.delete(key);
    return old;
  }

  /** Replaces the whole content (indexes rebuilt). */
  replace(objects: Iterable<T>): void {
    this.items.clear();
    for (const index of this.indices.values()) index.clear();
    for (const obj of objects) this.upsert(obj);
  }

  /** Objects whose index function returned `value` for index `indexName`. */
  byIndex(indexName: string, value: string): T[] {
    const out: T[] = [];
    for (const key of this.indexKeys(indexName, value)) {
      const obj = this.items.get(key);
      if (obj !== undefined) out.push(obj);
    }
    return out;
  }

  /** Keys whose index function returned `value` for index `indexName`. */
  indexKeys(indexName: string, value: string): string[] {
    const index = this.indices.get(indexName);
    if (!index) throw new Error(`no index named ${JSON.stringify(indexName)}`);
    return [...(index.get(value) ?? [])];
  }

  /** Every value present in an index. */
  indexValues(indexName: string): string[] {
    const index = this.indices.get(indexName);
    if (!index) throw new Error(`no index named ${JSON.stringify(indexName)}`);
    return [...index.keys()];
  }

  private index(key: string, obj: T): void {
    for (const [name, fn] of this.indexers) {
      const index = this.indices.get(name);
      if (index) addToIndex(index, key, safeValues(fn, obj));
    }
  }

  private unindex(key: string, obj: T): void {
    for (const [name, fn] of this.indexers) {
      const index = this.indices.get(name);
      if (!index) continue;
      for (const value of safeValues(fn, obj)) {
        const keys = index.get(value);
        if (!keys) continue;
        keys.delete(key);
        if (keys.size === 0) index.delete(value);
      }
    }
  }
}

function addToIndex(index: Map<string, Set<string>>, key: string, values: readonly string[]): void {
  for (const value of values) {
    let keys = index.get(value);
    if (!keys) {
      keys = new Set();
      index.set(value, keys);
    }
    keys.add(key);
  }
}

/** An index function that throws leaves the object out of that index rather than breaking the cache. */
function safeValues<T>(fn: IndexFunc<T>, obj: T): readonly string[] {
  try {
    return fn(obj);
  } catch {
    return [];
  }
}
