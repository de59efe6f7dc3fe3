/** Turns the zod schemas of src/api/ into structural CustomResourceDefinitions. */
import { z } from 'zod';
import * as api from '../src/api/index.ts';
import { readSchemaDocs } from './schema-docs.ts';

export type JsonSchema = {
  type?: string;
  description?: string;
  properties?: Record<string, JsonSchema>;
  items?: JsonSchema;
  additionalProperties?: JsonSchema | boolean;
  required?: string[];
  default?: unknown;
  enum?: unknown[];
  pattern?: string;
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  minItems?: number;
  maxItems?: number;
  format?: string;
  'x-kubernetes-validations'?: { rule: string; message: string; fieldPath?: string }[];
  [key: string]: unknown;
};

const SAFE_INTEGER = Number.MAX_SAFE_INTEGER;
const INT32_MAX = 2_147_483_647;

/** Zod schema instance → the name it is exported under, so doc comments can be attached. */
function exportedSchemaNames(): Map<z.ZodType, string> {
  const names = new Map<z.ZodType, string>();
  for (const [name, value] of Object.entries(api)) {
    if (value instanceof z.ZodType) names.set(value, name);
  }
  return names;
}

/** JSON Schema of one zod schema, with descriptions from doc comments. */
export function schemaOf(schema: z.ZodType, rootName: string): JsonSchema {
  const json = z.toJSONSchema(schema, { io: 'input', target: 'openapi-3.0', unrepresentable: 'throw' }) as JsonSchema;
  describe(schema, json, readSchemaDocs(), exportedSchemaNames(), rootName);
  return normalize(json);
}

type ZodDef = { type: string; innerType?: z.ZodType; element?: z.ZodType; valueType?: z.ZodType; shape?: Record<string, z.ZodType> };
const defOf = (schema: z.ZodType): ZodDef => (schema as unknown as { _zod: { def: ZodDef } })._zod.def;
const WRAPPERS = new Set(['default', 'optional', 'nullable', 'readonly', 'prefault', 'nonoptional']);

/**
 * Walks the zod schema and its JSON Schema side by side and attaches the doc comments: a property's
 * own comment first, else the comment of the exported schema it is made of.
 */
function describe(
  schema: z.ZodType,
  node: JsonSchema,
  docs: ReturnType<typeof readSchemaDocs>,
  names: Map<z.ZodType, string>,
  name?: string,
): void {
  let inner = schema;
  let exported = name ?? names.get(inner);
  while (WRAPPERS.has(defOf(inner).type) && defOf(inner).innerType) {
    inner = defOf(inner).innerType as z.ZodType;
    exported ??= names.get(inner);
  }
  const doc = exported === undefined ? undefined : docs.get(exported);
  if (node.description === undefined && doc?.description !== undefined) node.description = doc.description;
  const def = defOf(inner);
  if (def.type === 'object' && def.shape) {
    for (const [key, child] of Object.entries(def.shape)) {
      const childNode = node.properties?.[key];
      if (childNode === undefined) continue;
      const own = doc?.properties.get(key);
      if (own !== undefined) childNode.description = own;
      describe(child, childNode, docs, names);
    }
  } else if (def.type === 'array' && def.element && node.items) {
    describe(def.element, node.items, docs, names);
  } else if (def.type === 'record' && def.valueType && typeof node.additionalProperties === 'object') {
    describe(def.valueType, node.additionalProperties, docs, names);
  }
}

/** Makes zod's output structural, as the API server requires, and gives integers a format. */
function normalize(node: JsonSchema): JsonSchema {
  delete node.$schema;
  if (node.additionalProperties === false) delete node.additionalProperties;
  if (node.type === 'integer') {
    if (node.minimum !== undefined && node.minimum <= -SAFE_INTEGER) delete node.minimum;
    if (node.maximum !== undefined && node.maximum >= SAFE_INTEGER) delete node.maximum;
    node.format = node.maximum !== undefined && node.maximum <= INT32_MAX && (node.minimum ?? 0) >= -INT32_MAX - 1 ? 'int32' : 'int64';
  }
  for (const child of Object.values(node.properties ?? {})) normalize(child);
  if (node.items) normalize(node.items);
  if (typeof node.additionalProperties === 'object') normalize(node.additionalProperties);
  return node;
}

/** Paths of properties that have no description: every field must say what it is. */
export function undocumented(node: JsonSchema, path: string): string[] {
  const missing: string[] = [];
  for (const [name, child] of Object.entries(node.properties ?? {})) {
    const childPath = `${path}.${name}`;
    if (!child.description) missing.push(childPath);
    missing.push(...undocumented(child, childPath));
  }
  if (node.items) missing.push(...undocumented(node.items, `${path}[]`));
  return missing;
}

export interface KindSchemas {
  def: api.KindDefinition;
  spec: JsonSchema;
  status: JsonSchema;
}

export function kindSchemas(): KindSchemas[] {
  return api.KINDS.map((def) => {
    const spec = schemaOf(def.spec, def.specName);
    const status = schemaOf(def.status, def.statusName);
    const missing = [...undocumented(spec, 'spec'), ...undocumented(status, 'status')];
    if (missing.length > 0) {
      throw new Error(`${def.kind}: fields without a doc comment in src/api/: ${missing.join(', ')}`);
    }
    return { def, spec, status };
  });
}

export function renderCrds(): Map<string, object> {
  const crds = new Map<string, object>();
  for (const { def, spec, status } of kindSchemas()) {
    const kindDoc = readSchemaDocs().get(def.specName)?.description ?? def.kind;
    crds.set(`${api.GROUP}_${def.plural}`, {
      apiVersion: 'apiextensions.k8s.io/v1',
      kind: 'CustomResourceDefinition',
      metadata: { name: api.crdName(def) },
      spec: {
        group: api.GROUP,
        names: {
          kind: def.kind,
          listKind: `${def.kind}List`,
          plural: def.plural,
          singular: def.singular,
          ...(def.shortNames.length > 0 ? { shortNames: def.shortNames } : {}),
          categories: def.categories,
        },
        scope: def.scope,
        versions: [
          {
            name: api.VERSION,
            served: true,
            storage: true,
            subresources: { status: {} },
            additionalPrinterColumns: def.printerColumns,
            schema: {
              openAPIV3Schema: {
                type: 'object',
                description: `${def.kind}: ${kindDoc}`,
                required: ['spec'],
                properties: {
                  apiVersion: { type: 'string', description: 'APIVersion of the object: tokenwarden.io/v1alpha1.' },
                  kind: { type: 'string', description: `Kind of the object: ${def.kind}.` },
                  metadata: { type: 'object' },
                  spec,
                  status,
                },
              },
            },
          },
        ],
      },
    });
  }
  return crds;
}
