/**
 * What the client's Secret carries besides its token: the secretTemplate's labels and annotations,
 * the client's name and tier, the issued token's id, expiry and request, and an ownerReference that
 * makes the client its controller. Put back when someone edits it.
 */
import type { IssuedToken } from '../../api/index.ts';
import { errorMessage, isInvalid } from '../../kube/errors.ts';
import { SECRETS } from '../../kube/resources.ts';
import { RENEW_REQUESTED_AT_ANNOTATION, RENEWED_FOR_ANNOTATION } from '../../policy/reissue.ts';
import type { EffectiveTokenPolicy } from '../../policy/token-policy.ts';
import type { CachedSecret, OperatorContext } from '../context.ts';
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
} from '../labels.ts';
import { SecretInvalidError, secretRef } from './secret.ts';
import { writeFailure } from './write-failure.ts';
import type { Client } from './status.ts';

/** Template keys in tokenwarden's own namespaces would fight the operator's values: they are dropped. */
function userKeys(map: Record<string, string> | undefined): Record<string, string> {
  return Object.fromEntries(Object.entries(map ?? {}).filter(([key]) => !key.startsWith('tokenwarden.io/') && key !== MANAGED_BY));
}

/** The Secret's metadata; the token's own annotations only when a token is being written. */
export function secretMetadata(client: Client, tierName: string, issued: IssuedToken | undefined, policy: EffectiveTokenPolicy | undefined) {
  const template = client.spec.secretTemplate ?? {};
  const annotations: Record<string, string> = {
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

/** Puts back labels, annotations and the ownerReference of a Secret edited behind the operator's back. */
export async function repairSecretMetadata(op: OperatorContext, client: Client, secret: CachedSecret, tierName: string): Promise<void> {
  const want = secretMetadata(client, tierName, undefined, undefined);
  const meta = secret.metadata ?? {};
  const drift =
    Object.entries(want.labels).some(([k, v]) => meta.labels?.[k] !== v) ||
    Object.entries(want.annotations).some(([k, v]) => meta.annotations?.[k] !== v) ||
    !(meta.ownerReferences ?? []).some((ref) => ref.uid === client.metadata.uid && ref.controller === true);
  if (!drift) return;
  let written;
  try {
    written = await op.kube.patch(SECRETS, meta.namespace, meta.name as string, { metadata: want });
  } catch (err) {
    // Refused as invalid (a secretTemplate label the API server does not accept): only a spec change helps.
    if (isInvalid(err)) throw new SecretInvalidError(`the API server refuses the Secret: ${errorMessage(err)}`, { cause: err });
    throw writeFailure('patch', `Secret ${meta.namespace}/${meta.name}`, err);
  }
  op.freshness.wrote(secretRef(meta.namespace as string, meta.name as string), written);
}

