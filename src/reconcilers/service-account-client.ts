/**
 * ServiceAccountClient: resolve the tier, keep one ServiceAccount per user and tier, mint tokens
 * bound to anchor Secrets, keep the client's Secret fresh, and revoke on demand.
 *
 * This file is the trigger: which key, from which cached state, and whether the caches are fresh
 * enough to act on. The work is split by concern under service-account-client/:
 *   converge.ts                 the order of the steps, as the design brief tells it
 *   service-account.ts          one ServiceAccount per user and tier, this client's use recorded on it
 *   service-account-release.ts  given up when unused, deleted when no one else uses it
 *   issuance.ts                 the ServiceAccount, then a new token if one is due
 *   token-due.ts                whether one is due: the client's ask against the caches (policy/reissue.ts)
 *   mint.ts                     anchor, TokenRequest, Secret write
 *   hold-failing.ts             a failed or backed-off attempt: what stays valid, what the client is told
 *   revocation.ts               the client's anchors; superseded tokens after grace, orphans
 *   suspension.ts               suspended: every token revoked, the Secret emptied
 *   tier-move.ts                a move: the old tier's tokens revoked before the new tier's token
 *   readiness.ts                Ready derived from what the Secret holds (policy/readiness.ts)
 *   secret.ts                   the client's Secret: its name, the errors that block it, deleted
 *   secret-claim.ts             the name claimed before any write; a Secret nobody controls taken back
 *   secret-metadata.ts          its labels, annotations and ownerReference; put back when edited
 *   secret-write.ts             created, patched with the next token, or emptied
 *   finalizer.ts                deletion: revoke, delete the Secret, release the ServiceAccount
 *   status.ts                   status written only when it changed, and its Events
 *
 * Order of work, so a crash at any point leaks nothing: create the anchor, mint the token bound to
 * it, write the client's Secret, record it in status, then revoke what is no longer wanted. Anchors
 * that neither the status nor the Secret names are orphans and are deleted.
 */
import { ServiceAccountClient } from '../api/index.ts';
import { formatTime, getCondition } from '../controller/conditions.ts';
import type { ReconcileContext, ReconcileFunc, ReconcileResult } from '../controller/controller.ts';
import { isConflict, isNetworkError, isNotFound } from '../kube/errors.ts';
import { splitKey } from '../kube/resources.ts';
import { issuanceBackoff, issuanceBackoffMs } from '../policy/issuance-backoff.ts';
import { causeOf } from './issuance-failure.ts';
import type { OperatorContext } from './context.ts';
import { converge } from './service-account-client/converge.ts';
import { backoffState } from './service-account-client/issuance.ts';
import { ensureFinalizer, finalize } from './service-account-client/finalizer.ts';
import { anchorsRef } from './service-account-client/revocation.ts';
import { defaultSecretName, deleteImmutableSecret, dropExpiredToken, SecretConflictError, secretRef, SecretInvalidError } from './service-account-client/secret.ts';
import { clientRef, withCondition, writeStatus, type Client, type Outcome } from './service-account-client/status.ts';
import { recordSubjectProof, withSubjectProof } from './service-account-client/subject-proof.ts';

export { defaultSecretName, SecretConflictError, SecretInvalidError } from './service-account-client/secret.ts';
export { deleteServiceAccountIfUnused } from './service-account-client/service-account-release.ts';


/**
 * A pass that failed where status could not say so (the status write itself refused, or a write
 * no step records): remembered by this process, per client and generation, and no pass of that
 * generation starts before policy/issuance-backoff.ts allows the next attempt. Without it the
 * operator's own watch events (the Secret and anchor it wrote before the failure) brought the next
 * pass forward at once, past the work queue's backoff, and each pass minted again.
 */
interface Unrecorded {
  uid: string | undefined;
  generation: number | undefined;
  failures: number;
  until: number;
}

const TRANSIENT_WAIT_MAX_MS = 5_000;

/** The issuance backoff's record in a client's status. */
function failureRecord(client: Client): { failedAttempts: number | undefined; lastFailureTime: string | undefined } {
  return { failedAttempts: client.status?.failedAttempts, lastFailureTime: client.status?.lastFailureTime };
}

export function serviceAccountClientReconciler(op: OperatorContext): ReconcileFunc {
  const unrecorded = new Map<string, Unrecorded>();
  return async (key: string, rctx: ReconcileContext): Promise<ReconcileResult> => {
    const at = splitKey(key);
    const cachedNow = op.caches.clients.get(at.namespace, at.name);
    const held = unrecorded.get(key);
    if (cachedNow === undefined) unrecorded.delete(key);
    else if (held !== undefined && cachedNow.metadata.deletionTimestamp === undefined && held.uid === cachedNow.metadata.uid && held.generation === cachedNow.metadata.generation) {
      const wait = held.until - op.now();
      if (wait > 0) return { requeueAfterMs: wait };
    }
    try {
      const result = await reconcileClient(key, rctx);
      unrecorded.delete(key);
      return result;
    } catch (err) {
      // A stale cache, or a reason the work queue's own backoff handles: as before.
      if (isConflict(err) || isNotFound(err) || cachedNow === undefined) throw err;
      const same = held !== undefined && held.uid === cachedNow.metadata.uid && held.generation === cachedNow.metadata.generation;
      const failures = (same ? held.failures : 0) + 1;
      // An API server that did not answer (restarting, overloaded) is asked again sooner: 1, 2, 4, 5 s.
      const waitMs = isNetworkError(err) ? Math.min(1000 * 2 ** Math.min(failures - 1, 3), TRANSIENT_WAIT_MAX_MS) : issuanceBackoffMs(failures);
      unrecorded.set(key, { uid: cachedNow.metadata.uid, generation: cachedNow.metadata.generation, failures, until: op.now() + waitMs });
      const cause = causeOf(err);
      rctx.logger.warn({ err: cause, failures, retryInMs: waitMs }, 'reconcile failed and status could not record it; backing off');
      if (failures === 1) void op.events.record(cachedNow, { type: 'Warning', reason: 'WriteFailed', note: `the operator could not record the outcome in status: ${cause}` });
      return { requeueAfterMs: waitMs };
    }
  };

  async function reconcileClient(key: string, rctx: ReconcileContext): Promise<ReconcileResult> {
    const { namespace, name } = splitKey(key);
    const cached = op.caches.clients.get(namespace, name);
    if (cached === undefined) return;
    if (!op.freshness.caughtUp(clientRef(key), cached, op.caches.clients.lastResourceVersion())) return { requeueAfterMs: 100 };
    const parsed = ServiceAccountClient.safeParse(cached);
    if (!parsed.success) {
      // The CRD schema makes this rare (an older schema, a hand-edited object); report, never crash.
      const message = `invalid spec: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`;
      await writeStatus(op, cached as Client, {
        status: withCondition(cached as Client, { type: 'Ready', status: 'False', reason: 'InvalidSpec', message }, op.now()),
        events: [{ type: 'Warning', reason: 'InvalidSpec', note: message }],
      });
      return;
    }
    const client = parsed.data;
    // Whatever it decides next rests on the Secret caches: they must show the client's Secret as last
    // written and every anchor made for the client (finalize must revoke them all), in the namespace
    // the last one was made in; and the tier namespaces' caches must have listed (a Tier just added).
    const secretName = defaultSecretName(client);
    const secrets = op.caches.secrets;
    if (
      !op.caches.anchors.hasSynced() ||
      !op.caches.serviceAccounts.hasSynced() ||
      !op.freshness.caughtUp(secretRef(namespace as string, secretName), secrets.get(namespace, secretName), secrets.lastResourceVersion()) ||
      !op.freshness.caughtUp(anchorsRef(client), undefined, (anchorNamespace) => op.caches.anchors.lastResourceVersion(anchorNamespace))
    ) {
      return { requeueAfterMs: 100 };
    }
    if (client.metadata.deletionTimestamp !== undefined) return finalize(op, client, rctx.logger);
    await ensureFinalizer(op, client);
    const immutable = await deleteImmutableSecret(op, client);
    if (immutable === 'lagging') return { requeueAfterMs: 100 };
    if (immutable === 'deleted') {
      // Ready says so until the next pass writes the Secret again; a SecretInvalid the flag caused ends with it.
      const message = `Secret ${namespace}/${secretName} was made immutable, so it could not be renewed or repaired: the operator deleted it and writes it again`;
      await writeStatus(op, client, {
        status: withCondition(client, { type: 'Ready', status: 'False', reason: 'SecretImmutable', message }, op.now()),
        events: [{ type: 'Warning', reason: 'SecretImmutable', note: message }],
      });
      return { requeueAfterMs: 100 };
    }
    const ready = getCondition(client.status?.conditions, 'Ready');
    if (ready?.reason === 'SecretInvalid' && ready.observedGeneration === client.metadata.generation) {
      // Minting again would only be refused again: wait for the spec to change, the Secret emptied of an expired token meanwhile.
      const wakeAfterMs = await dropExpiredToken(op, client);
      return wakeAfterMs === undefined ? undefined : { requeueAfterMs: wakeAfterMs };
    }
    if (ready?.reason === 'SecretConflict') {
      // Someone else's Secret holds the name: each look is counted in the issuance backoff, and the
      // client's own watch events (an anchor made and deleted) never bring the next one forward.
      const backoff = issuanceBackoff({ ...failureRecord(client), reset: backoffState(client, client.status?.tier, op.now()).reset, now: op.now() });
      if (!backoff.go) return { requeueAfterMs: backoff.waitMs };
    }
    // The subject's last proof, as of this pass: what a Tier's groupGrantMaxAge counts from.
    const { client: proven, proof } = withSubjectProof(client, op.now());
    let outcome: Outcome;
    try {
      outcome = recordSubjectProof(op, proven, proof, await converge(op, proven, rctx.logger));
    } catch (err) {
      const reason = err instanceof SecretConflictError ? 'SecretConflict' : err instanceof SecretInvalidError ? 'SecretInvalid' : undefined;
      if (reason === undefined) throw err;
      const message = (err as Error).message;
      const known = getCondition(client.status?.conditions, 'Ready')?.reason === reason;
      outcome = {
        status: withCondition(client, { type: 'Ready', status: 'False', reason, message }, op.now()),
        events: known ? [] : [{ type: 'Warning', reason, note: message }],
      };
      if (reason === 'SecretConflict') {
        // Counted like a failed issuance: the next look waits 5 s, 10 s, ... up to an hour.
        const now = op.now();
        const failedAttempts = backoffState(client, client.status?.tier, now).reset ? 1 : (client.status?.failedAttempts ?? 0) + 1;
        outcome.status = { ...outcome.status, failedAttempts, lastFailureTime: formatTime(new Date(now)) };
        outcome.requeueAfterMs = issuanceBackoffMs(failedAttempts) + 50;
      }
    }
    await writeStatus(op, client, outcome);
    if (outcome.requeueAfterMs !== undefined) return { requeueAfterMs: outcome.requeueAfterMs };
  }
}
