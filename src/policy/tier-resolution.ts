import type { ClientSubject, TenantBinding, Tier } from '../api/index.ts';
import { quote } from './text.ts';

/** Why a client got its tier, as shown in status.tierReason. */
export type TierSource = 'Requested' | 'Default' | `TenantBinding/${string}` | `Tier/${string}`;

export type Resolution =
  | { resolved: true; tier: Tier; source: TierSource; binding?: TenantBinding; message: string }
  | { resolved: false; reason: 'NoMatchingTier' | 'TierNotAllowed' | 'TierNotFound'; message: string };

export interface ResolutionInput {
  subject: ClientSubject;
  requestedTier?: string;
  /** Every Tier that exists and is not being deleted. */
  tiers: readonly Tier[];
  /** TenantBindings in the client's namespace. */
  bindings: readonly TenantBinding[];
  /** Bindings whose quota this client does not fit in: their grant is passed over. */
  excludedBindings?: ReadonlySet<string>;
  /**
   * Tiers this client may hold only through a TenantBinding: those of bindings with maxClients that
   * name the subject and whose places are taken. Neither the tier's groups nor its being the
   * default grant it then, so a quota counts every client of its subjects that holds its tier.
   */
  bindingOnlyTiers?: ReadonlySet<string>;
  /** Tiers whose groups no longer grant them to this client (groupGrantMaxAge passed: subject-proof.ts). */
  expiredGroupGrants?: ReadonlySet<string> | undefined;
}

interface Grant {
  tier: Tier;
  binding?: TenantBinding;
}

export function bindingMatches(binding: TenantBinding, subject: ClientSubject): boolean {
  return binding.spec.subjects.some((s) =>
    s.kind === 'User' ? s.name === subject.user : subject.groups.includes(s.name),
  );
}

/** Every way the subject qualifies for a tier: TenantBindings first, then the tiers' own groups. */
function grants(input: ResolutionInput): Grant[] {
  const byName = new Map(input.tiers.map((tier) => [tier.metadata.name, tier]));
  const result: Grant[] = [];
  const bindings = [...input.bindings].filter((b) => !input.excludedBindings?.has(b.metadata.name)).sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
  for (const binding of bindings) {
    const tier = byName.get(binding.spec.tierRef.name);
    if (tier !== undefined && bindingMatches(binding, input.subject)) result.push({ tier, binding });
  }
  for (const tier of input.tiers) {
    if (input.bindingOnlyTiers?.has(tier.metadata.name) || input.expiredGroupGrants?.has(tier.metadata.name)) continue;
    if (tier.spec.groups.some((group) => input.subject.groups.includes(group))) result.push({ tier });
  }
  return result;
}

const sourceOf = (grant: Grant): TierSource =>
  grant.binding ? `TenantBinding/${grant.binding.metadata.name}` : `Tier/${grant.tier.metadata.name}`;

/** The single default tier; with several (a misconfiguration), the highest level, then the name, wins. */
export function defaultTier(tiers: readonly Tier[]): Tier | undefined {
  return [...tiers].filter((tier) => tier.spec.default).sort(byRank)[0];
}

/** Highest level first; equal levels by name so the choice is stable. */
function byRank(a: Tier, b: Tier): number {
  return b.spec.level - a.spec.level || a.metadata.name.localeCompare(b.metadata.name);
}

/**
 * The tier of a client: the requested tier if the subject qualifies for it; otherwise the highest
 * level among its TenantBindings and the tiers whose groups it is in (a binding wins a tie for the
 * same tier, as it may carry a quota or a tighter policy); otherwise the default tier.
 */
export function resolveTier(input: ResolutionInput): Resolution {
  const all = grants(input);
  const candidateDefault = defaultTier(input.tiers);
  const fallback = candidateDefault && !input.bindingOnlyTiers?.has(candidateDefault.metadata.name) ? candidateDefault : undefined;
  if (input.requestedTier !== undefined) {
    const requested = input.requestedTier;
    if (!input.tiers.some((tier) => tier.metadata.name === requested)) {
      return { resolved: false, reason: 'TierNotFound', message: `requested tier ${quote(requested)} does not exist` };
    }
    const grant = all.find((g) => g.tier.metadata.name === requested);
    if (grant !== undefined) {
      return { resolved: true, tier: grant.tier, source: 'Requested', ...(grant.binding ? { binding: grant.binding } : {}), message: `requested tier ${quote(requested)} granted by ${sourceOf(grant)}` };
    }
    if (fallback?.metadata.name === requested) {
      return { resolved: true, tier: fallback, source: 'Requested', message: `requested tier ${quote(requested)} is the default tier` };
    }
    return {
      resolved: false,
      reason: 'TierNotAllowed',
      message: `user ${quote(input.subject.user)} does not qualify for requested tier ${quote(requested)}: no TenantBinding in this namespace and none of its groups grant it`,
    };
  }
  const best = [...all].sort((a, b) => byRank(a.tier, b.tier) || Number(Boolean(b.binding)) - Number(Boolean(a.binding)))[0];
  if (best !== undefined) {
    return { resolved: true, tier: best.tier, source: sourceOf(best), ...(best.binding ? { binding: best.binding } : {}), message: `tier "${best.tier.metadata.name}" granted by ${sourceOf(best)}` };
  }
  if (fallback !== undefined) {
    return { resolved: true, tier: fallback, source: 'Default', message: `no tier matches; default tier "${fallback.metadata.name}"` };
  }
  return {
    resolved: false,
    reason: 'NoMatchingTier',
    message: `no tier matches user ${quote(input.subject.user)} or its groups, and there is no default tier`,
  };
}
