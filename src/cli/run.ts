/**
 * The plugin's command line: finds the command, parses its flags, runs it, and turns every error
 * into one line (src/cli/main.ts wires it to the process).
 */
import { KubeApiError } from '../kube/errors.ts';
import { escapeControls, escapeLines } from '../policy/text.ts';
import { CliError, GLOBAL_FLAGS, bool, parseArgs, type FlagSpec } from './args.ts';
import type { Command, Env, Io } from './command.ts';
import { COMMANDS } from './commands/index.ts';
import { connect, type Cli } from './context.ts';

function flagHelp(flags: readonly FlagSpec[]): string[] {
  return flags.map((f) => {
    const names = `${f.short ? `-${f.short}, ` : '    '}--${f.name}${f.kind === 'boolean' ? '' : ` ${f.value ?? 'VALUE'}`}`;
    return `  ${names.padEnd(30)} ${f.help}`;
  });
}

export function usage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    'kubectl tokenwarden: short-lived ServiceAccount tokens per tier, from kubectl.',
    '',
    'Usage: kubectl tokenwarden COMMAND [ARGS] [FLAGS]',
    '',
    'Commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}   ${c.summary}`),
    '',
    'Global flags (as in kubectl):',
    ...flagHelp(GLOBAL_FLAGS),
    '',
    'kubectl tokenwarden COMMAND --help shows the flags of a command.',
  ].join('\n');
}

function commandHelp(c: Command): string {
  return [`Usage: kubectl tokenwarden ${c.name}${c.args ? ` ${c.args}` : ''} [FLAGS]`, '', c.summary, '', 'Flags:', ...flagHelp(c.flags), '', 'Global flags:', ...flagHelp(GLOBAL_FLAGS)].join('\n');
}

const isGlobalValueFlag = (a: string): boolean =>
  GLOBAL_FLAGS.some((f) => f.kind === 'string' && (a === `--${f.name}` || (f.short !== undefined && a === `-${f.short}`)));

/**
 * Finds the command in the first positional words (a two-word command like `inspect secret` first),
 * skipping global flags and their values (`-n team-a whoami`), and returns argv without those words.
 */
function findCommand(argv: readonly string[]): { command: Command; rest: string[] } | { unknown: string | undefined } {
  const positions: number[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === '--') break;
    if (isGlobalValueFlag(a)) i++;
    else if (!a.startsWith('-')) positions.push(i);
  }
  const word = (k: number) => (positions[k] === undefined ? undefined : argv[positions[k] as number]);
  for (const n of [2, 1]) {
    const name = Array.from({ length: n }, (_, k) => word(k)).join(' ');
    const command = COMMANDS.find((c) => c.name === name);
    if (command) {
      const drop = new Set(positions.slice(0, n));
      return { command, rest: argv.filter((_, i) => !drop.has(i)) };
    }
  }
  return { unknown: word(0) };
}

/**
 * Every line any command prints goes through escapeLines (src/policy/text.ts): whatever a tenant
 * wrote (names, subjects, messages, Event notes) reaches the terminal with its control characters
 * escaped. Printers also escape each tenant field themselves, so a newline in one cannot start a
 * line of its own; this is the net under them.
 */
function inert(io: Io): Io {
  const confirm = io.confirm;
  return {
    out: (line = '') => io.out(escapeLines(line)),
    err: (line) => io.err(escapeLines(line)),
    confirm: confirm && ((question) => confirm(escapeLines(question))),
  };
}

export async function run(argv: readonly string[], rawIo: Io, processEnv: NodeJS.ProcessEnv = process.env): Promise<number> {
  const io = inert(rawIo);
  try {
    const found = findCommand(argv);
    if ('unknown' in found) {
      const help = argv.includes('-h') || argv.includes('--help');
      if (found.unknown === undefined || found.unknown === 'help') {
        io.out(usage());
        return found.unknown === undefined && !help ? 1 : 0;
      }
      throw new CliError(`unknown command "${found.unknown}"; kubectl tokenwarden --help lists them`);
    }
    const parsed = parseArgs(found.rest, found.command.flags);
    if (bool(parsed, 'help')) {
      io.out(commandHelp(found.command));
      return 0;
    }
    let cli: Cli | undefined;
    const env: Env = { ...io, connect: () => (cli ??= connect(parsed, processEnv)) };
    try {
      return (await found.command.run(parsed, env)) ?? 0;
    } finally {
      await cli?.client.close();
    }
  } catch (err) {
    io.err(`error: ${escapeControls(describe(err))}`);
    return err instanceof CliError ? err.exitCode : 1;
  }
}

/** One line for any error: the server's message for API errors, never a stack trace. */
export function describe(err: unknown): string {
  if (err instanceof CliError) return err.message;
  if (err instanceof KubeApiError) {
    if (err.statusCode === 0) return `cannot reach the API server: ${err.serverMessage}`;
    if (err.statusCode === 401) return 'Unauthorized: the API server did not accept your credentials (log in again, or check --context)';
    return `${err.reason} (${err.statusCode}): ${err.serverMessage}`;
  }
  const message = err instanceof Error ? err.message : String(err);
  return message.split('\n')[0] ?? message;
}

