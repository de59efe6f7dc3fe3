/**
 * The benchmark's cluster: a fresh local control plane per size (test/controlplane/launcher.ts),
 * the CRDs, two ServiceAccount identities bound to cluster-admin (the operator and the floor script;
 * ServiceAccounts, not system:masters, so API Priority and Fairness classifies and limits them as it
 * would an operator deployed in a cluster), and FlowSchemas that count the operator's requests per
 * (verb, resource) in apiserver_flowcontrol_dispatched_requests_total.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, parseAllDocuments } from 'yaml';
import { startControlPlane, type ControlPlane } from '../../test/controlplane/launcher.ts';
import { Kube, R, metricSamples, resourcePath, retrying, sleep, type KObject } from './kube.ts';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** The namespace of the bench's identities. */
export const SYSTEM_NAMESPACE = 'tokenwarden-bench-system';
/**
 * The priority level a ServiceAccount outside kube-system gets by default (FlowSchema
 * "service-accounts"): where a deployed operator's requests land.
 */
export const PRIORITY_LEVEL = 'workload-low';

/** Every resource[/subresource] the operator reads or writes. */
export const OPERATOR_RESOURCES = [
  'serviceaccountclients',
  'serviceaccountclients/status',
  'tiers',
  'tiers/status',
  'tenantbindings',
  'tenantbindings/status',
  'secrets',
  'serviceaccounts',
  'serviceaccounts/token',
  'namespaces',
  'rolebindings',
  'clusterrolebindings',
  'events',
] as const;
export const APF_VERBS = ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'] as const;
export const WRITE_VERBS = new Set(['create', 'update', 'patch', 'delete', 'deletecollection']);

export interface BenchCluster {
  cp: ControlPlane;
  admin: Kube;
  operatorKubeconfig: string;
  floorKubeconfig: string;
  kubernetesVersion: string;
  etcdVersion: string;
  /** FlowSchema name -> "verb resource" for the operator identity; "other" for the catch-all. */
  flowSchemas: Map<string, string>;
  stop(): Promise<void>;
}

export async function startCluster(workDir: string, log: (line: string) => void): Promise<BenchCluster> {
  const cp = await startControlPlane({ stateDir: path.join(workDir, 'state'), logDir: path.join(workDir, 'logs'), log: (l) => log(`[controlplane] ${l}`) });
  const admin = new Kube(cp.kubeconfigPath, 'admin');
  try {
    await installCrds(admin);
    await installAccess(admin);
    await retrying(() => admin.create(R.namespace, undefined, { metadata: { name: SYSTEM_NAMESPACE } }));
    const operatorKubeconfig = await identityKubeconfig(admin, workDir, 'operator');
    const floorKubeconfig = await identityKubeconfig(admin, workDir, 'floor');
    const flowSchemas = await createFlowSchemas(admin, 'operator');
    const version = await admin.request<{ gitVersion: string }>('GET', '/version');
    return {
      cp,
      admin,
      operatorKubeconfig,
      floorKubeconfig,
      // Built from source without version stamping, the server says v0.0.0-master: the build folder names the release.
      kubernetesVersion: /^v0\.0\.0/.test(version.gitVersion) ? (/kubernetes-(v[\d.]+)/.exec(cp.binDir)?.[1] ?? version.gitVersion) : version.gitVersion,
      etcdVersion: /etcd-(v[\d.]+)/.exec(cp.binDir)?.[1] ?? 'unknown',
      flowSchemas,
      async stop() {
        admin.close();
        await cp.stop();
      },
    };
  } catch (err) {
    admin.close();
    await cp.stop().catch(() => undefined);
    throw err;
  }
}

async function installCrds(admin: Kube): Promise<void> {
  const dir = path.join(repoRoot, 'crds');
  const crds = fs.readdirSync(dir).filter((f) => f.endsWith('.yaml')).sort().map((f) => parse(fs.readFileSync(path.join(dir, f), 'utf8')) as KObject & { spec: { group: string; names: { plural: string } } });
  for (const crd of crds) {
    const url = `${resourcePath(R.crd, undefined, crd.metadata.name)}?fieldManager=tokenwarden-bench&force=true`;
    await retrying(() => admin.request('PATCH', url, crd, 'application/apply-patch+yaml'));
  }
  const deadline = Date.now() + 60_000;
  for (const crd of crds) {
    for (;;) {
      const live = await admin.get<KObject & { status?: { conditions?: { type: string; status: string }[] } }>(R.crd, undefined, crd.metadata.name);
      const ok = (t: string) => live.status?.conditions?.some((c) => c.type === t && c.status === 'True');
      if (ok('Established') && ok('NamesAccepted')) {
        const discovery = await admin.request<{ resources?: { name: string }[] }>('GET', `/apis/${crd.spec.group}/v1alpha1`).catch(() => undefined);
        if (discovery?.resources?.some((r) => r.name === crd.spec.names.plural)) break;
      }
      if (Date.now() > deadline) throw new Error(`CRD ${crd.metadata.name} not established in 60s`);
      await sleep(200);
    }
  }
}

/** What `make install` applies beside the CRDs: access/'s admission policies, so every create pays for them. */
async function installAccess(admin: Kube): Promise<void> {
  const dir = path.join(repoRoot, 'access');
  const collections: Record<string, string> = {
    ValidatingAdmissionPolicy: '/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies',
    ValidatingAdmissionPolicyBinding: '/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings',
    ClusterRole: '/apis/rbac.authorization.k8s.io/v1/clusterroles',
  };
  for (const file of fs.readdirSync(dir).filter((f) => f.endsWith('.yaml')).sort()) {
    for (const doc of parseAllDocuments(fs.readFileSync(path.join(dir, file), 'utf8'))) {
      const obj = doc.toJS() as KObject & { kind: string };
      const collection = collections[obj.kind];
      if (collection === undefined) throw new Error(`access/${file}: no path known for kind ${obj.kind}`);
      await retrying(() => admin.request('PATCH', `${collection}/${obj.metadata.name}?fieldManager=tokenwarden-bench&force=true`, obj, 'application/apply-patch+yaml'));
    }
  }
}

/**
 * ServiceAccount `name` in the bench's system namespace, bound to cluster-admin, and a kubeconfig
 * with a 48h token of it.
 */
async function identityKubeconfig(admin: Kube, workDir: string, name: string): Promise<string> {
  await admin.create(R.serviceAccount, SYSTEM_NAMESPACE, { metadata: { name } });
  await admin.create(R.clusterRoleBinding, undefined, {
    metadata: { name: `tokenwarden-bench-${name}` },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'cluster-admin' },
    subjects: [{ kind: 'ServiceAccount', name, namespace: SYSTEM_NAMESPACE }],
  });
  const tr = await admin.post<{ status: { token: string } }>(resourcePath(R.serviceAccount, SYSTEM_NAMESPACE, name, 'token'), {
    apiVersion: 'authentication.k8s.io/v1',
    kind: 'TokenRequest',
    spec: { expirationSeconds: 48 * 3600 },
  });
  const cluster = admin.kc.getCurrentCluster();
  if (!cluster) throw new Error('no cluster');
  const ca = cluster.caData ?? (cluster.caFile ? fs.readFileSync(cluster.caFile).toString('base64') : undefined);
  const file = path.join(workDir, `${name}.kubeconfig`);
  fs.writeFileSync(
    file,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'bench', cluster: { server: cluster.server, ...(ca ? { 'certificate-authority-data': ca } : {}) } }],
      users: [{ name, user: { token: tr.status.token } }],
      contexts: [{ name, context: { cluster: 'bench', user: name, namespace: SYSTEM_NAMESPACE } }],
      'current-context': name,
    }),
    { mode: 0o600 },
  );
  return file;
}

/**
 * One FlowSchema per (verb, resource) the operator may use, plus a catch-all, all for the operator's
 * identity and all on the priority level it would get anyway (workload-low): APF then counts its
 * requests exactly, per verb and resource, without changing how they are scheduled.
 */
async function createFlowSchemas(admin: Kube, identity: string): Promise<Map<string, string>> {
  const subjects = [{ kind: 'ServiceAccount', serviceAccount: { namespace: SYSTEM_NAMESPACE, name: identity } }];
  const schemas = new Map<string, string>();
  const make = async (name: string, precedence: number, rules: Record<string, unknown>) => {
    await admin.create(R.flowSchema, undefined, {
      apiVersion: 'flowcontrol.apiserver.k8s.io/v1',
      kind: 'FlowSchema',
      metadata: { name },
      spec: { priorityLevelConfiguration: { name: PRIORITY_LEVEL }, matchingPrecedence: precedence, distinguisherMethod: { type: 'ByUser' }, rules: [{ subjects, ...rules }] },
    });
  };
  let precedence = 1000;
  for (const resource of OPERATOR_RESOURCES) {
    for (const verb of APF_VERBS) {
      const name = `bench-${identity}-${verb}-${resource.replace('/', '.')}`;
      await make(name, precedence++, { resourceRules: [{ verbs: [verb], apiGroups: ['*'], resources: [resource], clusterScope: true, namespaces: ['*'] }] });
      schemas.set(name, `${verb} ${resource}`);
    }
  }
  const other = `bench-${identity}-other`;
  await make(other, 1999, {
    resourceRules: [{ verbs: ['*'], apiGroups: ['*'], resources: ['*'], clusterScope: true, namespaces: ['*'] }],
    nonResourceRules: [{ verbs: ['*'], nonResourceURLs: ['*'] }],
  });
  schemas.set(other, 'other');
  return schemas;
}

/** One reading of kube-apiserver's /metrics: the operator's requests (APF) and all requests. */
export interface ApiserverSnapshot {
  at: number;
  /** "verb resource" -> requests of the operator identity dispatched by APF (watches at their start). */
  operator: Map<string, number>;
  /** "VERB resource" -> apiserver_request_total over every client, restricted to the operator's resources. */
  all: Map<string, number>;
  /** FlowSchema -> requests dispatched, for every schema but the operator's (who else talked: kube-controller-manager, the floor...). */
  others: Map<string, number>;
}

export async function apiserverSnapshot(bc: BenchCluster): Promise<ApiserverSnapshot> {
  const text = await bc.admin.text('/metrics');
  const operator = new Map<string, number>();
  const others = new Map<string, number>();
  for (const s of metricSamples(text, 'apiserver_flowcontrol_dispatched_requests_total')) {
    const schema = s.labels.flow_schema ?? '';
    const key = bc.flowSchemas.get(schema);
    if (key !== undefined) operator.set(key, (operator.get(key) ?? 0) + s.value);
    else others.set(schema, (others.get(schema) ?? 0) + s.value);
  }
  const resources = new Set<string>([...OPERATOR_RESOURCES, 'tokenreviews']);
  const all = new Map<string, number>();
  for (const s of metricSamples(text, 'apiserver_request_total')) {
    const resource = s.labels.subresource ? `${s.labels.resource}/${s.labels.subresource}` : (s.labels.resource ?? '');
    if (!resources.has(resource)) continue;
    const key = `${s.labels.verb} ${resource}`;
    all.set(key, (all.get(key) ?? 0) + s.value);
  }
  return { at: Date.now(), operator, all, others };
}

export function diffCounts(after: Map<string, number>, before: Map<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of after) {
    const d = v - (before.get(k) ?? 0);
    if (d > 0) out[k] = d;
  }
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => a.localeCompare(b)));
}

/** Requests of the operator between two snapshots, split into reads and writes by verb. */
export interface RequestBreakdown {
  /** "verb resource" -> count, operator identity (APF). */
  operator: Record<string, number>;
  operatorReads: number;
  operatorWrites: number;
  /** "VERB resource" -> apiserver_request_total delta over all clients minus the bench's own requests (watches left out). */
  apiserverRequestTotal: Record<string, number>;
  /** Requests of everyone else by FlowSchema (the bench's admin requests are "exempt"). */
  otherFlowSchemas: Record<string, number>;
}

export function breakdown(before: ApiserverSnapshot, after: ApiserverSnapshot, benchBefore: Map<string, number>, benchAfter: Map<string, number>): RequestBreakdown {
  const operator = diffCounts(after.operator, before.operator);
  let reads = 0;
  let writes = 0;
  for (const [k, v] of Object.entries(operator)) {
    const verb = k.split(' ')[0] as string;
    if (WRITE_VERBS.has(verb)) writes += v;
    else reads += v;
  }
  const all = diffCounts(after.all, before.all);
  const bench = diffCounts(benchAfter, benchBefore);
  const apiserverRequestTotal: Record<string, number> = {};
  for (const [k, v] of Object.entries(all)) {
    if (k.startsWith('WATCH ')) continue;
    const n = v - (bench[k] ?? 0);
    if (n > 0) apiserverRequestTotal[k] = n;
  }
  return { operator, operatorReads: reads, operatorWrites: writes, apiserverRequestTotal, otherFlowSchemas: diffCounts(after.others, before.others) };
}
