/**
 * Configuration from flags and environment variables, validated with zod. A bad value stops start-up
 * with one line naming the setting.
 */
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { parseDuration } from './policy/duration.ts';

const durationMs = z.string().transform((text, ctx) => {
  try {
    return parseDuration(text);
  } catch {
    ctx.addIssue({ code: 'custom', message: `"${text}" is not a duration such as 30s, 10m or 1h` });
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
    throw new ConfigError((err as Error).message);
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
  return config as Config;
}
