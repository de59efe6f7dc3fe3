/**
 * kubectl-tokenwarden: the kubectl plugin of tokenwarden. kubectl finds it on PATH and runs it with
 * the arguments after `kubectl tokenwarden`, unchanged. Built into one executable with Node inside
 * (tools/build-plugin.ts, `make plugin`); `node src/cli/main.ts ...` runs the same code from source.
 *
 * Errors are one line on stderr and a non-zero exit, never a stack trace; tokens go to stdout only,
 * and only from `request` and `token`.
 */
import { createInterface } from 'node:readline/promises';
import type { Io } from './command.ts';
import { describe, run } from './run.ts';

function terminalConfirm(): Io['confirm'] {
  if (!process.stdin.isTTY || !process.stderr.isTTY) return undefined;
  return async (question: string) => {
    const rl = createInterface({ input: process.stdin, output: process.stderr });
    try {
      return /^y(es)?$/i.test((await rl.question(`${question} [y/N] `)).trim());
    } finally {
      rl.close();
    }
  };
}

async function main(): Promise<void> {
  const io: Io = {
    out: (line = '') => void process.stdout.write(`${line}\n`),
    err: (line) => void process.stderr.write(`${line}\n`),
    confirm: terminalConfirm(),
  };
  const code = await run(process.argv.slice(2), io);
  process.exitCode = code;
}

// A reader that stops early (| head) is not an error.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  });
}
// A last net: nothing below this may print a stack trace.
process.on('uncaughtException', (err) => {
  process.stderr.write(`error: ${describe(err)}\n`);
  process.exit(1);
});
process.on('unhandledRejection', (err) => {
  process.stderr.write(`error: ${describe(err)}\n`);
  process.exit(1);
});
void main();
