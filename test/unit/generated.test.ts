/**
 * The generated CRDs and API reference: in sync with src/api/, and shaped as the design brief says
 * (descriptions everywhere, printer columns, names, status subresource).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { generatedFiles } from '../../tools/generate.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));
const generated = generatedFiles();

interface Schema {
  type?: string;
  description?: string;
  properties?: Record<string, Schema>;
  items?: Schema;
  additionalProperties?: Schema | boolean;
}
interface PrinterColumn {
  name: string;
  type: string;
  jsonPath: string;
  priority?: number;
}
interface Crd {
  metadata: { name: string };
  spec: {
    group: string;
    scope: string;
    names: { kind: string; plural: string; shortNames?: string[]; categories?: string[] };
    versions: {
      name: string;
      served: boolean;
      storage: boolean;
      subresources?: { status?: object };
      additionalPrinterColumns?: PrinterColumn[];
      schema: { openAPIV3Schema: Schema };
    }[];
  };
}

/** The CRDs as committed: what `kubectl apply -k` and the tests install. */
function crdOnDisk(kind: string): Crd {
  for (const path of generated.keys()) {
    if (!path.startsWith('crds/') || !existsSync(join(root, path))) continue;
    const crd = parse(readFileSync(join(root, path), 'utf8')) as Crd | null;
    if (crd?.spec?.names?.kind === kind) return crd;
  }
  throw new Error(`no CRD for ${kind} in crds/`);
}

/** Paths of properties without a description, below `node`. */
function undescribed(node: Schema, path: string): string[] {
  const missing: string[] = [];
  for (const [name, child] of Object.entries(node.properties ?? {})) {
    if (!child.description?.trim()) missing.push(`${path}.${name}`);
    missing.push(...undescribed(child, `${path}.${name}`));
  }
  if (node.items) missing.push(...undescribed(node.items, `${path}[]`));
  if (typeof node.additionalProperties === 'object') missing.push(...undescribed(node.additionalProperties, `${path}{}`));
  return missing;
}

/**
 * Resolves a printer column's JSONPath in the schema, so a renamed field cannot leave a column
 * that is silently always empty. Filters and wildcards step into array items.
 */
function resolveColumn(schema: Schema, jsonPath: string): Schema | undefined {
  const steps = jsonPath
    .replace(/\[\?\(.*?\)\]|\[\*\]/g, '[]')
    .split('.')
    .filter((step) => step !== '');
  let node: Schema | undefined = schema;
  for (const step of steps) {
    const isArray = step.endsWith('[]');
    node = node?.properties?.[isArray ? step.slice(0, -2) : step];
    if (isArray) node = node?.type === 'array' ? node.items : undefined;
  }
  return node;
}

describe('generated files', () => {
  it.each([...generated.keys()])('%s is up to date (run `node tools/generate.ts`)', (path) => {
    const target = join(root, path);
    expect(existsSync(target), `${path} is missing`).toBe(true);
    // A boolean, not a diff of two whole files: the message names the stale file.
    expect(readFileSync(target, 'utf8') === generated.get(path), `${path} is stale`).toBe(true);
  });

  it('crds/ holds no CRD the generator does not make', () => {
    // A leftover file (a renamed kind, say) would still be installed with the rest.
    const expected = [...generated.keys()].filter((path) => path.startsWith('crds/')).sort();
    const actual = readdirSync(join(root, 'crds'))
      .map((file) => `crds/${file}`)
      .sort();
    expect(actual).toEqual(expected);
  });
});

const designColumns: Record<string, { columns: string[]; wide: string[]; shortNames: string[]; scope: string }> = {
  Tier: { columns: ['LEVEL', 'DEFAULT', 'NAMESPACE', 'CLIENTS', 'READY', 'AGE'], wide: [], shortNames: [], scope: 'Cluster' },
  TenantBinding: { columns: ['TIER', 'SUBJECTS', 'CLIENTS', 'READY', 'AGE'], wide: [], shortNames: ['tb'], scope: 'Namespaced' },
  ServiceAccountClient: {
    columns: ['SUBJECT', 'TIER', 'READY', 'REASON', 'EXPIRES', 'SECRET', 'AGE'],
    wide: ['STATUS', 'SERVICEACCOUNT'],
    shortNames: ['sac'],
    scope: 'Namespaced',
  },
};

describe.each(Object.entries(designColumns))('CRD %s', (kind, design) => {
  const crd = crdOnDisk(kind);
  const [version, ...others] = crd.spec.versions;
  if (version === undefined) throw new Error(`${kind}: no version`);
  const schema = version.schema.openAPIV3Schema;

  it('serves tokenwarden.io/v1alpha1 only, with the status subresource', () => {
    expect(crd.spec.group).toBe('tokenwarden.io');
    expect(others).toEqual([]);
    expect(version).toMatchObject({ name: 'v1alpha1', served: true, storage: true });
    // Without it the operator's status writes would go through spec and bump the generation.
    expect(version.subresources?.status).toEqual({});
    expect(Object.keys(schema.properties ?? {})).toEqual(expect.arrayContaining(['spec', 'status']));
  });

  it('has the scope, short names and category of the design', () => {
    expect(crd.spec.scope).toBe(design.scope);
    expect(crd.spec.names.shortNames ?? []).toEqual(design.shortNames);
    expect(crd.spec.names.categories).toEqual(['tokenwarden']);
    expect(crd.metadata.name).toBe(`${crd.spec.names.plural}.tokenwarden.io`);
  });

  it('describes every property', () => {
    // metadata is ObjectMeta: the API server publishes its schema and descriptions itself.
    const { metadata: _metadata, ...ours } = schema.properties ?? {};
    expect(undescribed({ properties: ours }, '')).toEqual([]);
  });

  it('prints the columns of the design, in order', () => {
    const columns = version.additionalPrinterColumns ?? [];
    // kubectl prints column names upper-cased.
    const shown = (wide: boolean): string[] =>
      columns.filter((c) => (c.priority ?? 0) === (wide ? 1 : 0)).map((c) => c.name.toUpperCase());
    expect(shown(false)).toEqual(design.columns);
    expect(shown(true)).toEqual(design.wide);
    expect(columns.every((c) => c.priority === undefined || c.priority <= 1)).toBe(true);
  });

  it('has printer columns that point at fields of the schema', () => {
    const broken = (version.additionalPrinterColumns ?? [])
      .filter((c) => c.jsonPath !== '.metadata.creationTimestamp')
      .filter((c) => resolveColumn(schema, c.jsonPath) === undefined)
      .map((c) => `${c.name}: ${c.jsonPath}`);
    expect(broken).toEqual([]);
  });
});
