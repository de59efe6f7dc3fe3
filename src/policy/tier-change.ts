import type { Tier } from '../api/index.ts';

/**
 * Which clients a change of one Tier can move, by the rules of tier resolution (tier-resolution.ts):
 *
 * - its members (status.tier) and the clients that request it (spec.tierRef): always, since any
 *   change of its spec (token policy, namespace, access) or its existence concerns them;
 * - the clients that qualify for it (a subject group among its groups, before or after, or a
 *   TenantBinding of it in their namespace): when its level, its groups or its existence change,
 *   since that is what ranks it among their grants;
 * - the clients on the default tier or on none, and those requesting a default tier (the default is
 *   granted to whoever asks for it): when it is, was or becomes the default, or its level changes
 *   while it is one (the highest default wins), or it comes or goes.
 *
 * Everything else resolves the same before and after, so a Tier edit costs work in proportion to
 * the clients it concerns, not to every client of the cluster.
 */
export interface TierChangeScope {
  /** Groups whose members may now rank the tier differently: its groups before and after. */
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
  const groupsChanged = existenceChanged || groupsBefore.length !== groupsAfter.length || groupsBefore.some((g) => !groupsAfter.includes(g));
  const ranking = existenceChanged || levelChanged;
  const wasDefault = before?.spec.default === true;
  const isDefault = after?.spec.default === true;
  return {
    groups: ranking || groupsChanged ? [...new Set([...groupsBefore, ...groupsAfter])] : [],
    bindings: ranking,
    defaults: wasDefault !== isDefault || ((wasDefault || isDefault) && ranking),
  };
}
