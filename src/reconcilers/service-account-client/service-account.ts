/**
 * ServiceAccount life: ONE ServiceAccount per user and tier, in the tier namespace, its name derived
 * from the user (policy/service-account-name.ts), the exact user kept in an annotation so two users
 * never share one; deleted when no client of that user remains in that tier
 * (service-account-release.ts).
 *
 * A client records its use on the ServiceAccount before it mints from it: a ServiceAccount is never
 * deleted under a client that has just started to use it.
 */
import { isAlreadyExists } from '../../kube/errors.ts';
import { SERVICE_ACCOUNTS } from '../../kube/resources.ts';
import { serviceAccountNameCandidates } from '../../policy/service-account-name.ts';
import { instanceScope, useAnnotation } from '../../policy/service-account-use.ts';
import type { OperatorContext, ServiceAccount } from '../context.ts';
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
 * client one PATCH, a renewal none (test/integration/operator/races.test.ts counts them). The uid
 * in the patch makes it fail (409) on a ServiceAccount recreated under the same name; a deleted one
 * answers 404. Both are retried from a fresh cache.
 */
async function recordUse(op: OperatorContext, account: ServiceAccount, client: Client, use: Record<string, string>, labels: Record<string, string>): Promise<string> {
  const namespace = account.metadata?.namespace as string;
  const name = account.metadata?.name as string;
  const [key, scope] = Object.entries(use)[0] as [string, string];
  // A ServiceAccount of the user made by someone else (an admin, before the operator) is adopted:
  // labelled as the operator's, so the cache sees it and its deletion is judged like any other.
  const recorded = account.metadata?.annotations?.[key] === scope && Object.entries(labels).every(([k, v]) => account.metadata?.labels?.[k] === v);
  const pending = !op.freshness.caughtUp(useRef(namespace, name, client), account, op.caches.serviceAccounts.lastResourceVersion(namespace));
  if (recorded || pending) return account.metadata?.uid as string;
  const written = await op.kube.patch<ServiceAccount>(SERVICE_ACCOUNTS, namespace, name, { metadata: { uid: account.metadata?.uid, labels, annotations: use } });
  op.freshness.wrote(useRef(namespace, name, client), written);
  return written.metadata?.uid as string;
}
