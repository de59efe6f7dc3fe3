import type { ServiceAccountClient, TenantBinding } from '../api/index.ts';
import { resolveTier, withinQuota, type Resolution } from '../policy/tier-resolution.ts';
import { INDEX, liveTiers, type OperatorContext } from './context.ts';

export type ClientResolution = Resolution | { resolved: false; reason: 'QuotaExceeded'; message: string };

/**
 * The tier of a client as the caches see it now. A TenantBinding whose maxClients is taken only
 * withholds its own grant: the client falls back to the next tier it qualifies for, and is refused
 * with QuotaExceeded only when there is none.
 */
export function resolveClientTier(op: OperatorContext, client: ServiceAccountClient): ClientResolution {
  const namespace = client.metadata.namespace as string;
  const tiers = liveTiers(op.caches);
  const bindings = op.caches.bindings.byIndex(INDEX.clientByNamespace, namespace);
  const resolve = (c: ServiceAccountClient, excludedBindings?: Set<string>): Resolution =>
    resolveTier({
      subject: c.spec.subject,
      tiers,
      bindings,
      ...(c.spec.tierRef ? { requestedTier: c.spec.tierRef.name } : {}),
      ...(excludedBindings ? { excludedBindings } : {}),
    });
  const full: TenantBinding[] = [];
  const excluded = new Set<string>();
  for (;;) {
    const resolution = resolve(client, excluded);
    const binding = resolution.resolved ? resolution.binding : undefined;
    if (binding?.spec.maxClients === undefined || fits(op, client, binding, resolve)) {
      if (full.length === 0 || !resolution.resolved) return full.length === 0 ? resolution : quotaExceeded(full);
      return { ...resolution, message: `${resolution.message} (${quotaMessage(full)})` };
    }
    full.push(binding);
    excluded.add(binding.metadata.name);
  }
}

/** Clients whose best grant is the binding are ranked oldest first; the first maxClients fit. */
function fits(op: OperatorContext, client: ServiceAccountClient, binding: TenantBinding, resolve: (c: ServiceAccountClient) => Resolution): boolean {
  const member = (c: ServiceAccountClient) => ({ namespace: c.metadata.namespace as string, name: c.metadata.name, creationTimestamp: c.metadata.creationTimestamp });
  const bound = op.caches.clients
    .byIndex(INDEX.clientByNamespace, client.metadata.namespace as string)
    .filter((other) => other.metadata.deletionTimestamp === undefined)
    .filter((other) => {
      if (other.metadata.uid === client.metadata.uid) return true;
      const r = resolve(other);
      return r.resolved && r.binding?.metadata.name === binding.metadata.name;
    })
    .map(member);
  return withinQuota(member(client), bound, binding.spec.maxClients);
}

const quotaMessage = (full: TenantBinding[]) =>
  full.map((b) => `TenantBinding ${b.metadata.name} allows ${b.spec.maxClients} client(s) and they are taken`).join('; ');

function quotaExceeded(full: TenantBinding[]): ClientResolution {
  return { resolved: false, reason: 'QuotaExceeded', message: quotaMessage(full) };
}
