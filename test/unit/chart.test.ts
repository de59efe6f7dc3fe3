/**
 * The Helm chart (charts/tokenwarden) and `make deploy` (manifests/ and access/) cannot drift: the
 * chart rendered with its default values is, object for object, what kustomize renders from
 * manifests/ plus access/, once the labels Helm adds are set aside. Helm and kubectl are the ones
 * built from Go modules (test/controlplane/build.sh --helm, --dir).
 */
/* eslint-disable @typescript-eslint/no-explicit-any -- rendered objects are checked field by field */
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { beforeAll, describe, expect, test } from 'vitest';

const run = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const chart = path.join(root, 'charts/tokenwarden');
const HELM_LABELS = ['helm.sh/chart', 'app.kubernetes.io/managed-by', 'app.kubernetes.io/instance'];

type K8sObject = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string> }; [k: string]: unknown };

let helm = '';
let kubectl = '';

const buildDir = async (flag: string) => (await run('bash', [path.join(root, 'test/controlplane/build.sh'), flag], { maxBuffer: 1 << 20 })).stdout.trim().split('\n').pop()!;

function objects(text: string): K8sObject[] {
  return parseAllDocuments(text).map((d) => d.toJS() as K8sObject | null).filter((o): o is K8sObject => o !== null && typeof o === 'object');
}
/**
 * Runs of whitespace inside strings count as one space: kustomize re-emits folded CEL expressions
 * (`>-` with more-indented lines) with other line breaks than the files hold, and CEL and messages
 * do not care. Nothing else is normalized.
 */
function squash(v: unknown): unknown {
  if (typeof v === 'string') return v.replace(/\s+/g, ' ').trim();
  if (Array.isArray(v)) return v.map(squash);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, squash(x)]));
  return v;
}
const key = (o: K8sObject) => `${o.apiVersion} ${o.kind} ${o.metadata.namespace ?? ''}/${o.metadata.name}`;
function byKey(list: K8sObject[], stripHelmLabels: boolean): Map<string, K8sObject> {
  const m = new Map<string, K8sObject>();
  for (const o of list) {
    if (stripHelmLabels && o.metadata.labels) {
      for (const l of HELM_LABELS) delete o.metadata.labels[l];
    }
    expect(m.has(key(o)), `${key(o)} rendered twice`).toBe(false);
    m.set(key(o), o);
  }
  return m;
}
async function template(...args: string[]): Promise<K8sObject[]> {
  const { stdout } = await run(helm, ['template', 'tokenwarden', chart, '--namespace', 'tokenwarden-system', ...args], { maxBuffer: 32 << 20 });
  return objects(stdout);
}
async function shipped(): Promise<K8sObject[]> {
  const { stdout } = await run(kubectl, ['kustomize', path.join(root, 'manifests')], { maxBuffer: 32 << 20 });
  const access = readdirSync(path.join(root, 'access')).filter((f) => f.endsWith('.yaml')).sort()
    .flatMap((f) => objects(readFileSync(path.join(root, 'access', f), 'utf8')));
  return [...objects(stdout), ...access];
}

beforeAll(async () => {
  helm = path.join(await buildDir('--helm'), 'helm');
  kubectl = path.join(await buildDir('--dir'), 'kubectl');
}, 600_000);

describe('the Helm chart', () => {
  test('with default values (and namespace.create) it renders exactly manifests/ plus access/', async () => {
    const want = byKey(await shipped(), false);
    const got = byKey(await template('--set', 'namespace.create=true'), true);
    expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
    for (const [k, o] of want) expect(squash(got.get(k)), k).toEqual(squash(o));
  });

  test('without namespace.create (the default) it leaves the Namespace to the installer', async () => {
    const kinds = (await template()).map((o) => o.kind);
    expect(kinds).not.toContain('Namespace');
    expect(kinds).toContain('Deployment');
  });

  test('CRDs are in crds/, as Helm expects, and are crds/ of the repository', () => {
    for (const f of readdirSync(path.join(root, 'crds'))) {
      expect(readFileSync(path.join(chart, 'crds', f), 'utf8')).toBe(readFileSync(path.join(root, 'crds', f), 'utf8'));
    }
  });

  test('values reach the objects: another namespace, image, replicas, sizing, flags, tier roles, policies off', async () => {
    const { stdout } = await run(helm, ['template', 'tw', chart, '--namespace', 'ops',
      '--set', 'image.repository=registry.example.com/tokenwarden,image.tag=v0.1.0,replicas=3',
      '--set', 'resources.requests.memory=320Mi,resources.limits.memory=320Mi,nodeOptions=--max-old-space-size=186 --max-semi-space-size=4',
      '--set', 'namespacePrefix=tw,selector=team=a,logLevel=debug,leaderElection.leaseDuration=30s',
      '--set', 'tierRoles={model-user,feature-reader}', '--set', 'admissionPolicies.enabled=false'], { maxBuffer: 32 << 20 });
    const objs = objects(stdout);
    const dep = objs.find((o) => o.kind === 'Deployment') as K8sObject & { spec: any };
    expect(dep.metadata.namespace).toBe('ops');
    expect(dep.spec.replicas).toBe(3);
    const c = dep.spec.template.spec.containers[0];
    expect(c.image).toBe('registry.example.com/tokenwarden:v0.1.0');
    expect(c.args).toEqual(['--leader-elect=true', '--namespace-prefix=tw', '--selector=team=a', '--log-level=debug', '--lease-duration=30s']);
    expect(c.resources.limits.memory).toBe('320Mi');
    expect(c.env.find((e: { name: string }) => e.name === 'NODE_OPTIONS').value).toBe('--max-old-space-size=186 --max-semi-space-size=4');
    const tierRoles = objs.find((o) => o.kind === 'ClusterRole' && o.metadata.name === 'tokenwarden-tier-roles') as any;
    expect(tierRoles.rules[0].resourceNames).toEqual(['model-user', 'feature-reader']);
    const fence = objs.find((o) => o.kind === 'ValidatingAdmissionPolicy' && o.metadata.name === 'tokenwarden-operator-fence') as any;
    expect(fence.spec.matchConditions[0].expression).toBe("request.userInfo.username == 'system:serviceaccount:ops:tokenwarden'");
    for (const o of objs) if (o.metadata.namespace !== undefined) expect(o.metadata.namespace, key(o)).toBe('ops');
    expect(objs.filter((o) => o.kind === 'ValidatingAdmissionPolicy').map((o) => o.metadata.name)).toEqual(['tokenwarden-operator-fence']);
  });

  test('every optional object renders and passes helm lint --strict', async () => {
    const all = ['--set', 'serviceMonitor.enabled=true,prometheusRule.enabled=true,podDisruptionBudget.enabled=true,networkPolicy.enabled=true,grafanaDashboard.enabled=true,namespace.create=true',
      '--set', 'networkPolicy.apiServerCIDRs={10.0.0.1/32}'];
    await run(helm, ['lint', '--strict', chart, ...all]);
    await run(helm, ['lint', '--strict', chart]);
    const kinds = (await template(...all)).map((o) => o.kind);
    for (const k of ['ServiceMonitor', 'PrometheusRule', 'PodDisruptionBudget', 'NetworkPolicy', 'ConfigMap', 'Namespace']) expect(kinds).toContain(k);
    const rule = (await template(...all)).find((o) => o.kind === 'PrometheusRule') as any;
    expect(rule.spec.groups[0].rules.map((r: { alert: string }) => r.alert)).toEqual(['TokenwardenRenewalNotHappening', 'TokenwardenReconcileErrors', 'TokenwardenNoLeader']);
  });
});
