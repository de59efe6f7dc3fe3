/**
 * revoke-user USER: every token of a user, in one tier or all, by deleting the user's
 * ServiceAccounts in the tier namespaces (annotation tokenwarden.io/user, exact match), as the
 * design brief describes; the operator recreates them and issues new tokens to the user's clients.
 * Asks before deleting unless --yes.
 */
import { KubeApiError } from '../../kube/errors.ts';
import { NAMESPACES, SERVICE_ACCOUNTS, type KubeObject } from '../../kube/resources.ts';
import { TIER_LABEL, USER_ANNOTATION } from '../../reconcilers/labels.ts';
import { CliError, bool, str, type Parsed } from '../args.ts';
import type { Command, Env } from '../command.ts';
import { listTiers } from '../common.ts';

export const revokeUser: Command = {
  name: 'revoke-user',
  args: 'USER',
  summary: 'Revoke every token of a user, in one tier or all (deletes the user\'s ServiceAccounts; needs admin rights)',
  flags: [
    { name: 'tier', kind: 'string', value: 'TIER', help: 'only in this tier' },
    { name: 'selector', short: 'l', kind: 'string', value: 'SELECTOR', help: 'only in the tiers matching this label selector (an operator\'s --selector)' },
    { name: 'yes', short: 'y', kind: 'boolean', help: 'do not ask for confirmation' },
  ],
  async run(parsed: Parsed, env: Env) {
    const [user, ...rest] = parsed.positionals;
    if (user === undefined || rest.length > 0) throw new CliError('revoke-user takes one argument: the user, exactly as the identity provider names it');
    const tier = str(parsed, 'tier');
    const selector = str(parsed, 'selector');
    const cli = env.connect();
    let namespaces: { name: string; tier: string }[];
    try {
      const { items } = await cli.client.list<KubeObject>(NAMESPACES, undefined, { labelSelector: tier ? `${TIER_LABEL}=${tier}` : TIER_LABEL });
      namespaces = items.map((ns) => ({ name: ns.metadata?.name as string, tier: ns.metadata?.labels?.[TIER_LABEL] as string }));
      if (selector !== undefined) {
        const selected = new Set((await listTiers(cli, selector)).map((t) => t.metadata.name));
        namespaces = namespaces.filter((ns) => selected.has(ns.tier));
      }
    } catch (err) {
      if (err instanceof KubeApiError && err.statusCode === 403) throw new CliError(`you may not list namespaces${selector ? ' and Tiers' : ''}: revoke-user needs an admin (${err.serverMessage})`);
      throw err;
    }
    if (namespaces.length === 0) throw new CliError(tier ? `no tier namespace of tier "${tier}" (a namespace labelled ${TIER_LABEL}=${tier})` : `no tier namespaces (labelled ${TIER_LABEL})`);
    const targets: { namespace: string; tier: string; name: string; uid: string }[] = [];
    for (const ns of namespaces) {
      let items: KubeObject[];
      try {
        ({ items } = await cli.client.list<KubeObject>(SERVICE_ACCOUNTS, ns.name));
      } catch (err) {
        if (err instanceof KubeApiError && err.statusCode === 403) throw new CliError(`you may not list ServiceAccounts in ${ns.name}: revoke-user needs an admin`);
        throw err;
      }
      for (const sa of items) {
        if (sa.metadata?.annotations?.[USER_ANNOTATION] === user) targets.push({ namespace: ns.name, tier: ns.tier, name: sa.metadata.name as string, uid: sa.metadata.uid as string });
      }
    }
    if (targets.length === 0) {
      env.out(`no ServiceAccount of ${user} in ${tier ? `tier ${tier}` : `any of ${namespaces.length} tier namespace(s)`}: nothing to revoke`);
      return 0;
    }
    const list = targets.map((t) => `${t.namespace}/${t.name} (tier ${t.tier})`).join(', ');
    if (!bool(parsed, 'yes')) {
      if (env.confirm === undefined) throw new CliError(`would delete ${targets.length} ServiceAccount(s) of ${user}: ${list}; no terminal to confirm on: add --yes`);
      const go = await env.confirm(`Delete ${targets.length} ServiceAccount(s) of ${user}, revoking every token they hold: ${list}?`);
      if (!go) throw new CliError('cancelled; nothing was deleted');
    }
    for (const t of targets) {
      try {
        // Exactly the one listed: a ServiceAccount recreated meanwhile holds no old token.
        await cli.client.delete(SERVICE_ACCOUNTS, t.namespace, t.name, { preconditions: { uid: t.uid } });
      } catch (err) {
        if (err instanceof KubeApiError && (err.statusCode === 404 || err.statusCode === 409)) continue;
        if (err instanceof KubeApiError && err.statusCode === 403) throw new CliError(`you may not delete ServiceAccounts in ${t.namespace}: revoke-user needs an admin`);
        throw err;
      }
      env.out(`serviceaccount ${t.namespace}/${t.name} deleted (tier ${t.tier})`);
    }
    env.out(`every token of ${user} in ${tier ? `tier ${tier}` : 'those tiers'} is revoked; the operator recreates the ServiceAccounts and issues new tokens to the user's clients`);
    return 0;
  },
};
