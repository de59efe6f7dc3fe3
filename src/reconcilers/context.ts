import type { ServiceAccountClient, TenantBinding, Tier } from '../api/index.ts';
import type { EventRecorder } from '../controller/events.ts';
import type { Informer } from '../controller/informer.ts';
import type { NamespacedInformers } from '../controller/namespaced-informers.ts';
import type { Logger } from '../controller/logger.ts';
import type { KubeClient } from '../kube/client.ts';
import type { KubeObject } from '../kube/resources.ts';
import type { TokenClaims } from '../policy/token-claims.ts';
import type { CacheFreshness } from './cache-freshness.ts';
import type { TokenMetrics } from './metrics.ts';
import type { UnusedAnchors } from './unused-anchors.ts';
import { ANCHOR_SECRET_TYPE, TIER_LABEL, TOKEN_SECRET_TYPE } from './labels.ts';

/** A Secret as cached: token values are replaced by their claims before they reach the cache. */
export interface CachedSecret extends KubeObject {
  type?: string;
  /** Claims of data.token; 'unreadable' if it is not a ServiceAccount JWT; undefined if there is none. */
  tokenClaims?: TokenClaims | 'unreadable';
  /** Set when the Secret is immutable: it can be neither renewed nor repaired, only replaced. */
  immutable?: true;
}

export interface ServiceAccount extends KubeObject {
  kind?: 'ServiceAccount';
}

export interface Namespace extends KubeObject {
  status?: { phase?: string };
}

export interface Binding extends KubeObject {
  roleRef?: { apiGroup: string; kind: string; name: string };
  subjects?: { kind: string; name: string; apiGroup?: string; namespace?: string }[];
}

/** Index names used across reconcilers. */
export const INDEX = {
  /** Clients by the namespace/name of the ServiceAccount in their status. */
  clientByServiceAccount: 'serviceAccount',
  /** Clients by namespace. */
  clientByNamespace: 'namespace',
  /** Clients by status.tier. */
  clientByTier: 'tier',
  /** Clients by "<namespace>/<Secret name>". */
  clientBySecret: 'secret',
  /** Clients by metadata.uid. */
  clientByUid: 'uid',
  /** Clients by the tier they request (spec.tierRef.name). */
  clientByRequestedTier: 'requestedTier',
  /** Clients by each group of their subject. */
  clientBySubjectGroup: 'subjectGroup',
  /** Clients on the default tier or on none, under the one key DEFAULT_OR_NONE. */
  clientOnDefaultOrNone: 'defaultOrNone',
  /** Anchors by the uid of their client (caches.anchors). */
  anchorByClientUid: 'clientUid',
  /** ServiceAccounts by the uid of each client recorded as using them (policy/service-account-use.ts). */
  serviceAccountByClientUid: 'clientUid',
  /** Owned objects (namespaces, ServiceAccounts, bindings) by tier label; TenantBindings by spec.tierRef.name. */
  byTier: 'tier',
} as const;

export const DEFAULT_OR_NONE = 'default-or-none';

export interface OperatorConfig {
  namespacePrefix: string;
  /** Label selector for the tokenwarden resources this instance manages ('' for all). */
  selector: string;
}

/**
 * What the operator caches, and where (docs/operator-contract.md, "What it trusts"): its own kinds by
 * --selector; ServiceAccounts and anchors only in tier namespaces (tierNamespaces), which tenants
 * cannot create or label, so nothing a tenant labels elsewhere enters them; token Secrets in any
 * namespace (clients live anywhere), selected by type and label and cut down to what decisions read.
 */
export interface Caches {
  tiers: Informer<Tier>;
  bindings: Informer<TenantBinding>;
  clients: Informer<ServiceAccountClient>;
  namespaces: Informer<Namespace>;
  /** ServiceAccounts labelled as tokenwarden's, in tier namespaces only. */
  serviceAccounts: NamespacedInformers<ServiceAccount>;
  /** Secrets of type tokenwarden.io/anchor labelled as tokenwarden's, in tier namespaces only. */
  anchors: NamespacedInformers<CachedSecret>;
  /** Secrets of type tokenwarden.io/token labelled as tokenwarden's, in every namespace, without their values. */
  secrets: Informer<CachedSecret>;
  roleBindings: Informer<Binding>;
  clusterRoleBindings: Informer<Binding>;
}

export interface OperatorContext {
  config: OperatorConfig;
  kube: KubeClient;
  caches: Caches;
  events: EventRecorder;
  freshness: CacheFreshness;
  /** Anchors of refused attempts, reused by the next attempt (policy/anchor-reuse.ts). */
  unusedAnchors: UnusedAnchors;
  metrics: TokenMetrics;
  logger: Logger;
  now: () => number;
  /** Queue a client for reconciling, e.g. when its tier is going away. */
  enqueueClient(key: string): void;
}

/** The namespace of a tier: spec.namespace, or "<prefix>-tier-<name>". */
export function tierNamespace(tier: Tier, prefix: string): string {
  return tier.spec.namespace !== '' ? tier.spec.namespace : `${prefix}-tier-${tier.metadata.name}`;
}

/**
 * The namespaces of every Tier this instance manages, being deleted or not (its finalizer still
 * sweeps there): the only namespaces where ServiceAccounts and anchors are watched and acted on.
 */
export function tierNamespaces(tiers: readonly Tier[], prefix: string): Set<string> {
  return new Set(tiers.map((tier) => tierNamespace(tier, prefix)));
}

/** Tiers that exist and are not being deleted, which clients may resolve to. */
export function liveTiers(caches: Caches): Tier[] {
  return caches.tiers.list().filter((tier) => tier.metadata.deletionTimestamp === undefined);
}

/**
 * Whether a Secret is an anchor the operator made: of the anchor type, in the namespace of the Tier
 * its tier label names, a Tier this instance manages. Labels alone prove nothing (anyone may write
 * them on a Secret of their own): a look-alike elsewhere must never make the operator revoke a token.
 */
export function isTrustedAnchor(caches: Caches, prefix: string, secret: CachedSecret): boolean {
  if (secret.type !== ANCHOR_SECRET_TYPE) return false;
  const tierName = secret.metadata?.labels?.[TIER_LABEL];
  const tier = tierName === undefined ? undefined : caches.tiers.get(undefined, tierName);
  return tier !== undefined && tierNamespace(tier, prefix) === secret.metadata?.namespace;
}

/** Whether a Secret is the token Secret of this client: of the token type and controlled by it. */
export function isClientSecret(secret: CachedSecret, clientUid: string | undefined): boolean {
  return secret.type === TOKEN_SECRET_TYPE && (secret.metadata?.ownerReferences ?? []).some((ref) => ref.controller === true && ref.uid === clientUid);
}
