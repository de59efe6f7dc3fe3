/**
 * Configuration from flags and environment variables, validated with zod. A bad value stops start-up
 * with one line naming the setting.
 */
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { parseBindAddress } from './observability/address.ts';
import { timingError } from './controller/leader-election.ts';
import { parseDuration } from './policy/duration.ts';

const durationMs = z.string().transform((text, ctx) => {
  try {
    return parseDuration(text);
  } catch {
    ctx.addIssue({ code: 'custom', message: `"${text}" is not a duration such as 30s, 10m or 1h` });
    return z.NEVER;
  }
});

/** "host:port", ":port" or "[v6]:port"; "0" disables (null). */
const bindAddress = z.string().transform((text, ctx) => {
  try {
    return parseBindAddress(text);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
    return z.NEVER;
  }
});

/** Each setting: its flag, its environment variable, and its schema with the default. */
const SETTINGS = {
  kubeconfig: { env: 'KUBECONFIG', schema: z.string().min(1).optional() },
  'namespace-prefix': {
    env: 'TOKENWARDEN_NAMESPACE_PREFIX',
    schema: z
      .string()
      .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be a DNS label prefix: lowercase letters, digits and "-"')
      .max(40)
      .default('tokenwarden'),
  },
  workers: { env: 'TOKENWARDEN_WORKERS', schema: z.coerce.number().int().min(1).max(64).default(4) },
  'log-level': { env: 'TOKENWARDEN_LOG_LEVEL', schema: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info') },
  'resync-period': { env: 'TOKENWARDEN_RESYNC_PERIOD', schema: durationMs.default(600_000) },
  selector: { env: 'TOKENWARDEN_SELECTOR', schema: z.string().default('') },
  instance: { env: 'TOKENWARDEN_INSTANCE', schema: z.string().min(1).optional() },
  'leader-elect': { env: 'TOKENWARDEN_LEADER_ELECT', schema: z.enum(['true', 'false'], 'must be true or false').transform((v) => v === 'true').default(false) },
  'leader-election-namespace': {
    env: 'TOKENWARDEN_LEADER_ELECTION_NAMESPACE',
    schema: z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be a namespace name').max(63).optional(),
  },
  'leader-election-id': {
    env: 'TOKENWARDEN_LEADER_ELECTION_ID',
    schema: z.string().regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, 'must be a Lease name: lowercase letters, digits, "-" and "."').max(253).default('tokenwarden-leader'),
  },
  'lease-duration': { env: 'TOKENWARDEN_LEASE_DURATION', schema: durationMs.default(15_000) },
  'renew-deadline': { env: 'TOKENWARDEN_RENEW_DEADLINE', schema: durationMs.default(10_000) },
  'retry-period': { env: 'TOKENWARDEN_RETRY_PERIOD', schema: durationMs.default(2_000) },
  'metrics-bind-address': { env: 'TOKENWARDEN_METRICS_BIND_ADDRESS', schema: bindAddress.prefault(':8080') },
  'health-probe-bind-address': { env: 'TOKENWARDEN_HEALTH_PROBE_BIND_ADDRESS', schema: bindAddress.prefault(':8081') },
} as const;

type Settings = typeof SETTINGS;
export type Config = { [K in keyof Settings]: z.output<Settings[K]['schema']> };

export class ConfigError extends Error {}

export function loadConfig(argv: string[], env: NodeJS.ProcessEnv): Config {
  let flags: Record<string, string | boolean | undefined>;
  try {
    flags = parseArgs({
      args: argv,
      options: Object.fromEntries(Object.keys(SETTINGS).map((name) => [name, { type: 'string' as const }])),
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (err) {
    // parseArgs may explain over several lines; the contract is one line naming the setting.
    throw new ConfigError((err as Error).message.replace(/\s*\n\s*/g, ' '));
  }
  const config: Record<string, unknown> = {};
  for (const [name, setting] of Object.entries(SETTINGS)) {
    const fromFlag = flags[name];
    const raw = typeof fromFlag === 'string' ? fromFlag : env[setting.env] === '' ? undefined : env[setting.env];
    const result = (setting.schema as z.ZodType).safeParse(raw);
    if (!result.success) {
      const source = typeof fromFlag === 'string' ? `--${name}` : setting.env;
      throw new ConfigError(`invalid ${source}=${JSON.stringify(raw)}: ${result.error.issues.map((i) => i.message).join('; ')}`);
    }
    config[name] = result.data;
  }
  config.instance ??= env.POD_NAME || hostname();
  config['leader-election-namespace'] ??= env.POD_NAMESPACE || 'tokenwarden-system';
  const sourceOf = (name: keyof Settings) => (typeof flags[name] === 'string' || !env[SETTINGS[name].env] ? `--${name}` : SETTINGS[name].env);
  const timing = timingError(
    { leaseDurationMs: config['lease-duration'] as number, renewDeadlineMs: config['renew-deadline'] as number, retryPeriodMs: config['retry-period'] as number },
    { leaseDuration: sourceOf('lease-duration'), renewDeadline: sourceOf('renew-deadline'), retryPeriod: sourceOf('retry-period') },
  );
  if (timing !== undefined) throw new ConfigError(`invalid ${timing}`);
  return config as Config;
}
