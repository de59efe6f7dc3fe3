/**
 * Suspension: `suspended: true` revokes every token of the client and empties its Secret;
 * `suspended: false` issues anew, and the client is told it Resumed (policy/issuance-events.ts).
 */
import type { ServiceAccountClientStatus } from '../../api/index.ts';
import { getCondition } from '../../controller/conditions.ts';
import type { Logger } from '../../controller/logger.ts';
import type { OperatorContext } from '../context.ts';
import { revokeAll } from './revocation.ts';
import { defaultSecretName } from './secret.ts';
import { writeSecret } from './secret-write.ts';
import { releaseServiceAccount } from './service-account-release.ts';
import { clearedTokens, conditionsFor, type Client, type ClientEvent, type Outcome, type TierResolvedCondition } from './status.ts';

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
