/**
 * src/kube/list-stream.ts: a LIST response split into its items as it arrives, whatever the chunks.
 * Each item and the rest of the list must come out exactly as JSON.parse of the whole text gives them.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ListItemSplitter } from '../../../src/kube/list-stream.ts';

/** Splits `text` at the given cut points (any positions, in any order). */
function chunks(text: string, cuts: number[]): string[] {
  const at = [...new Set(cuts.map((c) => c % (text.length + 1)))].sort((a, b) => a - b);
  const out: string[] = [];
  let from = 0;
  for (const c of at) {
    out.push(text.slice(from, c));
    from = c;
  }
  out.push(text.slice(from));
  return out;
}

function split(text: string, cuts: number[]): { items: unknown[]; rest: unknown } {
  const items: unknown[] = [];
  const splitter = new ListItemSplitter((t) => items.push(JSON.parse(t)));
  for (const c of chunks(text, cuts)) splitter.push(c);
  return { items, rest: JSON.parse(splitter.end()) };
}

describe('ListItemSplitter', () => {
  it('gives every item and the list without them, for any items and any chunking', () => {
    const item = fc.record({ metadata: fc.record({ name: fc.string(), annotations: fc.dictionary(fc.string(), fc.string()) }), data: fc.jsonValue() });
    fc.assert(
      fc.property(fc.array(item, { maxLength: 6 }), fc.string(), fc.array(fc.nat(), { maxLength: 12 }), fc.boolean(), (items, cont, cuts, metadataFirst) => {
        const metadata = { resourceVersion: '42', continue: cont };
        const list = metadataFirst ? { kind: 'SecretList', apiVersion: 'v1', metadata, items } : { kind: 'SecretList', items, apiVersion: 'v1', metadata };
        const text = JSON.stringify(list, null, cuts.length % 2 === 0 ? undefined : 1);
        const out = split(text, cuts);
        expect(out.items).toEqual(JSON.parse(JSON.stringify(items)));
        expect(out.rest).toEqual({ ...JSON.parse(JSON.stringify(list)), items: [] });
      }),
      { numRuns: 500 },
    );
  });

  it('holds one item at a time: each is handed over as soon as its text is complete', () => {
    const seen: string[] = [];
    const splitter = new ListItemSplitter((t) => seen.push((JSON.parse(t) as { n: string }).n));
    splitter.push('{"kind":"L","metadata":{"continue":"[{x}]"},"items":[{"n":"a\\"}"},');
    expect(seen).toEqual(['a"}']);
    splitter.push('{"n":"b"');
    expect(seen).toEqual(['a"}']);
    splitter.push('}]}');
    expect(seen).toEqual(['a"}', 'b']);
    expect(JSON.parse(splitter.end())).toEqual({ kind: 'L', metadata: { continue: '[{x}]' }, items: [] });
  });

  it('refuses a text that ends inside the list', () => {
    const splitter = new ListItemSplitter(() => undefined);
    splitter.push('{"items":[{"a":1}');
    expect(() => splitter.end()).toThrow();
  });
});
