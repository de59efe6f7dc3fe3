/**
 * The client's status: built from the outcome of one reconcile, written only when it changed (so a
 * steady state makes no writes), with the Events that go with it.
 */
import type { ServiceAccountClient, ServiceAccountClientStatus } from '../../api/index.ts';
import { setCondition } from '../../controller/conditions.ts';
import { isNotFound } from '../../kube/errors.ts';
import { SERVICE_ACCOUNT_CLIENTS } from '../../kube/resources.ts';
import type { OperatorContext } from '../context.ts';

export type Client = ServiceAccountClient;

export type ClientEvent = { type: 'Normal' | 'Warning'; reason: string; note: string };

/** The outcome of one reconcile: the status to record and the Events that go with it. */
export interface Outcome {
  status: ServiceAccountClientStatus;
  events: ClientEvent[];
  requeueAfterMs?: number;
}

export type ConditionInput = { type: string; status: 'True' | 'False' | 'Unknown'; reason: string; message: string };

/** TierResolved=True, as every step after resolution records it. */
export type TierResolvedCondition = { type: 'TierResolved'; status: 'True'; reason: 'Resolved'; message: string };

export const clientRef = (key: string): string => `ServiceAccountClient/${key}`;

export function conditionsFor(client: Client, now: number, updates: ConditionInput[]) {
  let conditions = client.status?.conditions ?? [];
  for (const update of updates) conditions = setCondition(conditions, update, client.metadata.generation, new Date(now));
  return conditions;
}

export function withCondition(client: Client, update: ConditionInput, now: number): ServiceAccountClientStatus {
  return { ...client.status, conditions: conditionsFor(client, now, [update]) };
}

/** Status without tokens, for a client that holds none and is not issuing any. */
export function clearedTokens(status: ServiceAccountClientStatus): ServiceAccountClientStatus {
  const { tokens: _t, expiresAt: _e, renewAt: _r, serviceAccount: _s, ...rest } = status;
  return { ...withoutFailures(rest), tokens: [] };
}

/** Status without the record of failed issuance: after a success, or when nothing is to be issued. */
export function withoutFailures(status: ServiceAccountClientStatus): ServiceAccountClientStatus {
  const { failedAttempts: _f, lastFailureTime: _l, lastFailureRenewRequest: _q, ...rest } = status;
  return rest;
}

/** Writes status only when it changed, so a steady state makes no writes; then records Events. */
export async function writeStatus(op: OperatorContext, client: Client, outcome: Outcome): Promise<void> {
  const status = { ...outcome.status, observedGeneration: client.metadata.generation };
  if (JSON.stringify(normalizeStatus(status)) !== JSON.stringify(normalizeStatus(client.status ?? {}))) {
    const key = `${client.metadata.namespace}/${client.metadata.name}`;
    try {
      const written = await op.kube.patchStatus(SERVICE_ACCOUNT_CLIENTS, client.metadata.namespace, client.metadata.name, { status: nullMissing(status, client.status ?? {}) });
      op.freshness.wrote(clientRef(key), written);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }
  for (const event of outcome.events) void op.events.record(client, event);
}

/** A merge patch removes a field only when it is null: null out what the new status leaves out. */
function nullMissing(next: object, previous: object): Record<string, unknown> {
  const patch: Record<string, unknown> = { ...next };
  for (const key of Object.keys(previous)) if (patch[key] === undefined) patch[key] = null;
  return patch;
}

function normalizeStatus(status: ServiceAccountClientStatus): unknown {
  const sorted: Record<string, unknown> = Object.fromEntries(Object.entries(status).filter(([, v]) => v !== undefined).sort(([a], [b]) => a.localeCompare(b)));
  if (Array.isArray(sorted.conditions)) {
    sorted.conditions = [...(sorted.conditions as { type: string }[])]
      .map((c) => Object.fromEntries(Object.entries(c).sort(([a], [b]) => a.localeCompare(b))))
      .sort((a, b) => String(a.type).localeCompare(String(b.type)));
  }
  if (Array.isArray(sorted.tokens)) {
    sorted.tokens = (sorted.tokens as object[]).map((t) => Object.fromEntries(Object.entries(t).sort(([a], [b]) => a.localeCompare(b))));
  }
  if (sorted.serviceAccount) {
    sorted.serviceAccount = Object.fromEntries(Object.entries(sorted.serviceAccount as object).sort(([a], [b]) => a.localeCompare(b)));
  }
  return sorted;
}
