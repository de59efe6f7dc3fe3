/** The operator's logger: pino, JSON lines, with token-bearing paths redacted. */
import { pino, type DestinationStream, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

/**
 * Paths that can hold a token or Secret data. Redaction is the safety net; code must still not log
 * objects that carry tokens (a Secret, a TokenRequest response).
 */
export const REDACT_PATHS: readonly string[] = [
  'token',
  'data',
  'stringData',
  'authorization',
  '*.token',
  '*.data',
  '*.stringData',
  '*.authorization',
  '*.*.token',
  '*.*.data',
  '*.*.stringData',
  'status.token',
  '*.status.token',
  'headers.authorization',
  'headers.Authorization',
  '*.headers.authorization',
  '*.headers.Authorization',
  'req.headers.authorization',
  'req.headers.cookie',
  'bearerToken',
  '*.bearerToken',
];

export interface LoggerOptions {
  level?: LevelWithSilent;
  /** Logged as "name" on every line. */
  name?: string;
  /** Where lines go; default stdout. Tests pass a stream to inspect output. */
  destination?: DestinationStream;
  /** Extra redaction paths, in pino's syntax. */
  redact?: readonly string[];
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  return pino(
    {
      level: opts.level ?? 'info',
      name: opts.name,
      redact: { paths: [...REDACT_PATHS, ...(opts.redact ?? [])], censor: '[REDACTED]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      serializers: { err: pino.stdSerializers.err },
    },
    opts.destination,
  );
}

/** A logger that writes nothing, for tests and defaults. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
