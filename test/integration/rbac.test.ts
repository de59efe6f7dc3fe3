/**
 * Issue 4, "Done when" 1: least-privilege RBAC.
 *
 * 1. The manifests: the Deployment is what the issue asks for, the API server accepts it, and its
 *    pod template passes the `restricted` Pod Security Standard of tokenwarden-system.
 * 2. The operator authenticated as its own ServiceAccount (tokenwarden-system/tokenwarden, with the
 *    roles and bindings of manifests/ applied as they are, and a TokenRequest token) runs a scenario
 *    that uses every permission: leader election, a Tier with access rules, a TenantBinding,
 *    clients Ready, revocationEpoch raised, repair, an adopted ServiceAccount, a limits change, a
 *    repeated Event, an access change, a tier move, deletion.
 * 3. The rule walk: for each rule of the ClusterRoles and the Role of manifests/ (or each verb of
 *    each resource, with TOKENWARDEN_TEST_RBAC_WALK=verbs), an operator runs as a ServiceAccount
 *    bound to copies of those roles WITHOUT that rule, and the scenario must fail, and for that
 *    reason: in a stage that needs a removed permission, after the operator logged the API server's
 *    refusal of exactly that permission. Together with 2 this shows every rule is needed and the
 *    rules are enough.
 *
 * Every stage lists the permissions it needs (STAGES[].needs); a static test checks that the list
 * and the manifests agree, so a rule added to manifests/ without a stage that needs it fails here.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { createTestNamespace, tokenReview, waitFor } from './support/cluster.ts';
import {
  R,
  anchorsOf,
  clientEvents,
  condition,
  createBinding,
  createClient,
  createTier,
  expectedServiceAccountName,
  getClient,
  kube,
  review,
  secretNameOf,
  sleep,
  startOperator,
  tierEvents,
  tierNamespace,
  tokenOf,
  trackClusterObject,
  uniquePrefix,
  waitForClientReady,
  waitForTierReady,
  waitForTokenToFail,
  type KEvent,
  type KObject,
  type Client,
  type OperatorProcess,
  type ResourceType,
  type Secret,
  type TenantBinding,
  type Tier,
} from './support/operator.ts';
import {
  OPERATOR_NAMESPACE,
  allowed,
  applyObject,
  deleteAfterFile,
  grantBind,
  manifestObjects,
  objectUrl,
  operatorServiceAccountKubeconfig,
  rbacObjects,
  serviceAccountToken,
  tokenKubeconfig,
  type ManifestObject,
  type PolicyRule,
} from './support/rbac.ts';
import { adminRequest } from './support/crds.ts';

const LEASE: ResourceType = { group: 'coordination.k8s.io', version: 'v1', plural: 'leases', namespaced: true };
/** Short but legal leader-election timings: the scenario runs with --leader-elect=true, so the Role is in play. */
const LEASE_ARGS = ['--lease-duration=8s', '--renew-deadline=6s', '--retry-period=1s'];
const ALICE = 'alice@rbac.example.com';
const BOB = 'bob@rbac.example.com';
const CLEANUP_FINALIZER = 'tokenwarden.io/cleanup';
const CLIENT_FINALIZER = 'tokenwarden.io/revoke-tokens';

interface Binding extends KObject {
  roleRef: { name: string };
}

// ---------------------------------------------------------------------------------------------
// The scenario
// ---------------------------------------------------------------------------------------------

interface RunEnv {
  prefix: string;
  kubeconfig: string;
  leaseNamespace: string;
  leaseId: string;
}

interface Run {
  op: OperatorProcess;
  env: RunEnv;
  aud: string;
  t1: string;
  t2: string;
  t3: string;
  tier1Ns: string;
  tier2Ns: string;
  c1: string;
  c2: string;
  tb: string;
  tb2: string;
  token?: string;
}

interface Stage {
  name: string;
  /** "verb resource" as RBAC names them; "bind clusterroles" for the escalation check. */
  needs: string[];
  run: (r: Run, timeoutMs: number) => Promise<void>;
}

// Shared by every run of this file (each run has its own prefix, selector and tier namespaces).
let tenantNs: string;
let modelsNs: string;
let otherNs: string;
let walkerNs: string;
let tierRole: string;

const bindingName = (r: Run, tier: string) => `${r.env.prefix}-tier-${tier}-${tierRole}`;

async function eventually<T>(description: string, timeoutMs: number, probe: () => Promise<T | undefined | null | false>): Promise<T> {
  return waitFor(probe, { timeoutMs, intervalMs: 200, description });
}

async function tierEvent(tier: string, reason: string): Promise<KEvent | undefined> {
  return (await tierEvents(tier)).find((e) => e.reason === reason);
}

const STAGES: Stage[] = [
  {
    name: 'start: lists every kind it caches, acquires the lease',
    needs: [
      // Not serviceaccounts: they are listed per tier namespace, once there is a Tier (the client stage).
      'list tiers', 'list tenantbindings', 'list serviceaccountclients', 'list namespaces', 'list secrets',
      'list rolebindings', 'list clusterrolebindings', 'get leases', 'create leases',
    ],
    run: async (r, t) => {
      await eventually('"operator started" in the log', t, async () => {
        if (!r.op.running()) throw new Error(`the operator exited: ${r.op.tail(5)}`);
        return r.op.logs().includes('"msg":"operator started"');
      });
    },
  },
  {
    name: 'lease: renews it',
    needs: ['update leases'],
    run: async (r, t) => {
      await eventually('a renewal of the lease by the operator', t, async () => {
        const lease = await kube.get<KObject & { spec?: { acquireTime?: string; renewTime?: string; holderIdentity?: string } }>(LEASE, r.env.leaseNamespace, r.env.leaseId);
        return lease.spec?.renewTime !== lease.spec?.acquireTime && r.op.running();
      });
    },
  },
  {
    name: 'tier: namespace, finalizer, bindings (bind), status, Event',
    needs: [
      'watch tiers', 'patch tiers', 'patch tiers/status', 'create namespaces', 'create rolebindings', 'create clusterrolebindings',
      'bind clusterroles', 'create events',
    ],
    run: async (r, t) => {
      await createTier(r.op, 'one', {
        level: 10,
        token: { audiences: [r.aud] },
        access: [{ clusterRole: tierRole, namespaces: [modelsNs] }, { clusterRole: tierRole }],
        limits: { requestsPerMinute: 100 },
        deletionPolicy: 'Delete',
      });
      const tier = await waitForTierReady(r.t1, t);
      expect(tier.metadata.finalizers).toContain(CLEANUP_FINALIZER);
      await eventually('the RoleBinding and ClusterRoleBinding of the tier', t, async () =>
        (await kube.tryGet(R.roleBinding, modelsNs, bindingName(r, r.t1))) !== null && (await kube.tryGet(R.clusterRoleBinding, undefined, bindingName(r, r.t1))) !== null);
      const ns = await kube.get(R.namespace, undefined, r.tier1Ns);
      expect(ns.metadata.annotations?.['tokenwarden.io/requests-per-minute']).toBe('100');
      expect(ns.metadata.labels?.['pod-security.kubernetes.io/enforce']).toBe('restricted');
      await eventually('Event NamespaceCreated', t, () => tierEvent(r.t1, 'NamespaceCreated'));
    },
  },
  {
    name: 'client: TenantBinding, ServiceAccount, token, Secrets, statuses, Event',
    needs: [
      'watch tenantbindings', 'watch serviceaccountclients', 'watch namespaces', 'patch serviceaccountclients', 'patch serviceaccountclients/status',
      'patch tenantbindings/status', 'list serviceaccounts', 'create serviceaccounts', 'create serviceaccounts/token', 'create secrets',
    ],
    run: async (r, t) => {
      await createBinding(r.op, tenantNs, r.tb, { tierRef: { name: r.t1 }, subjects: [{ kind: 'User', name: ALICE }, { kind: 'User', name: BOB }] });
      await createClient(r.op, tenantNs, r.c1, { subject: { user: ALICE } });
      const ct = await waitForClientReady(tenantNs, r.c1, { timeoutMs: t });
      expect(ct.client.status?.tier).toBe(r.t1);
      expect(ct.client.metadata.finalizers).toContain(CLIENT_FINALIZER);
      const who = await review(ct.token as string, [r.aud]);
      expect(who.authenticated).toBe(true);
      expect(who.username?.startsWith(`system:serviceaccount:${r.tier1Ns}:`)).toBe(true);
      r.token = ct.token;
      await eventually('the TenantBinding counting the client', t, async () => {
        const tb = await kube.get<TenantBinding>(R.binding, tenantNs, r.tb);
        return tb.status?.clients === 1 && condition(tb, 'Ready')?.status === 'True';
      });
      await eventually('Event Issued', t, async () => (await clientEvents(tenantNs, r.c1)).some((e) => e.reason === 'Issued'));
    },
  },
  {
    name: 'revocation: revocationEpoch raised',
    needs: ['watch secrets', 'patch secrets', 'delete secrets'],
    run: async (r, t) => {
      const before = await getClient(tenantNs, r.c1);
      const oldId = before.status?.tokens?.[0]?.id;
      await kube.patch(R.client, tenantNs, r.c1, { spec: { revocationEpoch: 1 } });
      const after = await waitForClientReady(tenantNs, r.c1, {
        timeoutMs: t,
        extra: (ct) => ct.client.status?.revocationEpoch === 1 && ct.client.status.tokens?.[0]?.id !== oldId && ct.token !== r.token,
      });
      await waitForTokenToFail(r.token as string, [r.aud], { timeoutMs: t, what: 'the token from before the revocation' });
      expect((await review(after.token as string, [r.aud])).authenticated).toBe(true);
      r.token = after.token;
    },
  },
  {
    name: 'repair: a deleted Secret and a deleted ServiceAccount come back',
    needs: ['watch serviceaccounts'],
    run: async (r, t) => {
      const client = await getClient(tenantNs, r.c1);
      await kube.remove(R.secret, tenantNs, secretNameOf(client));
      await eventually('the client Secret back with a token', t, async () => tokenOf(await kube.tryGet<Secret>(R.secret, tenantNs, secretNameOf(client))));
      const account = client.status?.serviceAccount;
      expect(account).toBeDefined();
      await kube.remove(R.serviceAccount, account?.namespace, account?.name as string);
      const ct = await waitForClientReady(tenantNs, r.c1, { timeoutMs: t, extra: (c) => c.client.status?.serviceAccount?.uid !== account?.uid });
      expect((await review(ct.token as string, [r.aud])).authenticated).toBe(true);
      r.token = ct.token;
    },
  },
  {
    name: 'adopt: an existing ServiceAccount of the user, not in the cache, is read, marked as used by the client, and used',
    needs: ['get serviceaccounts', 'patch serviceaccounts'],
    run: async (r, t) => {
      const name = expectedServiceAccountName(BOB);
      const sa = await kube.create(R.serviceAccount, r.tier1Ns, { metadata: { name, annotations: { 'tokenwarden.io/user': BOB } } });
      await createClient(r.op, tenantNs, r.c2, { subject: { user: BOB } });
      await waitForClientReady(tenantNs, r.c2, { timeoutMs: t, extra: (c) => c.client.status?.serviceAccount?.uid === sa.metadata.uid });
    },
  },
  {
    name: 'limits: the tier namespace annotation follows',
    needs: ['patch namespaces'],
    run: async (r, t) => {
      await kube.patch(R.tier, undefined, r.t1, { spec: { limits: { requestsPerMinute: 200 } } });
      await eventually('requests-per-minute 200 on the tier namespace', t, async () =>
        (await kube.get(R.namespace, undefined, r.tier1Ns)).metadata.annotations?.['tokenwarden.io/requests-per-minute'] === '200');
    },
  },
  {
    name: 'event series: a repeated Warning is counted on its Event',
    needs: ['patch events'],
    run: async (r, t) => {
      await createTier(r.op, 'conflict', { level: 1, namespace: tenantNs, deletionPolicy: 'Retain' });
      await eventually('Tier Ready=False NamespaceConflict', t, async () => condition(await kube.get<Tier>(R.tier, undefined, r.t3), 'Ready')?.reason === 'NamespaceConflict');
      await kube.patch(R.tier, undefined, r.t3, { metadata: { labels: { 'tokenwarden.io/touched': '1' } } });
      await eventually('Event NamespaceConflict with series.count >= 2', t, async () => {
        const event = (await tierEvent(r.t3, 'NamespaceConflict')) as (KEvent & { series?: { count?: number } }) | undefined;
        return (event?.series?.count ?? 1) >= 2;
      });
    },
  },
  {
    name: 'access change: stale bindings deleted, new one created',
    needs: ['watch rolebindings', 'watch clusterrolebindings', 'delete rolebindings', 'delete clusterrolebindings'],
    run: async (r, t) => {
      await kube.patch(R.tier, undefined, r.t1, { spec: { access: [{ clusterRole: tierRole, namespaces: [otherNs] }] } });
      await waitForTierReady(r.t1, t);
      await eventually('the old bindings gone and the new one there', t, async () =>
        (await kube.tryGet(R.roleBinding, modelsNs, bindingName(r, r.t1))) === null &&
        (await kube.tryGet(R.clusterRoleBinding, undefined, bindingName(r, r.t1))) === null &&
        (await kube.tryGet<Binding>(R.roleBinding, otherNs, bindingName(r, r.t1)))?.roleRef.name === tierRole);
    },
  },
  {
    name: 'tier move: the old tier revokes its departed client\'s tokens at once, new ServiceAccount and token in the new tier, the old ServiceAccount deleted',
    needs: ['delete serviceaccounts', 'deletecollection secrets'],
    run: async (r, t) => {
      await createTier(r.op, 'two', { level: 20, token: { audiences: [r.aud] }, deletionPolicy: 'Delete' });
      await waitForTierReady(r.t2, t);
      const before = await getClient(tenantNs, r.c1);
      await createBinding(r.op, tenantNs, r.tb2, { tierRef: { name: r.t2 }, subjects: [{ kind: 'User', name: ALICE }] });
      const ct = await waitForClientReady(tenantNs, r.c1, { timeoutMs: t, extra: (c) => c.client.status?.tier === r.t2 });
      const who = await review(ct.token as string, [r.aud]);
      expect(who.username?.startsWith(`system:serviceaccount:${r.tier2Ns}:`)).toBe(true);
      const old = before.status?.serviceAccount;
      await eventually('the ServiceAccount of the old tier deleted', t, async () => (await kube.tryGet(R.serviceAccount, old?.namespace, old?.name as string)) === null);
      await eventually('anchors only in the new tier', t, async () => (await anchorsOf(ct.client.metadata.uid as string)).every((a) => a.metadata.namespace === r.tier2Ns));
      await eventually('the old tier\'s TokensRevoked Event (its departures revoked in one deletecollection)', t, () => tierEvent(r.t1, 'TokensRevoked'));
    },
  },
  {
    name: 'deletion: clients and tiers go, with their tokens, ServiceAccounts, bindings and namespaces',
    needs: ['delete namespaces'],
    run: async (r, t) => {
      const c1 = await getClient(tenantNs, r.c1);
      await kube.remove(R.client, tenantNs, r.c1);
      await eventually('client 1 gone', t, async () => (await kube.tryGet(R.client, tenantNs, r.c1)) === null);
      expect(await anchorsOf(c1.metadata.uid as string)).toEqual([]);
      await eventually('its ServiceAccount gone', t, async () => (await kube.tryGet(R.serviceAccount, r.tier2Ns, c1.status?.serviceAccount?.name as string)) === null);
      await kube.remove(R.binding, tenantNs, r.tb2);
      await kube.remove(R.tier, undefined, r.t2);
      await kube.remove(R.client, tenantNs, r.c2);
      await kube.remove(R.binding, tenantNs, r.tb);
      await kube.remove(R.tier, undefined, r.t1);
      await kube.remove(R.tier, undefined, r.t3);
      await eventually('the tiers gone', t, async () => {
        for (const name of [r.t1, r.t2, r.t3]) if ((await kube.tryGet(R.tier, undefined, name)) !== null) return false;
        return (await kube.tryGet(R.client, tenantNs, r.c2)) === null;
      });
      await eventually('the tier namespaces deleted', t, async () => {
        for (const name of [r.tier1Ns, r.tier2Ns]) {
          const ns = await kube.tryGet(R.namespace, undefined, name);
          if (ns !== null && ns.metadata.deletionTimestamp === undefined) return false;
        }
        return true;
      });
      expect(await kube.tryGet(R.roleBinding, otherNs, bindingName(r, r.t1))).toBeNull();
    },
  },
];

interface Outcome {
  op: OperatorProcess;
  failedAt?: string;
  error?: unknown;
  /** What the operator had reported when the stage failed (refusalReport): only what came before the failure. */
  reportAtFailure?: string;
}

/**
 * Runs the stages in order as the operator of `env`. With `probe`, stops after stage `until`, which
 * gets `graceMs` after the first logged refusal of one of `perms` to succeed anyway.
 */
async function runScenario(env: RunEnv, probe?: { until: number; perms: string[]; graceMs: number }): Promise<Outcome> {
  const op = await startOperator({
    namespacePrefix: env.prefix,
    kubeconfig: env.kubeconfig,
    waitForStarted: false,
    extraArgs: ['--leader-elect=true', `--leader-election-namespace=${env.leaseNamespace}`, `--leader-election-id=${env.leaseId}`, ...LEASE_ARGS, '--workers=2'],
  });
  const tierName = (short: string) => `${env.prefix}-${short}`;
  const run: Run = {
    op,
    env,
    aud: `${env.prefix}-gateway`,
    t1: tierName('one'),
    t2: tierName('two'),
    t3: tierName('conflict'),
    tier1Ns: tierNamespace(op, tierName('one')),
    tier2Ns: tierNamespace(op, tierName('two')),
    c1: `${env.prefix}-alice`,
    c2: `${env.prefix}-bob`,
    tb: `${env.prefix}-one`,
    tb2: `${env.prefix}-two`,
  };
  const last = probe ? probe.until : STAGES.length - 1;
  for (let i = 0; i <= last; i++) {
    const stage = STAGES[i] as Stage;
    try {
      if (probe && i === last) {
        let watching = true;
        const refusedThenGrace = (async () => {
          while (watching && refusals(await refusalReport(run), probe.perms).length === 0) await sleep(200);
          await sleep(probe.graceMs);
          if (watching) throw new Error(`not done ${probe.graceMs}ms after the refusal`);
        })();
        try {
          await Promise.race([stage.run(run, 25_000), refusedThenGrace]);
        } finally {
          watching = false;
          refusedThenGrace.catch(() => undefined);
        }
      } else {
        await stage.run(run, probe ? 30_000 : 60_000);
      }
    } catch (error) {
      return { op, failedAt: stage.name, error, reportAtFailure: await refusalReport(run) };
    }
  }
  return { op };
}

/**
 * Where the operator reports the API server refusing it: its log, and, for a refused TokenRequest
 * (an issuance failure is recorded on the object, not logged as an error), the Ready message of the
 * run's clients, which carries the API server's message. As log lines refusals() reads.
 */
async function refusalReport(r: Run): Promise<string> {
  const clients = await kube.list<Client>(R.client, tenantNs, { labelSelector: r.op.selector }).catch(() => [] as Client[]);
  const messages = clients.map((c) => condition(c, 'Ready')?.message).filter((m): m is string => m !== undefined);
  return [r.op.logs(), ...messages.map((m) => JSON.stringify({ err: m, from: 'ServiceAccountClient Ready message' }))].join('\n');
}

/** The operator's logged errors that are the API server refusing one of `perms`. */
function refusals(logs: string, perms: string[]): string[] {
  const patterns = perms.map((perm) => {
    const [verb, resource] = perm.split(' ');
    return perm === 'bind clusterroles' ? 'is attempting to grant RBAC permissions not currently held' : `cannot ${verb} resource "${resource}"`;
  });
  const found: string[] = [];
  for (const line of logs.split('\n')) {
    if (!line.includes('forbidden') && !line.includes('attempting to grant')) continue;
    let err: unknown;
    try {
      err = (JSON.parse(line) as { err?: unknown }).err;
    } catch {
      continue;
    }
    if (typeof err === 'string' && patterns.some((p) => err.includes(p))) found.push(err);
  }
  return found;
}

// ---------------------------------------------------------------------------------------------
// The rules of manifests/, and copies without one of them
// ---------------------------------------------------------------------------------------------

type RoleName = 'tokenwarden-operator' | 'tokenwarden-tier-roles' | 'tokenwarden-leader-election';

interface Role extends ManifestObject {
  rules: PolicyRule[];
}

function manifestRole(name: RoleName): Role {
  const role = rbacObjects().find((o) => (o.kind === 'ClusterRole' || o.kind === 'Role') && o.metadata.name === name);
  if (!role) throw new Error(`no role ${name} in manifests/`);
  return role as Role;
}

interface Atom {
  role: RoleName;
  rule: number;
  resource: string;
  verb: string;
}

const perm = (a: Pick<Atom, 'verb' | 'resource'>) => `${a.verb} ${a.resource}`;

function atomsOf(role: RoleName): Atom[] {
  return manifestRole(role).rules.flatMap((rule, i) => (rule.resources ?? []).flatMap((resource) => rule.verbs.map((verb) => ({ role, rule: i, resource, verb }))));
}

const ROLES: RoleName[] = ['tokenwarden-operator', 'tokenwarden-tier-roles', 'tokenwarden-leader-election'];

/** The walk: one unit per rule, or per verb of each resource with TOKENWARDEN_TEST_RBAC_WALK=verbs. */
function walkUnits(): { label: string; atoms: Atom[] }[] {
  const byVerb = process.env.TOKENWARDEN_TEST_RBAC_WALK === 'verbs';
  return ROLES.flatMap((role) => {
    const atoms = atomsOf(role);
    if (byVerb) return atoms.map((a) => ({ label: `${role}: ${perm(a)}`, atoms: [a] }));
    return manifestRole(role).rules.map((rule, i) => ({
      label: `${role} rule ${i + 1}: ${rule.verbs.join(',')} ${(rule.resources ?? []).join(',')}${rule.resourceNames ? ` (${rule.resourceNames.join(',')})` : ''}`,
      atoms: atoms.filter((a) => a.rule === i),
    }));
  });
}

/** The role's rules without `removed`; a rule losing part of its verbs is split per resource. */
function rulesWithout(role: RoleName, removed: Atom[], resourceNames?: string[]): PolicyRule[] {
  return manifestRole(role).rules.flatMap((rule, i): PolicyRule[] => {
    const named = rule.resourceNames && resourceNames ? { ...rule, resourceNames } : rule;
    const gone = removed.filter((a) => a.role === role && a.rule === i);
    if (gone.length === 0) return [named];
    return (rule.resources ?? []).flatMap((resource) => {
      const verbs = rule.verbs.filter((v) => !gone.some((a) => a.resource === resource && a.verb === v));
      return verbs.length ? [{ ...named, resources: [resource], verbs }] : [];
    });
  });
}

/**
 * A ServiceAccount in walkerNs bound to copies of the manifests' roles without `removed`: the bind
 * list names the test's tier role, the Lease rule names this run's Lease. Returns its RunEnv.
 */
async function walkerEnv(removed: Atom[]): Promise<RunEnv> {
  const prefix = uniquePrefix('rw');
  const sa = `walker-${prefix}`;
  const leaseId = `lease-${prefix}`;
  const user = `system:serviceaccount:${walkerNs}:${sa}`;
  await kube.create(R.serviceAccount, walkerNs, { metadata: { name: sa } });
  const subjects = [{ kind: 'ServiceAccount', name: sa, namespace: walkerNs }];
  const copies: { role: RoleName; rules: PolicyRule[]; namespace?: string }[] = [
    { role: 'tokenwarden-operator', rules: rulesWithout('tokenwarden-operator', removed) },
    { role: 'tokenwarden-tier-roles', rules: rulesWithout('tokenwarden-tier-roles', removed, [tierRole]) },
    { role: 'tokenwarden-leader-election', rules: rulesWithout('tokenwarden-leader-election', removed, [leaseId]), namespace: walkerNs },
  ];
  for (const copy of copies) {
    const name = `${prefix}-${copy.role}`;
    const kind = copy.namespace ? 'Role' : 'ClusterRole';
    const role: ManifestObject = { apiVersion: 'rbac.authorization.k8s.io/v1', kind, metadata: { name, ...(copy.namespace ? { namespace: copy.namespace } : {}) }, rules: copy.rules };
    const binding: ManifestObject = {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: `${kind}Binding`,
      metadata: { name, ...(copy.namespace ? { namespace: copy.namespace } : {}) },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind, name },
      subjects,
    };
    await applyObject(role);
    await applyObject(binding);
    if (!copy.namespace) {
      deleteAfterFile(role);
      deleteAfterFile(binding);
    }
    // Wait until the authorizer has the new binding: one permission the copy still grants is allowed.
    const rule = copy.rules[0];
    if (rule) {
      const [resource, subresource] = (rule.resources?.[0] as string).split('/');
      await eventually(`${user} to get ${name}`, 10_000, () =>
        allowed(user, { verb: rule.verbs[0], group: rule.apiGroups?.[0], resource, subresource, namespace: copy.namespace, name: rule.resourceNames?.[0] }));
    }
  }
  const token = await serviceAccountToken(walkerNs, sa);
  return { prefix, kubeconfig: tokenKubeconfig(token, user), leaseNamespace: walkerNs, leaseId };
}

/** A small semaphore: probes run a few at a time (two cores, one API server). */
function limiter(n: number): <T>(f: () => Promise<T>) => Promise<T> {
  let active = 0;
  const waiting: (() => void)[] = [];
  return async (f) => {
    while (active >= n) await new Promise<void>((resolve) => waiting.push(resolve));
    active++;
    try {
      return await f();
    } finally {
      active--;
      waiting.shift()?.();
    }
  };
}

// ---------------------------------------------------------------------------------------------

beforeAll(async () => {
  [tenantNs, modelsNs, otherNs, walkerNs] = (await Promise.all(['rbac-tenant', 'rbac-models', 'rbac-other', 'rbac-walker'].map((p) => createTestNamespace(p)))) as [string, string, string, string];
  tierRole = `tw-rbac-${randomBytes(3).toString('hex')}-model-user`;
  await kube.create(R.clusterRole, undefined, { metadata: { name: tierRole }, rules: [{ apiGroups: [''], resources: ['configmaps'], verbs: ['get'] }] });
  trackClusterObject(R.clusterRole, tierRole);
});

describe('manifests/', () => {
  it('every permission the roles grant is one a stage of the scenario needs, and every need is granted', () => {
    const granted = new Set(ROLES.flatMap((role) => atomsOf(role).map(perm)));
    const needed = new Set(STAGES.flatMap((s) => s.needs));
    expect([...granted].filter((p) => !needed.has(p)), 'granted but needed by no stage').toEqual([]);
    expect([...needed].filter((p) => !granted.has(p)), 'needed but not granted').toEqual([]);
  });

  it('the Deployment: 2 replicas, leader election, probes, ports, resources, a locked-down container, the downward API', () => {
    const deployment = manifestObjects().find((o) => o.kind === 'Deployment') as ManifestObject & { spec: { replicas: number; template: { spec: PodSpec } } };
    expect(deployment.metadata.namespace).toBe(OPERATOR_NAMESPACE);
    expect(deployment.spec.replicas).toBe(2);
    const pod = deployment.spec.template.spec;
    expect(pod.serviceAccountName).toBe('tokenwarden');
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
    const [container] = pod.containers;
    expect(container?.args).toContain('--leader-elect=true');
    expect(container?.securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, runAsNonRoot: true, capabilities: { drop: ['ALL'] } });
    expect(container?.ports).toEqual(expect.arrayContaining([expect.objectContaining({ name: 'metrics', containerPort: 8080 }), expect.objectContaining({ name: 'health', containerPort: 8081 })]));
    expect(container?.livenessProbe?.httpGet).toMatchObject({ path: '/healthz', port: 'health' });
    expect(container?.readinessProbe?.httpGet).toMatchObject({ path: '/readyz', port: 'health' });
    expect(container?.resources?.requests).toBeDefined();
    expect(container?.resources?.limits).toBeDefined();
    const env = Object.fromEntries((container?.env ?? []).map((e) => [e.name, e.valueFrom?.fieldRef?.fieldPath]));
    expect(env).toMatchObject({ POD_NAME: 'metadata.name', POD_NAMESPACE: 'metadata.namespace' });
    const service = manifestObjects().find((o) => o.kind === 'Service') as ManifestObject & { spec: { ports: { port: number; targetPort: string }[] } };
    expect(service.spec.ports).toEqual([expect.objectContaining({ port: 8080, targetPort: 'metrics' })]);
  });

  it('the API server accepts every object, and the pod template passes the restricted Pod Security Standard', async () => {
    for (const obj of rbacObjects()) await applyObject(obj);
    for (const obj of manifestObjects().filter((o) => o.kind === 'Deployment' || o.kind === 'Service')) await applyObject(obj, { dryRun: true });
    const deployment = manifestObjects().find((o) => o.kind === 'Deployment') as ManifestObject & { spec: { template: { metadata: object; spec: PodSpec } } };
    const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'tokenwarden-psa-check', namespace: OPERATOR_NAMESPACE }, spec: deployment.spec.template.spec };
    const res = await adminRequest<{ message?: string }>('POST', `${objectUrl({ ...pod, metadata: { ...pod.metadata } }, { collection: true })}?dryRun=All`, pod);
    expect(res.code, res.body.message).toBe(201);
    // And a pod that breaks the standard is refused there, so the check above means something.
    const bad = { ...pod, spec: { ...pod.spec, securityContext: {}, containers: pod.spec.containers.map((c) => ({ ...c, securityContext: {} })) } };
    const refused = await adminRequest<{ message?: string }>('POST', `/api/v1/namespaces/${OPERATOR_NAMESPACE}/pods?dryRun=All`, bad);
    expect(refused.code).toBe(403);
    expect(refused.body.message).toContain('restricted');
  });
});

interface PodSpec {
  serviceAccountName?: string;
  securityContext?: Record<string, unknown>;
  containers: {
    args?: string[];
    env?: { name: string; valueFrom?: { fieldRef?: { fieldPath?: string } } }[];
    ports?: { name: string; containerPort: number }[];
    livenessProbe?: { httpGet?: { path: string; port: string } };
    readinessProbe?: { httpGet?: { path: string; port: string } };
    resources?: { requests?: object; limits?: object };
    securityContext?: Record<string, unknown>;
  }[];
}

describe('as its ServiceAccount from manifests/ (tokenwarden-system/tokenwarden, a TokenRequest token)', () => {
  it('runs the whole scenario, leader election included', { timeout: 300_000 }, async () => {
    const kubeconfig = await operatorServiceAccountKubeconfig();
    // What a site does for the ClusterRoles its Tiers name (manifests/cluster-role.yaml, tokenwarden-tier-roles).
    await grantBind(tierRole);
    const outcome = await runScenario({ prefix: uniquePrefix('rbac'), kubeconfig, leaseNamespace: OPERATOR_NAMESPACE, leaseId: 'tokenwarden-leader' });
    try {
      if (outcome.failedAt) {
        throw new Error(`stage "${outcome.failedAt}" failed: ${(outcome.error as Error).message}\noperator log ${outcome.op.logPath}:\n${outcome.op.tail(30)}`);
      }
      expect(refusals(outcome.op.logs(), STAGES.flatMap((s) => s.needs)), 'no refusal at all in the log').toEqual([]);
      // Authenticated as the ServiceAccount, not as admin: whom the kubeconfig's token is.
      const token = (JSON.parse(fs.readFileSync(kubeconfig, 'utf8')) as { users: { user: { token: string } }[] }).users[0]?.user.token as string;
      expect((await tokenReview(token)).username).toBe(`system:serviceaccount:${OPERATOR_NAMESPACE}:tokenwarden`);
    } finally {
      const exit = await outcome.op.stop(20_000);
      expect(exit.code).toBe(0);
    }
    const lease = await kube.get<KObject & { spec?: { holderIdentity?: string } }>(LEASE, OPERATOR_NAMESPACE, 'tokenwarden-leader');
    expect(lease.spec?.holderIdentity ?? '', 'released on SIGTERM').toBe('');
  });
});

describe('the rule walk: without any single rule, the scenario fails with that permission refused', () => {
  const limit = limiter(3);
  const units = walkUnits();
  for (const unit of units) {
    const perms = unit.atoms.map(perm);
    const until = Math.min(...perms.map((p) => STAGES.findIndex((s) => s.needs.includes(p))));
    it.concurrent(`${unit.label} → fails by "${STAGES[until]?.name}"`, { timeout: 600_000 }, async () => {
      await limit(async () => {
        const env = await walkerEnv(unit.atoms);
        const outcome = await runScenario(env, { until, perms, graceMs: 5_000 });
        await outcome.op.kill();
        expect(outcome.failedAt, `the scenario passed every stage up to "${STAGES[until]?.name}" without ${perms.join(', ')}; log ${outcome.op.logPath}`).toBeDefined();
        // The refusal caused the failure: the API server refused one of the removed permissions
        // BEFORE the stage failed, and the stage that failed is one that needs a refused one. A
        // stage failing for another reason (a slow start, a flake) while some refusal shows up in
        // the log anyway does not count.
        const logBefore = outcome.reportAtFailure ?? '';
        const refusedPerms = perms.filter((p) => refusals(logBefore, [p]).length > 0);
        const refusedAfter = perms.filter((p) => refusals(outcome.op.logs(), [p]).length > 0);
        expect(refusedPerms, `removed permissions refused before "${outcome.failedAt}" failed (refused at all: ${refusedAfter.join(', ') || 'none'}); log ${outcome.op.logPath}`).not.toEqual([]);
        const failed = STAGES.find((s) => s.name === outcome.failedAt) as Stage;
        expect(
          failed.needs.filter((p) => refusedPerms.includes(p)),
          `stage "${outcome.failedAt}" needs none of the refused ${refusedPerms.join(', ')}: it failed for another reason (${String((outcome.error as Error | undefined)?.message).slice(0, 300)}); log ${outcome.op.logPath}`,
        ).not.toEqual([]);
      });
    });
  }
});
