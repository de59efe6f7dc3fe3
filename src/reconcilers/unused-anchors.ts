/**
 * The anchors no token was issued for, by client uid (policy/anchor-reuse.ts): at most one per
 * client, in this process's memory only, so nothing survives a restart that could be reused wrongly.
 */
import type { AnchorRef } from '../policy/anchor-reuse.ts';

export class UnusedAnchors {
  private readonly byClient = new Map<string, AnchorRef>();

  /** Remembers the anchor of a refused attempt. */
  remember(clientUid: string, anchor: AnchorRef): void {
    this.byClient.set(clientUid, anchor);
  }

  /** Hands out the client's unused anchor and forgets it: a token may be bound to it from now on. */
  take(clientUid: string): AnchorRef | undefined {
    const anchor = this.byClient.get(clientUid);
    this.byClient.delete(clientUid);
    return anchor;
  }

  /** Forgets an anchor being deleted. */
  forget(clientUid: string, name: string): void {
    if (this.byClient.get(clientUid)?.name === name) this.byClient.delete(clientUid);
  }

  get size(): number {
    return this.byClient.size;
  }
}
