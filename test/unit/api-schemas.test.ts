/**
 * The zod schemas of src/api/: they accept the design brief's examples and the samples, and refuse
 * malformed input at the right field. CEL rules (cross-field and transition rules) are not zod's:
 * test/integration/admission.test.ts checks them against a real API server.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import type { z } from 'zod';
import { ServiceAccountClient, ServiceAccountClientSpec, TenantBinding, Tier, TierSpec } from '../../src/api/index.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));
const samplesDir = join(root, 'config', 'samples');

// The examples of the design brief (api.md), with its placeholders ("...") filled in.
const designTier = parse(`
apiVersion: tokenwarden.io/v1alpha1
kind: Tier
metadata:
  name: premium
spec:
  displayName: Premium
  level: 20
  default: false
  groups: [premium-users]
  namespace: ""
  token:
    audiences: [models-gateway]
    defaultExpiration: 4h
    maxExpiration: 24h
    renewBefore: 33%
    gracePeriod: 5m
  access:
  - clusterRole: model-user
    namespaces: [models]
  limits:
    requestsPerMinute: 600
    tokensPerMinute: 50000
  deletionPolicy: Retain
status:
  namespace: tokenwarden-tier-premium
  clients: 12
  observedGeneration: 3
  conditions:
  - {type: Ready, status: "True", reason: Reconciled, message: namespace and access bindings are in place, lastTransitionTime: "2025-01-01T00:00:00Z", observedGeneration: 3}
`) as unknown;

const designTenantBinding = parse(`
apiVersion: tokenwarden.io/v1alpha1
kind: TenantBinding
metadata:
  name: ml-team-premium
  namespace: team-a
spec:
  tierRef: {name: premium}
  subjects:
  - {kind: Group, name: ml-engineers}
  - {kind: User, name: alice@example.com}
  maxClients: 50
  token:
    maxExpiration: 8h
status:
  clients: 3
  observedGeneration: 1
  conditions:
  - {type: Ready, status: "False", reason: TierNotFound, message: Tier premium does not exist, lastTransitionTime: "2025-01-01T00:00:00Z"}
`) as unknown;

const designClient = parse(`
apiVersion: tokenwarden.io/v1alpha1
kind: ServiceAccountClient
metadata:
  name: alice-notebook
  namespace: team-a
spec:
  subject:
    user: alice@example.com
    groups: [premium-users]
  tierRef: {name: premium}
  token:
    audiences: [models-gateway]
    expiration: 4h
    renewBefore: 1h
  secretName: alice-notebook-token
  secretTemplate: {labels: {}, annotations: {}}
  suspended: false
  revocationEpoch: 0
status:
  tier: premium
  tierReason: TenantBinding/ml-team-premium
  serviceAccount: {namespace: tokenwarden-tier-premium, name: alice-example-com-3f2a9c1b7d, uid: 0b6f4c1e-3f0e-4d7a-9a55-1c2b3d4e5f60}
  secretName: alice-notebook-token
  tokens:
  - {id: alice-notebook-7x2kq, issuedAt: "2025-01-01T00:00:00Z", expiresAt: "2025-01-01T04:00:00Z", renewAt: "2025-01-01T03:00:00Z"}
  expiresAt: "2025-01-01T04:00:00Z"
  renewAt: "2025-01-01T03:00:00Z"
  revocationEpoch: 0
  observedGeneration: 2
  conditions:
  - {type: Ready, status: "True", reason: Issued, message: token valid until 2025-01-01T04:00:00Z, lastTransitionTime: "2025-01-01T00:00:00Z"}
  - {type: TierResolved, status: "True", reason: Resolved, message: TenantBinding/ml-team-premium, lastTransitionTime: "2025-01-01T00:00:00Z"}
  - {type: Suspended, status: "False", reason: Active, message: "", lastTransitionTime: "2025-01-01T00:00:00Z"}
`) as unknown;

/** A deep copy of `obj` with the value at a dotted path ("spec.subjects.0.kind") set, or removed when undefined. */
function withValue(obj: unknown, path: string, value: unknown): unknown {
  const copy = structuredClone(obj) as Record<string, unknown>;
  const keys = path.split('.');
  const last = keys.pop() as string;
  let node: Record<string, unknown> = copy;
  for (const key of keys) node = node[key] as Record<string, unknown>;
  if (value === undefined) delete node[last];
  else node[last] = value;
  return copy;
}

/** Paths of the fields zod refused (each once: an empty name breaks both its length and its pattern); empty when it accepted the input. */
function refusedPaths(schema: z.ZodType, input: unknown): string[] {
  const result = schema.safeParse(input);
  return result.success ? [] : [...new Set(result.error.issues.map((issue) => issue.path.join('.')))];
}

/**
 * Keys of `input` that zod dropped while parsing: an unknown field (a typo such as `maxClient`)
 * parses fine, since zod strips it, and the API server would prune it silently too.
 */
function strippedKeys(input: unknown, parsed: unknown, path = ''): string[] {
  if (Array.isArray(input) && Array.isArray(parsed)) {
    return input.flatMap((item, i) => strippedKeys(item, parsed[i], `${path}[${i}]`));
  }
  if (input === null || typeof input !== 'object' || parsed === null || typeof parsed !== 'object') return [];
  return Object.entries(input).flatMap(([key, value]) =>
    key in parsed ? strippedKeys(value, (parsed as Record<string, unknown>)[key], path ? `${path}.${key}` : key) : [path ? `${path}.${key}` : key],
  );
}

describe('design brief examples', () => {
  it.each([
    ['Tier', Tier, designTier],
    ['TenantBinding', TenantBinding, designTenantBinding],
    ['ServiceAccountClient', ServiceAccountClient, designClient],
  ] as const)('%s is accepted, with every field known', (_kind, schema, example) => {
    const result = schema.safeParse(example);
    expect(result.error?.issues ?? []).toEqual([]);
    expect(strippedKeys(example, result.data)).toEqual([]);
  });
});

describe('defaults', () => {
  // The CRDs carry the same defaults; the integration test compares them with the API server's.
  it('an empty Tier spec gets the documented token policy', () => {
    expect(TierSpec.parse({})).toEqual({
      level: 0,
      default: false,
      groups: [],
      namespace: '',
      token: { audiences: [], defaultExpiration: '1h', maxExpiration: '24h', renewBefore: '33%', gracePeriod: '5m' },
      access: [],
      deletionPolicy: 'Retain',
    });
  });

  it('a partial token policy is completed field by field', () => {
    expect(TierSpec.parse({ token: { defaultExpiration: '4h' } }).token).toEqual({
      audiences: [],
      defaultExpiration: '4h',
      maxExpiration: '24h',
      renewBefore: '33%',
      gracePeriod: '5m',
    });
  });

  it('a ServiceAccountClient is neither suspended nor revoked unless it says so', () => {
    expect(ServiceAccountClientSpec.parse({ subject: { user: 'alice@example.com' } })).toEqual({
      subject: { user: 'alice@example.com', groups: [] },
      suspended: false,
      revocationEpoch: 0,
    });
  });
});

describe('refused input', () => {
  const cases: [string, z.ZodType, unknown, string, unknown][] = [
    ['a duration with a space', Tier, designTier, 'spec.token.defaultExpiration', '4 hours'],
    ['a duration in days (Go has none)', Tier, designTier, 'spec.token.maxExpiration', '1d'],
    ['a duration without a unit', Tier, designTier, 'spec.token.gracePeriod', '300'],
    ['an upper-case unit', ServiceAccountClient, designClient, 'spec.token.expiration', '4H'],
    ['a percentage with a space', Tier, designTier, 'spec.token.renewBefore', '33 %'],
    ['a four-digit percentage', ServiceAccountClient, designClient, 'spec.token.renewBefore', '1000%'],
    ['a level above 1000', Tier, designTier, 'spec.level', 1001],
    ['a negative level', Tier, designTier, 'spec.level', -1],
    ['a fractional level', Tier, designTier, 'spec.level', 2.5],
    ['a tier namespace that is no DNS label', Tier, designTier, 'spec.namespace', 'Tier_Premium'],
    ['an unknown deletion policy', Tier, designTier, 'spec.deletionPolicy', 'Orphan'],
    ['an empty group', Tier, designTier, 'spec.groups.0', ''],
    ['an access rule without a ClusterRole', Tier, designTier, 'spec.access.0.clusterRole', ''],
    ['an access namespace that is no DNS label', Tier, designTier, 'spec.access.0.namespaces.0', 'Models'],
    ['a negative limit', Tier, designTier, 'spec.limits.requestsPerMinute', -1],
    ['another API version', Tier, designTier, 'apiVersion', 'tokenwarden.io/v1'],
    ['an unknown subject kind', TenantBinding, designTenantBinding, 'spec.subjects.0.kind', 'ServiceAccount'],
    ['a subject without a name', TenantBinding, designTenantBinding, 'spec.subjects.1.name', ''],
    ['no subjects', TenantBinding, designTenantBinding, 'spec.subjects', []],
    ['a tierRef without a name', TenantBinding, designTenantBinding, 'spec.tierRef.name', ''],
    ['a negative quota', TenantBinding, designTenantBinding, 'spec.maxClients', -1],
    ['a tenant maxExpiration that is no duration', TenantBinding, designTenantBinding, 'spec.token.maxExpiration', 'forever'],
    ['an empty user', ServiceAccountClient, designClient, 'spec.subject.user', ''],
    ['no subject', ServiceAccountClient, designClient, 'spec.subject', undefined],
    ['a Secret name with upper case and _', ServiceAccountClient, designClient, 'spec.secretName', 'Alice_Token'],
    ['a negative revocation epoch', ServiceAccountClient, designClient, 'spec.revocationEpoch', -1],
    ['suspended as a string', ServiceAccountClient, designClient, 'spec.suspended', 'yes'],
    // Strings that reach printer columns and status messages: references are DNS names, and names
    // as an identity provider spells them carry no control character, separator or bidi override.
    ['a client tierRef with an escape sequence', ServiceAccountClient, designClient, 'spec.tierRef.name', 'premium\u001b[2J'],
    ['a client tierRef in upper case', ServiceAccountClient, designClient, 'spec.tierRef.name', 'Premium'],
    ['a binding tierRef with a newline', TenantBinding, designTenantBinding, 'spec.tierRef.name', 'premium\nfree'],
    ['a user with ESC', ServiceAccountClient, designClient, 'spec.subject.user', 'alice\u001b[31m@example.com'],
    ['a user with the 8-bit CSI', ServiceAccountClient, designClient, 'spec.subject.user', 'alice\u009b31m'],
    ['a user with DEL', ServiceAccountClient, designClient, 'spec.subject.user', 'alice\u007f'],
    ['a user with a right-to-left override', ServiceAccountClient, designClient, 'spec.subject.user', 'alice\u202emoc.elpmaxe'],
    ['a user with a line separator', ServiceAccountClient, designClient, 'spec.subject.user', 'alice\u2028bob'],
    ['a group with a tab', ServiceAccountClient, designClient, 'spec.subject.groups.0', 'premium\tusers'],
    ['an audience with a bidi isolate', ServiceAccountClient, designClient, 'spec.token.audiences.0', 'gw\u2066x'],
    ['a binding subject with a carriage return', TenantBinding, designTenantBinding, 'spec.subjects.0.name', 'alice\rmallory'],
  ];

  it.each([
    ['a user in another script, with spaces and punctuation', 'spec.subject.user', 'Ålice Dupré (研究) <a@x>'],
    ['a user with an emoji joined by ZWJ', 'spec.subject.user', '👩\u200d💻@example.com'],
    ['an OIDC-style user', 'spec.subject.user', 'https://issuer.example.com#1234'],
    ['a group with a colon', 'spec.subject.groups.0', 'system:serviceaccounts:team-a'],
  ])('accepts %s', (_name, path, value) => {
    expect(refusedPaths(ServiceAccountClient, withValue(designClient, path, value))).toEqual([]);
  });

  it.each(cases)('%s', (_name, schema, example, path, value) => {
    // Exactly that field: a refusal for any other reason would prove nothing.
    expect(refusedPaths(schema, withValue(example, path, value))).toEqual([path]);
  });
});

interface SampleObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  spec?: Record<string, unknown>;
}

const sampleFiles = readdirSync(samplesDir).filter((file) => /\.ya?ml$/.test(file) && file !== 'kustomization.yaml');
const kustomization = parse(readFileSync(join(samplesDir, 'kustomization.yaml'), 'utf8')) as { resources?: string[] };

/** Every object of the samples, in the order kustomization.yaml lists them. */
function sampleObjects(): { file: string; object: SampleObject }[] {
  return (kustomization.resources ?? []).flatMap((file) =>
    parseAllDocuments(readFileSync(join(samplesDir, file), 'utf8')).map((doc) => {
      if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors.map((e) => e.message).join('; ')}`);
      return { file, object: doc.toJS() as SampleObject };
    }),
  );
}

const schemasByKind: Record<string, z.ZodType> = { Tier, TenantBinding, ServiceAccountClient };
const otherKinds = new Set(['v1/Namespace', 'rbac.authorization.k8s.io/v1/ClusterRole']);

describe('config/samples', () => {
  it('kustomization.yaml lists every sample file, once', () => {
    const listed = kustomization.resources ?? [];
    expect(new Set(listed).size).toBe(listed.length);
    expect([...listed].sort()).toEqual([...sampleFiles].sort());
  });

  const objects = sampleObjects();

  it.each(objects.filter(({ object }) => object.apiVersion === 'tokenwarden.io/v1alpha1').map(({ file, object }) => [file, object.kind, object.metadata?.name, object] as const))(
    '%s: %s %s passes the schema, with every field known',
    (_file, kind, _name, object) => {
      const schema = schemasByKind[kind];
      expect(schema, `unknown kind ${kind}`).toBeDefined();
      const result = (schema as z.ZodType).safeParse(object);
      expect(result.error?.issues ?? []).toEqual([]);
      expect(strippedKeys(object, result.data)).toEqual([]);
      // Status is the operator's to write.
      expect(object).not.toHaveProperty('status');
    },
  );

  it('holds only kinds the API server knows without extra CRDs', () => {
    const unknown = objects
      .map(({ object }) => `${object.apiVersion}/${object.kind}`)
      .filter((kind) => !kind.startsWith('tokenwarden.io/v1alpha1/') && !otherKinds.has(kind));
    expect(unknown).toEqual([]);
  });

  it('applies in order: everything an object refers to comes before it', () => {
    const seen = new Set<string>();
    const problems: string[] = [];
    const need = (what: string, by: string): void => {
      if (!seen.has(what)) problems.push(`${by} needs ${what} earlier`);
    };
    for (const { file, object } of objects) {
      const by = `${file}: ${object.kind}/${object.metadata.name}`;
      if (object.metadata.namespace) need(`Namespace/${object.metadata.namespace}`, by);
      if (object.kind === 'Tier') {
        for (const rule of (object.spec?.access ?? []) as { clusterRole: string; namespaces?: string[] }[]) {
          need(`ClusterRole/${rule.clusterRole}`, by);
          for (const ns of rule.namespaces ?? []) need(`Namespace/${ns}`, by);
        }
      }
      const tierRef = object.spec?.tierRef as { name: string } | undefined;
      if (tierRef) need(`Tier/${tierRef.name}`, by);
      seen.add(`${object.kind}/${object.metadata.name}`);
    }
    expect(problems).toEqual([]);
  });

  it('has exactly one default tier', () => {
    const defaults = objects.filter(({ object }) => object.kind === 'Tier' && object.spec?.default === true);
    expect(defaults.map(({ object }) => object.metadata.name)).toEqual(['free']);
  });
});
