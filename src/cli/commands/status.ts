/** status NAME: a human summary of one client, its tokens, conditions, last Events and what to do. */
import { KubeApiError } from '../../kube/errors.ts';
import { EVENTS, type KubeObject } from '../../kube/resources.ts';
import { CliError, type Parsed } from '../args.ts';
import type { Command, Env } from '../command.ts';
import type { Cli } from '../context.ts';
import { escapeControls as e, quote, quoteShort } from '../../policy/text.ts';
import { condition, getClient, hintFor, humanDuration, observedCurrent, when, OPERATOR_REPORTING_CONTROLLER, RENEW_REQUESTED_AT_ANNOTATION, type Client } from '../common.ts';

export interface EventObject extends KubeObject {
  type?: string;
  reason?: string;
  note?: string;
  eventTime?: string;
  deprecatedLastTimestamp?: string;
  deprecatedCount?: number;
  series?: { count?: number; lastObservedTime?: string };
  regarding?: { kind?: string; name?: string; uid?: string };
  reportingController?: string;
}

const eventTime = (e: EventObject): string => e.series?.lastObservedTime ?? e.deprecatedLastTimestamp ?? e.eventTime ?? e.metadata?.creationTimestamp ?? '';

/** The client's Events, newest last; undefined when the caller may not list Events there. */
export async function clientEvents(cli: Cli, client: Client): Promise<EventObject[] | undefined> {
  let items: EventObject[];
  try {
    ({ items } = await cli.client.list<EventObject>(EVENTS, client.metadata.namespace, { fieldSelector: `regarding.name=${client.metadata.name}` }));
  } catch (err) {
    if (err instanceof KubeApiError && err.statusCode === 403) return undefined;
    if (!(err instanceof KubeApiError && err.statusCode === 400)) throw err;
    ({ items } = await cli.client.list<EventObject>(EVENTS, client.metadata.namespace));
  }
  return items
    .filter((e) => e.regarding?.kind === 'ServiceAccountClient' && e.regarding.name === client.metadata.name && (!e.regarding.uid || e.regarding.uid === client.metadata.uid))
    .sort((a, b) => eventTime(a).localeCompare(eventTime(b)));
}

/**
 * The renew request as `status` shows it: quoted and cut short (it is free text anyone who may edit
 * the client wrote), and how long ago only when it is an RFC 3339 time.
 */
export function renewRequestLine(value: string, now = Date.now()): string {
  const t = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.test(value) ? Date.parse(value) : Number.NaN;
  const ago = Number.isNaN(t) ? '' : ` (${t >= now ? `in ${humanDuration(t - now)}` : `${humanDuration(now - t)} ago`})`;
  return `${quoteShort(value)}${ago}`;
}

/**
 * One Event as a line. Anyone who may create Events in the namespace (the built-in edit role) can
 * write one about this client, with any reason and note: an Event that does not name tokenwarden's
 * reporting controller is marked as such, ahead of its reason, so it never reads as the operator's.
 * (access/operator-events.yaml keeps everyone but the operator and admins from naming it.)
 */
export function eventLine(ev: EventObject, now = Date.now()): string {
  const count = ev.series?.count ?? ev.deprecatedCount;
  const ours = ev.reportingController === OPERATOR_REPORTING_CONTROLLER;
  const mark = ours ? '' : `[not from tokenwarden: reported by ${ev.reportingController ? quote(ev.reportingController) : 'nobody named'}] `;
  return `${e(when(eventTime(ev), now))}  ${mark}${e(ev.type ?? '').padEnd(7)} ${e(ev.reason ?? '').padEnd(12)} ${e(ev.note ?? '')}${count && count > 1 ? ` (x${count})` : ''}`;
}

export const status: Command = {
  name: 'status',
  args: 'NAME',
  summary: 'A client in words: subject, tier and why, ServiceAccount, tokens, conditions, last Events, and what to do when not Ready',
  flags: [],
  async run(parsed: Parsed, env: Env) {
    const [name, ...rest] = parsed.positionals;
    if (name === undefined || rest.length > 0) throw new CliError('status takes one argument: the name of the client');
    const cli = env.connect();
    const client = await getClient(cli, name);
    const now = Date.now();
    const s = client.status;
    const out = env.out;
    out(`Name:            ${client.metadata.namespace}/${client.metadata.name}`);
    // Every string below that a tenant (or the API server echoing one) wrote is escaped field by
    // field: a newline in a subject or a message cannot make a line of its own.
    out(`Subject:         ${e(client.spec.subject.user)}${client.spec.subject.groups?.length ? ` (groups: ${client.spec.subject.groups.map(e).join(', ')})` : ''}`);
    out(`Tier:            ${e(s?.tier ?? '<none>')}${s?.tierReason ? ` (${e(s.tierReason)})` : ''}${client.spec.tierRef ? `, requested ${e(client.spec.tierRef.name)}` : ''}`);
    const resolved = condition(client, 'TierResolved');
    if (resolved?.message) out(`Why:             ${e(resolved.message)}`);
    const sa = s?.serviceAccount;
    out(`ServiceAccount:  ${sa ? e(`${sa.namespace}/${sa.name}`) : '<none>'}`);
    out(`Secret:          ${e(s?.secretName ?? client.spec.secretName ?? `${client.metadata.name}-token`)} (key token)`);
    if (client.spec.suspended) out('Suspended:       yes');
    out(`Revocation:      epoch ${client.spec.revocationEpoch ?? 0} (carried out: ${s?.revocationEpoch ?? 0})`);
    const renewRequested = client.metadata.annotations?.[RENEW_REQUESTED_AT_ANNOTATION];
    // Anyone who may edit the client sets this annotation to any text: shown quoted and cut short,
    // with how long ago only when it is a time.
    if (renewRequested) out(`Renew requested: ${renewRequestLine(renewRequested, now)}`);
    out(s?.tokens?.length ? 'Tokens:' : 'Tokens:          none');
    for (const [i, t] of (s?.tokens ?? []).entries()) {
      out(`  ${i === 0 ? 'current ' : 'previous'} ${e(t.id)}`);
      out(`    issued   ${e(when(t.issuedAt, now))}`);
      if (i === 0) out(`    renew    ${e(when(t.renewAt, now))}`);
      out(`    expires  ${e(when(t.expiresAt, now))}${i > 0 ? ' (revoked when its grace period ends)' : ''}`);
    }
    if (s?.failedAttempts) out(`Failures:        ${s.failedAttempts} in a row, last ${when(s.lastFailureTime, now)}`);
    out(`Observed:        generation ${s?.observedGeneration ?? '-'} of ${client.metadata.generation ?? '-'}${observedCurrent(client) ? '' : ' (the operator has not caught up)'}`);
    out('Conditions:');
    for (const c of s?.conditions ?? []) {
      out(`  ${e(c.type).padEnd(13)} ${e(c.status).padEnd(5)} ${e(c.reason).padEnd(16)} ${e(c.message)}`);
    }
    if (!s?.conditions?.length) out('  none');
    const events = await clientEvents(cli, client);
    out('Events:');
    if (events === undefined) out('  (you may not list Events in this namespace)');
    else if (events.length === 0) out('  none');
    for (const ev of (events ?? []).slice(-5)) out(`  ${eventLine(ev, now)}`);
    const hint = hintFor(client);
    if (hint) out(`What to do:      ${hint}`);
    return 0;
  },
};
