/**
 * Installs the generated CRDs (crds/*.yaml) on the test cluster and waits until they are served.
 *
 * Several test files call installCrds() at once, in different workers: server-side apply with one
 * field manager and force is idempotent (an unchanged CRD is a no-op) and never conflicts, unlike
 * create-then-update; transient errors of racing first creates are retried.
 */
import { readdirSync, readFileSync } from 'node:fs';
import https from 'node:https';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, parseAllDocuments } from 'yaml';
import { adminKubeConfig, waitFor } from './cluster.ts';

const crdDir = fileURLToPath(new URL('../../../crds', import.meta.url));
const accessDir = fileURLToPath(new URL('../../../access', import.meta.url));
const FIELD_MANAGER = 'tokenwarden-tests';
const RETRYABLE = new Set([409, 429, 500, 503, 504]);

export interface Crd {
  metadata: { name: string };
  spec: { group: string; names: { plural: string }; versions: { name: string; served: boolean }[] };
  status?: { conditions?: { type: string; status: string }[] };
}

/** The CRDs as generated: crds/*.yaml. */
export function generatedCrds(): Crd[] {
  return readdirSync(crdDir)
    .filter((file) => file.endsWith('.yaml'))
    .sort()
    .map((file) => parse(readFileSync(join(crdDir, file), 'utf8')) as Crd);
}

export interface ApiResponse<T = unknown> {
  code: number;
  /** Parsed JSON; a metav1.Status on failure. */
  body: T;
}

/**
 * One request as cluster admin, body sent as is. Not client-node's typed APIs: their serializer
 * maps known kinds through its models and would drop keys it does not model the way we spell them
 * (x-kubernetes-validations in a CRD, say).
 */
export async function adminRequest<T = unknown>(
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE',
  path: string,
  body?: unknown,
  contentType = 'application/json',
  headers: Record<string, string> = {},
): Promise<ApiResponse<T>> {
  const kc = adminKubeConfig();
  const server = kc.getCurrentCluster()?.server;
  if (!server) throw new Error('the admin context has no cluster');
  const opts: https.RequestOptions = { method, timeout: 30_000, headers: { Accept: 'application/json', ...headers } };
  await kc.applyToHTTPSOptions(opts);
  const payload = body === undefined ? undefined : JSON.stringify(body);
  if (payload !== undefined) opts.headers = { ...opts.headers, 'Content-Type': contentType };
  return new Promise((resolve, reject) => {
    const req = https.request(new URL(path, server), opts, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (d: string) => (text += d));
      res.on('end', () => {
        try {
          resolve({ code: res.statusCode ?? 0, body: (text ? JSON.parse(text) : undefined) as T });
        } catch {
          reject(new Error(`${method} ${path}: HTTP ${res.statusCode}, not JSON: ${text.slice(0, 300)}`));
        }
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${path} timed out`)));
    req.on('error', reject);
    req.end(payload);
  });
}

export interface AccessObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string };
  [key: string]: unknown;
}

/** access/*.yaml: the admission policies that prove who asks, and the user-facing ClusterRoles. */
export function accessObjects(): AccessObject[] {
  return readdirSync(accessDir)
    .filter((file) => file.endsWith('.yaml'))
    .sort()
    .flatMap((file) => parseAllDocuments(readFileSync(join(accessDir, file), 'utf8')).map((doc) => doc.toJS() as AccessObject))
    .filter((obj) => obj !== null);
}

const ACCESS_COLLECTIONS: Record<string, string> = {
  ValidatingAdmissionPolicy: '/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies',
  ValidatingAdmissionPolicyBinding: '/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings',
  ClusterRole: '/apis/rbac.authorization.k8s.io/v1/clusterroles',
  ClusterRoleBinding: '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings',
};

/** The URL of a cluster-scoped object of access/ (or of the same kinds). */
export function accessObjectPath(obj: Pick<AccessObject, 'kind' | 'metadata'>): string {
  const collection = ACCESS_COLLECTIONS[obj.kind];
  if (collection === undefined) throw new Error(`no path known for kind ${obj.kind}`);
  return `${collection}/${obj.metadata.name}`;
}

/** Server-side apply as admin, retried over the errors of racing first creates. */
export async function applyClusterObject(obj: Pick<AccessObject, 'kind' | 'metadata'>): Promise<void> {
  const path = `${accessObjectPath(obj)}?fieldManager=${FIELD_MANAGER}&force=true`;
  for (let attempt = 1; ; attempt++) {
    const res = await adminRequest('PATCH', path, obj, 'application/apply-patch+yaml');
    if (res.code === 200 || res.code === 201) return;
    if (!RETRYABLE.has(res.code) || attempt === 10) throw new Error(`apply ${obj.kind} ${obj.metadata.name}: HTTP ${res.code}: ${messageOf(res.body)}`);
    await new Promise((resolve) => setTimeout(resolve, 100 * attempt));
  }
}

/** Who the readiness probe of the admission policies acts as (impersonated by the admin). */
const PROBE_USER = 'tokenwarden-admission-probe';

/**
 * Applies access/ and resolves once the API server enforces it: a dry-run client declaring someone
 * else, sent as a user who may create clients but not speak for others, is refused by the policy.
 * (A new policy takes a moment to reach the admission plugin; a test must not race it.)
 */
async function installAccess(): Promise<void> {
  for (const obj of accessObjects()) await applyClusterObject(obj);
  await applyClusterObject({
    kind: 'ClusterRoleBinding',
    metadata: { name: PROBE_USER },
    apiVersion: 'rbac.authorization.k8s.io/v1',
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'tokenwarden-edit' },
    subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: PROBE_USER }],
  } as AccessObject);
  const probe = {
    apiVersion: 'tokenwarden.io/v1alpha1',
    kind: 'ServiceAccountClient',
    metadata: { name: 'admission-probe', namespace: 'default' },
    spec: { subject: { user: `not-${PROBE_USER}` } },
  };
  await waitFor(
    async () => {
      const res = await adminRequest<{ message?: string }>('POST', '/apis/tokenwarden.io/v1alpha1/namespaces/default/serviceaccountclients?dryRun=All', probe, 'application/json', {
        'Impersonate-User': PROBE_USER,
        'Impersonate-Group': 'system:authenticated',
      });
      return res.code === 403 && (res.body.message ?? '').includes('tokenwarden-client-subject');
    },
    { timeoutMs: 60_000, intervalMs: 200, description: 'the admission policies of access/ to be enforced' },
  );
}

const messageOf = (body: unknown): string => (body as { message?: string } | undefined)?.message ?? JSON.stringify(body);

// Once per test file (vitest evaluates this module afresh for each file); a failure is not cached.
let installing: Promise<void> | undefined;

/**
 * Applies every CRD of crds/ and resolves once all are Established and listed by discovery, then
 * applies access/ and waits until its admission policies are enforced.
 */
export function installCrds(): Promise<void> {
  installing ??= install().catch((err: unknown) => {
    installing = undefined;
    throw err;
  });
  return installing;
}

async function install(): Promise<void> {
  const crds = generatedCrds();
  for (const crd of crds) {
    const path = `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${crd.metadata.name}?fieldManager=${FIELD_MANAGER}&force=true`;
    for (let attempt = 1; ; attempt++) {
      const res = await adminRequest('PATCH', path, crd, 'application/apply-patch+yaml');
      if (res.code === 200 || res.code === 201) break;
      // A refused schema fails at once, with the server's words; a lost race is tried again.
      if (!RETRYABLE.has(res.code) || attempt === 10) {
        throw new Error(`server-side apply of CRD ${crd.metadata.name}: HTTP ${res.code}: ${messageOf(res.body)}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100 * attempt));
    }
  }

  await waitFor(
    async () => {
      for (const crd of crds) {
        const live = await adminRequest<Crd>('GET', `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${crd.metadata.name}`);
        const conditions = live.body.status?.conditions ?? [];
        const isTrue = (type: string): boolean => conditions.some((c) => c.type === type && c.status === 'True');
        if (!isTrue('Established') || !isTrue('NamesAccepted')) return false;
        // Established comes a moment before discovery lists the resource, and kubectl goes by discovery.
        for (const version of crd.spec.versions.filter((v) => v.served)) {
          const list = await adminRequest<{ resources?: { name: string }[] }>('GET', `/apis/${crd.spec.group}/${version.name}`);
          if (!list.body.resources?.some((r) => r.name === crd.spec.names.plural)) return false;
        }
      }
      return true;
    },
    { timeoutMs: 60_000, intervalMs: 200, description: 'the tokenwarden CRDs to be Established and discoverable' },
  );
  await installAccess();
}
