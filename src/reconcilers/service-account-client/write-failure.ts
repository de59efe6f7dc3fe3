/**
 * Writes that may fail after a token was minted, or while tokens are being taken away: the
 * client's Secret, an anchor's deletion, the release of a ServiceAccount. Whatever refuses them (the
 * operator's fence, an admission policy or webhook, a quota, a 422), the failure names the object
 * and is recorded on the client (issuance-failure.ts writeFailed) instead of thrown: a thrown
 * failure left status as it was, so the next pass (brought forward by the operator's own watch
 * events) did the same work again, minted again, and failed again.
 *
 * A conflict or a NotFound is a stale cache, not a failure: it is still thrown, and the work queue
 * retries once the cache has caught up.
 */
import { isConflict, isNotFound } from '../../kube/errors.ts';
import { causeOf } from '../issuance-failure.ts';

export class WriteFailedError extends Error {
  /** "ServiceAccount ns/name", "Secret ns/name", ... */
  readonly object: string;
  constructor(verb: string, object: string, cause: unknown) {
    super(`${verb} ${object}: ${causeOf(cause)}`, { cause });
    this.name = 'WriteFailedError';
    this.object = object;
  }
}

/** `err` as a WriteFailedError naming its object; a stale cache's conflict or NotFound as it is. */
export function writeFailure(verb: string, object: string, err: unknown): unknown {
  if (err instanceof WriteFailedError || isConflict(err) || isNotFound(err)) return err;
  return new WriteFailedError(verb, object, err);
}

/** Runs `fn`; a WriteFailedError is collected into `failures` instead of thrown. */
export async function tolerate<T>(failures: string[], fn: () => Promise<T>): Promise<T | undefined> {
  try {
    return await fn();
  } catch (err) {
    if (!(err instanceof WriteFailedError)) throw err;
    failures.push(err.message);
    return undefined;
  }
}
