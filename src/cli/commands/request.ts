/**
 * request NAME: a ServiceAccountClient for the caller (the subject is who the API server says the
 * caller is, so the admission policy tokenwarden-client-subject accepts it), wait until Ready, and
 * print the token alone on stdout.
 */
import { API_VERSION } from '../../api/index.ts';
import { KubeApiError } from '../../kube/errors.ts';
import { SERVICE_ACCOUNT_CLIENTS } from '../../kube/resources.ts';
import { CliError, bool, parseDurationFlag, str, strs, type Parsed } from '../args.ts';
import { escapeControls, quote } from '../../policy/text.ts';
import type { Command, Env } from '../command.ts';
import type { Cli } from '../context.ts';
import { condition, currentToken, declarableGroups, getClient, hintFor, isReady, poll, whoAmI, type Client } from '../common.ts';

/** Ready reasons that no amount of waiting changes on its own (someone must act). */
const SETTLED_FAILURES = new Set(['TierNotAllowed', 'TierNotFound', 'NoMatchingTier', 'QuotaExceeded', 'InvalidSpec', 'SecretConflict', 'SecretInvalid', 'ServiceAccountCollision', 'Suspended']);

export interface Waited {
  client: Client;
  token?: string;
}

/**
 * Waits until the client is Ready for its current generation and its Secret holds the newest token
 * (optionally one more condition on the client); stops early on a failure no wait can cure.
 */
export async function waitForToken(cli: Cli, name: string, timeoutMs: number, extra?: (c: Client) => boolean): Promise<Waited> {
  let last: Client | undefined;
  const done = await poll(async () => {
    last = await getClient(cli, name);
    const ready = condition(last, 'Ready');
    if (ready?.status === 'False' && SETTLED_FAILURES.has(ready.reason) && last.status?.observedGeneration === last.metadata.generation) {
      return { client: last };
    }
    if (!isReady(last) || (extra && !extra(last))) return undefined;
    const token = await currentToken(cli, last);
    return token === undefined ? undefined : { client: last, token };
  }, timeoutMs);
  return done ?? { client: last as Client };
}

/** The error line for a client that did not become Ready: its reason, message and what to do. */
export function notReadyError(client: Client, what: string): CliError {
  const ready = condition(client, 'Ready');
  const hint = hintFor(client);
  const state = ready ? escapeControls(`${ready.reason}: ${ready.message}`) : 'no status yet';
  return new CliError(`${what} ${client.metadata.namespace}/${client.metadata.name} is not Ready: ${state}${hint ? ` (${hint})` : ''}`);
}

const sameSet = (a: readonly string[] | undefined, b: readonly string[] | undefined) =>
  JSON.stringify([...(a ?? [])].sort()) === JSON.stringify([...(b ?? [])].sort());

export const request: Command = {
  name: 'request',
  args: 'NAME',
  summary: 'Create a client for yourself, wait until it is Ready, print its token (TOKEN=$(kubectl tokenwarden request nb))',
  flags: [
    { name: 'tier', kind: 'string', value: 'TIER', help: 'ask for this tier (refused unless you qualify for it)' },
    { name: 'expiration', kind: 'string', value: 'DURATION', help: 'token lifetime, e.g. 1h (capped by the tier)' },
    { name: 'audience', kind: 'strings', value: 'AUD', help: 'an audience of the token (repeatable; default the tier\'s)' },
    { name: 'label', kind: 'strings', value: 'KEY=VALUE', help: 'a label of the client (repeatable), e.g. for an operator running with --selector' },
    { name: 'wait', kind: 'string', value: 'DURATION', help: 'how long to wait for the token (default 60s)' },
    { name: 'keep', kind: 'boolean', help: 'keep a client this command created even when it did not become Ready' },
    { name: 'output', short: 'o', kind: 'string', value: 'FORMAT', help: 'token (default) or json' },
  ],
  async run(parsed: Parsed, env: Env) {
    const [name, ...rest] = parsed.positionals;
    if (name === undefined || rest.length > 0) throw new CliError('request takes one argument: the name of the client');
    const output = str(parsed, 'output') ?? 'token';
    if (output !== 'token' && output !== 'json') throw new CliError(`--output ${output}: use token or json`);
    const waitMs = parseDurationFlag('wait', str(parsed, 'wait') ?? '60s');
    const expiration = str(parsed, 'expiration');
    if (expiration !== undefined) parseDurationFlag('expiration', expiration);
    const labels: Record<string, string> = {};
    for (const l of strs(parsed, 'label')) {
      const eq = l.indexOf('=');
      if (eq <= 0) throw new CliError(`--label ${l}: use KEY=VALUE`);
      labels[l.slice(0, eq)] = l.slice(eq + 1);
    }
    const tier = str(parsed, 'tier');
    const audiences = strs(parsed, 'audience');
    const cli = env.connect();
    const me = await whoAmI(cli);
    const spec = {
      subject: { user: me.username, groups: declarableGroups(me) },
      ...(tier ? { tierRef: { name: tier } } : {}),
      ...(expiration || audiences.length ? { token: { ...(expiration ? { expiration } : {}), ...(audiences.length ? { audiences } : {}) } } : {}),
    };
    let created = false;
    try {
      await cli.client.create<Client>(SERVICE_ACCOUNT_CLIENTS, cli.namespace, {
        apiVersion: API_VERSION,
        kind: 'ServiceAccountClient',
        metadata: { name, namespace: cli.namespace, ...(Object.keys(labels).length ? { labels } : {}) },
        spec,
      } as Client);
      created = true;
    } catch (err) {
      if (!(err instanceof KubeApiError && err.statusCode === 409 && err.reason === 'AlreadyExists')) throw err;
      // Asking again for the same thing is fine (a script may run twice); anything else is not ours to change.
      const existing = await getClient(cli, name);
      if (existing.spec.subject.user !== me.username) {
        throw new CliError(`serviceaccountclient ${cli.namespace}/${name} already exists and belongs to ${quote(existing.spec.subject.user)}; choose another name`);
      }
      if (existing.spec.tierRef?.name !== tier || existing.spec.token?.expiration !== expiration || !sameSet(existing.spec.token?.audiences, audiences)) {
        throw new CliError(`serviceaccountclient ${cli.namespace}/${name} already exists with another tier, expiration or audiences; use "kubectl tokenwarden token ${name}", or delete it first`);
      }
    }
    const { client, token } = await waitForToken(cli, name, waitMs);
    if (token === undefined) {
      const error = notReadyError(client, 'client');
      if (created && !bool(parsed, 'keep')) {
        try {
          await cli.client.delete(SERVICE_ACCOUNT_CLIENTS, cli.namespace, name, client.metadata.uid ? { preconditions: { uid: client.metadata.uid } } : {});
          throw new CliError(`${error.message}; the client was deleted (--keep keeps it)`);
        } catch (err) {
          if (err instanceof CliError) throw err;
        }
      }
      throw error;
    }
    if (output === 'json') {
      env.out(JSON.stringify({
        namespace: client.metadata.namespace,
        name,
        tier: client.status?.tier,
        tierReason: client.status?.tierReason,
        serviceAccount: client.status?.serviceAccount,
        expiresAt: client.status?.expiresAt,
        renewAt: client.status?.renewAt,
        token,
      }, null, 2));
    } else {
      env.out(token);
    }
    return 0;
  },
};
