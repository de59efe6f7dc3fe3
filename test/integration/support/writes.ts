/**
 * Counting the requests of ONE operator process while other test files talk to the same API server.
 *
 * apiserver_request_total has no user label, so it cannot tell this operator's requests from anyone
 * else's. Instead (the technique of operator/crash.test.ts) the operator runs as a ServiceAccount of
 * its own, with the manifests' RBAC: not system:masters, so API Priority and Fairness classifies its
 * requests by FlowSchema instead of exempting them. Two FlowSchemas that match only that identity
 * split its requests into "writes" (create, update, patch, delete, deletecollection, on anything)
 * and "everything else", and kube-apiserver counts each in
 * apiserver_flowcontrol_dispatched_requests_total{flow_schema}.
 *
 * The counters live in kube-apiserver's memory: a restart of kube-apiserver sets them to zero, so a
 * window to count over must not contain one.
 */
import { apiserverMetrics, createTestNamespace } from './cluster.ts';
import { R, kube, metricSamples, serviceAccountKubeconfig, trackClusterObject } from './operator.ts';

export const WRITE_VERBS = ['create', 'update', 'patch', 'delete', 'deletecollection'];

export interface RequestCounts {
  /** Writes of any kind to any resource. */
  writes: number;
  /** Everything else the identity sent: reads, watches, non-resource URLs. */
  reads: number;
}

export interface CountedIdentity {
  /** Kubeconfig of the ServiceAccount, for `startOperator({ kubeconfig })`. */
  kubeconfig: string;
  /** system:serviceaccount:<namespace>:<name> */
  username: string;
  /** Requests dispatched for this identity since kube-apiserver started. */
  counts(): Promise<RequestCounts>;
}

/**
 * A ServiceAccount (the manifests' RBAC and fence; `unfenced`: cluster-admin, no fence) in a fresh namespace, and the FlowSchemas that count its
 * requests; everything is removed after the test file.
 */
export async function countedIdentity(prefix: string, name = 'operator', opts: { unfenced?: boolean } = {}): Promise<CountedIdentity> {
  const namespace = await createTestNamespace(`${prefix}-operator`);
  const { path, username } = await serviceAccountKubeconfig(prefix, namespace, name, opts);
  const subjects = [{ kind: 'ServiceAccount', serviceAccount: { namespace, name } }];
  const schemas = { writes: `${prefix}-${name}-writes`, reads: `${prefix}-${name}-reads` };
  const flowSchema = (schema: string, precedence: number, rule: Record<string, unknown>) => ({
    apiVersion: 'flowcontrol.apiserver.k8s.io/v1',
    kind: 'FlowSchema',
    metadata: { name: schema },
    spec: {
      priorityLevelConfiguration: { name: 'global-default' },
      matchingPrecedence: precedence,
      distinguisherMethod: { type: 'ByUser' },
      rules: [{ subjects, ...rule }],
    },
  });
  for (const fs of [
    flowSchema(schemas.writes, 60, { resourceRules: [{ verbs: WRITE_VERBS, apiGroups: ['*'], resources: ['*'], clusterScope: true, namespaces: ['*'] }] }),
    flowSchema(schemas.reads, 61, {
      resourceRules: [{ verbs: ['*'], apiGroups: ['*'], resources: ['*'], clusterScope: true, namespaces: ['*'] }],
      nonResourceRules: [{ verbs: ['*'], nonResourceURLs: ['*'] }],
    }),
  ]) {
    await kube.create(R.flowSchema, undefined, fs);
    trackClusterObject(R.flowSchema, fs.metadata.name);
  }
  return {
    kubeconfig: path,
    username,
    async counts() {
      const samples = metricSamples(await apiserverMetrics(), 'apiserver_flowcontrol_dispatched_requests_total');
      const sum = (schema: string) => samples.filter((s) => s.labels.flow_schema === schema).reduce((n, s) => n + s.value, 0);
      return { writes: sum(schemas.writes), reads: sum(schemas.reads) };
    },
  };
}

/**
 * A FlowSchema of its own, ahead of countedIdentity's (precedence 60 and 61), matching only some of
 * the identity's requests (its TokenRequests, its deletecollections): returns their count since
 * kube-apiserver started. Removed after the test file.
 */
export async function countedRequests(identity: CountedIdentity, schema: string, rule: { verbs: string[]; resources: string[]; apiGroups?: string[] }): Promise<() => Promise<number>> {
  const [, , namespace, name] = identity.username.split(':');
  await kube.create(R.flowSchema, undefined, {
    apiVersion: 'flowcontrol.apiserver.k8s.io/v1',
    kind: 'FlowSchema',
    metadata: { name: schema },
    spec: {
      priorityLevelConfiguration: { name: 'global-default' },
      matchingPrecedence: 59,
      distinguisherMethod: { type: 'ByUser' },
      rules: [
        {
          subjects: [{ kind: 'ServiceAccount', serviceAccount: { namespace, name } }],
          resourceRules: [{ verbs: rule.verbs, apiGroups: rule.apiGroups ?? [''], resources: rule.resources, namespaces: ['*'] }],
        },
      ],
    },
  });
  trackClusterObject(R.flowSchema, schema);
  return async () => {
    const samples = metricSamples(await apiserverMetrics(), 'apiserver_flowcontrol_dispatched_requests_total');
    return samples.filter((s) => s.labels.flow_schema === schema).reduce((n, s) => n + s.value, 0);
  };
}

/** counts() after minus before. */
export function delta(before: RequestCounts, after: RequestCounts): RequestCounts {
  return { writes: after.writes - before.writes, reads: after.reads - before.reads };
}

/**
 * Reconciles per key in the operator's debug log ("reconciled" lines) from character offset `from`:
 * which object a hot loop is about, when counts() says there is one. Only keys containing `mine`
 * (the file's prefix) count: the operator watches its owned kinds (Secrets, ServiceAccounts,
 * namespaces) without the --selector, so other files' objects enqueue keys it then finds nothing for.
 */
export function reconcilesByKey(log: string, from = 0, mine = ''): Map<string, number> {
  const counts = new Map<string, number>();
  for (const line of log.slice(from).split('\n')) {
    if (!line.includes('"msg":"reconciled"')) continue;
    try {
      const entry = JSON.parse(line) as { controller?: string; key?: string };
      if (!(entry.key ?? '').includes(mine)) continue;
      const key = `${entry.controller ?? '?'} ${entry.key ?? '?'}`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    } catch {
      // a line cut by a kill: not counted
    }
  }
  return counts;
}

/** The `n` busiest keys, for messages: "serviceaccountclient ns/name: 212". */
export function busiest(counts: Map<string, number>, n = 8): string[] {
  return [...counts].sort((a, b) => b[1] - a[1]).slice(0, n).map(([k, v]) => `${k.length > 120 ? `${k.slice(0, 117)}...` : k}: ${v}`);
}
