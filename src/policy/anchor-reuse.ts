/**
 * Reusing an anchor across failed attempts. Every attempt to mint a token first creates the anchor
 * Secret the token is to be bound to (mint.ts), so that a crash at any point leaves nothing valid
 * that is not named. When the TokenRequest is refused, no token is bound to that anchor: the next
 * attempt may bind its token to it instead of deleting it and creating another, which halves the
 * writes an outage costs (create + delete per attempt).
 *
 * Only an anchor the operator knows no token was issued for is reused: one whose TokenRequest the
 * API server answered with a refusal, remembered in this process's memory alone. It is forgotten
 * when an attempt takes it (a crash during that attempt, a restart or a new leader leaves an anchor
 * no one remembers, which is swept as an orphan as before), and never reused after any other kind
 * of failure, since a token may then exist that no one holds.
 */

/**
 * Whether an HTTP status from a TokenRequest proves no token was issued: a refusal before or by the
 * handler (bad request, RBAC or an admission policy, admission's Invalid, API Priority and Fairness
 * throttling). A 5xx or no answer may come after the token was signed; a 404 or 409 says the
 * anchor or the ServiceAccount is not what the operator thinks: none of them is reused.
 */
export function refusedWithoutToken(statusCode: number | undefined): boolean {
  return statusCode === 400 || statusCode === 403 || statusCode === 422 || statusCode === 429;
}

/** An anchor remembered as unused, or as the cache shows it. */
export interface AnchorRef {
  namespace: string;
  name: string;
  uid: string;
  /** Its tokenwarden.io/tier label. */
  tier: string;
}

/**
 * Whether the remembered unused anchor can carry the next token: it is still there, the very same
 * object (uid), in the namespace and tier of this attempt, and not being deleted.
 */
export function mayReuseAnchor(
  remembered: AnchorRef | undefined,
  cached: (AnchorRef & { deleting: boolean }) | undefined,
  want: { namespace: string; tier: string },
): boolean {
  if (remembered === undefined || cached === undefined || cached.deleting) return false;
  return (
    cached.uid === remembered.uid &&
    cached.name === remembered.name &&
    cached.namespace === remembered.namespace &&
    remembered.namespace === want.namespace &&
    cached.tier === want.tier
  );
}
