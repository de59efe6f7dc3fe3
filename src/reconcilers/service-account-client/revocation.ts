/**
 * Revocation: a token is revoked by deleting its anchor. The client's anchors in every tier
 * namespace (a move leaves them in the old one), only those the operator made; superseded tokens
 * after their grace period; everything at once when no token may stay (suspension.ts, tier-move.ts,
 * finalizer.ts).
 */
import type { IssuedToken } from '../../api/index.ts';
import type { Logger } from '../../controller/logger.ts';
import { isNotFound } from '../../kube/errors.ts';
import { SECRETS } from '../../kube/resources.ts';
import { MAX_TOKENS, planRetention, type RetentionPlan } from '../../policy/reissue.ts';
import { INDEX, isTrustedAnchor, type CachedSecret, type OperatorContext } from '../context.ts';
import type { Client } from './status.ts';
import { tolerate, writeFailure } from './write-failure.ts';

/** The anchors a client has been given: the newest one created is what the Secret cache must have seen. */
export const anchorsRef = (client: Client): string => `Anchors/${client.metadata.uid}`;

/**
 * The anchors of this client in any tier namespace (a tier move leaves them in the old one): only
 * those the operator made, never a look-alike that merely carries the client's uid.
 */
export function anchorsOf(op: OperatorContext, client: Client): CachedSecret[] {
  return op.caches.anchors
    .byIndex(INDEX.anchorByClientUid, client.metadata.uid as string)
    .filter((secret) => isTrustedAnchor(op.caches, op.config.namespacePrefix, secret));
}

export const anchorNames = (anchors: CachedSecret[]): string[] => anchors.map((a) => a.metadata?.name as string);

/** Deletes anchors by name, which revokes their tokens at the API server. Returns how many went. */
export async function revokeTokens(op: OperatorContext, client: Client, ids: string[], log: Logger): Promise<number> {
  if (ids.length === 0) return 0;
  const anchors = new Map(anchorsOf(op, client).map((a) => [a.metadata?.name as string, a]));
  let revoked = 0;
  for (const id of ids) {
    const anchor = anchors.get(id);
    if (anchor === undefined) continue;
    op.unusedAnchors.forget(client.metadata.uid as string, id);
    try {
      await op.kube.delete(SECRETS, anchor.metadata?.namespace, id, { preconditions: { uid: anchor.metadata?.uid as string } });
      revoked++;
    } catch (err) {
      if (!isNotFound(err)) throw writeFailure('revoking token, delete', `anchor Secret ${anchor.metadata?.namespace}/${id}`, err);
    }
  }
  if (revoked > 0) {
    op.metrics.revoked(client.status?.tier ?? 'unknown', revoked);
    log.info({ revoked, ids }, 'revoked tokens');
  }
  return revoked;
}

/** Every token of the client revoked at once (no tier, a refused policy, finalize). */
export async function revokeAll(op: OperatorContext, client: Client, log: Logger): Promise<number> {
  return revokeTokens(op, client, anchorNames(anchorsOf(op, client)), log);
}

/**
 * Superseded tokens (policy/reissue.ts planRetention): each earlier token until its grace period
 * ends, none when the new token was issued to revoke them; and orphans, anchors this client made
 * that neither the status to be written nor the Secret names (a crash between anchor and status).
 */
export async function revokeSuperseded(
  op: OperatorContext,
  client: Client,
  input: { tokens: IssuedToken[]; revokeEarlier: boolean; issuedNow: boolean; anchors: Set<string>; secret: CachedSecret | undefined; gracePeriodMs: number; now: number },
  log: Logger,
): Promise<{ retention: RetentionPlan; revoked: number; failed?: string }> {
  const retention = planRetention(input.tokens, input.now, input.gracePeriodMs, input.revokeEarlier);
  const keep = new Set(retention.keep.map((t) => t.id));
  const claims = input.secret?.tokenClaims;
  const inSecret = claims !== undefined && claims !== 'unreadable' ? claims.boundSecretName : undefined;
  const orphans = [...input.anchors].filter((n) => !keep.has(n) && !(!input.issuedNow && n === inSecret));
  const failures: string[] = [];
  const revoked = await tolerate(failures, () => revokeTokens(op, client, [...new Set([...retention.revoke, ...orphans])], log));
  if (revoked !== undefined) return { retention, revoked };
  // Not every one went: those still there stay in status, so a later pass revokes them.
  const left = new Set(anchorNames(anchorsOf(op, client)));
  const still = input.tokens.filter((t) => !keep.has(t.id) && left.has(t.id));
  return { retention: { ...retention, keep: [...retention.keep, ...still].slice(0, MAX_TOKENS) }, revoked: 0, failed: failures.join('; ') };
}
