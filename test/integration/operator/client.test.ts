/**
 * Issue 3, "Done when" 2, 3 and 13: a ServiceAccountClient gets a working token of the per-user
 * ServiceAccount of its tier; one ServiceAccount per user and tier; `kubectl get/describe sac`.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { createTestNamespace, kubectl, waitFor } from '../support/cluster.ts';
import {
  ANCHOR_TYPE,
  CLIENT_ANNOTATION,
  CLIENT_NAMESPACE_LABEL,
  CLIENT_UID_LABEL,
  EXPIRES_AT_ANNOTATION,
  MANAGED_BY,
  R,
  REPORTING_CONTROLLER,
  TIER_LABEL,
  TOKEN_ID_ANNOTATION,
  TOKEN_SECRET_TYPE,
  USER_ANNOTATION,
  clientEvents,
  condition,
  createClient,
  createTier,
  decodeJwt,
  expectedServiceAccountName,
  fingerprint,
  kube,
  review,
  serviceAccountUser,
  serviceAccountsOf,
  startOperator,
  tierNamespace,
  waitForClientReady,
  waitForTierReady,
  type OperatorProcess,
  type Secret,
} from '../support/operator.ts';
import { parseTable } from './table.ts';

let op: OperatorProcess;
let ns: string;
let ns2: string;
let tierName: string;
let tierNs: string;
let aud: string;
let group: string;

beforeAll(async () => {
  op = await startOperator({ name: 'client' });
  ns = await createTestNamespace(`${op.prefix}-team-a`);
  ns2 = await createTestNamespace(`${op.prefix}-team-b`);
  aud = `${op.prefix}-gateway`;
  group = `${op.prefix}-users`;
  const tier = await createTier(op, 'std', {
    level: 10,
    groups: [group],
    token: { audiences: [aud], defaultExpiration: '1h', renewBefore: '33%', gracePeriod: '5m' },
  });
  tierName = tier.metadata.name;
  tierNs = tierNamespace(op, tierName);
  await waitForTierReady(tierName);
});

describe('2: a ServiceAccountClient becomes Ready with a working token', () => {
  it('is Ready within seconds; its token authenticates as the per-user ServiceAccount, with the tier audience, expiring when status says', async () => {
    const user = 'alice@example.com';
    const started = Date.now();
    await createClient(op, ns, 'alice-notebook', { subject: { user, groups: [group] } });
    const { client, secret, token } = await waitForClientReady(ns, 'alice-notebook', { timeoutMs: 10_000 });
    expect(Date.now() - started, 'time to Ready (ms)').toBeLessThan(10_000);

    // Resolution and the per-user ServiceAccount.
    expect(client.status?.tier).toBe(tierName);
    expect(client.status?.tierReason).toBe(`Tier/${tierName}`);
    expect(client.status?.secretName).toBe('alice-notebook-token');
    expect(condition(client, 'TierResolved')).toMatchObject({ status: 'True', reason: 'Resolved' });
    const saRef = client.status?.serviceAccount;
    expect(saRef).toMatchObject({ namespace: tierNs, name: expectedServiceAccountName(user) });
    const sa = await kube.get(R.serviceAccount, tierNs, saRef?.name ?? '');
    expect(sa.metadata.annotations?.[USER_ANNOTATION]).toBe(user);
    expect(sa.metadata.labels).toMatchObject({ [MANAGED_BY]: 'tokenwarden', [TIER_LABEL]: tierName });
    expect(saRef?.uid).toBe(sa.metadata.uid);

    // The Secret, as the contract describes it.
    expect(secret?.type).toBe(TOKEN_SECRET_TYPE);
    // Client names may be longer than a label value can be, so the name is an annotation.
    expect(secret?.metadata.labels, 'client Secret labels (contract)').toMatchObject({ [MANAGED_BY]: 'tokenwarden' });
    expect(secret?.metadata.annotations?.[CLIENT_ANNOTATION]).toBe('alice-notebook');
    expect(secret?.metadata.annotations?.['tokenwarden.io/tier']).toBe(tierName);
    expect(secret?.metadata.ownerReferences).toEqual([
      expect.objectContaining({ kind: 'ServiceAccountClient', name: 'alice-notebook', uid: client.metadata.uid, controller: true }),
    ]);

    // As a gateway does it: TokenReview with exactly the tier's audience.
    const gateway = await review(token as string, [aud], { cached: true });
    expect(gateway.error).toBeUndefined();
    expect(gateway.authenticated).toBe(true);
    expect(gateway.username).toBe(serviceAccountUser(tierNs, sa.metadata.name));
    expect(gateway.groups).toEqual(expect.arrayContaining(['system:serviceaccounts', `system:serviceaccounts:${tierNs}`]));
    expect(gateway.audiences).toEqual([aud]);
    // A gateway of another audience refuses it.
    expect((await review(token as string, [`${op.prefix}-other-gateway`])).authenticated).toBe(false);

    // The claims: audience, expiry = status.expiresAt, bound to its anchor = status.tokens[0].id.
    const claims = decodeJwt(token as string);
    expect(claims.aud).toEqual([aud]);
    const expiresAt = Date.parse(client.status?.expiresAt ?? '');
    expect(Math.abs((claims.exp ?? 0) * 1000 - expiresAt), 'JWT exp vs status.expiresAt (ms)').toBeLessThanOrEqual(2000);
    expect(Math.abs((claims.exp ?? 0) - (claims.iat ?? 0) - 3600), 'lifetime vs the tier defaultExpiration 1h (s)').toBeLessThanOrEqual(5);
    const newest = client.status?.tokens?.[0];
    expect(newest).toBeDefined();
    expect(Math.abs(Date.parse(newest?.expiresAt ?? '') - expiresAt)).toBeLessThanOrEqual(1000);
    expect(claims['kubernetes.io']?.secret?.name).toBe(newest?.id);
    expect(secret?.metadata.annotations?.[TOKEN_ID_ANNOTATION]).toBe(newest?.id);
    expect(Math.abs(Date.parse(secret?.metadata.annotations?.[EXPIRES_AT_ANNOTATION] ?? '') - expiresAt)).toBeLessThanOrEqual(1000);
    const anchor = await kube.get<Secret>(R.secret, tierNs, newest?.id ?? '');
    expect(anchor.type).toBe(ANCHOR_TYPE);
    expect(anchor.data ?? {}).toEqual({});
    expect(anchor.metadata.labels).toMatchObject({
      [CLIENT_NAMESPACE_LABEL]: ns,
      [CLIENT_UID_LABEL]: client.metadata.uid,
    });
    expect(anchor.metadata.annotations?.[CLIENT_ANNOTATION]).toBe(`${ns}/alice-notebook`);
    expect(claims['kubernetes.io']?.secret?.uid).toBe(anchor.metadata.uid);
  });

  it('kubectl get sac shows SUBJECT, TIER, READY, REASON, EXPIRES, SECRET; -o wide adds STATUS and SERVICEACCOUNT', async () => {
    await createClient(op, ns, 'bob-cli', { subject: { user: 'bob@example.com', groups: [group] } });
    const { client } = await waitForClientReady(ns, 'bob-cli');

    const plain = await kubectl(['get', 'sac', '-n', ns, 'bob-cli']);
    expect(plain.code, plain.stderr).toBe(0);
    const [row] = parseTable(plain.stdout);
    expect(row).toMatchObject({
      NAME: 'bob-cli',
      SUBJECT: 'bob@example.com',
      TIER: tierName,
      READY: 'True',
      REASON: 'TokenIssued',
      EXPIRES: client.status?.expiresAt,
      SECRET: 'bob-cli-token',
    });
    expect(row).toHaveProperty('AGE');

    const wide = await kubectl(['get', 'serviceaccountclients', '-n', ns, 'bob-cli', '-o', 'wide']);
    expect(wide.code, wide.stderr).toBe(0);
    const [wideRow] = parseTable(wide.stdout);
    expect(wideRow?.SERVICEACCOUNT).toBe(client.status?.serviceAccount?.name);
    expect(wideRow?.STATUS).toBe(condition(client, 'Ready')?.message);

    // The category lists it too.
    const category = await kubectl(['get', 'tokenwarden', '-n', ns, '-o', 'name']);
    expect(category.stdout).toContain('serviceaccountclient.tokenwarden.io/bob-cli');
  });
});

describe('3: one ServiceAccount per user and tier', () => {
  it('two clients of the same user (in two tenants) share one ServiceAccount, with two different tokens', async () => {
    const user = 'carol@example.com';
    await createClient(op, ns, 'carol-a', { subject: { user, groups: [group] } });
    await createClient(op, ns2, 'carol-b', { subject: { user, groups: [group] } });
    const a = await waitForClientReady(ns, 'carol-a');
    const b = await waitForClientReady(ns2, 'carol-b');
    expect(a.client.status?.serviceAccount).toEqual(b.client.status?.serviceAccount);
    expect(await serviceAccountsOf(tierNs, user)).toHaveLength(1);
    expect(fingerprint(a.token), 'two tokens, not one (fingerprints)').not.toBe(fingerprint(b.token));
    expect(fingerprint(a.token)).not.toBe('<none>');
    const [ra, rb] = await Promise.all([review(a.token as string, [aud]), review(b.token as string, [aud])]);
    expect(ra.authenticated && rb.authenticated).toBe(true);
    expect(ra.username).toBe(serviceAccountUser(tierNs, a.client.status?.serviceAccount?.name ?? '?'));
    expect(rb.username).toBe(ra.username);
    expect(a.client.status?.tokens?.[0]?.id).not.toBe(b.client.status?.tokens?.[0]?.id);
  });

  it.each([
    ['Dave.Smith@Example.com', 'dave.smith@example.com'],
    ['e.f@x', 'e-f@x'],
  ])('%s and %s, which sanitize alike, get two ServiceAccounts', async (first, second) => {
    const names = ['first', 'second'].map((n) => `${n}-${first.length}-${second.length}`.toLowerCase());
    await createClient(op, ns, names[0] as string, { subject: { user: first, groups: [group] } });
    await createClient(op, ns, names[1] as string, { subject: { user: second, groups: [group] } });
    const x = await waitForClientReady(ns, names[0] as string);
    const y = await waitForClientReady(ns, names[1] as string);
    const saX = x.client.status?.serviceAccount?.name;
    const saY = y.client.status?.serviceAccount?.name;
    expect(saX).toBeDefined();
    expect(saY).toBeDefined();
    expect(saX).not.toBe(saY);
    for (const [user, ct] of [[first, x], [second, y]] as const) {
      const sas = await serviceAccountsOf(tierNs, user);
      expect(sas.map((sa) => sa.metadata.name), `ServiceAccounts of ${user}`).toEqual([ct.client.status?.serviceAccount?.name]);
      const r = await review(ct.token as string, [aud]);
      expect(r.authenticated).toBe(true);
      expect(r.username).toBe(serviceAccountUser(tierNs, ct.client.status?.serviceAccount?.name ?? '?'));
    }
  });

  it('never takes over a ServiceAccount of that name that belongs to another user (collision)', async () => {
    const user = 'frank@example.com';
    const taken = expectedServiceAccountName(user);
    // A ServiceAccount with the name the operator would pick for frank, belonging to someone else.
    const created = await kube.create(R.serviceAccount, tierNs, {
      metadata: { name: taken, annotations: { [USER_ANNOTATION]: 'not-frank@example.com' } },
    });
    await createClient(op, ns, 'frank-cli', { subject: { user, groups: [group] } });
    const { client, token } = await waitForClientReady(ns, 'frank-cli');
    const saName = client.status?.serviceAccount?.name;
    expect(saName).toBeDefined();
    expect(saName).not.toBe(taken);
    const r = await review(token as string, [aud]);
    expect(r.authenticated).toBe(true);
    expect(r.username).toBe(serviceAccountUser(tierNs, saName ?? '?'));
    // The other user's ServiceAccount is left exactly as it was: not deleted (nor recreated), not
    // relabelled as tokenwarden's, still annotated with its own user.
    const squatter = await kube.tryGet(R.serviceAccount, tierNs, taken);
    expect(squatter, `the other user's ServiceAccount ${tierNs}/${taken}`).not.toBeNull();
    expect(squatter?.metadata.uid, 'the same object, not a recreated one').toBe(created.metadata.uid);
    expect(squatter?.metadata.annotations?.[USER_ANNOTATION]).toBe('not-frank@example.com');
    expect(squatter?.metadata.labels?.[MANAGED_BY], 'not taken over by tokenwarden').toBeUndefined();
  });
});

describe('13: kubectl describe sac', () => {
  it('shows the conditions and the Events of the client history', async () => {
    await createClient(op, ns, 'grace-notebook', { subject: { user: 'grace@example.com', groups: [group] } });
    const first = await waitForClientReady(ns, 'grace-notebook');
    // Some history: a revocation and a new token.
    await kube.patch(R.client, ns, 'grace-notebook', { spec: { revocationEpoch: 1 } });
    const { client } = await waitForClientReady(ns, 'grace-notebook', {
      extra: (ct) => ct.client.status?.revocationEpoch === 1 && ct.token !== first.token,
      description: 'grace-notebook reissued after revocationEpoch 1',
    });
    for (const type of ['Ready', 'TierResolved', 'Suspended']) {
      const c = condition(client, type);
      expect(c, `condition ${type}`).toBeDefined();
      expect(c?.observedGeneration).toBe(client.metadata.generation);
    }
    expect(condition(client, 'Suspended')?.status).toBe('False');

    // Through events.k8s.io/v1: Issued, then Revoked.
    const events = await waitFor(async () => {
      const list = await clientEvents(ns, 'grace-notebook');
      const reasons = new Set(list.map((e) => e.reason));
      return reasons.has('Issued') && reasons.has('Revoked') ? list : undefined;
    }, { timeoutMs: 15_000, description: 'Issued and Revoked events of grace-notebook' });
    for (const e of events) {
      expect(e.reportingController).toBe(REPORTING_CONTROLLER);
      expect(e.regarding).toMatchObject({ kind: 'ServiceAccountClient', name: 'grace-notebook', namespace: ns, uid: client.metadata.uid });
      expect(['Normal', 'Warning']).toContain(e.type);
    }

    const out = await kubectl(['describe', 'sac', '-n', ns, 'grace-notebook']);
    expect(out.code, out.stderr).toBe(0);
    const text = out.stdout;
    expect(text).toMatch(/Conditions:/);
    for (const type of ['Ready', 'TierResolved', 'Suspended']) expect(text).toMatch(new RegExp(`Type:\\s+${type}\\b`));
    expect(text).toMatch(/Reason:\s+Resolved/);
    const eventsSection = text.slice(text.lastIndexOf('Events:'));
    expect(eventsSection, 'describe shows the Events').not.toMatch(/Events:\s+<none>/);
    expect(eventsSection).toMatch(/Normal\s+Issued/);
    expect(eventsSection).toMatch(/Revoked/);
  });
});

describe('a lifetime above the maximum', () => {
  it('is capped to the tier maximum, and the client is told in its Ready message and a Capped Event, once', async () => {
    await createClient(op, ns, 'greedy', { subject: { user: 'greedy@example.com', groups: [group] }, token: { expiration: '48h' } });
    const ct = await waitForClientReady(ns, 'greedy');
    const note = `expiration 48h capped to 24h by tier "${tierName}"`;
    expect(condition(ct.client, 'Ready')?.message).toContain(note);
    const newest = ct.client.status?.tokens?.[0];
    expect(Date.parse(newest?.expiresAt as string) - Date.parse(newest?.issuedAt as string)).toBe(24 * 3600 * 1000);
    const claims = decodeJwt(ct.token as string);
    expect((claims.exp as number) - (claims.iat as number)).toBe(24 * 3600);
    const capped = await waitFor(async () => (await clientEvents(ns, 'greedy')).filter((e) => e.reason === 'Capped'), { timeoutMs: 10_000, description: 'a Capped Event' });
    expect(capped).toHaveLength(1);
    expect(capped[0]?.type).toBe('Warning');
    expect(capped[0]?.note).toBe(note);
    // A fresh token (revocationEpoch) under the same cap: no second Event.
    await kube.patch(R.client, ns, 'greedy', { spec: { revocationEpoch: 1 } });
    await waitForClientReady(ns, 'greedy', { extra: (c) => c.client.status?.revocationEpoch === 1 });
    const events = await clientEvents(ns, 'greedy');
    expect(events.filter((e) => e.reason === 'Capped')).toHaveLength(1);
    expect((events.find((e) => e.reason === 'Capped') as { series?: { count?: number } }).series?.count ?? 1).toBe(1);
  });
});
