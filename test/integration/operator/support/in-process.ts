/**
 * The client reconciler driven step by step from a test, against the real API server: real
 * informers (the operator's caches, with the indexes operator.ts gives them), the real reconcile
 * functions, and the operator's own identity. No controller runs, so nothing reconciles unless the
 * test says so, and a test can hand a reconcile a cache view frozen at an earlier moment: the way to
 * make a race between the cache and the API server happen every time instead of now and then.
 *
 * The Tiers come from a real operator process (its selector); the clients of this instance carry a
 * label of their own (`selector`), so that operator never reconciles them.
 */
import { KubeConfig } from '@kubernetes/client-node';
import type { ServiceAccountClient, Tier } from '../../../../src/api/index.ts';
import type { ReconcileContext, ReconcileResult } from '../../../../src/controller/controller.ts';
import { EventRecorder } from '../../../../src/controller/events.ts';
import { Informer } from '../../../../src/controller/informer.ts';
import { silentLogger } from '../../../../src/controller/logger.ts';
import { NAMESPACE_INDEX, namespaceIndexFunc, type Indexers } from '../../../../src/controller/store.ts';
import { KubeClient } from '../../../../src/kube/client.ts';
import { TIERS, type KubeObject } from '../../../../src/kube/resources.ts';
import { buildCaches, startCaches, stopCaches } from '../../../../src/operator.ts';
import { recordedUses } from '../../../../src/policy/service-account-use.ts';
import { CacheFreshness } from '../../../../src/reconcilers/cache-freshness.ts';
import { UnusedAnchors } from '../../../../src/reconcilers/unused-anchors.ts';
import { INDEX, type CachedSecret, type Caches, type OperatorContext, type ServiceAccount } from '../../../../src/reconcilers/context.ts';
import { CLIENT_UID_LABEL } from '../../../../src/reconcilers/labels.ts';
import { noopTokenMetrics } from '../../../../src/reconcilers/metrics.ts';
import { serviceAccountClientReconciler } from '../../../../src/reconcilers/service-account-client.ts';
import { kubeconfigPath } from '../../support/cluster.ts';
import { asServiceAccount, operatorServiceAccountKubeconfig } from '../../support/rbac.ts';

type Client = ServiceAccountClient;

const clientIndexers: Indexers<Client> = {
  [INDEX.clientByNamespace]: namespaceIndexFunc,
  [INDEX.clientByServiceAccount]: (c) => (c.status?.serviceAccount ? [`${c.status.serviceAccount.namespace}/${c.status.serviceAccount.name}`] : []),
  [INDEX.clientByTier]: (c) => (c.status?.tier ? [c.status.tier] : []),
  [INDEX.clientByUid]: (c) => (c.metadata.uid ? [c.metadata.uid] : []),
  [INDEX.clientBySecret]: (c) => [`${c.metadata.namespace}/${c.spec.secretName ?? `${c.metadata.name}-token`}`],
};
const serviceAccountIndexers: Indexers<ServiceAccount> = {
  [NAMESPACE_INDEX]: namespaceIndexFunc,
  [INDEX.serviceAccountByClientUid]: (sa) => recordedUses(sa.metadata?.annotations).map((use) => use.clientUid),
};
const anchorIndexers: Indexers<CachedSecret> = {
  [NAMESPACE_INDEX]: namespaceIndexFunc,
  [INDEX.anchorByClientUid]: (s) => {
    const uid = s.metadata?.labels?.[CLIENT_UID_LABEL];
    return uid ? [uid] : [];
  },
};

/** A cache as it was, or as the test makes it: the objects given, indexed as the informer does. */
export class FrozenView<T extends KubeObject> {
  private readonly objects: T[];
  private readonly indexers: Indexers<T>;
  private readonly resourceVersion: string;
  constructor(objects: T[], indexers: Indexers<T>, resourceVersion: string) {
    this.objects = objects;
    this.indexers = indexers;
    this.resourceVersion = resourceVersion;
  }
  get(namespace: string | undefined, name: string): T | undefined {
    return this.objects.find((o) => (o.metadata?.namespace ?? undefined) === (namespace ?? undefined) && o.metadata?.name === name);
  }
  list(): T[] {
    return [...this.objects];
  }
  byIndex(index: string, value: string): T[] {
    const fn = this.indexers[index];
    return fn === undefined ? [] : this.objects.filter((o) => fn(o).includes(value));
  }
  /** The same for every namespace: a frozen view has read up to one moment. */
  lastResourceVersion(_namespace?: string): string {
    return this.resourceVersion;
  }
  hasSynced(): boolean {
    return true;
  }
}

/** The version the anchors' cache has read up to, when it watches one tier namespace (this harness's tests use one tier). */
function anchorVersion(caches: Caches): string {
  const [namespace, ...others] = caches.anchors.namespaces();
  if (namespace === undefined || others.length > 0) throw new Error(`freezeAnchors needs a resourceVersion: the anchors are watched in ${caches.anchors.namespaces().length} namespaces`);
  return caches.anchors.lastResourceVersion(namespace);
}

export interface InProcess {
  op: OperatorContext;
  /** One reconcile of the client `namespace/name`, with `op` (or a variant of it, e.g. with a frozen cache). */
  reconcile(key: string, with_?: OperatorContext): Promise<ReconcileResult>;
  /** Reconciles until `done` holds for the cached client (or it is gone), following requeues. */
  settle(key: string, done: (c: Client | undefined) => boolean, timeoutMs?: number): Promise<void>;
  /** A view of the cache frozen now: `edit` may replace objects (e.g. a client as it was before). */
  freezeClients(edit?: (objects: Client[]) => Client[]): FrozenView<Client>;
  freezeServiceAccounts(edit?: (objects: ServiceAccount[]) => ServiceAccount[]): FrozenView<ServiceAccount>;
  /** `resourceVersion`: the version the view claims to have read up to, in every namespace (default the cache's, of the one tier namespace). */
  freezeAnchors(edit?: (objects: CachedSecret[]) => CachedSecret[], resourceVersion?: string): FrozenView<CachedSecret>;
  /** The operator with some caches replaced. */
  withCaches(caches: Partial<Record<keyof Caches, unknown>>): OperatorContext;
  waitForCache(check: (op: OperatorContext) => boolean, timeoutMs?: number): Promise<void>;
  /** Successful requests this instance sent so far, by "verb resource" (e.g. "patch serviceaccounts"). */
  requests(what: string): number;
  stop(): Promise<void>;
}

export async function startInProcess(opts: { tierSelector: string; selector: string; namespacePrefix: string }): Promise<InProcess> {
  const kc = new KubeConfig();
  kc.loadFromFile(asServiceAccount() ? await operatorServiceAccountKubeconfig() : kubeconfigPath());
  const requests = new Map<string, number>();
  const kube = new KubeClient(kc, { onRequest: (verb, resource, code) => code > 0 && code < 300 && requests.set(`${verb} ${resource}`, (requests.get(`${verb} ${resource}`) ?? 0) + 1) });
  const logger = silentLogger();
  // The operator's own caches (operator.ts buildCaches), Tiers selected by the real operator's selector.
  const caches: Caches = buildCaches({ client: kube, logger, resyncPeriodMs: 0, selector: opts.selector, namespacePrefix: opts.namespacePrefix });
  caches.tiers = new Informer<Tier>({ client: kube, logger, resyncPeriodMs: 0, type: TIERS, labelSelector: opts.tierSelector });
  await startCaches(caches, opts.namespacePrefix);
  const op: OperatorContext = {
    config: { namespacePrefix: opts.namespacePrefix, selector: opts.selector },
    kube,
    caches,
    events: new EventRecorder({ client: kube, reportingInstance: 'in-process-test', logger }),
    freshness: new CacheFreshness(),
    unusedAnchors: new UnusedAnchors(),
    metrics: noopTokenMetrics,
    logger,
    now: () => Date.now(),
    enqueueClient: () => undefined,
  };
  const rctx = (key: string): ReconcileContext => ({ key, reconcileId: 'test', logger, signal: new AbortController().signal, failures: 0 }) as unknown as ReconcileContext;
  const reconcile = (key: string, with_: OperatorContext = op) => serviceAccountClientReconciler(with_)(key, rctx(key));
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const waitForCache = async (check: (o: OperatorContext) => boolean, timeoutMs = 10_000) => {
    const deadline = Date.now() + timeoutMs;
    while (!check(op)) {
      if (Date.now() > deadline) throw new Error('the in-process cache did not show what the test waits for');
      await sleep(50);
    }
  };
  const get = (key: string) => {
    const [ns, name] = key.split('/') as [string, string];
    return caches.clients.get(ns, name);
  };
  return {
    op,
    reconcile,
    async settle(key, done, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const c = get(key);
        if (c === undefined || done(c)) return;
        if (Date.now() > deadline) throw new Error(`${key} did not settle: ${JSON.stringify(c.status?.conditions)}`);
        try {
          const result = await reconcile(key);
          await sleep(Math.min(result?.requeueAfterMs ?? 100, 200));
        } catch {
          await sleep(200);
        }
      }
    },
    freezeClients: (edit = (o) => o) => new FrozenView(edit(caches.clients.list()), clientIndexers, caches.clients.lastResourceVersion()),
    freezeServiceAccounts: (edit = (o) => o) => new FrozenView(edit(caches.serviceAccounts.list()), serviceAccountIndexers, caches.serviceAccounts.lastResourceVersion()),
    freezeAnchors: (edit = (o) => o, resourceVersion) => new FrozenView(edit(caches.anchors.list()), anchorIndexers, resourceVersion ?? anchorVersion(caches)),
    withCaches: (replaced) => ({ ...op, caches: { ...caches, ...(replaced as Partial<Caches>) } }),
    waitForCache,
    requests: (what) => requests.get(what) ?? 0,
    async stop() {
      await stopCaches(caches);
      await kube.close();
    },
  };
}
