/**
 * Is a new token due? What the client asks for set against what the caches show: the newest token
 * and its anchor, the Secret and what its token was requested with (policy/reissue.ts decides).
 */
import type { IssuedToken } from '../../api/index.ts';
import { needsNewToken, RENEW_REQUESTED_AT_ANNOTATION, RENEWED_FOR_ANNOTATION, renewRequestDueAt, type ReissueDecision } from '../../policy/reissue.ts';
import { AUDIENCES_ANNOTATION, EXPIRATION_ANNOTATION } from '../labels.ts';
import type { IssuanceInput } from './issuance.ts';
import type { ServiceAccountRef } from './service-account.ts';

/** undefined when the token in the Secret is the one the client should hold. */
export function tokenDue(input: IssuanceInput, tokens: IssuedToken[], account: ServiceAccountRef): ReissueDecision | undefined {
  const { client, policy, secret, anchors, now } = input;
  const previous = client.status ?? {};
  const annotations = secret?.metadata?.annotations;
  return needsNewToken({
    now,
    desired: {
      serviceAccountNamespace: account.namespace,
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
            requestedAudiences: annotations?.[AUDIENCES_ANNOTATION],
            requestedExpirationSeconds: annotations?.[EXPIRATION_ANNOTATION],
            renewRequest: annotations?.[RENEWED_FOR_ANNOTATION],
          },
    newestAnchorExists: tokens[0] !== undefined && anchors.has(tokens[0].id),
    // Only while status records tokens does its ServiceAccount say whose they are.
    recordedServiceAccount: (previous.tokens ?? []).length > 0 ? previous.serviceAccount : undefined,
    renewRequested: client.metadata.annotations?.[RENEW_REQUESTED_AT_ANNOTATION],
  });
}

/** When a renewal request the interval holds back will be honoured (policy/reissue.ts renewRequestDueAt); undefined for none held. */
export function renewalDeferredUntil(input: IssuanceInput): number | undefined {
  const { client, secret, now } = input;
  const dueAt = renewRequestDueAt({
    now,
    renewRequested: client.metadata.annotations?.[RENEW_REQUESTED_AT_ANNOTATION],
    secret: secret === undefined ? undefined : { claims: secret.tokenClaims, renewRequest: secret.metadata?.annotations?.[RENEWED_FOR_ANNOTATION] },
  });
  return dueAt !== undefined && dueAt > now ? dueAt : undefined;
}
