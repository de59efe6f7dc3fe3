/**
 * The operator's RBAC from manifests/, for tests that run the operator as its own ServiceAccount
 * instead of as the cluster admin:
 *
 * - manifestObjects(): the objects of manifests/ (the kustomization's resources, in order);
 * - applyObject(): server-side apply as admin (idempotent, so parallel test files may all apply);
 * - operatorServiceAccountKubeconfig(): applies the namespace, ServiceAccount, roles and bindings
 *   of manifests/ and writes a kubeconfig holding a TokenRequest token of that ServiceAccount
 *   (tokenwarden-system/tokenwarden) and the cluster's server and CA;
 * - grantBind(): what a site does for the ClusterRoles its Tiers name (manifests/cluster-role.yaml,
 *   tokenwarden-tier-roles): `bind` on exactly those names, here in a ClusterRole of the test's own.
 *
 * - manifestRbacIdentity(): another ServiceAccount with exactly those permissions (and a Lease of
 *   its own), for tests that need an operator identity of their own.
 *
 * Every operator of the suite runs this way; TOKENWARDEN_TEST_AS_SERVICE_ACCOUNT=0 runs them as admin.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { afterAll } from 'vitest';
import { parseAllDocuments, parse } from 'yaml';
import type { KubeConfig } from '@kubernetes/client-node';
import { adminKubeConfig, waitFor } from './cluster.ts';
import { adminRequest } from './crds.ts';
import { collectionPath, objectPath, resourceType, type ResourceType } from '../../../src/kube/resources.ts';

const manifestDir = fileURLToPath(new URL('../../../manifests', import.meta.url));
const FIELD_MANAGER = 'tokenwarden-tests';

export const OPERATOR_NAMESPACE = 'tokenwarden-system';
export const OPERATOR_SERVICE_ACCOUNT = 'tokenwarden';

export interface ManifestObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [key: string]: unknown;
}

export interface PolicyRule {
  apiGroups?: string[];
  resources?: string[];
  verbs: string[];
  resourceNames?: string[];
}

/** The objects of manifests/, in the order of kustomization.yaml's resources. */
export function manifestObjects(): ManifestObject[] {
  const kustomization = parse(fs.readFileSync(path.join(manifestDir, 'kustomization.yaml'), 'utf8')) as { resources: string[] };
  return kustomization.resources.flatMap((file) =>
    parseAllDocuments(fs.readFileSync(path.join(manifestDir, file), 'utf8'))
      .map((doc) => doc.toJS() as ManifestObject | null)
      .filter((obj): obj is ManifestObject => obj !== null),
  );
}

/**
 * The objects that make up the operator's identity, permissions and admission fence (no Deployment,
 * no Service).
 */
export function rbacObjects(): ManifestObject[] {
  const kinds = new Set(['Namespace', 'ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding', ...FENCE_KINDS]);
  return manifestObjects().filter((obj) => kinds.has(obj.kind));
}

const FENCE_KINDS = ['ValidatingAdmissionPolicy', 'ValidatingAdmissionPolicyBinding'];
const FENCED_USER = `'system:serviceaccount:tokenwarden-system:tokenwarden'`;

/**
 * The admission fence of manifests/operator-fence.yaml for another operator identity: the same
 * policy and binding, named after the identity, matching its username instead of the manifests'.
 */
export function fenceFor(username: string): ManifestObject[] {
  const objects = manifestObjects().filter((obj) => FENCE_KINDS.includes(obj.kind));
  if (objects.length !== 2 || !JSON.stringify(objects).includes(FENCED_USER)) throw new Error(`manifests/ has no fence for ${FENCED_USER}`);
  const suffix = username.replace(/^system:serviceaccount:/, '').replace(/[^a-z0-9-]+/g, '-');
  const rename = (name: string) => `${name}-${suffix}`.slice(0, 253);
  return objects.map((obj) => {
    const copy = JSON.parse(JSON.stringify(obj).replaceAll(FENCED_USER, `'${username}'`)) as ManifestObject & { spec: { policyName?: string } };
    copy.metadata.name = rename(copy.metadata.name);
    if (copy.spec.policyName !== undefined) copy.spec.policyName = rename(copy.spec.policyName);
    return copy;
  });
}

const PLURALS: Record<string, string> = {
  Namespace: 'namespaces',
  ServiceAccount: 'serviceaccounts',
  ClusterRole: 'clusterroles',
  ClusterRoleBinding: 'clusterrolebindings',
  Role: 'roles',
  RoleBinding: 'rolebindings',
  Deployment: 'deployments',
  Service: 'services',
  Pod: 'pods',
  ValidatingAdmissionPolicy: 'validatingadmissionpolicies',
  ValidatingAdmissionPolicyBinding: 'validatingadmissionpolicybindings',
};

/** The operator's KubeClient's name for a manifest object's kind (for a control plane adminRequest does not reach). */
export function resourceTypeOf(obj: Pick<ManifestObject, 'apiVersion' | 'kind' | 'metadata'>): ResourceType {
  const plural = PLURALS[obj.kind];
  if (!plural) throw new Error(`no plural known for kind ${obj.kind}`);
  const [group, version] = obj.apiVersion.includes('/') ? (obj.apiVersion.split('/') as [string, string]) : ['', obj.apiVersion];
  return resourceType(group, version, plural, obj.kind, obj.metadata.namespace !== undefined);
}

export function objectUrl(obj: Pick<ManifestObject, 'apiVersion' | 'kind' | 'metadata'>, opts: { collection?: boolean } = {}): string {
  const type = resourceTypeOf(obj);
  return opts.collection ? collectionPath(type, obj.metadata.namespace) : objectPath(type, obj.metadata.namespace, obj.metadata.name);
}

/** Server-side apply as admin, retried over the transient errors of racing first creates. */
export async function applyObject(obj: ManifestObject, opts: { dryRun?: boolean } = {}): Promise<unknown> {
  const url = `${objectUrl(obj)}?fieldManager=${FIELD_MANAGER}&force=true${opts.dryRun ? '&dryRun=All' : ''}`;
  for (let attempt = 1; ; attempt++) {
    const res = await adminRequest('PATCH', url, obj, 'application/apply-patch+yaml');
    if (res.code === 200 || res.code === 201) return res.body;
    if (![409, 429, 500, 503, 504].includes(res.code) || attempt === 8) {
      throw new Error(`apply ${obj.kind} ${obj.metadata.name}: HTTP ${res.code}: ${(res.body as { message?: string } | undefined)?.message ?? ''}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100 * attempt));
  }
}

export async function deleteObject(obj: Pick<ManifestObject, 'apiVersion' | 'kind' | 'metadata'>): Promise<void> {
  const res = await adminRequest('DELETE', objectUrl(obj));
  if (res.code >= 300 && res.code !== 404) throw new Error(`delete ${obj.kind} ${obj.metadata.name}: HTTP ${res.code}`);
}

const tempFiles = new Set<string>();
const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup().catch(() => undefined);
  for (const file of tempFiles) fs.rmSync(file, { force: true });
  tempFiles.clear();
});

/** Deletes `obj` (as admin) after the test file. */
export function deleteAfterFile(obj: Pick<ManifestObject, 'apiVersion' | 'kind' | 'metadata'>): void {
  cleanups.push(() => deleteObject(obj));
}

/** A TokenRequest token for namespace/name, minted as admin. */
export async function serviceAccountToken(namespace: string, name: string, expirationSeconds = 3 * 3600): Promise<string> {
  const res = await adminRequest<{ status?: { token?: string }; message?: string }>('POST', `/api/v1/namespaces/${namespace}/serviceaccounts/${name}/token`, {
    apiVersion: 'authentication.k8s.io/v1',
    kind: 'TokenRequest',
    spec: { expirationSeconds },
  });
  if (res.code !== 201 || !res.body.status?.token) throw new Error(`TokenRequest for ${namespace}/${name}: HTTP ${res.code}: ${res.body.message ?? ''}`);
  return res.body.status.token;
}

/** A kubeconfig file (0600, removed after the test file) that authenticates with `token` to the cluster of `kc` (default the run's). */
export function tokenKubeconfig(token: string, user: string, kc: KubeConfig = adminKubeConfig()): string {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error('the admin context has no cluster');
  const ca = cluster.caData ?? (cluster.caFile ? fs.readFileSync(cluster.caFile).toString('base64') : undefined);
  const config = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'test', cluster: { server: cluster.server, ...(ca ? { 'certificate-authority-data': ca } : {}) } }],
    users: [{ name: user, user: { token } }],
    contexts: [{ name: user, context: { cluster: 'test', user } }],
    'current-context': user,
  };
  const file = path.join(os.tmpdir(), `tokenwarden-${user.replace(/[^a-zA-Z0-9-]+/g, '-')}-${process.pid}-${randomBytes(3).toString('hex')}.kubeconfig`);
  fs.writeFileSync(file, JSON.stringify(config), { mode: 0o600 });
  tempFiles.add(file);
  return file;
}

let operatorKubeconfig: Promise<string> | undefined;

/**
 * Applies manifests/' namespace, ServiceAccount, roles and bindings, and returns a kubeconfig of
 * tokenwarden-system/tokenwarden (once per test file).
 */
export function operatorServiceAccountKubeconfig(): Promise<string> {
  operatorKubeconfig ??= (async () => {
    for (const obj of rbacObjects()) await applyObject(obj);
    const token = await serviceAccountToken(OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT);
    return tokenKubeconfig(token, serviceAccountUser(OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT));
  })().catch((err: unknown) => {
    operatorKubeconfig = undefined;
    throw err;
  });
  return operatorKubeconfig;
}

/** The file's bind grants: one ClusterRole naming the roles, bound to every operator identity of the file. */
let bindRoleName: string | undefined;
const bindRoleNames = new Set<string>();
/** Who the bind grants go to: the manifests' ServiceAccount and every manifestRbacIdentity() of the file. */
const bindSubjects: { namespace: string; name: string }[] = [{ namespace: OPERATOR_NAMESPACE, name: OPERATOR_SERVICE_ACCOUNT }];
let granting: Promise<void> = Promise.resolve();

async function applyBindGrants(): Promise<void> {
  if (bindRoleName === undefined) {
    const name = `tokenwarden-test-tier-roles-${randomBytes(4).toString('hex')}`;
    bindRoleName = name;
    cleanups.push(() => deleteObject({ apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name } }));
    cleanups.push(() => deleteObject({ apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: { name } }));
  }
  const names = [...bindRoleNames].sort();
  // An empty resourceNames would mean every ClusterRole: no rule at all until a role is named.
  await applyObject({
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRole',
    metadata: { name: bindRoleName },
    rules: names.length ? [{ apiGroups: ['rbac.authorization.k8s.io'], resources: ['clusterroles'], verbs: ['bind'], resourceNames: names }] : [],
  });
  await applyObject({
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRoleBinding',
    metadata: { name: bindRoleName },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: bindRoleName },
    subjects: bindSubjects.map((s) => ({ kind: 'ServiceAccount', ...s })),
  });
}

/**
 * Lets the operator's ServiceAccounts bind ClusterRole `roleName` (as a site lists its Tiers' roles),
 * through a ClusterRole and ClusterRoleBinding of this test file, deleted after it.
 */
export function grantBind(roleName: string): Promise<void> {
  granting = granting.then(async () => {
    bindRoleNames.add(roleName);
    await applyBindGrants();
  });
  return granting;
}

/** Gives another operator identity of this file the bind grants. */
function addBindSubject(subject: { namespace: string; name: string }): Promise<void> {
  granting = granting.then(async () => {
    if (!bindSubjects.some((s) => s.namespace === subject.namespace && s.name === subject.name)) bindSubjects.push(subject);
    await applyBindGrants();
  });
  return granting;
}

/** Resolves once every grantBind() so far is in place. */
export function bindGranted(): Promise<void> {
  return granting;
}

/** Whether the operators of the suite run as the ServiceAccount of manifests/ (the default) rather than as admin. */
export function asServiceAccount(): boolean {
  // The default: every run proves the RBAC of manifests/ suffices. TOKENWARDEN_TEST_AS_SERVICE_ACCOUNT=0 runs as admin.
  const v = process.env.TOKENWARDEN_TEST_AS_SERVICE_ACCOUNT;
  return v !== '0' && v !== 'false';
}

/**
 * A ServiceAccount of its own with exactly the RBAC of manifests/: bound to the ClusterRoles
 * tokenwarden-operator and tokenwarden-tier-roles, to this file's bind grants (grantBind), and, for
 * an operator that elects a leader, to a copy of the leader-election Role naming `lease` (what a site
 * that sets --leader-election-id does). Everything is removed after the test file. Returns a
 * kubeconfig with a TokenRequest token of it.
 *
 * For tests that need an operator identity of their own (to count its requests by FlowSchema, or to
 * compete for a Lease of their own) and must still prove that the manifests' RBAC suffices.
 */
export async function manifestRbacIdentity(namespace: string, name: string, opts: { lease?: { namespace: string; name: string } } = {}): Promise<{ path: string; username: string }> {
  for (const obj of rbacObjects()) await applyObject(obj);
  const subject = { kind: 'ServiceAccount', name, namespace };
  await applyObject({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name, namespace } });
  const bindingName = (role: string) => `${namespace}-${name}-${role}`.slice(0, 253);
  for (const role of ['tokenwarden-operator', 'tokenwarden-tier-roles']) {
    const binding: ManifestObject = {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: bindingName(role) },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role },
      subjects: [subject],
    };
    await applyObject(binding);
    deleteAfterFile(binding);
  }
  await addBindSubject({ namespace, name });
  const user = serviceAccountUser(namespace, name);
  for (const obj of fenceFor(user)) {
    await applyObject(obj);
    deleteAfterFile(obj);
  }
  if (opts.lease) {
    const election = rbacObjects().find((o) => o.kind === 'Role' && o.metadata.name === 'tokenwarden-leader-election') as ManifestObject & { rules: PolicyRule[] };
    const roleName = `${name}-leader-election`;
    const rules = election.rules.map((rule) => (rule.resourceNames ? { ...rule, resourceNames: [opts.lease?.name as string] } : rule));
    await applyObject({ apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'Role', metadata: { name: roleName, namespace: opts.lease.namespace }, rules });
    await applyObject({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: { name: roleName, namespace: opts.lease.namespace },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: roleName },
      subjects: [subject],
    });
  }
  // The authorizer learns bindings from a watch: wait until it allows what the last of them grants.
  const lease = opts.lease;
  await waitFor(
    async () =>
      (await allowed(user, { verb: 'list', group: 'tokenwarden.io', resource: 'serviceaccountclients' })) &&
      (lease === undefined || (await allowed(user, { verb: 'update', group: 'coordination.k8s.io', resource: 'leases', namespace: lease.namespace, name: lease.name }))),
    { timeoutMs: 15_000, description: `the RBAC of ${user} in effect` },
  );
  return { path: tokenKubeconfig(await serviceAccountToken(namespace, name), user), username: user };
}

/** `system:serviceaccount:<ns>:<name>` */
export function serviceAccountUser(namespace: string, name: string): string {
  return `system:serviceaccount:${namespace}:${name}`;
}

/**
 * Whether the authorizer allows ServiceAccount `user` (system:serviceaccount:<ns>:<name>) these
 * resource attributes, with the groups the API server gives such a token.
 */
export async function allowed(user: string, attrs: Record<string, string | undefined>): Promise<boolean> {
  const namespace = user.split(':')[2];
  const res = await adminRequest<{ status?: { allowed?: boolean } }>('POST', '/apis/authorization.k8s.io/v1/subjectaccessreviews', {
    apiVersion: 'authorization.k8s.io/v1',
    kind: 'SubjectAccessReview',
    spec: { user, groups: ['system:serviceaccounts', `system:serviceaccounts:${namespace}`, 'system:authenticated'], resourceAttributes: attrs },
  });
  return res.body.status?.allowed === true;
}
