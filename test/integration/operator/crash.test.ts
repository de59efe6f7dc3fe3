/**
 * Issue 3, "Done when" 12: crash safety.
 *  - An anchor left behind without a Secret or status naming it (a crash between minting and writing)
 *    is deleted on the next start, and the token bound to it stops working.
 *  - Restarting the operator over 50 Ready clients makes no write to the API server.
 *
 * Counting writes while other test files run in parallel: apiserver_request_total has the labels
 * verb, dry_run, group, version, resource, subresource, scope, component, code: no namespace and no
 * user, so it cannot tell this operator's writes from another file's. Instead, this file's operator
 * runs as its own ServiceAccount (with the manifests' RBAC; not system:masters, so API Priority and
 * Fairness classifies its requests instead of exempting them), and FlowSchemas matching only that
 * identity split its requests into "writes to what the operator touches", "other writes" and
 * "everything"; kube-apiserver's apiserver_flowcontrol_dispatched_requests_total{flow_schema} counts
 * each. apiserver_request_total is still read and logged for the record, not asserted.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { apiserverMetrics, createTestNamespace, waitFor } from '../support/cluster.ts';
import {
  ANCHOR_TYPE,
  R,
  anchorsOf,
  createClient,
  createTier,
  fingerprint,
  kube,
  metricSamples,
  readClientToken,
  resourcePath,
  review,
  serviceAccountKubeconfig,
  sleep,
  startOperator,
  tierNamespace,
  trackClusterObject,
  uniquePrefix,
  waitForClientReady,
  waitForTierReady,
  waitForTokenToFail,
  type Client,
  type OperatorProcess,
  type Secret,
} from '../support/operator.ts';

const WRITE_VERBS = ['create', 'update', 'patch', 'delete', 'deletecollection'];
/** apiserver_request_total's verb label for writes. */
const METRIC_WRITE_VERBS = new Set(['POST', 'PUT', 'PATCH', 'DELETE', 'DELETECOLLECTION', 'APPLY', 'CREATE', 'UPDATE']);
/** Everything the operator writes (APF resource[/subresource] form). */
const OWNED_RESOURCES = [
  'namespaces', 'serviceaccounts', 'serviceaccounts/token', 'secrets', 'rolebindings', 'clusterrolebindings', 'events',
  'tiers', 'tiers/status', 'tenantbindings', 'tenantbindings/status', 'serviceaccountclients', 'serviceaccountclients/status',
];
const CLIENTS = 50;
const SETTLE_MS = 10_000;

const prefix = uniquePrefix('crash');
let op: OperatorProcess;
let kubeconfig: string;
let opNs: string;
let ns: string;
let aud: string;
let group: string;
let tierName: string;
let tierNs: string;
const schemas = { owned: `${prefix}-owned-writes`, other: `${prefix}-other-writes`, all: `${prefix}-all` };

beforeAll(async () => {
  opNs = await createTestNamespace(`${prefix}-operator`);
  ns = await createTestNamespace(`${prefix}-team`);
  ({ path: kubeconfig } = await serviceAccountKubeconfig(prefix, opNs, 'operator'));
  const subjects = [{ kind: 'ServiceAccount', serviceAccount: { namespace: opNs, name: 'operator' } }];
  const flowSchema = (name: string, precedence: number, rule: Record<string, unknown>) => ({
    apiVersion: 'flowcontrol.apiserver.k8s.io/v1',
    kind: 'FlowSchema',
    metadata: { name },
    spec: { priorityLevelConfiguration: { name: 'global-default' }, matchingPrecedence: precedence, distinguisherMethod: { type: 'ByUser' }, rules: [{ subjects, ...rule }] },
  });
  for (const fs of [
    flowSchema(schemas.owned, 50, { resourceRules: [{ verbs: WRITE_VERBS, apiGroups: ['*'], resources: OWNED_RESOURCES, clusterScope: true, namespaces: ['*'] }] }),
    flowSchema(schemas.other, 51, { resourceRules: [{ verbs: WRITE_VERBS, apiGroups: ['*'], resources: ['*'], clusterScope: true, namespaces: ['*'] }] }),
    flowSchema(schemas.all, 52, {
      resourceRules: [{ verbs: ['*'], apiGroups: ['*'], resources: ['*'], clusterScope: true, namespaces: ['*'] }],
      nonResourceRules: [{ verbs: ['*'], nonResourceURLs: ['*'] }],
    }),
  ]) {
    await kube.create(R.flowSchema, undefined, fs);
    trackClusterObject(R.flowSchema, fs.metadata.name);
  }
  op = await startOperator({ namespacePrefix: prefix, kubeconfig });
  aud = `${prefix}-gateway`;
  group = `${prefix}-users`;
  tierName = (await createTier(op, 'std', { level: 10, groups: [group], token: { audiences: [aud], defaultExpiration: '1h' } })).metadata.name;
  tierNs = tierNamespace(op, tierName);
  await waitForTierReady(tierName);
});

async function dispatched(): Promise<Record<keyof typeof schemas, number>> {
  const samples = metricSamples(await apiserverMetrics(), 'apiserver_flowcontrol_dispatched_requests_total');
  const sum = (schema: string) => samples.filter((s) => s.labels.flow_schema === schema).reduce((n, s) => n + s.value, 0);
  return { owned: sum(schemas.owned), other: sum(schemas.other), all: sum(schemas.all) };
}

/** Writes to the operator's resources per apiserver_request_total (every client of the server). */
async function requestTotalWrites(): Promise<Map<string, number>> {
  const owned = new Set(OWNED_RESOURCES);
  const out = new Map<string, number>();
  for (const s of metricSamples(await apiserverMetrics(), 'apiserver_request_total')) {
    const resource = s.labels.subresource ? `${s.labels.resource}/${s.labels.subresource}` : (s.labels.resource ?? '');
    if (!METRIC_WRITE_VERBS.has(s.labels.verb ?? '') || !owned.has(resource)) continue;
    const key = `${s.labels.verb} ${resource}`;
    out.set(key, (out.get(key) ?? 0) + s.value);
  }
  return out;
}

describe('12: crash safety', () => {
  it('deletes, on the next start, an anchor that no Secret or status names; its token stops working', async () => {
    await createClient(op, ns, 'survivor', { subject: { user: 'survivor@example.com', groups: [group] } });
    const before = await waitForClientReady(ns, 'survivor');
    const [legit] = await anchorsOf(before.client.metadata.uid as string);
    expect(legit, 'the anchor of survivor').toBeDefined();
    const sa = before.client.status?.serviceAccount;

    const exit = await op.stop();
    expect(exit, 'the operator exits 0 on SIGTERM').toEqual({ code: 0, signal: null });

    // "The crash": an anchor made exactly as the operator makes one, and a token minted bound to it,
    // never written to a Secret or recorded in status.
    const orphan = await kube.create<Secret>(R.secret, tierNs, {
      metadata: {
        ...(legit?.metadata.generateName ? { generateName: legit.metadata.generateName } : { name: `${legit?.metadata.name}-orphan` }),
        labels: legit?.metadata.labels,
        ...(legit?.metadata.annotations ? { annotations: legit.metadata.annotations } : {}),
      },
      type: ANCHOR_TYPE,
    });
    const minted = await kube.post<{ status: { token: string } }>(resourcePath(R.serviceAccount, tierNs, sa?.name as string, 'token'), {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenRequest',
      spec: {
        audiences: [aud],
        expirationSeconds: 3600,
        boundObjectRef: { kind: 'Secret', apiVersion: 'v1', name: orphan.metadata.name, uid: orphan.metadata.uid },
      },
    });
    const leaked = minted.status.token;
    expect((await review(leaked, [aud])).authenticated, 'the leaked token works before the restart').toBe(true);

    op = await startOperator({ namespacePrefix: prefix, kubeconfig });
    const since = Date.now();
    await waitFor(async () => (await kube.tryGet(R.secret, tierNs, orphan.metadata.name)) === null, {
      timeoutMs: 20_000,
      description: `orphan anchor ${tierNs}/${orphan.metadata.name} to be deleted after the restart`,
    });
    await waitForTokenToFail(leaked, [aud], { since, timeoutMs: 20_000, what: 'the token bound to the orphan anchor' });

    // The client's own anchor and token are untouched.
    expect(await kube.tryGet(R.secret, tierNs, legit?.metadata.name as string)).not.toBeNull();
    const after = await readClientToken(ns, 'survivor');
    expect(fingerprint(after.token), 'the survivor keeps its token (fingerprint)').toBe(fingerprint(before.token));
    expect((await review(after.token as string, [aud])).authenticated).toBe(true);
  });

  it(`restarting the operator over ${CLIENTS} Ready clients makes no write to the API server`, { timeout: 300_000 }, async () => {
    const names = Array.from({ length: CLIENTS }, (_, i) => `bulk-${String(i).padStart(2, '0')}`);
    for (const [i, name] of names.entries()) {
      await createClient(op, ns, name, { subject: { user: `bulk-${i % 10}@example.com`, groups: [group] } });
    }
    await waitFor(async () => {
      const clients = await kube.list<Client>(R.client, ns, { labelSelector: op.selector });
      const ready = clients.filter((c) => names.includes(c.metadata.name)
        && c.status?.conditions?.some((x) => x.type === 'Ready' && x.status === 'True')
        && c.status.observedGeneration === c.metadata.generation);
      return ready.length === CLIENTS;
    }, { timeoutMs: 180_000, intervalMs: 1000, description: `${CLIENTS} clients Ready` });
    await sleep(3000);

    const snapshot = async () => {
      const clients = await kube.list<Client>(R.client, ns);
      const secrets = await kube.list<Secret>(R.secret, ns);
      const anchors = await kube.list<Secret>(R.secret, tierNs);
      const sas = await kube.list(R.serviceAccount, tierNs);
      const events = await kube.list(R.event, ns);
      const rv = (list: { metadata: { name: string; resourceVersion?: string } }[]) =>
        Object.fromEntries(list.map((o) => [o.metadata.name, o.metadata.resourceVersion]));
      return { clients: rv(clients), secrets: rv(secrets), anchors: rv(anchors), serviceAccounts: rv(sas), events: events.length };
    };

    const exit = await op.stop();
    expect(exit.code, 'the operator exits 0 on SIGTERM').toBe(0);
    const stateBefore = await snapshot();
    const countsBefore = await dispatched();
    const totalsBefore = await requestTotalWrites();
    // The FlowSchemas see this identity's writes at all (else a zero below would mean nothing).
    expect(countsBefore.owned, `writes of the operator counted by FlowSchema ${schemas.owned}`).toBeGreaterThan(0);

    op = await startOperator({ namespacePrefix: prefix, kubeconfig });
    await sleep(SETTLE_MS);

    const countsAfter = await dispatched();
    const totalsAfter = await requestTotalWrites();
    const stateAfter = await snapshot();
    const delta = {
      owned: countsAfter.owned - countsBefore.owned,
      other: countsAfter.other - countsBefore.other,
      all: countsAfter.all - countsBefore.all,
    };
    const totals = [...totalsAfter].map(([k, v]) => [k, v - (totalsBefore.get(k) ?? 0)] as const).filter(([, v]) => v > 0);
    console.error(`[crash] requests of the restarted operator in ${SETTLE_MS}ms after "operator started": ${JSON.stringify(delta)}; `
      + `apiserver_request_total writes to those resources by anyone (other files run in parallel): ${JSON.stringify(Object.fromEntries(totals))}`);

    expect(delta.all, 'the restarted operator talked to the API server (its reads are counted)').toBeGreaterThan(0);
    expect.soft(delta.owned, 'writes by the restarted operator to tokenwarden resources, Secrets, ServiceAccounts, bindings, namespaces, events').toBe(0);
    expect.soft(delta.other, 'writes by the restarted operator to anything else (e.g. leases)').toBe(0);
    expect(stateAfter).toEqual(stateBefore);
  });
});
