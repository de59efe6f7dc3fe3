import type { FlagSpec, Parsed } from './args.ts';
import type { Cli } from './context.ts';

export interface Io {
  out: (line?: string) => void;
  err: (line: string) => void;
  /** Asks a yes/no question on the terminal; undefined when there is no terminal to ask on. */
  confirm?: ((question: string) => Promise<boolean>) | undefined;
}

export interface Env extends Io {
  /** The cluster connection of --kubeconfig, --context and -n (loaded on first use). */
  connect(): Cli;
}

export interface Command {
  /** "whoami", or "inspect secret" for a two-word command. */
  name: string;
  args: string;
  summary: string;
  flags: FlagSpec[];
  /** Returns the exit code (0 when nothing is returned). */
  run(parsed: Parsed, env: Env): Promise<number | void>;
}
