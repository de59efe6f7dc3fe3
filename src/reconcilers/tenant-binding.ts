/** TenantBinding: whether its tier exists, and how many clients hold a tier through it. */
import { TenantBinding, type TenantBindingStatus } from '../api/index.ts';
import { conditionsDiffer, setCondition } from '../controller/conditions.ts';
import type { ReconcileFunc, ReconcileResult } from '../controller/controller.ts';
import { isNotFound } from '../kube/errors.ts';
import { TENANT_BINDINGS, splitKey } from '../kube/resources.ts';
import type { ServiceAccountClient } from '../api/index.ts';
import { INDEX, liveTiers, type OperatorContext } from './context.ts';
import { resolveClientTier } from './resolution.ts';

/** A client that asked for its tier counts for the binding only if this binding is what granted it. */
function grantedThrough(op: OperatorContext, client: ServiceAccountClient, binding: string): boolean {
  const resolution = resolveClientTier(op, client);
  return resolution.resolved && resolution.binding?.metadata.name === binding;
}

export function tenantBindingReconciler(op: OperatorContext): ReconcileFunc {
  return async (key: string): Promise<ReconcileResult> => {
    const { namespace, name } = splitKey(key);
    const cached = op.caches.bindings.get(namespace, name);
    if (cached === undefined) return;
    const parsed = TenantBinding.safeParse(cached);
    const binding = parsed.success ? parsed.data : cached;
    const tierName = binding.spec?.tierRef?.name;
    const tierExists = liveTiers(op.caches).some((tier) => tier.metadata.name === tierName);
    const source = `TenantBinding/${name}`;
    const clients = op.caches.clients
      .byIndex(INDEX.clientByNamespace, namespace as string)
      .filter((client) => client.status?.tierReason === source || (client.status?.tierReason === 'Requested' && grantedThrough(op, client, name)))
      .length;
    const [status, reason, message] = !parsed.success
      ? (['False', 'InvalidSpec', parsed.error.message] as const)
      : tierExists
        ? (['True', 'Bound', `grants tier ${tierName} to ${binding.spec.subjects.length} subject(s)`] as const)
        : (['False', 'TierNotFound', `tier ${tierName} does not exist`] as const);
    const conditions = setCondition(binding.status?.conditions, { type: 'Ready', status, reason, message }, binding.metadata.generation, new Date(op.now()));
    const next: TenantBindingStatus = { clients, observedGeneration: binding.metadata.generation, conditions };
    const current = binding.status ?? {};
    if (current.clients === next.clients && current.observedGeneration === next.observedGeneration && !conditionsDiffer(current.conditions, conditions)) return;
    if (reason === 'TierNotFound' && current.conditions?.find((c) => c.type === 'Ready')?.reason !== 'TierNotFound') {
      void op.events.warning(binding, 'TierNotFound', message);
    }
    try {
      await op.kube.patchStatus(TENANT_BINDINGS, namespace, name, { status: next });
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  };
}
