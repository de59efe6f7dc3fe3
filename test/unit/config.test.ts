/**
 * src/config.ts: settings from flags and environment variables. Defaults apply when neither is set
 * (an empty variable counts as unset), a flag beats its variable, and a bad value stops start-up with
 * a ConfigError of one line naming the flag or variable it came from.
 */
import { hostname } from 'node:os';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.ts';

function configError(argv: string[], env: NodeJS.ProcessEnv = {}): ConfigError {
  try {
    loadConfig(argv, env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error(`expected a ConfigError for ${JSON.stringify(argv)} ${JSON.stringify(env)}`);
}

describe('loadConfig: defaults', () => {
  it('has a default for every setting that needs one', () => {
    const config = loadConfig([], {});
    expect(config).toMatchObject({
      'namespace-prefix': 'tokenwarden',
      workers: 4,
      'log-level': 'info',
      'resync-period': 600_000,
      selector: '',
      instance: hostname(),
    });
    expect(config.kubeconfig).toBeUndefined();
  });

  it('names the instance after the pod, else the host', () => {
    expect(loadConfig([], { POD_NAME: 'tokenwarden-7d9f-abcde' }).instance).toBe('tokenwarden-7d9f-abcde');
    expect(loadConfig([], { POD_NAME: '' }).instance).toBe(hostname());
    expect(loadConfig([], { POD_NAME: 'pod', TOKENWARDEN_INSTANCE: 'explicit' }).instance).toBe('explicit');
    expect(loadConfig(['--instance', 'flagged'], { POD_NAME: 'pod', TOKENWARDEN_INSTANCE: 'explicit' }).instance).toBe('flagged');
  });

  it('treats an empty environment variable as unset', () => {
    const config = loadConfig([], {
      TOKENWARDEN_WORKERS: '',
      TOKENWARDEN_NAMESPACE_PREFIX: '',
      TOKENWARDEN_LOG_LEVEL: '',
      TOKENWARDEN_RESYNC_PERIOD: '',
      TOKENWARDEN_INSTANCE: '',
      KUBECONFIG: '',
    });
    expect(config).toMatchObject({ workers: 4, 'namespace-prefix': 'tokenwarden', 'log-level': 'info', 'resync-period': 600_000, instance: hostname() });
    expect(config.kubeconfig).toBeUndefined();
  });

  describe('reads only the environment it is given', () => {
    afterEach(() => {
      vi.unstubAllEnvs();
    });

    it('ignores process.env', () => {
      vi.stubEnv('TOKENWARDEN_WORKERS', '7');
      vi.stubEnv('TOKENWARDEN_LOG_LEVEL', 'nonsense');
      expect(process.env.TOKENWARDEN_WORKERS).toBe('7');
      const config = loadConfig([], {});
      expect(config.workers).toBe(4);
      expect(config['log-level']).toBe('info');
    });
  });
});

describe('loadConfig: flags and environment variables', () => {
  const cases = [
    ['kubeconfig', 'KUBECONFIG', '/home/me/.kube/config', '/home/me/.kube/config'],
    ['namespace-prefix', 'TOKENWARDEN_NAMESPACE_PREFIX', 'tw', 'tw'],
    ['workers', 'TOKENWARDEN_WORKERS', '8', 8],
    ['log-level', 'TOKENWARDEN_LOG_LEVEL', 'debug', 'debug'],
    ['resync-period', 'TOKENWARDEN_RESYNC_PERIOD', '1h30m', 5_400_000],
    ['selector', 'TOKENWARDEN_SELECTOR', 'tokenwarden.io/shard=a', 'tokenwarden.io/shard=a'],
    ['instance', 'TOKENWARDEN_INSTANCE', 'replica-1', 'replica-1'],
  ] as const;

  it.each(cases)('reads --%s as "--flag value", "--flag=value" and from %s', (flag, env, text, value) => {
    expect(loadConfig([`--${flag}`, text], {})[flag]).toEqual(value);
    expect(loadConfig([`--${flag}=${text}`], {})[flag]).toEqual(value);
    expect(loadConfig([], { [env]: text })[flag]).toEqual(value);
  });

  it.each(cases)('lets --%s beat %s', (flag, env, text, value) => {
    const other = { workers: '2', 'resync-period': '5m', 'log-level': 'warn', 'namespace-prefix': 'other' }[flag as string] ?? 'other-value';
    expect(loadConfig([`--${flag}=${text}`], { [env]: other })[flag]).toEqual(value);
    expect(loadConfig([], { [env]: other })[flag]).not.toEqual(value);
  });

  it('does not validate a variable that a flag overrides', () => {
    expect(loadConfig(['--workers=2'], { TOKENWARDEN_WORKERS: 'many' }).workers).toBe(2);
  });

  it('takes the last of a repeated flag', () => {
    expect(loadConfig(['--workers=8', '--workers=9'], {}).workers).toBe(9);
  });

  it('accepts the bounds of workers and of the prefix length', () => {
    expect(loadConfig(['--workers=1'], {}).workers).toBe(1);
    expect(loadConfig(['--workers=64'], {}).workers).toBe(64);
    expect(loadConfig([`--namespace-prefix=${'a'.repeat(40)}`], {})['namespace-prefix']).toBe('a'.repeat(40));
    expect(loadConfig(['--namespace-prefix=a'], {})['namespace-prefix']).toBe('a');
    expect(loadConfig(['--namespace-prefix=tw-2'], {})['namespace-prefix']).toBe('tw-2');
  });

  it.each(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'])('accepts the log level %s', (level) => {
    expect(loadConfig([`--log-level=${level}`], {})['log-level']).toBe(level);
  });
});

describe('loadConfig: bad values', () => {
  const bad: [string, string[], NodeJS.ProcessEnv, string][] = [
    ['workers 0', ['--workers=0'], {}, 'invalid --workers="0": '],
    ['workers 65', ['--workers=65'], {}, 'invalid --workers="65": '],
    ['workers not a number', ['--workers', 'many'], {}, 'invalid --workers="many": '],
    ['workers fractional', ['--workers=2.5'], {}, 'invalid --workers="2.5": '],
    ['workers negative', ['--workers=-1'], {}, 'invalid --workers="-1": '],
    ['workers empty flag', ['--workers='], {}, 'invalid --workers="": '],
    ['workers from env', [], { TOKENWARDEN_WORKERS: '0' }, 'invalid TOKENWARDEN_WORKERS="0": '],
    ['resync-period without unit', ['--resync-period=10'], {}, 'invalid --resync-period="10": "10" is not a duration such as 30s, 10m or 1h'],
    ['resync-period in days', ['--resync-period=1d'], {}, 'invalid --resync-period="1d": "1d" is not a duration'],
    ['resync-period fractional', ['--resync-period=1.5h'], {}, 'invalid --resync-period="1.5h": '],
    ['resync-period from env', [], { TOKENWARDEN_RESYNC_PERIOD: 'soon' }, 'invalid TOKENWARDEN_RESYNC_PERIOD="soon": "soon" is not a duration'],
    ['prefix uppercase', ['--namespace-prefix=Tokenwarden'], {}, 'invalid --namespace-prefix="Tokenwarden": must be a DNS label prefix'],
    ['prefix leading dash', ['--namespace-prefix=-tw'], {}, 'invalid --namespace-prefix="-tw": must be a DNS label prefix'],
    ['prefix trailing dash', ['--namespace-prefix=tw-'], {}, 'invalid --namespace-prefix="tw-": must be a DNS label prefix'],
    ['prefix underscore', ['--namespace-prefix=t_w'], {}, 'invalid --namespace-prefix="t_w": must be a DNS label prefix'],
    ['prefix dot', ['--namespace-prefix=t.w'], {}, 'invalid --namespace-prefix="t.w": must be a DNS label prefix'],
    ['prefix empty flag', ['--namespace-prefix='], {}, 'invalid --namespace-prefix="": must be a DNS label prefix'],
    ['prefix 41 characters', [`--namespace-prefix=${'a'.repeat(41)}`], {}, `invalid --namespace-prefix="${'a'.repeat(41)}": `],
    ['prefix from env', [], { TOKENWARDEN_NAMESPACE_PREFIX: 'TW' }, 'invalid TOKENWARDEN_NAMESPACE_PREFIX="TW": '],
    ['log level', ['--log-level=verbose'], {}, 'invalid --log-level="verbose": '],
    ['log level case', [], { TOKENWARDEN_LOG_LEVEL: 'INFO' }, 'invalid TOKENWARDEN_LOG_LEVEL="INFO": '],
    ['empty instance flag', ['--instance='], {}, 'invalid --instance="": '],
    ['empty kubeconfig flag', ['--kubeconfig='], {}, 'invalid --kubeconfig="": '],
  ];

  it.each(bad)('refuses %s, naming where it came from', (_what, argv, env, prefix) => {
    expect(configError(argv, env).message.startsWith(prefix)).toBe(true);
  });

  it.each(bad)('reports %s in one line', (_what, argv, env) => {
    expect(configError(argv, env).message).not.toMatch(/[\r\n]/);
  });

  it('keeps a value with a line break on one line', () => {
    const err = configError([], { TOKENWARDEN_LOG_LEVEL: 'info\nfatal' });
    expect(err.message.startsWith('invalid TOKENWARDEN_LOG_LEVEL="info\\nfatal": ')).toBe(true);
    expect(err.message).not.toMatch(/\n/);
  });

  it('names the flag, not the variable, when the bad value came from the flag', () => {
    const err = configError(['--workers=0'], { TOKENWARDEN_WORKERS: '3' });
    expect(err.message).toContain('--workers');
    expect(err.message).not.toContain('TOKENWARDEN_WORKERS');
  });

  it('refuses an unknown flag, naming it', () => {
    expect(configError(['--wokers=4']).message).toContain("'--wokers'");
    expect(configError(['--workers=4', '--verbose']).message).toContain("'--verbose'");
    expect(configError(['-w', '4']).message).toContain("'-w'");
  });

  it('refuses positional arguments', () => {
    expect(configError(['run']).message).toContain("'run'");
  });

  it('refuses a flag without its value, naming it', () => {
    expect(configError(['--workers']).message).toContain('--workers');
    expect(configError(['--resync-period']).message).toContain('--resync-period');
  });

  // BUG: the module promises "one line naming the setting", but Node's parseArgs message for a flag
  // whose value is missing before another flag spans three lines, and loadConfig passes it through:
  // "Option '--workers' argument is ambiguous.\nDid you forget to specify the option argument for
  // '--workers'?\nTo specify an option argument starting with a dash use '--workers=-XYZ'."
  it('reports a flag swallowed by the next flag in one line', () => {
    const err = configError(['--workers', '--log-level', 'debug']);
    expect(err.message).toContain('--workers');
    expect(err.message).not.toMatch(/\n/);
  });
});

/**
 * Leader election and the metrics and health servers: settings added to config.ts while these tests
 * were written (uncommitted work in progress when this file was created).
 */
describe('loadConfig: leader election and servers', () => {
  it('has defaults', () => {
    expect(loadConfig([], {})).toMatchObject({
      'leader-elect': false,
      'leader-election-namespace': 'tokenwarden-system',
      'leader-election-id': 'tokenwarden-leader',
      'lease-duration': 15_000,
      'renew-deadline': 10_000,
      'retry-period': 2_000,
      'metrics-bind-address': { host: undefined, port: 8080 },
      'health-probe-bind-address': { host: undefined, port: 8081 },
    });
  });

  it('takes the lease namespace from the flag, the variable, then the pod namespace', () => {
    expect(loadConfig([], { POD_NAMESPACE: 'ops' })['leader-election-namespace']).toBe('ops');
    expect(loadConfig([], { POD_NAMESPACE: 'ops', TOKENWARDEN_LEADER_ELECTION_NAMESPACE: 'env-ns' })['leader-election-namespace']).toBe('env-ns');
    expect(loadConfig(['--leader-election-namespace=flag-ns'], { POD_NAMESPACE: 'ops', TOKENWARDEN_LEADER_ELECTION_NAMESPACE: 'env-ns' })['leader-election-namespace']).toBe('flag-ns');
  });

  it('reads leader-elect as true or false only', () => {
    expect(loadConfig(['--leader-elect=true'], {})['leader-elect']).toBe(true);
    expect(loadConfig([], { TOKENWARDEN_LEADER_ELECT: 'true' })['leader-elect']).toBe(true);
    expect(loadConfig(['--leader-elect=false'], { TOKENWARDEN_LEADER_ELECT: 'true' })['leader-elect']).toBe(false);
    expect(configError(['--leader-elect=yes']).message).toBe('invalid --leader-elect="yes": must be true or false');
  });

  it('reads bind addresses, "0" turning a server off', () => {
    expect(loadConfig(['--metrics-bind-address=127.0.0.1:9090'], {})['metrics-bind-address']).toEqual({ host: '127.0.0.1', port: 9090 });
    expect(loadConfig(['--metrics-bind-address=0'], {})['metrics-bind-address']).toBeNull();
    expect(loadConfig([], { TOKENWARDEN_HEALTH_PROBE_BIND_ADDRESS: '[::1]:8081' })['health-probe-bind-address']).toEqual({ host: '::1', port: 8081 });
    expect(configError(['--metrics-bind-address=8080']).message).toMatch(/^invalid --metrics-bind-address="8080": /);
    expect(configError([], { TOKENWARDEN_HEALTH_PROBE_BIND_ADDRESS: ':99999' }).message).toMatch(/^invalid TOKENWARDEN_HEALTH_PROBE_BIND_ADDRESS=":99999": /);
  });

  it('refuses a lease name or namespace that Kubernetes would refuse', () => {
    expect(configError(['--leader-election-id=Leader']).message).toMatch(/^invalid --leader-election-id="Leader": /);
    expect(configError(['--leader-election-namespace=a.b']).message).toMatch(/^invalid --leader-election-namespace="a.b": /);
  });

  it('refuses timings that cannot work, naming the setting by where it came from', () => {
    expect(configError(['--lease-duration=1500ms']).message).toMatch(/^invalid --lease-duration=1500ms: /);
    expect(configError(['--renew-deadline=20s']).message).toMatch(/^invalid --renew-deadline=20s: must be shorter than --lease-duration=15s/);
    expect(configError([], { TOKENWARDEN_RENEW_DEADLINE: '20s' }).message).toMatch(/^invalid TOKENWARDEN_RENEW_DEADLINE=20s: /);
    expect(configError(['--retry-period=10s']).message).toMatch(/^invalid --retry-period=10s: must be shorter than --renew-deadline=10s/);
    expect(loadConfig(['--lease-duration=60s', '--renew-deadline=40s', '--retry-period=5s'], {})['lease-duration']).toBe(60_000);
  });
});
