/** Parses kubectl's table output: one record per row, keyed by the header, cut at header positions. */
export function parseTable(stdout: string): Record<string, string>[] {
  const lines = stdout.split('\n').filter((l) => l.trim() !== '');
  const header = lines[0];
  if (header === undefined) return [];
  const columns: { name: string; start: number }[] = [];
  for (const m of header.matchAll(/\S+/g)) columns.push({ name: m[0], start: m.index });
  return lines.slice(1).map((line) => {
    const row: Record<string, string> = {};
    columns.forEach((col, i) => {
      const end = columns[i + 1]?.start ?? line.length;
      row[col.name] = line.slice(col.start, end).trim();
    });
    return row;
  });
}
