/**
 * A Secret of someone else's under a client's secretName never makes the operator mint in a loop.
 * The cache holds only Secrets labelled as tokenwarden's, so the first look mints before the
 * create finds the name taken (409); from then on every look is counted in the issuance backoff
 * (5 s, 10 s, ...), the client's own anchor events never bring it forward, and a look reads the name
 * before minting. mallory, with `edit` in her namespace, tries it on her own client three ways (an
 * Opaque Secret, a token-type Secret without tokenwarden's label, and a co-editor's swap of alice's
 * Secret for an Opaque one in a namespace both edit), with the operator as its fenced ServiceAccount
 * and its TokenRequests counted.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestNamespace, waitFor } from '../support/cluster.ts';
import {
  API_VERSION,
  R,
  condition,
  createTier,
  getClient,
  review,
  sleep,
  startOperator,
  uniquePrefix,
  waitForClient,
  waitForClientReady,
  waitForTierReady,
  type Client,
  type OperatorProcess,
} from '../support/operator.ts';
import { asUser, grantEdit } from '../support/users.ts';
import { countedTokenRequests } from './support/token-request-refusal.ts';

const ALICE = 'alice@example.com';
const MALLORY = 'mallory@example.com';
/** A hot loop sent hundreds in this window; the backoff allows the first look and those at 5 and 15 s. */
const WINDOW_MS = 20_000;
const MAX_IN_WINDOW = 4;

const prefix = uniquePrefix('sconf');
let op: OperatorProcess;
let tokenRequests: () => Promise<number>;
let malloryNs: string;
let sharedNs: string;
let aud: string;

const clientBody = (namespace: string, name: string, spec: Record<string, unknown>) => ({
  apiVersion: API_VERSION,
  kind: 'ServiceAccountClient',
  metadata: { name, namespace, labels: { ...op.labels } },
  spec,
});

beforeAll(async () => {
  const counter = await countedTokenRequests(prefix);
  tokenRequests = () => counter.tokenRequests();
  op = await startOperator({ namespacePrefix: prefix, kubeconfig: counter.identity.kubeconfig });
  malloryNs = await createTestNamespace(`${prefix}-mallory`);
  sharedNs = await createTestNamespace(`${prefix}-shared`);
  aud = `${prefix}-gateway`;
  await Promise.all([grantEdit(malloryNs, MALLORY), grantEdit(sharedNs, MALLORY), grantEdit(sharedNs, ALICE)]);
  const tier = await createTier(op, 'all', { level: 1, default: true, token: { audiences: [aud] } });
  await waitForTierReady(tier.metadata.name);
}, 120_000);

afterAll(async () => {
  await op?.stop();
});

/** TokenRequests the operator sends in WINDOW_MS from now. */
async function tokenRequestsInWindow(): Promise<number> {
  const before = await tokenRequests();
  await sleep(WINDOW_MS);
  return (await tokenRequests()) - before;
}

async function waitForConflict(namespace: string, name: string): Promise<Client> {
  return waitForClient(namespace, name, (c) => condition(c, 'Ready')?.reason === 'SecretConflict', { timeoutMs: 20_000, description: `${namespace}/${name} SecretConflict` });
}

describe('a Secret of someone else\'s under a client\'s secretName', () => {
  for (const [what, secret] of [
    ['an Opaque Secret', { type: 'Opaque', data: { a: 'Yg==' } }],
    ['a token-type Secret without tokenwarden\'s label or owner', { type: 'tokenwarden.io/token', data: { token: 'Yg==' } }],
  ] as const) {
    it(`${what}: SecretConflict, and a few TokenRequests in ${WINDOW_MS / 1000} s, not a loop; gone, the client gets its token`, async () => {
      const mallory = asUser(MALLORY);
      const name = `taken-${secret.type === 'Opaque' ? 'opaque' : 'token'}`;
      expect((await mallory.create(R.secret, malloryNs, { apiVersion: 'v1', kind: 'Secret', metadata: { name: `${name}-secret` }, ...secret })).code).toBe(201);
      expect((await mallory.create(R.client, malloryNs, clientBody(malloryNs, name, { subject: { user: MALLORY }, secretName: `${name}-secret` }))).code).toBe(201);
      const conflicted = await waitForConflict(malloryNs, name);
      expect(condition(conflicted, 'Ready')?.message).toContain(`${name}-secret`);
      const sent = await tokenRequestsInWindow();
      expect(sent, `TokenRequests in ${WINDOW_MS} ms while the name is taken`).toBeLessThanOrEqual(MAX_IN_WINDOW);
      const held = await getClient(malloryNs, name);
      expect(condition(held, 'Ready')?.reason).toBe('SecretConflict');
      expect((held.status as { failedAttempts?: number } | undefined)?.failedAttempts ?? 0).toBeGreaterThanOrEqual(2);

      // Her Secret gone, the next look (within the backoff's 20 s step, at most) issues.
      expect((await mallory.remove(R.secret, malloryNs, `${name}-secret`)).code).toBe(200);
      await waitForClientReady(malloryNs, name, { timeoutMs: 45_000 });
    });
  }

  it('a co-editor swapping alice\'s Secret for an Opaque one: alice\'s client holds at SecretConflict without a loop', async () => {
    const alice = asUser(ALICE);
    expect((await alice.create(R.client, sharedNs, clientBody(sharedNs, 'svc', { subject: { user: ALICE } }))).code).toBe(201);
    const ready = await waitForClientReady(sharedNs, 'svc');
    expect((await review(ready.token as string, [aud])).authenticated).toBe(true);
    const mallory = asUser(MALLORY);
    // The operator repairs a deleted Secret within a round trip: she retries the swap until hers stands.
    await waitFor(async () => {
      await mallory.remove(R.secret, sharedNs, 'svc-token');
      const made = await mallory.create(R.secret, sharedNs, { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'svc-token' }, type: 'Opaque', data: { a: 'Yg==' } });
      return made.code === 201 ? true : undefined;
    }, { timeoutMs: 20_000, description: 'mallory\'s Opaque Secret under alice\'s secretName' });
    await waitForConflict(sharedNs, 'svc');
    const sent = await tokenRequestsInWindow();
    expect(sent, `TokenRequests in ${WINDOW_MS} ms after the swap`).toBeLessThanOrEqual(MAX_IN_WINDOW);
  });
});
