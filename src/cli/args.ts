/**
 * Command-line parsing for kubectl-tokenwarden. kubectl passes a plugin's arguments through
 * unchanged, so the global flags (--kubeconfig, --context, -n/--namespace) may stand anywhere, as
 * they may in kubectl itself: `kubectl tokenwarden -n team-a request nb` and `... request nb -n team-a`.
 */

/** A user-facing error: printed as one line on stderr, exit code `exitCode`. */
export class CliError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = 1) {
    super(message);
    this.name = 'CliError';
    this.exitCode = exitCode;
  }
}

export type FlagKind = 'string' | 'boolean' | 'strings';

export interface FlagSpec {
  name: string;
  short?: string;
  kind: FlagKind;
  help: string;
  /** Placeholder in help, e.g. DURATION. */
  value?: string;
}

export const GLOBAL_FLAGS: FlagSpec[] = [
  { name: 'kubeconfig', kind: 'string', value: 'PATH', help: 'path to the kubeconfig file (default: KUBECONFIG, else ~/.kube/config)' },
  { name: 'context', kind: 'string', value: 'NAME', help: 'the kubeconfig context to use' },
  { name: 'namespace', short: 'n', kind: 'string', value: 'NS', help: "namespace (default: the context's, else default)" },
  { name: 'request-timeout', kind: 'string', value: 'DURATION', help: 'timeout of each API request (default 30s)' },
  { name: 'help', short: 'h', kind: 'boolean', help: 'help for the command' },
];

export interface Parsed {
  positionals: string[];
  flags: Map<string, string | boolean | string[]>;
}

/** Parses argv against the global flags and the command's own; unknown flags are an error. */
export function parseArgs(argv: readonly string[], specs: readonly FlagSpec[]): Parsed {
  const all = [...GLOBAL_FLAGS, ...specs];
  const byLong = new Map(all.map((s) => [s.name, s]));
  const byShort = new Map(all.filter((s) => s.short).map((s) => [s.short as string, s]));
  const positionals: string[] = [];
  const flags = new Map<string, string | boolean | string[]>();
  const set = (spec: FlagSpec, value: string | boolean): void => {
    if (spec.kind === 'strings') {
      const list = (flags.get(spec.name) as string[] | undefined) ?? [];
      list.push(String(value));
      flags.set(spec.name, list);
    } else {
      flags.set(spec.name, value);
    }
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    let spec: FlagSpec | undefined;
    let inline: string | undefined;
    let shown: string;
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
      if (eq >= 0) inline = arg.slice(eq + 1);
      spec = byLong.get(name);
      shown = `--${name}`;
    } else if (arg.startsWith('-') && arg.length > 1) {
      const letter = arg[1] as string;
      spec = byShort.get(letter);
      shown = `-${letter}`;
      if (arg.length > 2) inline = arg[2] === '=' ? arg.slice(3) : arg.slice(2);
    } else {
      positionals.push(arg);
      continue;
    }
    if (spec === undefined) throw new CliError(`unknown flag ${shown}`);
    if (spec.kind === 'boolean') {
      if (inline === undefined) set(spec, true);
      else if (inline === 'true' || inline === 'false') set(spec, inline === 'true');
      else throw new CliError(`flag ${shown} takes true or false, not ${JSON.stringify(inline)}`);
      continue;
    }
    let value = inline;
    if (value === undefined) {
      if (i + 1 >= argv.length) throw new CliError(`flag ${shown} needs a value`);
      value = argv[++i] as string;
    }
    set(spec, value);
  }
  return { positionals, flags };
}

export const str = (p: Parsed, name: string): string | undefined => p.flags.get(name) as string | undefined;
export const bool = (p: Parsed, name: string): boolean => p.flags.get(name) === true;
export const strs = (p: Parsed, name: string): string[] => (p.flags.get(name) as string[] | undefined) ?? [];

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** A Go-style duration ("90s", "1m30s", "2h") or a bare number of seconds, in milliseconds. */
export function parseDurationFlag(name: string, value: string): number {
  if (/^\d+$/.test(value)) return Number(value) * 1000;
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/gy;
  let total = 0;
  let matched = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(value)) !== null) {
    total += Number(m[1]) * (UNIT_MS[m[2] as string] as number);
    matched = re.lastIndex;
  }
  if (value === '' || matched !== value.length) throw new CliError(`--${name}: ${JSON.stringify(value)} is not a duration (e.g. 30s, 2m, 1h)`);
  return total;
}
