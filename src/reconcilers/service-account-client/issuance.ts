/**
 * Issuance: the user's ServiceAccount, then does the client need a new token (token-due.ts), and if
 * so mint it (mint.ts: anchor, TokenRequest, Secret). Failures are recorded on the client and
 * backed off (hold-failing.ts), never thrown into a hot retry.
 */
import type { IssuedToken, ServiceAccountClientStatus, Tier } from '../../api/index.ts';
import { getCondition } from '../../controller/conditions.ts';
import type { Logger } from '../../controller/logger.ts';
import { backoffStartsOver, issuanceBackoff } from '../../policy/issuance-backoff.ts';
import { isRotation, issuedEvents } from '../../policy/issuance-events.ts';
import { RENEW_REQUESTED_AT_ANNOTATION, type ReissueDecision } from '../../policy/reissue.ts';
import type { TokenClaims } from '../../policy/token-claims.ts';
import type { EffectiveTokenPolicy } from '../../policy/token-policy.ts';
import { adoptTokenInSecret } from '../../policy/token-record.ts';
import type { CachedSecret, OperatorContext } from '../context.ts';
import { recovered } from '../issuance-failure.ts';
import { RENEW_AT_ANNOTATION } from '../labels.ts';
import { holdFailing } from './hold-failing.ts';
import { mintToken } from './mint.ts';
import { ensureServiceAccount, type ServiceAccountRef } from './service-account.ts';
import { conditionsFor, type Client, type ClientEvent, type Outcome, type TierResolvedCondition } from './status.ts';
import { renewalDeferredUntil, tokenDue } from './token-due.ts';

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
  backoff: BackoffState;
  now: number;
}

/** Whether the failures status records hold this pass back (policy/issuance-backoff.ts). */
export interface BackoffState {
  /** The earlier failures no longer count: a new spec, tier or renewal request. */
  reset: boolean;
  /** The next attempt is not due yet: nothing that failed is tried again. */
  held: boolean;
  /** The client's renewal request, recorded with the next failure. */
  renewRequested: string | undefined;
}

export function backoffState(client: Client, tierName: string | undefined, now: number): BackoffState {
  const previous = client.status ?? {};
  const renewRequested = client.metadata.annotations?.[RENEW_REQUESTED_AT_ANNOTATION];
  const reset = backoffStartsOver({
    generation: client.metadata.generation,
    observedGeneration: previous.observedGeneration,
    tier: tierName,
    recordedTier: previous.tier,
    renewRequested,
    recordedRenewRequest: previous.lastFailureRenewRequest,
    lastFailureTime: previous.lastFailureTime,
    now,
  });
  const held = !issuanceBackoff({ failedAttempts: previous.failedAttempts, lastFailureTime: previous.lastFailureTime, reset, now }).go;
  return { reset, held, renewRequested };
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
      /** A renewal request held back by the interval: when it will be honoured. */
      renewalDeferredUntil?: number | undefined;
    };

/** The user's ServiceAccount, then a new token if one is due. */
export async function issue(op: OperatorContext, input: IssuanceInput, log: Logger): Promise<IssuanceResult> {
  const { client, tier, namespace, policy, secret, anchors } = input;
  const previous = client.status ?? {};
  const tierName = tier.metadata.name;
  const tokens = adoptTokenInSecret({
    tokens: previous.tokens ?? [],
    secretClaims: secret?.tokenClaims,
    secretRenewAt: secret?.metadata?.annotations?.[RENEW_AT_ANNOTATION],
    anchors,
    renewBeforeMs: policy.renewBeforeMs,
  });
  // Issuing waits out the backoff of earlier failures, and a failure is recorded, not thrown.
  const { reset, renewRequested } = input.backoff;
  const hold = async (err?: unknown, serviceAccount?: ServiceAccountRef): Promise<IssuanceResult> => ({
    done: true,
    outcome: await holdFailing(op, input, tokens, { err, reset, renewRequested, serviceAccount }, log),
  });
  if (input.backoff.held) return hold();

  let account: Awaited<ReturnType<typeof ensureServiceAccount>>;
  try {
    account = await ensureServiceAccount(op, namespace, client, tierName);
  } catch (err) {
    return hold(err);
  }
  if (account.collision) return { done: true, outcome: collision(input) };
  const saRef: ServiceAccountRef = { namespace, name: account.name, uid: account.uid };
  const decision = tokenDue(input, tokens, saRef);
  if (decision === undefined) return { done: false, account: saRef, decision, tokens, secretToken: secret?.tokenClaims, renewalDeferredUntil: renewalDeferredUntil(input) };

  let minted: { issued: IssuedToken; claims: TokenClaims | undefined };
  try {
    minted = await mintToken(op, client, tier, saRef, policy, secret);
  } catch (err) {
    return hold(err, saRef);
  }
  input.events.push(
    ...issuedEvents({
      decision,
      first: tokens.length === 0,
      resumed: getCondition(previous.conditions, 'Suspended')?.status === 'True',
      revokedEpoch: previous.revocationEpoch ?? 0,
      tierName,
      notes: policy.notes,
      toldIn: getCondition(previous.conditions, 'Ready')?.message ?? '',
    }),
  );
  if (isRotation(decision)) op.metrics.rotated(tierName);
  else op.metrics.issued(tierName);
  const recovery = recovered(previous);
  if (recovery !== undefined) input.events.push(recovery);
  return { done: false, account: saRef, decision, tokens: [minted.issued, ...tokens.filter((t) => anchors.has(t.id))], secretToken: minted.claims ?? 'unreadable' };
}

/** Every ServiceAccount name derived for the user is another user's: no token, never a shared one. */
function collision({ client, namespace, base, tierResolved, events, now }: IssuanceInput): Outcome {
  const message = `every ServiceAccount name for user "${client.spec.subject.user}" in ${namespace} belongs to another user`;
  return {
    status: { ...base, conditions: conditionsFor(client, now, [tierResolved, { type: 'Ready', status: 'False', reason: 'ServiceAccountCollision', message }]) },
    events: [...events, { type: 'Warning', reason: 'ServiceAccountCollision', note: message }],
  };
}
