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

/** Deletes the client's Secret, only if it is this client's: its name may be another client's Secret. */
export async function deleteClientSecret(op: OperatorContext, client: Client, name = defaultSecretName(client)): Promise<void> {
  const secret = op.caches.secrets.get(client.metadata.namespace, name);
  if (secret === undefined || !isClientSecret(secret, client.metadata.uid)) return;
  try {
    await op.kube.delete(SECRETS, client.metadata.namespace, name, { preconditions: { uid: secret.metadata?.uid as string } });
  } catch (err) {
    if (!isNotFound(err)) throw writeFailure('delete', `Secret ${client.metadata.namespace}/${name}`, err);
  }
}
