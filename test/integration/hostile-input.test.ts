/**
 * Issue 5, bad input: invalid and hostile Tiers, TenantBindings and ServiceAccountClients, generated
 * with fast-check, against the real API server and a running operator.
 *
 * Every generated object is a valid one with ONE hostile change: a wrong type, a huge list (at and
 * one past its limit), a 1 MB string, a unicode user name, a name at its length limit, a duration at
 * or beyond its bounds, a reference to something that does not exist. Each must be either
 *   - refused at admission: 422 Invalid, the message and a cause naming the changed field (or its
 *     parent object, for rules across fields such as renewBefore < expiration); or
 *   - admitted and then reported by the operator: a Ready condition for the object's generation
 *     within seconds (a Ready client's Secret holds a working token);
 * and meanwhile the operator does not hot-loop (no object reconciled more than a few times in a
 * quiet window, few writes, counted per identity by FlowSchema: support/writes.ts), deletes what was
 * made (finalizers run), never exits, and a canary client keeps the same working token throughout.
 *
 * Cyclic edits: a client's tierRef flipped back and forth, two tiers' levels swapped, a binding's
 * tier flipped, suspension toggled, in random order and timing; afterwards every client sits in the
 * tier the final state gives it, with a working token, and nothing is orphaned.
 *
 * Plus one deterministic test per hostile input that broke the operator when this file was written
 * (see the report in issue 5); they fail until the operator is fixed.
 *
 * Seed: TOKENWARDEN_HOSTILE_SEED=<n> replays a run (printed at the start); TOKENWARDEN_HOSTILE_RUNS
 * sets the number of generated batches.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestNamespace, waitFor } from './support/cluster.ts';
import { adminRequest } from './support/crds.ts';
import {
  API_VERSION,
  R,
  anchorsOf,
  condition,
  createBinding,
  createClient,
  createTier,
  fingerprint,
  kube,
  orphanServiceAccounts,
  readClientToken,
  review,
  scopedName,
  serviceAccountUser,
  sleep,
  startOperator,
  tierNamespace,
  waitForClient,
  waitForClientReady,
  waitForTierReady,
  waitForTokenToFail,
  type Client,
  type KObject,
  type OperatorProcess,
  type Secret,
  type Tier,
} from './support/operator.ts';
import { busiest, countedIdentity, delta, reconcilesByKey, type CountedIdentity } from './support/writes.ts';

const SEED = process.env.TOKENWARDEN_HOSTILE_SEED ? Number(process.env.TOKENWARDEN_HOSTILE_SEED) : Math.floor(Math.random() * 2 ** 31);
const RUNS = Number(process.env.TOKENWARDEN_HOSTILE_RUNS ?? 8);
/** How long the operator has to report an admitted object in status. */
const REPORT_MS = 15_000;
/** The window a batch is watched for a hot loop, and what it may do in it. */
const HOT_WINDOW_MS = 3000;
const MAX_RECONCILES_PER_KEY = 8;
const MAX_WRITES_IN_WINDOW = 30;

const MB = 1 << 20;
const BIG_ASCII = 'x'.repeat(MB);
const BIG_UNICODE = '日'.repeat(Math.floor(MB / 3)); // 1 MB of UTF-8

let identity: CountedIdentity;
let op: OperatorProcess;
let ns: string;
let baseTier: string;
let baseGroup: string;
let baseAud: string;
let canary: { token: string; aud: string };
let victimTier: string;
let counter = 0;

beforeAll(async () => {
  console.error(`[hostile] fast-check seed ${SEED}, ${RUNS} runs; replay with TOKENWARDEN_HOSTILE_SEED=${SEED}`);
  identity = await countedIdentity('tw-hostile');
  op = await startOperator({ name: 'hostile', kubeconfig: identity.kubeconfig });
  ns = await createTestNamespace(`${op.prefix}-team`);
  baseGroup = `${op.prefix}-base-users`;
  baseAud = `${op.prefix}-base`;
  const canaryAud = `${op.prefix}-canary`;
  baseTier = (await createTier(op, 'base', { level: 10, groups: [baseGroup], token: { audiences: [baseAud] } })).metadata.name;
  const canaryTier = (await createTier(op, 'canary', { level: 500, groups: [`${op.prefix}-canary-users`], token: { audiences: [canaryAud], defaultExpiration: '2h' } })).metadata.name;
  victimTier = (await createTier(op, 'victim', { level: 1, groups: [`${op.prefix}-victim-users`], token: { audiences: [`${op.prefix}-victim`] } })).metadata.name;
  for (const t of [baseTier, canaryTier, victimTier]) await waitForTierReady(t);
  await createClient(op, ns, 'canary', { subject: { user: 'canary@example.com', groups: [`${op.prefix}-canary-users`] }, tierRef: { name: canaryTier } });
  const ready = await waitForClientReady(ns, 'canary');
  canary = { token: ready.token as string, aud: canaryAud };
}, 120_000);

/** The canary still holds the very token it had at the start, and it works; the operator runs. */
async function expectCanaryAndOperator(when: string): Promise<void> {
  if (!op.running()) throw new Error(`the operator exited ${when}: ${JSON.stringify(await op.exited)}; ${op.logPath}:\n${op.tail(20)}`);
  const now = await readClientToken(ns, 'canary');
  if (fingerprint(now.token) !== fingerprint(canary.token)) throw new Error(`the canary's Secret no longer holds its token ${when} (now ${fingerprint(now.token)}, Ready=${condition(now.client, 'Ready')?.reason})`);
  const r = await review(canary.token, [canary.aud]);
  if (!r.authenticated) throw new Error(`the canary's token fails TokenReview ${when}: ${r.error ?? ''}`);
}

afterAll(async () => {
  if (op) await expectCanaryAndOperator('at the end');
});

// ---------------------------------------------------------------------------------------------
// Generated hostile objects
// ---------------------------------------------------------------------------------------------

type Kind = 'Tier' | 'TenantBinding' | 'ServiceAccountClient';
type JsonType = 'string' | 'integer' | 'boolean' | 'array' | 'object';
type Path = (string | number)[];

/** One change to a valid object; `field` is what a refusal must name (the path, or a parent). */
interface Mutation {
  label: string;
  path: Path;
  value: unknown;
  field?: string;
  /** Replaces metadata.name (the name, or a suffix of it, for cluster-scoped Tiers). */
  name?: string;
}

interface Case {
  kind: Kind;
  mutation: Mutation;
}

const fieldOf = (path: Path): string => `spec${path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${p}`)).join('')}`;
const short = (v: unknown): string => {
  const s = typeof v === 'string' ? JSON.stringify(v.length > 40 ? `${v.slice(0, 20)}...(${v.length} chars)` : v) : JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 80 ? `${s.slice(0, 77)}...` : s;
};

function wrongTypeFor(t: JsonType): fc.Arbitrary<unknown> {
  const options: fc.Arbitrary<unknown>[] = [fc.constant(null)];
  if (t !== 'integer') options.push(fc.integer());
  if (t === 'integer') options.push(fc.double({ min: -1e6, max: 1e6, noInteger: true, noNaN: true }), fc.constant(1e20));
  if (t !== 'boolean') options.push(fc.boolean());
  if (t !== 'string') options.push(fc.string({ maxLength: 8 }));
  if (t !== 'array') options.push(fc.array(fc.integer(), { maxLength: 3 }));
  if (t !== 'object') options.push(fc.dictionary(fc.string({ minLength: 1, maxLength: 5 }), fc.integer(), { maxKeys: 2 }));
  return fc.oneof(...options);
}

const wrongType = (fields: [Path, JsonType][]): fc.Arbitrary<Mutation> =>
  fc.constantFrom(...fields).chain(([path, t]) => wrongTypeFor(t).map((value) => ({ label: `wrong type at ${fieldOf(path)}`, path, value })));

const hugeString = (paths: Path[]): fc.Arbitrary<Mutation> =>
  fc.tuple(fc.constantFrom(...paths), fc.constantFrom(BIG_ASCII, BIG_UNICODE)).map(([path, value]) => ({ label: `1 MB string at ${fieldOf(path)}`, path, value }));

/** Lists at their limit (admitted) and one past it (refused). */
const hugeList = (lists: [Path, number, (i: number) => unknown][]): fc.Arbitrary<Mutation> =>
  fc.tuple(fc.constantFrom(...lists), fc.boolean()).map(([[path, max, item], over]) => ({
    label: `${over ? max + 1 : max} items at ${fieldOf(path)}`,
    path,
    value: Array.from({ length: over ? max + 1 : max }, (_, i) => item(i)),
  }));

const DURATIONS = ['10m', '9m59s', '600s', '599s', '0s', '1ns', '1h', '24h', '25h', '1h30m', '2562047h', '2562048h', '99999999999999h', '-1h', '1d', '1.5h', '', ' 1h', '33%', '0%', '1%', '99%', '100%', '150%'];
const duration = (paths: Path[]): fc.Arbitrary<Mutation> =>
  fc.tuple(fc.constantFrom(...paths), fc.constantFrom(...DURATIONS)).map(([path, value]) => ({
    label: `${fieldOf(path)} = ${JSON.stringify(value)}`,
    path,
    value,
    // Rules across the token policy name a sibling field.
    field: 'spec.token',
  }));

const dnsName = (length: number) => fc.stringMatching(/^[a-z][a-z0-9]*$/).map((s) => `${s}${'n'.repeat(length)}`.slice(0, length));
const unicodeString = fc.oneof(
  fc.string({ unit: 'binary', minLength: 1, maxLength: 40 }),
  fc.string({ unit: 'grapheme', minLength: 1, maxLength: 20 }),
  fc.constantFrom('日本語', '🦄🦄', 'Ω≈ç√', 'ｆｕｌｌｗｉｄｔｈ', 'اليس', '\u202Eevil', 'a\u0000b', '  ', 'İstanbul', '\u212Aelvin'),
);

const clientMutation: fc.Arbitrary<Mutation> = fc.oneof(
  wrongType([
    [['subject'], 'object'], [['subject', 'user'], 'string'], [['subject', 'groups'], 'array'], [['subject', 'groups', 0], 'string'],
    [['tierRef'], 'object'], [['tierRef', 'name'], 'string'], [['token'], 'object'], [['token', 'audiences'], 'array'],
    [['token', 'expiration'], 'string'], [['secretName'], 'string'], [['secretTemplate'], 'object'], [['suspended'], 'boolean'],
    [['revocationEpoch'], 'integer'],
  ]),
  hugeString([['subject', 'user'], ['subject', 'groups', 0], ['tierRef', 'name'], ['secretName'], ['token', 'audiences', 0], ['token', 'expiration']]),
  hugeList([
    [['subject', 'groups'], 256, (i) => `group-${i}`],
    [['token', 'audiences'], 16, (i) => `aud-${i}`],
  ]),
  duration([['token', 'expiration'], ['token', 'renewBefore']]),
  unicodeString.map((user) => ({ label: `unicode user ${short(user)}`, path: ['subject', 'user'], value: user })),
  fc.constantFrom(1024, 1025).map((n) => ({ label: `a user of ${n} characters`, path: ['subject', 'user'], value: 'u'.repeat(n) })),
  fc.constantFrom(63, 64, 253, 254).chain((n) => dnsName(n).map((name) => ({ label: `a name of ${n} characters`, path: [], value: undefined, name }))),
  fc.constantFrom(253, 254).chain((n) => dnsName(n).map((value) => ({ label: `a secretName of ${n} characters`, path: ['secretName'], value }))),
  fc.constantFrom('Bad_Name', '-x', 'a..b', 'UPPER').map((value) => ({ label: `secretName ${value}`, path: ['secretName'], value })),
  fc.constantFrom(-1, 0, 2147483647, 2147483648).map((value) => ({ label: `revocationEpoch ${value}`, path: ['revocationEpoch'], value })),
  dnsName(12).map((name) => ({ label: 'a tierRef to a tier that does not exist', path: ['tierRef'], value: { name: `missing-${name}` } })),
  fc.constant<Mutation>({ label: 'audiences outside the tier\'s', path: ['token', 'audiences'], value: ['not-the-tiers-audience'] }),
  // Not validated by the CRD: whatever the Secret cannot carry must come back as a condition.
  fc.tuple(fc.constantFrom('labels', 'annotations'), fc.oneof(fc.string({ minLength: 1, maxLength: 70 }), fc.constantFrom('example.com/ok', 'tokenwarden.io/token-id', 'app.kubernetes.io/managed-by')), fc.oneof(fc.string({ maxLength: 70 }), fc.constant(BIG_ASCII)))
    .map(([where, key, value]) => ({ label: `secretTemplate ${where} ${short(key)}: ${short(value)}`, path: ['secretTemplate', where, key], value })),
);

const tierMutation: fc.Arbitrary<Mutation> = fc.oneof(
  wrongType([
    [['level'], 'integer'], [['default'], 'boolean'], [['groups'], 'array'], [['groups', 0], 'string'], [['namespace'], 'string'],
    [['token'], 'object'], [['token', 'audiences'], 'array'], [['token', 'defaultExpiration'], 'string'], [['access'], 'array'],
    [['access', 0], 'object'], [['access', 0, 'clusterRole'], 'string'], [['limits'], 'object'], [['limits', 'requestsPerMinute'], 'integer'],
    [['deletionPolicy'], 'string'], [['displayName'], 'string'],
  ]),
  hugeString([['displayName'], ['namespace'], ['groups', 0], ['token', 'audiences', 0], ['access', 0, 'clusterRole']]),
  hugeList([
    [['groups'], 64, (i) => `group-${i}`],
    [['token', 'audiences'], 16, (i) => `aud-${i}`],
    [['access'], 32, (i) => ({ clusterRole: `role-${i}` })],
  ]),
  duration([['token', 'defaultExpiration'], ['token', 'maxExpiration'], ['token', 'renewBefore'], ['token', 'gracePeriod']]),
  fc.constantFrom(-1, 0, 1000, 1001).map((value) => ({ label: `level ${value}`, path: ['level'], value })),
  fc.constantFrom(1_000_000_000, 1_000_000_001).map((value) => ({ label: `requestsPerMinute ${value}`, path: ['limits', 'requestsPerMinute'], value })),
  fc.constantFrom(63, 64).chain((n) => dnsName(n).map((value) => ({ label: `a namespace of ${n} characters`, path: ['namespace'], value }))),
  fc.constantFrom(63, 64, 253, 254).chain((n) => dnsName(n).map((name) => ({ label: `a name of ${n} characters`, path: [], value: undefined, name }))),
  fc.constantFrom('kube-system', 'default', '__TEST_NAMESPACE__').map((value) => ({ label: `the namespace ${value}, which is not the operator's`, path: ['namespace'], value })),
  dnsName(10).map((role) => ({ label: 'access to a ClusterRole that does not exist', path: ['access'], value: [{ clusterRole: `missing-${role}` }] })),
);

const bindingMutation: fc.Arbitrary<Mutation> = fc.oneof(
  wrongType([
    [['tierRef'], 'object'], [['tierRef', 'name'], 'string'], [['subjects'], 'array'], [['subjects', 0], 'object'],
    [['subjects', 0, 'kind'], 'string'], [['subjects', 0, 'name'], 'string'], [['maxClients'], 'integer'], [['token'], 'object'],
    [['token', 'maxExpiration'], 'string'],
  ]),
  hugeString([['tierRef', 'name'], ['subjects', 0, 'name']]),
  hugeList([[['subjects'], 256, (i) => ({ kind: i % 2 ? 'Group' : 'User', name: `${'s'.repeat(1000)}-${i}` })]]),
  duration([['token', 'maxExpiration']]),
  fc.constantFrom(-1, 0, 1_000_000, 1_000_001).map((value) => ({ label: `maxClients ${value}`, path: ['maxClients'], value })),
  unicodeString.map((name) => ({ label: `unicode subject ${short(name)}`, path: ['subjects', 0, 'name'], value: name })),
  dnsName(12).map((name) => ({ label: 'a tierRef to a tier that does not exist', path: ['tierRef'], value: { name: `missing-${name}` } })),
  fc.constantFrom(63, 253, 254).chain((n) => dnsName(n).map((name) => ({ label: `a name of ${n} characters`, path: [], value: undefined, name }))),
);

const caseArb: fc.Arbitrary<Case> = fc.oneof(
  clientMutation.map((mutation) => ({ kind: 'ServiceAccountClient' as const, mutation })),
  tierMutation.map((mutation) => ({ kind: 'Tier' as const, mutation })),
  bindingMutation.map((mutation) => ({ kind: 'TenantBinding' as const, mutation })),
).map((c) => Object.assign(c, { [fc.toStringMethod]: () => `${c.kind}: ${c.mutation.label} (${short(c.mutation.value)})` }));

function baseSpec(kind: Kind): Record<string, unknown> {
  switch (kind) {
    case 'Tier':
      return { level: 5, groups: [`${op.prefix}-hostile-users`], token: { audiences: [`${op.prefix}-hostile`] }, deletionPolicy: 'Delete' };
    case 'TenantBinding':
      return { tierRef: { name: baseTier }, subjects: [{ kind: 'User', name: 'hostile@example.com' }] };
    case 'ServiceAccountClient':
      return { subject: { user: 'hostile@example.com', groups: [baseGroup] } };
  }
}

function setPath(target: Record<string, unknown>, path: Path, value: unknown): void {
  let node: Record<string | number, unknown> = target;
  for (const [i, key] of path.entries()) {
    if (i === path.length - 1) {
      node[key] = value;
      return;
    }
    const next = node[key];
    if (typeof next !== 'object' || next === null) node[key] = typeof path[i + 1] === 'number' ? [] : {};
    node = node[key] as Record<string | number, unknown>;
  }
}

interface Built {
  kind: Kind;
  type: (typeof R)['tier'];
  namespace: string | undefined;
  name: string;
  body: KObject;
  what: string;
}

function build(c: Case): Built {
  const n = ++counter;
  const spec = baseSpec(c.kind);
  const m = c.mutation;
  if (m.path.length > 0) {
    const value = m.value === '__TEST_NAMESPACE__' ? ns : m.value;
    setPath(spec, m.path, value);
  }
  // Cluster-scoped Tiers carry the prefix, so the file's cleanup finds them; a long name keeps its length.
  let name = m.name ?? `h${n}-${c.kind.toLowerCase()}`;
  if (c.kind === 'Tier') name = m.name ? `${op.prefix}-h${n}-${m.name}`.slice(0, m.name.length) : scopedName(op, `h${n}`);
  const namespace = c.kind === 'Tier' ? undefined : ns;
  const type = c.kind === 'Tier' ? R.tier : c.kind === 'TenantBinding' ? R.binding : R.client;
  const body: KObject = { apiVersion: API_VERSION, kind: c.kind, metadata: { name, ...(namespace ? { namespace } : {}), labels: { ...op.labels } }, spec };
  return { kind: c.kind, type, namespace, name, body, what: `${c.kind} ${name.length > 40 ? `${name.slice(0, 37)}...` : name} (${m.label})` };
}

interface StatusBody {
  reason?: string;
  message?: string;
  details?: { causes?: { field?: string; message?: string }[] };
}

/** Refused: 422 Invalid, a cause and the message naming the changed field (or its parent). */
function checkRefused(b: Built, c: Case, code: number, status: StatusBody): void {
  const field = c.mutation.name !== undefined && c.mutation.path.length === 0 ? 'metadata.name' : (c.mutation.field ?? fieldOf(c.mutation.path));
  const message = (status.message ?? '').slice(0, 600);
  if (code !== 422 || status.reason !== 'Invalid') throw new Error(`${b.what}: refused with HTTP ${code} ${status.reason}, not 422 Invalid: ${message}`);
  const fields = (status.details?.causes ?? []).map((x) => x.field ?? '');
  // The field itself or below it; or a parent the server reports instead (not the whole spec).
  const naming = fields.filter((f) => f !== '' && f !== 'spec' && (f.startsWith(field) || field.startsWith(f)));
  if (naming.length === 0) throw new Error(`${b.what}: refused, but no cause names ${field} (causes: ${JSON.stringify(fields)}): ${message}`);
  if (!naming.some((f) => (status.message ?? '').includes(f))) throw new Error(`${b.what}: refused, but the message does not name ${naming.join(', ')}: ${message}`);
}

/** The last "reconcile failed" line about `name`, for the failure message. */
function lastError(name: string): string {
  const lines = op.logs().split('\n').filter((l) => l.includes('reconcile failed') && l.includes(name.slice(0, 60)));
  const last = lines.at(-1);
  if (!last) return 'no reconcile error in the log';
  try {
    return `${lines.length} failed reconciles, the last: ${String((JSON.parse(last) as { err?: string }).err).slice(0, 300)}`;
  } catch {
    return last.slice(0, 300);
  }
}

/** Admitted: the operator reports it in a Ready condition of its generation; a Ready client works. */
async function checkReported(b: Built): Promise<void> {
  let last: KObject | null = null;
  try {
    await waitFor(async () => {
      last = await kube.tryGet(b.type, b.namespace, b.name);
      const obj = last as (KObject & { status?: { observedGeneration?: number; conditions?: { type: string; observedGeneration?: number }[] } }) | null;
      if (!obj) throw new Error('gone');
      const ready = obj.status?.conditions?.find((x) => x.type === 'Ready');
      return obj.status?.observedGeneration === obj.metadata.generation && ready?.observedGeneration === obj.metadata.generation;
    }, { timeoutMs: REPORT_MS, intervalMs: 250, description: `${b.what} reported in status` });
  } catch {
    const status = JSON.stringify((last as { status?: unknown } | null)?.status ?? null).slice(0, 300);
    throw new Error(`${b.what}: admitted, but the operator reported nothing for generation ${(last as KObject | null)?.metadata.generation} within ${REPORT_MS / 1000}s (status ${status}; ${lastError(b.name)})`);
  }
  if (b.kind !== 'ServiceAccountClient') return;
  const ct = await readClientToken(ns, b.name);
  if (condition(ct.client, 'Ready')?.status !== 'True') return;
  if (!ct.token) throw new Error(`${b.what}: Ready, but its Secret holds no token`);
  const r = await review(ct.token, ct.audiences);
  if (!r.authenticated) throw new Error(`${b.what}: Ready, but its token fails TokenReview (${r.error ?? ''})`);
}

/** Nothing hot: no key reconciled more than a few times, few writes, over a short window. */
async function checkQuiet(what: string, windowMs = HOT_WINDOW_MS): Promise<void> {
  const from = op.logs().length;
  const before = await identity.counts();
  await sleep(windowMs);
  const writes = delta(before, await identity.counts()).writes;
  const counts = reconcilesByKey(op.logs(), from, op.prefix);
  const hot = [...counts].filter(([, n]) => n > MAX_RECONCILES_PER_KEY);
  if (hot.length > 0 || writes > MAX_WRITES_IN_WINDOW) {
    throw new Error(`${what}: hot loop: ${writes} writes in ${windowMs}ms; busiest keys ${busiest(counts, 5).join(', ')}`);
  }
}

/** Deletes what a batch made (clients first) and waits until the finalizers have let it go. */
async function removeAll(made: Built[]): Promise<void> {
  const order: Kind[] = ['ServiceAccountClient', 'TenantBinding', 'Tier'];
  for (const kind of order) {
    const of = made.filter((b) => b.kind === kind);
    await Promise.all(of.map((b) => kube.remove(b.type, b.namespace, b.name)));
    for (const b of of) {
      await waitFor(async () => (await kube.tryGet(b.type, b.namespace, b.name)) === null, { timeoutMs: 20_000, intervalMs: 250, description: `${b.what} deleted` })
        .catch(() => {
          throw new Error(`${b.what}: still there 20s after its deletion (${lastError(b.name)})`);
        });
    }
  }
}

const tally = { refused: 0, admitted: 0 };

async function runBatch(cases: Case[]): Promise<void> {
  const made: Built[] = [];
  try {
    const results = await Promise.all(cases.map(async (c) => {
      const b = build(c);
      const path = b.type === R.tier ? '/apis/tokenwarden.io/v1alpha1/tiers' : `/apis/tokenwarden.io/v1alpha1/namespaces/${ns}/${b.type.plural}`;
      const res = await adminRequest<StatusBody>('POST', path, b.body);
      return { b, c, res };
    }));
    for (const { b, c, res } of results) {
      if (res.code === 201) {
        made.push(b);
        tally.admitted++;
      } else {
        checkRefused(b, c, res.code, res.body);
        tally.refused++;
      }
    }
    for (const b of made) await checkReported(b);
    await checkQuiet(`after ${made.map((b) => b.what).join('; ') || 'nothing admitted'}`);
  } finally {
    await removeAll(made);
  }
  await expectCanaryAndOperator(`after ${cases.length} hostile object(s)`);
}

describe('generated hostile objects (fast-check)', () => {
  it('each is refused naming the field, or admitted and reported in status; no hot loop; the canary keeps its token', { timeout: 240_000 }, async () => {
    const started = Date.now();
    try {
      await fc.assert(
        fc.asyncProperty(fc.array(caseArb, { minLength: 3, maxLength: 6 }), (cases) => runBatch(cases)),
        { seed: SEED, numRuns: RUNS, endOnFailure: true },
      );
    } finally {
      console.error(`[hostile] seed ${SEED}: ${tally.refused} refused at admission, ${tally.admitted} admitted and reported, in ${Math.round((Date.now() - started) / 1000)}s`);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Cyclic edits
// ---------------------------------------------------------------------------------------------

type Edit = { kind: 'flip-tierRef' } | { kind: 'unset-tierRef' } | { kind: 'swap-levels' } | { kind: 'flip-binding' } | { kind: 'toggle-suspend' } | { kind: 'epoch' };

describe('cyclic edits (fast-check)', () => {
  it('tierRef flipped, levels swapped, a binding\'s tier flipped, suspension toggled: ends in the right tier, nothing orphaned, no hot loop', { timeout: 180_000 }, async () => {
    const group = `${op.prefix}-cyc-users`;
    const aud = `${op.prefix}-cyc`;
    const a = (await createTier(op, 'cyc-a', { level: 100, groups: [group], token: { audiences: [aud] } })).metadata.name;
    const b = (await createTier(op, 'cyc-b', { level: 200, groups: [group], token: { audiences: [aud] } })).metadata.name;
    await Promise.all([waitForTierReady(a), waitForTierReady(b)]);
    await createBinding(op, ns, 'cyc', { tierRef: { name: a }, subjects: [{ kind: 'User', name: 'cyc-bound@example.com' }] });
    // requester: asks for a tier by name; ranked: takes the higher level; bound: only the binding grants it anything.
    await createClient(op, ns, 'cyc-requester', { subject: { user: 'cyc-req@example.com', groups: [group] }, tierRef: { name: a } });
    await createClient(op, ns, 'cyc-ranked', { subject: { user: 'cyc-rank@example.com', groups: [group] } });
    await createClient(op, ns, 'cyc-bound', { subject: { user: 'cyc-bound@example.com' } });
    const state = { tierRef: a as string | undefined, levels: { [a]: 100, [b]: 200 } as Record<string, number>, binding: a, suspended: false, epoch: 0 };
    for (const name of ['cyc-requester', 'cyc-ranked', 'cyc-bound']) await waitForClientReady(ns, name);

    const edit: fc.Arbitrary<Edit> = fc.constantFrom<Edit>(
      { kind: 'flip-tierRef' }, { kind: 'unset-tierRef' }, { kind: 'swap-levels' }, { kind: 'flip-binding' }, { kind: 'toggle-suspend' }, { kind: 'epoch' },
    );
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(edit, fc.integer({ min: 0, max: 300 })), { minLength: 6, maxLength: 14 }), async (edits) => {
        // The tokens before the edits: a client that ends in another tier, or revoked, or suspended,
        // went through that change at some point, so its token from before must fail.
        const initial = new Map<string, { token: string | undefined; tier: string | undefined; epoch: number; suspended: boolean }>();
        for (const name of ['cyc-requester', 'cyc-ranked', 'cyc-bound']) {
          const ct = await readClientToken(ns, name);
          const ready = condition(ct.client, 'Ready')?.status === 'True';
          initial.set(name, { token: ready ? ct.token : undefined, tier: ct.client.status?.tier, epoch: state.epoch, suspended: state.suspended });
        }
        for (const [e, pause] of edits) {
          switch (e.kind) {
            case 'flip-tierRef':
              state.tierRef = state.tierRef === a ? b : a;
              await kube.patch(R.client, ns, 'cyc-requester', { spec: { tierRef: { name: state.tierRef } } });
              break;
            case 'unset-tierRef':
              state.tierRef = undefined;
              await kube.patch(R.client, ns, 'cyc-requester', { spec: { tierRef: null } });
              break;
            case 'swap-levels':
              state.levels = { [a]: state.levels[b] as number, [b]: state.levels[a] as number };
              await kube.patch(R.tier, undefined, a, { spec: { level: state.levels[a] } });
              await kube.patch(R.tier, undefined, b, { spec: { level: state.levels[b] } });
              break;
            case 'flip-binding':
              state.binding = state.binding === a ? b : a;
              await kube.patch(R.binding, ns, 'cyc', { spec: { tierRef: { name: state.binding } } });
              break;
            case 'toggle-suspend':
              state.suspended = !state.suspended;
              await kube.patch(R.client, ns, 'cyc-ranked', { spec: { suspended: state.suspended } });
              break;
            case 'epoch':
              state.epoch++;
              await kube.patch(R.client, ns, 'cyc-bound', { spec: { revocationEpoch: state.epoch } });
              break;
          }
          await sleep(pause);
        }
        const higher = (state.levels[a] as number) > (state.levels[b] as number) ? a : b;
        const expected: Record<string, string> = { 'cyc-requester': state.tierRef ?? higher, 'cyc-ranked': higher, 'cyc-bound': state.binding };
        for (const [name, tier] of Object.entries(expected)) {
          const suspended = name === 'cyc-ranked' && state.suspended;
          const client = await waitForClient(ns, name, (c) => c.status?.observedGeneration === c.metadata.generation && c.status?.tier === tier
            && condition(c, 'Ready')?.status === (suspended ? 'False' : 'True') && (c.status?.tokens?.length ?? 0) <= 1, {
            timeoutMs: 20_000,
            description: `${name} ${suspended ? 'suspended' : 'Ready'} in ${tier} with one token after ${edits.map(([x]) => x.kind).join(', ')}`,
          });
          const anchors = await anchorsOf(client.metadata.uid as string);
          const named = new Set((client.status?.tokens ?? []).map((t) => t.id));
          expect(anchors.map((x) => x.metadata.name).filter((x) => !named.has(x)), `anchors of ${name} its status does not name`).toEqual([]);
          if (name === 'cyc-bound') expect(client.status?.revocationEpoch, 'status.revocationEpoch of cyc-bound').toBe(state.epoch);
          const before = initial.get(name);
          const revoked = before?.token !== undefined && (before.tier !== tier || (name === 'cyc-bound' && state.epoch > before.epoch) || (name === 'cyc-ranked' && state.suspended));
          if (revoked) await waitForTokenToFail(before.token as string, [aud], { timeoutMs: 10_000, what: `the token ${name} held in ${before.tier} before the edits` });
          if (suspended) continue;
          const ct = await readClientToken(ns, name);
          const r = await review(ct.token as string, [aud]);
          expect(r.username, `the token of ${name}`).toBe(serviceAccountUser(tierNamespace(op, tier), client.status?.serviceAccount?.name as string));
        }
        await waitFor(async () => (await orphanServiceAccounts(op, [a, b])).length === 0, { timeoutMs: 40_000, description: 'no orphan ServiceAccounts in the cyc tiers' });
        await checkQuiet('after the cyclic edits');
      }),
      { seed: SEED, numRuns: 2, endOnFailure: true },
    );
    await expectCanaryAndOperator('after the cyclic edits');
  });
});

// ---------------------------------------------------------------------------------------------
// Hostile inputs that broke the operator (deterministic)
// ---------------------------------------------------------------------------------------------

describe('hostile inputs found by this file', () => {
  it('a client whose Secret the API server refuses (bad template label, 250-character name) is reported in status without a hot loop; a 1 MB template annotation is refused at admission', async () => {
    // The operator caches every client's spec, so a template's size is bounded by the CRD (secret-template-bounds.test.ts).
    const big = await createClient(op, ns, 'big-annotation', { subject: { user: 'refused-big@example.com', groups: [baseGroup] }, secretTemplate: { annotations: { big: BIG_ASCII } } }).then(
      () => 'admitted',
      (err: unknown) => String(err),
    );
    expect(big).toContain('spec.secretTemplate.annotations');
    const cases: [string, Record<string, unknown>][] = [
      ['bad-label', { secretTemplate: { labels: { 'not a label key': 'v' } } }],
      ['l'.repeat(250), {}],
    ];
    const made: Built[] = [];
    try {
      for (const [name, extra] of cases) {
        await createClient(op, ns, name, { subject: { user: `refused-${name.length}@example.com`, groups: [baseGroup] }, ...extra });
        made.push({ kind: 'ServiceAccountClient', type: R.client, namespace: ns, name, body: { metadata: { name } }, what: `client ${name.slice(0, 20)}` });
      }
      for (const b of made) await checkReported(b);
      for (const b of made) expect(condition(await kube.get<Client>(R.client, ns, b.name), 'Ready')?.status, `${b.what} Ready`).toBe('False');
      await checkQuiet('clients whose Secret cannot be written', 5000);
    } finally {
      await removeAll(made);
    }
  });

  it('secretTemplate annotations named like the operator\'s own do not make it mint tokens in a loop', async () => {
    const name = 'template-fight';
    await createClient(op, ns, name, {
      subject: { user: 'template@example.com', groups: [baseGroup] },
      secretTemplate: { annotations: { 'tokenwarden.io/requested-expiration-seconds': '1', 'tokenwarden.io/requested-audiences': 'x' } },
    });
    try {
      await waitForClientReady(ns, name);
      await checkQuiet('a client whose template names the operator\'s annotations', 5000);
      const client = await kube.get<Client>(R.client, ns, name);
      expect(client.status?.tokens?.length, 'tokens of the client').toBe(1);
      expect((await anchorsOf(client.metadata.uid as string)).length, 'anchors of the client').toBe(1);
    } finally {
      await kube.remove(R.client, ns, name);
    }
  });

  it('a client naming another client\'s Secret does not take it over', async () => {
    const name = 'secret-thief';
    await createClient(op, ns, name, { subject: { user: 'thief@example.com', groups: [baseGroup] }, secretName: 'canary-token' });
    try {
      const thief = await waitForClient(ns, name, (c) => c.status?.observedGeneration === c.metadata.generation && condition(c, 'Ready') !== undefined, { timeoutMs: REPORT_MS });
      await sleep(2000);
      const secret = await kube.get<Secret>(R.secret, ns, 'canary-token');
      const canaryClient = await kube.get<Client>(R.client, ns, 'canary');
      expect(secret.metadata.ownerReferences?.map((o) => o.name), 'owners of canary-token').toEqual(['canary']);
      expect(secret.metadata.ownerReferences?.[0]?.uid).toBe(canaryClient.metadata.uid);
      expect(condition(thief, 'Ready')?.status, `the thief (${condition(thief, 'Ready')?.reason}: ${condition(thief, 'Ready')?.message})`).toBe('False');
      await expectCanaryAndOperator('after a client named the canary\'s Secret');
    } finally {
      await kube.remove(R.client, ns, name);
    }
  });

  it('a Tier whose namespace or access binding cannot be made is reported in status', async () => {
    const made: Built[] = [];
    try {
      const specs: [string, Record<string, unknown>][] = [
        [`${op.prefix}-${'long'.repeat(20)}`.slice(0, 63), { level: 1 }],
        [`${op.prefix}-dotted.name`, { level: 1 }],
        [scopedName(op, 'no-such-ns'), { level: 1, access: [{ clusterRole: 'view', namespaces: ['tokenwarden-no-such-namespace'] }] }],
      ];
      for (const [name, spec] of specs) {
        await kube.create<Tier>(R.tier, undefined, { apiVersion: API_VERSION, kind: 'Tier', metadata: { name, labels: { ...op.labels } }, spec: { deletionPolicy: 'Delete', ...spec } });
        made.push({ kind: 'Tier', type: R.tier, namespace: undefined, name, body: { metadata: { name } }, what: `Tier ${name}` });
      }
      for (const b of made) await checkReported(b);
    } finally {
      await removeAll(made);
    }
  });

  it('a Tier claiming another tier\'s namespace is refused that namespace, and deleting it leaves the namespace alone', async () => {
    await createClient(op, ns, 'victim', { subject: { user: 'victim@example.com', groups: [`${op.prefix}-victim-users`] } });
    const before = await waitForClientReady(ns, 'victim');
    const victimNs = tierNamespace(op, victimTier);
    const claimer = (await createTier(op, 'claimer', { level: 1, namespace: victimNs, deletionPolicy: 'Delete' })).metadata.name;
    await waitFor(async () => condition(await kube.get<Tier>(R.tier, undefined, claimer), 'Ready')?.reason === 'NamespaceConflict', { description: `${claimer} Ready=False NamespaceConflict` });
    await kube.remove(R.tier, undefined, claimer);
    await waitFor(async () => (await kube.tryGet(R.tier, undefined, claimer)) === null, { description: `${claimer} deleted` });
    await sleep(2000);
    const namespace = await kube.tryGet(R.namespace, undefined, victimNs);
    expect(namespace?.metadata.deletionTimestamp, `namespace ${victimNs} of tier ${victimTier}`).toBeUndefined();
    expect(namespace).not.toBeNull();
    const r = await review(before.token as string, [`${op.prefix}-victim`]);
    expect(r.authenticated, 'the victim tier\'s client token still works').toBe(true);
  });
});
