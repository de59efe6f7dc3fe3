/**
 * Suspension: `suspended: true` revokes every token of the client and empties its Secret;
 * `suspended: false` issues anew, and the client is told it Resumed (policy/issuance-events.ts).
 */
import type { ServiceAccountClientStatus } from '../../api/index.ts';
import { getCondition } from '../../controller/conditions.ts';
import type { Logger } from '../../controller/logger.ts';
import type { OperatorContext } from '../context.ts';
import { takeAway } from './take-away.ts';
import type { BackoffState } from './issuance.ts';
import { defaultSecretName } from './secret.ts';
import { writeSecret } from './secret-write.ts';
import { clearedTokens, conditionsFor, type Client, type ClientEvent, type Outcome, type TierResolvedCondition } from './status.ts';

/** suspended: true — every token revoked, the Secret holds none. */
export async function suspend(
  op: OperatorContext,
  client: Client,
  base: ServiceAccountClientStatus,
  tierResolved: TierResolvedCondition,
  events: ClientEvent[],
  pass: { backoff: BackoffState; failures: string[] },
  log: Logger,
): Promise<Outcome> {
  // Revoked first, whatever else fails: a suspension that cannot release a ServiceAccount still
  // stops every token (converge.ts takeAway).
  const revoked = await takeAway(op, client, pass.backoff, pass.failures, log, () => writeSecret(op, client, base.tier as string, undefined));
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
