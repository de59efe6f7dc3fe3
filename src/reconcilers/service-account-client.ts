/**
 * ServiceAccountClient: resolve the tier, keep one ServiceAccount per user and tier, mint tokens
 * bound to anchor Secrets, keep the client's Secret fresh, and revoke on demand.
 *
 * Order of work, so a crash at any point leaks nothing: create the anchor, mint the token bound to
 * it, write the client's Secret, record it in status, then revoke what is no longer wanted. Anchors
 * that neither the status nor the Secret names are orphans and are deleted.
 */
import { randomBytes } from 'node:crypto';
import { ServiceAccountClient, type IssuedToken, type ServiceAccountClientStatus, type Tier } from '../api/index.ts';
import { formatTime, getCondition, setCondition } from '../controller/conditions.ts';
import type { ReconcileContext, ReconcileFunc, ReconcileResult } from '../controller/controller.ts';
import type { Logger } from '../controller/logger.ts';
import { errorMessage, isAlreadyExists, isConflict, isInvalid, isNotFound } from '../kube/errors.ts';
import { SECRETS, SERVICE_ACCOUNT_CLIENTS, SERVICE_ACCOUNTS, splitKey } from '../kube/resources.ts';
import { issuanceBackoff } from '../policy/issuance-backoff.ts';
import { needsNewToken, planRetention, RENEW_REQUESTED_AT_ANNOTATION, RENEWED_FOR_ANNOTATION, type ReissueDecision } from '../policy/reissue.ts';
import { serviceAccountNameCandidates } from '../policy/service-account-name.ts';
import { readTokenClaims } from '../policy/token-claims.ts';
import { effectiveTokenPolicy, renewalTime, type EffectiveTokenPolicy } from '../policy/token-policy.ts';
import { INDEX, isClientSecret, isTrustedAnchor, tierNamespace, type CachedSecret, type OperatorContext, type ServiceAccount } from './context.ts';
import {
  ANCHOR_SECRET_TYPE,
  AUDIENCES_ANNOTATION,
  CLIENT_ANNOTATION,
  CLIENT_FINALIZER,
  CLIENT_NAMESPACE_LABEL,
  CLIENT_UID_LABEL,
  EXPIRATION_ANNOTATION,
  EXPIRES_AT_ANNOTATION,
  MANAGED_BY,
  MANAGER,
  RENEW_AT_ANNOTATION,
  TIER_LABEL,
  TOKEN_ID_ANNOTATION,
  TOKEN_KEY,
  TOKEN_SECRET_TYPE,
  USER_ANNOTATION,
} from './labels.ts';
import { holdWhileFailing, issuanceCause, recovered, type HoldInput } from './issuance-failure.ts';
import { resolveClientTier } from './resolution.ts';

type Client = ServiceAccountClient;

/** The Secret name is taken by a Secret tokenwarden does not manage: never overwrite it. */
export class SecretConflictError extends Error {}

/** The API server refuses the client's Secret (e.g. an invalid template label): fixable only by a spec change. */
export class SecretInvalidError extends Error {}

/** How often a client blocked by someone else's Secret looks again. */
const SECRET_CONFLICT_RETRY_MS = 30_000;

const clientRef = (key: string): string => `ServiceAccountClient/${key}`;
const secretRef = (namespace: string, name: string): string => `Secret/${namespace}/${name}`;
/** The anchors a client has been given: the newest one created is what the Secret cache must have seen. */
const anchorsRef = (client: Client): string => `Anchors/${client.metadata.uid}`;

export function defaultSecretName(client: Client): string {
  return client.spec.secretName ?? `${client.metadata.name}-token`;
}

/** The outcome of one reconcile: the status to record and the Events that go with it. */
interface Outcome {
  status: ServiceAccountClientStatus;
  events: { type: 'Normal' | 'Warning'; reason: string; note: string }[];
  requeueAfterMs?: number;
}

export function serviceAccountClientReconciler(op: OperatorContext): ReconcileFunc {
  return async (key: string, rctx: ReconcileContext): Promise<ReconcileResult> => {
    const { namespace, name } = splitKey(key);
    const cached = op.caches.clients.get(namespace, name);
    if (cached === undefined) return;
    if (!op.freshness.caughtUp(clientRef(key), cached, op.caches.clients.lastResourceVersion())) return { requeueAfterMs: 100 };
    const parsed = ServiceAccountClient.safeParse(cached);
    if (!parsed.success) {
      // The CRD schema makes this rare (an older schema, a hand-edited object); report, never crash.
      const message = `invalid spec: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`;
      await writeStatus(op, cached as Client, {
        status: withCondition(cached as Client, { type: 'Ready', status: 'False', reason: 'InvalidSpec', message }, op.now()),
        events: [{ type: 'Warning', reason: 'InvalidSpec', note: message }],
      });
      return;
    }
    const client = parsed.data;
    // Whatever it decides next rests on the Secret cache: it must show the client's Secret as last
    // written and every anchor made for the client (finalize must revoke them all).
    const secretName = defaultSecretName(client);
    const secrets = op.caches.secrets;
    if (
      !op.freshness.caughtUp(secretRef(namespace as string, secretName), secrets.get(namespace, secretName), secrets.lastResourceVersion()) ||
      !op.freshness.caughtUp(anchorsRef(client), undefined, secrets.lastResourceVersion())
    ) {
      return { requeueAfterMs: 100 };
    }
    if (client.metadata.deletionTimestamp !== undefined) return finalize(op, client, rctx.logger);
    if (!(client.metadata.finalizers ?? []).includes(CLIENT_FINALIZER)) {
      const updated = await op.kube.patch(SERVICE_ACCOUNT_CLIENTS, namespace, name, {
        metadata: { finalizers: [...(client.metadata.finalizers ?? []), CLIENT_FINALIZER], resourceVersion: client.metadata.resourceVersion },
      });
      op.freshness.wrote(clientRef(key), updated);
      client.metadata.resourceVersion = updated.metadata?.resourceVersion;
    }
    const ready = getCondition(client.status?.conditions, 'Ready');
    if (ready?.reason === 'SecretInvalid' && ready.observedGeneration === client.metadata.generation) {
      // Minting again would only be refused again: wait for the spec to change.
      return;
    }
    let outcome: Outcome;
    try {
      outcome = await converge(op, client, rctx.logger);
    } catch (err) {
      const reason = err instanceof SecretConflictError ? 'SecretConflict' : err instanceof SecretInvalidError ? 'SecretInvalid' : undefined;
      if (reason === undefined) throw err;
      const message = (err as Error).message;
      const known = getCondition(client.status?.conditions, 'Ready')?.reason === reason;
      outcome = {
        status: withCondition(client, { type: 'Ready', status: 'False', reason, message }, op.now()),
        events: known ? [] : [{ type: 'Warning', reason, note: message }],
        requeueAfterMs: SECRET_CONFLICT_RETRY_MS,
      };
    }
    await writeStatus(op, client, outcome);
    if (outcome.requeueAfterMs !== undefined) return { requeueAfterMs: outcome.requeueAfterMs };
  };
}

async function converge(op: OperatorContext, client: Client, log: Logger): Promise<Outcome> {
  // Before anything that writes or deletes the Secret: another client's Secret is never touched.
  const named = op.caches.secrets.get(client.metadata.namespace, defaultSecretName(client));
  const controller = named?.metadata?.ownerReferences?.find((ref) => ref.controller === true);
  if (controller !== undefined && controller.uid !== client.metadata.uid) {
    throw new SecretConflictError(`Secret ${client.metadata.namespace}/${defaultSecretName(client)} belongs to ${controller.kind} ${controller.name}`);
  }
  // Only a Secret of tokenwarden's token type is ever written: the labels on anything else prove nothing.
  if (named !== undefined && named.type !== TOKEN_SECRET_TYPE) {
    throw new SecretConflictError(`Secret ${client.metadata.namespace}/${defaultSecretName(client)} is of type ${named.type ?? 'Opaque'}, not ${TOKEN_SECRET_TYPE}`);
  }
  if (named !== undefined && controller === undefined) await reclaimSecret(op, client, named);
  // A renamed spec.secretName: the Secret under the former name holds a token nobody should go on using.
  const formerName = client.status?.secretName;
  if (formerName !== undefined && formerName !== defaultSecretName(client)) await deleteClientSecret(op, client, formerName);
  const now = op.now();
  const previous = client.status ?? {};
  const resolution = resolveClientTier(op, client);
  if (!resolution.resolved) {
    await revokeTokens(op, client, anchorsOf(op, client).map((a) => a.metadata?.name as string), log);
    await deleteClientSecret(op, client);
    await releaseServiceAccount(op, client, undefined);
    const status: ServiceAccountClientStatus = {
      ...clearedTokens(previous),
      tier: undefined,
      tierReason: undefined,
      conditions: conditionsFor(client, now, [
        { type: 'TierResolved', status: 'False', reason: resolution.reason, message: resolution.message },
        { type: 'Ready', status: 'False', reason: resolution.reason, message: resolution.message },
      ]),
    };
    const changed = getCondition(previous.conditions, 'TierResolved')?.reason !== resolution.reason;
    return { status, events: changed ? [{ type: 'Warning', reason: 'TierUnresolved', note: resolution.message }] : [] };
  }

  const tier = resolution.tier;
  const tierName = tier.metadata.name;
  const tierResolved = { type: 'TierResolved', status: 'True', reason: 'Resolved', message: resolution.message } as const;
  const events: Outcome['events'] = [];
  if (previous.tier !== undefined && previous.tier !== tierName) {
    events.push({ type: 'Normal', reason: 'Moved', note: `moved from tier ${previous.tier} to ${tierName} (${resolution.source})` });
  }
  const base: ServiceAccountClientStatus = { ...previous, tier: tierName, tierReason: resolution.source };

  const policyResult = effectiveTokenPolicy(tier, resolution.binding, client.spec.token);
  if (!policyResult.ok) {
    await revokeTokens(op, client, anchorsOf(op, client).map((a) => a.metadata?.name as string), log);
    await deleteClientSecret(op, client);
    return {
      status: {
        ...clearedTokens(base),
        conditions: conditionsFor(client, now, [tierResolved, { type: 'Ready', status: 'False', reason: policyResult.reason, message: policyResult.message }]),
      },
      events: [...events, { type: 'Warning', reason: policyResult.reason, note: policyResult.message }],
    };
  }
  const policy = policyResult.policy;
  const namespace = tierNamespace(tier, op.config.namespacePrefix);
  const tierNs = op.caches.namespaces.get(undefined, namespace);
  if (tierNs === undefined || tierNs.metadata?.deletionTimestamp !== undefined) {
    const message = `waiting for the namespace ${namespace} of tier ${tierName}`;
    return {
      status: { ...base, conditions: conditionsFor(client, now, [tierResolved, { type: 'Ready', status: 'False', reason: 'WaitingForTier', message }]) },
      events,
      requeueAfterMs: 1000,
    };
  }

  if (client.spec.suspended) return suspend(op, client, base, tierResolved, events, log);

  const leftBehind = anchorsOf(op, client).filter((a) => a.metadata?.namespace !== namespace);
  if (leftBehind.length > 0) return leaveOldTier(op, client, base, tierResolved, events, leftBehind, log);

  const secretName = defaultSecretName(client);
  const secret = op.caches.secrets.get(client.metadata.namespace, secretName);
  const anchorNames = new Set(anchorsOf(op, client).map((a) => a.metadata?.name as string));
  const tokens = adoptTokenInSecret(previous.tokens ?? [], secret, anchorNames, policy);

  // Issuing waits out the backoff of earlier failures, and a failure is recorded, not thrown.
  const reset = client.metadata.generation !== previous.observedGeneration || previous.tier !== tierName;
  const failing = { client, base, tokens: tokens.filter((t) => anchorNames.has(t.id)), secretHoldsToken: secret?.tokenClaims !== undefined, gracePeriodMs: policy.gracePeriodMs, now };
  const hold = (err?: unknown, serviceAccount?: HoldInput['serviceAccount']): Promise<Outcome> =>
    holdFailing(op, { ...failing, serviceAccount, failure: err === undefined ? undefined : { cause: issuanceCause(err, isSecretError), reset } }, tierResolved, events, log);
  if (!issuanceBackoff({ failedAttempts: previous.failedAttempts, lastFailureTime: previous.lastFailureTime, reset, now }).go) return hold();

  let account: Awaited<ReturnType<typeof ensureServiceAccount>>;
  try {
    account = await ensureServiceAccount(op, namespace, client.spec.subject.user, tierName);
  } catch (err) {
    return hold(err);
  }
  if (account.collision) {
    const message = `every ServiceAccount name for user "${client.spec.subject.user}" in ${namespace} belongs to another user`;
    return {
      status: { ...base, conditions: conditionsFor(client, now, [tierResolved, { type: 'Ready', status: 'False', reason: 'ServiceAccountCollision', message }]) },
      events: [...events, { type: 'Warning', reason: 'ServiceAccountCollision', note: message }],
    };
  }
  const saRef = { namespace, name: account.name, uid: account.uid };
  const decision = needsNewToken({
    now,
    desired: {
      serviceAccountNamespace: namespace,
      serviceAccountName: account.name,
      serviceAccountUid: account.uid,
      audiences: policy.audiences,
      expirationSeconds: policy.expirationSeconds,
      revocationEpoch: client.spec.revocationEpoch,
    },
    newest: tokens[0],
    revokedEpoch: previous.revocationEpoch ?? 0,
    secret:
      secret === undefined
        ? undefined
        : {
            claims: secret.tokenClaims,
            requestedAudiences: secret.metadata?.annotations?.[AUDIENCES_ANNOTATION],
            requestedExpirationSeconds: secret.metadata?.annotations?.[EXPIRATION_ANNOTATION],
            renewRequest: secret.metadata?.annotations?.[RENEWED_FOR_ANNOTATION],
          },
    newestAnchorExists: tokens[0] !== undefined && anchorNames.has(tokens[0].id),
    recordedServiceAccount: (previous.tokens ?? []).length > 0 ? previous.serviceAccount : undefined,
    renewRequested: client.metadata.annotations?.[RENEW_REQUESTED_AT_ANNOTATION],
  });

  let current = tokens;
  let revokeEarlier = false;
  const resumed = getCondition(previous.conditions, 'Suspended')?.status === 'True';
  if (decision !== undefined) {
    let issued: IssuedToken;
    try {
      issued = await issueToken(op, client, tier, saRef, policy, secret);
    } catch (err) {
      return hold(err, saRef);
    }
    revokeEarlier = decision.revokeEarlierTokens;
    current = [issued, ...tokens.filter((t) => anchorNames.has(t.id))];
    events.push(eventFor(decision, tokens.length === 0, resumed, previous, tierName));
    // A cap the client was not told of yet (its Ready message carries the ones it was told of).
    const told = getCondition(previous.conditions, 'Ready')?.message ?? '';
    const untold = policy.notes.filter((note) => !told.includes(note));
    if (untold.length > 0) events.push({ type: 'Warning', reason: 'Capped', note: untold.join('; ') });
    if (decision.reason === 'RenewalDue' || decision.reason === 'Expired') op.metrics.rotated(tierName);
    else op.metrics.issued(tierName);
    const recovery = recovered(previous);
    if (recovery !== undefined) events.push(recovery);
  } else if (secret !== undefined) {
    await repairSecretMetadata(op, client, secret, tierName);
  }
  const retention = planRetention(current, now, policy.gracePeriodMs, revokeEarlier);
  // Orphans: anchors this client made that neither the status to be written nor the Secret names.
  const keep = new Set(retention.keep.map((t) => t.id));
  const inSecret = secret?.tokenClaims !== undefined && secret.tokenClaims !== 'unreadable' ? secret.tokenClaims.boundSecretName : undefined;
  const orphans = [...anchorNames].filter((n) => !keep.has(n) && !(decision === undefined && n === inSecret));
  const revoked = await revokeTokens(op, client, [...new Set([...retention.revoke, ...orphans])], log);
  if (revoked > 0 && decision?.reason === 'RevocationRequested') {
    events.push({ type: 'Normal', reason: 'Revoked', note: `revoked ${revoked} token(s) for revocationEpoch ${client.spec.revocationEpoch}` });
  }
  await releaseServiceAccount(op, client, saRef);

  const newest = retention.keep[0] as IssuedToken;
  const readyMessage = [`token valid until ${newest.expiresAt}, renewal at ${newest.renewAt}`, ...policy.notes].join('; ');
  const status: ServiceAccountClientStatus = {
    ...withoutFailures(base),
    serviceAccount: saRef,
    secretName,
    tokens: retention.keep,
    expiresAt: newest.expiresAt,
    renewAt: newest.renewAt,
    revocationEpoch: client.spec.revocationEpoch,
    conditions: conditionsFor(client, now, [
      tierResolved,
      { type: 'Ready', status: 'True', reason: 'TokenIssued', message: readyMessage },
      { type: 'Suspended', status: 'False', reason: 'Active', message: 'tokens are issued' },
    ]),
  };
  const wakeAt = Math.min(Date.parse(newest.renewAt), retention.nextRevocationAt ?? Infinity, Date.parse(newest.expiresAt));
  return { status, events, requeueAfterMs: Math.max(50, wakeAt - op.now() + 50) };
}

/**
 * A crash between writing the Secret and recording status leaves a token that only the Secret names:
 * take it into the token list rather than replace it.
 */
function adoptTokenInSecret(tokens: IssuedToken[], secret: CachedSecret | undefined, anchors: Set<string>, policy: EffectiveTokenPolicy): IssuedToken[] {
  const claims = secret?.tokenClaims;
  if (claims === undefined || claims === 'unreadable' || claims.boundSecretName === undefined) return tokens;
  const id = claims.boundSecretName;
  if (!anchors.has(id) || tokens.some((t) => t.id === id)) return tokens;
  if (tokens[0] !== undefined && Date.parse(tokens[0].issuedAt) > claims.issuedAtMs) return tokens;
  const adopted: IssuedToken = {
    id,
    issuedAt: formatTime(new Date(claims.issuedAtMs)),
    expiresAt: formatTime(new Date(claims.expiresAtMs)),
    renewAt: secret?.metadata?.annotations?.[RENEW_AT_ANNOTATION] ?? formatTime(new Date(renewalTime(claims.issuedAtMs, claims.expiresAtMs, policy.renewBeforeMs))),
  };
  return [adopted, ...tokens];
}

function eventFor(decision: ReissueDecision, first: boolean, resumed: boolean, previous: ServiceAccountClientStatus, tierName: string): Outcome['events'][number] {
  if (resumed) return { type: 'Normal', reason: 'Resumed', note: `resumed: issued a new token in tier ${tierName}` };
  if (first && decision.reason === 'NotIssued') return { type: 'Normal', reason: 'Issued', note: `issued a token in tier ${tierName}` };
  if (decision.reason === 'RenewalDue' || decision.reason === 'Expired') return { type: 'Normal', reason: 'Rotated', note: `rotated the token: ${decision.message}` };
  if (decision.reason === 'RevocationRequested') return { type: 'Normal', reason: 'Issued', note: `issued a fresh token after revocation epoch ${previous.revocationEpoch ?? 0}` };
  if (decision.repair) return { type: 'Normal', reason: 'Repaired', note: `issued a new token: ${decision.message}` };
  return { type: 'Normal', reason: 'Issued', note: `issued a new token: ${decision.message}` };
}

async function suspend(
  op: OperatorContext,
  client: Client,
  base: ServiceAccountClientStatus,
  tierResolved: { type: 'TierResolved'; status: 'True'; reason: 'Resolved'; message: string },
  events: Outcome['events'],
  log: Logger,
): Promise<Outcome> {
  const revoked = await revokeTokens(op, client, anchorsOf(op, client).map((a) => a.metadata?.name as string), log);
  await writeSecret(op, client, base.tier as string, undefined);
  const wasSuspended = getCondition(base.conditions, 'Suspended')?.status === 'True';
  const message = 'suspended: every token is revoked and the Secret holds none';
  return {
    status: {
      ...clearedTokens(base),
      secretName: defaultSecretName(client),
      conditions: conditionsFor(client, op.now(), [
        tierResolved,
        { type: 'Ready', status: 'False', reason: 'Suspended', message },
        { type: 'Suspended', status: 'True', reason: 'Suspended', message },
      ]),
    },
    events: wasSuspended && revoked === 0 ? events : [...events, { type: 'Normal', reason: 'Suspended', note: `${message} (${revoked} revoked)` }],
  };
}

/**
 * First pass of a tier move: the tokens of the tier the client left are revoked, its Secret emptied
 * and that tier's ServiceAccount released, then the key goes to the back of the queue for the new
 * token. When many clients move at once (a Tier or TenantBinding edit), every one of them is cut off
 * from its old tier within one pass over the queue, instead of each waiting until the clients ahead
 * of it have their new tokens.
 */
async function leaveOldTier(
  op: OperatorContext,
  client: Client,
  base: ServiceAccountClientStatus,
  tierResolved: { type: 'TierResolved'; status: 'True'; reason: 'Resolved'; message: string },
  events: Outcome['events'],
  leftBehind: CachedSecret[],
  log: Logger,
): Promise<Outcome> {
  await revokeTokens(op, client, leftBehind.map((a) => a.metadata?.name as string), log);
  const secret = op.caches.secrets.get(client.metadata.namespace, defaultSecretName(client));
  if (secret !== undefined) await writeSecret(op, client, base.tier as string, undefined, secret);
  await releaseServiceAccount(op, client, undefined);
  const from = [...new Set(leftBehind.map((a) => a.metadata?.labels?.[TIER_LABEL] ?? a.metadata?.namespace))].join(', ');
  // No count in it: a repeat of this pass (the cache not yet showing the deletions) then writes nothing.
  const message = `moving to tier ${base.tier}: the tokens of tier ${from} are revoked; a token of tier ${base.tier} follows`;
  return {
    status: {
      ...clearedTokens(base),
      secretName: defaultSecretName(client),
      conditions: conditionsFor(client, op.now(), [tierResolved, { type: 'Ready', status: 'False', reason: 'Moving', message }]),
    },
    events,
    requeueAfterMs: 0,
  };
}

/** Status without tokens, for a client that holds none and is not issuing any. */
function clearedTokens(status: ServiceAccountClientStatus): ServiceAccountClientStatus {
  const { tokens: _t, expiresAt: _e, renewAt: _r, serviceAccount: _s, ...rest } = status;
  return { ...withoutFailures(rest), tokens: [] };
}

/** Status without the record of failed issuance: after a success, or when nothing is to be issued. */
function withoutFailures(status: ServiceAccountClientStatus): ServiceAccountClientStatus {
  const { failedAttempts: _f, lastFailureTime: _l, ...rest } = status;
  return rest;
}

const isSecretError = (err: unknown): boolean => err instanceof SecretConflictError || err instanceof SecretInvalidError;

/**
 * A client that cannot get a token now (issuance-failure.ts): keeps what is still valid, revokes
 * what is past its grace period, empties the Secret once nothing in it is valid, and says why.
 */
async function holdFailing(
  op: OperatorContext,
  input: HoldInput,
  tierResolved: ConditionInput,
  events: Outcome['events'],
  log: Logger,
): Promise<Outcome> {
  const { client } = input;
  const plan = holdWhileFailing(input);
  await revokeTokens(op, client, plan.revoke, log);
  if (plan.emptySecret) {
    try {
      await writeSecret(op, client, input.base.tier as string, undefined);
    } catch (err) {
      // The expired token is refused everywhere anyway: record the failure, empty it next time.
      log.warn({ err: errorMessage(err) }, 'could not empty the Secret of an expired token');
    }
  }
  // The API server's reason goes to the log too (tokens in it already blanked): an operator's log
  // must say why, not only the client's status.
  if (plan.events.length > 0 || input.failure !== undefined) {
    log.info({ failedAttempts: plan.status.failedAttempts, reason: plan.ready.reason, ...(input.failure ? { cause: input.failure.cause } : {}) }, 'issuing failed; backing off');
  }
  return {
    status: { ...plan.status, conditions: conditionsFor(client, input.now, [tierResolved, plan.ready]) },
    events: [...events, ...plan.events],
    requeueAfterMs: plan.requeueAfterMs,
  };
}

type ConditionInput = { type: string; status: 'True' | 'False' | 'Unknown'; reason: string; message: string };

function conditionsFor(client: Client, now: number, updates: ConditionInput[]) {
  let conditions = client.status?.conditions ?? [];
  for (const update of updates) conditions = setCondition(conditions, update, client.metadata.generation, new Date(now));
  return conditions;
}

function withCondition(client: Client, update: ConditionInput, now: number): ServiceAccountClientStatus {
  return { ...client.status, conditions: conditionsFor(client, now, [update]) };
}

/**
 * The anchors of this client in any tier namespace (a tier move leaves them in the old one): only
 * those the operator made, never a look-alike that merely carries the client's uid.
 */
function anchorsOf(op: OperatorContext, client: Client): CachedSecret[] {
  return op.caches.secrets
    .byIndex(INDEX.anchorByClientUid, client.metadata.uid as string)
    .filter((secret) => isTrustedAnchor(op.caches, op.config.namespacePrefix, secret));
}

/** Deletes anchors by name, which revokes their tokens at the API server. Returns how many went. */
async function revokeTokens(op: OperatorContext, client: Client, ids: string[], log: Logger): Promise<number> {
  if (ids.length === 0) return 0;
  const anchors = new Map(anchorsOf(op, client).map((a) => [a.metadata?.name as string, a]));
  let revoked = 0;
  for (const id of ids) {
    const anchor = anchors.get(id);
    if (anchor === undefined) continue;
    try {
      await op.kube.delete(SECRETS, anchor.metadata?.namespace, id, { preconditions: { uid: anchor.metadata?.uid as string } });
      revoked++;
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }
  if (revoked > 0) {
    op.metrics.revoked(client.status?.tier ?? 'unknown', revoked);
    log.info({ revoked, ids }, 'revoked tokens');
  }
  return revoked;
}

/** Finds or creates the user's ServiceAccount in the tier namespace; never shares one between users. */
async function ensureServiceAccount(
  op: OperatorContext,
  namespace: string,
  user: string,
  tierName: string,
): Promise<{ name: string; uid: string; collision?: false } | { collision: true }> {
  for (const name of serviceAccountNameCandidates(user)) {
    let account: ServiceAccount | undefined = op.caches.serviceAccounts.get(namespace, name);
    if (account === undefined) {
      try {
        account = await op.kube.create<ServiceAccount>(SERVICE_ACCOUNTS, namespace, {
          apiVersion: 'v1',
          kind: 'ServiceAccount',
          metadata: {
            name,
            labels: { [MANAGED_BY]: MANAGER, [TIER_LABEL]: tierName },
            annotations: { [USER_ANNOTATION]: user },
          },
        });
      } catch (err) {
        if (!isAlreadyExists(err)) throw err;
        account = await op.kube.get<ServiceAccount>(SERVICE_ACCOUNTS, namespace, name);
      }
    }
    if (account.metadata?.deletionTimestamp !== undefined) throw new Error(`ServiceAccount ${namespace}/${name} is being deleted`);
    if (account.metadata?.annotations?.[USER_ANNOTATION] === user) {
      return { name, uid: account.metadata.uid as string };
    }
  }
  return { collision: true };
}

/**
 * Deletes the ServiceAccount this client used before, when no other client of the user still uses
 * it: tokens of a tier the user left must not outlive the move.
 */
async function releaseServiceAccount(
  op: OperatorContext,
  client: Client,
  current: { namespace: string; name: string } | undefined,
): Promise<void> {
  const before = client.status?.serviceAccount;
  if (before === undefined) return;
  if (current !== undefined && before.namespace === current.namespace && before.name === current.name) return;
  await deleteServiceAccountIfUnused(op, client, before);
}

export async function deleteServiceAccountIfUnused(
  op: OperatorContext,
  client: Client,
  account: { namespace: string; name: string },
): Promise<void> {
  const users = op.caches.clients
    .byIndex(INDEX.clientByServiceAccount, `${account.namespace}/${account.name}`)
    .filter((other) => other.metadata.uid !== client.metadata.uid && other.metadata.deletionTimestamp === undefined);
  if (users.length > 0) return;
  try {
    await op.kube.delete(SERVICE_ACCOUNTS, account.namespace, account.name);
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
}

async function issueToken(
  op: OperatorContext,
  client: Client,
  tier: Tier,
  account: { namespace: string; name: string },
  policy: EffectiveTokenPolicy,
  secret: CachedSecret | undefined,
): Promise<IssuedToken> {
  const anchorName = `${client.metadata.name.slice(0, 200).replace(/[.-]+$/, '')}-${randomBytes(5).toString('hex')}`;
  const anchor = await op.kube.create(SECRETS, account.namespace, {
    apiVersion: 'v1',
    kind: 'Secret',
    type: ANCHOR_SECRET_TYPE,
    metadata: {
      name: anchorName,
      labels: {
        [MANAGED_BY]: MANAGER,
        [TIER_LABEL]: tier.metadata.name,
        [CLIENT_NAMESPACE_LABEL]: client.metadata.namespace as string,
        [CLIENT_UID_LABEL]: client.metadata.uid as string,
      },
      annotations: { [CLIENT_ANNOTATION]: `${client.metadata.namespace}/${client.metadata.name}` },
    },
  } as CachedSecret);
  op.freshness.wrote(anchorsRef(client), anchor);
  let token: string;
  try {
    const response = await op.kube.createSubresource<{ status?: { token?: string } }>(SERVICE_ACCOUNTS, account.namespace, account.name, 'token', {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenRequest',
      spec: {
        ...(policy.audiences.length > 0 ? { audiences: policy.audiences } : {}),
        expirationSeconds: policy.expirationSeconds,
        boundObjectRef: { apiVersion: 'v1', kind: 'Secret', name: anchorName, uid: anchor.metadata?.uid },
      },
    });
    if (!response.status?.token) throw new Error('TokenRequest returned no token');
    token = response.status.token;
  } catch (err) {
    await op.kube.delete(SECRETS, account.namespace, anchorName).catch(() => undefined);
    throw err;
  }
  const claims = readTokenClaims(token);
  const issuedAtMs = claims?.issuedAtMs ?? op.now();
  const expiresAtMs = claims?.expiresAtMs ?? op.now() + policy.expirationSeconds * 1000;
  const issued: IssuedToken = {
    id: anchorName,
    issuedAt: formatTime(new Date(issuedAtMs)),
    expiresAt: formatTime(new Date(expiresAtMs)),
    renewAt: formatTime(new Date(renewalTime(issuedAtMs, expiresAtMs, policy.renewBeforeMs))),
  };
  try {
    await writeSecret(op, client, tier.metadata.name, { token, issued, policy }, secret);
  } catch (err) {
    // Nobody can hold this token: revoke it now rather than leave it to the orphan sweep.
    await op.kube.delete(SECRETS, account.namespace, anchorName).catch(() => undefined);
    if (isInvalid(err)) throw new SecretInvalidError(`the API server refuses the Secret: ${errorMessage(err)}`, { cause: err });
    throw err;
  }
  return issued;
}

/** Template keys in tokenwarden's own namespaces would fight the operator's values: they are dropped. */
function userKeys(map: Record<string, string> | undefined): Record<string, string> {
  return Object.fromEntries(Object.entries(map ?? {}).filter(([key]) => !key.startsWith('tokenwarden.io/') && key !== MANAGED_BY));
}

function secretMetadata(client: Client, tierName: string, issued: IssuedToken | undefined, policy: EffectiveTokenPolicy | undefined) {
  const template = client.spec.secretTemplate ?? {};
  const annotations: Record<string, string | null> = {
    ...userKeys(template.annotations),
    [CLIENT_ANNOTATION]: client.metadata.name,
    [TIER_LABEL]: tierName,
  };
  if (issued !== undefined && policy !== undefined) {
    annotations[TOKEN_ID_ANNOTATION] = issued.id;
    annotations[EXPIRES_AT_ANNOTATION] = issued.expiresAt;
    annotations[RENEW_AT_ANNOTATION] = issued.renewAt;
    annotations[AUDIENCES_ANNOTATION] = policy.audiences.join(',');
    annotations[EXPIRATION_ANNOTATION] = String(policy.expirationSeconds);
    // The renewal request this token answers (kubectl tokenwarden renew), so it is answered once.
    const renewRequested = client.metadata.annotations?.[RENEW_REQUESTED_AT_ANNOTATION];
    if (renewRequested) annotations[RENEWED_FOR_ANNOTATION] = renewRequested;
  }
  return {
    labels: { ...userKeys(template.labels), [MANAGED_BY]: MANAGER },
    annotations,
    ownerReferences: [
      {
        apiVersion: client.apiVersion,
        kind: client.kind,
        name: client.metadata.name,
        uid: client.metadata.uid as string,
        controller: true,
      },
    ],
  };
}

/** Writes the client's Secret: with a new token, or (suspended) with none. */
async function writeSecret(
  op: OperatorContext,
  client: Client,
  tierName: string,
  content: { token: string; issued: IssuedToken; policy: EffectiveTokenPolicy } | undefined,
  secret: CachedSecret | undefined = op.caches.secrets.get(client.metadata.namespace, defaultSecretName(client)),
): Promise<void> {
  const namespace = client.metadata.namespace as string;
  const name = defaultSecretName(client);
  const metadata = secretMetadata(client, tierName, content?.issued, content?.policy);
  const data = content === undefined ? {} : { [TOKEN_KEY]: Buffer.from(content.token, 'utf8').toString('base64') };
  if (content === undefined && secret !== undefined && secret.tokenClaims === undefined) return;
  let written;
  if (secret === undefined) {
    try {
      written = await op.kube.create(SECRETS, namespace, { apiVersion: 'v1', kind: 'Secret', type: TOKEN_SECRET_TYPE, metadata: { name, ...metadata }, data } as CachedSecret);
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
      // Not in the cache, which holds only Secrets labelled as tokenwarden's. Still this client's if
      // its controller reference says so (someone stripped the label): take it back.
      // A JSON patch whose first operation tests the owner's uid does both atomically, with no read.
      try {
        written = await op.kube.patch(
          SECRETS,
          namespace,
          name,
          [
            { op: 'test', path: '/metadata/ownerReferences/0/uid', value: client.metadata.uid },
            { op: 'test', path: '/type', value: TOKEN_SECRET_TYPE },
            { op: 'add', path: '/metadata/labels', value: metadata.labels },
            { op: 'add', path: '/metadata/annotations', value: Object.fromEntries(Object.entries(metadata.annotations).filter(([, v]) => v !== null)) },
            { op: 'add', path: '/data', value: data },
          ],
          { type: 'json' },
        );
        op.freshness.wrote(secretRef(namespace, name), written);
        return;
      } catch (patchErr) {
        if (!isInvalid(patchErr) && !isConflict(patchErr)) throw patchErr;
      }
      throw new SecretConflictError(`Secret ${namespace}/${name} already exists and is not managed by tokenwarden`, { cause: err });
    }
  } else {
    written = await op.kube.patch(SECRETS, namespace, name, { metadata, data: content === undefined ? { [TOKEN_KEY]: null } : data });
  }
  op.freshness.wrote(secretRef(namespace, name), written);
}

/**
 * A token Secret under the client's name that no one controls (its ownerReference removed, or made
 * by someone else before the client existed) is taken over whole: its labels and annotations are
 * replaced, not merged, so nothing another writer put there (a replicator's annotation, say) stays
 * on a Secret that is about to hold a token. The uid test makes it atomic with no read.
 */
async function reclaimSecret(op: OperatorContext, client: Client, secret: CachedSecret): Promise<void> {
  const meta = secretMetadata(client, secret.metadata?.annotations?.[TIER_LABEL] ?? '', undefined, undefined);
  const annotations = Object.fromEntries(Object.entries(meta.annotations).filter((e): e is [string, string] => e[1] !== null));
  const namespace = secret.metadata?.namespace as string;
  const name = secret.metadata?.name as string;
  const written = await op.kube.patch(
    SECRETS,
    namespace,
    name,
    [
      { op: 'test', path: '/metadata/uid', value: secret.metadata?.uid },
      { op: 'add', path: '/metadata/labels', value: meta.labels },
      { op: 'add', path: '/metadata/annotations', value: annotations },
      { op: 'add', path: '/metadata/ownerReferences', value: meta.ownerReferences },
    ],
    { type: 'json' },
  );
  op.freshness.wrote(secretRef(namespace, name), written);
}

/** Puts back labels, annotations and the ownerReference of a Secret edited behind the operator's back. */
async function repairSecretMetadata(op: OperatorContext, client: Client, secret: CachedSecret, tierName: string): Promise<void> {
  const want = secretMetadata(client, tierName, undefined, undefined);
  const meta = secret.metadata ?? {};
  const drift =
    Object.entries(want.labels).some(([k, v]) => meta.labels?.[k] !== v) ||
    Object.entries(want.annotations).some(([k, v]) => meta.annotations?.[k] !== v) ||
    !(meta.ownerReferences ?? []).some((ref) => ref.uid === client.metadata.uid && ref.controller === true);
  if (!drift) return;
  const written = await op.kube.patch(SECRETS, meta.namespace, meta.name as string, { metadata: want });
  op.freshness.wrote(secretRef(meta.namespace as string, meta.name as string), written);
}

/** Deletes the client's Secret, only if it is this client's: its name may be another client's Secret. */
async function deleteClientSecret(op: OperatorContext, client: Client, name = defaultSecretName(client)): Promise<void> {
  const secret = op.caches.secrets.get(client.metadata.namespace, name);
  if (secret === undefined || !isClientSecret(secret, client.metadata.uid)) return;
  try {
    await op.kube.delete(SECRETS, client.metadata.namespace, name, { preconditions: { uid: secret.metadata?.uid as string } });
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
}

async function finalize(op: OperatorContext, client: Client, log: Logger): Promise<ReconcileResult> {
  if (!(client.metadata.finalizers ?? []).includes(CLIENT_FINALIZER)) return;
  await revokeTokens(op, client, anchorsOf(op, client).map((a) => a.metadata?.name as string), log);
  // The ownerReference would remove it too, but only once the garbage collector knows the CRD
  // (it rediscovers types every 30 s): delete it now, it holds a revoked token.
  await deleteClientSecret(op, client);
  if (client.status?.serviceAccount !== undefined) await deleteServiceAccountIfUnused(op, client, client.status.serviceAccount);
  await op.kube.patch(SERVICE_ACCOUNT_CLIENTS, client.metadata.namespace, client.metadata.name, {
    metadata: { finalizers: (client.metadata.finalizers ?? []).filter((f) => f !== CLIENT_FINALIZER), resourceVersion: client.metadata.resourceVersion },
  });
  log.info('finalized: tokens revoked');
}

/** Writes status only when it changed, so a steady state makes no writes; then records Events. */
async function writeStatus(op: OperatorContext, client: Client, outcome: Outcome): Promise<void> {
  const status = { ...outcome.status, observedGeneration: client.metadata.generation };
  if (JSON.stringify(normalizeStatus(status)) !== JSON.stringify(normalizeStatus(client.status ?? {}))) {
    const key = `${client.metadata.namespace}/${client.metadata.name}`;
    try {
      const written = await op.kube.patchStatus(SERVICE_ACCOUNT_CLIENTS, client.metadata.namespace, client.metadata.name, { status: nullMissing(status, client.status ?? {}) });
      op.freshness.wrote(clientRef(key), written);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }
  for (const event of outcome.events) void op.events.record(client, event);
}

/** A merge patch removes a field only when it is null: null out what the new status leaves out. */
function nullMissing(next: object, previous: object): Record<string, unknown> {
  const patch: Record<string, unknown> = { ...next };
  for (const key of Object.keys(previous)) if (patch[key] === undefined) patch[key] = null;
  return patch;
}

function normalizeStatus(status: ServiceAccountClientStatus): unknown {
  const sorted: Record<string, unknown> = Object.fromEntries(Object.entries(status).filter(([, v]) => v !== undefined).sort(([a], [b]) => a.localeCompare(b)));
  if (Array.isArray(sorted.conditions)) {
    sorted.conditions = [...(sorted.conditions as { type: string }[])]
      .map((c) => Object.fromEntries(Object.entries(c).sort(([a], [b]) => a.localeCompare(b))))
      .sort((a, b) => String(a.type).localeCompare(String(b.type)));
  }
  if (Array.isArray(sorted.tokens)) {
    sorted.tokens = (sorted.tokens as object[]).map((t) => Object.fromEntries(Object.entries(t).sort(([a], [b]) => a.localeCompare(b))));
  }
  if (sorted.serviceAccount) {
    sorted.serviceAccount = Object.fromEntries(Object.entries(sorted.serviceAccount as object).sort(([a], [b]) => a.localeCompare(b)));
  }
  return sorted;
}
