import { describe, expect, it } from 'vitest';
import { createLogger } from '../../../src/controller/logger.ts';

function capture(): { lines: () => Record<string, unknown>[]; stream: { write: (s: string) => void } } {
  const raw: string[] = [];
  return { lines: () => raw.map((l) => JSON.parse(l) as Record<string, unknown>), stream: { write: (s: string) => void raw.push(s) } };
}

describe('createLogger', () => {
  it('writes JSON with a string level and the given name', () => {
    const out = capture();
    const log = createLogger({ destination: out.stream, name: 'tokenwarden' });
    log.info({ a: 1 }, 'hello');
    const [line] = out.lines();
    expect(line).toMatchObject({ level: 'info', name: 'tokenwarden', a: 1, msg: 'hello' });
    expect(typeof line?.time).toBe('string');
  });

  it('redacts token-bearing paths', () => {
    const out = capture();
    const log = createLogger({ destination: out.stream });
    log.info(
      {
        token: 'SECRET-0',
        secret: { data: { token: 'c2VjcmV0' }, stringData: { token: 'SECRET-1' } },
        obj: { status: { token: 'SECRET-2' } },
        req: { headers: { authorization: 'Bearer SECRET-3' } },
        headers: { authorization: 'Bearer SECRET-4' },
        keep: 'visible',
      },
      'm',
    );
    const text = JSON.stringify(out.lines());
    for (const secret of ['SECRET-0', 'c2VjcmV0', 'SECRET-1', 'SECRET-2', 'SECRET-3', 'SECRET-4']) expect(text).not.toContain(secret);
    expect(text).toContain('[REDACTED]');
    expect(text).toContain('visible');
  });

  it('honours the level', () => {
    const out = capture();
    const log = createLogger({ destination: out.stream, level: 'warn' });
    log.info('no');
    log.warn('yes');
    expect(out.lines().map((l) => l.msg)).toEqual(['yes']);
  });

  it('redacts in child loggers too', () => {
    const out = capture();
    const log = createLogger({ destination: out.stream }).child({ controller: 'c' });
    log.info({ data: { token: 'SECRET' } }, 'm');
    expect(JSON.stringify(out.lines())).not.toContain('SECRET');
  });
});
