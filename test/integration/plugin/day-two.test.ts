/**
 * Issue 10, "Done when" 3, through the BUILT executable with no Node on PATH: renew (a new token,
 * the old one passing until the grace period ends), revoke (the old one failing at once), suspend
 * and resume, revoke-user (every token of the user failing). alice acts through her own context;
 * revoke-user is an admin's. Tokens are compared by fingerprint and checked by TokenReview as a
 * gateway does (support/operator.ts review(): never a cached answer).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { createTestNamespace, kubeconfigPath, waitFor } from '../support/cluster.ts';
import { adminRequest } from '../support/crds.ts';
import {
  R,
  RUN_LABEL,
  createTier,
  expectedServiceAccountName,
  fingerprint,
  getClient,
  kube,
  readClientToken,
  review,
  scopedName,
  serviceAccountUser,
  serviceAccountsOf,
  sleep,
  startOperator,
  tierNamespace,
  waitForTierReady,
  waitForTokenToFail,
  type OperatorProcess,
} from '../support/operator.ts';
import { JWT_PATTERN, buildPlugin, runExecutable, type RunResult } from './support.ts';

const ALICE = 'alice@example.com';
const GRACE_MS = 20_000;

let plugin: string;
let op: OperatorProcess;
let ns: string;
let aud: string;
let free: string;
let premium: string;
let selector: string;

const alice = (...args: string[]): Promise<RunResult> => runExecutable(plugin, ['--kubeconfig', kubeconfigPath(), '--context', ALICE, '-n', ns, ...args]);
const admin = (...args: string[]): Promise<RunResult> => runExecutable(plugin, ['--kubeconfig', kubeconfigPath(), '-n', ns, ...args]);

/** A command that prints no token: exit 0, and nothing token-like in its output. */
function expectOk(res: RunResult): string {
  expect(res.code, res.stdout + res.stderr).toBe(0);
  expect(res.stdout + res.stderr).not.toMatch(JWT_PATTERN);
  return res.stdout;
}

async function request(name: string, ...args: string[]): Promise<string> {
  const res = await alice('request', name, '--label', selector, ...args);
  expect(res.code, res.stderr).toBe(0);
  return res.stdout.trimEnd();
}

const passes = async (token: string) => (await review(token, [aud])).authenticated;

beforeAll(async () => {
  [plugin, op] = await Promise.all([buildPlugin(), startOperator({ name: 'plug2' })]);
  selector = `${RUN_LABEL}=${op.prefix}`;
  aud = `${op.prefix}-gateway`;
  free = scopedName(op, 'free');
  premium = scopedName(op, 'premium');
  await createTier(op, 'free', { level: 10, default: true, token: { audiences: [aud], gracePeriod: `${GRACE_MS / 1000}s` } });
  await createTier(op, 'premium', { level: 20, groups: ['premium-users'], token: { audiences: [aud], gracePeriod: `${GRACE_MS / 1000}s` } });
  ns = await createTestNamespace('plugin-day2');
  await kube.create(R.roleBinding, ns, {
    metadata: { name: 'alice-edit' },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'edit' },
    subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: ALICE }],
  });
  await waitFor(async () => {
    const res = await adminRequest<{ status?: { allowed?: boolean } }>('POST', '/apis/authorization.k8s.io/v1/subjectaccessreviews', {
      apiVersion: 'authorization.k8s.io/v1',
      kind: 'SubjectAccessReview',
      spec: { user: ALICE, groups: ['system:authenticated'], resourceAttributes: { verb: 'create', group: 'tokenwarden.io', resource: 'serviceaccountclients', namespace: ns } },
    });
    return res.body.status?.allowed === true;
  }, { description: 'alice may create clients' });
  await Promise.all([waitForTierReady(free), waitForTierReady(premium)]);
}, 180_000);

describe('renew, revoke, suspend, resume (Done when 3)', () => {
  it('renew: a new token at once; the old one passes until the grace period ends, then fails; no spec written', async () => {
    const old = await request('nb');
    const before = await getClient(ns, 'nb');
    const out = expectOk(await alice('renew', 'nb'));
    expect(out).toContain(`serviceaccountclient ${ns}/nb: renewed`);
    const after = await readClientToken(ns, 'nb');
    // Whether alice may read the Tier depends on other test files (a ClusterRoleBinding of theirs):
    // either the exact end of the grace period, or the bound status alone gives.
    const previousExpiry = after.client.status?.tokens?.[1]?.expiresAt as string;
    const exactEnd = new Date(Date.parse(after.client.status?.tokens?.[0]?.issuedAt as string) + GRACE_MS).toISOString().replace('.000Z', 'Z');
    expect([
      `the previous token stays valid until ${exactEnd} (the tier's grace period, 20s)`,
      `the previous token stays valid until the end of the tier's grace period (at the latest ${previousExpiry})`,
    ].some((s) => out.includes(s)), out).toBe(true);
    expect(fingerprint(after.token)).not.toBe(fingerprint(old));
    const renewedAt = Date.parse(after.client.status?.tokens?.[0]?.issuedAt as string);
    // The same spec: a renewal is an annotation, so GitOps sees no drift in what it owns.
    expect(after.client.metadata.generation).toBe(before.metadata.generation);
    expect(after.client.spec).toEqual(before.spec);
    expect(await passes(after.token as string)).toBe(true);
    // The old token still passes (grace period), and the plugin printed the new one nowhere.
    expect(await passes(old)).toBe(true);
    expect(after.client.status?.tokens?.map((t) => t.id)).toHaveLength(2);
    const token = await alice('token', 'nb');
    expect(fingerprint(token.stdout.trimEnd())).toBe(fingerprint(after.token));
    // Then it fails once the grace period has ended, not long before.
    await sleep(Math.max(0, renewedAt + GRACE_MS - 5_000 - Date.now()));
    expect(await passes(old)).toBe(true);
    const failedAfter = await waitForTokenToFail(old, [aud], { since: renewedAt, timeoutMs: GRACE_MS + 20_000, what: 'the renewed-away token' });
    expect(failedAfter).toBeGreaterThanOrEqual(GRACE_MS - 2_000);
    // One renewal per request: the current token stays.
    await sleep(2_000);
    expect(fingerprint((await readClientToken(ns, 'nb')).token)).toBe(fingerprint(after.token));
    // An admin, who may read the Tier, is told when exactly; and a second renewal right away is a new request.
    const second = expectOk(await admin('renew', 'nb'));
    const latest = await readClientToken(ns, 'nb');
    expect(fingerprint(latest.token)).not.toBe(fingerprint(after.token));
    const graceEnd = new Date(Date.parse(latest.client.status?.tokens?.[0]?.issuedAt as string) + GRACE_MS).toISOString().replace('.000Z', 'Z');
    expect(second).toContain(`the previous token stays valid until ${graceEnd} (the tier's grace period, 20s)`);
  });

  it('revoke: the old token fails at once and a fresh one works', async () => {
    const old = (await readClientToken(ns, 'nb')).token as string;
    expect(await passes(old)).toBe(true);
    const out = expectOk(await alice('revoke', 'nb'));
    expect(out).toContain('every earlier token revoked (revocationEpoch 1)');
    expect(await passes(old)).toBe(false);
    const now = (await readClientToken(ns, 'nb')).token as string;
    expect(fingerprint(now)).not.toBe(fingerprint(old));
    expect(await passes(now)).toBe(true);
  });

  it('suspend: every token fails and token says why; resume: a new token works', async () => {
    const old = (await readClientToken(ns, 'nb')).token as string;
    expect(expectOk(await alice('suspend', 'nb'))).toContain('suspended; its tokens are revoked');
    expect(await passes(old)).toBe(false);
    expect(fingerprint((await readClientToken(ns, 'nb')).token)).toBe('<none>');
    const refused = await alice('token', 'nb');
    expect(refused.code).not.toBe(0);
    expect(refused.stdout).toBe('');
    expect(refused.stderr).toContain('is not Ready: Suspended');
    expect(refused.stderr).toContain(`kubectl tokenwarden resume nb -n ${ns}`);
    expect(expectOk(await alice('resume', 'nb'))).toContain('resumed; a new token was issued');
    const fresh = (await readClientToken(ns, 'nb')).token as string;
    expect(fingerprint(fresh)).not.toBe(fingerprint(old));
    expect(await passes(fresh)).toBe(true);
  });
});

describe('revoke-user (Done when 3)', () => {
  it('every token of the user, in every tier, fails; alice herself may not; without --yes and a terminal nothing is deleted', async () => {
    const premiumToken = (await readClientToken(ns, 'nb')).token as string;
    const freeToken = await request('batch', '--tier', free);
    expect((await review(freeToken, [aud])).username).toBe(serviceAccountUser(tierNamespace(op, free), expectedServiceAccountName(ALICE)));
    expect(await passes(premiumToken)).toBe(true);

    // Refused without confirmation: no terminal here, so it must say --yes, and delete nothing.
    const unconfirmed = await admin('revoke-user', ALICE, '-l', selector);
    expect(unconfirmed.code).not.toBe(0);
    expect(unconfirmed.stderr).toContain('no terminal to confirm on: add --yes');
    expect(await passes(premiumToken)).toBe(true);
    // On a terminal it asks, and "n" deletes nothing (script(1) gives it a pseudo-terminal).
    const command = [plugin, '--kubeconfig', kubeconfigPath(), 'revoke-user', ALICE, '-l', selector].join(' ');
    const declined = await runExecutable('/usr/bin/script', ['-qec', command, '/dev/null'], { input: 'n\n' });
    expect(declined.code).not.toBe(0);
    expect(declined.stdout).toContain(`Delete 2 ServiceAccount(s) of ${ALICE}, revoking every token they hold: `);
    expect(declined.stdout).toContain('error: cancelled; nothing was deleted');
    expect(await passes(premiumToken)).toBe(true);
    expect(await serviceAccountsOf(tierNamespace(op, premium), ALICE)).toHaveLength(1);
    // alice cannot list namespaces: one line saying revoke-user is an admin's.
    const self = await alice('revoke-user', ALICE, '--yes');
    expect(self.code).not.toBe(0);
    expect(self.stderr).toMatch(/^error: you may not list namespaces/);

    const out = expectOk(await admin('revoke-user', ALICE, '-l', selector, '--yes'));
    expect(out).toContain(`serviceaccount ${tierNamespace(op, premium)}/${expectedServiceAccountName(ALICE)} deleted (tier ${premium})`);
    expect(out).toContain(`serviceaccount ${tierNamespace(op, free)}/${expectedServiceAccountName(ALICE)} deleted (tier ${free})`);
    // The ServiceAccounts were deleted, so their tokens fail at once.
    expect(await passes(premiumToken)).toBe(false);
    expect(await passes(freeToken)).toBe(false);
    // The operator recreates them and reissues; the new tokens work.
    const again = await waitFor(async () => {
      const [a, b] = await Promise.all([readClientToken(ns, 'nb'), readClientToken(ns, 'batch')]);
      return a.token && b.token && fingerprint(a.token) !== fingerprint(premiumToken) && fingerprint(b.token) !== fingerprint(freeToken) ? [a.token, b.token] : undefined;
    }, { timeoutMs: 30_000, description: 'new tokens after revoke-user' });
    for (const t of again) expect(await passes(t)).toBe(true);
    expect(await serviceAccountsOf(tierNamespace(op, premium), ALICE)).toHaveLength(1);
    // --tier limits it to one tier.
    const one = expectOk(await admin('revoke-user', ALICE, '--tier', free, '--yes'));
    expect(one).toContain(`(tier ${free})`);
    expect(one).not.toContain(`(tier ${premium})`);
    expect(await passes(again[0] as string)).toBe(true);
    expect(await passes(again[1] as string)).toBe(false);
  });
});
