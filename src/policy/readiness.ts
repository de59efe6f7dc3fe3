import type { IssuedToken } from '../api/index.ts';
import type { TokenClaims } from './token-claims.ts';
import { holdsIssuedToken } from './token-record.ts';

/**
 * Ready, derived from what the client's Secret really holds — not from what the reconcile meant to
 * do. The client is Ready only when the Secret holds a readable token of the ServiceAccount it
 * resolved to (the tier's namespace, that user's ServiceAccount, its current uid), bound to the
 * newest token the status names, not expired, and no failed issuance is on record: so a client that
 * cannot renew, or whose Secret holds anything else, is never Ready.
 */
export interface ReadinessInput {
  now: number;
  /** The claims of the token in the Secret after this reconcile; 'unreadable', or undefined for none. */
  secretToken: TokenClaims | 'unreadable' | undefined;
  /** The ServiceAccount the client's tokens must belong to. */
  serviceAccount: { namespace: string; name: string; uid: string };
  /** The newest token in the status to be written. */
  newest: IssuedToken | undefined;
  /** status.failedAttempts to be written (0 or undefined: none). */
  failedAttempts: number | undefined;
  /** Caps the client is told of (policy/token-policy.ts notes). */
  notes: readonly string[];
}

export interface ReadyCondition {
  type: 'Ready';
  status: 'True' | 'False';
  reason: string;
  message: string;
}

export function readiness(input: ReadinessInput): ReadyCondition {
  const notReady = (reason: string, message: string): ReadyCondition => ({ type: 'Ready', status: 'False', reason, message });
  const { secretToken: claims, serviceAccount: sa, newest, now } = input;
  if ((input.failedAttempts ?? 0) > 0) return notReady('IssuanceFailed', 'issuing failed and has not succeeded since');
  if (claims === undefined) return notReady('TokenMissing', 'the Secret holds no token');
  if (claims === 'unreadable') return notReady('TokenUnreadable', 'the Secret holds something that is not a ServiceAccount token');
  if (claims.namespace !== sa.namespace || claims.serviceAccountName !== sa.name || claims.serviceAccountUid !== sa.uid) {
    return notReady('TokenMismatch', `the Secret holds a token of ServiceAccount ${claims.namespace}/${claims.serviceAccountName}, not of ${sa.namespace}/${sa.name}`);
  }
  if (newest === undefined || !holdsIssuedToken(claims, newest)) return notReady('TokenMismatch', 'the Secret holds a token other than the one issued');
  if (claims.expiresAtMs <= now) return notReady('TokenExpired', 'the token in the Secret has expired');
  return {
    type: 'Ready',
    status: 'True',
    reason: 'TokenIssued',
    message: [`token valid until ${newest.expiresAt}, renewal at ${newest.renewAt}`, ...input.notes].join('; '),
  };
}
