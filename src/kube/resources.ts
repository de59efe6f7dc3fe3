/**
 * Resource descriptors and REST paths. Everything the operator touches is named here, so the
 * cluster edge has one list of what it reads and writes (and RBAC can be checked against it).
 */

export interface ResourceType {
  /** API group; "" for the core group. */
  readonly group: string;
  readonly version: string;
  /** Lowercase plural, as in the URL. */
  readonly plural: string;
  readonly kind: string;
  readonly namespaced: boolean;
}

/** Fields of metav1.ObjectMeta the machinery reads. */
export interface KubeObjectMeta {
  name?: string;
  generateName?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
  ownerReferences?: {
    apiVersion: string;
    kind: string;
    name: string;
    uid: string;
    controller?: boolean;
    blockOwnerDeletion?: boolean;
  }[];
}

/** Any Kubernetes object. Items of a list come without apiVersion/kind; KubeClient.list fills them in. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: KubeObjectMeta;
}

export function resourceType(group: string, version: string, plural: string, kind: string, namespaced: boolean): ResourceType {
  return Object.freeze({ group, version, plural, kind, namespaced });
}

export const NAMESPACES = resourceType('', 'v1', 'namespaces', 'Namespace', false);
export const SERVICE_ACCOUNTS = resourceType('', 'v1', 'serviceaccounts', 'ServiceAccount', true);
export const SECRETS = resourceType('', 'v1', 'secrets', 'Secret', true);
export const CONFIG_MAPS = resourceType('', 'v1', 'configmaps', 'ConfigMap', true);
export const EVENTS = resourceType('events.k8s.io', 'v1', 'events', 'Event', true);
export const ROLE_BINDINGS = resourceType('rbac.authorization.k8s.io', 'v1', 'rolebindings', 'RoleBinding', true);
export const CLUSTER_ROLE_BINDINGS = resourceType('rbac.authorization.k8s.io', 'v1', 'clusterrolebindings', 'ClusterRoleBinding', false);
export const LEASES = resourceType('coordination.k8s.io', 'v1', 'leases', 'Lease', true);
export const TOKEN_REVIEWS = resourceType('authentication.k8s.io', 'v1', 'tokenreviews', 'TokenReview', false);
export const SUBJECT_ACCESS_REVIEWS = resourceType('authorization.k8s.io', 'v1', 'subjectaccessreviews', 'SubjectAccessReview', false);

export const TOKENWARDEN_GROUP = 'tokenwarden.io';
export const TOKENWARDEN_VERSION = 'v1alpha1';
export const TIERS = resourceType(TOKENWARDEN_GROUP, TOKENWARDEN_VERSION, 'tiers', 'Tier', false);
export const TENANT_BINDINGS = resourceType(TOKENWARDEN_GROUP, TOKENWARDEN_VERSION, 'tenantbindings', 'TenantBinding', true);
export const SERVICE_ACCOUNT_CLIENTS = resourceType(TOKENWARDEN_GROUP, TOKENWARDEN_VERSION, 'serviceaccountclients', 'ServiceAccountClient', true);

/** "v1" for the core group, "group/version" otherwise. */
export function apiVersionOf(type: ResourceType): string {
  return type.group === '' ? type.version : `${type.group}/${type.version}`;
}

/** "/api/v1" or "/apis/group/version". */
export function groupVersionPath(type: ResourceType): string {
  return type.group === '' ? `/api/${type.version}` : `/apis/${type.group}/${type.version}`;
}

function segment(value: string, what: string): string {
  if (value === '' || value === '.' || value === '..' || value.includes('/')) {
    throw new Error(`invalid ${what} ${JSON.stringify(value)}`);
  }
  return encodeURIComponent(value);
}

/**
 * The collection URL. For a namespaced type, no namespace means across all namespaces (list and
 * watch only). A cluster-scoped type refuses a namespace, to catch mix-ups early.
 */
export function collectionPath(type: ResourceType, namespace?: string): string {
  const base = groupVersionPath(type);
  if (namespace !== undefined && namespace !== '') {
    if (!type.namespaced) throw new Error(`${type.plural} is cluster-scoped; got namespace ${JSON.stringify(namespace)}`);
    return `${base}/namespaces/${segment(namespace, 'namespace')}/${type.plural}`;
  }
  return `${base}/${type.plural}`;
}

/** The object URL, optionally of a subresource ("status", "token", "scale"). */
export function objectPath(type: ResourceType, namespace: string | undefined, name: string, subresource?: string): string {
  if (type.namespaced && (namespace === undefined || namespace === '')) {
    throw new Error(`${type.plural} is namespaced; a namespace is required for ${JSON.stringify(name)}`);
  }
  const path = `${collectionPath(type, namespace)}/${segment(name, 'name')}`;
  return subresource === undefined ? path : `${path}/${segment(subresource, 'subresource')}`;
}

/** The resource as RBAC and metrics name it: "secrets", "serviceaccounts/token". */
export function resourceName(type: ResourceType, subresource?: string): string {
  return subresource === undefined ? type.plural : `${type.plural}/${subresource}`;
}

/** The cache key of an object: "namespace/name", or "name" for cluster-scoped objects. */
export function objectKey(obj: KubeObject): string {
  const name = obj.metadata?.name ?? '';
  const ns = obj.metadata?.namespace;
  return ns ? `${ns}/${name}` : name;
}

/** Inverse of objectKey. */
export function splitKey(key: string): { namespace: string | undefined; name: string } {
  const i = key.indexOf('/');
  return i < 0 ? { namespace: undefined, name: key } : { namespace: key.slice(0, i), name: key.slice(i + 1) };
}

/** Key from parts, as objectKey would make it. */
export function keyOf(namespace: string | undefined, name: string): string {
  return namespace ? `${namespace}/${name}` : name;
}
