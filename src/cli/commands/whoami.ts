/**
 * whoami: who the API server says you are, and the tier a client of yours would get in the
 * namespace, decided by the operator's own resolution and quota ranking (src/policy/).
 */
import type { TenantBinding, Tier } from '../../api/index.ts';
import { KubeApiError } from '../../kube/errors.ts';
import { SERVICE_ACCOUNT_CLIENTS } from '../../kube/resources.ts';
import { explainQuotas, planQuotas, quotaCandidateOf, type QuotaResolution } from '../../policy/tier-quota.ts';
import { resolveTier } from '../../policy/tier-resolution.ts';
import { escapeControls as e } from '../../policy/text.ts';
import { CliError, str, type Parsed } from '../args.ts';
import type { Command, Env } from '../command.ts';
import type { Cli } from '../context.ts';
import { declarableGroups, listBindings, listTiers, whoAmI, type Client, type Identity } from '../common.ts';

export interface TierAnswer {
  resolution: QuotaResolution;
  /** TenantBindings whose maxClients is taken, passed over as the operator would. */
  full: { name: string; maxClients: number }[];
}

/**
 * The tier the operator would give a new client of `identity` in the namespace. A TenantBinding
 * whose quota is taken is passed over, as the operator passes it over for a new client (the
 * newest client is the one left out).
 */
export async function wouldGet(cli: Cli, identity: Identity, opts: { tier?: string | undefined; selector?: string | undefined }): Promise<TierAnswer> {
  let tiers: Tier[];
  try {
    tiers = await listTiers(cli, opts.selector);
  } catch (err) {
    if (err instanceof KubeApiError && err.statusCode === 403) {
      throw new CliError(
        `you (${identity.username}) may not list Tiers cluster-wide, so the tier cannot be worked out here: ask for list on tokenwarden.io tiers (a ClusterRoleBinding to tokenwarden-tier-reader), or ask an admin`,
      );
    }
    throw err;
  }
  let bindings: TenantBinding[];
  try {
    bindings = await listBindings(cli, cli.namespace, opts.selector);
  } catch (err) {
    if (err instanceof KubeApiError && err.statusCode === 403) {
      throw new CliError(`you (${identity.username}) may not list TenantBindings in namespace ${cli.namespace}, so the tier cannot be worked out there`);
    }
    throw err;
  }
  const subject = { user: identity.username, groups: declarableGroups(identity) };
  const candidate = { subject, ...(opts.tier ? { requestedTier: opts.tier } : {}) };
  // Without a quota in the namespace the clients there change nothing: no need to list them.
  if (!bindings.some((b) => b.spec.maxClients !== undefined)) return { resolution: resolveTier({ ...candidate, tiers, bindings }), full: [] };
  // As the operator counts (src/policy/tier-quota.ts): the places the namespace's clients hold, a
  // new client ranking after all of them.
  const { resolution, full } = explainQuotas(candidate, tiers, bindings, await placesTaken(cli, tiers, bindings));
  return { resolution, full: full.map((b) => ({ name: b.metadata.name, maxClients: b.spec.maxClients as number })) };
}

export const whoami: Command = {
  name: 'whoami',
  args: '',
  summary: 'Who you are to the API server, and the tier a client of yours would get in the namespace, and why',
  flags: [
    { name: 'tier', kind: 'string', value: 'TIER', help: 'whether you would get this tier if you asked for it' },
    { name: 'selector', short: 'l', kind: 'string', value: 'SELECTOR', help: 'only Tiers and TenantBindings matching this label selector (the operator\'s --selector)' },
    { name: 'output', short: 'o', kind: 'string', value: 'FORMAT', help: 'json' },
  ],
  async run(parsed: Parsed, env: Env) {
    const output = str(parsed, 'output');
    if (output !== undefined && output !== 'json') throw new CliError(`--output ${output}: only json is supported`);
    if (parsed.positionals.length > 0) throw new CliError(`whoami takes no arguments, got ${parsed.positionals.join(' ')}`);
    const cli = env.connect();
    const identity = await whoAmI(cli);
    const tier = str(parsed, 'tier');
    let answer: TierAnswer | undefined;
    let problem: string | undefined;
    try {
      answer = await wouldGet(cli, identity, { tier, selector: str(parsed, 'selector') });
    } catch (err) {
      if (!(err instanceof CliError)) throw err;
      problem = err.message;
    }
    const r = answer?.resolution;
    if (output === 'json') {
      env.out(JSON.stringify({
        username: identity.username,
        groups: identity.groups,
        namespace: cli.namespace,
        ...(r?.resolved ? { tier: r.tier.metadata.name, tierReason: r.source, message: r.message } : {}),
        ...(r && !r.resolved ? { tier: null, reason: r.reason, message: r.message } : {}),
        ...(problem ? { error: problem } : {}),
      }, null, 2));
    } else {
      env.out(`User:       ${e(identity.username)}`);
      env.out(`Groups:     ${identity.groups.map(e).join(', ') || '(none)'}`);
      env.out(`Namespace:  ${e(cli.namespace)}`);
      if (r?.resolved) {
        env.out(`Tier:       ${e(r.tier.metadata.name)} (${e(r.source)})`);
        env.out(`Why:        ${e(r.message)}`);
      } else if (r) {
        env.out(`Tier:       none (${r.reason})`);
        env.out(`Why:        ${e(r.message)}`);
      }
      for (const f of answer?.full ?? []) env.out(`Quota:      TenantBinding ${e(f.name)} allows ${f.maxClients} client(s) and they are taken`);
    }
    if (problem) {
      env.err(`error: ${problem}`);
      return 1;
    }
    return 0;
  },
};

async function placesTaken(cli: Cli, tiers: Tier[], bindings: TenantBinding[]): Promise<ReadonlyMap<string, number>> {
  const clients = (await cli.client.list<Client>(SERVICE_ACCOUNT_CLIENTS, cli.namespace)).items.filter((c) => c.metadata.deletionTimestamp === undefined && c.spec?.subject);
  return planQuotas(clients.map(quotaCandidateOf), tiers, bindings).holders;
}
