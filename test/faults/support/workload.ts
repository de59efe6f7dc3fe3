/**
 * The workload of the fault suite, its model of what the operator must converge to, and the checks.
 *
 * Three tiers (bronze: the default, silver: by group, gold: by TenantBinding only), N clients of N/2
 * users over a few tenant namespaces, one "gold" TenantBinding per namespace. Rounds of edits, each
 * client touched at most once per round (so the operator may coalesce nothing the model depends on):
 *
 *   create / delete            new clients, deleted clients (deletion revokes their tokens)
 *   expiration, audiences      a new token, the previous one kept for the grace period (not revoked)
 *   group move                 silver group toggled: bronze <-> silver (old tier's token revoked at once)
 *   binding move               a user added to / removed from the namespace's gold binding (all of that
 *                              user's clients in the namespace move; their old tokens revoked)
 *   revocationEpoch raised     every token of the client revoked, a fresh one issued
 *   suspend / resume           tokens revoked and the Secret emptied / a new token
 *   unresolve / resolve        tierRef to a tier that does not exist (TierResolved=False TierNotFound,
 *                              tokens revoked, no Secret) / tierRef removed
 *
 * Before every edit that revokes, the token then in the client's Secret is recorded: it must fail
 * TokenReview once the operator has converged ("every token the test was told is revoked fails").
 *
 * verify() returns every difference from the model (empty when converged):
 *   - every client exists with observedGeneration = generation, and is Ready in the tier the model
 *     expects, or Suspended, or TierResolved=False TierNotFound; deleted clients are gone;
 *   - a Ready client's Secret holds a token that passes TokenReview as the ServiceAccount in its
 *     status, which belongs to exactly the client's user; a suspended client's Secret holds none;
 *   - no orphan anchor: each anchor's client exists and names it (status.tokens, or the Secret's token);
 *   - no orphan ServiceAccount: each one serves a live client of its user in its tier;
 *   - every recorded revoked token fails TokenReview (reviewed with a one-off extra audience, so the
 *     API server's 10s cache of successful authentications cannot answer).
 */
import { createTestNamespace } from '../../integration/support/cluster.ts';
import {
  ANCHOR_TYPE,
  API_VERSION,
  CLIENT_UID_LABEL,
  MANAGED_BY,
  R,
  USER_ANNOTATION,
  createBinding,
  createTier,
  decodeJwt,
  fingerprint,
  kube,
  request,
  scopedName,
  serviceAccountUser,
  sleep,
  tierNamespace,
  tokenOf,
  waitForTierReady,
  type Client,
  type KObject,
  type OperatorProcess,
  type Secret,
} from '../../integration/support/operator.ts';
import type { Rng } from './rng.ts';

export const TIERS = ['bronze', 'silver', 'gold'] as const;
export type TierShort = (typeof TIERS)[number];

export interface ClientModel {
  ns: string;
  name: string;
  user: string;
  silver: boolean;
  expiration?: string;
  narrow: boolean;
  suspended: boolean;
  epoch: number;
  missingTier: boolean;
  deleted: boolean;
}

export type Expected = { state: 'ready'; tier: TierShort } | { state: 'suspended'; tier: TierShort } | { state: 'unresolved' } | { state: 'gone' };

export interface RevokedToken {
  token: string;
  audiences: string[];
  what: string;
}

export type OpKind = 'create' | 'delete' | 'expiration' | 'audiences' | 'group-move' | 'binding-move' | 'epoch' | 'suspend' | 'resume' | 'unresolve' | 'resolve';

export interface Op {
  kind: OpKind;
  /** ns/name of the client (for binding-move: of one client of the user). */
  key: string;
}

export interface WorkloadOptions {
  clients: number;
  namespaces: number;
  rng: Rng;
  /** Short tag for client names. */
  tag?: string;
}

const EXPIRATIONS = ['30m', '1h', '2h', '3h'];
const PLACEHOLDER_SUBJECT = { kind: 'Group' as const, name: 'tokenwarden-faults-nobody' };

/** Runs `fn` over `items` with at most `limit` at once; the results in order. */
export async function mapLimit<T, U>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<U>): Promise<U[]> {
  const out: U[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= items.length) return;
      out[i] = await fn(items[i] as T, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/**
 * Retries `fn` while the API server cannot answer (stopped, restarting, etcd away): connection
 * errors, 429, 5xx. `ok` treats some errors as success (AlreadyExists on a retried create, say).
 */
export async function retrying<T>(what: string, fn: () => Promise<T>, opts: { timeoutMs?: number; ok?: (err: unknown) => T | undefined } = {}): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 120_000);
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      const accepted = opts.ok?.(err);
      if (accepted !== undefined) return accepted;
      const status = (err as { status?: number }).status;
      const transient = status === undefined || status === 429 || status >= 500 || (status === 409 && what.startsWith('binding'));
      if (!transient || Date.now() > deadline) throw new Error(`${what}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      await sleep(Math.min(2000, 100 * 2 ** Math.min(attempt, 5)));
    }
  }
}

/** The anchor a ServiceAccount token is bound to; undefined for anything that is not one. */
export function boundAnchor(token: string): string | undefined {
  try {
    return decodeJwt(token)['kubernetes.io']?.secret?.name;
  } catch {
    return undefined;
  }
}

let nonce = 0;
/** TokenReview with a one-off extra audience (never a cached answer), over the admin keep-alive agent. */
export async function reviewToken(token: string, audiences: string[]): Promise<{ authenticated: boolean; username?: string; error?: string }> {
  const res = await request<{ status?: { authenticated?: boolean; user?: { username?: string }; error?: string } }>('POST', '/apis/authentication.k8s.io/v1/tokenreviews', {
    apiVersion: 'authentication.k8s.io/v1',
    kind: 'TokenReview',
    spec: { token, audiences: [...audiences, `tokenwarden-faults-nonce-${process.pid}-${++nonce}`] },
  });
  return {
    authenticated: res.status?.authenticated === true,
    ...(res.status?.user?.username !== undefined ? { username: res.status.user.username } : {}),
    ...(res.status?.error ? { error: res.status.error } : {}),
  };
}

export class Workload {
  readonly op: () => OperatorProcess;
  readonly opts: WorkloadOptions;
  readonly rng: Rng;
  namespaces: string[] = [];
  users: string[] = [];
  readonly clients = new Map<string, ClientModel>();
  /** Users in each namespace's gold TenantBinding. */
  readonly gold = new Map<string, Set<string>>();
  /** Recorded revoked tokens not yet seen failing. */
  readonly pendingRevoked = new Map<string, RevokedToken>();
  /** Every revoked token recorded so far, and how many were confirmed failing. */
  revokedRecorded = 0;
  revokedConfirmed = 0;
  private created = 0;
  prefix = '';
  common = '';

  /** `op` is read on every use: the operator process is replaced after each kill. */
  constructor(op: () => OperatorProcess, opts: WorkloadOptions) {
    this.op = op;
    this.opts = opts;
    this.rng = opts.rng;
  }

  tierName(t: TierShort): string {
    return scopedName(this.op(), t);
  }

  tierNs(t: TierShort): string {
    return tierNamespace(this.op(), this.tierName(t));
  }

  tierAudience(t: TierShort): string {
    return `${this.prefix}-${t}`;
  }

  get silverGroup(): string {
    return `${this.prefix}-silver-users`;
  }

  get missingTierName(): string {
    return `${this.prefix}-no-such-tier`;
  }

  /** Tiers, tenant namespaces and their gold bindings; no clients yet. */
  async setup(): Promise<void> {
    const op = this.op();
    this.prefix = op.prefix;
    this.common = `${op.prefix}-gateway`;
    const levels: Record<TierShort, number> = { bronze: 10, silver: 20, gold: 30 };
    for (const t of TIERS) {
      await createTier(op, t, {
        level: levels[t],
        default: t === 'bronze',
        groups: t === 'silver' ? [this.silverGroup] : [],
        // Lifetimes no rotation falls into during the run; a grace period longer than the run.
        token: { audiences: [this.common, this.tierAudience(t)], defaultExpiration: '1h', renewBefore: '10m', gracePeriod: '30m' },
      });
    }
    for (const t of TIERS) await waitForTierReady(this.tierName(t), 60_000);
    const count = Math.max(1, Math.ceil(this.opts.clients / 2));
    // Users of every shape the operator must keep apart: case, "@", ":", "/", unicode.
    const shapes = (i: number) => [`user-${i}@example.com`, `User-${i}@Example.com`, `svc:${i}:reader`, `team/${i}`, `Ünïcødé-${i}`][i % 5] as string;
    this.users = Array.from({ length: count }, (_, i) => shapes(i));
    for (let i = 0; i < this.opts.namespaces; i++) {
      const ns = await createTestNamespace(`${op.prefix}-t${i}`);
      this.namespaces.push(ns);
      const members = new Set(this.rng.sample(this.users, Math.floor(count / 5)));
      this.gold.set(ns, members);
      await createBinding(op, ns, 'gold', { tierRef: { name: this.tierName('gold') }, subjects: this.subjects(members) });
    }
  }

  private subjects(members: Set<string>) {
    return [PLACEHOLDER_SUBJECT, ...[...members].sort().map((name) => ({ kind: 'User' as const, name }))];
  }

  /** Adds `n` clients to the model (not to the cluster: see createOps). */
  newClients(n: number): string[] {
    const keys: string[] = [];
    for (let i = 0; i < n; i++) {
      const index = this.created++;
      const ns = this.namespaces[index % this.namespaces.length] as string;
      const name = `${this.opts.tag ?? 'c'}-${String(index).padStart(4, '0')}`;
      const model: ClientModel = {
        ns,
        name,
        user: this.users[this.rng.int(0, this.users.length - 1)] as string,
        silver: this.rng.chance(0.4),
        narrow: this.rng.chance(0.2),
        suspended: false,
        epoch: 0,
        missingTier: false,
        deleted: false,
        ...(this.rng.chance(0.3) ? { expiration: this.rng.pick(EXPIRATIONS) } : {}),
      };
      this.clients.set(`${ns}/${name}`, model);
      keys.push(`${ns}/${name}`);
    }
    return keys;
  }

  expected(c: ClientModel): Expected {
    if (c.deleted) return { state: 'gone' };
    if (c.missingTier) return { state: 'unresolved' };
    const tier: TierShort = this.gold.get(c.ns)?.has(c.user) ? 'gold' : c.silver ? 'silver' : 'bronze';
    return c.suspended ? { state: 'suspended', tier } : { state: 'ready', tier };
  }

  audiencesFor(c: ClientModel, tier: TierShort): string[] {
    return c.narrow ? [this.common] : [this.common, this.tierAudience(tier)];
  }

  private spec(c: ClientModel) {
    return {
      subject: { user: c.user, groups: c.silver ? [this.silverGroup, `${this.prefix}-other`] : [`${this.prefix}-other`] },
      ...(c.missingTier ? { tierRef: { name: this.missingTierName } } : {}),
      ...(c.expiration || c.narrow ? { token: { ...(c.expiration ? { expiration: c.expiration } : {}), ...(c.narrow ? { audiences: [this.common] } : {}) } } : {}),
      suspended: c.suspended,
      revocationEpoch: c.epoch,
    };
  }

  /**
   * A round of edits: about `fraction` of the live clients, each at most once, plus a few creations
   * and deletions. The model is updated when the edit is applied (applyOp), not here.
   */
  planRound(fraction: number): Op[] {
    const live = [...this.clients.values()].filter((c) => !c.deleted);
    const touched = new Set<string>();
    const ops: Op[] = [];
    const key = (c: ClientModel) => `${c.ns}/${c.name}`;
    // Binding moves first: they touch every client of the user in the namespace.
    const bindingMoves = Math.max(1, Math.round(live.length * fraction * 0.1));
    for (const c of this.rng.sample(live, bindingMoves)) {
      const affected = live.filter((o) => o.ns === c.ns && o.user === c.user);
      if (affected.some((o) => touched.has(key(o)))) continue;
      affected.forEach((o) => touched.add(key(o)));
      ops.push({ kind: 'binding-move', key: key(c) });
    }
    const weights: [OpKind, number][] = [
      ['expiration', 2], ['audiences', 1], ['group-move', 3], ['epoch', 2], ['suspend', 1], ['unresolve', 1], ['delete', 1],
    ];
    const total = weights.reduce((n, [, w]) => n + w, 0);
    for (const c of this.rng.sample(live, Math.round(live.length * fraction))) {
      if (touched.has(key(c))) continue;
      touched.add(key(c));
      if (c.suspended) {
        ops.push({ kind: 'resume', key: key(c) });
        continue;
      }
      if (c.missingTier) {
        ops.push({ kind: 'resolve', key: key(c) });
        continue;
      }
      let r = this.rng.next() * total;
      const kind = weights.find(([, w]) => (r -= w) < 0)?.[0] ?? 'expiration';
      ops.push({ kind, key: key(c) });
    }
    for (const k of this.newClients(Math.max(1, Math.round(live.length * fraction * 0.1)))) ops.push({ kind: 'create', key: k });
    return this.rng.sample(ops, ops.length);
  }

  /** Records the token now in the client's Secret as one that must stop working. */
  private async recordRevoked(c: ClientModel, why: string): Promise<void> {
    const exp = this.expected(c);
    if (exp.state !== 'ready') return;
    const secret = await retrying(`read Secret of ${c.ns}/${c.name}`, () => kube.tryGet<Secret>(R.secret, c.ns, `${c.name}-token`));
    const token = tokenOf(secret);
    if (!token) return;
    if (!this.pendingRevoked.has(fingerprint(token))) this.revokedRecorded++;
    this.pendingRevoked.set(fingerprint(token), { token, audiences: this.audiencesFor(c, exp.tier), what: `${c.ns}/${c.name} (${why})` });
  }

  private async patchClient(c: ClientModel, patch: unknown): Promise<void> {
    await retrying(`patch client ${c.ns}/${c.name}`, () => kube.patch(R.client, c.ns, c.name, patch));
  }

  /** Applies one edit to the cluster, then to the model. */
  async applyOp(op: Op): Promise<void> {
    const c = this.clients.get(op.key);
    if (!c) throw new Error(`no client ${op.key} in the model`);
    const before = this.expected(c);
    switch (op.kind) {
      case 'create': {
        const body = { apiVersion: API_VERSION, kind: 'ServiceAccountClient', metadata: { name: c.name, namespace: c.ns, labels: { ...this.op().labels } }, spec: this.spec(c) };
        await retrying(`create client ${op.key}`, () => kube.create(R.client, c.ns, body), { ok: (err) => ((err as { status?: number }).status === 409 ? ({} as KObject) : undefined) });
        return;
      }
      case 'delete':
        await this.recordRevoked(c, 'client deleted');
        await retrying(`delete client ${op.key}`, () => kube.remove(R.client, c.ns, c.name));
        c.deleted = true;
        return;
      case 'expiration': {
        const next = this.rng.pick(EXPIRATIONS.filter((e) => e !== (c.expiration ?? '1h')));
        c.expiration = next;
        await this.patchClient(c, { spec: { token: { expiration: next } } });
        return;
      }
      case 'audiences':
        c.narrow = !c.narrow;
        await this.patchClient(c, { spec: { token: { audiences: c.narrow ? [this.common] : null } } });
        return;
      case 'group-move': {
        const after = { ...c, silver: !c.silver };
        const exp = this.expected(after);
        if (before.state === 'ready' && exp.state === 'ready' && exp.tier !== before.tier) await this.recordRevoked(c, `moved ${before.tier} -> ${exp.tier}`);
        c.silver = !c.silver;
        await this.patchClient(c, { spec: { subject: this.spec(c).subject } });
        return;
      }
      case 'binding-move': {
        const members = this.gold.get(c.ns) as Set<string>;
        const affected = [...this.clients.values()].filter((o) => o.ns === c.ns && o.user === c.user && !o.deleted);
        const befores = affected.map((o) => this.expected(o));
        const next = new Set(members);
        if (next.has(c.user)) next.delete(c.user);
        else next.add(c.user);
        for (const [i, o] of affected.entries()) {
          const b = befores[i] as Expected;
          const after = next.has(o.user) ? 'gold' : o.silver ? 'silver' : 'bronze';
          if (b.state === 'ready' && b.tier !== after) await this.recordRevoked(o, `binding moved ${b.tier} -> ${after}`);
        }
        this.gold.set(c.ns, next);
        await retrying(`binding gold in ${c.ns}`, () => kube.patch(R.binding, c.ns, 'gold', { spec: { subjects: this.subjects(next) } }));
        return;
      }
      case 'epoch':
        await this.recordRevoked(c, `revocationEpoch ${c.epoch + 1}`);
        c.epoch += 1;
        await this.patchClient(c, { spec: { revocationEpoch: c.epoch } });
        return;
      case 'suspend':
        await this.recordRevoked(c, 'suspended');
        c.suspended = true;
        await this.patchClient(c, { spec: { suspended: true } });
        return;
      case 'resume':
        c.suspended = false;
        await this.patchClient(c, { spec: { suspended: false } });
        return;
      case 'unresolve':
        await this.recordRevoked(c, 'tierRef to a missing tier');
        c.missingTier = true;
        await this.patchClient(c, { spec: { tierRef: { name: this.missingTierName } } });
        return;
      case 'resolve':
        c.missingTier = false;
        await this.patchClient(c, { spec: { tierRef: null } });
        return;
    }
  }

  /** Applies `ops` with `concurrency` at once. */
  async apply(ops: Op[], concurrency = 8): Promise<void> {
    // Edits of one binding are serialized: each writes the whole subject list.
    const bindingOps = ops.filter((o) => o.kind === 'binding-move');
    const others = ops.filter((o) => o.kind !== 'binding-move');
    await Promise.all([
      (async () => {
        for (const o of bindingOps) await this.applyOp(o);
      })(),
      mapLimit(others, concurrency, (o) => this.applyOp(o)),
    ]);
  }

  /** Every difference between the cluster and the model; empty when converged. */
  async verify(opts: { reviews?: boolean } = {}): Promise<string[]> {
    const problems: string[] = [];
    const op = this.op();
    const clients = await kube.list<Client>(R.client, undefined, { labelSelector: op.selector });
    const byKey = new Map(clients.map((c) => [`${c.metadata.namespace}/${c.metadata.name}`, c]));
    const secrets = new Map<string, Secret>();
    for (const ns of this.namespaces) {
      for (const s of await kube.list<Secret>(R.secret, ns, { labelSelector: `${MANAGED_BY}=tokenwarden` })) secrets.set(`${ns}/${s.metadata.name}`, s);
    }
    const anchors: Secret[] = [];
    const accounts: KObject[] = [];
    for (const t of TIERS) {
      anchors.push(...(await kube.list<Secret>(R.secret, this.tierNs(t), { fieldSelector: `type=${ANCHOR_TYPE}` })));
      accounts.push(...(await kube.list(R.serviceAccount, this.tierNs(t), { labelSelector: `${MANAGED_BY}=tokenwarden` })));
    }
    const accountByRef = new Map(accounts.map((a) => [`${a.metadata.namespace}/${a.metadata.name}`, a]));
    const ready: { key: string; token: string; audiences: string[]; username: string }[] = [];

    for (const [key, c] of this.clients) {
      const exp = this.expected(c);
      const live = byKey.get(key);
      if (exp.state === 'gone') {
        if (live) problems.push(`${key}: deleted, still there (finalizers ${JSON.stringify(live.metadata.finalizers)})`);
        continue;
      }
      if (!live) {
        problems.push(`${key}: missing`);
        continue;
      }
      const cond = (type: string) => live.status?.conditions?.find((x) => x.type === type);
      const readyCond = cond('Ready');
      const show = `Ready=${readyCond?.status}/${readyCond?.reason} tier=${live.status?.tier}`;
      if (live.status?.observedGeneration !== live.metadata.generation) {
        problems.push(`${key}: observedGeneration ${live.status?.observedGeneration} of generation ${live.metadata.generation} (${show})`);
        continue;
      }
      const secret = secrets.get(`${c.ns}/${c.name}-token`);
      const token = tokenOf(secret ?? null);
      if (exp.state === 'unresolved') {
        if (cond('TierResolved')?.status !== 'False' || cond('TierResolved')?.reason !== 'TierNotFound') problems.push(`${key}: expected TierResolved=False TierNotFound (${show})`);
        if (token) problems.push(`${key}: unresolved, but its Secret holds a token`);
        continue;
      }
      if (exp.state === 'suspended') {
        if (readyCond?.status !== 'False' || readyCond.reason !== 'Suspended' || cond('Suspended')?.status !== 'True') problems.push(`${key}: expected Suspended (${show})`);
        if (token) problems.push(`${key}: suspended, but its Secret holds a token`);
        continue;
      }
      const tierName = this.tierName(exp.tier);
      if (readyCond?.status !== 'True' || live.status?.tier !== tierName) {
        problems.push(`${key}: expected Ready in ${tierName} (${show}: ${readyCond?.message?.slice(0, 200)})`);
        continue;
      }
      const sa = live.status.serviceAccount;
      const account = sa ? accountByRef.get(`${sa.namespace}/${sa.name}`) : undefined;
      if (!sa || sa.namespace !== this.tierNs(exp.tier) || !account) {
        problems.push(`${key}: status.serviceAccount ${JSON.stringify(sa)} is not a ServiceAccount of ${this.tierNs(exp.tier)}`);
        continue;
      }
      if (account.metadata.annotations?.[USER_ANNOTATION] !== c.user) {
        problems.push(`${key}: ServiceAccount ${sa.name} is annotated for user ${JSON.stringify(account.metadata.annotations?.[USER_ANNOTATION])}, the client's user is ${JSON.stringify(c.user)}`);
      }
      if (!token) {
        problems.push(`${key}: Ready, but Secret ${c.name}-token holds no token`);
        continue;
      }
      const bound = boundAnchor(token);
      if (bound === undefined) {
        problems.push(`${key}: Ready, but Secret ${c.name}-token holds something that is not a ServiceAccount token`);
        continue;
      }
      if (bound !== live.status.tokens?.[0]?.id) problems.push(`${key}: the Secret's token is bound to ${bound}, status.tokens[0] is ${live.status.tokens?.[0]?.id}`);
      ready.push({ key, token, audiences: this.audiencesFor(c, exp.tier), username: serviceAccountUser(sa.namespace, sa.name) });
    }

    // Clients the model does not know (a create that was retried, say) are a problem too.
    for (const key of byKey.keys()) if (!this.clients.has(key)) problems.push(`${key}: not in the model`);

    const liveByUid = new Map(clients.filter((c) => !c.metadata.deletionTimestamp).map((c) => [c.metadata.uid as string, c]));
    for (const anchor of anchors) {
      const where = `anchor ${anchor.metadata.namespace}/${anchor.metadata.name}`;
      const owner = liveByUid.get(anchor.metadata.labels?.[CLIENT_UID_LABEL] ?? '');
      if (!owner) {
        problems.push(`${where}: orphan, its client (uid ${anchor.metadata.labels?.[CLIENT_UID_LABEL]}) is gone`);
        continue;
      }
      const named = (owner.status?.tokens ?? []).some((t) => t.id === anchor.metadata.name);
      const secretToken = tokenOf(secrets.get(`${owner.metadata.namespace}/${owner.metadata.name}-token`) ?? null);
      const inSecret = secretToken ? boundAnchor(secretToken) === anchor.metadata.name : false;
      if (!named && !inSecret) problems.push(`${where}: orphan, client ${owner.metadata.namespace}/${owner.metadata.name} names it neither in status nor in its Secret`);
    }
    for (const account of accounts) {
      const user = account.metadata.annotations?.[USER_ANNOTATION];
      const ref = `${account.metadata.namespace}/${account.metadata.name}`;
      const tier = TIERS.find((t) => this.tierNs(t) === account.metadata.namespace) as TierShort;
      const served = clients.some((c) => !c.metadata.deletionTimestamp && c.spec.subject.user === user
        && (`${c.status?.serviceAccount?.namespace}/${c.status?.serviceAccount?.name}` === ref || c.status?.tier === this.tierName(tier)));
      if (!served) problems.push(`ServiceAccount ${ref} (user ${JSON.stringify(user)}): orphan, no client of the user in tier ${tier}`);
    }
    if (problems.length > 0 || opts.reviews === false) return problems;

    await mapLimit(ready, 8, async (r) => {
      const res = await reviewToken(r.token, r.audiences);
      if (!res.authenticated) problems.push(`${r.key}: the token in its Secret fails TokenReview (${res.error ?? 'not authenticated'})`);
      else if (res.username !== r.username) problems.push(`${r.key}: the token in its Secret authenticates as ${res.username}, expected ${r.username}`);
    });
    await mapLimit([...this.pendingRevoked], 8, async ([fp, t]) => {
      const res = await reviewToken(t.token, t.audiences);
      if (res.authenticated) problems.push(`revoked token ${fp} of ${t.what} still passes TokenReview as ${res.username}`);
      else {
        this.pendingRevoked.delete(fp);
        this.revokedConfirmed++;
      }
    });
    return problems;
  }

  /** Polls verify() until it finds nothing; throws with what is left after `timeoutMs`. */
  async converge(timeoutMs: number, what: string): Promise<number> {
    const started = Date.now();
    for (;;) {
      let problems: string[];
      try {
        problems = await this.verify();
      } catch (err) {
        problems = [`verify failed: ${err instanceof Error ? err.message : String(err)}`];
      }
      if (problems.length === 0) return Date.now() - started;
      if (Date.now() - started > timeoutMs) {
        throw new Error(`${what}: not converged after ${Math.round((Date.now() - started) / 1000)}s; ${problems.length} problem(s):\n  ${problems.slice(0, 25).join('\n  ')}${problems.length > 25 ? '\n  ...' : ''}\noperator log: ${this.op().logPath}`);
      }
      await sleep(2000);
    }
  }

  /** Counts for the report. */
  summary(): Record<string, number> {
    const live = [...this.clients.values()].filter((c) => !c.deleted);
    const states: Record<string, number> = { clients: live.length };
    for (const c of live) {
      const e = this.expected(c);
      const k = e.state === 'ready' ? `ready:${e.tier}` : e.state;
      states[k] = (states[k] ?? 0) + 1;
    }
    return { ...states, revokedRecorded: this.revokedRecorded, revokedConfirmed: this.revokedConfirmed };
  }
}
