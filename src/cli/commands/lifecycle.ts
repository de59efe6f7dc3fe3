/**
 * revoke, suspend, resume and renew: each one writes the client once (a spec field, or for renew an
 * annotation), then waits for the operator to carry it out. The operator itself never writes a spec,
 * so these are ordinary user edits that GitOps sees as what they are.
 */
import { KubeApiError } from '../../kube/errors.ts';
import { Tier as TierSchema } from '../../api/index.ts';
import { SERVICE_ACCOUNT_CLIENTS, TIERS } from '../../kube/resources.ts';
import { formatDuration, parseDuration } from '../../policy/duration.ts';
import { CliError, parseDurationFlag, str, type Parsed } from '../args.ts';
import type { Command, Env } from '../command.ts';
import type { Cli } from '../context.ts';
import { condition, getClient, observedCurrent, poll, RENEW_REQUESTED_AT_ANNOTATION, type Client } from '../common.ts';
import { notReadyError, waitForToken } from './request.ts';

const WAIT_FLAG = { name: 'wait', kind: 'string', value: 'DURATION', help: 'how long to wait for the operator to carry it out (default 60s; 0: do not wait)' } as const;

/** Reads, computes the patch from what it read, writes it conditional on that resourceVersion; retries a conflict. */
async function patchClient(cli: Cli, name: string, change: (c: Client) => Record<string, unknown> | undefined): Promise<{ before: Client; after: Client }> {
  for (let attempt = 0; ; attempt++) {
    const before = await getClient(cli, name);
    const patch = change(before);
    if (patch === undefined) return { before, after: before };
    const meta = (patch.metadata ?? {}) as Record<string, unknown>;
    try {
      const after = await cli.client.patch<Client>(SERVICE_ACCOUNT_CLIENTS, cli.namespace, name, {
        ...patch,
        metadata: { ...meta, resourceVersion: before.metadata.resourceVersion },
      });
      return { before, after };
    } catch (err) {
      if (err instanceof KubeApiError && err.statusCode === 409 && attempt < 5) continue;
      throw err;
    }
  }
}

function oneName(parsed: Parsed, command: string): string {
  const [name, ...rest] = parsed.positionals;
  if (name === undefined || rest.length > 0) throw new CliError(`${command} takes one argument: the name of the client`);
  return name;
}

const waitMs = (parsed: Parsed) => parseDurationFlag('wait', str(parsed, 'wait') ?? '60s');
const ref = (c: Client) => `${c.metadata.namespace}/${c.metadata.name}`;

export const revoke: Command = {
  name: 'revoke',
  args: 'NAME',
  summary: 'Revoke every token of a client now and get a fresh one (raises spec.revocationEpoch)',
  flags: [WAIT_FLAG],
  async run(parsed: Parsed, env: Env) {
    const name = oneName(parsed, 'revoke');
    const wait = waitMs(parsed);
    const cli = env.connect();
    const { after } = await patchClient(cli, name, (c) => ({ spec: { revocationEpoch: (c.spec.revocationEpoch ?? 0) + 1 } }));
    const epoch = after.spec.revocationEpoch;
    if (wait === 0) {
      env.out(`serviceaccountclient ${ref(after)}: revocationEpoch raised to ${epoch}`);
      return 0;
    }
    const { client, token } = await waitForToken(cli, name, wait, (c) => (c.status?.revocationEpoch ?? 0) >= epoch);
    if (token === undefined) {
      if ((client.status?.revocationEpoch ?? 0) >= epoch) throw notReadyError(client, `revoked every token of epoch ${epoch - 1}, but client`);
      throw new CliError(`revocationEpoch raised to ${epoch}, but the operator has not carried it out within ${str(parsed, 'wait') ?? '60s'} (is it running? kubectl tokenwarden check api)`);
    }
    env.out(`serviceaccountclient ${ref(client)}: every earlier token revoked (revocationEpoch ${epoch}); a new token was issued, expires ${client.status?.expiresAt}`);
    return 0;
  },
};

export const suspend: Command = {
  name: 'suspend',
  args: 'NAME',
  summary: 'Revoke every token of a client and hold none until resumed (spec.suspended: true)',
  flags: [WAIT_FLAG],
  async run(parsed: Parsed, env: Env) {
    const name = oneName(parsed, 'suspend');
    const wait = waitMs(parsed);
    const cli = env.connect();
    const { after } = await patchClient(cli, name, (c) => (c.spec.suspended ? undefined : { spec: { suspended: true } }));
    const done = wait === 0 ? after : await poll(async () => {
      const c = await getClient(cli, name);
      return observedCurrent(c) && condition(c, 'Suspended')?.status === 'True' ? c : undefined;
    }, wait);
    if (done === undefined) throw new CliError(`spec.suspended is true, but the operator has not revoked the tokens within ${str(parsed, 'wait') ?? '60s'} (is it running? kubectl tokenwarden check api)`);
    env.out(`serviceaccountclient ${ref(after)}: suspended${wait === 0 ? '' : '; its tokens are revoked and its Secret holds none'}`);
    return 0;
  },
};

export const resume: Command = {
  name: 'resume',
  args: 'NAME',
  summary: 'Issue a token again to a suspended client (spec.suspended: false)',
  flags: [WAIT_FLAG],
  async run(parsed: Parsed, env: Env) {
    const name = oneName(parsed, 'resume');
    const wait = waitMs(parsed);
    const cli = env.connect();
    const { after } = await patchClient(cli, name, (c) => (c.spec.suspended ? { spec: { suspended: false } } : undefined));
    if (wait === 0) {
      env.out(`serviceaccountclient ${ref(after)}: resumed`);
      return 0;
    }
    const { client, token } = await waitForToken(cli, name, wait);
    if (token === undefined) throw notReadyError(client, 'resumed, but client');
    env.out(`serviceaccountclient ${ref(client)}: resumed; a new token was issued, expires ${client.status?.expiresAt}`);
    return 0;
  },
};

export const renew: Command = {
  name: 'renew',
  args: 'NAME',
  summary: 'A new token now; the previous one stays valid for the tier\'s grace period (annotation tokenwarden.io/renew-requested-at)',
  flags: [WAIT_FLAG],
  async run(parsed: Parsed, env: Env) {
    const name = oneName(parsed, 'renew');
    const wait = waitMs(parsed);
    const cli = env.connect();
    // Any new value is a new request (the operator compares values, not times); milliseconds keep
    // two renewals in the same second apart.
    const requestedAt = new Date().toISOString();
    const { before, after } = await patchClient(cli, name, () => ({ metadata: { annotations: { [RENEW_REQUESTED_AT_ANNOTATION]: requestedAt } } }));
    const previous = before.status?.tokens?.[0]?.id;
    if (wait === 0) {
      env.out(`serviceaccountclient ${ref(after)}: renewal requested at ${requestedAt}`);
      return 0;
    }
    const { client, token } = await waitForToken(cli, name, wait, (c) => {
      const newest = c.status?.tokens?.[0];
      return newest !== undefined && newest.id !== previous;
    });
    if (token === undefined) {
      if (condition(client, 'Ready')?.status !== 'True') throw notReadyError(client, 'renewal requested, but client');
      throw new CliError(`renewal requested at ${requestedAt}, but no new token within ${str(parsed, 'wait') ?? '60s'} (does the operator support tokenwarden.io/renew-requested-at? kubectl tokenwarden check api)`);
    }
    const kept = client.status?.tokens?.[1];
    env.out(`serviceaccountclient ${ref(client)}: renewed; new token expires ${client.status?.expiresAt}${kept ? `; the previous token stays valid until ${await graceEnd(cli, client)}` : ''}`);
    return 0;
  },
};

/**
 * When the previous token stops working: the tier's grace period after the new token was issued,
 * or its own expiry if sooner. Without read access to the Tier, only the latter is known.
 */
async function graceEnd(cli: Cli, client: Client): Promise<string> {
  const [newest, previous] = client.status?.tokens ?? [];
  if (newest === undefined || previous === undefined) return '-';
  let graceMs: number | undefined;
  try {
    const tier = TierSchema.safeParse(await cli.client.get(TIERS, undefined, client.status?.tier ?? ''));
    if (tier.success) graceMs = parseDuration(tier.data.spec.token.gracePeriod);
  } catch {
    // May not read Tiers: say what status alone tells.
  }
  if (graceMs === undefined) return `the end of the tier's grace period (at the latest ${previous.expiresAt})`;
  const end = Math.min(Date.parse(newest.issuedAt) + graceMs, Date.parse(previous.expiresAt));
  return `${new Date(end).toISOString().replace('.000Z', 'Z')} (the tier's grace period, ${formatDuration(graceMs)})`;
}
