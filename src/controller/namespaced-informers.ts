/**
 * One informer per namespace of a set that changes at run time, read as one cache.
 *
 * Why: a cluster-wide watch selected by a label caches whatever anyone labels, in any namespace (a
 * tenant's look-alike ServiceAccount, a tenant's 1 MiB ballast). The operator's ServiceAccounts and
 * anchors live only in tier namespaces, which tenants cannot create or label; watching exactly those
 * namespaces keeps everything else out of the cache and out of the operator's decisions, with the API
 * server doing the filtering.
 *
 * setNamespaces() starts an informer for each new namespace and stops the ones no longer wanted; the
 * objects of a namespace that left are handed to the handlers as deletes, as if they were gone. Reads
 * (get, list, byIndex) see the union; the namespace index is answered by the one informer that holds it.
 */
import type { KubeObject } from '../kube/resources.ts';
import type { EventHandler, Informer } from './informer.ts';
import { NAMESPACE_INDEX } from './store.ts';

/**
 * What lastResourceVersion(namespace) says of a namespace no informer watches: nothing there can be
 * waited for (not a number, so reconcilers/cache-freshness.ts counts it as caught up, never stuck).
 */
export const NOT_WATCHED = 'not-watched';

export interface NamespacedInformersOptions<T extends KubeObject> {
  /** The informer of one namespace (not started); it carries the indexes the union answers. */
  make(namespace: string): Informer<T>;
}

export class NamespacedInformers<T extends KubeObject> {
  private readonly opts: NamespacedInformersOptions<T>;
  private readonly informers = new Map<string, Informer<T>>();
  private readonly handlers: EventHandler<T>[] = [];
  private running = false;
  private known = false;
  private knownWaiters: (() => void)[] = [];

  constructor(opts: NamespacedInformersOptions<T>) {
    this.opts = opts;
  }

  /** The namespaces watched now. */
  namespaces(): string[] {
    return [...this.informers.keys()];
  }

  /**
   * Watch exactly these namespaces. A namespace that leaves the set is stopped and its objects are
   * handed to the handlers as deleted (the cache no longer has them).
   */
  setNamespaces(namespaces: Iterable<string>): void {
    const wanted = new Set(namespaces);
    for (const [namespace, informer] of [...this.informers]) {
      if (wanted.has(namespace)) continue;
      this.informers.delete(namespace);
      void informer.stop();
      for (const obj of informer.list()) for (const h of [...this.handlers]) callSafely(() => h.onDelete?.(obj));
    }
    for (const namespace of wanted) {
      if (this.informers.has(namespace)) continue;
      const informer = this.opts.make(namespace);
      for (const h of this.handlers) informer.addEventHandler(h);
      this.informers.set(namespace, informer);
      if (this.running) informer.start();
    }
    if (!this.known) {
      this.known = true;
      this.knownWaiters.splice(0).forEach((resolve) => resolve());
    }
  }

  addEventHandler(handler: EventHandler<T>): () => void {
    this.handlers.push(handler);
    const removers = [...this.informers.values()].map((informer) => informer.addEventHandler(handler));
    return () => {
      const i = this.handlers.indexOf(handler);
      if (i >= 0) this.handlers.splice(i, 1);
      removers.forEach((remove) => remove());
    };
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    for (const informer of this.informers.values()) informer.start();
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all([...this.informers.values()].map((informer) => informer.stop()));
  }

  /** True once the set of namespaces is known and every informer of it has listed. */
  hasSynced(): boolean {
    return this.known && [...this.informers.values()].every((informer) => informer.hasSynced());
  }

  /** Resolves once the set of namespaces is known and every informer of it (even one added meanwhile) has listed. */
  async waitForSync(signal?: AbortSignal): Promise<void> {
    if (!this.known) await new Promise<void>((resolve) => this.knownWaiters.push(resolve));
    for (;;) {
      const pending = [...this.informers.values()].filter((informer) => !informer.hasSynced());
      if (pending.length === 0) return;
      await Promise.all(pending.map((informer) => informer.waitForSync(signal)));
    }
  }

  get(namespace: string | undefined, name: string): T | undefined {
    return namespace === undefined ? undefined : this.informers.get(namespace)?.get(namespace, name);
  }

  getByKey(key: string): T | undefined {
    const slash = key.indexOf('/');
    return slash < 0 ? undefined : this.get(key.slice(0, slash), key.slice(slash + 1));
  }

  list(): T[] {
    return [...this.informers.values()].flatMap((informer) => informer.list());
  }

  byIndex(indexName: string, value: string): T[] {
    if (indexName === NAMESPACE_INDEX) return this.informers.get(value)?.byIndex(indexName, value) ?? [];
    return [...this.informers.values()].flatMap((informer) => informer.byIndex(indexName, value));
  }

  /**
   * The resourceVersion the namespace's informer has read up to ('' before its first list), or
   * NOT_WATCHED. Each namespace has a watch of its own, so there is no one version for the union.
   */
  lastResourceVersion(namespace?: string): string {
    const informer = namespace === undefined ? undefined : this.informers.get(namespace);
    return informer === undefined ? NOT_WATCHED : informer.lastResourceVersion();
  }
}

function callSafely(fn: () => void): void {
  try {
    fn();
  } catch {
    // A handler that throws must not keep the others from hearing of the delete (the Informer logs its own).
  }
}
