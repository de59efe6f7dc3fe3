/** Go-style durations ("1h30m", "90s") and the "duration or percentage" form of renewBefore. */

const UNIT_MS: Record<string, number> = { ns: 1e-6, us: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const PART = /([0-9]+)(ns|us|ms|s|m|h)/gy;

/** Milliseconds in a duration string; throws on anything the CRD pattern would refuse. */
export function parseDuration(text: string): number {
  if (text.length === 0) throw new Error('empty duration');
  PART.lastIndex = 0;
  let total = 0;
  let consumed = 0;
  for (let match = PART.exec(text); match !== null; match = PART.exec(text)) {
    total += Number(match[1]) * (UNIT_MS[match[2] as string] as number);
    consumed = PART.lastIndex;
  }
  if (consumed !== text.length) throw new Error(`invalid duration "${text}"`);
  return total;
}

/** renewBefore in milliseconds for a token of the given lifetime: "1h" or "33%". */
export function parseRenewBefore(text: string, lifetimeMs: number): number {
  if (text.endsWith('%')) {
    // The same form the CRD admits: 1% to 99%, in decimal digits.
    const match = /^([1-9][0-9]?)%$/.exec(text);
    if (match === null) throw new Error(`invalid percentage "${text}": must be 1% to 99%`);
    return Math.floor((lifetimeMs * Number(match[1])) / 100);
  }
  return parseDuration(text);
}

/** The shortest readable form, for messages: 5400000 → "1h30m". */
export function formatDuration(ms: number): string {
  let rest = Math.round(ms / 1000);
  const hours = Math.floor(rest / 3600);
  rest -= hours * 3600;
  const minutes = Math.floor(rest / 60);
  const seconds = rest - minutes * 60;
  const text = `${hours ? `${hours}h` : ''}${minutes ? `${minutes}m` : ''}${seconds ? `${seconds}s` : ''}`;
  return text || '0s';
}
