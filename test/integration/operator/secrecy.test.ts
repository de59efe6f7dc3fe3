/**
 * A token value never appears in a log line, an Event, a status field or an error message. The
 * operator runs at debug level through issuance, revocation, suspension, tampering and an error
 * (a Secret name that belongs to someone else), and every token it wrote is looked for in all of it.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { createTestNamespace, waitFor } from '../support/cluster.ts';
import {
  R,
  createClient,
  createTier,
  getClient,
  fingerprint,
  kube,
  readClientToken,
  startOperator,
  tokenOf,
  waitForClient,
  waitForClientReady,
  waitForTierReady,
  type OperatorProcess,
  type KEvent,
  type Secret,
} from '../support/operator.ts';

let op: OperatorProcess;
let ns: string;

beforeAll(async () => {
  op = await startOperator({ name: 'secrecy' });
  ns = await createTestNamespace(`${op.prefix}-team`);
  const tier = await createTier(op, 'std', { level: 10, groups: [`${op.prefix}-users`], token: { audiences: [`${op.prefix}-gw`] } });
  await waitForTierReady(tier.metadata.name);
});

describe('token values stay secret', () => {
  it('never appear in logs, Events, status or error messages', async () => {
    const seen = new Set<string>();
    const remember = async () => {
      const token = (await readClientToken(ns, 'keeper')).token;
      if (token) seen.add(token);
    };
    await createClient(op, ns, 'keeper', { subject: { user: 'keeper@example.com', groups: [`${op.prefix}-users`] } });
    await waitForClientReady(ns, 'keeper');
    await remember();
    for (const epoch of [1, 2]) {
      await kube.patch(R.client, ns, 'keeper', { spec: { revocationEpoch: epoch } });
      await waitFor(async () => (await getClient(ns, 'keeper')).status?.revocationEpoch === epoch, { description: `epoch ${epoch} carried out` });
      await waitForClientReady(ns, 'keeper');
      await remember();
    }
    // Overwrite the token with another real token (the previous one): the operator must not echo it back.
    const previous = [...seen][0] as string;
    await kube.patch(R.secret, ns, 'keeper-token', { data: { token: Buffer.from(previous).toString('base64') } });
    await waitFor(async () => {
      const current = tokenOf(await kube.tryGet<Secret>(R.secret, ns, 'keeper-token'));
      return current !== undefined && current !== previous;
    }, { description: 'the overwritten token repaired' });
    await remember();

    // An error path: the Secret name is taken by a Secret that is not tokenwarden's.
    await kube.create(R.secret, ns, { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'taken' }, stringData: { token: previous } });
    await createClient(op, ns, 'clash', { subject: { user: 'keeper@example.com', groups: [`${op.prefix}-users`] }, secretName: 'taken' });
    const clash = await waitForClient(ns, 'clash', (c) => c.status?.conditions?.some((x) => x.type === 'Ready' && x.reason === 'SecretConflict') ?? false, {
      description: 'the client reports the Secret it may not take over',
    });
    expect(clash.status?.conditions?.find((c) => c.type === 'Ready')?.message).toContain('not managed by tokenwarden');
    const untouched = await kube.get<Secret>(R.secret, ns, 'taken');
    expect(fingerprint(tokenOf(untouched)), 'the foreign Secret is left as it was (fingerprint)').toBe(fingerprint(previous));
    await waitFor(async () => (await kube.list<KEvent>(R.event, ns)).some((e) => e.reason === 'SecretConflict' && e.regarding?.name === 'clash'), {
      description: 'a SecretConflict Warning Event',
    });

    expect(seen.size).toBeGreaterThanOrEqual(4);
    const events = await kube.list<KEvent>(R.event, ns);
    const statuses = JSON.stringify([await getClient(ns, 'keeper'), await getClient(ns, 'clash')]);
    const haystacks = { 'operator log': op.logs(), Events: JSON.stringify(events), status: statuses };
    for (const token of seen) {
      // The signature alone is enough to be a leak; it is the part no claim repeats.
      const signature = token.split('.')[2] as string;
      for (const [where, text] of Object.entries(haystacks)) {
        expect(text.includes(signature), `a token signature appears in the ${where}`).toBe(false);
      }
    }
    expect(events.length, 'Events were recorded, so the search covered something').toBeGreaterThan(2);
    expect(op.logs().length).toBeGreaterThan(1000);
  });
});
