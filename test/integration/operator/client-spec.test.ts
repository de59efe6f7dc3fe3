/**
 * What a client's spec and its TenantBinding change about its token and Secret, on real clients:
 * - secretTemplate labels and annotations on the Secret (tokenwarden's own keys cannot be overridden,
 *   and an edit of the template reaches the Secret);
 * - audience narrowing: spec.token.audiences, a subset of the tier's, is exactly the JWT's aud, and a
 *   gateway of another tier audience refuses the token; an audience outside the tier's is refused;
 * - a TenantBinding's token.maxExpiration caps the lifetime of the clients bound through it, below
 *   the tier's, whether or not the client asks for a lifetime.
 *
 * Token values are never printed.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { createTestNamespace, waitFor } from '../support/cluster.ts';
import {
  CLIENT_ANNOTATION,
  MANAGED_BY,
  R,
  TIER_LABEL,
  clientEvents,
  condition,
  createBinding,
  createClient,
  createTier,
  decodeJwt,
  fingerprint,
  kube,
  readClientToken,
  review,
  startOperator,
  waitForClient,
  waitForClientReady,
  waitForTierReady,
  type OperatorProcess,
  type Secret,
} from '../support/operator.ts';

let op: OperatorProcess;
let ns: string;
let tierName: string;
let group: string;
const aud = { a: '', b: '', c: '' };

beforeAll(async () => {
  op = await startOperator({ name: 'spec' });
  ns = await createTestNamespace(`${op.prefix}-team`);
  group = `${op.prefix}-users`;
  aud.a = `${op.prefix}-gw-a`;
  aud.b = `${op.prefix}-gw-b`;
  aud.c = `${op.prefix}-gw-c`;
  const tier = await createTier(op, 'std', {
    level: 10,
    groups: [group],
    token: { audiences: [aud.a, aud.b, aud.c], defaultExpiration: '4h', maxExpiration: '24h' },
  });
  tierName = tier.metadata.name;
  await waitForTierReady(tierName);
});

const lifetimeS = (token: string | undefined): number => {
  const claims = decodeJwt(token as string);
  return (claims.exp as number) - (claims.iat as number);
};

describe('secretTemplate', () => {
  it('puts its labels and annotations on the Secret, never over tokenwarden\'s own, and follows an edit', async () => {
    await createClient(op, ns, 'templated', {
      subject: { user: 'templated@example.com', groups: [group] },
      secretTemplate: {
        labels: { team: 'ml', 'example.com/owner': 'data', [MANAGED_BY]: 'someone-else' },
        annotations: { note: 'notebook', [CLIENT_ANNOTATION]: 'not-me', [TIER_LABEL]: 'gold' },
      },
    });
    const { secret, client } = await waitForClientReady(ns, 'templated');
    expect(secret?.metadata.labels).toMatchObject({ team: 'ml', 'example.com/owner': 'data', [MANAGED_BY]: 'tokenwarden' });
    expect(secret?.metadata.annotations).toMatchObject({ note: 'notebook', [CLIENT_ANNOTATION]: 'templated', [TIER_LABEL]: tierName });

    await kube.patch(R.client, ns, 'templated', { spec: { secretTemplate: { labels: { team: 'research' }, annotations: { note: 'batch', extra: 'yes' } } } });
    const edited = await waitFor(async () => {
      const s = await kube.get<Secret>(R.secret, ns, 'templated-token');
      return s.metadata.labels?.team === 'research' && s.metadata.annotations?.note === 'batch' && s.metadata.annotations.extra === 'yes' ? s : undefined;
    }, { timeoutMs: 15_000, description: 'the Secret following the edited secretTemplate' });
    expect(edited.metadata.labels?.[MANAGED_BY]).toBe('tokenwarden');
    expect(edited.metadata.annotations?.[CLIENT_ANNOTATION]).toBe('templated');
    // An edit of the template alone needs no new token.
    const after = await readClientToken(ns, 'templated');
    expect(after.client.status?.tokens?.[0]?.id, 'the same token after a template edit').toBe(client.status?.tokens?.[0]?.id);
  });
});

describe('audience narrowing', () => {
  it('the token carries exactly the client\'s audiences, a subset of the tier\'s; gateways of the other tier audiences refuse it', async () => {
    await createClient(op, ns, 'narrow', { subject: { user: 'narrow@example.com', groups: [group] }, token: { audiences: [aud.b] } });
    const ct = await waitForClientReady(ns, 'narrow');
    expect(decodeJwt(ct.token as string).aud, 'the JWT\'s aud').toEqual([aud.b]);
    const asB = await review(ct.token as string, [aud.b], { cached: true });
    expect(asB.authenticated, 'a gateway of the requested audience').toBe(true);
    expect(asB.audiences).toEqual([aud.b]);
    expect((await review(ct.token as string, [aud.a])).authenticated, `a gateway of ${aud.a}, a tier audience the client did not ask for`).toBe(false);
    expect((await review(ct.token as string, [aud.c])).authenticated, `a gateway of ${aud.c}`).toBe(false);

    // Without narrowing, the token carries every audience of the tier (so the narrowing above is the client's doing).
    await createClient(op, ns, 'wide', { subject: { user: 'narrow@example.com', groups: [group] } });
    const wide = await waitForClientReady(ns, 'wide');
    expect([...(decodeJwt(wide.token as string).aud as string[])].sort()).toEqual([aud.a, aud.b, aud.c].sort());
    expect((await review(wide.token as string, [aud.a])).authenticated).toBe(true);
  });

  it('an audience outside the tier\'s is refused: no token, Ready=False AudienceNotAllowed', async () => {
    const outside = `${op.prefix}-gw-elsewhere`;
    await createClient(op, ns, 'wider', { subject: { user: 'wider@example.com', groups: [group] }, token: { audiences: [aud.a, outside] } });
    const client = await waitForClient(ns, 'wider', (c) => condition(c, 'Ready')?.reason === 'AudienceNotAllowed' && c.status?.observedGeneration === c.metadata.generation, {
      description: 'wider Ready=False AudienceNotAllowed',
    });
    expect(condition(client, 'Ready')?.status).toBe('False');
    expect(condition(client, 'Ready')?.message).toContain(outside);
    expect(fingerprint((await readClientToken(ns, 'wider')).token), 'no token for a client asking for an audience outside its tier').toBe('<none>');
    expect(client.status?.tokens ?? []).toEqual([]);
  });
});

describe('a TenantBinding\'s token.maxExpiration', () => {
  it('caps the lifetime of a client bound through it below the tier\'s maximum, asked for or not, and tells the client', async () => {
    const user = 'capped@example.com';
    await createBinding(op, ns, 'short-lived', { tierRef: { name: tierName }, subjects: [{ kind: 'User', name: user }], token: { maxExpiration: '2h' } });
    // Asks for 8h (the tier allows 24h): capped to the binding's 2h.
    await createClient(op, ns, 'asks-8h', { subject: { user }, token: { expiration: '8h' } });
    // Asks for nothing (the tier's default is 4h): capped to 2h too.
    await createClient(op, ns, 'asks-nothing', { subject: { user } });
    const asked = await waitForClientReady(ns, 'asks-8h');
    const defaulted = await waitForClientReady(ns, 'asks-nothing');
    for (const ct of [asked, defaulted]) {
      const name = ct.client.metadata.name;
      expect(ct.client.status?.tierReason, `${name} is bound through the TenantBinding`).toBe('TenantBinding/short-lived');
      expect(lifetimeS(ct.token), `${name}: JWT exp - iat (s)`).toBe(2 * 3600);
      const newest = ct.client.status?.tokens?.[0];
      expect(Date.parse(newest?.expiresAt as string) - Date.parse(newest?.issuedAt as string), `${name}: status lifetime (ms)`).toBe(2 * 3600 * 1000);
      expect(condition(ct.client, 'Ready')?.message, `${name}: told of the cap`).toMatch(/capped to 2h by .*short-lived/);
      expect((await review(ct.token as string, [aud.a])).authenticated).toBe(true);
    }
    const capped = await waitFor(async () => (await clientEvents(ns, 'asks-8h')).filter((e) => e.reason === 'Capped'), { timeoutMs: 10_000, description: 'a Capped Event' });
    expect(capped[0]?.note).toMatch(/expiration 8h capped to 2h/);
    // A client not bound through it (another user, in the tier by its group) keeps the tier's limits.
    await createClient(op, ns, 'unbound', { subject: { user: 'unbound@example.com', groups: [group] }, token: { expiration: '8h' } });
    const unbound = await waitForClientReady(ns, 'unbound');
    expect(unbound.client.status?.tierReason).toBe(`Tier/${tierName}`);
    expect(lifetimeS(unbound.token), 'a client not bound through the TenantBinding (s)').toBe(8 * 3600);
  });
});
