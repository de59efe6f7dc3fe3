/**
 * A token superseded just before the operator restarts is still revoked when its grace period ends:
 * the end of a grace period is kept in status, not only in the memory of the process that renewed.
 *
 * The client asks for a renewal (tokenwarden.io/renew-requested-at), the new token arrives, the
 * previous one is kept for the tier's gracePeriod; the operator is stopped at once and started again
 * (a new process, same prefix and selector) a few seconds later. The previous token must pass until
 * the grace period ends and fail within a few seconds after.
 *
 * Token values are never printed: tokens are compared by fingerprint.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { createTestNamespace } from '../support/cluster.ts';
import {
  R,
  anchorsOf,
  createClient,
  createTier,
  fingerprint,
  kube,
  review,
  sleep,
  startOperator,
  waitForClientReady,
  waitForTierReady,
  waitForTokenToFail,
  type OperatorProcess,
} from '../support/operator.ts';

const GRACE_MS = 20_000;
const DOWN_MS = 3_000;

let op: OperatorProcess;
let ns: string;
let aud: string;
let group: string;

beforeAll(async () => {
  op = await startOperator({ name: 'grace' });
  ns = await createTestNamespace(`${op.prefix}-team`);
  aud = `${op.prefix}-gw`;
  group = `${op.prefix}-users`;
  const tier = await createTier(op, 'std', { level: 10, groups: [group], token: { audiences: [aud], defaultExpiration: '1h', gracePeriod: `${GRACE_MS / 1000}s` } });
  await waitForTierReady(tier.metadata.name);
});

describe('a grace period across an operator restart', () => {
  it('the superseded token passes until its grace period ends and fails right after, though the operator that superseded it is gone', { timeout: 120_000 }, async () => {
    await createClient(op, ns, 'keeper', { subject: { user: 'keeper@example.com', groups: [group] } });
    const first = await waitForClientReady(ns, 'keeper');
    const firstFp = fingerprint(first.token);
    const firstId = first.client.status?.tokens?.[0]?.id as string;

    await kube.patch(R.client, ns, 'keeper', { metadata: { annotations: { 'tokenwarden.io/renew-requested-at': '2026-01-01T00:00:00Z' } } });
    const renewed = await waitForClientReady(ns, 'keeper', {
      extra: (ct) => fingerprint(ct.token) !== firstFp && (ct.client.status?.tokens?.length ?? 0) === 2,
      description: 'keeper renewed, the previous token kept for its grace period',
    });
    // Stop at once: the process that superseded the token and knows when its grace ends is gone.
    const exit = await op.stop();
    expect(exit.code, 'the operator stopped cleanly').toBe(0);
    const tokens = renewed.client.status?.tokens ?? [];
    expect(tokens.map((t) => t.id), 'status: the new token first, then the superseded one').toEqual([expect.any(String), firstId]);
    const graceEnds = Date.parse(tokens[0]?.issuedAt as string) + GRACE_MS;
    expect(graceEnds - Date.now(), 'ms of grace left when the operator stopped').toBeGreaterThan(DOWN_MS + 5_000);
    expect((await review(first.token as string, [aud])).authenticated, 'the superseded token, in its grace period, with the operator down').toBe(true);

    await sleep(DOWN_MS);
    const op2 = await startOperator({ namespacePrefix: op.prefix });
    expect(op2.pid).not.toBe(op.pid);
    // Still inside the grace period after the restart: the new process revokes nothing early.
    await sleep(Math.max(0, graceEnds - 3_000 - Date.now()));
    expect((await review(first.token as string, [aud])).authenticated, 'the superseded token 3s before its grace period ends').toBe(true);

    const failedAfterGraceMs = await waitForTokenToFail(first.token as string, [aud], { since: graceEnds, timeoutMs: 10_000, what: 'the superseded token after its grace period' });
    expect(failedAfterGraceMs, 'ms from the end of the grace period to the superseded token failing').toBeGreaterThanOrEqual(-1_000);
    expect(failedAfterGraceMs).toBeLessThanOrEqual(5_000);
    expect((await anchorsOf(renewed.client.metadata.uid as string)).map((a) => a.metadata.name), 'the superseded token\'s anchor is gone').not.toContain(firstId);

    // The new token is untouched, and status forgets the revoked one.
    const now = await waitForClientReady(ns, 'keeper', { extra: (ct) => (ct.client.status?.tokens?.length ?? 0) === 1 });
    expect(fingerprint(now.token), 'the renewed token stays').toBe(fingerprint(renewed.token));
    expect((await review(now.token as string, [aud])).authenticated).toBe(true);
  });
});
