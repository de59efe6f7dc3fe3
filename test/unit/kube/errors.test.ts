import { describe, expect, it } from 'vitest';
import {
  isAlreadyExists,
  isConflict,
  isForbidden,
  isGone,
  isInvalid,
  isNetworkError,
  isNotFound,
  isRetryable,
  KubeApiError,
  reasonForCode,
} from '../../../src/kube/errors.ts';

function statusBody(code: number, reason: string, message: string): string {
  return JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', code, reason, message });
}

const err = (code: number, reason: string): KubeApiError => KubeApiError.fromResponse('GET', '/api/v1/x', code, '', statusBody(code, reason, 'm'));

describe('KubeApiError.fromResponse', () => {
  it('takes code, reason and message from the Status body', () => {
    const e = KubeApiError.fromResponse('PUT', '/api/v1/namespaces/a/secrets/s', 409, 'Conflict', statusBody(409, 'Conflict', 'the object has been modified'));
    expect(e).toBeInstanceOf(Error);
    expect(e.statusCode).toBe(409);
    expect(e.reason).toBe('Conflict');
    expect(e.serverMessage).toBe('the object has been modified');
    expect(e.method).toBe('PUT');
    expect(e.path).toBe('/api/v1/namespaces/a/secrets/s');
    expect(e.message).toBe('PUT /api/v1/namespaces/a/secrets/s: 409 Conflict: the object has been modified');
  });

  it('falls back to the status line when the body is not a Status', () => {
    const e = KubeApiError.fromResponse('GET', '/x', 503, 'Service Unavailable', '<html>proxy error</html>');
    expect(e.reason).toBe('ServiceUnavailable');
    expect(e.serverMessage).toBe('Service Unavailable');
    expect(e.message).not.toContain('html');
  });

  it('reads retryAfterSeconds from the Status details or the Retry-After header', () => {
    const body = JSON.stringify({ kind: 'Status', code: 429, reason: 'TooManyRequests', message: 'slow down', details: { retryAfterSeconds: 7 } });
    expect(KubeApiError.fromResponse('GET', '/x', 429, '', body).retryAfterSeconds).toBe(7);
    expect(KubeApiError.fromResponse('GET', '/x', 429, '', '', '3').retryAfterSeconds).toBe(3);
    expect(KubeApiError.fromResponse('GET', '/x', 500, '', '').retryAfterSeconds).toBeUndefined();
  });

  it('bounds very long server messages', () => {
    const e = KubeApiError.fromResponse('GET', '/x', 422, '', statusBody(422, 'Invalid', 'x'.repeat(10_000)));
    expect(e.message.length).toBeLessThan(2200);
  });

  it('never contains the request body (it is not an input)', () => {
    // The constructor takes no request body at all; the message is built from method, path and Status.
    const e = KubeApiError.fromResponse('POST', '/api/v1/namespaces/a/serviceaccounts/sa/token', 500, '', statusBody(500, 'InternalError', 'oops'));
    expect(Object.keys(e)).not.toContain('body');
    expect(e.message).toBe('POST /api/v1/namespaces/a/serviceaccounts/sa/token: 500 InternalError: oops');
  });
});

describe('reasonForCode', () => {
  it('maps codes as apimachinery does', () => {
    expect(reasonForCode(404)).toBe('NotFound');
    expect(reasonForCode(409)).toBe('Conflict');
    expect(reasonForCode(410)).toBe('Expired');
    expect(reasonForCode(422)).toBe('Invalid');
    expect(reasonForCode(599)).toBe('InternalError');
    expect(reasonForCode(418)).toBe('Unknown');
  });
});

describe('classifiers', () => {
  const cases: [string, KubeApiError][] = [
    ['notFound', err(404, 'NotFound')],
    ['conflict', err(409, 'Conflict')],
    ['alreadyExists', err(409, 'AlreadyExists')],
    ['gone', err(410, 'Expired')],
    ['forbidden', err(403, 'Forbidden')],
    ['invalid', err(422, 'Invalid')],
    ['throttled', err(429, 'TooManyRequests')],
    ['server', err(500, 'InternalError')],
    ['unavailable', err(503, 'ServiceUnavailable')],
    ['badRequest', err(400, 'BadRequest')],
  ];
  const table: Record<string, (e: unknown) => boolean> = {
    notFound: isNotFound,
    conflict: isConflict,
    alreadyExists: isAlreadyExists,
    gone: isGone,
    forbidden: isForbidden,
    invalid: isInvalid,
  };
  const retryable = new Set(['throttled', 'server', 'unavailable']);

  for (const [name, e] of cases) {
    it(`classifies ${name} exactly`, () => {
      for (const [fnName, fn] of Object.entries(table)) {
        expect(fn(e), `${fnName}(${name})`).toBe(fnName === name);
      }
      expect(isRetryable(e), `isRetryable(${name})`).toBe(retryable.has(name));
    });
  }

  it('treats AlreadyExists as not a Conflict even though both are 409', () => {
    const e = err(409, 'AlreadyExists');
    expect(isConflict(e)).toBe(false);
    expect(isAlreadyExists(e)).toBe(true);
  });

  it('recognizes a watch ERROR Status object', () => {
    expect(isGone({ kind: 'Status', code: 410, reason: 'Expired', message: 'too old resource version' })).toBe(true);
    expect(isNotFound({ kind: 'Status', code: 404 })).toBe(true);
  });

  it('recognizes errors carrying only a statusCode (client-node style)', () => {
    expect(isGone(Object.assign(new Error('Gone'), { statusCode: 410 }))).toBe(true);
    expect(isRetryable(Object.assign(new Error('x'), { statusCode: 502 }))).toBe(true);
  });

  it('is false for plain errors and non-errors', () => {
    for (const e of [new Error('x'), undefined, null, 'text', 42]) {
      expect(isNotFound(e)).toBe(false);
      expect(isConflict(e)).toBe(false);
      expect(isRetryable(e)).toBe(false);
    }
  });
});

describe('network errors', () => {
  it('retries a KubeApiError without response', () => {
    const e = new KubeApiError({ statusCode: 0, reason: 'NetworkError', message: 'ECONNREFUSED', method: 'GET', path: '/x' });
    expect(isNetworkError(e)).toBe(true);
    expect(isRetryable(e)).toBe(true);
    expect(e.message).toBe('GET /x: no response NetworkError: ECONNREFUSED');
  });

  it('retries undici fetch failures through their cause', () => {
    const cause = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6443'), { code: 'ECONNREFUSED' });
    const e = new TypeError('fetch failed', { cause });
    expect(isRetryable(e)).toBe(true);
    expect(isRetryable(Object.assign(new Error('socket'), { code: 'UND_ERR_SOCKET' }))).toBe(true);
    expect(isRetryable(new DOMException('timed out', 'TimeoutError'))).toBe(true);
  });

  it('does not retry other local errors', () => {
    expect(isRetryable(Object.assign(new Error('nope'), { code: 'ERR_INVALID_ARG_TYPE' }))).toBe(false);
    expect(isRetryable(new TypeError('x is not a function'))).toBe(false);
  });
});
