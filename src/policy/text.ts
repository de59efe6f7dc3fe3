/**
 * Text a tenant wrote, made inert before it reaches a terminal: a client's subject, a tierRef, an
 * Event's note, an API server message echoing a label. The operator quotes such text in the
 * messages it writes (conditions, Events), and the kubectl plugin passes everything it prints
 * through the same function, so neither can move a cursor, recolour a screen, ring, rewrite a
 * line or reorder it.
 *
 * What is escaped: C0 controls (ESC included, so every ANSI/VT sequence loses its introducer), DEL,
 * C1 controls (0x80-0x9f, among them the 8-bit CSI 0x9b), the line and paragraph separators, and
 * the bidirectional embeddings, overrides, isolates and marks ("Trojan Source"). Each becomes a
 * JSON escape (`\n`, `\r`, `\t`, else `\u001b`), so JSON output stays valid JSON with the same
 * value. Backslashes are left alone for the same reason; printable text of every script, emoji
 * included, is untouched.
 */

/** Characters no tenant string may put on a terminal raw. */
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

const UNSAFE_ANY = new RegExp(UNSAFE.source);

const SHORT: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

const escapeOne = (ch: string): string => SHORT[ch] ?? `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`;

/** `text` with every control, separator and bidi control escaped (see above); unchanged when it has none. */
export function escapeControls(text: string): string {
  return text.replace(UNSAFE, escapeOne);
}

/** Whether `text` holds anything escapeControls would escape. */
export function hasControls(text: string): boolean {
  return UNSAFE_ANY.test(text);
}

/**
 * Tenant text quoted for a message: in double quotes, with quotes, backslashes and controls
 * escaped (a JSON string literal), so where the tenant's text ends is never in doubt.
 */
export function quote(text: string): string {
  return escapeControls(JSON.stringify(text));
}

/**
 * Output of several lines (a table, JSON) that are the printer's own: each line escaped on its own,
 * the newlines between them kept.
 */
export function escapeLines(text: string): string {
  return text.split('\n').map(escapeControls).join('\n');
}

/** How much of a tenant's free text (e.g. a renew request) a message shows: enough to recognise it, too little to hold a story. */
export const SHOWN_TEXT_CHARS = 64;

/**
 * Tenant text quoted as quote() does, cut to its first `maxChars` characters (code points, so no
 * surrogate pair is split) with how long it was: `"x)..."… (1200 characters)`.
 */
export function quoteShort(text: string, maxChars = SHOWN_TEXT_CHARS): string {
  const chars = Array.from(text);
  if (chars.length <= maxChars) return quote(text);
  return `${quote(chars.slice(0, maxChars).join(''))}… (${chars.length} characters)`;
}
