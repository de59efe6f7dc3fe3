import { describe, expect, it } from 'vitest';
import {
  apiVersionOf,
  CLUSTER_ROLE_BINDINGS,
  collectionPath,
  EVENTS,
  keyOf,
  LEASES,
  NAMESPACES,
  objectKey,
  objectPath,
  resourceName,
  ROLE_BINDINGS,
  SECRETS,
  SERVICE_ACCOUNT_CLIENTS,
  SERVICE_ACCOUNTS,
  splitKey,
  SUBJECT_ACCESS_REVIEWS,
  TENANT_BINDINGS,
  TIERS,
  TOKEN_REVIEWS,
} from '../../../src/kube/resources.ts';

describe('resource constants', () => {
  it.each([
    [NAMESPACES, 'v1', 'Namespace', false],
    [SERVICE_ACCOUNTS, 'v1', 'ServiceAccount', true],
    [SECRETS, 'v1', 'Secret', true],
    [EVENTS, 'events.k8s.io/v1', 'Event', true],
    [ROLE_BINDINGS, 'rbac.authorization.k8s.io/v1', 'RoleBinding', true],
    [CLUSTER_ROLE_BINDINGS, 'rbac.authorization.k8s.io/v1', 'ClusterRoleBinding', false],
    [LEASES, 'coordination.k8s.io/v1', 'Lease', true],
    [TOKEN_REVIEWS, 'authentication.k8s.io/v1', 'TokenReview', false],
    [SUBJECT_ACCESS_REVIEWS, 'authorization.k8s.io/v1', 'SubjectAccessReview', false],
    [TIERS, 'tokenwarden.io/v1alpha1', 'Tier', false],
    [TENANT_BINDINGS, 'tokenwarden.io/v1alpha1', 'TenantBinding', true],
    [SERVICE_ACCOUNT_CLIENTS, 'tokenwarden.io/v1alpha1', 'ServiceAccountClient', true],
  ] as const)('%#: %s', (type, apiVersion, kind, namespaced) => {
    expect(apiVersionOf(type)).toBe(apiVersion);
    expect(type.kind).toBe(kind);
    expect(type.namespaced).toBe(namespaced);
    expect(type.plural).toBe(type.plural.toLowerCase());
  });

  it('is frozen', () => {
    expect(Object.isFrozen(SECRETS)).toBe(true);
  });
});

describe('collectionPath', () => {
  it('builds core paths', () => {
    expect(collectionPath(SECRETS, 'team-a')).toBe('/api/v1/namespaces/team-a/secrets');
    expect(collectionPath(SECRETS)).toBe('/api/v1/secrets');
    expect(collectionPath(NAMESPACES)).toBe('/api/v1/namespaces');
  });

  it('builds group paths', () => {
    expect(collectionPath(SERVICE_ACCOUNT_CLIENTS, 'team-a')).toBe('/apis/tokenwarden.io/v1alpha1/namespaces/team-a/serviceaccountclients');
    expect(collectionPath(TIERS)).toBe('/apis/tokenwarden.io/v1alpha1/tiers');
    expect(collectionPath(CLUSTER_ROLE_BINDINGS)).toBe('/apis/rbac.authorization.k8s.io/v1/clusterrolebindings');
  });

  it('treats an empty namespace as all namespaces', () => {
    expect(collectionPath(SECRETS, '')).toBe('/api/v1/secrets');
  });

  it('refuses a namespace for a cluster-scoped type', () => {
    expect(() => collectionPath(TIERS, 'team-a')).toThrow(/cluster-scoped/);
  });
});

describe('objectPath', () => {
  it('builds namespaced and cluster-scoped object paths', () => {
    expect(objectPath(SECRETS, 'team-a', 'tok')).toBe('/api/v1/namespaces/team-a/secrets/tok');
    expect(objectPath(TIERS, undefined, 'premium')).toBe('/apis/tokenwarden.io/v1alpha1/tiers/premium');
    expect(objectPath(NAMESPACES, undefined, 'team-a')).toBe('/api/v1/namespaces/team-a');
  });

  it('adds subresources', () => {
    expect(objectPath(SERVICE_ACCOUNTS, 'tier-ns', 'alice', 'token')).toBe('/api/v1/namespaces/tier-ns/serviceaccounts/alice/token');
    expect(objectPath(SERVICE_ACCOUNT_CLIENTS, 'a', 'c', 'status')).toBe('/apis/tokenwarden.io/v1alpha1/namespaces/a/serviceaccountclients/c/status');
    expect(objectPath(TIERS, undefined, 'premium', 'status')).toBe('/apis/tokenwarden.io/v1alpha1/tiers/premium/status');
  });

  it('requires a namespace for namespaced types', () => {
    expect(() => objectPath(SECRETS, undefined, 'x')).toThrow(/namespaced/);
    expect(() => objectPath(SECRETS, '', 'x')).toThrow(/namespaced/);
  });

  it('rejects names that would change the path', () => {
    expect(() => objectPath(SECRETS, 'a', '')).toThrow(/invalid name/);
    expect(() => objectPath(SECRETS, 'a', '../x')).toThrow(/invalid name/);
    expect(() => objectPath(SECRETS, 'a', '..')).toThrow(/invalid name/);
    expect(() => objectPath(SECRETS, 'a/b', 'x')).toThrow(/invalid namespace/);
    expect(() => objectPath(SECRETS, 'a', 'x', 'a/b')).toThrow(/invalid subresource/);
  });

  it('percent-encodes unusual characters', () => {
    expect(objectPath(TIERS, undefined, 'a b')).toBe('/apis/tokenwarden.io/v1alpha1/tiers/a%20b');
  });
});

describe('names and keys', () => {
  it('names resources as RBAC does', () => {
    expect(resourceName(SERVICE_ACCOUNTS, 'token')).toBe('serviceaccounts/token');
    expect(resourceName(SECRETS)).toBe('secrets');
  });

  it('keys objects like the store does, and splits keys back', () => {
    expect(objectKey({ metadata: { namespace: 'a', name: 'b' } })).toBe('a/b');
    expect(objectKey({ metadata: { name: 'premium' } })).toBe('premium');
    expect(keyOf('a', 'b')).toBe('a/b');
    expect(keyOf(undefined, 'b')).toBe('b');
    expect(splitKey('a/b')).toEqual({ namespace: 'a', name: 'b' });
    expect(splitKey('premium')).toEqual({ namespace: undefined, name: 'premium' });
  });
});
