import { createHash } from 'node:crypto';

/** Kubernetes object names (DNS-1123 labels for ServiceAccounts here) are at most 63 characters. */
const MAX_NAME = 63;
/** Suffix lengths tried in turn; a longer one is only used when a shorter name is taken by another user. */
export const SUFFIX_LENGTHS = [10, 16, 24] as const;

/**
 * ServiceAccount names for a user, best first: the sanitized user name and a SHA-256 suffix of the
 * exact user string. Sanitizing alone would map "Alice@x" and "alice@x" to one name; the suffix
 * separates them, and the caller still compares the exact user kept in an annotation, moving to the
 * next candidate on a collision so two users never share a ServiceAccount.
 */
export function serviceAccountNameCandidates(user: string): string[] {
  const digest = createHash('sha256').update(user, 'utf8').digest('hex');
  return SUFFIX_LENGTHS.map((length) => {
    const suffix = digest.slice(0, length);
    const base = sanitize(user).slice(0, MAX_NAME - 1 - length).replace(/-+$/, '');
    return base.length > 0 ? `${base}-${suffix}` : `u-${suffix}`;
  });
}

export function serviceAccountName(user: string): string {
  return serviceAccountNameCandidates(user)[0] as string;
}

/** Lowercase; runs of characters outside [a-z0-9-] become "-"; no leading or trailing "-". */
export function sanitize(user: string): string {
  return user
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '');
}
