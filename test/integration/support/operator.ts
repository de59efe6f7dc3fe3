/**
 * The operator under test, run for real as a child process (`node src/main.ts`), and the black-box
 * helpers its integration tests share: a small admin REST client, the tokenwarden objects, and token
 * checks done the way a gateway does them (TokenReview with the tier's audience).
 *
 * Isolation: several test files run in parallel against one API server, and Tiers are cluster-scoped.
 * Each file starts its OWN operator with its own `--namespace-prefix` and `--selector
 * tokenwarden.io/test-run=<prefix>`, and labels every tokenwarden object it creates with that label
 * (createTier/createBinding/createClient do it), so the instances never reconcile each other's objects.
 * Names of cluster-scoped objects start with the prefix.
 *
 * The API server caches SUCCESSFUL token authentications for 10 seconds, keyed by (token, audiences)
 * (kube-apiserver's TokenSuccessCacheTTL, not configurable). A TokenReview of a revoked token with
 * the same audiences as a successful one less than 10s before still says "authenticated". review()
 * therefore adds a one-off nonce audience to the tier's audiences: the token is still checked against
 * the tier's audience (it needs at least one in common) but the answer is never a cached one.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll } from 'vitest';
import type { KubeConfig } from '@kubernetes/client-node';
import { adminKubeConfig, kubeconfigPath, tokenReview, waitFor, type TokenReviewResult } from './cluster.ts';
import { installCrds } from './crds.ts';
import { asServiceAccount, bindGranted, grantBind, manifestRbacIdentity, operatorServiceAccountKubeconfig, serviceAccountUser } from './rbac.ts';

export { serviceAccountUser };

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

// ---------------------------------------------------------------------------------------------
// Names the operator contract fixes (docs/operator-contract.md)
// ---------------------------------------------------------------------------------------------

export const GROUP = 'tokenwarden.io';
export const API_VERSION = 'tokenwarden.io/v1alpha1';
export const RUN_LABEL = 'tokenwarden.io/test-run';
export const MANAGED_BY = 'app.kubernetes.io/managed-by';
export const TIER_LABEL = 'tokenwarden.io/tier';
export const CLIENT_ANNOTATION = 'tokenwarden.io/client';
export const CLIENT_NAMESPACE_LABEL = 'tokenwarden.io/client-namespace';
export const CLIENT_UID_LABEL = 'tokenwarden.io/client-uid';
export const USER_ANNOTATION = 'tokenwarden.io/user';
export const TOKEN_ID_ANNOTATION = 'tokenwarden.io/token-id';
export const EXPIRES_AT_ANNOTATION = 'tokenwarden.io/expires-at';
export const ANCHOR_TYPE = 'tokenwarden.io/anchor';
export const TOKEN_SECRET_TYPE = 'tokenwarden.io/token';
export const REPORTING_CONTROLLER = 'tokenwarden.io/operator';

// ---------------------------------------------------------------------------------------------
// The operator process
// ---------------------------------------------------------------------------------------------

export interface StartOptions {
  /** `--namespace-prefix`, and the value of the test-run label; default a fresh `tw-<name>-<hex>`. */
  namespacePrefix?: string;
  /** Short tag in the generated prefix (e.g. "rot"), for readable namespaces. */
  name?: string;
  extraArgs?: string[];
  env?: Record<string, string>;
  /** Kubeconfig for the operator; default the run's admin kubeconfig. */
  kubeconfig?: string;
  /** How long to wait for "operator started"; default 60s. */
  startTimeoutMs?: number;
  /** false: resolve once spawned, without waiting for "operator started" (a standby under --leader-elect). */
  waitForStarted?: boolean;
}

export interface OperatorProcess {
  pid: number;
  /** The operator's stdout and stderr. */
  logPath: string;
  /** The unique prefix of this test file: `--namespace-prefix`, test-run label value, name prefix. */
  prefix: string;
  namespacePrefix: string;
  /** `tokenwarden.io/test-run=<prefix>`, passed as `--selector`. */
  selector: string;
  /** Labels to put on every tokenwarden object this file creates. */
  labels: Record<string, string>;
  logs(): string;
  /** The last `lines` lines of the log. */
  tail(lines?: number): string;
  /** SIGTERM, then waits for the exit (SIGKILL after `timeoutMs`, default 30s). */
  stop(timeoutMs?: number): Promise<ExitStatus>;
  /** SIGKILL, then waits for the exit. */
  kill(): Promise<ExitStatus>;
  /** Resolves when the process has exited. */
  exited: Promise<ExitStatus>;
  running(): boolean;
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

const STARTED = '"msg":"operator started"';
const operators = new Set<OperatorProcess>();
/** Every prefix an operator of this file ran with (for the cleanup after the file). */
const prefixesSeen = new Set<string>();
let logCounter = 0;

export function uniquePrefix(name = ''): string {
  const tag = name.toLowerCase().replace(/[^a-z0-9]+/g, '').slice(0, 6);
  return `tw-${tag ? `${tag}-` : ''}${randomBytes(3).toString('hex')}`;
}

/**
 * Spawns `node src/main.ts --kubeconfig ... --namespace-prefix <prefix> --selector
 * tokenwarden.io/test-run=<prefix> ...extraArgs` and resolves once it logged "operator started".
 * Rejects with the log tail if it exits or times out first.
 */
export async function startOperator(opts: StartOptions = {}): Promise<OperatorProcess> {
  await installCrds();
  const prefix = opts.namespacePrefix ?? uniquePrefix(opts.name);
  const selector = `${RUN_LABEL}=${prefix}`;
  prefixesSeen.add(prefix);
  const logPath = path.join(os.tmpdir(), `tokenwarden-operator-${prefix}-${process.pid}-${++logCounter}.log`);
  const fd = fs.openSync(logPath, 'a');
  const args = [
    path.join(repoRoot, 'src/main.ts'),
    // As the ServiceAccount of manifests/, not admin, unless TOKENWARDEN_TEST_AS_SERVICE_ACCOUNT=0 (support/rbac.ts).
    '--kubeconfig', opts.kubeconfig ?? (asServiceAccount() ? await operatorServiceAccountKubeconfig() : kubeconfigPath()),
    '--namespace-prefix', prefix,
    '--selector', selector,
    '--log-level', 'debug',
    // Several operators run at once on one machine: no fixed ports unless extraArgs asks (last flag wins).
    '--metrics-bind-address=0',
    '--health-probe-bind-address=0',
    ...(opts.extraArgs ?? []),
  ];
  let child: ChildProcess;
  try {
    child = spawn(process.execPath, args, {
      cwd: repoRoot,
      stdio: ['ignore', fd, fd],
      env: { ...process.env, ...opts.env },
    });
  } finally {
    fs.closeSync(fd);
  }
  let exit: ExitStatus | undefined;
  const exited = new Promise<ExitStatus>((resolve) => {
    child.on('exit', (code, signal) => {
      exit = { code, signal };
      resolve(exit);
    });
    child.on('error', (err) => {
      fs.appendFileSync(logPath, `\n[test] spawn error: ${err.message}\n`);
      exit = { code: null, signal: null };
      resolve(exit);
    });
  });
  const logs = () => (fs.existsSync(logPath) ? fs.readFileSync(logPath, 'utf8') : '');
  const tail = (lines = 40) => logs().split('\n').slice(-lines).join('\n');
  const waitExit = async (timeoutMs: number): Promise<ExitStatus | undefined> =>
    Promise.race([exited, new Promise<undefined>((r) => setTimeout(() => r(undefined), timeoutMs))]);
  const op: OperatorProcess = {
    pid: child.pid ?? -1,
    logPath,
    prefix,
    namespacePrefix: prefix,
    selector,
    labels: { [RUN_LABEL]: prefix },
    logs,
    tail,
    exited,
    running: () => exit === undefined,
    async stop(timeoutMs = 30_000) {
      if (exit) return exit;
      child.kill('SIGTERM');
      const status = await waitExit(timeoutMs);
      operators.delete(op);
      if (status) return status;
      child.kill('SIGKILL');
      return exited;
    },
    async kill() {
      if (exit) return exit;
      child.kill('SIGKILL');
      operators.delete(op);
      return exited;
    },
  };
  operators.add(op);
  if (opts.waitForStarted === false) return op;

  const timeoutMs = opts.startTimeoutMs ?? 60_000;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (logs().includes(STARTED)) return op;
    if (exit) {
      operators.delete(op);
      throw new Error(`the operator exited (code ${exit.code}, signal ${exit.signal}) before "operator started"; ${logPath}:\n${tail()}`);
    }
    if (Date.now() > deadline) {
      await op.kill();
      throw new Error(`no "operator started" within ${timeoutMs}ms; ${logPath}:\n${tail()}`);
    }
    await sleep(100);
  }
}

// ---------------------------------------------------------------------------------------------
// Admin REST client (node:https with the admin kubeconfig's credentials)
// ---------------------------------------------------------------------------------------------

export class ApiError extends Error {
  readonly status: number;
  readonly body: unknown;
  constructor(status: number, method: string, urlPath: string, body: unknown) {
    const message = typeof body === 'object' && body !== null && 'message' in body ? String((body as { message: unknown }).message) : String(body).slice(0, 300);
    super(`${method} ${urlPath}: HTTP ${status}: ${message}`);
    this.status = status;
    this.body = body;
  }
}

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  generateName?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
  ownerReferences?: { apiVersion: string; kind: string; name: string; uid: string; controller?: boolean }[];
}

export interface KObject {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  [key: string]: unknown;
}

export interface ResourceType {
  group: string;
  version: string;
  plural: string;
  namespaced: boolean;
}

const rt = (group: string, version: string, plural: string, namespaced: boolean): ResourceType => ({ group, version, plural, namespaced });

export const R = {
  tier: rt(GROUP, 'v1alpha1', 'tiers', false),
  binding: rt(GROUP, 'v1alpha1', 'tenantbindings', true),
  client: rt(GROUP, 'v1alpha1', 'serviceaccountclients', true),
  namespace: rt('', 'v1', 'namespaces', false),
  secret: rt('', 'v1', 'secrets', true),
  serviceAccount: rt('', 'v1', 'serviceaccounts', true),
  roleBinding: rt('rbac.authorization.k8s.io', 'v1', 'rolebindings', true),
  clusterRoleBinding: rt('rbac.authorization.k8s.io', 'v1', 'clusterrolebindings', false),
  clusterRole: rt('rbac.authorization.k8s.io', 'v1', 'clusterroles', false),
  event: rt('events.k8s.io', 'v1', 'events', true),
  flowSchema: rt('flowcontrol.apiserver.k8s.io', 'v1', 'flowschemas', false),
} as const;

export function resourcePath(type: ResourceType, namespace?: string, name?: string, subresource?: string): string {
  const base = type.group === '' ? `/api/${type.version}` : `/apis/${type.group}/${type.version}`;
  const ns = type.namespaced && namespace ? `/namespaces/${encodeURIComponent(namespace)}` : '';
  return `${base}${ns}/${type.plural}${name ? `/${encodeURIComponent(name)}` : ''}${subresource ? `/${subresource}` : ''}`;
}

let adminKc: KubeConfig | undefined;
const agent = new https.Agent({ keepAlive: true, maxSockets: 16 });

/** One request as the cluster admin; JSON in and out. */
export async function request<T>(method: string, urlPath: string, body?: unknown, contentType = 'application/json'): Promise<T> {
  adminKc ??= adminKubeConfig();
  const server = adminKc.getCurrentCluster()?.server;
  if (!server) throw new Error('the admin context has no cluster');
  const payload = body === undefined ? undefined : JSON.stringify(body);
  const opts: https.RequestOptions = {
    method,
    agent,
    timeout: 30_000,
    headers: { Accept: 'application/json', ...(payload !== undefined ? { 'Content-Type': contentType } : {}) },
  };
  await adminKc.applyToHTTPSOptions(opts);
  return new Promise<T>((resolve, reject) => {
    const req = https.request(new URL(urlPath, server), opts, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (d: string) => (text += d));
      res.on('end', () => {
        let parsed: unknown = text;
        try {
          parsed = text ? JSON.parse(text) : undefined;
        } catch {
          // not JSON: keep the text
        }
        const status = res.statusCode ?? 0;
        if (status >= 200 && status < 300) resolve(parsed as T);
        else reject(new ApiError(status, method, urlPath, parsed));
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${urlPath} timed out`)));
    req.on('error', reject);
    if (payload !== undefined) req.write(payload);
    req.end();
  });
}

export interface ListOptions {
  labelSelector?: string;
  fieldSelector?: string;
}

export const kube = {
  async get<T extends KObject = KObject>(type: ResourceType, namespace: string | undefined, name: string): Promise<T> {
    return request<T>('GET', resourcePath(type, namespace, name));
  },
  /** null when it does not exist. */
  async tryGet<T extends KObject = KObject>(type: ResourceType, namespace: string | undefined, name: string): Promise<T | null> {
    try {
      return await request<T>('GET', resourcePath(type, namespace, name));
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) return null;
      throw err;
    }
  },
  /** Lists in one namespace, or across all of them (or cluster-scoped) when namespace is undefined. */
  async list<T extends KObject = KObject>(type: ResourceType, namespace?: string, opts: ListOptions = {}): Promise<T[]> {
    const query = new URLSearchParams();
    if (opts.labelSelector) query.set('labelSelector', opts.labelSelector);
    if (opts.fieldSelector) query.set('fieldSelector', opts.fieldSelector);
    const qs = query.size > 0 ? `?${query.toString()}` : '';
    const list = await request<{ items?: T[] }>('GET', `${resourcePath(type, namespace)}${qs}`);
    return list.items ?? [];
  },
  async create<T extends KObject = KObject>(type: ResourceType, namespace: string | undefined, body: unknown): Promise<T> {
    return request<T>('POST', resourcePath(type, namespace), body);
  },
  /** RFC 7386 merge patch (or a JSON patch with type 'json'). */
  async patch<T extends KObject = KObject>(type: ResourceType, namespace: string | undefined, name: string, patch: unknown, patchType: 'merge' | 'json' = 'merge', subresource?: string): Promise<T> {
    const contentType = patchType === 'merge' ? 'application/merge-patch+json' : 'application/json-patch+json';
    return request<T>('PATCH', resourcePath(type, namespace, name, subresource), patch, contentType);
  },
  /** Deletes; a missing object is fine. Returns whether it existed. */
  async remove(type: ResourceType, namespace: string | undefined, name: string, opts: { uid?: string } = {}): Promise<boolean> {
    try {
      await request('DELETE', resourcePath(type, namespace, name), {
        apiVersion: 'v1',
        kind: 'DeleteOptions',
        propagationPolicy: 'Background',
        ...(opts.uid ? { preconditions: { uid: opts.uid } } : {}),
      });
      return true;
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) return false;
      throw err;
    }
  },
  async post<T>(urlPath: string, body: unknown): Promise<T> {
    return request<T>('POST', urlPath, body);
  },
};

// ---------------------------------------------------------------------------------------------
// tokenwarden objects (loose test types: the API is checked by the API server, not by these)
// ---------------------------------------------------------------------------------------------

export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  observedGeneration?: number;
  lastTransitionTime: string;
}

export interface TierSpec {
  displayName?: string;
  level?: number;
  default?: boolean;
  groups?: string[];
  groupGrantMaxAge?: string;
  namespace?: string;
  token?: { audiences?: string[]; defaultExpiration?: string; maxExpiration?: string; renewBefore?: string; gracePeriod?: string };
  access?: { clusterRole: string; namespaces?: string[] }[];
  limits?: { requestsPerMinute?: number; tokensPerMinute?: number };
  deletionPolicy?: 'Retain' | 'Delete';
}

export interface Tier extends KObject {
  spec: TierSpec;
  status?: { namespace?: string; clients?: number; observedGeneration?: number; conditions?: Condition[] };
}

export interface TenantBindingSpec {
  tierRef: { name: string };
  subjects: { kind: 'User' | 'Group'; name: string }[];
  maxClients?: number;
  token?: { maxExpiration?: string };
}

export interface TenantBinding extends KObject {
  spec: TenantBindingSpec;
  status?: { clients?: number; observedGeneration?: number; conditions?: Condition[] };
}

export interface ClientSpec {
  subject: { user: string; groups?: string[] };
  tierRef?: { name: string };
  token?: { audiences?: string[]; expiration?: string; renewBefore?: string };
  secretName?: string;
  secretTemplate?: { labels?: Record<string, string>; annotations?: Record<string, string> };
  suspended?: boolean;
  revocationEpoch?: number;
}

export interface IssuedToken {
  id: string;
  issuedAt: string;
  expiresAt: string;
  renewAt: string;
  digest?: string;
}

export interface Client extends KObject {
  spec: ClientSpec;
  status?: {
    tier?: string;
    tierReason?: string;
    serviceAccount?: { namespace: string; name: string; uid?: string };
    secretName?: string;
    tokens?: IssuedToken[];
    expiresAt?: string;
    renewAt?: string;
    revocationEpoch?: number;
    subjectProof?: { digest: string; provenAt: string };
    observedGeneration?: number;
    conditions?: Condition[];
  };
}

export interface Secret extends KObject {
  type?: string;
  data?: Record<string, string>;
}

export interface KEvent extends KObject {
  reason?: string;
  note?: string;
  type?: string;
  action?: string;
  reportingController?: string;
  regarding?: { kind?: string; name?: string; namespace?: string; uid?: string; apiVersion?: string };
  eventTime?: string;
}

/** `<prefix>-<short>`: the name of a cluster-scoped object of this test file. */
export function scopedName(op: OperatorProcess, short: string): string {
  return `${op.prefix}-${short}`;
}

/** The namespace the contract gives a Tier without spec.namespace. */
export function tierNamespace(op: OperatorProcess, tierName: string): string {
  return `${op.namespacePrefix}-tier-${tierName}`;
}

/** Creates Tier `<prefix>-<short>` with the test-run label; deletionPolicy Delete unless given. */
export async function createTier(op: OperatorProcess, short: string, spec: TierSpec): Promise<Tier> {
  await bindGranted();
  return kube.create<Tier>(R.tier, undefined, {
    apiVersion: API_VERSION,
    kind: 'Tier',
    metadata: { name: scopedName(op, short), labels: { ...op.labels } },
    spec: { deletionPolicy: 'Delete', ...spec },
  });
}

export async function createBinding(op: OperatorProcess, namespace: string, name: string, spec: TenantBindingSpec): Promise<TenantBinding> {
  return kube.create<TenantBinding>(R.binding, namespace, {
    apiVersion: API_VERSION,
    kind: 'TenantBinding',
    metadata: { name, namespace, labels: { ...op.labels } },
    spec,
  });
}

export async function createClient(op: OperatorProcess, namespace: string, name: string, spec: ClientSpec): Promise<Client> {
  return kube.create<Client>(R.client, namespace, {
    apiVersion: API_VERSION,
    kind: 'ServiceAccountClient',
    metadata: { name, namespace, labels: { ...op.labels } },
    spec,
  });
}

export const getClient = (namespace: string, name: string) => kube.get<Client>(R.client, namespace, name);
export const getTier = (name: string) => kube.get<Tier>(R.tier, undefined, name);

export function condition(obj: { status?: { conditions?: Condition[] } } | null | undefined, type: string): Condition | undefined {
  return obj?.status?.conditions?.find((c) => c.type === type);
}

export function describeStatus(obj: KObject | null): string {
  if (!obj) return 'object not found';
  return JSON.stringify({ generation: obj.metadata.generation, finalizers: obj.metadata.finalizers, status: obj.status }, null, 1);
}

/** Waits for a Tier's Ready=True for its current generation. */
export async function waitForTierReady(name: string, timeoutMs = 30_000): Promise<Tier> {
  return waitWithState(
    async () => {
      const tier = await getTier(name);
      const ready = condition(tier, 'Ready');
      return ready?.status === 'True' && tier.status?.observedGeneration === tier.metadata.generation ? tier : undefined;
    },
    () => kube.tryGet(R.tier, undefined, name),
    { timeoutMs, description: `Tier ${name} Ready` },
  );
}

/**
 * Waits until the client is Ready=True for its current generation, its Secret holds a token, and
 * `extra` (if given) accepts it. Returns the client and its token.
 */
export async function waitForClientReady(
  namespace: string,
  name: string,
  opts: { timeoutMs?: number; extra?: (ct: ClientToken) => boolean; description?: string } = {},
): Promise<ClientToken> {
  return waitWithState(
    async () => {
      const ct = await readClientToken(namespace, name);
      const ready = condition(ct.client, 'Ready');
      if (ready?.status !== 'True' || ct.client.status?.observedGeneration !== ct.client.metadata.generation || !ct.token) return undefined;
      return !opts.extra || opts.extra(ct) ? ct : undefined;
    },
    () => kube.tryGet(R.client, namespace, name),
    { timeoutMs: opts.timeoutMs ?? 30_000, description: opts.description ?? `client ${namespace}/${name} Ready` },
  );
}

/** Waits until `probe` accepts the client; on timeout the error shows the client's status. */
export async function waitForClient(
  namespace: string,
  name: string,
  probe: (client: Client) => boolean,
  opts: { timeoutMs?: number; description?: string; intervalMs?: number } = {},
): Promise<Client> {
  return waitWithState(
    async () => {
      const client = await getClient(namespace, name);
      return probe(client) ? client : undefined;
    },
    () => kube.tryGet(R.client, namespace, name),
    { timeoutMs: opts.timeoutMs ?? 30_000, description: opts.description ?? `client ${namespace}/${name}`, intervalMs: opts.intervalMs },
  );
}

async function waitWithState<T>(
  probe: () => Promise<T | undefined>,
  state: () => Promise<KObject | null>,
  opts: { timeoutMs: number; description: string; intervalMs?: number | undefined },
): Promise<T> {
  try {
    return await waitFor(probe, { timeoutMs: opts.timeoutMs, intervalMs: opts.intervalMs ?? 200, description: opts.description });
  } catch (err) {
    let current: string;
    try {
      current = describeStatus(await state());
    } catch (inner) {
      current = `(could not read it: ${String(inner)})`;
    }
    throw new Error(`${(err as Error).message}\nlast seen: ${current}`, { cause: err });
  }
}

// ---------------------------------------------------------------------------------------------
// Tokens, as a gateway checks them
// ---------------------------------------------------------------------------------------------

export interface ClientToken {
  client: Client;
  /** The client's Secret (status.secretName, else spec.secretName, else <name>-token); null if missing. */
  secret: Secret | null;
  /** data.token decoded; undefined if there is none. */
  token: string | undefined;
  /** The audiences a gateway of the client's tier reviews with: the client's narrowed list, else the tier's. */
  audiences: string[];
}

export function secretNameOf(client: Client): string {
  return client.status?.secretName ?? client.spec.secretName ?? `${client.metadata.name}-token`;
}

export function tokenOf(secret: Secret | null): string | undefined {
  const data = secret?.data?.token;
  return data ? Buffer.from(data, 'base64').toString('utf8') : undefined;
}

/** The audiences of the tier the client is in (status.tier), narrowed by the client's request. */
export async function audiencesOf(client: Client): Promise<string[]> {
  if (client.spec.token?.audiences?.length) return client.spec.token.audiences;
  const tierName = client.status?.tier ?? client.spec.tierRef?.name;
  if (!tierName) return [];
  const tier = await kube.tryGet<Tier>(R.tier, undefined, tierName);
  return tier?.spec.token?.audiences ?? [];
}

/** The client, its Secret and the token in it. */
export async function readClientToken(namespace: string, name: string): Promise<ClientToken> {
  const client = await getClient(namespace, name);
  const secret = await kube.tryGet<Secret>(R.secret, namespace, secretNameOf(client));
  return { client, secret, token: tokenOf(secret), audiences: await audiencesOf(client) };
}

let nonce = 0;
/**
 * TokenReview as a gateway of audiences `audiences` does it, bypassing the API server's 10s cache of
 * successful authentications (see the top of this file) with a one-off extra audience.
 * `cached: true` reviews with exactly `audiences`, as a naive gateway would.
 */
export async function review(token: string, audiences: string[], opts: { cached?: boolean } = {}): Promise<TokenReviewResult> {
  if (opts.cached || audiences.length === 0) return tokenReview(token, audiences.length ? audiences : undefined);
  return tokenReview(token, [...audiences, `tokenwarden-test-nonce-${process.pid}-${Date.now()}-${++nonce}`]);
}

/** TokenReview of the client's current token with its tier's audiences. */
export async function reviewClient(namespace: string, name: string): Promise<ClientToken & { review: TokenReviewResult }> {
  const ct = await readClientToken(namespace, name);
  if (!ct.token) throw new Error(`client ${namespace}/${name} has no token in Secret ${secretNameOf(ct.client)}`);
  return { ...ct, review: await review(ct.token, ct.audiences) };
}


/**
 * Polls TokenReview (never cached) until the token fails; returns the milliseconds from `since`
 * (default now) to the first failing answer. Throws if it still passes after `timeoutMs`.
 */
export async function waitForTokenToFail(token: string, audiences: string[], opts: { timeoutMs?: number; since?: number; what?: string } = {}): Promise<number> {
  const since = opts.since ?? Date.now();
  const timeoutMs = opts.timeoutMs ?? 10_000;
  for (;;) {
    const started = Date.now();
    const result = await review(token, audiences);
    if (!result.authenticated) return started - since;
    if (Date.now() - since > timeoutMs) {
      throw new Error(`${opts.what ?? 'token'} still passes TokenReview ${Date.now() - since}ms later (as ${result.username})`);
    }
    await sleep(100);
  }
}

export interface JwtClaims {
  iss?: string;
  sub?: string;
  aud?: string[] | string;
  exp?: number;
  iat?: number;
  nbf?: number;
  jti?: string;
  'kubernetes.io'?: {
    namespace?: string;
    serviceaccount?: { name?: string; uid?: string };
    secret?: { name?: string; uid?: string };
    pod?: { name?: string; uid?: string };
  };
}

/** The payload of a JWT, unverified (the API server verifies; this is for reading claims). */
export function decodeJwt(token: string): JwtClaims {
  const part = token.split('.')[1];
  if (!part) throw new Error('not a JWT');
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as JwtClaims;
}

/** A short, non-secret fingerprint of a token for messages and sets. */
export function fingerprint(token: string | undefined): string {
  return token ? createHash('sha256').update(token).digest('hex').slice(0, 12) : '<none>';
}

// ---------------------------------------------------------------------------------------------
// Owned objects
// ---------------------------------------------------------------------------------------------

/** Anchor Secrets of a client (by its uid), in any namespace. */
export async function anchorsOf(clientUid: string): Promise<Secret[]> {
  const secrets = await kube.list<Secret>(R.secret, undefined, { labelSelector: `${CLIENT_UID_LABEL}=${clientUid}` });
  return secrets.filter((s) => s.type === ANCHOR_TYPE);
}

/** ServiceAccounts in `namespace` the operator made for exactly `user`. */
export async function serviceAccountsOf(namespace: string, user: string): Promise<KObject[]> {
  const all = await kube.list(R.serviceAccount, namespace);
  return all.filter((sa) => sa.metadata.annotations?.[USER_ANNOTATION] === user);
}

/** The ServiceAccount name the API design gives `user` when nothing collides. */
export function expectedServiceAccountName(user: string): string {
  const suffix = createHash('sha256').update(user, 'utf8').digest('hex').slice(0, 10);
  const base = user.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 63 - 1 - 10).replace(/-+$/, '');
  return base ? `${base}-${suffix}` : `u-${suffix}`;
}

/** events.k8s.io/v1 Events about the client (regarding.name), oldest first. */
export async function clientEvents(namespace: string, name: string): Promise<KEvent[]> {
  const events = await kube.list<KEvent>(R.event, namespace);
  return events
    .filter((e) => e.regarding?.name === name && (e.regarding.kind === undefined || e.regarding.kind === 'ServiceAccountClient'))
    .sort((a, b) => Date.parse(a.eventTime ?? a.metadata.creationTimestamp ?? '') - Date.parse(b.eventTime ?? b.metadata.creationTimestamp ?? ''));
}

/** events.k8s.io/v1 Events about a Tier (cluster-scoped, so the operator records them in "default"). */
export async function tierEvents(name: string): Promise<KEvent[]> {
  const events = await kube.list<KEvent>(R.event, 'default');
  return events.filter((e) => e.regarding?.kind === 'Tier' && e.regarding.name === name);
}

/**
 * Every ServiceAccount the operator made in these tier namespaces must serve at least one client of
 * its user resolved to that tier. Returns the orphans as "<ns>/<name> (user)".
 */
export async function orphanServiceAccounts(op: OperatorProcess, tierNames: string[]): Promise<string[]> {
  const clients = await kube.list<Client>(R.client, undefined, { labelSelector: op.selector });
  const orphans: string[] = [];
  for (const tierName of tierNames) {
    const ns = tierNamespace(op, tierName);
    const sas = await kube.list(R.serviceAccount, ns, { labelSelector: `${MANAGED_BY}=tokenwarden` });
    for (const sa of sas) {
      const user = sa.metadata.annotations?.[USER_ANNOTATION];
      const served = clients.some((c) => c.status?.tier === tierName && c.spec.subject.user === user && !c.metadata.deletionTimestamp);
      if (!served) orphans.push(`${ns}/${sa.metadata.name} (${user})`);
    }
  }
  return orphans;
}

// ---------------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------------

export interface Sample {
  labels: Record<string, string>;
  value: number;
}

/** Samples of one metric family in Prometheus text format. */
export function metricSamples(text: string, name: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== '{' && rest[0] !== ' ') continue;
    const labels: Record<string, string> = {};
    let valuePart = rest.trim();
    if (rest[0] === '{') {
      const end = rest.lastIndexOf('}');
      for (const m of rest.slice(1, end).matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[m[1] as string] = (m[2] as string).replace(/\\(.)/g, '$1');
      valuePart = rest.slice(end + 1).trim();
    }
    samples.push({ labels, value: Number(valuePart.split(' ')[0]) });
  }
  return samples;
}

// ---------------------------------------------------------------------------------------------
// Another identity for the operator (per-identity request accounting, a Lease of its own)
// ---------------------------------------------------------------------------------------------

/**
 * Creates ServiceAccount `name` in `namespace` for an operator of its own, and a kubeconfig file with
 * a 3h token of it. Its username is system:serviceaccount:<namespace>:<name> (not system:masters, so
 * API Priority and Fairness classifies its requests by FlowSchema rather than exempting them).
 *
 * Its permissions are exactly the manifests' RBAC (with `lease`: a Lease of its own for
 * --leader-elect), so every test that uses it also proves that RBAC suffices; only with
 * TOKENWARDEN_TEST_AS_SERVICE_ACCOUNT=0 (the suite run as admin), or with `unfenced`, is it bound to
 * cluster-admin.
 */
export async function serviceAccountKubeconfig(
  prefix: string,
  namespace: string,
  name: string,
  opts: { lease?: { namespace: string; name: string }; unfenced?: boolean } = {},
): Promise<{ path: string; username: string }> {
  // unfenced: cluster-admin and no fence, as `make run` runs the operator with an admin's kubeconfig.
  if (asServiceAccount() && opts.unfenced !== true) return manifestRbacIdentity(namespace, name, opts);
  await kube.create(R.serviceAccount, namespace, { metadata: { name } });
  const crb = `${prefix}-${name}-admin`;
  await kube.create(R.clusterRoleBinding, undefined, {
    metadata: { name: crb, labels: { [RUN_LABEL]: prefix } },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'cluster-admin' },
    subjects: [{ kind: 'ServiceAccount', name, namespace }],
  });
  trackClusterObject(R.clusterRoleBinding, crb);
  const tr = await kube.post<{ status: { token: string } }>(resourcePath(R.serviceAccount, namespace, name, 'token'), {
    apiVersion: 'authentication.k8s.io/v1',
    kind: 'TokenRequest',
    spec: { expirationSeconds: 3 * 3600 },
  });
  adminKc ??= adminKubeConfig();
  const cluster = adminKc.getCurrentCluster();
  if (!cluster) throw new Error('the admin context has no cluster');
  const ca = cluster.caData ?? (cluster.caFile ? fs.readFileSync(cluster.caFile).toString('base64') : undefined);
  const config = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'test', cluster: { server: cluster.server, ...(ca ? { 'certificate-authority-data': ca } : {}) } }],
    users: [{ name, user: { token: tr.status.token } }],
    contexts: [{ name, context: { cluster: 'test', user: name, namespace } }],
    'current-context': name,
  };
  const file = path.join(os.tmpdir(), `tokenwarden-${prefix}-${name}-${process.pid}.kubeconfig`);
  fs.writeFileSync(file, JSON.stringify(config), { mode: 0o600 });
  tempFiles.add(file);
  return { path: file, username: serviceAccountUser(namespace, name) };
}

// ---------------------------------------------------------------------------------------------
// The operator never writes a spec
// ---------------------------------------------------------------------------------------------

/** The field manager of the operator's writes (src/kube/client.ts). */
export const OPERATOR_FIELD_MANAGER = 'tokenwarden';

interface ManagedFieldsEntry {
  manager?: string;
  operation?: string;
  subresource?: string;
  fieldsV1?: Record<string, Record<string, unknown> | undefined>;
}

/**
 * What the operator wrote on this file's Tiers, TenantBindings and ServiceAccountClients, by the API
 * server's own record (metadata.managedFields): only the status subresource and metadata.finalizers,
 * so GitOps tools see no drift. Returns how many of its entries it checked (per kind), so a caller
 * can see the check was not vacuous.
 */
export async function operatorWritesOutsideStatus(op: OperatorProcess): Promise<{ offending: string[]; checked: Record<string, { status: number; finalizers: number }> }> {
  const offending: string[] = [];
  const checked: Record<string, { status: number; finalizers: number }> = {};
  for (const [kind, type] of [['Tier', R.tier], ['TenantBinding', R.binding], ['ServiceAccountClient', R.client]] as const) {
    const counts = (checked[kind] = { status: 0, finalizers: 0 });
    for (const obj of await kube.list(type, undefined, { labelSelector: op.selector })) {
      const entries = ((obj.metadata as { managedFields?: ManagedFieldsEntry[] }).managedFields ?? []).filter((e) => e.manager === OPERATOR_FIELD_MANAGER);
      for (const entry of entries) {
        if (entry.subresource === 'status') {
          counts.status++;
          continue;
        }
        const top = Object.keys(entry.fieldsV1 ?? {});
        const meta = Object.keys(entry.fieldsV1?.['f:metadata'] ?? {});
        if (top.every((k) => k === 'f:metadata') && meta.every((k) => k === 'f:finalizers')) counts.finalizers++;
        else offending.push(`${kind} ${obj.metadata.namespace ?? ''}/${obj.metadata.name}: ${JSON.stringify(entry.fieldsV1)}`);
      }
    }
  }
  return { offending, checked };
}

// ---------------------------------------------------------------------------------------------
// Cleanup after each test file
// ---------------------------------------------------------------------------------------------

const clusterObjects: { type: ResourceType; name: string }[] = [];
const tempFiles = new Set<string>();

/** Deletes this cluster-scoped object after the test file (ClusterRoles, FlowSchemas...). */
export function trackClusterObject(type: ResourceType, name: string): void {
  clusterObjects.push({ type, name });
  // As the ServiceAccount, the operator may bind a Tier's ClusterRole only once the site granted it.
  if (asServiceAccount() && type === R.clusterRole) void grantBind(name);
}

/**
 * After the file: delete the file's tokenwarden objects while its operator still runs (finalizers),
 * stop the operator, strip the finalizers of what is left, delete its tier namespaces and tracked
 * cluster objects. Bounded in time; best effort.
 */
afterAll(async () => {
  const running = [...operators].filter((op) => op.running());
  const prefixes = new Set(prefixesSeen);
  const selectors = new Set([...prefixes].map((p) => `${RUN_LABEL}=${p}`));
  for (const op of running) console.error(`[operator] ${op.prefix}: log at ${op.logPath}`);
  const types = [R.client, R.binding, R.tier];
  const leftovers = async () => {
    const out: KObject[] = [];
    for (const selector of selectors) {
      for (const type of types) {
        for (const obj of await kube.list(type, undefined, { labelSelector: selector }).catch(() => [])) out.push({ ...obj, __type: type });
      }
    }
    return out;
  };
  try {
    for (const obj of await leftovers()) {
      await kube.remove(obj.__type as ResourceType, obj.metadata.namespace, obj.metadata.name).catch(() => undefined);
    }
    if (running.length > 0) {
      const deadline = Date.now() + 20_000;
      while (Date.now() < deadline && (await leftovers()).length > 0) await sleep(500);
    }
  } finally {
    await Promise.all(running.map((op) => op.stop(10_000)));
    operators.clear();
  }
  for (const obj of await leftovers()) {
    if (obj.metadata.finalizers?.length) {
      await kube.patch(obj.__type as ResourceType, obj.metadata.namespace, obj.metadata.name, { metadata: { finalizers: null } }).catch(() => undefined);
    }
  }
  const namespaces = await kube.list(R.namespace).catch(() => []);
  for (const ns of namespaces) {
    if ([...prefixes].some((p) => ns.metadata.name.startsWith(`${p}-tier-`))) await kube.remove(R.namespace, undefined, ns.metadata.name).catch(() => undefined);
  }
  const bindings = await kube.list(R.clusterRoleBinding).catch(() => []);
  for (const crb of bindings) {
    if ([...prefixes].some((p) => crb.metadata.name.startsWith(`tokenwarden-tier-${p}-`) || crb.metadata.name.startsWith(`${p}-tier-`))) await kube.remove(R.clusterRoleBinding, undefined, crb.metadata.name).catch(() => undefined);
  }
  for (const { type, name } of clusterObjects.splice(0)) await kube.remove(type, undefined, name).catch(() => undefined);
  for (const file of tempFiles) fs.rmSync(file, { force: true });
  tempFiles.clear();
  agent.destroy();
});

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
