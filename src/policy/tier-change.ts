import type { Tier } from '../api/index.ts';

/**
 * Which clients a change of one Tier can move, by the rules of tier resolution (tier-resolution.ts):
 *
 * - the clients that request it (spec.tierRef): always;
 * - its members (status.tier): when anything but its groups, level or default flag changes (token
 *   policy, namespace, access) or it comes or goes; a member that a change of those three can move
 *   is reached through them (a removed group, its binding, the default);
 * - the clients that qualify for it through its groups: with a new level, existence or
 *   groupGrantMaxAge, those of every group it had or has (it ranks anew among their grants, or
 *   their grant's age is counted anew); otherwise those of the groups added or removed only (a
 *   client of a group it keeps qualifies as before);
 * - the clients granted it by a TenantBinding in their namespace: when its level or existence
 *   changes;
 * - the clients on the default tier or on none, and those requesting a default tier (the default is
 *   granted to whoever asks for it): when it is, was or becomes the default, or its level changes
 *   while it is one (the highest default wins), or it comes or goes.
 *
 * Everything else resolves the same before and after, so a Tier edit costs work in proportion to
 * the clients it concerns, not to every client of the cluster.
 */
export interface TierChangeScope {
  /** Whether its members (status.tier) may resolve differently. */
  members: boolean;
  /** Groups whose members may now rank the tier differently. */
  groups: string[];
  /** Whether clients granted the tier by a TenantBinding may rank it differently. */
  bindings: boolean;
  /** Whether clients on the default tier or on none, or requesting a default tier, may resolve differently. */
  defaults: boolean;
}

/** `old` undefined: the Tier is new; `next` undefined: it is gone (or going). */
export function tierChangeScope(old: Tier | undefined, next: Tier | undefined): TierChangeScope {
  const live = (tier: Tier | undefined) => (tier !== undefined && tier.metadata.deletionTimestamp === undefined ? tier : undefined);
  const before = live(old);
  const after = live(next);
  const existenceChanged = (before === undefined) !== (after === undefined);
  const levelChanged = before?.spec.level !== after?.spec.level;
  const groupsBefore = before?.spec.groups ?? [];
  const groupsAfter = after?.spec.groups ?? [];
  const ranking = existenceChanged || levelChanged;
  // A new maximum age of its group grant may give the tier back to, or take it from, any client of its groups.
  const groupGrantChanged = before?.spec.groupGrantMaxAge !== after?.spec.groupGrantMaxAge;
  const wasDefault = before?.spec.default === true;
  const isDefault = after?.spec.default === true;
  const changedGroups = [...groupsBefore.filter((g) => !groupsAfter.includes(g)), ...groupsAfter.filter((g) => !groupsBefore.includes(g))];
  return {
    members: existenceChanged || JSON.stringify(beyondRanking(before)) !== JSON.stringify(beyondRanking(after)),
    groups: ranking || groupGrantChanged ? [...new Set([...groupsBefore, ...groupsAfter])] : [...new Set(changedGroups)],
    bindings: ranking,
    defaults: wasDefault !== isDefault || ((wasDefault || isDefault) && ranking),
  };
}

/** A Tier's spec without what ranks it among a client's grants (groups, level, default). */
function beyondRanking(tier: Tier | undefined): unknown {
  if (tier === undefined) return undefined;
  const { groups: _groups, level: _level, default: _default, ...rest } = tier.spec;
  return rest;
}
