/**
 * Reads the doc comments of src/api/ with ts-morph: for every exported `const X = z.object({...})`
 * (possibly chained, e.g. `.meta(...)`), the comment on the const and on each property.
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Node, Project, SyntaxKind, type ObjectLiteralExpression } from 'ts-morph';

export interface SchemaDocs {
  /** The comment on the exported const. */
  description?: string;
  /** Property name → its comment. */
  properties: Map<string, string>;
}

const apiDir = join(dirname(fileURLToPath(import.meta.url)), '..', 'src', 'api');

function commentText(raw: string): string {
  return raw
    .replace(/^\/\*\*/, '')
    .replace(/\*\/$/, '')
    .split('\n')
    .map((line) => line.replace(/^\s*\* ?/, '').trim())
    .filter((line) => line.length > 0)
    .join(' ')
    .trim();
}

function leadingDoc(node: Node): string | undefined {
  const docs = node
    .getLeadingCommentRanges()
    .map((range) => range.getText())
    .filter((text) => text.startsWith('/**'));
  const last = docs.at(-1);
  return last === undefined ? undefined : commentText(last);
}

/** The object literal given to the first `z.object(...)` call in an initializer chain. */
function objectShape(initializer: Node): ObjectLiteralExpression | undefined {
  const calls = [initializer, ...initializer.getDescendantsOfKind(SyntaxKind.CallExpression)].filter(Node.isCallExpression);
  for (const call of calls) {
    const callee = call.getExpression();
    if (!Node.isPropertyAccessExpression(callee) || callee.getName() !== 'object' || callee.getExpression().getText() !== 'z') continue;
    const arg = call.getArguments()[0];
    if (arg !== undefined && Node.isObjectLiteralExpression(arg)) return arg;
  }
  return undefined;
}

export function readSchemaDocs(): Map<string, SchemaDocs> {
  const project = new Project({ skipAddingFilesFromTsConfig: true });
  project.addSourceFilesAtPaths(join(apiDir, '*.ts'));
  const result = new Map<string, SchemaDocs>();
  for (const file of project.getSourceFiles()) {
    for (const statement of file.getVariableStatements()) {
      if (!statement.isExported()) continue;
      const description = statement.getJsDocs().map((doc) => commentText(doc.getText())).join(' ') || undefined;
      for (const declaration of statement.getDeclarations()) {
        const initializer = declaration.getInitializer();
        const shape = initializer && objectShape(initializer);
        const properties = new Map<string, string>();
        for (const property of shape?.getProperties() ?? []) {
          if (!Node.isPropertyAssignment(property)) continue;
          const doc = leadingDoc(property);
          if (doc !== undefined) properties.set(property.getName(), doc);
        }
        result.set(declaration.getName(), description === undefined ? { properties } : { description, properties });
      }
    }
  }
  return result;
}
