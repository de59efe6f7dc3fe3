/**
 * The built kubectl plugin under test: `make plugin`'s single executable, built once (cached by a
 * hash of its inputs; a lock keeps parallel test files from building at the same time), and run
 * with a PATH that holds no Node at all.
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll } from 'vitest';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const PLUGIN = path.join(repoRoot, 'bin', 'kubectl-tokenwarden');
const LOCK = path.join(repoRoot, '.cache', 'plugin-build.lock');

/** Builds bin/kubectl-tokenwarden (tools/build-plugin.ts) unless it is up to date. */
export async function buildPlugin(): Promise<string> {
  fs.mkdirSync(path.dirname(LOCK), { recursive: true });
  const deadline = Date.now() + 170_000;
  for (;;) {
    try {
      fs.mkdirSync(LOCK);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      // A lock older than a build can take was left by a killed run.
      if (Date.now() - fs.statSync(LOCK, { throwIfNoEntry: false })!.mtimeMs > 150_000) fs.rmSync(LOCK, { recursive: true, force: true });
      if (Date.now() > deadline) throw new Error(`the plugin build lock ${LOCK} is held too long`, { cause: err });
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
  try {
    // process.execPath is the Node 24 of node_modules (vitest runs on it): the one the SEA embeds.
    execFileSync(process.execPath, [path.join(repoRoot, 'tools/build-plugin.ts')], { cwd: repoRoot, stdio: ['ignore', 'ignore', 'pipe'], timeout: 160_000 });
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString() ?? '';
    throw new Error(`make plugin failed: ${stderr.slice(-2000)}`, { cause: err });
  } finally {
    fs.rmSync(LOCK, { recursive: true, force: true });
  }
  return PLUGIN;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** A folder for PATH holding only the given executables (as symlinks): no node, no shell tools. */
export function pathWith(files: Record<string, string>): string {
  const dir = tempDir('tokenwarden-plugin-path-');
  for (const [name, target] of Object.entries(files)) fs.symlinkSync(target, path.join(dir, name));
  return dir;
}

/** The temp folders made for this test file, removed after it. */
const tempDirs: string[] = [];
afterAll(() => tempDirs.splice(0).forEach((dir) => fs.rmSync(dir, { recursive: true, force: true })));

/** A new temp folder, removed after the test file. */
export function tempDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

const EMPTY_PATH = tempDir('tokenwarden-plugin-nopath-');

/**
 * Runs `executable args` with a minimal environment: PATH with no Node on it (an empty folder unless
 * `env.PATH` says otherwise), HOME an empty temp folder, and nothing else unless given.
 */
export function runExecutable(executable: string, args: string[], opts: { env?: Record<string, string>; timeoutMs?: number; input?: string } = {}): Promise<RunResult> {
  const env = { PATH: EMPTY_PATH, HOME: EMPTY_PATH, ...opts.env };
  return new Promise((resolve, reject) => {
    const child = spawn(executable, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr: signal ? `${stderr}\nkilled by ${signal}` : stderr });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
  });
}

/** Something that looks like a JWT: what no output but request's and token's may contain. */
export const JWT_PATTERN = /eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}/;
