/**
 * Claiming the client's Secret name, before anything writes or deletes the Secret: a Secret that is
 * someone else's is never touched, one that is nobody's is taken back.
 */
import { getCondition } from '../../controller/conditions.ts';
import type { Logger } from '../../controller/logger.ts';
import { SECRETS } from '../../kube/resources.ts';
import { isClientSecret, type CachedSecret, type OperatorContext } from '../context.ts';
import { TIER_LABEL, TOKEN_SECRET_TYPE } from '../labels.ts';
import { revokeAll } from './revocation.ts';
import { cachedSecret, defaultSecretName, deleteClientSecret, SecretConflictError, secretRef } from './secret.ts';
import { secretMetadata } from './secret-metadata.ts';
import type { Client } from './status.ts';

/**
 * Another client's Secret, or a Secret of another type, is never touched (SecretConflictError); a
 * token Secret nobody controls is taken back; the Secret under a former spec.secretName, which
 * holds a token nobody should go on using, is deleted. A new name that is someone else's does not
 * keep the tokens delivered under the former one alive: they are revoked before the conflict is
 * reported (secret-rename.ts revokes them otherwise).
 */
export async function claimSecretName(op: OperatorContext, client: Client, log: Logger): Promise<void> {
  const name = defaultSecretName(client);
  const named = cachedSecret(op, client);
  const formerName = client.status?.secretName;
  const conflict = async (message: string): Promise<never> => {
    if (formerName !== undefined && formerName !== name) await revokeAll(op, client, log);
    throw new SecretConflictError(message);
  };
  // The cache holds only Secrets labelled as tokenwarden's: after a conflict, a Secret of someone
  // else's is read before anything is minted, so each look at a persistent conflict costs one read
  // instead of a TokenRequest.
  const live = named === undefined && getCondition(client.status?.conditions, 'Ready')?.reason === 'SecretConflict' ? await readSecret(op, client, name) : undefined;
  if (live !== undefined && !isClientSecret(live, client.metadata.uid)) {
    const owner = live.metadata?.ownerReferences?.find((ref) => ref.controller === true);
    await conflict(`Secret ${client.metadata.namespace}/${name} ${owner ? `belongs to ${owner.kind} ${owner.name}` : `is not managed by tokenwarden (type ${live.type ?? 'Opaque'})`}`);
  }
  const controller = named?.metadata?.ownerReferences?.find((ref) => ref.controller === true);
  if (controller !== undefined && controller.uid !== client.metadata.uid) {
    await conflict(`Secret ${client.metadata.namespace}/${name} belongs to ${controller.kind} ${controller.name}`);
  }
  // Only a Secret of tokenwarden's token type is ever written: the labels on anything else prove nothing.
  if (named !== undefined && named.type !== TOKEN_SECRET_TYPE) {
    await conflict(`Secret ${client.metadata.namespace}/${name} is of type ${named.type ?? 'Opaque'}, not ${TOKEN_SECRET_TYPE}`);
  }
  if (named !== undefined && controller === undefined) await reclaimSecret(op, client, named);
  if (formerName !== undefined && formerName !== name) await deleteClientSecret(op, client, formerName);
}

/**
 * The Secret under the client's name as the API server has it, without its data; undefined when
 * there is none. A list by name, so the operator needs no `get` on Secrets beyond what it has.
 */
async function readSecret(op: OperatorContext, client: Client, name: string): Promise<CachedSecret | undefined> {
  const listed = await op.kube.list<CachedSecret>(SECRETS, client.metadata.namespace, {
    fieldSelector: `metadata.name=${name}`,
    transform: (item) => {
      const { data: _data, ...secret } = item as CachedSecret & { data?: unknown };
      return secret;
    },
  });
  return listed.items[0];
}

/**
 * A token Secret under the client's name that no one controls (its ownerReference removed, or made
 * by someone else before the client existed) is taken over whole: its labels and annotations are
 * replaced, not merged, so nothing another writer put there (a replicator's annotation, say) stays
 * on a Secret that is about to hold a token. The uid test makes it atomic with no read.
 */
async function reclaimSecret(op: OperatorContext, client: Client, secret: CachedSecret): Promise<void> {
  const meta = secretMetadata(client, secret.metadata?.annotations?.[TIER_LABEL] ?? '', undefined, undefined);
  const namespace = secret.metadata?.namespace as string;
  const name = secret.metadata?.name as string;
  const written = await op.kube.patch(
    SECRETS,
    namespace,
    name,
    [
      { op: 'test', path: '/metadata/uid', value: secret.metadata?.uid },
      { op: 'add', path: '/metadata/labels', value: meta.labels },
      { op: 'add', path: '/metadata/annotations', value: meta.annotations },
      { op: 'add', path: '/metadata/ownerReferences', value: meta.ownerReferences },
    ],
    { type: 'json' },
  );
  op.freshness.wrote(secretRef(namespace, name), written);
}
