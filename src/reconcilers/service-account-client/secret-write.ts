/**
 * Writing the client's Secret: created with a token, patched with the next one, emptied when the
 * client may hold none. Only a Secret of tokenwarden's type that this client controls is written.
 */
import type { IssuedToken } from '../../api/index.ts';
import { errorMessage, isAlreadyExists, isConflict, isInvalid } from '../../kube/errors.ts';
import { SECRETS } from '../../kube/resources.ts';
import type { EffectiveTokenPolicy } from '../../policy/token-policy.ts';
import type { CachedSecret, OperatorContext } from '../context.ts';
import { TOKEN_KEY, TOKEN_SECRET_TYPE } from '../labels.ts';
import { cachedSecret, defaultSecretName, isSecretError, SecretConflictError, SecretInvalidError, secretRef } from './secret.ts';
import { secretMetadata } from './secret-metadata.ts';
import type { Client } from './status.ts';
import { writeFailure } from './write-failure.ts';

type SecretContent = { token: string; issued: IssuedToken; policy: EffectiveTokenPolicy };

/** Writes the client's Secret: with a new token, or (suspended, moving, expired) with none. */
export async function writeSecret(
  op: OperatorContext,
  client: Client,
  tierName: string,
  content: SecretContent | undefined,
  secret: CachedSecret | undefined = cachedSecret(op, client),
): Promise<void> {
  const namespace = client.metadata.namespace as string;
  const name = defaultSecretName(client);
  const metadata = secretMetadata(client, tierName, content?.issued, content?.policy);
  const data: Record<string, string> = content === undefined ? {} : { [TOKEN_KEY]: Buffer.from(content.token, 'utf8').toString('base64') };
  if (content === undefined && secret !== undefined && secret.tokenClaims === undefined) return;
  let written;
  try {
    written = await write();
  } catch (err) {
    if (isSecretError(err)) throw err;
    // Refused as invalid (a secretTemplate label the API server does not accept): only a spec change helps.
    if (isInvalid(err)) throw new SecretInvalidError(`the API server refuses the Secret: ${errorMessage(err)}`, { cause: err });
    throw writeFailure(content === undefined ? 'empty' : 'write', `Secret ${namespace}/${name}`, err);
  }
  op.freshness.wrote(secretRef(namespace, name), written);

  async function write(): Promise<CachedSecret> {
    if (secret === undefined) {
      try {
        return await op.kube.create(SECRETS, namespace, { apiVersion: 'v1', kind: 'Secret', type: TOKEN_SECRET_TYPE, metadata: { name, ...metadata }, data } as CachedSecret);
      } catch (err) {
        if (!isAlreadyExists(err)) throw err;
        return await takeBackUnlabelled(op, client, metadata, data, err);
      }
    }
    return await op.kube.patch(SECRETS, namespace, name, { metadata, data: content === undefined ? { [TOKEN_KEY]: null } : data });
  }
}

/**
 * The Secret exists but is not in the cache, which holds only Secrets labelled as tokenwarden's.
 * Still this client's if its controller reference says so (someone stripped the label): take it
 * back. A JSON patch whose first operation tests the owner's uid does both atomically, with no read.
 */
async function takeBackUnlabelled(
  op: OperatorContext,
  client: Client,
  metadata: ReturnType<typeof secretMetadata>,
  data: Record<string, string>,
  alreadyExists: unknown,
): Promise<CachedSecret> {
  const namespace = client.metadata.namespace as string;
  const name = defaultSecretName(client);
  try {
    return await op.kube.patch(
      SECRETS,
      namespace,
      name,
      [
        { op: 'test', path: '/metadata/ownerReferences/0/uid', value: client.metadata.uid },
        { op: 'test', path: '/type', value: TOKEN_SECRET_TYPE },
        { op: 'add', path: '/metadata/labels', value: metadata.labels },
        { op: 'add', path: '/metadata/annotations', value: metadata.annotations },
        { op: 'add', path: '/data', value: data },
      ],
      { type: 'json' },
    );
  } catch (patchErr) {
    if (!isInvalid(patchErr) && !isConflict(patchErr)) throw patchErr;
  }
  throw new SecretConflictError(`Secret ${namespace}/${name} already exists and is not managed by tokenwarden`, { cause: alreadyExists });
}

/** writeSecret for a new token: a refusal of the Secret itself becomes SecretInvalidError. */
export async function writeToken(op: OperatorContext, client: Client, tierName: string, content: SecretContent, secret: CachedSecret | undefined): Promise<void> {
  try {
    await writeSecret(op, client, tierName, content, secret);
  } catch (err) {
    if (isInvalid(err)) throw new SecretInvalidError(`the API server refuses the Secret: ${errorMessage(err)}`, { cause: err });
    throw err;
  }
}
