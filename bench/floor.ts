/**
 * The floor: the writes the operator must make for each new client, and nothing else. No watch, no
 * cache, no reads, no controller: for each of N pre-created ServiceAccountClients, with the same
 * concurrency as the operator's workers,
 *   1. the user's ServiceAccount in the tier namespace (once per user: N/2 in all),
 *   2. the anchor Secret,
 *   3. the TokenRequest bound to the anchor,
 *   4. the client's Secret holding the token,
 *   5. the status patch of the client (the same fields the operator writes).
 * Its objects carry `app.kubernetes.io/managed-by: tokenwarden-floor`, so an operator running on the
 * same cluster never caches them, and the clients lack the bench-run label the operator selects on.
 *
 * Library: runFloor(). Script, against any cluster with the CRDs installed:
 *   node bench/floor.ts --kubeconfig FILE [--context NAME] [--sizes 100] [--workers 4]
 */
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { Kube, R, pool, resourcePath, retrying, type KObject } from './lib/kube.ts';
import {
  ANCHOR_TYPE,
  AUDIENCE,
  AUDIENCES_ANNOTATION,
  CLIENT_ANNOTATION,
  CLIENT_NAMESPACE_LABEL,
  CLIENT_UID_LABEL,
  EXPIRATION_ANNOTATION,
  EXPIRES_AT_ANNOTATION,
  MANAGED_BY,
  RENEW_AT_ANNOTATION,
  TENANTS,
  TIERS,
  TIER_LABEL,
  TOKEN_ID_ANNOTATION,
  TOKEN_SECRET_TYPE,
  USER_ANNOTATION,
  clientObject,
  clients,
  serviceAccountName,
  tenantNamespace,
  type ClientDef,
} from './lib/workload.ts';

const FLOOR_MANAGER = 'tokenwarden-floor';
const EXPIRATION_SECONDS = 3600;
const RENEW_BEFORE_MS = 0.33 * EXPIRATION_SECONDS * 1000;

export const floorTierNamespace = (tier: string): string => `floor-tier-${tier}`;

export interface FloorResult {
  n: number;
  workers: number;
  /** First write to last status patch. */
  durationMs: number;
  /** Per client: from the moment a worker took it to its status patch. */
  perClientMs: number[];
  /** Requests of the timed part, "VERB resource" -> count. */
  requests: Record<string, number>;
  writesPerClient: number;
}

const formatTime = (ms: number): string => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

/** Namespaces and the N clients, as admin; not timed. Returns the clients with their uids. */
export async function prepareFloor(admin: Kube, n: number, concurrency: number): Promise<{ def: ClientDef; uid: string; generation: number }[]> {
  const namespaces = [...Array.from({ length: TENANTS }, (_, t) => tenantNamespace('floor', t)), ...TIERS.map((t) => floorTierNamespace(t.name))];
  for (const name of namespaces) {
    await retrying(() => admin.create(R.namespace, undefined, { metadata: { name } })).catch((err: unknown) => {
      if ((err as { status?: number }).status !== 409) throw err;
    });
  }
  const defs = clients(n);
  const out: { def: ClientDef; uid: string; generation: number }[] = new Array(n);
  await pool(defs, concurrency, async (def, i) => {
    const created = await retrying(() => admin.create(R.client, tenantNamespace('floor', def.tenant), clientObject(def, tenantNamespace('floor', def.tenant), {})));
    out[i] = { def, uid: created.metadata.uid as string, generation: created.metadata.generation ?? 1 };
  });
  return out;
}

/** The timed part: exactly the operator's writes for a new client, `workers` clients at a time. */
export async function runFloor(kube: Kube, prepared: { def: ClientDef; uid: string; generation: number }[], workers: number): Promise<FloorResult> {
  const accounts = new Map<string, Promise<{ name: string; uid: string }>>();
  const ensureAccount = (def: ClientDef): Promise<{ name: string; uid: string }> => {
    const key = `${def.tier.name}/${def.user}`;
    let p = accounts.get(key);
    if (!p) {
      const name = serviceAccountName(def.user);
      p = kube
        .create(R.serviceAccount, floorTierNamespace(def.tier.name), {
          apiVersion: 'v1',
          kind: 'ServiceAccount',
          metadata: { name, labels: { [MANAGED_BY]: FLOOR_MANAGER, [TIER_LABEL]: def.tier.name }, annotations: { [USER_ANNOTATION]: def.user } },
        })
        .then((sa) => ({ name, uid: sa.metadata.uid as string }));
      accounts.set(key, p);
    }
    return p;
  };
  const countsBefore = new Map(kube.counts);
  const perClientMs: number[] = new Array(prepared.length);
  const t0 = performance.now();
  await pool(prepared, workers, async ({ def, uid, generation }, i) => {
    const started = performance.now();
    const tenant = tenantNamespace('floor', def.tenant);
    const tierNs = floorTierNamespace(def.tier.name);
    const account = await ensureAccount(def);
    const anchorName = `${def.name}-${randomBytes(5).toString('hex')}`;
    const anchor = await kube.create(R.secret, tierNs, {
      apiVersion: 'v1',
      kind: 'Secret',
      type: ANCHOR_TYPE,
      metadata: {
        name: anchorName,
        labels: { [MANAGED_BY]: FLOOR_MANAGER, [TIER_LABEL]: def.tier.name, [CLIENT_NAMESPACE_LABEL]: tenant, [CLIENT_UID_LABEL]: uid },
        annotations: { [CLIENT_ANNOTATION]: `${tenant}/${def.name}` },
      },
    });
    const tr = await kube.post<{ status: { token: string; expirationTimestamp: string } }>(resourcePath(R.serviceAccount, tierNs, account.name, 'token'), {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenRequest',
      spec: { audiences: [AUDIENCE], expirationSeconds: EXPIRATION_SECONDS, boundObjectRef: { apiVersion: 'v1', kind: 'Secret', name: anchorName, uid: anchor.metadata.uid } },
    });
    const claims = JSON.parse(Buffer.from(tr.status.token.split('.')[1] as string, 'base64url').toString('utf8')) as { iat: number; exp: number };
    const issuedAt = formatTime(claims.iat * 1000);
    const expiresAt = formatTime(claims.exp * 1000);
    const renewAt = formatTime(claims.exp * 1000 - RENEW_BEFORE_MS);
    const secretName = `${def.name}-token`;
    await kube.create(R.secret, tenant, {
      apiVersion: 'v1',
      kind: 'Secret',
      type: TOKEN_SECRET_TYPE,
      metadata: {
        name: secretName,
        labels: { [MANAGED_BY]: FLOOR_MANAGER },
        annotations: {
          [CLIENT_ANNOTATION]: def.name,
          [TIER_LABEL]: def.tier.name,
          [TOKEN_ID_ANNOTATION]: anchorName,
          [EXPIRES_AT_ANNOTATION]: expiresAt,
          [RENEW_AT_ANNOTATION]: renewAt,
          [AUDIENCES_ANNOTATION]: AUDIENCE,
          [EXPIRATION_ANNOTATION]: String(EXPIRATION_SECONDS),
        },
        ownerReferences: [{ apiVersion: 'tokenwarden.io/v1alpha1', kind: 'ServiceAccountClient', name: def.name, uid, controller: true }],
      },
      data: { token: Buffer.from(tr.status.token, 'utf8').toString('base64') },
    });
    const now = formatTime(Date.now());
    const condition = (type: string, status: string, reason: string, message: string) => ({ type, status, observedGeneration: generation, lastTransitionTime: now, reason, message });
    await kube.patch<KObject>(R.client, tenant, def.name, {
      status: {
        tier: def.tier.name,
        tierReason: def.tier.groups.length ? `Tier/${def.tier.name}` : 'Default',
        serviceAccount: { namespace: tierNs, name: account.name, uid: account.uid },
        secretName,
        tokens: [{ id: anchorName, issuedAt, expiresAt, renewAt }],
        expiresAt,
        renewAt,
        revocationEpoch: 0,
        conditions: [
          condition('TierResolved', 'True', 'Resolved', `tier ${def.tier.name}`),
          condition('Ready', 'True', 'TokenIssued', `token valid until ${expiresAt}, renewal at ${renewAt}`),
          condition('Suspended', 'False', 'Active', 'tokens are issued'),
        ],
        observedGeneration: generation,
      },
    }, 'status');
    perClientMs[i] = performance.now() - started;
  });
  const durationMs = performance.now() - t0;
  const requests: Record<string, number> = {};
  for (const [k, v] of kube.counts) {
    const d = v - (countsBefore.get(k) ?? 0);
    if (d > 0) requests[k] = d;
  }
  const writes = Object.entries(requests).filter(([k]) => !k.startsWith('GET ') && !k.startsWith('LIST ') && !k.startsWith('WATCH ')).reduce((s, [, v]) => s + v, 0);
  return { n: prepared.length, workers, durationMs, perClientMs, requests, writesPerClient: writes / prepared.length };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { kubeconfig: { type: 'string' }, context: { type: 'string' }, sizes: { type: 'string', default: '100' }, workers: { type: 'string', default: '4' } },
  });
  const kubeconfig = values.kubeconfig ?? process.env.KUBECONFIG;
  if (!kubeconfig) throw new Error('--kubeconfig or KUBECONFIG is required');
  const kube = new Kube(kubeconfig, values.context);
  try {
    const n = Number(values.sizes);
    const prepared = await prepareFloor(kube, n, 32);
    const result = await runFloor(kube, prepared, Number(values.workers));
    console.log(JSON.stringify({ ...result, perClientMs: undefined }, null, 2));
  } finally {
    kube.close();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
