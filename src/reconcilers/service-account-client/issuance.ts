/**
 * Issuance: the user's ServiceAccount, then does the client need a new token (policy/reissue.ts),
 * and if so mint it (mint.ts: anchor, TokenRequest, Secret). Failures are recorded on the client and
 * backed off (issuance-failure.ts), never thrown into a hot retry.
 */
import type { IssuedToken, ServiceAccountClientStatus, Tier } from '../../api/index.ts';
import { formatTime, getCondition } from '../../controller/conditions.ts';
import type { Logger } from '../../controller/logger.ts';
import { errorMessage } from '../../kube/errors.ts';
import { issuanceBackoff } from '../../policy/issuance-backoff.ts';
import { needsNewToken, RENEW_REQUESTED_AT_ANNOTATION, RENEWED_FOR_ANNOTATION, type ReissueDecision } from '../../policy/reissue.ts';
import type { TokenClaims } from '../../policy/token-claims.ts';
import { renewalTime, type EffectiveTokenPolicy } from '../../policy/token-policy.ts';
import type { CachedSecret, OperatorContext } from '../context.ts';
import { holdWhileFailing, issuanceCause, recovered, type HoldInput } from '../issuance-failure.ts';
import { AUDIENCES_ANNOTATION, EXPIRATION_ANNOTATION, RENEW_AT_ANNOTATION } from '../labels.ts';
import { mintToken } from './mint.ts';
import { revokeTokens } from './revocation.ts';
import { isSecretError } from './secret.ts';
import { writeSecret } from './secret-write.ts';
import { ensureServiceAccount, type ServiceAccountRef } from './service-account.ts';
import { conditionsFor, type Client, type ClientEvent, type ConditionInput, type Outcome, type TierResolvedCondition } from './status.ts';

/** What issuance needs to know: the client, its tier and policy, and what the caches show. */
export interface IssuanceInput {
  client: Client;
  tier: Tier;
  namespace: string;
  policy: EffectiveTokenPolicy;
  /** The status so far (tier, tierReason, previous tokens and conditions). */
  base: ServiceAccountClientStatus;
  tierResolved: TierResolvedCondition;
  events: ClientEvent[];
  /** The client's Secret as cached. */
  secret: CachedSecret | undefined;
  /** Names of the client's anchors as cached. */
  anchors: Set<string>;
  /** The client's tokens, newest first, with one the Secret holds but status does not yet name. */
  tokens: IssuedToken[];
  now: number;
}

export type IssuanceResult =
  /** Nothing more to do this pass: a failure recorded, the backoff holding, a collision. */
  | { done: true; outcome: Outcome }
  | {
      done: false;
      account: ServiceAccountRef;
      /** Set when a new token was written. */
      decision: ReissueDecision | undefined;
      /** The client's tokens now, newest first. */
      tokens: IssuedToken[];
      /** What the Secret holds after this step: the claims of the token written, or the cached ones. */
      secretToken: TokenClaims | 'unreadable' | undefined;
    };

/** The user's ServiceAccount, then a new token if one is needed. */
export async function issue(op: OperatorContext, input: IssuanceInput, log: Logger): Promise<IssuanceResult> {
  const { client, tier, namespace, policy, base, secret, anchors, tokens, now } = input;
  const previous = client.status ?? {};
  const tierName = tier.metadata.name;
  // Issuing waits out the backoff of earlier failures, and a failure is recorded, not thrown.
  const reset = client.metadata.generation !== previous.observedGeneration || previous.tier !== tierName;
  const failing = { client, base, tokens: tokens.filter((t) => anchors.has(t.id)), secretHoldsToken: secret?.tokenClaims !== undefined, gracePeriodMs: policy.gracePeriodMs, now };
  const hold = async (err?: unknown, serviceAccount?: HoldInput['serviceAccount']): Promise<IssuanceResult> => ({
    done: true,
    outcome: await holdFailing(op, { ...failing, serviceAccount, failure: err === undefined ? undefined : { cause: issuanceCause(err, isSecretError), reset } }, input.tierResolved, input.events, log),
  });
  if (!issuanceBackoff({ failedAttempts: previous.failedAttempts, lastFailureTime: previous.lastFailureTime, reset, now }).go) return hold();

  let account: Awaited<ReturnType<typeof ensureServiceAccount>>;
  try {
    account = await ensureServiceAccount(op, namespace, client, tierName);
  } catch (err) {
    return hold(err);
  }
  if (account.collision) {
    const message = `every ServiceAccount name for user "${client.spec.subject.user}" in ${namespace} belongs to another user`;
    return {
      done: true,
      outcome: {
        status: { ...base, conditions: conditionsFor(client, now, [input.tierResolved, { type: 'Ready', status: 'False', reason: 'ServiceAccountCollision', message }]) },
        events: [...input.events, { type: 'Warning', reason: 'ServiceAccountCollision', note: message }],
      },
    };
  }
  const saRef: ServiceAccountRef = { namespace, name: account.name, uid: account.uid };
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
    newestAnchorExists: tokens[0] !== undefined && anchors.has(tokens[0].id),
    recordedServiceAccount: (previous.tokens ?? []).length > 0 ? previous.serviceAccount : undefined,
    renewRequested: client.metadata.annotations?.[RENEW_REQUESTED_AT_ANNOTATION],
  });
  if (decision === undefined) return { done: false, account: saRef, decision, tokens, secretToken: secret?.tokenClaims };

  let minted: { issued: IssuedToken; claims: TokenClaims | undefined };
  try {
    minted = await mintToken(op, client, tier, saRef, policy, secret);
  } catch (err) {
    return hold(err, saRef);
  }
  const resumed = getCondition(previous.conditions, 'Suspended')?.status === 'True';
  input.events.push(eventFor(decision, tokens.length === 0, resumed, previous, tierName));
  // A cap the client was not told of yet (its Ready message carries the ones it was told of).
  const told = getCondition(previous.conditions, 'Ready')?.message ?? '';
  const untold = policy.notes.filter((note) => !told.includes(note));
  if (untold.length > 0) input.events.push({ type: 'Warning', reason: 'Capped', note: untold.join('; ') });
  if (decision.reason === 'RenewalDue' || decision.reason === 'Expired') op.metrics.rotated(tierName);
  else op.metrics.issued(tierName);
  const recovery = recovered(previous);
  if (recovery !== undefined) input.events.push(recovery);
  return { done: false, account: saRef, decision, tokens: [minted.issued, ...tokens.filter((t) => anchors.has(t.id))], secretToken: minted.claims ?? 'unreadable' };
}

/**
 * A crash between writing the Secret and recording status leaves a token that only the Secret names:
 * take it into the token list rather than replace it.
 */
export function adoptTokenInSecret(tokens: IssuedToken[], secret: CachedSecret | undefined, anchors: Set<string>, policy: EffectiveTokenPolicy): IssuedToken[] {
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

function eventFor(decision: ReissueDecision, first: boolean, resumed: boolean, previous: ServiceAccountClientStatus, tierName: string): ClientEvent {
  if (resumed) return { type: 'Normal', reason: 'Resumed', note: `resumed: issued a new token in tier ${tierName}` };
  if (first && decision.reason === 'NotIssued') return { type: 'Normal', reason: 'Issued', note: `issued a token in tier ${tierName}` };
  if (decision.reason === 'RenewalDue' || decision.reason === 'Expired') return { type: 'Normal', reason: 'Rotated', note: `rotated the token: ${decision.message}` };
  if (decision.reason === 'RevocationRequested') return { type: 'Normal', reason: 'Issued', note: `issued a fresh token after revocation epoch ${previous.revocationEpoch ?? 0}` };
  if (decision.repair) return { type: 'Normal', reason: 'Repaired', note: `issued a new token: ${decision.message}` };
  return { type: 'Normal', reason: 'Issued', note: `issued a new token: ${decision.message}` };
}

/**
 * A client that cannot get a token now (issuance-failure.ts): keeps what is still valid, revokes
 * what is past its grace period, empties the Secret once nothing in it is valid, and says why.
 */
async function holdFailing(op: OperatorContext, input: HoldInput, tierResolved: ConditionInput, events: ClientEvent[], log: Logger): Promise<Outcome> {
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
