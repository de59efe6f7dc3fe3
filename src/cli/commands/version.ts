import { CliError, bool, str, type Parsed } from '../args.ts';
import type { Command, Env } from '../command.ts';

// Set by tools/build-plugin.ts (esbuild's define); absent when the sources run directly on Node.
declare const TOKENWARDEN_PLUGIN_VERSION: string | undefined;
declare const TOKENWARDEN_PLUGIN_COMMIT: string | undefined;

export function pluginVersion(): { version: string; commit: string } {
  return {
    version: typeof TOKENWARDEN_PLUGIN_VERSION === 'string' ? TOKENWARDEN_PLUGIN_VERSION : 'dev',
    commit: typeof TOKENWARDEN_PLUGIN_COMMIT === 'string' ? TOKENWARDEN_PLUGIN_COMMIT : 'unknown',
  };
}

export const version: Command = {
  name: 'version',
  args: '',
  summary: 'The plugin\'s version (and the API server\'s unless --client)',
  flags: [
    { name: 'client', kind: 'boolean', help: 'only the plugin\'s version; no cluster needed' },
    { name: 'output', short: 'o', kind: 'string', value: 'FORMAT', help: 'json' },
  ],
  async run(parsed: Parsed, env: Env) {
    const output = str(parsed, 'output');
    if (output !== undefined && output !== 'json') throw new CliError(`--output ${output}: only json is supported`);
    const { version: v, commit } = pluginVersion();
    const client = { version: v, commit, node: process.version, platform: `${process.platform}/${process.arch}` };
    let server: { gitVersion?: string } | undefined;
    if (!bool(parsed, 'client')) {
      const cli = env.connect();
      try {
        server = await cli.client.getPath<{ gitVersion?: string }>('/version', 'version');
      } catch (err) {
        throw new CliError(`cannot get the API server's version at ${cli.access.server}: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
      }
    }
    if (output === 'json') {
      env.out(JSON.stringify({ client, ...(server ? { server: { gitVersion: server.gitVersion } } : {}) }, null, 2));
      return 0;
    }
    env.out(`kubectl-tokenwarden ${v} (commit ${commit}, ${client.node}, ${client.platform})`);
    if (server) env.out(`Server: ${server.gitVersion ?? 'unknown'}`);
    return 0;
  },
};
