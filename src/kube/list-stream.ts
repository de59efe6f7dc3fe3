/**
 * A LIST response read as it arrives, one item at a time: `{"kind":…,"metadata":{…},"items":[{…},…]}`.
 *
 * Why: parsing a page whole holds its text and all its objects at once, and anyone who may create
 * Secrets can make each of them 1 MiB: a page of 500 of a tenant's Secrets labelled as tokenwarden's
 * would be 500 MiB before the first one is cut down by the informer's transform. Split this way, the
 * reader holds one item's text at a time (the caller parses and transforms it at once) plus the rest
 * of the list (kind, metadata: the continue token and resourceVersion), which it returns at the end
 * with `"items":[]`.
 *
 * It relies on what a Kubernetes list is: an object whose only array at the top level is `items`,
 * each of them an object. Only structure outside JSON strings is looked at.
 */
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;

export class ListItemSplitter {
  private readonly onItem: (text: string) => void;
  private readonly rest: string[] = [];
  private depth = 0;
  private inString = false;
  private escaped = false;
  /** Inside the top-level array (items), and whether that array was seen already. */
  private inItems = false;
  private itemsSeen = false;
  /** The text of the item being read, when one is open. */
  private item: string | undefined;

  constructor(onItem: (text: string) => void) {
    this.onItem = onItem;
  }

  /** The next piece of the response text. */
  push(chunk: string): void {
    let from = 0;
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk.charCodeAt(i);
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (c === BACKSLASH) this.escaped = true;
        else if (c === QUOTE) this.inString = false;
        continue;
      }
      if (c === QUOTE) {
        this.inString = true;
      } else if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
        if (this.inItems && this.depth === 2 && c === OPEN_OBJECT) {
          // An item starts: what came before it (a comma, blanks) is dropped.
          this.item = '';
          from = i;
        } else if (this.depth === 1 && c === OPEN_ARRAY && !this.itemsSeen) {
          this.rest.push(chunk.slice(from, i + 1));
          from = i + 1;
          this.inItems = true;
          this.itemsSeen = true;
        }
        this.depth++;
      } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
        this.depth--;
        if (this.item !== undefined && this.depth === 2) {
          const text = this.item + chunk.slice(from, i + 1);
          this.item = undefined;
          from = i + 1;
          this.onItem(text);
        } else if (this.inItems && this.depth === 1) {
          this.inItems = false;
          from = i;
        }
      }
    }
    if (this.item !== undefined) this.item += chunk.slice(from);
    else if (!this.inItems) this.rest.push(chunk.slice(from));
  }

  /** The list without its items (`"items":[]`), once the whole text has been pushed. */
  end(): string {
    if (this.depth !== 0 || this.inString || this.item !== undefined) throw new Error('the list ended before its text did');
    return this.rest.join('');
  }
}
