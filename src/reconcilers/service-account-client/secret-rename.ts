/**
 * A new spec.secretName: the token delivered under the former name is revoked, not rotated. Whoever
 * could read the former Secret (or a copy a replicator made of it) must not keep a valid token for
 * the grace period, so every token of the client goes at once, before a new one is written under the
 * new name on the next pass, as in a tier move (tier-move.ts).
 */
import type { ServiceAccountClientStatus } from '../../api/index.ts';
import type { Logger } from '../../controller/logger.ts';
import type { CachedSecret, OperatorContext } from '../context.ts';
import { anchorNames, revokeTokens } from './revocation.ts';
import { defaultSecretName } from './secret.ts';
import { tolerate } from './write-failure.ts';
import { clearedTokens, conditionsFor, type Client, type ClientEvent, type Outcome, type TierResolvedCondition } from './status.ts';

/** The name the client's tokens were last delivered under, when spec.secretName has moved away from it. */
export function formerSecretName(client: Client): string | undefined {
  const former = client.status?.secretName;
  return former !== undefined && former !== defaultSecretName(client) ? former : undefined;
}

/** Revokes every token of the client (claimSecretName has deleted the former Secret, when it was the client's). */
export async function leaveFormerSecret(
  op: OperatorContext,
  client: Client,
  former: string,
  base: ServiceAccountClientStatus,
  tierResolved: TierResolvedCondition,
  events: ClientEvent[],
  anchors: CachedSecret[],
  failures: string[],
  log: Logger,
): Promise<Outcome> {
  const revoked = await tolerate(failures, () => revokeTokens(op, client, anchorNames(anchors), log));
  // Refused (write-failure.ts): status keeps the former name and its tokens, so the pass after the
  // backoff revokes them again; converge.ts records the failure.
  if (revoked === undefined) return { status: { ...base }, events };
  const name = defaultSecretName(client);
  const message = `spec.secretName changed from ${former} to ${name}: the tokens delivered to ${former} are revoked; a new token follows in ${name}`;
  return {
    status: {
      ...clearedTokens(base),
      secretName: name,
      conditions: conditionsFor(client, op.now(), [tierResolved, { type: 'Ready', status: 'False', reason: 'SecretRenamed', message }]),
    },
    events: revoked > 0 ? [...events, { type: 'Normal', reason: 'Revoked', note: message }] : events,
    requeueAfterMs: 0,
  };
}
