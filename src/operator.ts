/**
 * Wiring: one informer per kind the operator reads, one controller per kind it reconciles, and the
 * mapping from changes of owned objects to the keys that need reconciling.
 */
import type { ServiceAccountClient, TenantBinding, Tier } from './api/index.ts';
import { Controller, type ControllerMetrics } from './controller/controller.ts';
import { EventRecorder } from './controller/events.ts';
import { Informer, pickKeys, slimMetadata, type EventHandler } from './controller/informer.ts';
import type { Logger } from './controller/logger.ts';
import { NAMESPACE_INDEX, namespaceIndexFunc } from './controller/store.ts';
import type { WorkQueueMetrics } from './controller/workqueue.ts';
import { KubeClient, type ClientNodeKubeConfigLike, type RequestHook } from './kube/client.ts';
import type { KubeAccess } from './kube/kubeconfig.ts';
import {
  CLUSTER_ROLE_BINDINGS,
  NAMESPACES,
  ROLE_BINDINGS,
  SECRETS,
  SERVICE_ACCOUNT_CLIENTS,
  SERVICE_ACCOUNTS,
  TENANT_BINDINGS,
  TIERS,
  keyOf,
  type KubeObject,
} from './kube/resources.ts';
import { tierChangeScope } from './policy/tier-change.ts';
import { recordedUses } from './policy/service-account-use.ts';
import { bindingMatches } from './policy/tier-resolution.ts';
import { readTokenClaims } from './policy/token-claims.ts';
import { CacheFreshness } from './reconcilers/cache-freshness.ts';
import { UnusedAnchors } from './reconcilers/unused-anchors.ts';
import { DEFAULT_OR_NONE, INDEX, isTrustedAnchor, liveTiers, type Binding, type CachedSecret, type Caches, type Namespace, type OperatorConfig, type OperatorContext, type ServiceAccount } from './reconcilers/context.ts';
import { ANCHOR_SECRET_TYPE, CLIENT_UID_LABEL, MANAGED_SELECTOR, TIER_LABEL, TOKEN_KEY, TOKEN_SECRET_TYPE } from './reconcilers/labels.ts';
import { noopTokenMetrics, type TokenMetrics } from './reconcilers/metrics.ts';
import { departuresReconciler } from './reconcilers/departures.ts';
import { serviceAccountClientReconciler } from './reconcilers/service-account-client.ts';
import { quotaInputsChanged } from './reconcilers/resolution.ts';
import { tenantBindingReconciler } from './reconcilers/tenant-binding.ts';
import { tierReconciler } from './reconcilers/tier.ts';

export interface OperatorOptions extends OperatorConfig {
  kubeConfig: KubeAccess | ClientNodeKubeConfigLike;
  logger: Logger;
  workers: number;
  resyncPeriodMs: number;
  instance: string;
  metrics?: {
    tokens?: TokenMetrics;
    controller?: ControllerMetrics;
    workqueue?: (name: string) => WorkQueueMetrics;
    onRequest?: RequestHook;
    eventDropped?: (type: string) => void;
  };
}

export interface RunningOperator {
  /**
   * Stops taking work, waits up to drainTimeoutMs for reconciles in flight, stops the watches.
   * Resolves true when every reconcile finished within the bound.
   */
  stop(drainTimeoutMs?: number): Promise<boolean>;
  caches: Caches;
}

/**
 * Secrets are cached without their data: the operator only needs to recognise its tokens, so the
 * cache keeps their claims and no token value stays in memory beyond the reconcile that wrote it.
 */
export function stripSecret(secret: CachedSecret & { data?: Record<string, string>; stringData?: unknown }): CachedSecret {
  // Rest, not `delete`: see slimMetadata.
  const { data, stringData: _stringData, ...cached } = secret;
  if (secret.type === TOKEN_SECRET_TYPE) {
    const encoded = data?.[TOKEN_KEY];
    if (encoded) (cached as CachedSecret).tokenClaims = readTokenClaims(Buffer.from(encoded, 'base64').toString('utf8')) ?? 'unreadable';
  }
  return slimMetadata(cached);
}

/** tokenwarden's own label and annotation keys: tokenwarden.io/… and <sub>.tokenwarden.io/…. */
const isOwnKey = (key: string): boolean => /^(?:[a-z0-9-]+\.)*tokenwarden\.io\//.test(key);

/**
 * ServiceAccountClients are cached with tokenwarden's own labels and annotations only: the operator
 * reads no other (the renew request is its own; --selector is applied by the API server), and those of
 * GitOps tools and teams (Argo CD's tracking id, Helm's, owners, tickets) cost as much as the rest.
 */
export function slimClient(client: ServiceAccountClient): ServiceAccountClient {
  // One copy: the last-applied annotation is not an own key, and managedFields is left out here.
  const { labels, annotations, managedFields: _managedFields, ...meta } = client.metadata as ServiceAccountClient['metadata'] & { managedFields?: unknown };
  const own = { labels: pickKeys(labels, isOwnKey), annotations: pickKeys(annotations, isOwnKey) };
  return { ...client, metadata: { ...meta, ...(own.labels && { labels: own.labels }), ...(own.annotations && { annotations: own.annotations }) } };
}

/** How long client counts of Tiers and TenantBindings, and the Tier sweep, wait to be coalesced. */
const COUNT_COALESCE_MS = 1000;

const clientKey = (c: KubeObject): string => keyOf(c.metadata?.namespace, c.metadata?.name as string);

export async function startOperator(opts: OperatorOptions): Promise<RunningOperator> {
  const log = opts.logger;
  const kube = new KubeClient(opts.kubeConfig, opts.metrics?.onRequest ? { onRequest: opts.metrics.onRequest } : {});
  const common = { client: kube, logger: log, resyncPeriodMs: opts.resyncPeriodMs };
  const selector = opts.selector ? { labelSelector: opts.selector } : {};
  const caches: Caches = {
    tiers: new Informer<Tier>({ ...common, ...selector, type: TIERS }),
    bindings: new Informer<TenantBinding>({
      ...common,
      ...selector,
      type: TENANT_BINDINGS,
      indexers: { [INDEX.clientByNamespace]: namespaceIndexFunc, [INDEX.byTier]: (b) => (b.spec?.tierRef?.name ? [b.spec.tierRef.name] : []) },
    }),
    clients: new Informer<ServiceAccountClient>({
      ...common,
      ...selector,
      type: SERVICE_ACCOUNT_CLIENTS,
      transform: slimClient,
      indexers: {
        [INDEX.clientByNamespace]: namespaceIndexFunc,
        [INDEX.clientByServiceAccount]: (c) => (c.status?.serviceAccount ? [`${c.status.serviceAccount.namespace}/${c.status.serviceAccount.name}`] : []),
        [INDEX.clientByTier]: (c) => (c.status?.tier ? [c.status.tier] : []),
        [INDEX.clientByUid]: (c) => (c.metadata.uid ? [c.metadata.uid] : []),
        [INDEX.clientByRequestedTier]: (c) => (c.spec.tierRef?.name ? [c.spec.tierRef.name] : []),
        [INDEX.clientBySubjectGroup]: (c) => c.spec.subject?.groups ?? [],
        [INDEX.clientOnDefaultOrNone]: (c) => (c.status?.tier === undefined || c.status.tierReason === 'Default' ? [DEFAULT_OR_NONE] : []),
        [INDEX.clientBySecret]: (c) => [`${c.metadata.namespace}/${c.spec.secretName ?? `${c.metadata.name}-token`}`],
      },
    }),
    namespaces: new Informer<Namespace>({ ...common, type: NAMESPACES, labelSelector: MANAGED_SELECTOR }),
    serviceAccounts: new Informer<ServiceAccount>({
      ...common,
      type: SERVICE_ACCOUNTS,
      labelSelector: MANAGED_SELECTOR,
      indexers: { [NAMESPACE_INDEX]: namespaceIndexFunc, [INDEX.serviceAccountByClientUid]: (sa) => recordedUses(sa.metadata?.annotations).map((use) => use.clientUid) },
    }),
    secrets: new Informer<CachedSecret>({
      ...common,
      type: SECRETS,
      labelSelector: MANAGED_SELECTOR,
      transform: stripSecret,
      indexers: {
        [NAMESPACE_INDEX]: namespaceIndexFunc,
        [INDEX.anchorByClientUid]: (s) => {
          const uid = s.metadata?.labels?.[CLIENT_UID_LABEL];
          return uid && s.type === ANCHOR_SECRET_TYPE ? [uid] : [];
        },
      },
    }),
    roleBindings: new Informer<Binding>({ ...common, type: ROLE_BINDINGS, labelSelector: MANAGED_SELECTOR, indexers: { [INDEX.byTier]: tierLabelIndex } }),
    clusterRoleBindings: new Informer<Binding>({ ...common, type: CLUSTER_ROLE_BINDINGS, labelSelector: MANAGED_SELECTOR, indexers: { [INDEX.byTier]: tierLabelIndex } }),
  };

  const controllerOptions = (name: string) => ({
    name,
    workers: opts.workers,
    logger: log,
    ...(opts.metrics?.controller ? { metrics: opts.metrics.controller } : {}),
    ...(opts.metrics?.workqueue ? { queue: { name, metrics: opts.metrics.workqueue(name) } } : {}),
  });
  // The context is completed below, once the controllers it enqueues into exist.
  const op = {
    config: { namespacePrefix: opts.namespacePrefix, selector: opts.selector },
    kube,
    caches,
    events: new EventRecorder({ client: kube, reportingInstance: opts.instance, logger: log, ...(opts.metrics?.eventDropped ? { onDropped: (e: { type: string }) => opts.metrics?.eventDropped?.(e.type) } : {}) }),
    freshness: new CacheFreshness(),
    unusedAnchors: new UnusedAnchors(),
    metrics: opts.metrics?.tokens ?? noopTokenMetrics,
    logger: log,
    now: () => Date.now(),
  } as OperatorContext;
  const tiers = new Controller({ ...controllerOptions('tier'), reconcile: tierReconciler(op) });
  const bindings = new Controller({ ...controllerOptions('tenantbinding'), reconcile: tenantBindingReconciler(op) });
  const clients = new Controller({ ...controllerOptions('serviceaccountclient'), reconcile: serviceAccountClientReconciler(op) });
  const departures = new Controller({ ...controllerOptions('departures'), reconcile: departuresReconciler(op) });
  op.enqueueClient = (key) => clients.enqueue(key);
  // Any Tier or TenantBinding edit can move clients off any tier (a higher level elsewhere, a removed
  // group, a quota lowered): each tier looks for clients that left it (reconcilers/departures.ts).
  const enqueueDepartures = () => liveTiers(caches).forEach((tier) => departures.enqueue(tier.metadata.name));

  // The clients a Tier change can move (policy/tier-change.ts), gathered from the indexes.
  const enqueueClientsOfTierChange = (name: string, old: Tier | undefined, next: Tier | undefined) => {
    const scope = tierChangeScope(old, next);
    // Those most likely to move first (a group or binding change), so that their old tokens' revocation
    // (a client's first pass) does not wait behind members that merely re-check a token policy.
    const affected = [
      ...scope.groups.flatMap((group) => caches.clients.byIndex(INDEX.clientBySubjectGroup, group)),
      ...(scope.defaults
        ? [
            ...caches.clients.byIndex(INDEX.clientOnDefaultOrNone, DEFAULT_OR_NONE),
            ...liveTiers(caches).filter((t) => t.spec.default).flatMap((t) => caches.clients.byIndex(INDEX.clientByRequestedTier, t.metadata.name)),
          ]
        : []),
      ...(scope.bindings
        ? caches.bindings.byIndex(INDEX.byTier, name).flatMap((binding) =>
            caches.clients.byIndex(INDEX.clientByNamespace, binding.metadata.namespace as string).filter((c) => bindingMatches(binding, c.spec.subject)))
        : []),
      ...caches.clients.byIndex(INDEX.clientByRequestedTier, name),
      ...(scope.members ? caches.clients.byIndex(INDEX.clientByTier, name) : []),
    ];
    new Set(affected.map(clientKey)).forEach((key) => clients.enqueue(key));
  };
  const enqueueNamespaceClients = (namespace: string | undefined) =>
    namespace && caches.clients.byIndex(INDEX.clientByNamespace, namespace).forEach((c) => clients.enqueue(clientKey(c)));
  const specChanged = (a: KubeObject, b: KubeObject) =>
    a.metadata?.generation !== b.metadata?.generation || a.metadata?.deletionTimestamp !== b.metadata?.deletionTimestamp;

  on(caches.tiers, (tier, old, deleted) => {
    // As for TenantBindings below: the echo of its own status write waits for the count's coalescing.
    if (deleted || old === undefined || specChanged(old, tier)) {
      tiers.enqueue(tier.metadata.name);
      quotaInputsChanged(caches);
      enqueueClientsOfTierChange(tier.metadata.name, deleted ? tier : old, deleted ? undefined : tier);
      enqueueDepartures();
    } else {
      tiers.enqueueAfter(tier.metadata.name, COUNT_COALESCE_MS);
    }
    // A TenantBinding's Ready says whether its tier exists: it changes when the tier is added or
    // deleted (old is undefined for both) or starts deleting.
    if (old === undefined || old.metadata?.deletionTimestamp !== tier.metadata?.deletionTimestamp) {
      caches.bindings.byIndex(INDEX.byTier, tier.metadata.name).forEach((b) => bindings.enqueue(clientKey(b)));
    }
  });
  on(caches.bindings, (binding, old) => {
    // A change of its status (or metadata) alone, mostly the echo of the operator's own count, is
    // looked at within the count's coalescing period, not at once: during a burst of clients an
    // immediate reconcile per echo would write the count again after every write, once per round trip.
    if (old === undefined || specChanged(old, binding)) {
      bindings.enqueue(clientKey(binding));
      quotaInputsChanged(caches, binding.metadata.namespace as string);
      enqueueNamespaceClients(binding.metadata.namespace);
      enqueueDepartures();
    } else {
      bindings.enqueueAfter(clientKey(binding), COUNT_COALESCE_MS);
    }
  });
  on(caches.clients, (client, old, deleted) => {
    clients.enqueue(clientKey(client));
    const namespace = client.metadata.namespace as string;
    if (deleted || old === undefined || specChanged(old, client)) quotaInputsChanged(caches, namespace);
    // Tier and TenantBinding status only count clients: coalesce a burst of client changes into one
    // status write a second instead of one per client.
    for (const status of [old?.status, client.status]) {
      if (status?.tier) tiers.enqueueAfter(status.tier, COUNT_COALESCE_MS);
      if (status?.tierReason?.startsWith('TenantBinding/')) {
        bindings.enqueueAfter(keyOf(namespace, status.tierReason.slice('TenantBinding/'.length)), COUNT_COALESCE_MS);
      }
    }
    // A client that asked for its tier may hold it through any binding of its namespace.
    if (old?.status?.tierReason === 'Requested' || client.status?.tierReason === 'Requested') {
      caches.bindings.byIndex(INDEX.clientByNamespace, namespace).forEach((b) => bindings.enqueueAfter(clientKey(b), COUNT_COALESCE_MS));
    }
    // A client leaving frees a place under a TenantBinding quota: deleted, or moved off the binding
    // (a Tier edit reconciles only the clients it concerns, so the others must hear of it here).
    const leftBinding = old?.status?.tierReason?.startsWith('TenantBinding/') === true && old.status.tierReason !== client.status?.tierReason;
    if ((deleted || leftBinding) && caches.bindings.byIndex(INDEX.clientByNamespace, namespace).some((b) => b.spec.maxClients !== undefined)) {
      enqueueNamespaceClients(namespace);
    }
  });
  on(caches.namespaces, (ns) => {
    const tier = ns.metadata?.labels?.[TIER_LABEL];
    if (tier) tiers.enqueue(tier);
  });
  on(caches.serviceAccounts, (account) => {
    const ref = `${account.metadata?.namespace}/${account.metadata?.name}`;
    caches.clients.byIndex(INDEX.clientByServiceAccount, ref).forEach((c) => clients.enqueue(clientKey(c)));
    // For the Tier's sweep of unused ServiceAccounts, which goes over the whole tier namespace: once a
    // second is enough, where a burst of clients (a tier move) would otherwise sweep once per account.
    const tier = account.metadata?.labels?.[TIER_LABEL];
    if (tier) tiers.enqueueAfter(tier, COUNT_COALESCE_MS);
  });
  on(caches.secrets, (secret) => {
    const uid = secret.metadata?.labels?.[CLIENT_UID_LABEL];
    // A look-alike anchor (the labels on a Secret the operator did not make) wakes nobody.
    if (uid && isTrustedAnchor(caches, opts.namespacePrefix, secret)) {
      const owners = caches.clients.byIndex(INDEX.clientByUid, uid);
      owners.forEach((c) => clients.enqueue(clientKey(c)));
      const tier = secret.metadata?.labels?.[TIER_LABEL];
      if (owners.length === 0 && tier) tiers.enqueueAfter(tier, COUNT_COALESCE_MS);
    }
    const owner = secret.metadata?.ownerReferences?.find((ref) => ref.kind === 'ServiceAccountClient' && ref.controller);
    if (owner) clients.enqueue(keyOf(secret.metadata?.namespace, owner.name));
    // By name too: an edit that removed the ownerReference must still reach the client.
    caches.clients.byIndex(INDEX.clientBySecret, `${secret.metadata?.namespace}/${secret.metadata?.name}`).forEach((c) => clients.enqueue(clientKey(c)));
  });
  for (const cache of [caches.roleBindings, caches.clusterRoleBindings]) {
    on(cache, (binding) => {
      const tier = binding.metadata?.labels?.[TIER_LABEL];
      if (tier) tiers.enqueue(tier);
    });
  }

  const informers = Object.values(caches) as Informer<KubeObject>[];
  informers.forEach((informer) => informer.start());
  await Promise.all(informers.map((informer) => informer.waitForSync()));
  for (const controller of [tiers, bindings, clients, departures]) controller.start();
  log.info({ workers: opts.workers, namespacePrefix: opts.namespacePrefix, selector: opts.selector || '(all)' }, 'operator started');

  return {
    caches,
    async stop(drainTimeoutMs = 30_000) {
      const drained = await Promise.all([tiers, bindings, clients, departures].map((controller) => controller.stop(drainTimeoutMs)));
      await Promise.all(informers.map((informer) => informer.stop()));
      await kube.close();
      return drained.every(Boolean);
    },
  };
}

function tierLabelIndex(obj: KubeObject): string[] {
  const tier = obj.metadata?.labels?.[TIER_LABEL];
  return tier ? [tier] : [];
}

/** One handler for add, update and delete: (object, previous version, deleted?). */
function on<T extends KubeObject>(informer: Informer<T>, handle: (obj: T, old: T | undefined, deleted: boolean) => void): void {
  const handler: EventHandler<T> = {
    onAdd: (obj) => handle(obj, undefined, false),
    onUpdate: (old, obj) => handle(obj, old, false),
    onDelete: (obj) => handle(obj, undefined, true),
  };
  informer.addEventHandler(handler);
}
