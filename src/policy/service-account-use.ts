import { createHash } from 'node:crypto';

/**
 * Who uses a ServiceAccount, and whether it may be deleted.
 *
 * A user's ServiceAccount in a tier namespace is shared by every client of that user in that tier,
 * possibly across operator instances (`--selector` shards). Each client records its use ON the
 * ServiceAccount before it mints a token from it: an annotation `clients.tokenwarden.io/<client
 * uid>` whose value is the scope of the instance that manages the client. Deletion is decided from
 * these records (and, for ServiceAccounts from before the records, the clients whose status names
 * it) and carried out with a resourceVersion precondition: a record written after the decision was
 * made changes the resourceVersion, the delete fails with 409, and the decision is made again. So a
 * ServiceAccount is never deleted under a client that has started to use it, and an instance never
 * deletes one that a client of another instance uses.
 */
export const USE_ANNOTATION_PREFIX = 'clients.tokenwarden.io/';

/** The scope of an instance: 10 hex digits of the SHA-256 of its `--selector` (empty: all). */
export function instanceScope(selector: string): string {
  return createHash('sha256').update(selector.trim(), 'utf8').digest('hex').slice(0, 10);
}

export const useAnnotation = (clientUid: string): string => `${USE_ANNOTATION_PREFIX}${clientUid}`;

/** The client uids recorded as users of a ServiceAccount, with the scope of each. */
export function recordedUses(annotations: Record<string, string> | undefined): { clientUid: string; scope: string }[] {
  return Object.entries(annotations ?? {})
    .filter(([key]) => key.startsWith(USE_ANNOTATION_PREFIX))
    .map(([key, scope]) => ({ clientUid: key.slice(USE_ANNOTATION_PREFIX.length), scope }));
}

export interface UseInput {
  /** The ServiceAccount's annotations as cached. */
  annotations: Record<string, string> | undefined;
  /** This instance's scope. */
  scope: string;
  /** The client giving the ServiceAccount up (its own record does not count), if any. */
  releasing?: string | undefined;
  /** Whether a client of this instance is live (in its cache, not being deleted). */
  live: (clientUid: string) => boolean;
  /** Live clients of this instance whose status names the ServiceAccount (records from before use records). */
  namedByStatus: readonly string[];
}

/**
 * The clients that keep the ServiceAccount: every record of another scope (this instance cannot
 * know those clients, so it never judges them); records of this scope whose client is live; clients
 * whose status names it. The releasing client is not one of them.
 */
export function serviceAccountUsers(input: UseInput): string[] {
  const users = new Set<string>();
  for (const { clientUid, scope } of recordedUses(input.annotations)) {
    if (clientUid === input.releasing) continue;
    if (scope !== input.scope || input.live(clientUid)) users.add(clientUid);
  }
  for (const uid of input.namedByStatus) if (uid !== input.releasing) users.add(uid);
  return [...users];
}
