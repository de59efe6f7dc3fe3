/**
 * The failure phase (issue 9, item 5): TokenRequest refused for a while (--refusal, 1 minute by
 * default), the real way — a ValidatingAdmissionPolicy and its binding refusing `serviceaccounts/token`
 * CREATE in the tier namespaces, as test/integration/operator/issuance-failure.test.ts does — while
 * some clients need a token: N/20 new clients are created and N/20 Ready clients are asked to renew
 * (`tokenwarden.io/renew-requested-at`, as `kubectl tokenwarden renew` does). Then the policy is
 * removed.
 *
 * Measured:
 * - how soon each affected client says so: Ready=False with reason IssuanceFailed (new) or
 *   RenewalFailed (renewal), from its create or annotation;
 * - the operator's requests while refused (APF counts of its identity: TokenRequests, status writes,
 *   Events), per affected client, and its failedAttempts;
 * - how soon every affected client is Ready again after the policy is gone (a renewal: with a new
 *   token), and how much of that is the backoff (src/policy/issuance-backoff.ts: 5 s doubling, capped
 *   at 1 h): each client's next attempt is due at lastFailureTime + backoff(failedAttempts), so the
 *   lag past max(allowed, due) is what the operator itself adds;
 * - clients that were not affected but lost Ready meanwhile (should be none).
 * The new clients are deleted at the end, so later phases see N clients again.
 */
import { randomBytes } from 'node:crypto';
import { ApiError, Kube, R, Tracker, pool, retrying, sleep, type KObject, type ResourceType } from '../kube.ts';
import { issuanceBackoffMs } from '../../../src/policy/issuance-backoff.ts';
import { TENANTS, TIER_LABEL, type ClientDef } from '../workload.ts';

export const RENEW_REQUESTED_AT_ANNOTATION = 'tokenwarden.io/renew-requested-at';
const VAP: ResourceType = { group: 'admissionregistration.k8s.io', version: 'v1', plural: 'validatingadmissionpolicies', namespaced: false };
const VAP_BINDING: ResourceType = { group: 'admissionregistration.k8s.io', version: 'v1', plural: 'validatingadmissionpolicybindings', namespaced: false };
const PROBE_NAMESPACE = 'bench-refusal-probe';
const PROBE = 'probe';

export interface Lat {
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

export interface FailureResult {
  refusalMs: number;
  /** From the policy's create to the first refused probe (the policy compiles asynchronously). */
  policyInEffectMs: number;
  /** From the policy's removal to the first allowed probe. */
  policyGoneMs: number;
  newClients: number;
  renewals: number;
  /** Affected clients that showed IssuanceFailed/RenewalFailed while refused, of each kind. */
  saidSo: { issuanceFailed: number; renewalFailed: number };
  /** Affected clients the operator reached only after the refusal (Ready without a failure first). */
  notReachedWhileRefused: number;
  /** Affected clients Ready with a new token while TokenRequest was refused (must be 0). */
  readyWhileRefused: number;
  /** From a client's create/annotation to its Ready=False with the failure reason. */
  saidSoMs: Lat;
  /** Every affected client said so, after the refusal began. */
  allSaidSoMs: number | null;
  /** Operator requests while refused (APF), "verb resource" -> count. */
  requestsWhileRefused: Record<string, number>;
  tokenRequestsWhileRefused: number;
  tokenRequestsPerAffectedClient: number;
  writesWhileRefused: number;
  /** status.failedAttempts of the affected clients at the end of the refusal. */
  failedAttempts: { max: number; mean: number };
  /** From the policy's removal (first allowed probe) to each client that said so Ready again. */
  recoveryMs: Lat;
  /** Every affected client Ready (a renewal: with a new token), from the policy's removal. */
  allRecoveredMs: number | null;
  /** Affected clients not Ready when the phase gave up waiting. */
  notRecovered: number;
  /** Recovery minus what the backoff imposes: readyAgain - max(allowed, lastFailureTime + backoff(failedAttempts)). */
  lagPastBackoffMs: Lat;
  /** Each client's next attempt as its status set it, from the policy's removal. */
  backoffDueAfterAllowedMs: Lat;
  /** Operator requests from the removal until recovered and quiet. */
  requestsRecovering: Record<string, number>;
  /** Clients not asked for anything that went Ready=False during the phase. */
  bystandersNotReady: number;
}

export interface FailureContext {
  n: number;
  admin: Kube;
  /** A marker of the operator's requests (APF) now; `between` the requests since. */
  mark: () => Promise<unknown>;
  between: (m: unknown) => Promise<{ requests: { operator: Record<string, number>; operatorWrites: number } }>;
  /** Waits for the operator to be quiet; resolves when it is. */
  quiet: () => Promise<void>;
  runLabel: string;
  runId: string;
  labels: Record<string, string>;
  defs: readonly ClientDef[];
  /** Creates (or applies) one client, as the create phase did. */
  apply: (def: ClientDef, namespace: string) => Promise<KObject>;
  namespaceOf: (def: ClientDef) => string;
  refusalMs: number;
  concurrency: number;
  log: (line: string) => void;
}

interface ClientState {
  ready: boolean;
  reason: string | undefined;
  tokenId: string | undefined;
  failedAttempts: number;
  lastFailureTime: string | undefined;
}

function stateOf(obj: KObject): ClientState {
  const status = (obj.status ?? {}) as { conditions?: { type: string; status: string; reason?: string }[]; tokens?: { id: string }[]; failedAttempts?: number; lastFailureTime?: string };
  const ready = status.conditions?.find((c) => c.type === 'Ready');
  return { ready: ready?.status === 'True', reason: ready?.reason, tokenId: status.tokens?.[0]?.id, failedAttempts: status.failedAttempts ?? 0, lastFailureTime: status.lastFailureTime };
}

function latencies(values: number[]): Lat {
  if (values.length === 0) return { p50: NaN, p95: NaN, p99: NaN, max: NaN };
  const sorted = [...values].sort((a, b) => a - b);
  const at = (p: number) => Math.round(sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] as number);
  return { p50: at(50), p95: at(95), p99: at(99), max: at(100) };
}

/** Whether a TokenRequest in the probe namespace is refused by `message` now. */
async function probeRefused(admin: Kube, message: string): Promise<boolean> {
  try {
    await admin.post(`/api/v1/namespaces/${PROBE_NAMESPACE}/serviceaccounts/${PROBE}/token`, { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { expirationSeconds: 600 } });
    return false;
  } catch (err) {
    if (err instanceof ApiError && String(err.message).includes(message)) return true;
    throw err;
  }
}

export async function runFailure(ctx: FailureContext): Promise<FailureResult> {
  const { admin, n, log } = ctx;
  const k = Math.max(1, Math.floor(n / 20));
  const message = `bench ${ctx.runId}: TokenRequest refused`;
  const policyName = `bench-refuse-token-requests-${randomBytes(2).toString('hex')}`;

  // What is refused: the tier namespaces (where the operator mints) and the probe's namespace.
  await retrying(() => admin.create(R.namespace, undefined, { metadata: { name: PROBE_NAMESPACE } })).catch((err: unknown) => {
    if (!(err instanceof ApiError && err.status === 409)) throw err;
  });
  await retrying(() => admin.create(R.serviceAccount, PROBE_NAMESPACE, { metadata: { name: PROBE } })).catch((err: unknown) => {
    if (!(err instanceof ApiError && err.status === 409)) throw err;
  });
  const tierNamespaces = (await admin.list(R.namespace, undefined, { labelSelector: TIER_LABEL })).items.map((ns) => ns.metadata.name);
  if (tierNamespaces.length === 0) throw new Error('no tier namespace found');

  // The affected: N/20 Ready clients asked to renew, N/20 new ones (new users: new ServiceAccounts too).
  const existing = new Map((await admin.list(R.client, undefined, { labelSelector: `${ctx.runLabel}=${ctx.runId}` })).items.map((c) => [`${c.metadata.namespace}/${c.metadata.name}`, c]));
  const renewTargets = ctx.defs
    .filter((d) => !d.mover)
    .map((d) => `${ctx.namespaceOf(d)}/${d.name}`)
    .filter((key) => {
      const c = existing.get(key);
      return c !== undefined && stateOf(c).ready;
    })
    .filter((_, i) => i % 10 === 3)
    .slice(0, k);
  const newDefs: ClientDef[] = Array.from({ length: k }, (_, i) => ({
    index: n + i,
    name: `f-${i}`,
    tenant: i % TENANTS,
    user: `fail-user-${i}@bench.example.com`,
    userIndex: n + i,
    tier: { name: 'free', level: 10, groups: [], default: true },
    groups: ['bench-users'],
    mover: false,
    team: undefined,
  }));
  const newKeys = newDefs.map((d) => `${ctx.namespaceOf(d)}/${d.name}`);
  const affected = new Set([...renewTargets, ...newKeys]);
  const tokenBefore = new Map(renewTargets.map((key) => [key, stateOf(existing.get(key) as KObject).tokenId]));

  const sentAt = new Map<string, number>();
  const saidSoAt = new Map<string, { at: number; reason: string }>();
  const recoveredAt = new Map<string, number>();
  const lastFailure = new Map<string, ClientState>();
  const bystanders = new Set<string>();
  let watching = false;
  const tracker = new Tracker<KObject>(admin, R.client, { labelSelector: `${ctx.runLabel}=${ctx.runId}` }, (type, obj, at) => {
    if (!watching || type === 'DELETED') return;
    const key = `${obj.metadata.namespace}/${obj.metadata.name}`;
    const s = stateOf(obj);
    if (!affected.has(key)) {
      const before = existing.get(key);
      if (!s.ready && before !== undefined && stateOf(before).ready) bystanders.add(key);
      return;
    }
    if (!sentAt.has(key)) return;
    if (!s.ready && (s.reason === 'IssuanceFailed' || s.reason === 'RenewalFailed')) {
      if (!saidSoAt.has(key)) saidSoAt.set(key, { at, reason: s.reason });
      lastFailure.set(key, s);
      recoveredAt.delete(key);
      return;
    }
    if (s.ready && !recoveredAt.has(key)) {
      const before = tokenBefore.get(key);
      if (before === undefined || s.tokenId !== before) recoveredAt.set(key, at);
    }
  });
  await tracker.start();
  watching = true;

  try {
    // ------------------------------------------------------------- refuse
    const tPolicy = Date.now();
    await admin.create(VAP, undefined, {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'ValidatingAdmissionPolicy',
      metadata: { name: policyName },
      spec: {
        failurePolicy: 'Fail',
        matchConstraints: { resourceRules: [{ apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['serviceaccounts/token'] }] },
        validations: [{ expression: 'false', message, reason: 'Forbidden' }],
      },
    });
    await admin.create(VAP_BINDING, undefined, {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'ValidatingAdmissionPolicyBinding',
      metadata: { name: policyName },
      spec: {
        policyName,
        validationActions: ['Deny'],
        matchResources: { namespaceSelector: { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'In', values: [...tierNamespaces, PROBE_NAMESPACE] }] } },
      },
    });
    const inEffectDeadline = Date.now() + 60_000;
    while (!(await probeRefused(admin, message))) {
      if (Date.now() > inEffectDeadline) throw new Error('the refusing policy was not in effect after 60 s');
      await sleep(100);
    }
    const tRefused = Date.now();
    log(`failure: TokenRequest refused in ${tierNamespaces.length} tier namespaces (in effect after ${tRefused - tPolicy} ms); ${k} new clients, ${renewTargets.length} renewals`);
    const m0 = await ctx.mark();

    await Promise.all([
      pool(newDefs, ctx.concurrency, async (def) => {
        const ns = ctx.namespaceOf(def);
        sentAt.set(`${ns}/${def.name}`, Date.now());
        await ctx.apply(def, ns);
      }),
      pool(renewTargets, ctx.concurrency, async (key) => {
        const [ns, name] = key.split('/') as [string, string];
        const value = new Date().toISOString();
        sentAt.set(key, Date.now());
        await retrying(() => admin.patch(R.client, ns, name, { metadata: { annotations: { [RENEW_REQUESTED_AT_ANNOTATION]: value } } }));
      }),
    ]);

    await sleep(Math.max(0, tRefused + ctx.refusalMs - Date.now()));
    const refused = await ctx.between(m0);
    const attempts = [...affected].map((key) => tracker.objects.get(key)).filter((o): o is KObject => o !== undefined).map((o) => stateOf(o).failedAttempts);

    // ------------------------------------------------------------- allow again
    const tRemove = Date.now();
    await admin.remove(VAP_BINDING, undefined, policyName);
    await admin.remove(VAP, undefined, policyName);
    const goneDeadline = Date.now() + 60_000;
    while (await probeRefused(admin, message)) {
      if (Date.now() > goneDeadline) throw new Error('the refusing policy still in effect 60 s after its removal');
      await sleep(100);
    }
    const tAllowed = Date.now();
    const m1 = await ctx.mark();
    log(`failure: TokenRequest allowed again (${tAllowed - tRemove} ms after the removal); ${saidSoAt.size} of ${affected.size} said so`);

    // Every affected client Ready again, or the longest backoff allows plus a margin.
    const lastDue = () => Math.max(0, ...[...lastFailure.values()].map((s) => Date.parse(s.lastFailureTime ?? '') + issuanceBackoffMs(s.failedAttempts)).filter(Number.isFinite));
    const recoverDeadline = () => Math.max(tAllowed + 120_000, lastDue() + 60_000);
    while (recoveredAt.size < affected.size && Date.now() < recoverDeadline()) await sleep(100);
    await ctx.quiet();
    const recovering = await ctx.between(m1);

    const saidSoMs = [...saidSoAt].map(([key, s]) => s.at - (sentAt.get(key) as number));
    const recovery = [...recoveredAt].filter(([key]) => saidSoAt.has(key)).map(([, at]) => at - tAllowed);
    const due = [...lastFailure].map(([, s]) => Date.parse(s.lastFailureTime ?? '') + issuanceBackoffMs(s.failedAttempts));
    const lag = [...recoveredAt].filter(([key]) => saidSoAt.has(key)).map(([key, at]) => {
      const s = lastFailure.get(key);
      const d = s ? Date.parse(s.lastFailureTime ?? '') + issuanceBackoffMs(s.failedAttempts) : tAllowed;
      return at - Math.max(tAllowed, d);
    });
    const tokenRequests = refused.requests.operator['create serviceaccounts/token'] ?? 0;
    const result: FailureResult = {
      refusalMs: tAllowed - tRefused,
      policyInEffectMs: tRefused - tPolicy,
      policyGoneMs: tAllowed - tRemove,
      newClients: newDefs.length,
      renewals: renewTargets.length,
      saidSo: {
        issuanceFailed: [...saidSoAt].filter(([key, s]) => newKeys.includes(key) && s.reason === 'IssuanceFailed').length,
        renewalFailed: [...saidSoAt].filter(([key, s]) => !newKeys.includes(key) && s.reason === 'RenewalFailed').length,
      },
      notReachedWhileRefused: [...recoveredAt.keys()].filter((key) => !saidSoAt.has(key)).length,
      readyWhileRefused: [...recoveredAt.values()].filter((at) => at < tRemove).length,
      saidSoMs: latencies(saidSoMs),
      allSaidSoMs: saidSoAt.size === affected.size ? Math.max(...[...saidSoAt.values()].map((s) => s.at)) - tRefused : null,
      requestsWhileRefused: refused.requests.operator,
      tokenRequestsWhileRefused: tokenRequests,
      tokenRequestsPerAffectedClient: Math.round((tokenRequests / affected.size) * 100) / 100,
      writesWhileRefused: refused.requests.operatorWrites,
      failedAttempts: { max: Math.max(0, ...attempts), mean: attempts.length ? Math.round((attempts.reduce((a, b) => a + b, 0) / attempts.length) * 100) / 100 : 0 },
      recoveryMs: latencies(recovery),
      allRecoveredMs: recoveredAt.size === affected.size ? Math.max(...[...recoveredAt.values()].map((at) => at - tAllowed)) : null,
      notRecovered: affected.size - recoveredAt.size,
      lagPastBackoffMs: latencies(lag),
      backoffDueAfterAllowedMs: latencies(due.map((d) => Math.max(0, d - tAllowed))),
      requestsRecovering: recovering.requests.operator,
      bystandersNotReady: bystanders.size,
    };
    log(
      `failure: ${result.saidSo.issuanceFailed}/${k} IssuanceFailed, ${result.saidSo.renewalFailed}/${renewTargets.length} RenewalFailed, ${result.notReachedWhileRefused} reached only after, said so p50 ${result.saidSoMs.p50} ms, max ${result.saidSoMs.max} ms; ` +
        `${tokenRequests} TokenRequests while refused (${result.tokenRequestsPerAffectedClient}/client); all Ready again ${result.allRecoveredMs} ms after allowed (backoff due at most ${result.backoffDueAfterAllowedMs.max} ms after)`,
    );
    return result;
  } finally {
    watching = false;
    await admin.remove(VAP_BINDING, undefined, policyName).catch(() => undefined);
    await admin.remove(VAP, undefined, policyName).catch(() => undefined);
    // Back to N clients for the phases after this one.
    await pool(newDefs, ctx.concurrency, async (def) => void (await retrying(() => admin.remove(R.client, ctx.namespaceOf(def), def.name))));
    const goneDeadline = Date.now() + 120_000;
    while (newKeys.some((key) => tracker.objects.has(key)) && Date.now() < goneDeadline) await sleep(200);
    await tracker.stop();
    await ctx.quiet();
  }
}
