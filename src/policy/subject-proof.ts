/**
 * How long ago a client's subject was proven, and which Tiers' group grants that leaves it.
 *
 * access/client-subject.yaml proves the subject (user and groups, as of now) on every create, on
 * every spec change except one that only takes away, and on every change of the annotation
 * tokenwarden.io/subject-proof. So what admission proves is summed up by a digest of the spec without
 * revocationEpoch, plus that annotation: when the digest differs from the one the operator recorded,
 * someone proved the subject since. Suspending changes the digest without a proof, which is harmless:
 * a suspended client holds no token, and resuming it is proven.
 *
 * The operator records the digest and the time it first saw it in status.subjectProof (only it
 * writes status). The time is the operator's, so it is late by as long as the operator did not see
 * the change (down, or behind): a grant can outlive its maximum age by that much, never by more.
 */
import { createHash } from 'node:crypto';
import type { ClientSubject, ServiceAccountClientSpec, SubjectProof, Tier } from '../api/index.ts';
import { parseDuration } from './duration.ts';

/** Changing it (any value) re-proves the subject without editing the client. */
export const SUBJECT_PROOF_ANNOTATION = 'tokenwarden.io/subject-proof';

/** Sorted keys and sorted set-lists: the API server's CEL compares sets without order, so must this. */
function canonical(value: unknown, sortArrays: boolean): unknown {
  if (Array.isArray(value)) {
    const items = value.map((v) => canonical(v, sortArrays));
    return sortArrays ? items.sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b))) : items;
  }
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined).sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => [k, canonical(v, sortArrays)]));
  }
  return value;
}

/** The digest of what admission proves: the spec but revocationEpoch, and the proof annotation. */
export function proofDigest(spec: ServiceAccountClientSpec, annotations: Readonly<Record<string, string>> | undefined): string {
  const { revocationEpoch: _epoch, ...proven } = spec;
  // Every list of the spec (groups, audiences) is a set.
  const text = JSON.stringify(canonical({ spec: proven, proof: annotations?.[SUBJECT_PROOF_ANNOTATION] ?? '' }, true));
  return createHash('sha256').update(text).digest('hex');
}

export interface ProvableClient {
  metadata: { creationTimestamp?: string | undefined; annotations?: Readonly<Record<string, string>> | undefined };
  spec: ServiceAccountClientSpec;
  status?: { subjectProof?: SubjectProof | undefined } | undefined;
}

/**
 * The record to keep: the recorded one while the digest is the same; `now` for a new digest; the
 * creation time when nothing is recorded yet (the create was the proof, or, for a client from before
 * this record existed, the earliest time it can have been proven: the oldest, so the strictest).
 */
export function subjectProof(client: ProvableClient, now: number): SubjectProof {
  const digest = proofDigest(client.spec, client.metadata.annotations);
  const recorded = client.status?.subjectProof;
  if (recorded?.digest === digest) return recorded;
  // Whole seconds, as metav1.Time: rounded down, so the age is never under-counted.
  const provenAt = recorded === undefined && client.metadata.creationTimestamp !== undefined ? client.metadata.creationTimestamp : new Date(now).toISOString().replace(/\.\d{3}Z$/, 'Z');
  return { digest, provenAt };
}

export interface GroupGrantAge {
  /** Tiers whose groups no longer grant them to this client: their groupGrantMaxAge has passed. */
  expired: Set<string>;
  /** Tiers whose groups still do, with when they stop (ms). */
  current: Map<string, number>;
  /** The earliest of those, when the client must be looked at again. */
  nextExpiryAt?: number;
}

/** Which Tiers with a groupGrantMaxAge, among those whose groups the subject declares, have passed it. */
export function groupGrantAge(tiers: readonly Tier[], subject: ClientSubject, provenAt: number, now: number): GroupGrantAge {
  const age: GroupGrantAge = { expired: new Set(), current: new Map() };
  for (const tier of tiers) {
    const maxAge = tier.spec.groupGrantMaxAge;
    if (maxAge === undefined || !tier.spec.groups.some((g) => subject.groups.includes(g))) continue;
    const until = provenAt + parseDuration(maxAge);
    if (now >= until) {
      age.expired.add(tier.metadata.name);
    } else {
      age.current.set(tier.metadata.name, until);
      age.nextExpiryAt = Math.min(age.nextExpiryAt ?? until, until);
    }
  }
  return age;
}
