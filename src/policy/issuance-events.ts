/**
 * What a client is told when it gets a new token: one Normal Event saying why (Issued, Rotated,
 * Resumed, Repaired), and a Warning for any cap on its request it was not told of yet.
 */
import type { ReissueDecision } from './reissue.ts';

export type IssuanceEvent = { type: 'Normal' | 'Warning'; reason: string; note: string };

export interface IssuedInput {
  decision: ReissueDecision;
  /** The client held no token before this one. */
  first: boolean;
  /** The client was suspended until now. */
  resumed: boolean;
  /** The revocation epoch the client's status recorded before this token. */
  revokedEpoch: number;
  tierName: string;
  /** The caps on the client's request (EffectiveTokenPolicy.notes). */
  notes: readonly string[];
  /** The Ready message the client has now: it carries the caps it was told of. */
  toldIn: string;
}

/** A new token for a renewal or an expiry is a rotation, in the Events and in the metrics. */
export const isRotation = (decision: ReissueDecision): boolean => decision.reason === 'RenewalDue' || decision.reason === 'Expired';

export function issuedEvents(input: IssuedInput): IssuanceEvent[] {
  const events = [issuedEvent(input)];
  const untold = input.notes.filter((note) => !input.toldIn.includes(note));
  if (untold.length > 0) events.push({ type: 'Warning', reason: 'Capped', note: untold.join('; ') });
  return events;
}

function issuedEvent({ decision, first, resumed, revokedEpoch, tierName }: IssuedInput): IssuanceEvent {
  if (resumed) return { type: 'Normal', reason: 'Resumed', note: `resumed: issued a new token in tier ${tierName}` };
  if (first && decision.reason === 'NotIssued') return { type: 'Normal', reason: 'Issued', note: `issued a token in tier ${tierName}` };
  if (isRotation(decision)) return { type: 'Normal', reason: 'Rotated', note: `rotated the token: ${decision.message}` };
  if (decision.reason === 'RevocationRequested') return { type: 'Normal', reason: 'Issued', note: `issued a fresh token after revocation epoch ${revokedEpoch}` };
  if (decision.repair) return { type: 'Normal', reason: 'Repaired', note: `issued a new token: ${decision.message}` };
  return { type: 'Normal', reason: 'Issued', note: `issued a new token: ${decision.message}` };
}
