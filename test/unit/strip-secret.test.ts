/**
 * src/operator.ts stripSecret, the transform of the Secrets informer: Secrets are cached without
 * their values. A token Secret keeps only the claims the operator reads to recognise its tokens;
 * no token, no other data, no stringData and no managedFields stay in the cache.
 */
import { describe, expect, it } from 'vitest';
import { stripSecret } from '../../src/operator.ts';
import type { CachedSecret } from '../../src/reconcilers/context.ts';
import { dictionaryObjects } from './support/v8-shape.ts';

const b64url = (value: unknown): string => Buffer.from(JSON.stringify(value), 'utf8').toString('base64url');
const b64 = (text: string): string => Buffer.from(text, 'utf8').toString('base64');

const IAT = 1_735_732_800;
const EXP = IAT + 3600;
const SIGNATURE = 'c2VjcmV0LXNpZ25hdHVyZS1ub3QtdG8tYmUta2VwdA';
const TOKEN = `${b64url({ alg: 'RS256', kid: 'k1' })}.${b64url({
  aud: ['models-gateway'],
  exp: EXP,
  iat: IAT,
  'kubernetes.io': {
    namespace: 'tokenwarden-tier-free',
    serviceaccount: { name: 'alice-example-com-ff8d9819fc', uid: 'sa-uid-1' },
    secret: { name: 'alice-notebook-x7k2p', uid: 'anchor-uid-1' },
  },
})}.${SIGNATURE}`;

type RawSecret = CachedSecret & { data?: Record<string, string>; stringData?: Record<string, string> };

function secret(type: string, data: Record<string, string> | undefined, extra: Partial<RawSecret> = {}): RawSecret {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    type,
    metadata: {
      name: 'alice-notebook-token',
      namespace: 'team-a',
      uid: 'secret-uid',
      resourceVersion: '42',
      labels: { 'app.kubernetes.io/managed-by': 'tokenwarden' },
      annotations: { 'tokenwarden.io/client': 'alice-notebook' },
      managedFields: [{ manager: 'tokenwarden', operation: 'Update', fieldsV1: { 'f:data': { 'f:token': {} } } }],
    } as CachedSecret['metadata'],
    ...(data !== undefined ? { data } : {}),
    ...extra,
  };
}

/** Every form the value could take in the cached object. */
function leaks(cached: unknown, value: string): string[] {
  const text = JSON.stringify(cached);
  return [value, b64(value), value.split('.')[2] ?? value].filter((form) => form.length > 0 && text.includes(form)).map((form) => form.slice(0, 8) + '…');
}

describe('stripSecret', () => {
  it('a token Secret: keeps the claims of its token and its metadata, drops the token, other data, stringData and managedFields', () => {
    const cached = stripSecret(secret('tokenwarden.io/token', { token: b64(TOKEN), 'ca.crt': b64('a CA bundle') }, { stringData: { extra: 'plain text value' } }));
    expect(leaks(cached, TOKEN), 'the token (raw, base64 or its signature) in the cached object').toEqual([]);
    expect(leaks(cached, 'a CA bundle')).toEqual([]);
    expect(leaks(cached, 'plain text value')).toEqual([]);
    expect(cached).not.toHaveProperty('data');
    expect(cached).not.toHaveProperty('stringData');
    expect(cached.metadata).not.toHaveProperty('managedFields');
    expect(cached.tokenClaims).toEqual({
      audiences: ['models-gateway'],
      issuedAtMs: IAT * 1000,
      expiresAtMs: EXP * 1000,
      namespace: 'tokenwarden-tier-free',
      serviceAccountName: 'alice-example-com-ff8d9819fc',
      serviceAccountUid: 'sa-uid-1',
      boundSecretName: 'alice-notebook-x7k2p',
    });
    // What the operator reads besides the claims is all there.
    expect(cached.type).toBe('tokenwarden.io/token');
    expect(cached.metadata).toMatchObject({
      name: 'alice-notebook-token',
      namespace: 'team-a',
      uid: 'secret-uid',
      resourceVersion: '42',
      labels: { 'app.kubernetes.io/managed-by': 'tokenwarden' },
      annotations: { 'tokenwarden.io/client': 'alice-notebook' },
    });
  });

  it('a token Secret holding something that is not a ServiceAccount JWT: "unreadable", and the value is dropped', () => {
    const value = 'not-a-jwt-but-still-a-secret-value';
    const cached = stripSecret(secret('tokenwarden.io/token', { token: b64(value) }));
    expect(cached.tokenClaims).toBe('unreadable');
    expect(leaks(cached, value)).toEqual([]);
    expect(cached).not.toHaveProperty('data');
  });

  it('a token Secret with no token (emptied, suspended): no claims', () => {
    expect(stripSecret(secret('tokenwarden.io/token', {})).tokenClaims).toBeUndefined();
    expect(stripSecret(secret('tokenwarden.io/token', undefined)).tokenClaims).toBeUndefined();
    expect(stripSecret(secret('tokenwarden.io/token', { token: '' })).tokenClaims).toBeUndefined();
  });

  it('any other Secret type (an anchor, an Opaque Secret holding a JWT): no data and no claims are kept', () => {
    for (const type of ['tokenwarden.io/anchor', 'Opaque', 'kubernetes.io/service-account-token']) {
      const cached = stripSecret(secret(type, { token: b64(TOKEN), password: b64('hunter2-hunter2') }));
      expect(cached, type).not.toHaveProperty('data');
      expect(cached.tokenClaims, type).toBeUndefined();
      expect(leaks(cached, TOKEN), `${type}: the token in the cached object`).toEqual([]);
      expect(leaks(cached, 'hunter2-hunter2'), type).toEqual([]);
    }
  });

  it('builds the cached Secret whole, as the API server sent it (parsed JSON): no object of it is a V8 dictionary', () => {
    const parsed = JSON.parse(JSON.stringify(secret('tokenwarden.io/token', { token: b64(TOKEN) }, { stringData: { extra: 'x' } }))) as RawSecret;
    const cached = stripSecret(parsed);
    expect(cached.tokenClaims).not.toBe('unreadable');
    expect(dictionaryObjects(cached)).toEqual([]);
  });
});
