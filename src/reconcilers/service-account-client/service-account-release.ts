/**
 * Releasing ServiceAccounts: a client gives up the ones it no longer uses, and each is deleted when
 * no client of that user remains in that tier. The delete carries a resourceVersion precondition
 * (policy/service-account-use.ts): a ServiceAccount is never deleted under a client that has just
 * started to use it, nor under a client of another instance.
 *
 * Only ServiceAccounts in a tier namespace are ever released: the ServiceAccount cache watches
 * nothing else (operator.ts buildCaches), so a look-alike elsewhere (a tenant's ServiceAccount
 * labelled as tokenwarden's and annotated with someone's client uid) is neither found nor written.
 */
import { isNotFound } from '../../kube/errors.ts';
import { SERVICE_ACCOUNTS } from '../../kube/resources.ts';
import { instanceScope, serviceAccountUsers, useAnnotation } from '../../policy/service-account-use.ts';
import { INDEX, tierNamespaces, type OperatorContext, type ServiceAccount } from '../context.ts';
import type { Client } from './status.ts';
import { writeFailure } from './write-failure.ts';

/**
 * Gives up the ServiceAccounts this client used and no longer does (all of them when `current` is
 * undefined): each is deleted when no one else uses it, else this client's record is removed.
 * Tokens of a tier the user left must not outlive the move.
 */
export async function releaseServiceAccount(op: OperatorContext, client: Client, current: { namespace: string; name: string } | undefined): Promise<void> {
  const used = new Map<string, { namespace: string; name: string }>();
  const recorded = client.status?.serviceAccount;
  if (recorded !== undefined) used.set(`${recorded.namespace}/${recorded.name}`, recorded);
  for (const sa of op.caches.serviceAccounts.byIndex(INDEX.serviceAccountByClientUid, client.metadata.uid as string)) {
    used.set(`${sa.metadata?.namespace}/${sa.metadata?.name}`, { namespace: sa.metadata?.namespace as string, name: sa.metadata?.name as string });
  }
  if (current !== undefined) used.delete(`${current.namespace}/${current.name}`);
  for (const account of used.values()) {
    try {
      await deleteServiceAccountIfUnused(op, client, account);
    } catch (err) {
      throw writeFailure('release', `ServiceAccount ${account.namespace}/${account.name}`, err);
    }
  }
}

/** Who, besides `releasing`, keeps the ServiceAccount (policy/service-account-use.ts). */
export function usersOf(op: OperatorContext, account: ServiceAccount, releasing: string | undefined): string[] {
  const ref = `${account.metadata?.namespace}/${account.metadata?.name}`;
  const liveClient = (c: Client) => c.metadata.deletionTimestamp === undefined;
  return serviceAccountUsers({
    annotations: account.metadata?.annotations,
    scope: instanceScope(op.config.selector),
    releasing,
    live: (uid) => op.caches.clients.byIndex(INDEX.clientByUid, uid).some(liveClient),
    namedByStatus: op.caches.clients.byIndex(INDEX.clientByServiceAccount, ref).filter(liveClient).map((c) => c.metadata.uid as string),
  });
}

/**
 * Deletes the ServiceAccount when no one but `releasing` uses it, as of the cached version: the
 * delete carries that resourceVersion as a precondition, so a client that recorded its use since
 * makes it fail (409, retried from a fresh cache). Returns whether it was deleted (or already gone).
 */
export async function deleteIfUnused(op: OperatorContext, account: ServiceAccount, releasing: string | undefined): Promise<boolean> {
  if (usersOf(op, account, releasing).length > 0) return false;
  try {
    await op.kube.delete(SERVICE_ACCOUNTS, account.metadata?.namespace, account.metadata?.name as string, {
      preconditions: { resourceVersion: account.metadata?.resourceVersion as string, uid: account.metadata?.uid as string },
    });
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
  return true;
}

/** Releases one ServiceAccount: deleted when no one else uses it, else this client's record of use removed. */
export async function deleteServiceAccountIfUnused(op: OperatorContext, client: Client, ref: { namespace: string; name: string }): Promise<void> {
  // The cache holds tier namespaces only; said again here, where the write is, for whoever changes the cache.
  if (!tierNamespaces(op.caches.tiers.list(), op.config.namespacePrefix).has(ref.namespace)) return;
  const account = op.caches.serviceAccounts.get(ref.namespace, ref.name);
  if (account === undefined) return;
  if (await deleteIfUnused(op, account, client.metadata.uid)) return;
  const key = useAnnotation(client.metadata.uid as string);
  if (account.metadata?.annotations?.[key] === undefined) return;
  try {
    await op.kube.patch(SERVICE_ACCOUNTS, ref.namespace, ref.name, { metadata: { annotations: { [key]: null } } });
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
}
