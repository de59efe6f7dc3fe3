import { createHash } from 'node:crypto';

/**
 * The claims of a ServiceAccount token, read without verifying the signature: the operator only
 * uses them to recognise its own tokens in a Secret; the API server verifies tokens for real.
 */
/** Hex digits of SHA-256 kept as a token's digest: enough to tell tokens apart, never the token. */
export const TOKEN_DIGEST_CHARS = 32;

/** The digest of a whole token value, what status.tokens[].digest records (never the token itself). */
export function tokenDigest(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex').slice(0, TOKEN_DIGEST_CHARS);
}

export interface TokenClaims {
  audiences: string[];
  issuedAtMs: number;
  expiresAtMs: number;
  namespace: string;
  serviceAccountName: string;
  serviceAccountUid: string;
  /** Name of the object the token is bound to: for tokenwarden, the anchor Secret. */
  boundSecretName?: string;
  /** tokenDigest of the whole value, signature included (set by the Secret cache). */
  digest?: string;
}

interface RawClaims {
  aud?: string | string[];
  iat?: number;
  exp?: number;
  'kubernetes.io'?: {
    namespace?: string;
    serviceaccount?: { name?: string; uid?: string };
    secret?: { name?: string; uid?: string };
  };
}

/**
 * Bounds on what is read from a token nobody has verified: anyone may put any text under the token
 * key of a Secret labelled as tokenwarden's, and what is read stays in the cache. A real token of a
 * tier (at most 16 audiences of 253 characters, names of at most 253) is far below each.
 */
export const CLAIM_LIMITS = {
  /** Characters of the whole token. */
  tokenChars: 16 * 1024,
  /** Entries of aud. */
  audiences: 32,
  /** Characters of each aud entry, namespace, name and uid. */
  valueChars: 512,
} as const;

const bounded = (value: unknown): value is string => typeof value === 'string' && value.length > 0 && value.length <= CLAIM_LIMITS.valueChars;

/**
 * The claims, or undefined when the text is not a ServiceAccount JWT or exceeds CLAIM_LIMITS (which
 * a token the API server minted for a tier never does). Never throws.
 */
export function readTokenClaims(token: string): TokenClaims | undefined {
  if (token.length > CLAIM_LIMITS.tokenChars) return undefined;
  const parts = token.split('.');
  if (parts.length !== 3 || parts[1] === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
  // Anything but a JSON object (null, a number, an array) is not a claims set.
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return undefined;
  const raw = parsed as RawClaims;
  const k8s = raw['kubernetes.io'];
  const sa = k8s?.serviceaccount;
  if (typeof raw.exp !== 'number' || typeof raw.iat !== 'number' || !bounded(k8s?.namespace) || !bounded(sa?.name) || !bounded(sa?.uid)) {
    return undefined;
  }
  const audiences: unknown[] = Array.isArray(raw.aud) ? raw.aud : raw.aud ? [raw.aud] : [];
  if (audiences.length > CLAIM_LIMITS.audiences || !audiences.every(bounded)) return undefined;
  const claims: TokenClaims = {
    audiences: [...audiences],
    issuedAtMs: raw.iat * 1000,
    expiresAtMs: raw.exp * 1000,
    namespace: k8s.namespace,
    serviceAccountName: sa.name,
    serviceAccountUid: sa.uid,
  };
  if (k8s.secret?.name) {
    if (!bounded(k8s.secret.name)) return undefined;
    claims.boundSecretName = k8s.secret.name;
  }
  return claims;
}
