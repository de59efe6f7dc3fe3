/**
 * Tier: the tier namespace with its labels and limit annotations, the access bindings for the group
 * of the namespace's ServiceAccounts, sweeping what no client uses, and the deletionPolicy.
 */
import { Tier, type TierStatus } from '../api/index.ts';
import { conditionsDiffer, setCondition } from '../controller/conditions.ts';
import type { ReconcileContext, ReconcileFunc, ReconcileResult } from '../controller/controller.ts';
import { errorMessage, isAlreadyExists, isConflict, isForbidden, isInvalid, isNotFound } from '../kube/errors.ts';
import { instanceScope, recordedUses } from '../policy/service-account-use.ts';
import { deleteIfUnused, usersOf } from './service-account-client/service-account-release.ts';
import { CLUSTER_ROLE_BINDINGS, NAMESPACES, ROLE_BINDINGS, SECRETS, TIERS, type ResourceType } from '../kube/resources.ts';
import { INDEX, tierNamespace, type Binding, type OperatorContext } from './context.ts';
import {
  ANCHOR_SECRET_TYPE,
  CLIENT_UID_LABEL,
  MANAGED_BY,
  MANAGING_SCOPE_ANNOTATION,
  MANAGER,
  POD_SECURITY_LABELS,
  REQUESTS_PER_MINUTE_ANNOTATION,
  SCOPE_LABEL,
  TIER_FINALIZER,
  TIER_LABEL,
  TOKENS_PER_MINUTE_ANNOTATION,
} from './labels.ts';

/** A ServiceAccount this young may belong to a client whose status is not written yet. */
const SWEEP_MIN_AGE_MS = 30_000;

export function tierReconciler(op: OperatorContext): ReconcileFunc {
  return async (name: string, rctx: ReconcileContext): Promise<ReconcileResult> => {
    const cached = op.caches.tiers.get(undefined, name);
    if (cached === undefined) return;
    const parsed = Tier.safeParse(cached);
    if (!parsed.success) {
      rctx.logger.warn({ issues: parsed.error.issues.length }, 'tier does not match the schema');
      await writeStatus(op, cached, { ...cached.status, conditions: ready(cached, 'False', 'InvalidSpec', parsed.error.message, op.now()) });
      return;
    }
    const tier = parsed.data;
    const namespace = tierNamespace(tier, op.config.namespacePrefix);
    // A Tier matched by the --selector of several instances is managed by one: the one whose scope
    // its namespace carries (the first to create or claim it). The others' clients use it (resolve
    // to it, mint in its namespace) and leave the namespace, access, sweep, status and finalizer alone.
    const scope = instanceScope(op.config.selector);
    if (managedElsewhere(op, tier, namespace, scope)) return;
    const ownClients = op.caches.clients.byIndex(INDEX.clientByTier, name).length;

    if (tier.metadata.deletionTimestamp !== undefined) return finalize(op, tier, namespace, ownClients);
    if (!(tier.metadata.finalizers ?? []).includes(TIER_FINALIZER)) {
      await op.kube.patch(TIERS, undefined, name, {
        metadata: { finalizers: [...(tier.metadata.finalizers ?? []), TIER_FINALIZER], resourceVersion: tier.metadata.resourceVersion },
      });
    }
    const clients = ownClients + clientsOfOtherInstances(op, namespace, scope);

    let conflict: string | undefined;
    try {
      conflict = await ensureNamespace(op, tier, namespace);
      if (conflict === undefined) await ensureAccess(op, tier, namespace);
    } catch (err) {
      // Refused by the API server (an invalid name, a missing namespace for a RoleBinding, a ClusterRole
      // the operator may not bind): only an edit can fix it, so say so instead of retrying blindly.
      if (!isInvalid(err) && !isNotFound(err) && !isForbidden(err)) throw err;
      const message = `the API server refuses the tier's objects: ${errorMessage(err)}`;
      // Also in the log: a missing RBAC grant (bind on a ClusterRole) is found there, not in a Tier's status.
      rctx.logger.warn({ err: errorMessage(err) }, 'the API server refuses the tier\'s objects');
      if (tier.status?.conditions?.find((c) => c.type === 'Ready')?.reason !== 'Refused') void op.events.warning(tier, 'Refused', message);
      await writeStatus(op, tier, { namespace, clients, conditions: ready(tier, 'False', 'Refused', message, op.now()) });
      return { requeueAfterMs: 60_000 };
    }
    if (conflict !== undefined) {
      await writeStatus(op, tier, { namespace, clients, conditions: ready(tier, 'False', 'NamespaceConflict', conflict, op.now()) });
      void op.events.warning(tier, 'NamespaceConflict', conflict);
      return;
    }
    const sweepAgainInMs = await sweep(op, namespace);
    await writeStatus(op, tier, {
      namespace,
      clients,
      conditions: ready(tier, 'True', 'Reconciled', `namespace ${namespace} and ${tier.spec.access.length} access rule(s) in place`, op.now()),
    });
    if (sweepAgainInMs !== undefined) return { requeueAfterMs: sweepAgainInMs };
  };
}

function ready(tier: Tier, status: 'True' | 'False', reason: string, message: string, now: number) {
  return setCondition(tier.status?.conditions, { type: 'Ready', status, reason, message }, tier.metadata.generation, new Date(now));
}

/** Whether the tier namespace names another instance's scope as the Tier's manager. */
function managedElsewhere(op: OperatorContext, tier: Tier, namespace: string, scope: string): boolean {
  const ns = op.caches.namespaces.get(undefined, namespace);
  const manager = ns?.metadata?.annotations?.[MANAGING_SCOPE_ANNOTATION];
  return ns?.metadata?.labels?.[TIER_LABEL] === tier.metadata.name && manager !== undefined && manager !== scope;
}

function namespaceMetadata(tier: Tier, scope: string) {
  const limits = tier.spec.limits;
  return {
    labels: { [MANAGED_BY]: MANAGER, [TIER_LABEL]: tier.metadata.name, ...POD_SECURITY_LABELS } as Record<string, string>,
    annotations: {
      [MANAGING_SCOPE_ANNOTATION]: scope as string | null,
      [REQUESTS_PER_MINUTE_ANNOTATION]: limits?.requestsPerMinute === undefined ? null : String(limits.requestsPerMinute),
      [TOKENS_PER_MINUTE_ANNOTATION]: limits?.tokensPerMinute === undefined ? null : String(limits.tokensPerMinute),
    },
  };
}

/** Creates or corrects the tier namespace; returns a message when the name belongs to something else. */
async function ensureNamespace(op: OperatorContext, tier: Tier, name: string): Promise<string | undefined> {
  const want = namespaceMetadata(tier, instanceScope(op.config.selector));
  const existing = op.caches.namespaces.get(undefined, name);
  if (existing === undefined) {
    try {
      const annotations = Object.fromEntries(Object.entries(want.annotations).filter((e): e is [string, string] => e[1] !== null));
      await op.kube.create(NAMESPACES, undefined, { apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels: want.labels, annotations } });
      void op.events.normal(tier, 'NamespaceCreated', `created namespace ${name}`);
      return;
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
      // Not in the cache, which holds only namespaces labelled as tokenwarden's.
      return `namespace ${name} exists and is not managed by tokenwarden`;
    }
  }
  const labels = existing.metadata?.labels ?? {};
  if (labels[TIER_LABEL] !== tier.metadata.name) return `namespace ${name} belongs to tier ${labels[TIER_LABEL] ?? '(none)'}`;
  const annotations = existing.metadata?.annotations ?? {};
  const drift =
    Object.entries(want.annotations).some(([k, v]) => (annotations[k] ?? null) !== v) || Object.entries(want.labels).some(([k, v]) => labels[k] !== v);
  // With the resourceVersion as a precondition: of two instances claiming a namespace at once, one wins.
  if (drift) await op.kube.patch(NAMESPACES, undefined, name, { metadata: { ...want, resourceVersion: existing.metadata?.resourceVersion } });
  return undefined;
}


interface DesiredBinding {
  type: ResourceType;
  namespace: string | undefined;
  name: string;
  clusterRole: string;
}

function bindingName(tier: Tier, clusterRole: string, prefix: string): string {
  const role = clusterRole.toLowerCase().replace(/[^a-z0-9.-]+/g, '-');
  return `${prefix}-tier-${tier.metadata.name}-${role}`.slice(0, 253).replace(/[.-]+$/, '');
}

function desiredBindings(op: OperatorContext, tier: Tier): DesiredBinding[] {
  return tier.spec.access.flatMap((rule): DesiredBinding[] => {
    const name = bindingName(tier, rule.clusterRole, op.config.namespacePrefix);
    if (rule.namespaces.length === 0) return [{ type: CLUSTER_ROLE_BINDINGS, namespace: undefined, name, clusterRole: rule.clusterRole }];
    return rule.namespaces.map((namespace) => ({ type: ROLE_BINDINGS, namespace, name, clusterRole: rule.clusterRole }));
  });
}

/** RoleBindings and ClusterRoleBindings granting the tier's roles to its ServiceAccounts' group. */
async function ensureAccess(op: OperatorContext, tier: Tier, namespace: string): Promise<void> {
  const subjects = tierSubjects(namespace);
  const desired = desiredBindings(op, tier);
  const wanted = new Set(desired.map((d) => `${d.type.kind}/${d.namespace ?? ''}/${d.name}`));
  for (const d of desired) {
    const cache = d.type === ROLE_BINDINGS ? op.caches.roleBindings : op.caches.clusterRoleBindings;
    const existing = cache.get(d.namespace, d.name);
    const roleRef = { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: d.clusterRole };
    if (existing !== undefined && existing.roleRef?.name === d.clusterRole && JSON.stringify(existing.subjects) === JSON.stringify(subjects)) continue;
    if (existing !== undefined) {
      // roleRef is immutable: replace the binding rather than patch it.
      await deleteIgnoringMissing(op, d.type, d.namespace, d.name);
    }
    try {
      await op.kube.create<Binding>(d.type, d.namespace, {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: d.type.kind,
        metadata: { name: d.name, labels: { [MANAGED_BY]: MANAGER, [TIER_LABEL]: tier.metadata.name } },
        roleRef,
        subjects,
      });
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
    }
  }
  for (const stale of ownedBindings(op, tier, namespace)) {
    if (!wanted.has(`${stale.type.kind}/${stale.namespace ?? ''}/${stale.name}`)) await deleteIgnoringMissing(op, stale.type, stale.namespace, stale.name);
  }
}

/**
 * The bindings this tier made: labelled with its name, named as bindingName names them after their
 * role, and granting exactly the tier namespace's group. Labels alone prove nothing (a namespace admin
 * may label a binding of hers), and nothing but such a binding is ever deleted as stale or at the
 * Tier's deletion.
 */
function ownedBindings(op: OperatorContext, tier: Tier, namespace: string): { type: ResourceType; namespace: string | undefined; name: string }[] {
  const subjects = JSON.stringify(tierSubjects(namespace));
  const of = (type: ResourceType, list: Binding[]) =>
    list
      .filter((b) => b.roleRef?.kind === 'ClusterRole' && b.metadata?.name === bindingName(tier, b.roleRef.name, op.config.namespacePrefix) && JSON.stringify(b.subjects) === subjects)
      .map((b) => ({ type, namespace: b.metadata?.namespace, name: b.metadata?.name as string }));
  return [
    ...of(ROLE_BINDINGS, op.caches.roleBindings.byIndex(INDEX.byTier, tier.metadata.name)),
    ...of(CLUSTER_ROLE_BINDINGS, op.caches.clusterRoleBindings.byIndex(INDEX.byTier, tier.metadata.name)),
  ];
}

/** The one subject of every binding of a tier: the group of its namespace's ServiceAccounts. */
function tierSubjects(namespace: string) {
  return [{ kind: 'Group', apiGroup: 'rbac.authorization.k8s.io', name: `system:serviceaccounts:${namespace}` }];
}

async function deleteIgnoringMissing(op: OperatorContext, type: ResourceType, namespace: string | undefined, name: string): Promise<void> {
  try {
    await op.kube.delete(type, namespace, name);
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
}

/**
 * Deletes, in the tier namespace, ServiceAccounts no client uses and anchors whose client is gone,
 * so nothing outlives its purpose even after a crash. Returns when to look again for objects too
 * young to judge.
 */
async function sweep(op: OperatorContext, namespace: string): Promise<number | undefined> {
  const now = op.now();
  let again: number | undefined;
  const scope = instanceScope(op.config.selector);
  for (const account of op.caches.serviceAccounts.byIndex('namespace', namespace)) {
    // Used by a client of this instance (its status, or its record of use) or of another: kept.
    if (usersOf(op, account, undefined).length > 0) continue;
    const age = now - Date.parse(account.metadata?.creationTimestamp ?? '');
    if (!(age >= SWEEP_MIN_AGE_MS)) {
      again = Math.min(again ?? Infinity, SWEEP_MIN_AGE_MS - (Number.isNaN(age) ? 0 : age) + 100);
      continue;
    }
    try {
      await deleteIfUnused(op, account, undefined);
    } catch (err) {
      // A client recorded its use since the cache was read: look again once the cache shows it.
      if (!isConflict(err)) throw err;
      again = Math.min(again ?? Infinity, 1000);
    }
  }
  for (const anchor of op.caches.anchors.byIndex('namespace', namespace)) {
    if (anchor.type !== ANCHOR_SECRET_TYPE) continue;
    // Only this instance's anchors: another instance's clients are not in this cache. Anchors made
    // before anchors carried a scope are judged only by an instance that manages every client.
    const anchorScope = anchor.metadata?.labels?.[SCOPE_LABEL];
    if (anchorScope !== undefined ? anchorScope !== scope : op.config.selector.trim() !== '') continue;
    const uid = anchor.metadata?.labels?.[CLIENT_UID_LABEL];
    if (uid !== undefined && op.caches.clients.byIndex(INDEX.clientByUid, uid).length > 0) continue;
    if (uid !== undefined) op.unusedAnchors.forget(uid, anchor.metadata?.name as string);
    await deleteIgnoringMissing(op, SECRETS, namespace, anchor.metadata?.name as string);
  }
  return again;
}

/** Clients of other instances holding a ServiceAccount in the tier namespace, by their records of use. */
function clientsOfOtherInstances(op: OperatorContext, namespace: string, scope: string): number {
  const others = new Set<string>();
  for (const account of op.caches.serviceAccounts.byIndex('namespace', namespace)) {
    for (const use of recordedUses(account.metadata?.annotations)) if (use.scope !== scope) others.add(use.clientUid);
  }
  return others.size;
}

async function finalize(op: OperatorContext, tier: Tier, namespace: string, clients: number): Promise<ReconcileResult> {
  if (!(tier.metadata.finalizers ?? []).includes(TIER_FINALIZER)) return;
  if (clients > 0) {
    // Clients resolve away from a tier being deleted; wait until they have moved.
    for (const client of op.caches.clients.byIndex(INDEX.clientByTier, tier.metadata.name)) {
      op.enqueueClient(`${client.metadata.namespace}/${client.metadata.name}`);
    }
    return { requeueAfterMs: 1000 };
  }
  for (const binding of ownedBindings(op, tier, namespace)) await deleteIgnoringMissing(op, binding.type, binding.namespace, binding.name);
  // Only a namespace labelled as this tier's: a Tier that merely named another tier's namespace must not take it down.
  if (tier.spec.deletionPolicy === 'Delete' && op.caches.namespaces.get(undefined, namespace)?.metadata?.labels?.[TIER_LABEL] === tier.metadata.name) {
    await deleteIgnoringMissing(op, NAMESPACES, undefined, namespace);
  }
  await op.kube.patch(TIERS, undefined, tier.metadata.name, {
    metadata: { finalizers: (tier.metadata.finalizers ?? []).filter((f) => f !== TIER_FINALIZER), resourceVersion: tier.metadata.resourceVersion },
  });
}

async function writeStatus(op: OperatorContext, tier: Tier, status: TierStatus): Promise<void> {
  const next = { ...status, observedGeneration: tier.metadata.generation };
  const current = tier.status ?? {};
  const same =
    current.namespace === next.namespace &&
    current.clients === next.clients &&
    current.observedGeneration === next.observedGeneration &&
    !conditionsDiffer(current.conditions, next.conditions);
  if (same) return;
  try {
    await op.kube.patchStatus(TIERS, undefined, tier.metadata.name, { status: next });
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
}
