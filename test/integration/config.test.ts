/**
 * Issue 4, "Done when" 6: a bad flag or environment value stops start-up: the process exits
 * non-zero and writes exactly one line to stderr, naming the setting (the flag, or the environment
 * variable when the value came from there). Nothing reaches the cluster: the check comes first.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(args: string[], env: Record<string, string> = {}): Promise<Result> {
  // Only this case's settings: none inherited from the environment of the test run.
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TOKENWARDEN_') && k !== 'POD_NAME' && k !== 'POD_NAMESPACE'));
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(repoRoot, 'src/main.ts'), ...args], {
      cwd: repoRoot,
      env: { ...base, KUBECONFIG: '/nonexistent/kubeconfig', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const CASES: { what: string; args?: string[]; env?: Record<string, string>; names: string }[] = [
  { what: 'a number flag that is not a number', args: ['--workers=abc'], names: '--workers' },
  { what: 'a number out of range', args: ['--workers', '0'], names: '--workers' },
  { what: 'a bad environment value', env: { TOKENWARDEN_WORKERS: 'many' }, names: 'TOKENWARDEN_WORKERS' },
  { what: 'a bad duration', args: ['--resync-period=soon'], names: '--resync-period' },
  { what: 'a bad lease duration in the environment', env: { TOKENWARDEN_LEASE_DURATION: '15' }, names: 'TOKENWARDEN_LEASE_DURATION' },
  { what: 'a boolean that is not true or false', args: ['--leader-elect=yes'], names: '--leader-elect' },
  { what: 'a boolean in the environment', env: { TOKENWARDEN_LEADER_ELECT: 'on' }, names: 'TOKENWARDEN_LEADER_ELECT' },
  { what: 'renewDeadline equal to leaseDuration', args: ['--lease-duration=15s', '--renew-deadline=15s'], names: '--renew-deadline' },
  { what: 'renewDeadline longer than leaseDuration, from the environment', env: { TOKENWARDEN_RENEW_DEADLINE: '20s' }, names: 'TOKENWARDEN_RENEW_DEADLINE' },
  { what: 'retryPeriod not shorter than renewDeadline', args: ['--retry-period=10s'], names: '--retry-period' },
  { what: 'a lease duration that is not whole seconds', args: ['--lease-duration=1500ms', '--renew-deadline=1s', '--retry-period=100ms'], names: '--lease-duration' },
  { what: 'a bad Lease name', args: ['--leader-election-id=Not_A_Name'], names: '--leader-election-id' },
  { what: 'a bad namespace prefix', args: ['--namespace-prefix=UPPER'], names: '--namespace-prefix' },
  { what: 'an unknown flag', args: ['--leader-elect-please=true'], names: '--leader-elect-please' },
];

describe('6: a bad flag or environment value stops start-up with one line naming it', () => {
  for (const c of CASES) {
    it(`${c.what}: ${[...(c.args ?? []), ...Object.entries(c.env ?? {}).map(([k, v]) => `${k}=${v}`)].join(' ')}`, async () => {
      const result = await run(c.args ?? [], c.env);
      expect(result.code, result.stderr).not.toBe(0);
      expect(result.code).not.toBeNull();
      const lines = result.stderr.split('\n').filter((l) => l !== '');
      expect(lines, result.stderr).toHaveLength(1);
      expect(lines[0]).toContain(c.names);
      expect(lines[0]).toMatch(/^tokenwarden: /);
      expect(result.stdout).toBe('');
    });
  }

  it('a good configuration gets past the check (and then fails on the missing kubeconfig, differently)', async () => {
    const result = await run(['--leader-elect=true', '--lease-duration=4s', '--renew-deadline=3s', '--retry-period=1s', '--workers=2']);
    expect(result.code).not.toBe(0);
    expect(result.stderr).not.toMatch(/invalid --/);
  });
});
