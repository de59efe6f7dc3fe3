/**
 * Issue 5, bad input: user names of every shape get a ServiceAccount of their own.
 *
 * E-mail addresses, ":" and "/", uppercase, unicode (which sanitizes to nothing), names that look
 * like other identities, the longest user the API allows, and a family of users that all sanitize
 * to the same ServiceAccount name "alice-example-com-<suffix>". For each: a Ready client, a
 * ServiceAccount annotated with exactly that user (and no other user's), and a token that
 * authenticates as that ServiceAccount, distinct from every other user's. Two clients of one user
 * share its ServiceAccount. When every candidate name of a user is taken by other users'
 * ServiceAccounts, the client says so (ServiceAccountCollision) instead of sharing one.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { serviceAccountNameCandidates } from '../../src/policy/service-account-name.ts';
import { createTestNamespace } from './support/cluster.ts';
import {
  MANAGED_BY,
  R,
  TIER_LABEL,
  USER_ANNOTATION,
  condition,
  createClient,
  createTier,
  kube,
  review,
  serviceAccountUser,
  startOperator,
  tierNamespace,
  waitForClient,
  waitForClientReady,
  waitForTierReady,
  type ClientToken,
  type OperatorProcess,
} from './support/operator.ts';

const USERS = [
  // The same letters, separated by what sanitizing turns into "-": one base name for all.
  'alice@example.com',
  'Alice@Example.com',
  'ALICE@EXAMPLE.COM',
  'alice.example.com',
  'alice:example.com',
  'alice/example.com',
  'alice--example--com',
  '-alice-example-com-',
  ' alice@example.com ',
  // Shapes of other identities.
  'system:serviceaccount:default:default',
  'system:admin',
  'oidc:https://issuer.example.com/#1234567890',
  'CN=Alice,OU=ML,O=Example',
  // Unicode: some of it lowercases to ASCII, some sanitizes to nothing at all.
  'ålice@example.com',
  'ÅLICE@EXAMPLE.COM',
  '\u212Alice@example.com', // KELVIN SIGN: lowercases to an ASCII "k"
  '日本語ユーザー',
  '用户',
  '🦄@example.com',
  'اليس@example.com',
  'a\u0301lice@example.com', // combining accent
  // Lengths: the longest user the API takes, and one whose sanitized form fills a DNS label.
  'x'.repeat(1024),
  `${'y'.repeat(80)}@example.com`,
];

let op: OperatorProcess;
let ns: string;
let tierNs: string;
let tierName: string;
const aud = 'user-names-gateway';
const results = new Map<string, ClientToken>();

beforeAll(async () => {
  op = await startOperator({ name: 'users' });
  ns = await createTestNamespace(`${op.prefix}-team`);
  tierName = (await createTier(op, 'all', { level: 1, default: true, token: { audiences: [aud] } })).metadata.name;
  tierNs = tierNamespace(op, tierName);
  await waitForTierReady(tierName);
  await Promise.all(USERS.map((user, i) => createClient(op, ns, `u-${i}`, { subject: { user } })));
  for (const [i, user] of USERS.entries()) results.set(user, await waitForClientReady(ns, `u-${i}`, { timeoutMs: 60_000, description: `the client of user ${JSON.stringify(user)} Ready` }));
}, 180_000);

describe('user names of every shape', () => {
  it('every user has a ServiceAccount of its own, annotated with exactly that user', async () => {
    const accounts = await kube.list(R.serviceAccount, tierNs, { labelSelector: `${MANAGED_BY}=tokenwarden` });
    const byName = new Map(accounts.map((sa) => [sa.metadata.name, sa]));
    const names = new Set<string>();
    for (const [user, ct] of results) {
      const name = ct.client.status?.serviceAccount?.name as string;
      expect(name, `ServiceAccount of ${JSON.stringify(user)}`).toMatch(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/);
      expect(byName.get(name)?.metadata.annotations?.[USER_ANNOTATION], `the user annotation of ${name}`).toBe(user);
      expect(names.has(name), `${name} given to two users`).toBe(false);
      names.add(name);
    }
    // Nothing else: one ServiceAccount per user, none shared, none left over.
    expect(accounts.map((sa) => sa.metadata.annotations?.[USER_ANNOTATION]).sort()).toEqual([...USERS].sort());
  });

  it('every token authenticates as its own user\'s ServiceAccount, and no two users\' tokens as the same one', async () => {
    const usernames = new Set<string>();
    for (const [user, ct] of results) {
      const r = await review(ct.token as string, [aud]);
      expect(r.authenticated, `the token of ${JSON.stringify(user)} (${r.error ?? ''})`).toBe(true);
      expect(r.username).toBe(serviceAccountUser(tierNs, ct.client.status?.serviceAccount?.name as string));
      expect(usernames.has(r.username as string), `${r.username} authenticates two users`).toBe(false);
      usernames.add(r.username as string);
    }
    expect(usernames.size).toBe(USERS.length);
  });

  it('a user name with a control character is refused at admission, naming the field (it would reach terminals raw)', async () => {
    for (const [i, user] of ['alice@example.com\t', 'alice\u001b[31m@example.com', 'alice\u202e@example.com'].entries()) {
      const refused = await createClient(op, ns, `control-${i}`, { subject: { user } }).then(() => undefined, (err: unknown) => err as { status?: number; message?: string });
      expect(refused?.status, JSON.stringify(user)).toBe(422);
      expect(refused?.message).toContain('spec.subject.user');
    }
  });

  it('a second client of the same user shares that user\'s ServiceAccount, not a look-alike\'s', async () => {
    for (const user of ['Alice@Example.com', '用户']) {
      const name = `again-${USERS.indexOf(user)}`;
      await createClient(op, ns, name, { subject: { user } });
      const again = await waitForClientReady(ns, name);
      expect(again.client.status?.serviceAccount).toEqual(results.get(user)?.client.status?.serviceAccount);
      const r = await review(again.token as string, [aud]);
      expect(r.username).toBe(serviceAccountUser(tierNs, results.get(user)?.client.status?.serviceAccount?.name as string));
    }
  });

  it('when every candidate name of a user belongs to other users, the client reports ServiceAccountCollision and shares nothing', async () => {
    const user = 'zed@example.com';
    const candidates = serviceAccountNameCandidates(user);
    // Squatters: one the operator's cache sees (labelled as its own, for another user), the rest not.
    for (const [i, name] of candidates.entries()) {
      await kube.create(R.serviceAccount, tierNs, {
        metadata: {
          name,
          annotations: { [USER_ANNOTATION]: `not-zed-${i}@example.com` },
          ...(i === 0 ? { labels: { [MANAGED_BY]: 'tokenwarden', [TIER_LABEL]: tierName } } : {}),
        },
      });
    }
    await createClient(op, ns, 'zed', { subject: { user } });
    const client = await waitForClient(ns, 'zed', (c) => condition(c, 'Ready')?.reason === 'ServiceAccountCollision' && c.status?.observedGeneration === c.metadata.generation, {
      description: 'zed Ready=False ServiceAccountCollision',
    });
    expect(condition(client, 'Ready')?.status).toBe('False');
    expect(client.status?.serviceAccount).toBeUndefined();
    expect(await kube.tryGet(R.secret, ns, 'zed-token'), 'no Secret, no token').toBeNull();
    for (const [i, name] of candidates.entries()) {
      const squatter = await kube.get(R.serviceAccount, tierNs, name);
      expect(squatter.metadata.annotations?.[USER_ANNOTATION], `${name} left to its owner`).toBe(`not-zed-${i}@example.com`);
    }
  });
});
