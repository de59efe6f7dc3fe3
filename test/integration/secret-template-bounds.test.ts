/**
 * A client's secretTemplate is bounded at admission: the operator keeps every client's spec in
 * memory, so an unbounded template (a 1.2 MB annotation, 100,000 labels) let a tenant's few clients
 * exhaust its heap. mallory, with `edit` in her own namespace only, is refused with 422 naming the
 * field for each bound she exceeds (count, key length and value length of labels and annotations,
 * the annotations' total), and a client exactly at every bound is admitted and becomes Ready.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { API_VERSION } from '../../src/api/index.ts';
import { SECRET_TEMPLATE_LIMITS as L } from '../../src/api/service-account-client.ts';
import { createTestNamespace } from './support/cluster.ts';
import { R, createTier, kube, startOperator, waitForClientReady, waitForTierReady, scopedName, type OperatorProcess } from './support/operator.ts';
import { asUser, grantEdit, type Rest } from './support/users.ts';

const MALLORY = 'mallory@example.com';

let op: OperatorProcess;
let ns: string;
let mallory: Rest;

/** A key of exactly `L.keyChars` characters Kubernetes accepts: a 253-character DNS prefix, a slash, a 63-character name. */
const PREFIX = ['a', 'b', 'c'].map((c) => c.repeat(63)).join('.') + '.' + 'd'.repeat(61);
const key = (i: number, extra = 0): string => `${PREFIX}/k${String(i).padStart(2, '0')}${'x'.repeat(60 + extra)}`;
const entries = (n: number, value: (i: number) => string): Record<string, string> => Object.fromEntries(Array.from({ length: n }, (_, i) => [key(i), value(i)]));

const createAsMallory = (name: string, secretTemplate: unknown) =>
  mallory.create(R.client, ns, {
    apiVersion: API_VERSION,
    kind: 'ServiceAccountClient',
    metadata: { name, labels: { ...op.labels } },
    spec: { subject: { user: MALLORY }, secretTemplate },
  });

beforeAll(async () => {
  op = await startOperator({ name: 'tmplbound' });
  await createTier(op, 'free', { level: 10, default: true, token: { audiences: [`${op.prefix}-gateway`] } });
  ns = await createTestNamespace('tmplbound');
  await grantEdit(ns, MALLORY);
  mallory = asUser(MALLORY);
  await waitForTierReady(scopedName(op, 'free'));
}, 120_000);

describe('secretTemplate is bounded at admission', () => {
  it('the bounds are the documented ones and the test keys sit exactly on the key bound', () => {
    expect(L).toEqual({ entries: 64, keyChars: 317, labelValueChars: 63, annotationValueChars: 4096, annotationTotalChars: 8192 });
    expect(key(0)).toHaveLength(L.keyChars);
  });

  const over: [string, Record<string, unknown>, string][] = [
    ['65 labels', { labels: entries(65, () => 'v') }, 'spec.secretTemplate.labels'],
    ['a label key of 318 characters', { labels: { [key(0, 1)]: 'v' } }, 'spec.secretTemplate.labels'],
    ['a label value of 64 characters', { labels: { [key(0)]: 'v'.repeat(64) } }, 'spec.secretTemplate.labels'],
    ['65 annotations', { annotations: entries(65, () => '') }, 'spec.secretTemplate.annotations'],
    ['an annotation key of 318 characters', { annotations: { [key(0, 1)]: 'v' } }, 'spec.secretTemplate.annotations'],
    ['an annotation value of 4097 characters', { annotations: { [key(0)]: 'v'.repeat(4097) } }, 'spec.secretTemplate.annotations'],
    ['annotation values totalling 8193 characters', { annotations: { [key(0)]: 'v'.repeat(4096), [key(1)]: 'v'.repeat(4096), [key(2)]: 'v' } }, 'spec.secretTemplate.annotations'],
    // The attack itself: one 1.2 MB annotation.
    ['a 1.2 MB annotation', { annotations: { note: 'x'.repeat(1_200_000) } }, 'spec.secretTemplate.annotations'],
  ];
  it.each(over)('mallory is refused with 422 naming the field: %s', async (_what, template, field) => {
    const res = await createAsMallory(`over-${over.findIndex(([w]) => w === _what)}`, template);
    expect(res.code, res.body.message).toBe(422);
    expect(res.body.message).toContain(field);
  });

  it("mallory's client at every bound is admitted and becomes Ready, its Secret carrying the template", async () => {
    const labels = entries(L.entries, () => 'v'.repeat(L.labelValueChars));
    // Two values at the per-value bound make the total; the other 62 keys carry an empty value.
    const annotations = entries(L.entries, (i) => (i < 2 ? 'w'.repeat(L.annotationValueChars) : ''));
    const res = await createAsMallory('at-bounds', { labels, annotations });
    expect(res.code, res.body.message).toBe(201);
    const ct = await waitForClientReady(ns, 'at-bounds', { timeoutMs: 60_000 });
    const secret = await kube.get(R.secret, ns, ct.client.status?.secretName ?? 'at-bounds-token');
    expect(secret.metadata.labels).toMatchObject(labels);
    expect(secret.metadata.annotations).toMatchObject(annotations);
  });
});
