import { z } from 'zod';
import { API_VERSION, Conditions, identityText, ObjectMeta, TierReference, TokenLifetime } from './common.ts';

/** An identity in the RBAC style: a user or a group. */
export const Subject = z.object({
  /** Kind of the subject: User or Group. */
  kind: z.enum(['User', 'Group']),
  /** Name of the user or group, exactly as the identity provider reports it. */
  name: identityText(z.string().min(1).max(1024)),
});
export type Subject = z.infer<typeof Subject>;

/** Tightening of the tier's token policy for clients bound through this binding. */
export const TenantTokenPolicy = z.object({
  /** The longest token lifetime for these clients; may only tighten the tier's maxExpiration. */
  maxExpiration: TokenLifetime.optional(),
});
export type TenantTokenPolicy = z.infer<typeof TenantTokenPolicy>;

/** Who in this tenant namespace may hold a tier: the RoleBinding of tiers. */
export const TenantBindingSpec = z.object({
  /** The Tier granted. */
  tierRef: TierReference,
  /** Users and groups granted the tier in this namespace. */
  subjects: z.array(Subject).min(1).max(256),
  /**
   * Quota: how many ServiceAccountClients in this namespace whose subject this binding names may
   * hold its tier. Every such client counts, whatever else its subject qualifies for (a Tier's
   * groups, the default): it holds the tier through this binding, oldest first, and once the places
   * are taken the next one gets that tier here only through another TenantBinding with a place left,
   * else falls back to a lower tier it qualifies for, else QuotaExceeded. Clients of subjects the
   * binding does not name are neither counted nor limited.
   */
  maxClients: z.number().int().min(0).max(1_000_000).optional(),
  /** Optional tightening of the tier's token policy. */
  token: TenantTokenPolicy.optional(),
});
export type TenantBindingSpec = z.infer<typeof TenantBindingSpec>;

/** The observed state of a TenantBinding. */
export const TenantBindingStatus = z.object({
  /** Number of ServiceAccountClients resolved to the tier through this binding. */
  clients: z.number().int().min(0).optional(),
  /** The metadata.generation this status describes. */
  observedGeneration: z.number().int().min(0).optional(),
  /** Ready is False with reason TierNotFound while the referenced Tier does not exist. */
  conditions: Conditions.optional(),
});
export type TenantBindingStatus = z.infer<typeof TenantBindingStatus>;

export const TenantBinding = z.object({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal('TenantBinding'),
  metadata: ObjectMeta,
  spec: TenantBindingSpec,
  status: TenantBindingStatus.optional(),
});
export type TenantBinding = z.infer<typeof TenantBinding>;
