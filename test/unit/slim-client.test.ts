/**
 * src/operator.ts slimClient, the transform of the ServiceAccountClients informer: the cache keeps
 * tokenwarden's own labels and annotations and drops those of GitOps tools and teams, which the
 * operator never reads, along with managedFields and the last-applied copy.
 */
import { describe, expect, it } from 'vitest';
import type { ServiceAccountClient } from '../../src/api/index.ts';
import { LAST_APPLIED_ANNOTATION } from '../../src/controller/informer.ts';
import { slimClient } from '../../src/operator.ts';
import { RENEW_REQUESTED_AT_ANNOTATION } from '../../src/policy/reissue.ts';
import { dictionaryObjects } from './support/v8-shape.ts';

/** A client as Argo CD leaves it, parsed from JSON as the informer receives it. */
function appliedClient(): ServiceAccountClient {
  return JSON.parse(
    JSON.stringify({
      apiVersion: 'tokenwarden.io/v1alpha1',
      kind: 'ServiceAccountClient',
      metadata: {
        name: 'notebook',
        namespace: 'team-a',
        uid: 'client-uid',
        resourceVersion: '12',
        generation: 3,
        finalizers: ['tokenwarden.io/revoke-tokens'],
        labels: { 'app.kubernetes.io/instance': 'team-a-clients', 'helm.sh/chart': 'clients-1.4.2' },
        annotations: {
          'argocd.argoproj.io/tracking-id': 'team-a-clients:tokenwarden.io/ServiceAccountClient:team-a/notebook',
          [LAST_APPLIED_ANNOTATION]: '{"a":"copy"}',
          [RENEW_REQUESTED_AT_ANNOTATION]: '2026-12-01T10:00:00Z',
          'audit.tokenwarden.io/note': 'kept: a subdomain of tokenwarden.io',
          'nottokenwarden.io/x': 'dropped: another domain',
        },
        managedFields: [{ manager: 'argocd-controller', operation: 'Apply' }],
      },
      spec: { subject: { user: 'alice@example.com', groups: ['team-a'] } },
      status: { tier: 'free', conditions: [{ type: 'Ready', status: 'True', reason: 'TokenIssued', message: 'm' }] },
    }),
  ) as ServiceAccountClient;
}

describe('slimClient', () => {
  it("keeps tokenwarden's own annotations, identity, spec and status; drops other tools' labels and annotations, managedFields and last-applied", () => {
    const raw = appliedClient();
    const cached = slimClient(appliedClient());
    const { labels: _labels, annotations: _annotations, managedFields: _managedFields, ...identity } = raw.metadata as typeof raw.metadata & { managedFields?: unknown };
    expect(identity).toMatchObject({ name: 'notebook', uid: 'client-uid', resourceVersion: '12', generation: 3, finalizers: ['tokenwarden.io/revoke-tokens'] });
    expect(cached.metadata).toEqual({
      ...identity,
      annotations: { [RENEW_REQUESTED_AT_ANNOTATION]: '2026-12-01T10:00:00Z', 'audit.tokenwarden.io/note': 'kept: a subdomain of tokenwarden.io' },
    });
    expect(cached.metadata).not.toHaveProperty('labels');
    expect(cached.spec).toEqual(raw.spec);
    expect(cached.status).toEqual(raw.status);
    expect(cached.apiVersion).toBe(raw.apiVersion);
  });

  it('drops a renew request longer than the 1 KiB its answer on the Secret may have in the cache (an answer never seen is asked again forever)', () => {
    const raw = appliedClient();
    raw.metadata.annotations = { [RENEW_REQUESTED_AT_ANNOTATION]: 'x'.repeat(1025) };
    expect(slimClient(raw).metadata.annotations).toBeUndefined();
    raw.metadata.annotations = { [RENEW_REQUESTED_AT_ANNOTATION]: 'x'.repeat(1024) };
    expect(slimClient(raw).metadata.annotations?.[RENEW_REQUESTED_AT_ANNOTATION]).toHaveLength(1024);
  });

  it('builds the cached client whole: no object of it is a V8 dictionary', () => {
    expect(dictionaryObjects(slimClient(appliedClient()))).toEqual([]);
  });
});
