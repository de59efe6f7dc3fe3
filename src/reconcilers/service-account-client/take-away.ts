/**
 * Taking a client's tokens away (suspension, no tier, a refused token policy): revoked first and
 * never held back; then the Secret and the ServiceAccounts, which wait for the backoff after a
 * failed write (converge.ts).
 */
import type { Logger } from '../../controller/logger.ts';
import type { OperatorContext } from '../context.ts';
import type { BackoffState } from './issuance.ts';
import { revokeAll } from './revocation.ts';
import { releaseServiceAccount } from './service-account-release.ts';
import type { Client } from './status.ts';
import { tolerate } from './write-failure.ts';

/**
 * What a pass that takes tokens away does besides revoking them, when the backoff allows: `secret`
 * (empty or delete the Secret), then the release of every ServiceAccount the client used. Revoking
 * comes first and is never held back; a failed write is collected, not thrown.
 */
export async function takeAway(op: OperatorContext, client: Client, backoff: BackoffState, failures: string[], log: Logger, secret: () => Promise<void>): Promise<number> {
  const revoked = await tolerate(failures, () => revokeAll(op, client, log));
  if (backoff.held) return revoked ?? 0;
  await tolerate(failures, secret);
  await tolerate(failures, () => releaseServiceAccount(op, client, undefined));
  return revoked ?? 0;
}
