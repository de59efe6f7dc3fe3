/**
 * The last proof of the client's subject (policy/subject-proof.ts) recorded in status, and what it
 * means for the Tiers whose groups grant only for a while (groupGrantMaxAge): the condition
 * GroupGrantExpired while any of them concerns the subject, and a look again when one expires.
 */
import type { SubjectProof } from '../../api/index.ts';
import { removeCondition, setCondition } from '../../controller/conditions.ts';
import { formatDuration, parseDuration } from '../../policy/duration.ts';
import { SUBJECT_PROOF_ANNOTATION, subjectProof } from '../../policy/subject-proof.ts';
import { liveTiers, type OperatorContext } from '../context.ts';
import { clientGroupGrantAge } from '../resolution.ts';
import type { Client, Outcome } from './status.ts';

export const GROUP_GRANT_EXPIRED = 'GroupGrantExpired';
const LOOK_AGAIN_MAX_MS = 3_600_000;

/** The client as it is to be reconciled: its status carries the proof as of now. */
export function withSubjectProof(client: Client, now: number): { client: Client; proof: SubjectProof } {
  const proof = subjectProof(client, now);
  return { client: { ...client, status: { ...client.status, subjectProof: proof } }, proof };
}

/** The proof recorded, the condition set (or removed), and the key requeued when a grant expires. */
export function recordSubjectProof(op: OperatorContext, client: Client, proof: SubjectProof, outcome: Outcome): Outcome {
  const now = op.now();
  const tiers = liveTiers(op.caches);
  const age = clientGroupGrantAge(tiers, client, now);
  let conditions = outcome.status.conditions;
  if (age === undefined || (age.expired.size === 0 && age.current.size === 0)) {
    conditions = removeCondition(conditions, GROUP_GRANT_EXPIRED);
  } else {
    const maxAge = (name: string) => formatDuration(parseDuration(tiers.find((t) => t.metadata.name === name)?.spec.groupGrantMaxAge ?? '0s'));
    const expired = [...age.expired].sort();
    const current = [...age.current].sort(([a], [b]) => a.localeCompare(b));
    const proven = `the subject was last proven at ${proof.provenAt}`;
    const message =
      expired.length > 0
        ? `${proven}; the groups of tier ${expired.map((t) => `${t} (groupGrantMaxAge ${maxAge(t)})`).join(', ')} no longer apply to this client. ` +
          `The subject or a delegate proves it again by editing the client or changing its annotation ${SUBJECT_PROOF_ANNOTATION}`
        : `${proven}; the groups of tier ${current.map(([t, until]) => `${t} apply until ${new Date(until).toISOString().replace(/\.\d{3}Z$/, 'Z')}`).join(', ')}`;
    conditions = setCondition(
      conditions,
      { type: GROUP_GRANT_EXPIRED, status: expired.length > 0 ? 'True' : 'False', reason: expired.length > 0 ? 'ProofTooOld' : 'Proven', message },
      client.metadata.generation,
      new Date(now),
    );
  }
  // At most an hour ahead: a timer beyond 2^31 ms (24.8 days) would fire at once.
  const untilExpiry = age?.nextExpiryAt === undefined ? undefined : Math.min(Math.max(age.nextExpiryAt - now, 0) + 100, LOOK_AGAIN_MAX_MS);
  const requeueAfterMs = [outcome.requeueAfterMs, untilExpiry].filter((ms) => ms !== undefined).reduce<number | undefined>((a, b) => Math.min(a ?? b, b), undefined);
  return {
    ...outcome,
    status: { ...outcome.status, subjectProof: proof, ...(conditions !== undefined ? { conditions } : {}) },
    ...(requeueAfterMs !== undefined ? { requeueAfterMs } : {}),
  };
}
