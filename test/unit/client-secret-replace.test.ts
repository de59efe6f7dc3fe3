/**
 * The client's Secret when it cannot be written: made immutable, it is deleted (only the one the
 * cache shows, by uid) so the next pass writes it anew; refused as invalid, it never keeps an
 * expired token. Someone else's Secret at that name is never deleted.
 */
import { describe, expect, it } from 'vitest';
import type { CachedSecret, OperatorContext } from '../../src/reconcilers/context.ts';
import { deleteImmutableSecret, dropExpiredToken } from '../../src/reconcilers/service-account-client/secret.ts';
import type { Client } from '../../src/reconcilers/service-account-client/status.ts';

const NOW = Date.parse('2026-12-01T12:00:00Z');
const client = { apiVersion: 'tokenwarden.io/v1alpha1', kind: 'ServiceAccountClient', metadata: { name: 'svc', namespace: 'shared', uid: 'client-uid' }, spec: {} } as unknown as Client;
const claims = { audiences: [], issuedAtMs: NOW - 3_600_000, expiresAtMs: NOW + 60_000, namespace: 'tier', serviceAccountName: 'sa', serviceAccountUid: 'sa-uid' };

function fake(secret: CachedSecret | undefined, deleteAnswer: 'ok' | 'notFound' = 'ok') {
  const deletes: unknown[][] = [];
  const op = {
    now: () => NOW,
    caches: { secrets: { get: (ns: string, name: string) => (ns === 'shared' && name === 'svc-token' ? secret : undefined) } },
    kube: {
      delete: async (...args: unknown[]) => {
        deletes.push(args);
        if (deleteAnswer === 'notFound') throw Object.assign(new Error('not found'), { statusCode: 404, code: 404, reason: 'NotFound' });
      },
    },
  } as unknown as OperatorContext;
  return { op, deletes };
}

const own = (over: Partial<CachedSecret> = {}): CachedSecret => ({
  type: 'tokenwarden.io/token',
  metadata: { name: 'svc-token', namespace: 'shared', uid: 'secret-uid', ownerReferences: [{ apiVersion: 'tokenwarden.io/v1alpha1', kind: 'ServiceAccountClient', name: 'svc', uid: 'client-uid', controller: true }] },
  tokenClaims: claims,
  ...over,
});

describe('deleteImmutableSecret', () => {
  it("deletes the client's own immutable Secret, with a precondition on the uid the cache shows", async () => {
    const { op, deletes } = fake(own({ immutable: true }));
    expect(await deleteImmutableSecret(op, client)).toBe('deleted');
    expect(deletes).toHaveLength(1);
    expect(deletes[0]?.slice(1)).toEqual(['shared', 'svc-token', { preconditions: { uid: 'secret-uid' } }]);
  });

  it('leaves a mutable Secret, and an immutable Secret the client does not control', async () => {
    for (const secret of [own(), own({ immutable: true, metadata: { ...own().metadata, ownerReferences: [] } }), own({ immutable: true, type: 'Opaque' })]) {
      const { op, deletes } = fake(secret);
      expect(await deleteImmutableSecret(op, client)).toBeUndefined();
      expect(deletes).toEqual([]);
    }
  });

  it('says the cache lags when the Secret it shows is gone already', async () => {
    const { op } = fake(own({ immutable: true }), 'notFound');
    expect(await deleteImmutableSecret(op, client)).toBe('lagging');
  });
});

describe('dropExpiredToken', () => {
  it('deletes the Secret once its token has expired', async () => {
    const { op, deletes } = fake(own({ tokenClaims: { ...claims, expiresAtMs: NOW } }));
    expect(await dropExpiredToken(op, client)).toBeUndefined();
    expect(deletes).toHaveLength(1);
  });

  it('before expiry: deletes nothing and asks to look again just after it', async () => {
    const { op, deletes } = fake(own());
    expect(await dropExpiredToken(op, client)).toBe(60_050);
    expect(deletes).toEqual([]);
  });

  it("never deletes someone else's Secret, nor one holding no readable token", async () => {
    for (const secret of [own({ tokenClaims: { ...claims, expiresAtMs: NOW - 1 }, metadata: { ...own().metadata, ownerReferences: [] } }), own({ tokenClaims: 'unreadable' }), own({ tokenClaims: undefined })]) {
      const { op, deletes } = fake(secret);
      expect(await dropExpiredToken(op, client)).toBeUndefined();
      expect(deletes).toEqual([]);
    }
  });
});
