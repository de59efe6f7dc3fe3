import type { KubeObject } from '../kube/resources.ts';

/**
 * Read-your-writes for informer caches. After the operator writes an object, its cache may still
 * show the older version for a moment; acting on that would, for example, take a token just written
 * for a tampered one. Each write records the resourceVersion it produced, and a reconcile that finds
 * the cache older waits for it to catch up instead.
 *
 * "Caught up" is a property of the cache, not of the object: the object may be gone from it (deleted,
 * or its label removed so the watch no longer selects it) right after the write. Then only the
 * resourceVersion the informer has read up to tells whether that absence is news or a lag.
 */
export class CacheFreshness {
  private readonly written = new Map<string, { version: string; namespace: string | undefined }>();

  /** Remember the version a write produced. `key` names the object, e.g. "Secret/ns/name". */
  wrote(key: string, obj: KubeObject | undefined): void {
    const version = obj?.metadata?.resourceVersion;
    if (version !== undefined) this.written.set(key, { version, namespace: obj?.metadata?.namespace });
  }

  /**
   * True when the cache reflects the operator's last write of the object: the cached copy is at least
   * that new, or the informer has read its watch past that version (so a missing object is really
   * gone, not yet to come). `cacheVersion` may depend on the namespace of the object written: a
   * cache made of one watch per namespace (controller/namespaced-informers.ts) has one per namespace.
   */
  caughtUp(key: string, cached: KubeObject | undefined, cacheVersion: string | ((namespace: string | undefined) => string)): boolean {
    const write = this.written.get(key);
    if (write === undefined) return true;
    const expected = write.version;
    if (typeof cacheVersion === 'function') cacheVersion = cacheVersion(write.namespace);
    const seen = cached?.metadata?.resourceVersion;
    if ((seen !== undefined && newerOrSame(seen, expected)) || (cacheVersion !== '' && newerOrSame(cacheVersion, expected))) {
      this.written.delete(key);
      return true;
    }
    return false;
  }
}

/**
 * resourceVersions are opaque strings, but etcd's are integers: compare them as such, and treat any
 * non-numeric value as fresh so the operator can never wait forever.
 */
export function newerOrSame(seen: string, expected: string): boolean {
  if (!/^\d+$/.test(seen) || !/^\d+$/.test(expected)) return true;
  return BigInt(seen) >= BigInt(expected);
}
