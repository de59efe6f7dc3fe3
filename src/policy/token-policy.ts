import type { ClientTokenRequest, TenantBinding, Tier } from '../api/index.ts';
import { MIN_ROTATION_INTERVAL } from '../api/common.ts';
import { formatDuration, parseDuration, parseRenewBefore } from './duration.ts';
import { quote } from './text.ts';

/**
 * The shortest time between a token's issue and its renewal, whatever expiration, renewBefore and
 * the caps of the tier and the TenantBinding combine to: a client never rotates faster than this
 * (a renewBefore that would is clamped, and the client told so). The CRDs refuse a client or a Tier
 * that sets both fields to less where CEL can tell (src/api/).
 */
export const MIN_ROTATION_INTERVAL_MS = parseDuration(MIN_ROTATION_INTERVAL);

/** What a client's tokens look like once the tier, the tenant and the client have had their say. */
export interface EffectiveTokenPolicy {
  /** Audiences asked of TokenRequest; empty means the API server's default audiences. */
  audiences: string[];
  expirationSeconds: number;
  renewBeforeMs: number;
  gracePeriodMs: number;
  /** Adjustments the client should be told about ("expiration 48h capped to 24h by the tier"). */
  notes: string[];
}

export type PolicyResult =
  | { ok: true; policy: EffectiveTokenPolicy }
  | { ok: false; reason: 'AudienceNotAllowed'; message: string };

/**
 * Combines the tier's policy, the tenant's tightening and the client's request. Clients may narrow
 * audiences but never widen them; lifetimes above the maximum are capped, and the cap is reported.
 */
export function effectiveTokenPolicy(
  tier: Tier,
  binding: TenantBinding | undefined,
  request: ClientTokenRequest | undefined,
): PolicyResult {
  const notes: string[] = [];
  const tierAudiences = tier.spec.token.audiences;
  const asked = request?.audiences ?? [];
  const outside = asked.filter((audience) => !tierAudiences.includes(audience));
  if (outside.length > 0) {
    return {
      ok: false,
      reason: 'AudienceNotAllowed',
      message: `audiences ${outside.map(quote).join(', ')} are not among tier "${tier.metadata.name}"'s audiences [${tierAudiences.join(', ')}]`,
    };
  }
  const audiences = [...(asked.length > 0 ? asked : tierAudiences)].sort();

  let maxMs = parseDuration(tier.spec.token.maxExpiration);
  let maxSource = `tier "${tier.metadata.name}"`;
  const tenantMax = binding?.spec.token?.maxExpiration;
  if (tenantMax !== undefined && parseDuration(tenantMax) < maxMs) {
    maxMs = parseDuration(tenantMax);
    maxSource = `TenantBinding "${binding?.metadata.name}"`;
  }
  let lifetimeMs = parseDuration(request?.expiration ?? tier.spec.token.defaultExpiration);
  if (lifetimeMs > maxMs) {
    notes.push(`expiration ${formatDuration(lifetimeMs)} capped to ${formatDuration(maxMs)} by ${maxSource}`);
    lifetimeMs = maxMs;
  }

  const renewBefore = request?.renewBefore ?? tier.spec.token.renewBefore;
  let renewBeforeMs = parseRenewBefore(renewBefore, lifetimeMs);
  if (renewBeforeMs >= lifetimeMs) {
    // Only reachable after a cap shortened the lifetime below a fixed renewBefore.
    renewBeforeMs = Math.floor(lifetimeMs / 3);
    notes.push(`renewBefore ${renewBefore} is not shorter than the lifetime; renewing at two thirds of it`);
  }
  if (lifetimeMs - renewBeforeMs < MIN_ROTATION_INTERVAL_MS) {
    renewBeforeMs = lifetimeMs - MIN_ROTATION_INTERVAL_MS;
    notes.push(
      `renewBefore ${renewBefore} of a ${formatDuration(lifetimeMs)} token would renew it less than ${formatDuration(MIN_ROTATION_INTERVAL_MS)} after issue; renewing ${formatDuration(MIN_ROTATION_INTERVAL_MS)} after issue`,
    );
  }
  return {
    ok: true,
    policy: {
      audiences,
      expirationSeconds: Math.floor(lifetimeMs / 1000),
      renewBeforeMs,
      gracePeriodMs: parseDuration(tier.spec.token.gracePeriod),
      notes,
    },
  };
}

/** When a token is due for renewal. Never earlier than its issue time. */
export function renewalTime(issuedAtMs: number, expiresAtMs: number, renewBeforeMs: number): number {
  return Math.max(issuedAtMs, expiresAtMs - renewBeforeMs);
}
