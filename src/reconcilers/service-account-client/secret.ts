/**
 * The client's Secret: type tokenwarden.io/token, key `token`, annotations with tier and expiry, the
 * secretTemplate's labels and annotations, an ownerReference to the client. Only a Secret of that
 * type, controlled by this client (or by nobody), is ever written or deleted.
 */
import type { IssuedToken } from '../../api/index.ts';
import { errorMessage, isAlreadyExists, isConflict, isInvalid, isNotFound } from '../../kube/errors.ts';
import { SECRETS } from '../../kube/resources.ts';
import { RENEW_REQUESTED_AT_ANNOTATION, RENEWED_FOR_ANNOTATION } from '../../policy/reissue.ts';
import type { EffectiveTokenPolicy } from '../../policy/token-policy.ts';
import { isClientSecret, type CachedSecret, type OperatorContext } from '../context.ts';
import {
  AUDIENCES_ANNOTATION,
  CLIENT_ANNOTATION,
  EXPIRATION_ANNOTATION,
  EXPIRES_AT_ANNOTATION,
  MANAGED_BY,
  MANAGER,
  RENEW_AT_ANNOTATION,
  TIER_LABEL,
  TOKEN_ID_ANNOTATION,
  TOKEN_KEY,
  TOKEN_SECRET_TYPE,
} from '../labels.ts';
import type { Client } from './status.ts';

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
 * Before anything writes or deletes the Secret: another client's Secret, or a Secret of another
 * type, is never touched (SecretConflictError); a token Secret nobody controls is taken back; the
 * Secret under a former spec.secretName, which holds a token nobody should go on using, is deleted.
 */
export async function claimSecretName(op: OperatorContext, client: Client): Promise<void> {
  const name = defaultSecretName(client);
  const named = cachedSecret(op, client);
  const controller = named?.metadata?.ownerReferences?.find((ref) => ref.controller === true);
  if (controller !== undefined && controller.uid !== client.metadata.uid) {
    throw new SecretConflictError(`Secret ${client.metadata.namespace}/${name} belongs to ${controller.kind} ${controller.name}`);
  }
  // Only a Secret of tokenwarden's token type is ever written: the labels on anything else prove nothing.
  if (named !== undefined && named.type !== TOKEN_SECRET_TYPE) {
    throw new SecretConflictError(`Secret ${client.metadata.namespace}/${name} is of type ${named.type ?? 'Opaque'}, not ${TOKEN_SECRET_TYPE}`);
  }
  if (named !== undefined && controller === undefined) await reclaimSecret(op, client, named);
  const formerName = client.status?.secretName;
  if (formerName !== undefined && formerName !== name) await deleteClientSecret(op, client, formerName);
}

/** Template keys in tokenwarden's own namespaces would fight the operator's values: they are dropped. */
function userKeys(map: Record<string, string> | undefined): Record<string, string> {
  return Object.fromEntries(Object.entries(map ?? {}).filter(([key]) => !key.startsWith('tokenwarden.io/') && key !== MANAGED_BY));
}

function secretMetadata(client: Client, tierName: string, issued: IssuedToken | undefined, policy: EffectiveTokenPolicy | undefined) {
  const template = client.spec.secretTemplate ?? {};
  const annotations: Record<string, string | null> = {
    ...userKeys(template.annotations),
    [CLIENT_ANNOTATION]: client.metadata.name,
    [TIER_LABEL]: tierName,
  };
  if (issued !== undefined && policy !== undefined) {
    annotations[TOKEN_ID_ANNOTATION] = issued.id;
    annotations[EXPIRES_AT_ANNOTATION] = issued.expiresAt;
    annotations[RENEW_AT_ANNOTATION] = issued.renewAt;
    annotations[AUDIENCES_ANNOTATION] = policy.audiences.join(',');
    annotations[EXPIRATION_ANNOTATION] = String(policy.expirationSeconds);
    // The renewal request this token answers (kubectl tokenwarden renew), so it is answered once.
    const renewRequested = client.metadata.annotations?.[RENEW_REQUESTED_AT_ANNOTATION];
    if (renewRequested) annotations[RENEWED_FOR_ANNOTATION] = renewRequested;
  }
  return {
    labels: { ...userKeys(template.labels), [MANAGED_BY]: MANAGER },
    annotations,
    ownerReferences: [
      {
        apiVersion: client.apiVersion,
        kind: client.kind,
        name: client.metadata.name,
        uid: client.metadata.uid as string,
        controller: true,
      },
    ],
  };
}

/** Writes the client's Secret: with a new token, or (suspended, moving, expired) with none. */
export async function writeSecret(
  op: OperatorContext,
  client: Client,
  tierName: string,
  content: { token: string; issued: IssuedToken; policy: EffectiveTokenPolicy } | undefined,
  secret: CachedSecret | undefined = cachedSecret(op, client),
): Promise<void> {
  const namespace = client.metadata.namespace as string;
  const name = defaultSecretName(client);
  const metadata = secretMetadata(client, tierName, content?.issued, content?.policy);
  const data = content === undefined ? {} : { [TOKEN_KEY]: Buffer.from(content.token, 'utf8').toString('base64') };
  if (content === undefined && secret !== undefined && secret.tokenClaims === undefined) return;
  let written;
  if (secret === undefined) {
    try {
      written = await op.kube.create(SECRETS, namespace, { apiVersion: 'v1', kind: 'Secret', type: TOKEN_SECRET_TYPE, metadata: { name, ...metadata }, data } as CachedSecret);
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
      // Not in the cache, which holds only Secrets labelled as tokenwarden's. Still this client's if
      // its controller reference says so (someone stripped the label): take it back.
      // A JSON patch whose first operation tests the owner's uid does both atomically, with no read.
      try {
        written = await op.kube.patch(
          SECRETS,
          namespace,
          name,
          [
            { op: 'test', path: '/metadata/ownerReferences/0/uid', value: client.metadata.uid },
            { op: 'test', path: '/type', value: TOKEN_SECRET_TYPE },
            { op: 'add', path: '/metadata/labels', value: metadata.labels },
            { op: 'add', path: '/metadata/annotations', value: Object.fromEntries(Object.entries(metadata.annotations).filter(([, v]) => v !== null)) },
            { op: 'add', path: '/data', value: data },
          ],
          { type: 'json' },
        );
        op.freshness.wrote(secretRef(namespace, name), written);
        return;
      } catch (patchErr) {
        if (!isInvalid(patchErr) && !isConflict(patchErr)) throw patchErr;
      }
      throw new SecretConflictError(`Secret ${namespace}/${name} already exists and is not managed by tokenwarden`, { cause: err });
    }
  } else {
    written = await op.kube.patch(SECRETS, namespace, name, { metadata, data: content === undefined ? { [TOKEN_KEY]: null } : data });
  }
  op.freshness.wrote(secretRef(namespace, name), written);
}

/** writeSecret for a new token: a refusal of the Secret itself becomes SecretInvalidError. */
export async function writeToken(
  op: OperatorContext,
  client: Client,
  tierName: string,
  content: { token: string; issued: IssuedToken; policy: EffectiveTokenPolicy },
  secret: CachedSecret | undefined,
): Promise<void> {
  try {
    await writeSecret(op, client, tierName, content, secret);
  } catch (err) {
    if (isInvalid(err)) throw new SecretInvalidError(`the API server refuses the Secret: ${errorMessage(err)}`, { cause: err });
    throw err;
  }
}

/**
 * A token Secret under the client's name that no one controls (its ownerReference removed, or made
 * by someone else before the client existed) is taken over whole: its labels and annotations are
 * replaced, not merged, so nothing another writer put there (a replicator's annotation, say) stays
 * on a Secret that is about to hold a token. The uid test makes it atomic with no read.
 */
async function reclaimSecret(op: OperatorContext, client: Client, secret: CachedSecret): Promise<void> {
  const meta = secretMetadata(client, secret.metadata?.annotations?.[TIER_LABEL] ?? '', undefined, undefined);
  const annotations = Object.fromEntries(Object.entries(meta.annotations).filter((e): e is [string, string] => e[1] !== null));
  const namespace = secret.metadata?.namespace as string;
  const name = secret.metadata?.name as string;
  const written = await op.kube.patch(
    SECRETS,
    namespace,
    name,
    [
      { op: 'test', path: '/metadata/uid', value: secret.metadata?.uid },
      { op: 'add', path: '/metadata/labels', value: meta.labels },
      { op: 'add', path: '/metadata/annotations', value: annotations },
      { op: 'add', path: '/metadata/ownerReferences', value: meta.ownerReferences },
    ],
    { type: 'json' },
  );
  op.freshness.wrote(secretRef(namespace, name), written);
}

/** Puts back labels, annotations and the ownerReference of a Secret edited behind the operator's back. */
export async function repairSecretMetadata(op: OperatorContext, client: Client, secret: CachedSecret, tierName: string): Promise<void> {
  const want = secretMetadata(client, tierName, undefined, undefined);
  const meta = secret.metadata ?? {};
  const drift =
    Object.entries(want.labels).some(([k, v]) => meta.labels?.[k] !== v) ||
    Object.entries(want.annotations).some(([k, v]) => meta.annotations?.[k] !== v) ||
    !(meta.ownerReferences ?? []).some((ref) => ref.uid === client.metadata.uid && ref.controller === true);
  if (!drift) return;
  const written = await op.kube.patch(SECRETS, meta.namespace, meta.name as string, { metadata: want });
  op.freshness.wrote(secretRef(meta.namespace as string, meta.name as string), written);
}

/** Deletes the client's Secret, only if it is this client's: its name may be another client's Secret. */
export async function deleteClientSecret(op: OperatorContext, client: Client, name = defaultSecretName(client)): Promise<void> {
  const secret = op.caches.secrets.get(client.metadata.namespace, name);
  if (secret === undefined || !isClientSecret(secret, client.metadata.uid)) return;
  try {
    await op.kube.delete(SECRETS, client.metadata.namespace, name, { preconditions: { uid: secret.metadata?.uid as string } });
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
}
