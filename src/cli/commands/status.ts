/** status NAME: a human summary of one client, its tokens, conditions, last Events and what to do. */
import { KubeApiError } from '../../kube/errors.ts';
import { EVENTS, type KubeObject } from '../../kube/resources.ts';
import { CliError, type Parsed } from '../args.ts';
import type { Command, Env } from '../command.ts';
import type { Cli } from '../context.ts';
import { condition, getClient, hintFor, observedCurrent, when, RENEW_REQUESTED_AT_ANNOTATION, type Client } from '../common.ts';

interface EventObject extends KubeObject {
  type?: string;
  reason?: string;
  note?: string;
  eventTime?: string;
  deprecatedLastTimestamp?: string;
  deprecatedCount?: number;
  series?: { count?: number; lastObservedTime?: string };
  regarding?: { kind?: string; name?: string; uid?: string };
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
    out(`Subject:         ${client.spec.subject.user}${client.spec.subject.groups?.length ? ` (groups: ${client.spec.subject.groups.join(', ')})` : ''}`);
    out(`Tier:            ${s?.tier ?? '<none>'}${s?.tierReason ? ` (${s.tierReason})` : ''}${client.spec.tierRef ? `, requested ${client.spec.tierRef.name}` : ''}`);
    const resolved = condition(client, 'TierResolved');
    if (resolved?.message) out(`Why:             ${resolved.message}`);
    const sa = s?.serviceAccount;
    out(`ServiceAccount:  ${sa ? `${sa.namespace}/${sa.name}` : '<none>'}`);
    out(`Secret:          ${s?.secretName ?? client.spec.secretName ?? `${client.metadata.name}-token`} (key token)`);
    if (client.spec.suspended) out('Suspended:       yes');
    out(`Revocation:      epoch ${client.spec.revocationEpoch ?? 0} (carried out: ${s?.revocationEpoch ?? 0})`);
    const renewRequested = client.metadata.annotations?.[RENEW_REQUESTED_AT_ANNOTATION];
    if (renewRequested) out(`Renew requested: ${when(renewRequested, now)}`);
    out(s?.tokens?.length ? 'Tokens:' : 'Tokens:          none');
    for (const [i, t] of (s?.tokens ?? []).entries()) {
      out(`  ${i === 0 ? 'current ' : 'previous'} ${t.id}`);
      out(`    issued   ${when(t.issuedAt, now)}`);
      if (i === 0) out(`    renew    ${when(t.renewAt, now)}`);
      out(`    expires  ${when(t.expiresAt, now)}${i > 0 ? ' (revoked when its grace period ends)' : ''}`);
    }
    if (s?.failedAttempts) out(`Failures:        ${s.failedAttempts} in a row, last ${when(s.lastFailureTime, now)}`);
    out(`Observed:        generation ${s?.observedGeneration ?? '-'} of ${client.metadata.generation ?? '-'}${observedCurrent(client) ? '' : ' (the operator has not caught up)'}`);
    out('Conditions:');
    for (const c of s?.conditions ?? []) {
      out(`  ${c.type.padEnd(13)} ${c.status.padEnd(5)} ${c.reason.padEnd(16)} ${c.message}`);
    }
    if (!s?.conditions?.length) out('  none');
    const events = await clientEvents(cli, client);
    out('Events:');
    if (events === undefined) out('  (you may not list Events in this namespace)');
    else if (events.length === 0) out('  none');
    for (const e of (events ?? []).slice(-5)) {
      const count = e.series?.count ?? e.deprecatedCount;
      out(`  ${when(eventTime(e), now)}  ${(e.type ?? '').padEnd(7)} ${(e.reason ?? '').padEnd(12)} ${e.note ?? ''}${count && count > 1 ? ` (x${count})` : ''}`);
    }
    const hint = hintFor(client);
    if (hint) out(`What to do:      ${hint}`);
    return 0;
  },
};
