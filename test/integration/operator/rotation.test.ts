/**
 * Issue 3, "Done when" 4: rotation. A Tier with 10m tokens renewed 9m45s before expiry (every ~15s)
 * and a 20s grace period: a new token is written at renewAt; the previous one passes TokenReview
 * until the grace period ends and fails after; at no moment does the Secret hold a failing token.
 *
 * The Secret is sampled every 500ms for the whole run; every sample's token, and every superseded
 * token seen so far, is reviewed (uncached) with the tier's audience.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { createTestNamespace } from '../support/cluster.ts';
import {
  R,
  anchorsOf,
  createClient,
  createTier,
  fingerprint,
  getClient,
  kube,
  review,
  secretNameOf,
  sleep,
  startOperator,
  tokenOf,
  waitForClientReady,
  waitForTierReady,
  type Client,
  type OperatorProcess,
  type Secret,
} from '../support/operator.ts';

const GRACE_MS = 20_000;
const RENEW_EVERY_MS = 15_000; // 10m - 9m45s
const SAMPLE_MS = 500;

let op: OperatorProcess;
let ns: string;
let aud: string;

beforeAll(async () => {
  op = await startOperator({ name: 'rot' });
  ns = await createTestNamespace(`${op.prefix}-team`);
  aud = `${op.prefix}-gateway`;
  const tier = await createTier(op, 'fast', {
    level: 10,
    groups: [`${op.prefix}-users`],
    token: { audiences: [aud], defaultExpiration: '10m', maxExpiration: '10m', renewBefore: '9m45s', gracePeriod: '20s' },
  });
  await waitForTierReady(tier.metadata.name);
});

interface Seen {
  fp: string;
  token: string;
  /** When the sampler first saw it in the Secret. */
  firstSeen: number;
  /** When the next token was first seen in the Secret (the rotation, at the latest). */
  supersededAt?: number;
  /** status.tokens entry of this token (renewAt, issuedAt), when the sampler saw one. */
  renewAt?: number;
  /** Reviews of it after it was superseded: [time, authenticated]. */
  afterRotation: [number, boolean][];
}

describe('4: rotation with a grace period', () => {
  it('writes a new token at renewAt, keeps the old one valid for the grace period then revokes it, and never holds a failing token', { timeout: 150_000 }, async () => {
    await createClient(op, ns, 'rotating', { subject: { user: 'alice@example.com', groups: [`${op.prefix}-users`] } });
    const first = await waitForClientReady(ns, 'rotating', { timeoutMs: 10_000 });
    const t0 = first.client.status?.tokens?.[0];
    expect(t0).toBeDefined();
    const scheduled = Date.parse(t0?.renewAt ?? '') - Date.parse(t0?.issuedAt ?? '');
    expect(Math.abs(scheduled - RENEW_EVERY_MS), `renewAt - issuedAt = ${scheduled}ms`).toBeLessThanOrEqual(2000);

    const seen: Seen[] = [];
    const badSamples: string[] = [];
    const secretName = secretNameOf(first.client);
    const runStart = Date.now();
    const hardStop = runStart + 100_000;
    for (let tick = 0; Date.now() < hardStop; tick++) {
      const now = Date.now();
      const [secret, client] = await Promise.all([kube.tryGet<Secret>(R.secret, ns, secretName), getClient(ns, 'rotating')]);
      const token = tokenOf(secret);
      if (!token) {
        badSamples.push(`+${now - runStart}ms: the Secret ${secret ? 'holds no token' : 'is missing'} (Ready=${readyOf(client)})`);
      } else {
        const fp = fingerprint(token);
        let entry = seen.find((s) => s.fp === fp);
        if (!entry) {
          const previous = seen.at(-1);
          if (previous && previous.supersededAt === undefined) previous.supersededAt = now;
          entry = { fp, token, firstSeen: now, afterRotation: [] };
          seen.push(entry);
        }
        const status = client.status?.tokens?.find((t) => t.id === decodeAnchor(token));
        if (status && entry.renewAt === undefined) entry.renewAt = Date.parse(status.renewAt);
        const r = await review(token, [aud]);
        if (!r.authenticated) badSamples.push(`+${now - runStart}ms: the Secret holds token ${fp}, which fails TokenReview: ${r.error ?? ''}`);
      }
      // Every superseded token: is it still valid?
      await Promise.all(seen.filter((s) => s.supersededAt !== undefined).map(async (s) => {
        const at = Date.now();
        const r = await review(s.token, [aud]);
        s.afterRotation.push([at, r.authenticated]);
      }));
      // Done once the first two superseded tokens have been followed past the end of their grace.
      const followed = seen.filter((s) => s.supersededAt !== undefined && Date.now() > s.supersededAt + GRACE_MS + 6000);
      if (followed.length >= 2) break;
      await sleep(Math.max(0, runStart + (tick + 1) * SAMPLE_MS - Date.now()));
    }

    expect(badSamples, 'samples where the Secret held no token or a failing one').toEqual([]);
    expect(seen.length, 'distinct tokens seen in the Secret').toBeGreaterThanOrEqual(3);

    const report: string[] = [];
    for (const [i, s] of seen.slice(0, 2).entries()) {
      const next = seen[i + 1] as Seen;
      // The next token appears at this one's renewAt (sampling granularity 500ms, plus a reconcile).
      expect(s.renewAt, `renewAt of token #${i + 1} in status`).toBeDefined();
      const lag = next.firstSeen - (s.renewAt as number);
      report.push(`token #${i + 2} first seen ${lag}ms after renewAt of #${i + 1}`);
      expect(lag, `token #${i + 2} vs renewAt of #${i + 1}`).toBeGreaterThanOrEqual(-SAMPLE_MS - 500);
      expect(lag, `token #${i + 2} vs renewAt of #${i + 1}`).toBeLessThanOrEqual(5000);

      const rotatedAt = s.supersededAt as number;
      const duringGrace = s.afterRotation.filter(([at]) => at < rotatedAt + GRACE_MS - 2000);
      const afterGrace = s.afterRotation.filter(([at]) => at > rotatedAt + GRACE_MS + 5000);
      expect(duringGrace.length, `reviews of token #${i + 1} during its grace period`).toBeGreaterThan(10);
      const failedEarly = duringGrace.filter(([, ok]) => !ok).map(([at]) => at - rotatedAt);
      expect(failedEarly, `token #${i + 1} failed during its grace period, at ms after the rotation`).toEqual([]);
      expect(afterGrace.length, `reviews of token #${i + 1} after its grace period`).toBeGreaterThan(0);
      const passedLate = afterGrace.filter(([, ok]) => ok).map(([at]) => at - rotatedAt);
      expect(passedLate, `token #${i + 1} still passed after its grace period, at ms after the rotation`).toEqual([]);
      const firstFail = s.afterRotation.find(([, ok]) => !ok);
      if (firstFail) report.push(`token #${i + 1} revoked ${firstFail[0] - rotatedAt}ms after the rotation`);
      // Once failing, it never passes again.
      const afterFirstFail = s.afterRotation.filter(([at]) => firstFail && at > firstFail[0]);
      expect(afterFirstFail.every(([, ok]) => !ok), `token #${i + 1} passed again after failing`).toBe(true);
    }
    console.error(`[rotation] ${report.join('; ')}`);

    // The revoked tokens' anchors are gone; status lists only valid tokens, newest first.
    const client = await getClient(ns, 'rotating');
    const ids = (client.status?.tokens ?? []).map((t) => t.id);
    const anchors = (await anchorsOf(client.metadata.uid as string)).map((a) => a.metadata.name);
    for (const s of seen.slice(0, 2)) {
      const id = decodeAnchor(s.token);
      expect(ids).not.toContain(id);
      expect(anchors).not.toContain(id);
    }
    const issued = (client.status?.tokens ?? []).map((t) => Date.parse(t.issuedAt));
    expect([...issued].sort((a, b) => b - a)).toEqual(issued);
  });
});

function decodeAnchor(token: string): string | undefined {
  try {
    const payload = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as { 'kubernetes.io'?: { secret?: { name?: string } } };
    return payload['kubernetes.io']?.secret?.name;
  } catch {
    return undefined;
  }
}

function readyOf(client: Client): string {
  return client.status?.conditions?.find((c) => c.type === 'Ready')?.status ?? '?';
}
