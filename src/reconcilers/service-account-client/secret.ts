/**
 * The client's Secret: type tokenwarden.io/token, key `token`, annotations with tier and expiry, the
 * secretTemplate's labels and annotations, an ownerReference to the client. Only a Secret of that
 * type, controlled by this client (or by nobody), is ever written or deleted.
 *
 * Here: its name and the errors that block it; secret-claim.ts claims the name before any write,
 * secret-metadata.ts says what it carries, secret-write.ts writes it.
 */
import { isNotFound } from '../../kube/errors.ts';
import { SECRETS } from '../../kube/resources.ts';
import { isClientSecret, type CachedSecret, type OperatorContext } from '../context.ts';
import type { Client } from './status.ts';
import { writeFailure } from './write-failure.ts';

/** The Secret name is taken by a Secret tokenwarden does not manage: never overwrite it. */
export class SecretConflictError extends Error {}

/** The API server refuses the client's Secret (e.g. an invalid template label): fixable only by a spec change. */
export class SecretInvalidError extends Error {}

export const isSecretError = (err: unknown): boolean => err instanceof SecretConflictError || err instanceof SecretInvalidError;

export const secretRef = (namespace: string, name: string): string => `Secret/${namespace}/${name}`;

export function defaultSecretName(client: Client): string {
  return client.spec.secretName ?? `${client.metadata.name}-token`;
}

/** The client's Secret as the cache shows it. */
export function cachedSecret(op: OperatorContext, client: Client): CachedSecret | undefined {
  return op.caches.secrets.get(client.metadata.namespace, defaultSecretName(client));
}

/**
 * Deletes the client's Secret, only if it is this client's: its name may be another client's Secret.
 * Whether this call deleted it.
 */
export async function deleteClientSecret(op: OperatorContext, client: Client, name = defaultSecretName(client)): Promise<boolean> {
  const secret = op.caches.secrets.get(client.metadata.namespace, name);
  if (secret === undefined || !isClientSecret(secret, client.metadata.uid)) return false;
  try {
    await op.kube.delete(SECRETS, client.metadata.namespace, name, { preconditions: { uid: secret.metadata?.uid as string } });
    return true;
  } catch (err) {
    if (!isNotFound(err)) throw writeFailure('delete', `Secret ${client.metadata.namespace}/${name}`, err);
    return false;
  }
}

/**
 * An immutable Secret can be neither renewed, repaired nor emptied, and anyone who may edit Secrets
 * in the namespace can make it so. The operator owns the client's Secret: it deletes it (the uid
 * precondition: only the one it saw) and the next pass finds it missing, as after any deletion: a
 * new token written to a new Secret, the one deleted with it revoked after the grace period.
 * 'deleted' when this call deleted it; 'lagging' when it was gone already (the cache has yet to
 * show the deletion: nothing is to be decided from it until it does); undefined for a Secret that
 * is not immutable.
 */
export async function deleteImmutableSecret(op: OperatorContext, client: Client): Promise<'deleted' | 'lagging' | undefined> {
  const secret = cachedSecret(op, client);
  if (secret?.immutable !== true || !isClientSecret(secret, client.metadata.uid)) return undefined;
  return (await deleteClientSecret(op, client)) ? 'deleted' : 'lagging';
}

/**
 * A client whose Secret cannot be written (SecretInvalid) waits for a spec change, but the Secret
 * never holds an expired token: at expiry the operator, which owns it, deletes it. When to look
 * again while it holds one that has not expired; undefined when there is nothing to wait for.
 */
export async function dropExpiredToken(op: OperatorContext, client: Client): Promise<number | undefined> {
  const secret = cachedSecret(op, client);
  const claims = secret?.tokenClaims;
  if (secret === undefined || typeof claims !== 'object' || !isClientSecret(secret, client.metadata.uid)) return undefined;
  const left = claims.expiresAtMs - op.now();
  if (left > 0) return left + 50;
  await deleteClientSecret(op, client);
  return undefined;
}
