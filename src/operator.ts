/**
 * Wiring: one informer per kind the operator reads, one controller per kind it reconciles, and the
 * mapping from changes of owned objects to the keys that need reconciling.
 */
import type { ServiceAccountClient, TenantBinding, Tier } from './api/index.ts';
import { Controller, type ControllerMetrics } from './controller/controller.ts';
import { EventRecorder } from './controller/events.ts';
import { Informer, LAST_APPLIED_ANNOTATION, pickKeys, type EventHandler, type ListWatcher } from './controller/informer.ts';
import type { Logger } from './controller/logger.ts';
import { NamespacedInformers } from './controller/namespaced-informers.ts';
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
import { RENEW_REQUESTED_AT_ANNOTATION, RENEWED_FOR_ANNOTATION } from './policy/reissue.ts';
import { recordedUses, USE_ANNOTATION_PREFIX } from './policy/service-account-use.ts';
import { bindingMatches } from './policy/tier-resolution.ts';
import { CLAIM_LIMITS, readTokenClaims, tokenDigest } from './policy/token-claims.ts';
import { CacheFreshness } from './reconcilers/cache-freshness.ts';
import { UnusedAnchors } from './reconcilers/unused-anchors.ts';
import { DEFAULT_OR_NONE, INDEX, isTrustedAnchor, liveTiers, tierNamespaces, type Binding, type CachedSecret, type Caches, type Namespace, type OperatorConfig, type OperatorContext, type ServiceAccount } from './reconcilers/context.ts';
import {
  ANCHOR_SECRET_TYPE,
  AUDIENCES_ANNOTATION,
  CLIENT_ANNOTATION,
  CLIENT_NAMESPACE_LABEL,
  CLIENT_UID_LABEL,
  EXPIRATION_ANNOTATION,
  EXPIRES_AT_ANNOTATION,
  MANAGED_BY,
  MANAGED_SELECTOR,
  RENEW_AT_ANNOTATION,
  SCOPE_LABEL,
  TIER_LABEL,
  TOKEN_ID_ANNOTATION,
  TOKEN_KEY,
  TOKEN_SECRET_TYPE,
  USER_ANNOTATION,
} from './reconcilers/labels.ts';
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
 * The longest value of each own annotation of a token Secret kept in the cache: what the operator
 * writes there is never longer (names are at most 253 characters; audiences, at most 16 of 253, joined
 * by commas; the renew request it answers is kept on the client up to 1 KiB, slimClient).
 */
const OWN_VALUE_CHARS: Record<string, number> = {
  // <name> on a token Secret, <namespace>/<name> on an anchor.
  [CLIENT_ANNOTATION]: 63 + 1 + 253,
  [TIER_LABEL]: 253,
  [TOKEN_ID_ANNOTATION]: 253,
  [EXPIRES_AT_ANNOTATION]: 64,
  [RENEW_AT_ANNOTATION]: 64,
  [AUDIENCES_ANNOTATION]: 16 * 254,
  [EXPIRATION_ANNOTATION]: 32,
  [RENEWED_FOR_ANNOTATION]: 1024,
};
/** The longest renew request a client's cache keeps (its answer, renewed-for, is kept up to this too). */
const RENEW_REQUEST_CHARS = 1024;
/** Labels and annotations of their own type (the template's) kept on a client's token Secret, in characters. */
const FOREIGN_METADATA_CHARS = 4096;

/** The annotations of `keys` whose value is within its bound: anything longer was not written by the operator. */
function ownAnnotations(annotations: Record<string, string> | undefined, keys: readonly string[]): Record<string, string> | undefined {
  return pickKeys(annotations, (key) => keys.includes(key) && (annotations?.[key] as string).length <= (OWN_VALUE_CHARS[key] ?? 0));
}

/** The metadata the reconcilers read of a Secret or ServiceAccount, built whole (see slimMetadata). */
function cachedMetadata(
  meta: NonNullable<KubeObject['metadata']>,
  labels: Record<string, string> | undefined,
  annotations: Record<string, string> | undefined,
): NonNullable<KubeObject['metadata']> {
  const controller = meta.ownerReferences?.find((ref) => ref.controller === true);
  return {
    name: meta.name,
    namespace: meta.namespace,
    uid: meta.uid,
    resourceVersion: meta.resourceVersion,
    creationTimestamp: meta.creationTimestamp,
    ...(meta.deletionTimestamp !== undefined && { deletionTimestamp: meta.deletionTimestamp }),
    ...(labels && { labels }),
    ...(annotations && { annotations }),
    // Only the controller: the one reference any decision reads.
    ...(controller && { ownerReferences: [{ apiVersion: controller.apiVersion, kind: controller.kind, name: controller.name, uid: controller.uid, controller: true }] }),
  } as NonNullable<KubeObject['metadata']>;
}

const ANCHOR_LABELS = [MANAGED_BY, TIER_LABEL, CLIENT_NAMESPACE_LABEL, CLIENT_UID_LABEL, SCOPE_LABEL] as const;
const TOKEN_SECRET_ANNOTATIONS = [CLIENT_ANNOTATION, TIER_LABEL, TOKEN_ID_ANNOTATION, EXPIRES_AT_ANNOTATION, RENEW_AT_ANNOTATION, AUDIENCES_ANNOTATION, EXPIRATION_ANNOTATION, RENEWED_FOR_ANNOTATION] as const;
const isOwnMetadataKey = (key: string): boolean => key === MANAGED_BY || isOwnKey(key);

/**
 * Secrets are cached without their data, and with only what a decision reads: anyone may label a
 * Secret of their own as tokenwarden's, so nothing else of one may stay in memory (a tenant's 250 KiB
 * of annotations, a fake token's 35,000 audiences). An anchor keeps its own labels and annotation; a
 * token Secret its own annotations (each within the length the operator writes), the claims of its
 * token within policy/token-claims.ts CLAIM_LIMITS, else 'unreadable', and, when a
 * ServiceAccountClient controls it, the labels and annotations its template put there, up to
 * FOREIGN_METADATA_CHARS (beyond that none, and the metadata repair writes the template again, a
 * no-op for the API server). No token value stays in memory beyond the reconcile that wrote it.
 */
export function stripSecret(secret: Omit<CachedSecret, 'immutable'> & { data?: Record<string, string>; stringData?: unknown; immutable?: boolean }): CachedSecret {
  const meta = secret.metadata ?? {};
  let labels: Record<string, string> | undefined;
  let annotations: Record<string, string> | undefined;
  let tokenClaims: CachedSecret['tokenClaims'];
  if (secret.type === TOKEN_SECRET_TYPE) {
    const encoded = secret.data?.[TOKEN_KEY];
    if (encoded) {
      // base64 of CLAIM_LIMITS.tokenChars: a longer value is no token of a tier, and is not decoded.
      const fits = encoded.length <= Math.ceil(CLAIM_LIMITS.tokenChars / 3) * 4;
      const token = fits ? Buffer.from(encoded, 'base64').toString('utf8') : undefined;
      const claims = token === undefined ? undefined : readTokenClaims(token);
      // The digest of the whole value, signature included: claims alone do not tell a forged token.
      tokenClaims = claims === undefined ? 'unreadable' : { ...claims, digest: tokenDigest(token as string) };
    }
    labels = pickKeys(meta.labels, (key) => key === MANAGED_BY);
    annotations = ownAnnotations(meta.annotations, TOKEN_SECRET_ANNOTATIONS);
    const controller = meta.ownerReferences?.find((ref) => ref.controller === true);
    if (controller?.kind === 'ServiceAccountClient') {
      const foreignLabels = pickKeys(meta.labels, (key) => !isOwnMetadataKey(key));
      const foreignAnnotations = pickKeys(meta.annotations, (key) => !isOwnMetadataKey(key) && key !== LAST_APPLIED_ANNOTATION);
      if (metadataChars(foreignLabels) + metadataChars(foreignAnnotations) <= FOREIGN_METADATA_CHARS) {
        if (foreignLabels) labels = { ...foreignLabels, ...labels };
        if (foreignAnnotations) annotations = { ...foreignAnnotations, ...annotations };
      }
    }
  } else {
    labels = pickKeys(meta.labels, (key) => (ANCHOR_LABELS as readonly string[]).includes(key));
    annotations = ownAnnotations(meta.annotations, [CLIENT_ANNOTATION]);
  }
  const cached: CachedSecret = { apiVersion: secret.apiVersion, kind: secret.kind, metadata: cachedMetadata(meta, labels, annotations), type: secret.type };
  if (tokenClaims !== undefined) cached.tokenClaims = tokenClaims;
  if (secret.immutable === true) cached.immutable = true;
  return cached;
}

/**
 * ServiceAccounts (tier namespaces only) keep the labels and annotations the operator reads: its
 * label and the tier's, the user, and the records of use of clients.
 */
export function slimServiceAccount(account: ServiceAccount): ServiceAccount {
  const meta = account.metadata ?? {};
  const labels = pickKeys(meta.labels, (key) => key === MANAGED_BY || key === TIER_LABEL);
  const annotations = pickKeys(meta.annotations, (key) => key === USER_ANNOTATION || key.startsWith(USE_ANNOTATION_PREFIX));
  return { apiVersion: account.apiVersion, kind: account.kind, metadata: cachedMetadata(meta, labels, annotations) };
}

/** Longer than any subject the operator writes (system:serviceaccounts: and a namespace name). */
const BINDING_SUBJECT_CHARS = 300;

/**
 * RoleBindings and ClusterRoleBindings keep the two labels, the roleRef and their subject only when it
 * has the one shape the operator writes (a single Group of at most BINDING_SUBJECT_CHARS): anything
 * else compares unequal to the tier's access whatever it held, so a labelled binding of someone
 * else's costs a few hundred bytes, whatever its size.
 */
export function slimBinding(binding: Binding): Binding {
  const meta = binding.metadata ?? {};
  const labels = pickKeys(meta.labels, (key) => key === MANAGED_BY || key === TIER_LABEL);
  const only = binding.subjects?.length === 1 ? binding.subjects[0] : undefined;
  const subjects =
    only !== undefined && only.kind === 'Group' && only.name.length <= BINDING_SUBJECT_CHARS && only.namespace === undefined
      ? [{ kind: only.kind, apiGroup: only.apiGroup, name: only.name }]
      : [];
  const roleRef = binding.roleRef && { apiGroup: binding.roleRef.apiGroup, kind: binding.roleRef.kind, name: binding.roleRef.name };
  return { apiVersion: binding.apiVersion, kind: binding.kind, metadata: cachedMetadata(meta, labels, undefined), ...(roleRef && { roleRef }), subjects };
}

function metadataChars(map: Record<string, string> | undefined): number {
  let n = 0;
  for (const key in map) n += key.length + (map[key] as string).length;
  return n;
}

/** tokenwarden's own label and annotation keys: tokenwarden.io/… and <sub>.tokenwarden.io/…. */
const isOwnKey = (key: string): boolean => /^(?:[a-z0-9-]+\.)*tokenwarden\.io\//.test(key);

/**
 * ServiceAccountClients are cached with tokenwarden's own labels and annotations only: the operator
 * reads no other (the renew request is its own; --selector is applied by the API server), and those of
 * GitOps tools and teams (Argo CD's tracking id, Helm's, owners, tickets) cost as much as the rest.
 * A renew request longer than 1 KiB (`kubectl tokenwarden renew` writes a timestamp) is not kept: the
 * token Secret's copy of it (renewed-for) is not kept beyond that length either, and a request the
 * cache kept but its answer not would be answered forever.
 */
export function slimClient(client: ServiceAccountClient): ServiceAccountClient {
  // One copy: the last-applied annotation is not an own key, and managedFields is left out here.
  const { labels, annotations, managedFields: _managedFields, ...meta } = client.metadata as ServiceAccountClient['metadata'] & { managedFields?: unknown };
  const keep = (key: string) => isOwnKey(key) && (key !== RENEW_REQUESTED_AT_ANNOTATION || (annotations?.[key] as string).length <= RENEW_REQUEST_CHARS);
  const own = { labels: pickKeys(labels, isOwnKey), annotations: pickKeys(annotations, keep) };
  return { ...client, metadata: { ...meta, ...(own.labels && { labels: own.labels }), ...(own.annotations && { annotations: own.annotations }) } };
}

/** How long client counts of Tiers and TenantBindings, and the Tier sweep, wait to be coalesced. */
const COUNT_COALESCE_MS = 1000;

const clientKey = (c: KubeObject): string => keyOf(c.metadata?.namespace, c.metadata?.name as string);

export interface CacheOptions {
  client: ListWatcher;
  logger: Logger;
  resyncPeriodMs: number;
  selector: string;
  namespacePrefix: string;
}

/**
 * The operator's caches, with their indexes (also the in-process test harness's). ServiceAccounts and
 * anchors are watched per tier namespace: the set follows the Tiers (startCaches).
 */
export function buildCaches(opts: CacheOptions): Caches {
  const common = { client: opts.client, logger: opts.logger, resyncPeriodMs: opts.resyncPeriodMs };
  const selector = opts.selector ? { labelSelector: opts.selector } : {};
  return {
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
    serviceAccounts: new NamespacedInformers<ServiceAccount>({
      make: (namespace) =>
        new Informer<ServiceAccount>({
          ...common,
          type: SERVICE_ACCOUNTS,
          namespace,
          labelSelector: MANAGED_SELECTOR,
          transform: slimServiceAccount,
          indexers: { [NAMESPACE_INDEX]: namespaceIndexFunc, [INDEX.serviceAccountByClientUid]: (sa) => recordedUses(sa.metadata?.annotations).map((use) => use.clientUid) },
        }),
    }),
    anchors: new NamespacedInformers<CachedSecret>({
      make: (namespace) =>
        new Informer<CachedSecret>({
          ...common,
          type: SECRETS,
          namespace,
          labelSelector: MANAGED_SELECTOR,
          fieldSelector: `type=${ANCHOR_SECRET_TYPE}`,
          transform: stripSecret,
          indexers: {
            [NAMESPACE_INDEX]: namespaceIndexFunc,
            [INDEX.anchorByClientUid]: (s) => {
              const uid = s.metadata?.labels?.[CLIENT_UID_LABEL];
              return uid ? [uid] : [];
            },
          },
        }),
    }),
    // Token Secrets live in the clients' namespaces, anywhere: selected by type and label, and cut
    // down by stripSecret to a bounded size each.
    secrets: new Informer<CachedSecret>({
      ...common,
      type: SECRETS,
      labelSelector: MANAGED_SELECTOR,
      fieldSelector: `type=${TOKEN_SECRET_TYPE}`,
      transform: stripSecret,
      indexers: { [NAMESPACE_INDEX]: namespaceIndexFunc },
    }),
    // Bindings live where Tiers grant access, any namespace, so they are selected by label; a
    // namespace admin may label one of hers, so each is cut down by slimBinding.
    roleBindings: new Informer<Binding>({ ...common, type: ROLE_BINDINGS, labelSelector: MANAGED_SELECTOR, transform: slimBinding, indexers: { [INDEX.byTier]: tierLabelIndex } }),
    clusterRoleBindings: new Informer<Binding>({ ...common, type: CLUSTER_ROLE_BINDINGS, labelSelector: MANAGED_SELECTOR, transform: slimBinding, indexers: { [INDEX.byTier]: tierLabelIndex } }),
  };
}

/**
 * Starts every cache and resolves once all have listed. The tier namespaces watched follow the Tiers
 * cache from its first list on: a Tier added starts the watches of its namespace, one removed (or no
 * longer selected) stops them.
 */
export async function startCaches(caches: Caches, namespacePrefix: string): Promise<void> {
  const follow = () => {
    const namespaces = tierNamespaces(caches.tiers.list(), namespacePrefix);
    caches.serviceAccounts.setNamespaces(namespaces);
    caches.anchors.setNamespaces(namespaces);
  };
  // Registered first, so the other handlers of a Tier event see its namespace watched already.
  caches.tiers.addEventHandler({ onAdd: follow, onDelete: follow });
  const informers = Object.values(caches) as { start(): void; waitForSync(): Promise<void> }[];
  informers.forEach((informer) => informer.start());
  await caches.tiers.waitForSync();
  follow();
  await Promise.all(informers.map((informer) => informer.waitForSync()));
}

export async function stopCaches(caches: Caches): Promise<void> {
  await Promise.all((Object.values(caches) as { stop(): Promise<void> }[]).map((informer) => informer.stop()));
}

export async function startOperator(opts: OperatorOptions): Promise<RunningOperator> {
  const log = opts.logger;
  const kube = new KubeClient(opts.kubeConfig, opts.metrics?.onRequest ? { onRequest: opts.metrics.onRequest } : {});
  const caches = buildCaches({ client: kube, logger: log, resyncPeriodMs: opts.resyncPeriodMs, selector: opts.selector, namespacePrefix: opts.namespacePrefix });

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
  on(caches.anchors, (anchor) => {
    const uid = anchor.metadata?.labels?.[CLIENT_UID_LABEL];
    // Only anchors of a Tier of this instance, in its namespace, wake anyone.
    if (uid && isTrustedAnchor(caches, opts.namespacePrefix, anchor)) {
      const owners = caches.clients.byIndex(INDEX.clientByUid, uid);
      owners.forEach((c) => clients.enqueue(clientKey(c)));
      const tier = anchor.metadata?.labels?.[TIER_LABEL];
      if (owners.length === 0 && tier) tiers.enqueueAfter(tier, COUNT_COALESCE_MS);
    }
  });
  on(caches.secrets, (secret) => {
    // A token Secret wakes only the client that names it, or the client that controls it (a Secret
    // left at a former secretName): never a key taken from what someone else wrote on a Secret.
    const namespace = secret.metadata?.namespace;
    const owner = secret.metadata?.ownerReferences?.find((ref) => ref.kind === 'ServiceAccountClient' && ref.controller);
    const controlling = owner && caches.clients.get(namespace, owner.name);
    if (controlling && controlling.metadata.uid === owner.uid) clients.enqueue(clientKey(controlling));
    // By name too: an edit that removed the ownerReference must still reach the client.
    caches.clients.byIndex(INDEX.clientBySecret, `${namespace}/${secret.metadata?.name}`).forEach((c) => clients.enqueue(clientKey(c)));
  });
  for (const cache of [caches.roleBindings, caches.clusterRoleBindings]) {
    on(cache, (binding) => {
      const tier = binding.metadata?.labels?.[TIER_LABEL];
      if (tier) tiers.enqueue(tier);
    });
  }

  await startCaches(caches, opts.namespacePrefix);
  for (const controller of [tiers, bindings, clients, departures]) controller.start();
  log.info({ workers: opts.workers, namespacePrefix: opts.namespacePrefix, selector: opts.selector || '(all)' }, 'operator started');

  return {
    caches,
    async stop(drainTimeoutMs = 30_000) {
      const drained = await Promise.all([tiers, bindings, clients, departures].map((controller) => controller.stop(drainTimeoutMs)));
      await stopCaches(caches);
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
function on<T extends KubeObject>(informer: { addEventHandler(handler: EventHandler<T>): unknown }, handle: (obj: T, old: T | undefined, deleted: boolean) => void): void {
  const handler: EventHandler<T> = {
    onAdd: (obj) => handle(obj, undefined, false),
    onUpdate: (old, obj) => handle(obj, old, false),
    onDelete: (obj) => handle(obj, undefined, true),
  };
  informer.addEventHandler(handler);
}
