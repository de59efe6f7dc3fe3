/**
 * Minting one token: create the anchor, mint the token bound to it through the TokenRequest API,
 * write the client's Secret. A failure after the anchor exists deletes it (no one can hold its
 * token), unless the TokenRequest was refused: then no token is bound to it and the next attempt
 * reuses it (policy/anchor-reuse.ts).
 */
import { randomBytes } from 'node:crypto';
import type { IssuedToken, Tier } from '../../api/index.ts';
import { KubeApiError } from '../../kube/errors.ts';
import { SECRETS, SERVICE_ACCOUNTS } from '../../kube/resources.ts';
import { mayReuseAnchor, refusedWithoutToken, type AnchorRef } from '../../policy/anchor-reuse.ts';
import { instanceScope } from '../../policy/service-account-use.ts';
import { readTokenClaims, tokenDigest, type TokenClaims } from '../../policy/token-claims.ts';
import type { EffectiveTokenPolicy } from '../../policy/token-policy.ts';
import { tokenRecord } from '../../policy/token-record.ts';
import type { CachedSecret, OperatorContext } from '../context.ts';
import { ANCHOR_SECRET_TYPE, CLIENT_ANNOTATION, CLIENT_NAMESPACE_LABEL, CLIENT_UID_LABEL, MANAGED_BY, MANAGER, SCOPE_LABEL, TIER_LABEL } from '../labels.ts';
import { anchorsRef } from './revocation.ts';
import { writeToken } from './secret-write.ts';
import type { Client } from './status.ts';

/**
 * Create the anchor (or take the one a refused attempt left, policy/anchor-reuse.ts), mint the token
 * bound to it, write the client's Secret: in this order, so a crash at any point leaves nothing that
 * works without being named (an anchor that no Secret or status names is an orphan, deleted on the
 * next pass).
 */
export async function mintToken(
  op: OperatorContext,
  client: Client,
  tier: Tier,
  account: { namespace: string; name: string },
  policy: EffectiveTokenPolicy,
  secret: CachedSecret | undefined,
): Promise<{ issued: IssuedToken; claims: TokenClaims | undefined }> {
  const clientUid = client.metadata.uid as string;
  const anchor = reusableAnchor(op, clientUid, account.namespace, tier.metadata.name) ?? (await createAnchor(op, client, tier, account.namespace));
  const anchorName = anchor.name;
  let token: string;
  try {
    const response = await op.kube.createSubresource<{ status?: { token?: string } }>(SERVICE_ACCOUNTS, account.namespace, account.name, 'token', {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenRequest',
      spec: {
        ...(policy.audiences.length > 0 ? { audiences: policy.audiences } : {}),
        expirationSeconds: policy.expirationSeconds,
        boundObjectRef: { apiVersion: 'v1', kind: 'Secret', name: anchorName, uid: anchor.uid },
      },
    });
    if (!response.status?.token) throw new Error('TokenRequest returned no token');
    token = response.status.token;
  } catch (err) {
    // Refused: no token is bound to the anchor, the next attempt takes it. Otherwise a token may
    // exist that no one holds: the anchor goes, which revokes it.
    if (err instanceof KubeApiError && refusedWithoutToken(err.statusCode)) op.unusedAnchors.remember(clientUid, anchor);
    else await op.kube.delete(SECRETS, account.namespace, anchorName).catch(() => undefined);
    throw err;
  }
  const claims = readTokenClaims(token);
  const issuedAtMs = claims?.issuedAtMs ?? op.now();
  const expiresAtMs = claims?.expiresAtMs ?? op.now() + policy.expirationSeconds * 1000;
  const issued = tokenRecord(anchorName, issuedAtMs, expiresAtMs, policy.renewBeforeMs, tokenDigest(token));
  try {
    await writeToken(op, client, tier.metadata.name, { token, issued, policy }, secret);
  } catch (err) {
    // Nobody can hold this token: revoke it now rather than leave it to the orphan sweep.
    await op.kube.delete(SECRETS, account.namespace, anchorName).catch(() => undefined);
    throw err;
  }
  // What the Secret now holds, as the cache will show it: its digest included.
  return { issued, claims: claims === undefined ? undefined : { ...claims, digest: issued.digest } };
}

/** The anchor a refused attempt of this client left, if it can carry this attempt's token. */
function reusableAnchor(op: OperatorContext, clientUid: string, namespace: string, tierName: string): AnchorRef | undefined {
  const remembered = op.unusedAnchors.take(clientUid);
  if (remembered === undefined) return undefined;
  const cached = op.caches.anchors.get(remembered.namespace, remembered.name);
  const view =
    cached === undefined
      ? undefined
      : {
          namespace: cached.metadata?.namespace as string,
          name: cached.metadata?.name as string,
          uid: cached.metadata?.uid as string,
          tier: cached.metadata?.labels?.[TIER_LABEL] as string,
          deleting: cached.metadata?.deletionTimestamp !== undefined,
        };
  return mayReuseAnchor(remembered, view, { namespace, tier: tierName }) ? remembered : undefined;
}

async function createAnchor(op: OperatorContext, client: Client, tier: Tier, namespace: string): Promise<AnchorRef> {
  const name = `${client.metadata.name.slice(0, 200).replace(/[.-]+$/, '')}-${randomBytes(5).toString('hex')}`;
  const anchor = await op.kube.create(SECRETS, namespace, {
    apiVersion: 'v1',
    kind: 'Secret',
    type: ANCHOR_SECRET_TYPE,
    metadata: {
      name,
      labels: {
        [MANAGED_BY]: MANAGER,
        [TIER_LABEL]: tier.metadata.name,
        [CLIENT_NAMESPACE_LABEL]: client.metadata.namespace as string,
        [CLIENT_UID_LABEL]: client.metadata.uid as string,
        [SCOPE_LABEL]: instanceScope(op.config.selector),
      },
      annotations: { [CLIENT_ANNOTATION]: `${client.metadata.namespace}/${client.metadata.name}` },
    },
  } as CachedSecret);
  op.freshness.wrote(anchorsRef(client), anchor);
  return { namespace, name, uid: anchor.metadata?.uid as string, tier: tier.metadata.name };
}
