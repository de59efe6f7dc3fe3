/**
 * The finalizer tokenwarden.io/revoke-tokens: on deletion of the client, every token is revoked (its
 * anchors deleted), the Secret deleted, and the ServiceAccount too when it was the last client
 * (its record of use removed otherwise).
 */
import type { ReconcileResult } from '../../controller/controller.ts';
import type { Logger } from '../../controller/logger.ts';
import { SERVICE_ACCOUNT_CLIENTS } from '../../kube/resources.ts';
import type { OperatorContext } from '../context.ts';
import { CLIENT_FINALIZER } from '../labels.ts';
import { revokeAll } from './revocation.ts';
import { deleteClientSecret } from './secret.ts';
import { releaseServiceAccount } from './service-account-release.ts';
import { clientRef, type Client } from './status.ts';
import { tolerate } from './write-failure.ts';

/** Adds the finalizer before any token exists, so no token can outlive the client. */
export async function ensureFinalizer(op: OperatorContext, client: Client): Promise<void> {
  if ((client.metadata.finalizers ?? []).includes(CLIENT_FINALIZER)) return;
  const updated = await op.kube.patch(SERVICE_ACCOUNT_CLIENTS, client.metadata.namespace, client.metadata.name, {
    metadata: { finalizers: [...(client.metadata.finalizers ?? []), CLIENT_FINALIZER], resourceVersion: client.metadata.resourceVersion },
  });
  op.freshness.wrote(clientRef(`${client.metadata.namespace}/${client.metadata.name}`), updated);
  client.metadata.resourceVersion = updated.metadata?.resourceVersion;
}

/**
 * Runs only once the Secret cache shows every anchor made for the client (the reconciler's freshness
 * gate), so an anchor created just before the deletion is revoked too.
 */
export async function finalize(op: OperatorContext, client: Client, log: Logger): Promise<ReconcileResult> {
  if (!(client.metadata.finalizers ?? []).includes(CLIENT_FINALIZER)) return;
  // The tokens must go: a failure here keeps the finalizer, and the work queue tries again.
  await revokeAll(op, client, log);
  // The rest must not hold the deletion up: the Secret holds only revoked tokens now (and its
  // ownerReference removes it), and a ServiceAccount no live client records is swept with its tier.
  const failures: string[] = [];
  // The ownerReference would remove it too, but only once the garbage collector knows the CRD
  // (it rediscovers types every 30 s): delete it now, it holds a revoked token.
  await tolerate(failures, () => deleteClientSecret(op, client));
  // Every ServiceAccount it used or recorded its use on: deleted when no one else uses it.
  await tolerate(failures, () => releaseServiceAccount(op, client, undefined));
  if (failures.length > 0) {
    const note = `tokens revoked and the finalizer removed, but ${failures.join('; ')}`;
    log.warn({ failures }, 'finalized with failed writes');
    void op.events.record(client, { type: 'Warning', reason: 'WriteFailed', note });
  }
  await op.kube.patch(SERVICE_ACCOUNT_CLIENTS, client.metadata.namespace, client.metadata.name, {
    metadata: { finalizers: (client.metadata.finalizers ?? []).filter((f) => f !== CLIENT_FINALIZER), resourceVersion: client.metadata.resourceVersion },
  });
  log.info('finalized: tokens revoked');
}
