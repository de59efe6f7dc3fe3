/**
 * A tier change (groups, TenantBinding, Tier level, requested tier) moves the client: the old tier's
 * tokens of that client are revoked at once and a ServiceAccount left without clients is deleted;
 * a token of the new tier follows on the next pass (converge.ts).
 */
import type { ServiceAccountClientStatus } from '../../api/index.ts';
import type { Logger } from '../../controller/logger.ts';
import type { CachedSecret, OperatorContext } from '../context.ts';
import { TIER_LABEL } from '../labels.ts';
import { anchorNames, revokeTokens } from './revocation.ts';
import { cachedSecret, defaultSecretName } from './secret.ts';
import { writeSecret } from './secret-write.ts';
import { releaseServiceAccount } from './service-account-release.ts';
import { WriteFailedError } from './write-failure.ts';
import { clearedTokens, conditionsFor, type Client, type ClientEvent, type Outcome, type TierResolvedCondition } from './status.ts';

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
  failures: string[],
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
  // A failed write (write-failure.ts) is recorded by converge.ts; anything else is thrown.
  for (const result of settled) {
    if (result.status !== 'rejected') continue;
    if (!(result.reason instanceof WriteFailedError)) throw result.reason;
    failures.push(result.reason.message);
  }
  const oldTiers = leftBehind.map((a) => a.metadata?.labels?.[TIER_LABEL] ?? a.metadata?.namespace);
  // The tier's departures (reconcilers/departures.ts) may have revoked them already: none left behind.
  if (client.status?.tier !== undefined && client.status.tier !== base.tier) oldTiers.push(client.status.tier);
  const from = [...new Set(oldTiers)].join(', ');
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
