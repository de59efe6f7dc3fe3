/**
 * metav1.Condition helpers. Functions return new arrays and never change their input, so a
 * reconciler can compare what it read with what it would write and skip no-op status writes.
 */

import { escapeControls } from '../policy/text.ts';

export type ConditionStatus = 'True' | 'False' | 'Unknown';

/** metav1.Condition (structurally the same as the API package's Condition). */
export interface Condition {
  type: string;
  status: ConditionStatus;
  observedGeneration?: number;
  /** RFC 3339, second precision, as metav1.Time serializes. */
  lastTransitionTime: string;
  reason: string;
  message: string;
}

export interface ConditionUpdate {
  type: string;
  status: ConditionStatus;
  reason: string;
  message?: string;
}

/** metav1.Time format: "2006-01-02T15:04:05Z" (no fractional seconds). */
export function formatTime(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/**
 * Sets a condition, returning a new list. lastTransitionTime is kept while the status stays the
 * same, and set to `now` when it flips or the condition is new. Order of the others is kept.
 */
export function setCondition(
  conditions: readonly Condition[] | undefined,
  update: ConditionUpdate,
  observedGeneration: number | undefined,
  now: Date = new Date(),
): Condition[] {
  const list = conditions ?? [];
  const existing = list.find((c) => c.type === update.type);
  const next: Condition = {
    type: update.type,
    status: update.status,
    observedGeneration,
    lastTransitionTime: existing && existing.status === update.status ? existing.lastTransitionTime : formatTime(now),
    reason: update.reason,
    // Messages quote tenant text and API server errors that echo it (a label, a subject): whatever
    // their source, they reach terminals through `kubectl get -o wide` and describe inert.
    message: escapeControls(update.message ?? ''),
  };
  if (observedGeneration === undefined) delete next.observedGeneration;
  if (!existing) return [...list.map(copy), next];
  return list.map((c) => (c.type === update.type ? next : copy(c)));
}

export function removeCondition(conditions: readonly Condition[] | undefined, type: string): Condition[] {
  return (conditions ?? []).filter((c) => c.type !== type).map(copy);
}

export function getCondition(conditions: readonly Condition[] | undefined, type: string): Condition | undefined {
  return conditions?.find((c) => c.type === type);
}

export function isConditionTrue(conditions: readonly Condition[] | undefined, type: string): boolean {
  return getCondition(conditions, type)?.status === 'True';
}

export function isConditionFalse(conditions: readonly Condition[] | undefined, type: string): boolean {
  return getCondition(conditions, type)?.status === 'False';
}

/**
 * Whether writing `b` over `a` would change anything a reader cares about: a condition added or
 * removed, or a status, reason, message or observedGeneration changed. Order is ignored, and so
 * is lastTransitionTime (setCondition only moves it when the status changes, which counts anyway).
 */
export function conditionsDiffer(a: readonly Condition[] | undefined, b: readonly Condition[] | undefined): boolean {
  const left = a ?? [];
  const right = b ?? [];
  if (left.length !== right.length) return true;
  for (const x of left) {
    const y = right.find((c) => c.type === x.type);
    if (!y) return true;
    if (x.status !== y.status || x.reason !== y.reason || (x.message ?? '') !== (y.message ?? '') || x.observedGeneration !== y.observedGeneration) {
      return true;
    }
  }
  return false;
}

function copy(c: Condition): Condition {
  return { ...c };
}
