/**
 * Issue 3, "Done when" 1: a Tier with access rules yields its namespace (labels, annotations) and
 * bindings; a token of that tier passes a SubjectAccessReview for the granted role and fails for an
 * ungranted one.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { RbacAuthorizationV1Api } from '@kubernetes/client-node';
import { createTestNamespace, userKubeConfig, waitFor } from '../support/cluster.ts';
import { asServiceAccount } from '../support/rbac.ts';
import {
  MANAGED_BY,
  R,
  TIER_LABEL,
  createClient,
  condition,
  createTier,
  getTier,
  kube,
  tierEvents,
  review,
  scopedName,
  startOperator,
  tierNamespace,
  trackClusterObject,
  waitForClientReady,
  waitForTierReady,
  type KEvent,
  type KObject,
  type OperatorProcess,
  type Tier,
} from '../support/operator.ts';

interface Binding extends KObject {
  roleRef: { apiGroup: string; kind: string; name: string };
  subjects?: { kind: string; name: string; apiGroup?: string; namespace?: string }[];
}

let op: OperatorProcess;
let clientNs: string;
let modelsNs: string;
let otherNs: string;
let modelUser: string;
let catalogReader: string;
let tier: Tier;
let tierNs: string;
let aud: string;
const catalogGroup = 'catalog.tokenwarden-test.io';

beforeAll(async () => {
  op = await startOperator({ name: 'tier' });
  clientNs = await createTestNamespace(`${op.prefix}-tenant`);
  modelsNs = await createTestNamespace(`${op.prefix}-models`);
  otherNs = await createTestNamespace(`${op.prefix}-other`);
  modelUser = scopedName(op, 'model-user');
  catalogReader = scopedName(op, 'catalog-reader');
  await kube.create(R.clusterRole, undefined, {
    metadata: { name: modelUser, labels: { ...op.labels } },
    rules: [{ apiGroups: [''], resources: ['configmaps'], verbs: ['get', 'list'] }],
  });
  trackClusterObject(R.clusterRole, modelUser);
  await kube.create(R.clusterRole, undefined, {
    metadata: { name: catalogReader, labels: { ...op.labels } },
    rules: [{ apiGroups: [catalogGroup], resources: ['models'], verbs: ['get'] }],
  });
  trackClusterObject(R.clusterRole, catalogReader);
  aud = `${op.prefix}-gateway`;
  tier = await createTier(op, 'premium', {
    displayName: 'Premium',
    level: 20,
    groups: [`${op.prefix}-premium-users`],
    token: { audiences: [aud] },
    access: [
      { clusterRole: modelUser, namespaces: [modelsNs] },
      { clusterRole: catalogReader },
    ],
    limits: { requestsPerMinute: 600, tokensPerMinute: 50000 },
  });
  tierNs = tierNamespace(op, tier.metadata.name);
});

async function sar(user: string, groups: string[], attrs: { namespace?: string; verb: string; group: string; resource: string }): Promise<boolean> {
  const result = await kube.post<{ status?: { allowed?: boolean } }>('/apis/authorization.k8s.io/v1/subjectaccessreviews', {
    apiVersion: 'authorization.k8s.io/v1',
    kind: 'SubjectAccessReview',
    spec: { user, groups, resourceAttributes: attrs },
  });
  return result.status?.allowed === true;
}

describe('1: a Tier yields its namespace and access bindings', () => {
  it('creates the tier namespace with the tier label and the limits as annotations, and reports it in status', async () => {
    const ready = await waitForTierReady(tier.metadata.name);
    expect(ready.status?.namespace).toBe(tierNs);
    const ns = await kube.get(R.namespace, undefined, tierNs);
    expect(ns.metadata.labels).toMatchObject({ [MANAGED_BY]: 'tokenwarden', [TIER_LABEL]: tier.metadata.name });
    expect(ns.metadata.annotations).toMatchObject({
      'tokenwarden.io/requests-per-minute': '600',
      'tokenwarden.io/tokens-per-minute': '50000',
    });
  });

  it('binds each access rule to the group of the tier namespace: a RoleBinding per listed namespace, else a ClusterRoleBinding', async () => {
    await waitForTierReady(tier.metadata.name);
    const group = { kind: 'Group', name: `system:serviceaccounts:${tierNs}` };
    const rb = await kube.get<Binding>(R.roleBinding, modelsNs, `${op.namespacePrefix}-tier-${tier.metadata.name}-${modelUser}`);
    expect(rb.roleRef).toEqual({ apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: modelUser });
    expect(rb.subjects).toEqual([expect.objectContaining(group)]);
    const crb = await kube.get<Binding>(R.clusterRoleBinding, undefined, `${op.namespacePrefix}-tier-${tier.metadata.name}-${catalogReader}`);
    expect(crb.roleRef).toEqual({ apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: catalogReader });
    expect(crb.subjects).toEqual([expect.objectContaining(group)]);
    // The namespaced rule yields no ClusterRoleBinding, and no RoleBinding elsewhere.
    expect(await kube.tryGet(R.clusterRoleBinding, undefined, `${op.namespacePrefix}-tier-${tier.metadata.name}-${modelUser}`)).toBeNull();
    expect(await kube.tryGet(R.roleBinding, otherNs, `${op.namespacePrefix}-tier-${tier.metadata.name}-${modelUser}`)).toBeNull();
  });

  it('gives a token of the tier the granted access and nothing else (SubjectAccessReview of its TokenReview identity); counts the client in status', async () => {
    await waitForTierReady(tier.metadata.name);
    await createClient(op, clientNs, 'alice-notebook', { subject: { user: 'alice@example.com', groups: [`${op.prefix}-premium-users`] } });
    const { token } = await waitForClientReady(clientNs, 'alice-notebook');
    await waitFor(async () => (await getTier(tier.metadata.name)).status?.clients === 1, { timeoutMs: 10_000, description: 'Tier status.clients 1' });
    const who = await review(token as string, [aud]);
    expect(who.authenticated).toBe(true);
    expect(who.username?.startsWith(`system:serviceaccount:${tierNs}:`)).toBe(true);
    const user = who.username as string;
    const groups = who.groups ?? [];
    expect(groups).toContain(`system:serviceaccounts:${tierNs}`);

    // Granted: the namespaced role in the listed namespace, the cluster-wide role everywhere.
    expect(await sar(user, groups, { namespace: modelsNs, verb: 'get', group: '', resource: 'configmaps' })).toBe(true);
    expect(await sar(user, groups, { namespace: modelsNs, verb: 'list', group: '', resource: 'configmaps' })).toBe(true);
    expect(await sar(user, groups, { namespace: otherNs, verb: 'get', group: catalogGroup, resource: 'models' })).toBe(true);
    expect(await sar(user, groups, { verb: 'get', group: catalogGroup, resource: 'models' })).toBe(true);
    // Not granted: another verb, another resource, the namespaced role outside its namespace.
    expect(await sar(user, groups, { namespace: modelsNs, verb: 'delete', group: '', resource: 'configmaps' })).toBe(false);
    expect(await sar(user, groups, { namespace: modelsNs, verb: 'get', group: '', resource: 'secrets' })).toBe(false);
    expect(await sar(user, groups, { namespace: otherNs, verb: 'get', group: '', resource: 'configmaps' })).toBe(false);
    expect(await sar(user, groups, { namespace: clientNs, verb: 'get', group: '', resource: 'configmaps' })).toBe(false);
    expect(await sar(user, groups, { namespace: otherNs, verb: 'delete', group: catalogGroup, resource: 'models' })).toBe(false);
  });
});

/** Waits for Ready=False with `reason` for the Tier's current generation. */
async function waitForTierNotReady(name: string, reason: string): Promise<Tier> {
  return waitFor(
    async () => {
      const t = await getTier(name);
      const ready = condition(t, 'Ready');
      return ready?.status === 'False' && ready.reason === reason && ready.observedGeneration === t.metadata.generation ? t : undefined;
    },
    { timeoutMs: 30_000, description: `Tier ${name} Ready=False ${reason}` },
  );
}

/** Warning Events about a Tier with `reason`. */
async function tierWarnings(name: string, reason: string): Promise<KEvent[]> {
  return (await tierEvents(name)).filter((e) => e.reason === reason && e.type === 'Warning');
}

describe('a Tier whose objects the API server refuses', () => {
  it('a RoleBinding in a namespace that does not exist: Ready=False Refused, a Warning Event, a log line; Ready once the spec is fixed', async () => {
    const missingNs = `${op.prefix}-no-such-namespace`;
    const refused = await createTier(op, 'missing-ns', { level: 1, access: [{ clusterRole: modelUser, namespaces: [missingNs] }] });
    const name = refused.metadata.name;
    const t = await waitForTierNotReady(name, 'Refused');
    expect(condition(t, 'Ready')?.message).toContain(missingNs);
    await waitFor(async () => (await tierWarnings(name, 'Refused')).length > 0, { timeoutMs: 10_000, description: `Warning Event Refused about Tier ${name}` });
    expect(op.logs()).toMatch(/"msg":"the API server refuses the tier's objects"/);

    await kube.patch(R.tier, undefined, name, { spec: { access: [{ clusterRole: modelUser, namespaces: [modelsNs] }] } });
    await waitForTierReady(name);
    expect(await kube.tryGet(R.roleBinding, modelsNs, `${op.namespacePrefix}-tier-${name}-${modelUser}`)).not.toBeNull();
  });

  // As admin (TOKENWARDEN_TEST_AS_SERVICE_ACCOUNT=0) the operator could bind anything: the point is the manifests' RBAC.
  it.skipIf(!asServiceAccount())('a ClusterRole the operator may not bind (cluster-admin) is never granted: Refused, and no binding exists', async () => {
    const greedy = await createTier(op, 'greedy', { level: 1, access: [{ clusterRole: 'cluster-admin' }] });
    const name = greedy.metadata.name;
    const t = await waitForTierNotReady(name, 'Refused');
    expect(condition(t, 'Ready')?.message).toMatch(/forbidden/);
    expect(await kube.tryGet(R.clusterRoleBinding, undefined, `${op.namespacePrefix}-tier-${name}-cluster-admin`)).toBeNull();
    expect(op.logs()).toContain('attempting to grant RBAC permissions not currently held');
  });
});

describe('deletionPolicy', () => {
  const rbName = (name: string) => `${op.namespacePrefix}-tier-${name}-${modelUser}`;
  async function createAndDelete(short: string, deletionPolicy: 'Retain' | 'Delete'): Promise<{ name: string; namespace: string }> {
    const created = await createTier(op, short, { level: 1, deletionPolicy, access: [{ clusterRole: modelUser, namespaces: [modelsNs] }] });
    const name = created.metadata.name;
    await waitForTierReady(name);
    expect(await kube.tryGet(R.roleBinding, modelsNs, rbName(name))).not.toBeNull();
    await kube.remove(R.tier, undefined, name);
    await waitFor(async () => (await kube.tryGet(R.tier, undefined, name)) === null, { timeoutMs: 20_000, description: `Tier ${name} gone` });
    // Either way its access goes with it.
    expect(await kube.tryGet(R.roleBinding, modelsNs, rbName(name))).toBeNull();
    return { name, namespace: tierNamespace(op, name) };
  }

  it('Retain: deleting the Tier removes its bindings and keeps its namespace', async () => {
    const { namespace } = await createAndDelete('kept', 'Retain');
    const ns = await kube.get(R.namespace, undefined, namespace);
    expect(ns.metadata.deletionTimestamp).toBeUndefined();
  });

  it('Delete: deleting the Tier removes its bindings and its namespace', async () => {
    const { namespace } = await createAndDelete('gone', 'Delete');
    await waitFor(async () => {
      const ns = await kube.tryGet(R.namespace, undefined, namespace);
      return ns === null || ns.metadata.deletionTimestamp !== undefined;
    }, { timeoutMs: 10_000, description: `namespace ${namespace} deleted` });
  });
});

describe("bindings a namespace admin labels as a tier's", () => {
  it('are never deleted: not as stale when the access moves, not when the Tier goes', async () => {
    const mallory = 'mallory@example.com';
    const malloryNs = await createTestNamespace(`${op.prefix}-mallory`);
    await kube.create(R.roleBinding, malloryNs, {
      metadata: { name: 'mallory-admin' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'admin' },
      subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: mallory }],
    });
    const asMallory = userKubeConfig(mallory).makeApiClient(RbacAuthorizationV1Api);
    const created = await createTier(op, 'lookalike', { level: 1, access: [{ clusterRole: modelUser, namespaces: [modelsNs] }] });
    const name = created.metadata.name;
    await waitForTierReady(name);
    const theTiers = `${op.namespacePrefix}-tier-${name}-${modelUser}`;
    const labels = { [MANAGED_BY]: 'tokenwarden', [TIER_LABEL]: name };
    // Her own grant (view for herself), once under a name of her choice, once under the tier's name for
    // it; her admin role lets her bind view in her namespace.
    const planted: { name: string; resourceVersion: string }[] = [];
    for (const bindingName of ['looks-like-tokenwarden', theTiers]) {
      const made = await waitFor(async () => {
        try {
          return await asMallory.createNamespacedRoleBinding({
            namespace: malloryNs,
            body: {
              metadata: { name: bindingName, labels, annotations: { padding: 'x'.repeat(200_000) } },
              roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'view' },
              subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: mallory }],
            },
          });
        } catch (err) {
          if ((err as { code?: number }).code === 403) return undefined; // her admin role not yet seen by the authorizer
          throw err;
        }
      }, { timeoutMs: 15_000, description: `mallory creates RoleBinding ${bindingName}` });
      planted.push({ name: bindingName, resourceVersion: made.metadata?.resourceVersion as string });
    }
    const untouched = async () => {
      for (const p of planted) expect((await kube.get(R.roleBinding, malloryNs, p.name)).metadata.resourceVersion, p.name).toBe(p.resourceVersion);
    };

    // The access moves to another namespace: the tier's binding in modelsNs goes as stale, hers stay.
    await kube.patch(R.tier, undefined, name, { spec: { access: [{ clusterRole: modelUser, namespaces: [otherNs] }] } });
    await waitFor(async () => (await kube.tryGet(R.roleBinding, otherNs, theTiers)) !== null && (await kube.tryGet(R.roleBinding, modelsNs, theTiers)) === null, {
      timeoutMs: 20_000,
      description: `the tier's binding moved from ${modelsNs} to ${otherNs}`,
    });
    await untouched();

    await kube.remove(R.tier, undefined, name);
    await waitFor(async () => (await kube.tryGet(R.tier, undefined, name)) === null, { timeoutMs: 20_000, description: `Tier ${name} gone` });
    expect(await kube.tryGet(R.roleBinding, otherNs, theTiers)).toBeNull();
    await untouched();
  });
});
