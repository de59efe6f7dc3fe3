/**
 * Revocation: a token is revoked by deleting its anchor. The client's anchors in every tier
 * namespace (a move leaves them in the old one), only those the operator made; superseded tokens
 * after their grace period; everything on suspension; the old tier's tokens first on a move.
 */
import { SECRETS } from '../../kube/resources.ts';
import { isNotFound } from '../../kube/errors.ts';
import type { Logger } from '../../controller/logger.ts';
import { getCondition } from '../../controller/conditions.ts';
import { INDEX, isTrustedAnchor, type CachedSecret, type OperatorContext } from '../context.ts';
import { TIER_LABEL } from '../labels.ts';
import { cachedSecret, defaultSecretName } from './secret.ts';
import { writeSecret } from './secret-write.ts';
import { releaseServiceAccount } from './service-account.ts';
import { clearedTokens, conditionsFor, type Client, type ClientEvent, type Outcome, type TierResolvedCondition } from './status.ts';
import type { IssuedToken, ServiceAccountClientStatus } from '../../api/index.ts';
import { planRetention, type RetentionPlan } from '../../policy/reissue.ts';

/** The anchors a client has been given: the newest one created is what the Secret cache must have seen. */
export const anchorsRef = (client: Client): string => `Anchors/${client.metadata.uid}`;

/**
 * The anchors of this client in any tier namespace (a tier move leaves them in the old one): only
 * those the operator made, never a look-alike that merely carries the client's uid.
 */
export function anchorsOf(op: OperatorContext, client: Client): CachedSecret[] {
  return op.caches.secrets
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
    try {
      await op.kube.delete(SECRETS, anchor.metadata?.namespace, id, { preconditions: { uid: anchor.metadata?.uid as string } });
      revoked++;
    } catch (err) {
      if (!isNotFound(err)) throw err;
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

/** suspended: true — every token revoked, the Secret holds none. */
export async function suspend(
  op: OperatorContext,
  client: Client,
  base: ServiceAccountClientStatus,
  tierResolved: TierResolvedCondition,
  events: ClientEvent[],
  log: Logger,
): Promise<Outcome> {
  const revoked = await revokeAll(op, client, log);
  await writeSecret(op, client, base.tier as string, undefined);
  await releaseServiceAccount(op, client, undefined);
  const wasSuspended = getCondition(base.conditions, 'Suspended')?.status === 'True';
  const message = 'suspended: every token is revoked and the Secret holds none';
  return {
    status: {
      ...clearedTokens(base),
      secretName: defaultSecretName(client),
      conditions: conditionsFor(client, op.now(), [
        tierResolved,
        { type: 'Ready', status: 'False', reason: 'Suspended', message },
        { type: 'Suspended', status: 'True', reason: 'Suspended', message },
      ]),
    },
    events: wasSuspended && revoked === 0 ? events : [...events, { type: 'Normal', reason: 'Suspended', note: `${message} (${revoked} revoked)` }],
  };
}

/**
 * First pass of a tier move: the tokens of the tier the client left are revoked, its Secret emptied
 * and that tier's ServiceAccount released, then the key goes to the back of the queue for the new
 * token. When many clients move at once (a Tier or TenantBinding edit), every one of them is cut off
 * from its old tier within one pass over the queue, instead of each waiting until the clients ahead
 * of it have their new tokens.
 */
export async function leaveOldTier(
  op: OperatorContext,
  client: Client,
  base: ServiceAccountClientStatus,
  tierResolved: TierResolvedCondition,
  events: ClientEvent[],
  leftBehind: CachedSecret[],
  log: Logger,
): Promise<Outcome> {
  const secret = cachedSecret(op, client);
  // Three independent writes, sent together: every old token of a tier move waits for this pass over
  // all the movers, so its length is what a move costs. All are settled before Moving is written.
  const settled = await Promise.allSettled([
    revokeTokens(op, client, anchorNames(leftBehind), log),
    secret !== undefined ? writeSecret(op, client, base.tier as string, undefined, secret) : Promise.resolve(),
    releaseServiceAccount(op, client, undefined),
  ]);
  const failed = settled.find((r) => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
  const from = [...new Set(leftBehind.map((a) => a.metadata?.labels?.[TIER_LABEL] ?? a.metadata?.namespace))].join(', ');
  // No count in it: a repeat of this pass (the cache not yet showing the deletions) then writes nothing.
  const message = `moving to tier ${base.tier}: the tokens of tier ${from} are revoked; a token of tier ${base.tier} follows`;
  return {
    status: {
      ...clearedTokens(base),
      secretName: defaultSecretName(client),
      conditions: conditionsFor(client, op.now(), [tierResolved, { type: 'Ready', status: 'False', reason: 'Moving', message }]),
    },
    events,
    requeueAfterMs: 0,
  };
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
): Promise<{ retention: RetentionPlan; revoked: number }> {
  const retention = planRetention(input.tokens, input.now, input.gracePeriodMs, input.revokeEarlier);
  const keep = new Set(retention.keep.map((t) => t.id));
  const claims = input.secret?.tokenClaims;
  const inSecret = claims !== undefined && claims !== 'unreadable' ? claims.boundSecretName : undefined;
  const orphans = [...input.anchors].filter((n) => !keep.has(n) && !(!input.issuedNow && n === inSecret));
  const revoked = await revokeTokens(op, client, [...new Set([...retention.revoke, ...orphans])], log);
  return { retention, revoked };
}
