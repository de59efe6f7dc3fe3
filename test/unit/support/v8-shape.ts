/**
 * Whether V8 keeps an object's properties in the fast, hidden-class layout: an object that lost a
 * property by `delete` becomes a dictionary, about twice the memory. The caches keep thousands of
 * objects, so their transforms must build objects whole (src/controller/informer.ts slimMetadata).
 */
import v8 from 'node:v8';

v8.setFlagsFromString('--allow-natives-syntax');
const check = new Function('o', 'return %HasFastProperties(o)') as (o: object) => boolean;

/** The paths (from `root`) of the plain objects in `value` held as dictionaries. */
export function dictionaryObjects(value: unknown, root = '$'): string[] {
  if (value === null || typeof value !== 'object') return [];
  const own = Array.isArray(value) ? [] : check(value) ? [] : [root];
  return [...own, ...Object.entries(value).flatMap(([key, child]) => dictionaryObjects(child, `${root}.${key}`))];
}
