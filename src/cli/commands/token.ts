import { CliError, parseDurationFlag, str, type Parsed } from '../args.ts';
import type { Command, Env } from '../command.ts';
import { waitForToken, notReadyError } from './request.ts';

export const token: Command = {
  name: 'token',
  args: 'NAME',
  summary: 'Print the current token of an existing client (alone, on stdout)',
  flags: [{ name: 'wait', kind: 'string', value: 'DURATION', help: 'wait this long for the client to be Ready (default 0: answer now)' }],
  async run(parsed: Parsed, env: Env) {
    const [name, ...rest] = parsed.positionals;
    if (name === undefined || rest.length > 0) throw new CliError('token takes one argument: the name of the client');
    const waitMs = parseDurationFlag('wait', str(parsed, 'wait') ?? '0s');
    const cli = env.connect();
    const { client, token: value } = await waitForToken(cli, name, waitMs);
    if (value === undefined) throw notReadyError(client, 'client');
    env.out(value);
    return 0;
  },
};
