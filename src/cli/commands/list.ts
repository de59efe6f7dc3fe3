import { SERVICE_ACCOUNT_CLIENTS } from '../../kube/resources.ts';
import { CliError, bool, str, type Parsed } from '../args.ts';
import type { Command, Env } from '../command.ts';
import { escapeControls as e } from '../../policy/text.ts';
import { condition, humanDuration, observedCurrent, table, type Client } from '../common.ts';

export const list: Command = {
  name: 'list',
  args: '',
  summary: 'Clients with their tier, Ready, reason and expiry',
  flags: [
    { name: 'all-namespaces', short: 'A', kind: 'boolean', help: 'in every namespace' },
    { name: 'user', kind: 'string', value: 'USER', help: 'only clients of this subject user' },
    { name: 'tier', kind: 'string', value: 'TIER', help: 'only clients resolved to this tier' },
    { name: 'selector', short: 'l', kind: 'string', value: 'SELECTOR', help: 'label selector of the clients' },
    { name: 'output', short: 'o', kind: 'string', value: 'FORMAT', help: 'wide or json' },
  ],
  async run(parsed: Parsed, env: Env) {
    const output = str(parsed, 'output');
    if (output !== undefined && output !== 'wide' && output !== 'json') throw new CliError(`--output ${output}: use wide or json`);
    if (parsed.positionals.length > 0) throw new CliError(`list takes no arguments, got ${parsed.positionals.join(' ')}`);
    const all = bool(parsed, 'all-namespaces');
    const user = str(parsed, 'user');
    const tier = str(parsed, 'tier');
    const selector = str(parsed, 'selector');
    const cli = env.connect();
    const { items } = await cli.client.list<Client>(SERVICE_ACCOUNT_CLIENTS, all ? undefined : cli.namespace, selector ? { labelSelector: selector } : {});
    const clients = items
      .filter((c) => user === undefined || c.spec?.subject?.user === user)
      .filter((c) => tier === undefined || c.status?.tier === tier)
      .sort((a, b) => `${a.metadata.namespace}/${a.metadata.name}`.localeCompare(`${b.metadata.namespace}/${b.metadata.name}`));
    if (output === 'json') {
      env.out(JSON.stringify({ apiVersion: 'v1', kind: 'List', items: clients }, null, 2));
      return 0;
    }
    if (clients.length === 0) {
      env.err(all ? 'No clients found.' : `No clients found in namespace ${cli.namespace}.`);
      return 0;
    }
    const now = Date.now();
    const header = [...(all ? ['NAMESPACE'] : []), 'NAME', 'SUBJECT', 'TIER', 'READY', 'REASON', 'EXPIRES', ...(output === 'wide' ? ['SERVICEACCOUNT', 'SECRET', 'MESSAGE'] : [])];
    const rows = clients.map((c) => {
      const ready = condition(c, 'Ready');
      const expires = c.status?.expiresAt ? Date.parse(c.status.expiresAt) : undefined;
      const sa = c.status?.serviceAccount;
      return [
        ...(all ? [c.metadata.namespace ?? ''] : []),
        c.metadata.name,
        // Escaped cell by cell: a newline in a subject or message cannot start a row of its own.
        e(c.spec?.subject?.user ?? ''),
        e(c.status?.tier ?? '<none>'),
        ready ? e(observedCurrent(c) ? ready.status : `${ready.status}*`) : 'Unknown',
        e(ready?.reason ?? ''),
        expires === undefined ? '' : expires > now ? `in ${humanDuration(expires - now)}` : `expired ${humanDuration(now - expires)} ago`,
        ...(output === 'wide' ? [sa ? e(`${sa.namespace}/${sa.name}`) : '', e(c.status?.secretName ?? ''), e(ready?.message ?? '')] : []),
      ];
    });
    env.out(table(header, rows));
    if (clients.some((c) => condition(c, 'Ready') && !observedCurrent(c))) env.out('* the operator has not reconciled the latest change of this client yet');
    return 0;
  },
};
