/**
 * The generated CRDs against a real API server: they install, the server applies the same defaults
 * as the zod schemas, and bad objects are refused at admission (422) with the field named, CEL
 * rules included (zod does not evaluate those). Plus what kubectl shows.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import type { z } from 'zod';
import {
  ServiceAccountClient,
  ServiceAccountClientSpec,
  TenantBinding,
  TenantBindingSpec,
  Tier,
  TierSpec,
} from '../../src/api/index.ts';
import { createTestNamespace, kubectl } from './support/cluster.ts';
import { adminRequest, installCrds, type ApiResponse } from './support/crds.ts';

const API = '/apis/tokenwarden.io/v1alpha1';
type Kind = 'Tier' | 'TenantBinding' | 'ServiceAccountClient';
const PLURAL: Record<Kind, string> = { Tier: 'tiers', TenantBinding: 'tenantbindings', ServiceAccountClient: 'serviceaccountclients' };
const SCHEMA: Record<Kind, z.ZodType> = { Tier, TenantBinding, ServiceAccountClient };

interface Obj {
  apiVersion: string;
  kind: Kind;
  metadata: { name: string; namespace?: string; resourceVersion?: string };
  spec: Record<string, unknown>;
}
interface Status {
  kind?: string;
  code?: number;
  reason?: string;
  message?: string;
  details?: { causes?: { field?: string; message?: string; reason?: string }[] };
}

let ns: string;
// Cluster-scoped, so named after the test namespace (unique per run) and deleted at the end.
const tierNames = new Set<string>();
const tierName = (suffix: string): string => {
  const name = `${ns}-${suffix}`;
  tierNames.add(name);
  return name;
};

const collection = (kind: Kind, namespace?: string): string =>
  kind === 'Tier' ? `${API}/tiers` : `${API}/namespaces/${namespace ?? ns}/${PLURAL[kind]}`;
const itemPath = (obj: Obj): string => `${collection(obj.kind, obj.metadata.namespace)}/${obj.metadata.name}`;

function object(kind: Kind, name: string, spec: Record<string, unknown>): Obj {
  return {
    apiVersion: 'tokenwarden.io/v1alpha1',
    kind,
    metadata: kind === 'Tier' ? { name } : { name, namespace: ns },
    spec,
  };
}

const create = (obj: Obj, dryRun = false): Promise<ApiResponse> =>
  adminRequest('POST', `${collection(obj.kind, obj.metadata.namespace)}${dryRun ? '?dryRun=All' : ''}`, obj);
const replace = (obj: Obj): Promise<ApiResponse> => adminRequest('PUT', itemPath(obj), obj);

async function mustCreate(obj: Obj): Promise<Obj> {
  const res = await create(obj);
  expect(res.code, `create ${obj.kind}/${obj.metadata.name}: ${JSON.stringify(res.body)}`).toBe(201);
  return res.body as Obj;
}

async function read(obj: Obj): Promise<Obj> {
  const res = await adminRequest<Obj>('GET', itemPath(obj));
  expect(res.code).toBe(200);
  return res.body;
}

/**
 * The request was refused at admission, for `field` alone: 422 Invalid, the message names the
 * field, and every cause that names a field names this one (so an object refused for some other
 * mistake of the test cannot pass).
 */
function expectRefused(res: ApiResponse, field: string, message?: string): void {
  const status = res.body as Status;
  expect(res.code, JSON.stringify(status)).toBe(422);
  expect(status.reason).toBe('Invalid');
  expect(status.message).toContain(`${field}:`);
  if (message !== undefined) expect(status.message).toContain(message);
  const fields = (status.details?.causes ?? []).map((c) => c.field).filter((f) => f !== undefined && f !== '' && f !== '<nil>');
  expect(fields.length).toBeGreaterThan(0);
  expect(new Set(fields)).toEqual(new Set([field]));
}

beforeAll(async () => {
  await installCrds();
  ns = await createTestNamespace('admission');
});

afterAll(async () => {
  await Promise.all([...tierNames].map((name) => adminRequest('DELETE', `${API}/tiers/${name}`)));
});

describe('valid objects', () => {
  it.each<[string, Kind, Record<string, unknown>]>([
    ['a minimal Tier', 'Tier', { level: 5 }],
    [
      'the design brief Tier',
      'Tier',
      {
        displayName: 'Premium',
        level: 20,
        groups: ['premium-users'],
        token: { audiences: ['models-gateway'], defaultExpiration: '4h', maxExpiration: '24h', renewBefore: '33%', gracePeriod: '5m' },
        access: [{ clusterRole: 'model-user', namespaces: ['models'] }],
        limits: { requestsPerMinute: 600, tokensPerMinute: 50000 },
        deletionPolicy: 'Retain',
      },
    ],
    ['a Tier with part of a token policy', 'Tier', { token: { defaultExpiration: '2h', renewBefore: '30m' }, access: [{ clusterRole: 'view' }] }],
    ['a minimal TenantBinding', 'TenantBinding', { tierRef: { name: 'premium' }, subjects: [{ kind: 'User', name: 'alice@example.com' }] }],
    [
      'the design brief TenantBinding',
      'TenantBinding',
      {
        tierRef: { name: 'premium' },
        subjects: [
          { kind: 'Group', name: 'ml-engineers' },
          { kind: 'User', name: 'alice@example.com' },
        ],
        maxClients: 50,
        token: { maxExpiration: '8h' },
      },
    ],
    ['a minimal ServiceAccountClient', 'ServiceAccountClient', { subject: { user: 'bob@example.com' } }],
    [
      'the design brief ServiceAccountClient',
      'ServiceAccountClient',
      {
        subject: { user: 'alice@example.com', groups: ['premium-users'] },
        tierRef: { name: 'premium' },
        token: { audiences: ['models-gateway'], expiration: '4h', renewBefore: '1h' },
        secretName: 'alice-notebook-token',
        secretTemplate: { labels: { team: 'ml' }, annotations: { note: 'notebook' } },
        suspended: false,
        revocationEpoch: 0,
      },
    ],
  ])('%s is stored with the defaults zod gives', async (label, kind, spec) => {
    const name = label.replace(/[^a-z]+/gi, '-').toLowerCase().replace(/^-|-$/g, '');
    const created = await mustCreate(object(kind, kind === 'Tier' ? tierName(name) : name, spec));
    const stored = await read(created);
    // The CRD's defaults and zod's must agree: the operator parses what the server stores.
    const specSchema = { Tier: TierSpec, TenantBinding: TenantBindingSpec, ServiceAccountClient: ServiceAccountClientSpec }[kind];
    expect(stored.spec).toEqual(specSchema.parse(spec));
    expect(SCHEMA[kind].safeParse(stored).error?.issues ?? []).toEqual([]);
  });

  it('every sample of config/samples is admitted (server dry run)', async () => {
    const dir = fileURLToPath(new URL('../../config/samples', import.meta.url));
    const { resources = [] } = parse(readFileSync(join(dir, 'kustomization.yaml'), 'utf8')) as { resources?: string[] };
    const samples = resources
      .flatMap((file) => parseAllDocuments(readFileSync(join(dir, file), 'utf8')).map((doc) => doc.toJS() as Obj))
      .filter((obj) => obj.apiVersion === 'tokenwarden.io/v1alpha1');
    expect(samples.length).toBeGreaterThanOrEqual(5);
    for (const sample of samples) {
      // Moved into this test's namespace and names: only the CEL rules are under test here.
      const obj = { ...sample, metadata: sample.kind === 'Tier' ? { name: `${ns}-${sample.metadata.name}` } : { ...sample.metadata, namespace: ns } };
      const res = await create(obj, true);
      expect(res.code, `${sample.kind}/${sample.metadata.name}: ${JSON.stringify(res.body)}`).toBe(201);
    }
  });

  it('a Tier update that keeps the namespace, and a raised revocationEpoch, are accepted', async () => {
    const tier = await mustCreate(object('Tier', tierName('mutable'), { namespace: `${ns}-pinned`, level: 1 }));
    expect((await replace({ ...tier, spec: { ...tier.spec, level: 2 } })).code).toBe(200);
    const client = await mustCreate(object('ServiceAccountClient', 'epoch-up', { subject: { user: 'bob@example.com' }, revocationEpoch: 1 }));
    expect((await replace({ ...client, spec: { ...client.spec, revocationEpoch: 2 } })).code).toBe(200);
  });
});

describe('refused at admission, naming the field', () => {
  // Built when the test runs (the namespace exists only then), each under a name of its own, so one
  // wrongly admitted object cannot make the next case fail with AlreadyExists instead.
  let count = 0;
  const unique = (): string => `bad-${++count}`;
  const tier = (spec: Record<string, unknown>) => (): Obj => object('Tier', tierName(unique()), spec);
  const binding = (spec: Record<string, unknown>) => (): Obj =>
    object('TenantBinding', unique(), { tierRef: { name: 'premium' }, subjects: [{ kind: 'Group', name: 'ml-engineers' }], ...spec });
  const client = (spec: Record<string, unknown>) => (): Obj =>
    object('ServiceAccountClient', unique(), { subject: { user: 'alice@example.com' }, ...spec });

  it.each<[string, () => Obj, string, string?]>([
    ['a duration that is no Go duration', tier({ token: { gracePeriod: '5 minutes' } }), 'spec.token.gracePeriod', 'should match'],
    ['a client expiration in days', client({ token: { expiration: '1d' } }), 'spec.token.expiration'],
    ['a level above 1000', tier({ level: 1001 }), 'spec.level', 'less than or equal to 1000'],
    ['a negative level', tier({ level: -1 }), 'spec.level'],
    [
      'a Tier renewBefore not shorter than defaultExpiration',
      tier({ token: { defaultExpiration: '4h', renewBefore: '4h' } }),
      'spec.token.renewBefore',
      'renewBefore must be shorter than defaultExpiration',
    ],
    [
      'a client renewBefore not shorter than its expiration',
      client({ token: { expiration: '1h', renewBefore: '90m' } }),
      'spec.token.renewBefore',
      'renewBefore must be shorter than expiration',
    ],
    [
      'maxExpiration shorter than defaultExpiration',
      tier({ token: { defaultExpiration: '4h', maxExpiration: '1h' } }),
      'spec.token.maxExpiration',
      'maxExpiration must not be shorter than defaultExpiration',
    ],
    ['maxExpiration shorter than the default defaultExpiration', tier({ token: { maxExpiration: '30m' } }), 'spec.token.maxExpiration'],
    ['a Tier renewBefore of 150%', tier({ token: { renewBefore: '150%' } }), 'spec.token.renewBefore', 'below 100%'],
    ['a client renewBefore of 100%', client({ token: { renewBefore: '100%' } }), 'spec.token.renewBefore', 'below 100%'],
    ['a renewBefore of 0%', client({ token: { renewBefore: '0%' } }), 'spec.token.renewBefore', 'above 0%'],
    ['a renewBefore of 0s', tier({ token: { renewBefore: '0s' } }), 'spec.token.renewBefore', 'longer than zero'],
    ['a defaultExpiration under 10m', tier({ token: { defaultExpiration: '9m59s', maxExpiration: '1h' } }), 'spec.token.defaultExpiration', 'at least 10m'],
    ['a client expiration under 10m', client({ token: { expiration: '5m' } }), 'spec.token.expiration', 'at least 10m'],
    ['a tenant maxExpiration under 10m', binding({ token: { maxExpiration: '5m' } }), 'spec.token.maxExpiration', 'at least 10m'],
    ['an unknown subject kind', binding({ subjects: [{ kind: 'ServiceAccount', name: 'default' }] }), 'spec.subjects[0].kind', 'supported values'],
    ['a TenantBinding with no subjects', binding({ subjects: [] }), 'spec.subjects', 'at least 1 items'],
    ['a TenantBinding without subjects', () => object('TenantBinding', unique(), { tierRef: { name: 'premium' } }), 'spec.subjects', 'Required value'],
    ['a subject with an empty name', binding({ subjects: [{ kind: 'User', name: '' }] }), 'spec.subjects[0].name'],
    ['an empty user', client({ subject: { user: '' } }), 'spec.subject.user', 'at least 1 chars long'],
    ['a Secret name that is no DNS name', client({ secretName: 'Alice_Token' }), 'spec.secretName'],
    ['a negative revocationEpoch', client({ revocationEpoch: -1 }), 'spec.revocationEpoch'],
    ['a tier namespace that is no DNS label', tier({ namespace: 'Tier_NS' }), 'spec.namespace'],
    ['an unknown deletionPolicy', tier({ deletionPolicy: 'Orphan' }), 'spec.deletionPolicy', 'supported values'],
  ])('%s', async (_label, build, field, message) => {
    expectRefused(await create(build()), field, message);
  });

  it('changing Tier.spec.namespace', async () => {
    const created = await mustCreate(object('Tier', tierName('immutable'), { namespace: `${ns}-tier` }));
    expectRefused(await replace({ ...created, spec: { ...created.spec, namespace: `${ns}-other` } }), 'spec.namespace', 'namespace is immutable');
    // From the default ("") to an explicit name is a change too: the operator already made the namespace.
    const defaulted = await mustCreate(object('Tier', tierName('defaulted'), {}));
    expectRefused(await replace({ ...defaulted, spec: { ...defaulted.spec, namespace: `${ns}-late` } }), 'spec.namespace', 'namespace is immutable');
    expect((await read(created)).spec.namespace).toBe(`${ns}-tier`);
  });

  it('lowering revocationEpoch', async () => {
    const created = await mustCreate(object('ServiceAccountClient', 'epoch', { subject: { user: 'alice@example.com' }, revocationEpoch: 3 }));
    expectRefused(await replace({ ...created, spec: { ...created.spec, revocationEpoch: 2 } }), 'spec.revocationEpoch', 'may only increase');
    expect((await read(created)).spec.revocationEpoch).toBe(3);
  });
});

describe('kubectl', () => {
  beforeAll(async () => {
    await mustCreate(object('Tier', tierName('listed'), { level: 7 }));
    await mustCreate(object('TenantBinding', 'listed', { tierRef: { name: 'premium' }, subjects: [{ kind: 'Group', name: 'ml-engineers' }] }));
    await mustCreate(object('ServiceAccountClient', 'listed', { subject: { user: 'alice@example.com' } }));
  });

  // A discovery cache of its own: a cache from an earlier cluster on the same port would describe old CRDs.
  let cacheDir: string;
  beforeAll(() => {
    cacheDir = mkdtempSync(join(tmpdir(), 'tokenwarden-kubectl-cache-'));
  });
  afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));
  const get = (...args: string[]) => kubectl(['get', '--cache-dir', cacheDir, ...args]);
  const header = (stdout: string): string[] => (stdout.split('\n')[0] ?? '').trim().split(/\s+/);

  it('`get sac -o wide` prints the columns of the design, wide ones last', async () => {
    const wide = await get('sac', '-n', ns, '-o', 'wide');
    expect(wide.code, wide.stderr).toBe(0);
    expect(header(wide.stdout)).toEqual(['NAME', 'SUBJECT', 'TIER', 'READY', 'REASON', 'EXPIRES', 'SECRET', 'AGE', 'STATUS', 'SERVICEACCOUNT']);
    expect(wide.stdout).toMatch(/^listed\s+alice@example\.com\s/m);
    const narrow = await get('sac', '-n', ns);
    expect(narrow.code, narrow.stderr).toBe(0);
    expect(header(narrow.stdout)).toEqual(['NAME', 'SUBJECT', 'TIER', 'READY', 'REASON', 'EXPIRES', 'SECRET', 'AGE']);
  });

  it('`get tiers` and `get tenantbindings` print the columns of the design', async () => {
    const tiers = await get('tiers', `${ns}-listed`);
    expect(tiers.code, tiers.stderr).toBe(0);
    expect(header(tiers.stdout)).toEqual(['NAME', 'LEVEL', 'DEFAULT', 'NAMESPACE', 'CLIENTS', 'READY', 'AGE']);
    expect(tiers.stdout).toMatch(new RegExp(`^${ns}-listed\\s+7\\s+false\\s`, 'm'));
    const bindings = await get('tenantbindings', '-n', ns, 'listed');
    expect(bindings.code, bindings.stderr).toBe(0);
    expect(header(bindings.stdout)).toEqual(['NAME', 'TIER', 'SUBJECTS', 'CLIENTS', 'READY', 'AGE']);
  });

  it('`get tokenwarden` lists all three kinds (category)', async () => {
    const res = await get('tokenwarden', '-n', ns, '-o', 'name');
    expect(res.code, res.stderr).toBe(0);
    const names = res.stdout.trim().split('\n');
    expect(names).toContain(`tier.tokenwarden.io/${ns}-listed`);
    expect(names).toContain('tenantbinding.tokenwarden.io/listed');
    expect(names).toContain('serviceaccountclient.tokenwarden.io/listed');
  });
});
