import type { KubeObject } from '../kube/resources.ts';

/**
 * Read-your-writes for informer caches. After the operator writes an object, its cache may still
 * show the older version for a moment; acting on that would, for example, take a token just written
 * for a tampered one. Each write records the resourceVersion it produced, and a reconcile that finds
 * the cache older waits for it to catch up instead.
 */
export class CacheFreshness {
  private readonly written = new Map<string, string>();

  /** Remember the version a write produced. `key` names the object, e.g. "Secret/ns/name". */
  wrote(key: string, obj: KubeObject | undefined): void {
    const version = obj?.metadata?.resourceVersion;
    if (version !== undefined) this.written.set(key, version);
  }

  /** Forget an object the operator deleted. */
  forget(key: string): void {
    this.written.delete(key);
  }

  /** True when the cached object is at least as new as the operator's last write of it. */
  caughtUp(key: string, cached: KubeObject | undefined): boolean {
    const expected = this.written.get(key);
    if (expected === undefined) return true;
    const seen = cached?.metadata?.resourceVersion;
    if (seen === undefined) return false;
    if (newerOrSame(seen, expected)) {
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
