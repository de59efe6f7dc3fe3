/**
 * ServiceAccount life: ONE ServiceAccount per user and tier, in the tier namespace, its name derived
 * from the user (policy/service-account-name.ts), the exact user kept in an annotation so two users
 * never share one; deleted when no client of that user remains in that tier.
 *
 * A client records its use on the ServiceAccount before it mints from it, and deletes it only with a
 * resourceVersion precondition (policy/service-account-use.ts): a ServiceAccount is never deleted
 * under a client that has just started to use it, nor under a client of another instance.
 */
import { isAlreadyExists, isNotFound } from '../../kube/errors.ts';
import { SERVICE_ACCOUNTS } from '../../kube/resources.ts';
import { serviceAccountNameCandidates } from '../../policy/service-account-name.ts';
import { instanceScope, serviceAccountUsers, useAnnotation } from '../../policy/service-account-use.ts';
import { INDEX, type OperatorContext, type ServiceAccount } from '../context.ts';
import { MANAGED_BY, MANAGER, TIER_LABEL, USER_ANNOTATION } from '../labels.ts';
import type { Client } from './status.ts';

export type ServiceAccountRef = { namespace: string; name: string; uid: string };

/** The record of this client's use of a ServiceAccount, as written (read-your-writes, cache-freshness.ts). */
const useRef = (namespace: string, name: string, client: Client): string => `ServiceAccountUse/${namespace}/${name}/${client.metadata.uid}`;

/**
 * Finds or creates the user's ServiceAccount in the tier namespace, with this client's use recorded
 * on it; never shares one between users.
 */
export async function ensureServiceAccount(
  op: OperatorContext,
  namespace: string,
  client: Client,
  tierName: string,
): Promise<{ name: string; uid: string; collision?: false } | { collision: true }> {
  const user = client.spec.subject.user;
  const use = { [useAnnotation(client.metadata.uid as string)]: instanceScope(op.config.selector) };
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
            annotations: { [USER_ANNOTATION]: user, ...use },
          },
        });
        op.freshness.wrote(useRef(namespace, name, client), account);
      } catch (err) {
        if (!isAlreadyExists(err)) throw err;
        account = await op.kube.get<ServiceAccount>(SERVICE_ACCOUNTS, namespace, name);
      }
    }
    if (account.metadata?.deletionTimestamp !== undefined) throw new Error(`ServiceAccount ${namespace}/${name} is being deleted`);
    if (account.metadata?.annotations?.[USER_ANNOTATION] === user) {
      const uid = await recordUse(op, account, client, use, { [MANAGED_BY]: MANAGER, [TIER_LABEL]: tierName });
      return { name, uid };
    }
  }
  return { collision: true };
}

/**
 * Writes this client's use on the ServiceAccount unless it is there already (or was written and the
 * cache has not shown it yet): one write when a client starts using a ServiceAccount it did not
 * create, none on renewals: a first client of the user records its use in the create, a second
 * client one PATCH, a renewal none (test/integration/operator/races.test.ts counts them). The uid in the patch makes it fail (409) on a ServiceAccount recreated
 * under the same name; a deleted one answers 404. Both are retried from a fresh cache.
 */
async function recordUse(op: OperatorContext, account: ServiceAccount, client: Client, use: Record<string, string>, labels: Record<string, string>): Promise<string> {
  const namespace = account.metadata?.namespace as string;
  const name = account.metadata?.name as string;
  const [key, scope] = Object.entries(use)[0] as [string, string];
  // A ServiceAccount of the user made by someone else (an admin, before the operator) is adopted:
  // labelled as the operator's, so the cache sees it and its deletion is judged like any other.
  const recorded = account.metadata?.annotations?.[key] === scope && Object.entries(labels).every(([k, v]) => account.metadata?.labels?.[k] === v);
  const pending = !op.freshness.caughtUp(useRef(namespace, name, client), account, op.caches.serviceAccounts.lastResourceVersion());
  if (recorded || pending) return account.metadata?.uid as string;
  const written = await op.kube.patch<ServiceAccount>(SERVICE_ACCOUNTS, namespace, name, { metadata: { uid: account.metadata?.uid, labels, annotations: use } });
  op.freshness.wrote(useRef(namespace, name, client), written);
  return written.metadata?.uid as string;
}

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
  for (const account of used.values()) await deleteServiceAccountIfUnused(op, client, account);
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

export async function deleteServiceAccountIfUnused(op: OperatorContext, client: Client, ref: { namespace: string; name: string }): Promise<void> {
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
