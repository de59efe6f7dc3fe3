/**
 * The record of one issued token in status.tokens: its id (the anchor's name), when it was issued,
 * when it expires and when it is renewed, in metav1.Time format.
 */
import type { IssuedToken } from '../api/index.ts';
import { formatTime } from '../controller/conditions.ts';
import type { TokenClaims } from './token-claims.ts';
import { renewalTime } from './token-policy.ts';

export function tokenRecord(id: string, issuedAtMs: number, expiresAtMs: number, renewBeforeMs: number, digest?: string): IssuedToken {
  return {
    id,
    issuedAt: formatTime(new Date(issuedAtMs)),
    expiresAt: formatTime(new Date(expiresAtMs)),
    renewAt: formatTime(new Date(renewalTime(issuedAtMs, expiresAtMs, renewBeforeMs))),
    ...(digest !== undefined ? { digest } : {}),
  };
}

/**
 * Whether the token in the Secret is the one `issued` records: bound to its anchor and, when its
 * digest is recorded (tokens minted since), that very value — a token with its signature swapped
 * has the same claims. Tokens recorded without a digest are compared by their claims only.
 */
export function holdsIssuedToken(claims: TokenClaims, issued: IssuedToken): boolean {
  if (claims.boundSecretName !== issued.id) return false;
  return issued.digest === undefined || claims.digest === issued.digest;
}

export interface AdoptionInput {
  /** The client's tokens as status records them, newest first. */
  tokens: IssuedToken[];
  /** The claims of the token in the client's Secret. */
  secretClaims: TokenClaims | 'unreadable' | undefined;
  /** The Secret's renew-at annotation, written with that token. */
  secretRenewAt: string | undefined;
  /** Names of the client's anchors that exist. */
  anchors: ReadonlySet<string>;
  renewBeforeMs: number;
}

/**
 * A crash between writing the Secret and recording status leaves a token that only the Secret names:
 * it joins the token list (newest) rather than being replaced, when its anchor exists and it is not
 * older than the newest token status names.
 */
export function adoptTokenInSecret(input: AdoptionInput): IssuedToken[] {
  const { tokens, secretClaims: claims } = input;
  if (claims === undefined || claims === 'unreadable' || claims.boundSecretName === undefined) return tokens;
  const id = claims.boundSecretName;
  if (!input.anchors.has(id) || tokens.some((t) => t.id === id)) return tokens;
  if (tokens[0] !== undefined && Date.parse(tokens[0].issuedAt) > claims.issuedAtMs) return tokens;
  const adopted = tokenRecord(id, claims.issuedAtMs, claims.expiresAtMs, input.renewBeforeMs);
  return [{ ...adopted, renewAt: input.secretRenewAt ?? adopted.renewAt }, ...tokens];
}
