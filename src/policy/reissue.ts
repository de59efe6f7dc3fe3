import type { IssuedToken } from '../api/index.ts';
import { quoteShort } from './text.ts';
import type { TokenClaims } from './token-claims.ts';
import { holdsIssuedToken } from './token-record.ts';

/**
 * "Does this client need a new token, and why?" as a list of named checks, in the manner of
 * cert-manager's issuing policies. The first check that fires gives the reason that ends up in the
 * Ready condition and the Event.
 */

export interface DesiredToken {
  serviceAccountNamespace: string;
  serviceAccountName: string;
  serviceAccountUid: string;
  /** Audiences to request; empty means the API server's defaults. */
  audiences: readonly string[];
  expirationSeconds: number;
  revocationEpoch: number;
}

/** What the client's Secret says about the token it holds. */
export interface SecretView {
  /** The claims of the token in the Secret; 'unreadable' when it is not a ServiceAccount JWT. */
  claims: TokenClaims | 'unreadable' | undefined;
  /** Annotations recorded when the token was written: the request it answered. */
  requestedAudiences?: string | undefined;
  requestedExpirationSeconds?: string | undefined;
  /** The renewal request (RENEW_REQUESTED_AT_ANNOTATION of the client) the token in the Secret answered. */
  renewRequest?: string | undefined;
}

/**
 * A renewal request: `kubectl tokenwarden renew` (or anyone) sets this annotation on a client, its
 * value an RFC 3339 time for people to read. The operator compares it with the value recorded on
 * the client's Secret (RENEWED_FOR_ANNOTATION) when the Secret's token was written: a different value
 * means a new token, the previous one kept for the grace period as in a rotation. No clock is
 * compared and nobody writes status for it; the operator writes the Secret it owns anyway.
 */
export const RENEW_REQUESTED_AT_ANNOTATION = 'tokenwarden.io/renew-requested-at';
/** On the client's Secret: the renewal request its token answered. */
export const RENEWED_FOR_ANNOTATION = 'tokenwarden.io/renewed-for';

/**
 * Renewal requests are honoured at most once per this interval per client: a request while the
 * token in the Secret answered an earlier request and is younger than this waits until it is this
 * old (the last of a burst of requests is honoured then, once). Anyone who may edit a client may
 * write the annotation, as often as the API server lets them: without this, every write was a
 * TokenRequest.
 */
export const RENEW_REQUEST_INTERVAL_MS = 30_000;

/** Tokens status.tokens holds at most (its maxItems): older ones are revoked before their grace period ends. */
export const MAX_TOKENS = 8;

export interface TokenInspection {
  now: number;
  desired: DesiredToken;
  /** The newest token in status, if any. */
  newest: IssuedToken | undefined;
  /** status.revocationEpoch: the epoch already carried out. */
  revokedEpoch: number;
  /** undefined when the Secret does not exist. */
  secret: SecretView | undefined;
  /** Whether the anchor Secret of the newest token exists. */
  newestAnchorExists: boolean;
  /** The ServiceAccount status says the current tokens belong to, if any. */
  recordedServiceAccount?: { namespace: string; name: string; uid?: string | undefined } | undefined;
  /** The client's RENEW_REQUESTED_AT_ANNOTATION, if any. */
  renewRequested?: string | undefined;
}

export type ReissueReason =
  | 'NotIssued'
  | 'SecretMissing'
  | 'TokenMissing'
  | 'TokenUnreadable'
  | 'TokenMismatch'
  | 'AnchorMissing'
  | 'ServiceAccountChanged'
  | 'RevocationRequested'
  | 'AudiencesChanged'
  | 'ExpirationChanged'
  | 'RenewalRequested'
  | 'Expired'
  | 'RenewalDue';

export interface ReissueDecision {
  reason: ReissueReason;
  message: string;
  /**
   * Whether the client's earlier tokens must stop working now rather than after the grace period:
   * a revocation, or a token of another ServiceAccount (a tier move or a deleted ServiceAccount).
   */
  revokeEarlierTokens: boolean;
  /** Whether the new token repairs something that was changed behind the operator's back. */
  repair: boolean;
}

type Check = (input: TokenInspection) => Omit<ReissueDecision, 'reason'> | undefined;

const sameSet = (a: readonly string[], b: readonly string[]): boolean =>
  a.length === b.length && [...a].sort().every((value, i) => value === [...b].sort()[i]);

const CHECKS: [ReissueReason, Check][] = [
  ['NotIssued', ({ newest }) => (newest ? undefined : { message: 'no token issued yet', revokeEarlierTokens: false, repair: false })],
  [
    'RevocationRequested',
    ({ desired, revokedEpoch }) =>
      desired.revocationEpoch > revokedEpoch
        ? { message: `revocationEpoch raised to ${desired.revocationEpoch}`, revokeEarlierTokens: true, repair: false }
        : undefined,
  ],
  [
    'ServiceAccountChanged',
    ({ desired, secret, recordedServiceAccount: recorded }) => {
      // Status tells even when the Secret is gone or garbled: a tier move must not wait for a grace period.
      if (recorded !== undefined && (recorded.namespace !== desired.serviceAccountNamespace || recorded.name !== desired.serviceAccountName)) {
        return {
          message: `tokens belong to ServiceAccount ${recorded.namespace}/${recorded.name}, the client now uses ${desired.serviceAccountNamespace}/${desired.serviceAccountName}`,
          revokeEarlierTokens: true,
          repair: false,
        };
      }
      if (recorded?.uid !== undefined && recorded.uid !== desired.serviceAccountUid) {
        return { message: `ServiceAccount ${desired.serviceAccountName} was recreated`, revokeEarlierTokens: true, repair: true };
      }
      const claims = secret?.claims;
      if (claims === undefined || claims === 'unreadable') return undefined;
      if (claims.namespace !== desired.serviceAccountNamespace || claims.serviceAccountName !== desired.serviceAccountName) {
        return {
          message: `token belongs to ServiceAccount ${claims.namespace}/${claims.serviceAccountName}, the client now uses ${desired.serviceAccountNamespace}/${desired.serviceAccountName}`,
          revokeEarlierTokens: true,
          repair: false,
        };
      }
      return claims.serviceAccountUid === desired.serviceAccountUid
        ? undefined
        : { message: `ServiceAccount ${desired.serviceAccountName} was recreated`, revokeEarlierTokens: true, repair: true };
    },
  ],
  ['SecretMissing', ({ secret }) => (secret ? undefined : { message: 'the Secret is missing', revokeEarlierTokens: false, repair: true })],
  ['TokenMissing', ({ secret }) => (secret?.claims === undefined ? { message: 'the Secret holds no token', revokeEarlierTokens: false, repair: true } : undefined)],
  [
    'TokenUnreadable',
    ({ secret }) => (secret?.claims === 'unreadable' ? { message: 'the Secret holds something that is not a ServiceAccount token', revokeEarlierTokens: false, repair: true } : undefined),
  ],
  [
    'TokenMismatch',
    ({ secret, newest }) => {
      const claims = secret?.claims;
      if (claims === undefined || claims === 'unreadable' || newest === undefined) return undefined;
      return holdsIssuedToken(claims, newest)
        ? undefined
        : { message: 'the Secret holds a token other than the one issued', revokeEarlierTokens: false, repair: true };
    },
  ],
  [
    'AnchorMissing',
    ({ newestAnchorExists }) =>
      newestAnchorExists ? undefined : { message: "the current token's anchor was deleted, which revoked it", revokeEarlierTokens: false, repair: true },
  ],
  [
    'AudiencesChanged',
    ({ desired, secret }) => {
      const claims = secret?.claims;
      if (claims === undefined || claims === 'unreadable') return undefined;
      const changed =
        desired.audiences.length > 0
          ? !sameSet(claims.audiences, desired.audiences)
          : (secret?.requestedAudiences ?? '') !== '';
      return changed ? { message: `audiences changed to [${desired.audiences.join(', ')}]`, revokeEarlierTokens: false, repair: false } : undefined;
    },
  ],
  [
    'ExpirationChanged',
    // Compared with what was requested, not what was granted: the API server may shorten a token.
    ({ desired, secret }) =>
      secret?.requestedExpirationSeconds !== undefined && secret.requestedExpirationSeconds !== String(desired.expirationSeconds)
        ? { message: `token lifetime changed to ${desired.expirationSeconds}s`, revokeEarlierTokens: false, repair: false }
        : undefined,
  ],
  [
    'RenewalRequested',
    (input) => {
      const dueAt = renewRequestDueAt(input);
      // The annotation is anyone's free text (a co-editor's too): quoted and cut short, never read as the operator's words.
      return dueAt !== undefined && input.now >= dueAt
        ? { message: `renewal requested (${RENEW_REQUESTED_AT_ANNOTATION}: ${quoteShort(input.renewRequested ?? '')})`, revokeEarlierTokens: false, repair: false }
        : undefined;
    },
  ],
  [
    'Expired',
    ({ now, newest }) => (newest && now >= Date.parse(newest.expiresAt) ? { message: 'the token expired', revokeEarlierTokens: false, repair: false } : undefined),
  ],
  [
    'RenewalDue',
    ({ now, newest }) =>
      newest && now >= Date.parse(newest.renewAt) ? { message: `renewal was due at ${newest.renewAt}`, revokeEarlierTokens: false, repair: false } : undefined,
  ],
];

/**
 * When the client's pending renewal request may be honoured (RENEW_REQUEST_INTERVAL_MS), or
 * undefined when none is pending. At once when the token in the Secret answered no request.
 */
export function renewRequestDueAt(input: Pick<TokenInspection, 'now' | 'renewRequested' | 'secret'>): number | undefined {
  const { renewRequested, secret, now } = input;
  if (renewRequested === undefined || renewRequested === '' || secret === undefined || secret.renewRequest === renewRequested) return undefined;
  const claims = secret.claims;
  if (secret.renewRequest === undefined || secret.renewRequest === '' || claims === undefined || claims === 'unreadable') return now;
  return claims.issuedAtMs + RENEW_REQUEST_INTERVAL_MS;
}

/** The first reason to issue a new token, or undefined when the current one is good. */
export function needsNewToken(input: TokenInspection): ReissueDecision | undefined {
  for (const [reason, check] of CHECKS) {
    const result = check(input);
    if (result) return { reason, ...result };
  }
  return undefined;
}

export interface RetentionPlan {
  /** Tokens to keep in status, newest first. */
  keep: IssuedToken[];
  /** Token ids whose anchors are to be deleted now. */
  revoke: string[];
  /** When the next kept token has to go, if any. */
  nextRevocationAt?: number;
  /** Tokens revoked before their grace period ended because status keeps at most MAX_TOKENS. */
  cut?: number;
}

/**
 * Which of the client's tokens stay valid: the newest always; each earlier one until the grace
 * period after its successor was issued ends, or it expires; none at all when earlier tokens are
 * revoked. Measuring from the successor, not the newest, matters when rotations come faster than
 * the grace period: otherwise every rotation would extend the life of all older tokens. At most
 * MAX_TOKENS are kept, the newest: status.tokens could not hold more, and every status write would
 * be refused.
 */
export function planRetention(tokens: readonly IssuedToken[], now: number, gracePeriodMs: number, revokeEarlier: boolean): RetentionPlan {
  const [newest] = tokens;
  if (newest === undefined) return { keep: [], revoke: [] };
  const keep = [newest];
  const revoke: string[] = [];
  let nextRevocationAt: number | undefined;
  for (let i = 1; i < tokens.length; i++) {
    const token = tokens[i] as IssuedToken;
    const successor = tokens[i - 1] as IssuedToken;
    const endsAt = Math.min(Date.parse(successor.issuedAt) + gracePeriodMs, Date.parse(token.expiresAt));
    if (revokeEarlier || now >= endsAt) {
      revoke.push(token.id);
    } else {
      keep.push(token);
      nextRevocationAt = Math.min(nextRevocationAt ?? endsAt, endsAt);
    }
  }
  let cut = 0;
  while (keep.length > MAX_TOKENS) {
    revoke.push((keep.pop() as IssuedToken).id);
    cut++;
  }
  if (cut > 0) {
    nextRevocationAt = undefined;
    for (const token of keep.slice(1)) {
      const successor = tokens[tokens.indexOf(token) - 1] as IssuedToken;
      const endsAt = Math.min(Date.parse(successor.issuedAt) + gracePeriodMs, Date.parse(token.expiresAt));
      nextRevocationAt = Math.min(nextRevocationAt ?? endsAt, endsAt);
    }
  }
  return { keep, revoke, ...(nextRevocationAt !== undefined ? { nextRevocationAt } : {}), ...(cut > 0 ? { cut } : {}) };
}
