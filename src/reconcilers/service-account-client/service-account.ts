/**
 * ServiceAccount life: ONE ServiceAccount per user and tier, in the tier namespace, its name derived
 * from the user (policy/service-account-name.ts), the exact user kept in an annotation so two users
 * never share one; deleted when no client of that user remains in that tier.
 */
import { isAlreadyExists, isNotFound } from '../../kube/errors.ts';
import { SERVICE_ACCOUNTS } from '../../kube/resources.ts';
import { serviceAccountNameCandidates } from '../../policy/service-account-name.ts';
import { INDEX, type OperatorContext, type ServiceAccount } from '../context.ts';
import { MANAGED_BY, MANAGER, TIER_LABEL, USER_ANNOTATION } from '../labels.ts';
import type { Client } from './status.ts';

export type ServiceAccountRef = { namespace: string; name: string; uid: string };

/** Finds or creates the user's ServiceAccount in the tier namespace; never shares one between users. */
export async function ensureServiceAccount(
  op: OperatorContext,
  namespace: string,
  user: string,
  tierName: string,
): Promise<{ name: string; uid: string; collision?: false } | { collision: true }> {
  for (const name of serviceAccountNameCandidates(user)) {
    let account: ServiceAccount | undefined = op.caches.serviceAccounts.get(namespace, name);
    if (account === undefined) {
      try {
        account = await op.kube.create<ServiceAccount>(SERVICE_ACCOUNTS, namespace, {
          apiVersion: 'v1',
          kind: 'ServiceAccount',
          metadata: {
            name,
            labels: { [MANAGED_BY]: MANAGER, [TIER_LABEL]: tierName },
            annotations: { [USER_ANNOTATION]: user },
          },
        });
      } catch (err) {
        if (!isAlreadyExists(err)) throw err;
        account = await op.kube.get<ServiceAccount>(SERVICE_ACCOUNTS, namespace, name);
      }
    }
    if (account.metadata?.deletionTimestamp !== undefined) throw new Error(`ServiceAccount ${namespace}/${name} is being deleted`);
    if (account.metadata?.annotations?.[USER_ANNOTATION] === user) {
      return { name, uid: account.metadata.uid as string };
    }
  }
  return { collision: true };
}

/**
 * Deletes the ServiceAccount this client used before, when no other client of the user still uses
 * it: tokens of a tier the user left must not outlive the move.
 */
export async function releaseServiceAccount(op: OperatorContext, client: Client, current: { namespace: string; name: string } | undefined): Promise<void> {
  const before = client.status?.serviceAccount;
  if (before === undefined) return;
  if (current !== undefined && before.namespace === current.namespace && before.name === current.name) return;
  await deleteServiceAccountIfUnused(op, client, before);
}

export async function deleteServiceAccountIfUnused(op: OperatorContext, client: Client, account: { namespace: string; name: string }): Promise<void> {
  const users = op.caches.clients
    .byIndex(INDEX.clientByServiceAccount, `${account.namespace}/${account.name}`)
    .filter((other) => other.metadata.uid !== client.metadata.uid && other.metadata.deletionTimestamp === undefined);
  if (users.length > 0) return;
  try {
    await op.kube.delete(SERVICE_ACCOUNTS, account.namespace, account.name);
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
}
