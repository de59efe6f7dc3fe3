/**
 * access/client-subject.yaml lets an update through unproven only when it takes away: it compares
 * every other field of the spec, one by one, since CEL cannot copy an object with two fields
 * replaced. A spec field the comparison leaves out would be editable by anyone with no proof, so
 * the list must cover the schema's fields.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { ServiceAccountClientSpec } from '../../src/api/index.ts';

interface Policy {
  kind: string;
  metadata: { name: string };
  spec?: { matchConditions?: { name: string; expression: string }[] };
}

const docs = readFileSync(new URL('../../access/client-subject.yaml', import.meta.url), 'utf8')
  .split(/^---$/m)
  .map((doc) => parse(doc) as Policy);
const policy = docs.find((d) => d.kind === 'ValidatingAdmissionPolicy') as Policy;

describe('tokenwarden-client-subject', () => {
  it('compares every field of ServiceAccountClientSpec when it decides an update only takes away', () => {
    const [condition] = policy.spec?.matchConditions ?? [];
    const fields = new Set([...(condition?.expression ?? '').matchAll(/\bobject\.spec\.(\w+)/g)].map((m) => m[1]));
    expect([...fields].sort()).toEqual(Object.keys(ServiceAccountClientSpec.shape).sort());
    // ... and on the old object as well.
    const oldFields = new Set([...(condition?.expression ?? '').matchAll(/\boldObject\.spec\.(\w+)/g)].map((m) => m[1]));
    expect([...oldFields].sort()).toEqual(Object.keys(ServiceAccountClientSpec.shape).sort());
  });
});
