/**
 * The claims of a ServiceAccount token, read without verifying the signature: the operator only
 * uses them to recognise its own tokens in a Secret; the API server verifies tokens for real.
 */
export interface TokenClaims {
  audiences: string[];
  issuedAtMs: number;
  expiresAtMs: number;
  namespace: string;
  serviceAccountName: string;
  serviceAccountUid: string;
  /** Name of the object the token is bound to: for tokenwarden, the anchor Secret. */
  boundSecretName?: string;
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

/** The claims, or undefined when the text is not a ServiceAccount JWT. Never throws. */
export function readTokenClaims(token: string): TokenClaims | undefined {
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
  if (typeof raw.exp !== 'number' || typeof raw.iat !== 'number' || !k8s?.namespace || !sa?.name || !sa.uid) {
    return undefined;
  }
  const claims: TokenClaims = {
    audiences: Array.isArray(raw.aud) ? raw.aud : raw.aud ? [raw.aud] : [],
    issuedAtMs: raw.iat * 1000,
    expiresAtMs: raw.exp * 1000,
    namespace: k8s.namespace,
    serviceAccountName: sa.name,
    serviceAccountUid: sa.uid,
  };
  if (k8s.secret?.name) claims.boundSecretName = k8s.secret.name;
  return claims;
}
