/**
 * src/operator.ts stripSecret, the transform of the Secrets informer: Secrets are cached without
 * their values. A token Secret keeps only the claims the operator reads to recognise its tokens;
 * no token, no other data, no stringData and no managedFields stay in the cache.
 */
import { describe, expect, it } from 'vitest';
import { slimServiceAccount, stripSecret } from '../../src/operator.ts';
import { tokenDigest } from '../../src/policy/token-claims.ts';
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
  it('an immutable token Secret: the flag is kept, so the operator knows it must replace it rather than write it', () => {
    const cached = stripSecret({ ...secret('tokenwarden.io/token', { token: b64(TOKEN) }), immutable: true });
    expect(cached.immutable).toBe(true);
    expect(leaks(cached, TOKEN)).toEqual([]);
  });

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
      digest: tokenDigest(TOKEN),
    });
    expect(cached.tokenClaims).toMatchObject({ digest: expect.stringMatching(/^[0-9a-f]{32}$/) });
    expect(cached).not.toHaveProperty('immutable');
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

  it('keeps nothing else anyone wrote on a token Secret: no foreign label or annotation, no own annotation longer than the operator writes', () => {
    const big = 'x'.repeat(250 * 1024);
    const cached = stripSecret(
      secret('tokenwarden.io/token', { token: b64(TOKEN) }, {
        metadata: {
          name: 'ballast',
          namespace: 'mallory',
          uid: 'u',
          resourceVersion: '1',
          labels: { 'app.kubernetes.io/managed-by': 'tokenwarden', 'tokenwarden.io/extra': 'x', team: 'm' },
          annotations: { 'ballast.example.com/fill': big, 'tokenwarden.io/requested-audiences': big, 'tokenwarden.io/renewed-for': big, 'tokenwarden.io/client': 'c' },
          ownerReferences: [{ apiVersion: 'v1', kind: 'ConfigMap', name: 'x', uid: 'o1' }],
        },
      }),
    );
    expect(cached.metadata?.labels).toEqual({ 'app.kubernetes.io/managed-by': 'tokenwarden' });
    expect(cached.metadata?.annotations).toEqual({ 'tokenwarden.io/client': 'c' });
    expect(cached.metadata?.ownerReferences).toBeUndefined();
    expect(JSON.stringify(cached).length).toBeLessThan(2048);
  });

  it('keeps the template\'s labels and annotations on a Secret a client controls, up to 4 KiB of them, and only its controller reference', () => {
    const owner = { apiVersion: 'tokenwarden.io/v1alpha1', kind: 'ServiceAccountClient', name: 'alice-notebook', uid: 'client-uid', controller: true };
    const meta = (annotations: Record<string, string>) => ({
      name: 'alice-notebook-token',
      namespace: 'team-a',
      uid: 'u',
      resourceVersion: '1',
      labels: { 'app.kubernetes.io/managed-by': 'tokenwarden', team: 'ml' },
      annotations: { 'tokenwarden.io/client': 'alice-notebook', ...annotations },
      ownerReferences: [{ apiVersion: 'v1', kind: 'ConfigMap', name: 'other', uid: 'o2' }, owner],
    });
    const small = stripSecret(secret('tokenwarden.io/token', { token: b64(TOKEN) }, { metadata: meta({ note: 'notebook' }) }));
    expect(small.metadata?.labels).toEqual({ team: 'ml', 'app.kubernetes.io/managed-by': 'tokenwarden' });
    expect(small.metadata?.annotations).toEqual({ note: 'notebook', 'tokenwarden.io/client': 'alice-notebook' });
    expect(small.metadata?.ownerReferences).toEqual([owner]);
    const large = stripSecret(secret('tokenwarden.io/token', { token: b64(TOKEN) }, { metadata: meta({ note: 'n'.repeat(5000) }) }));
    expect(large.metadata?.labels).toEqual({ 'app.kubernetes.io/managed-by': 'tokenwarden' });
    expect(large.metadata?.annotations).toEqual({ 'tokenwarden.io/client': 'alice-notebook' });
  });

  it('a token beyond the claims\' bounds (35,000 audiences) is "unreadable", and nothing of it is kept', () => {
    const b64url = (value: unknown): string => Buffer.from(JSON.stringify(value), 'utf8').toString('base64url');
    const aud = Array.from({ length: 35_000 }, (_, i) => `a${i}`);
    const huge = `${b64url({ alg: 'RS256' })}.${b64url({ aud, iat: IAT, exp: EXP, 'kubernetes.io': { namespace: 'x', serviceaccount: { name: 'x', uid: 'x' } } })}.sig`;
    const cached = stripSecret(secret('tokenwarden.io/token', { token: b64(huge) }));
    expect(cached.tokenClaims).toBe('unreadable');
    expect(JSON.stringify(cached).length).toBeLessThan(1024);
  });

  it('an anchor keeps its own labels and annotation only', () => {
    const cached = stripSecret(
      secret('tokenwarden.io/anchor', undefined, {
        metadata: {
          name: 'alice-notebook-x7k2p',
          namespace: 'tokenwarden-tier-free',
          labels: { 'app.kubernetes.io/managed-by': 'tokenwarden', 'tokenwarden.io/tier': 'free', 'tokenwarden.io/client-uid': 'c', 'tokenwarden.io/scope': 's', 'tokenwarden.io/client-namespace': 'team-a', other: 'x' },
          annotations: { 'tokenwarden.io/client': 'team-a/alice-notebook', fill: 'x'.repeat(1000) },
        },
      }),
    );
    expect(Object.keys(cached.metadata?.labels ?? {}).sort()).toEqual(['app.kubernetes.io/managed-by', 'tokenwarden.io/client-namespace', 'tokenwarden.io/client-uid', 'tokenwarden.io/scope', 'tokenwarden.io/tier']);
    expect(cached.metadata?.annotations).toEqual({ 'tokenwarden.io/client': 'team-a/alice-notebook' });
  });
});

describe('slimServiceAccount', () => {
  it('keeps the operator\'s label, the tier\'s, the user and the records of use; nothing else', () => {
    const cached = slimServiceAccount({
      apiVersion: 'v1',
      kind: 'ServiceAccount',
      metadata: {
        name: 'alice-example-com-ff8d9819fc',
        namespace: 'tokenwarden-tier-free',
        uid: 'sa',
        resourceVersion: '3',
        labels: { 'app.kubernetes.io/managed-by': 'tokenwarden', 'tokenwarden.io/tier': 'free', other: 'x' },
        annotations: { 'tokenwarden.io/user': 'alice@example.com', 'clients.tokenwarden.io/c1': 'scope', fill: 'x'.repeat(1000) },
      },
    } as Parameters<typeof slimServiceAccount>[0]);
    expect(cached.metadata?.labels).toEqual({ 'app.kubernetes.io/managed-by': 'tokenwarden', 'tokenwarden.io/tier': 'free' });
    expect(cached.metadata?.annotations).toEqual({ 'tokenwarden.io/user': 'alice@example.com', 'clients.tokenwarden.io/c1': 'scope' });
    expect(dictionaryObjects(cached)).toEqual([]);
  });
});
