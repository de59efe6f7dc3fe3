/**
 * A small JSON REST client for the API server, on undici and our own kubeconfig loader (kubeconfig.ts).
 *
 * Why not client-node's typed APIs: we need one generic path for core, RBAC and our own CRDs,
 * merge/json/apply patches, preconditions, subresources, typed errors, and a request hook for
 * metrics. And not client-node's authentication either: importing the package costs ~20 MiB of heap;
 * kubeconfig.ts hands it only exec and auth-provider users.
 */
import { createHash } from 'node:crypto';
import { Agent, fetch, ProxyAgent, Socks5ProxyAgent, type Dispatcher } from 'undici';
import { KubeApiError, parseJson, type KubeStatus } from './errors.ts';
import { KubeAccess, kubeconfigFromString, type TlsSettings } from './kubeconfig.ts';
import { ListItemSplitter } from './list-stream.ts';
import {
  apiVersionOf,
  collectionPath,
  objectPath,
  resourceName,
  type KubeObject,
  type ResourceType,
} from './resources.ts';

export type Verb = 'get' | 'list' | 'watch' | 'create' | 'update' | 'patch' | 'delete' | 'deletecollection';

/** Called once per request with the HTTP status (0 when no response came back). */
export type RequestHook = (verb: Verb, resource: string, code: number) => void;

export interface KubeClientOptions {
  /** Per-request timeout, default 30s. Watches use it for the wait on response headers only. */
  timeoutMs?: number;
  /** Field manager on every write, default "tokenwarden". */
  fieldManager?: string;
  userAgent?: string;
  onRequest?: RequestHook;
  /**
   * Most connections open to the API server at once. Over HTTP/2 (negotiated with the API server)
   * every request and watch is a stream of one connection (at most 100 streams each); over HTTP/1.1
   * each watch holds a connection and requests beyond the bound wait for a free one. Default 32.
   */
  maxConnections?: number;
}

/** Default bound on connections to the API server (KubeClientOptions.maxConnections). */
export const DEFAULT_MAX_CONNECTIONS = 32;

export interface RequestOptions {
  signal?: AbortSignal;
  /** Overrides the client's per-request timeout. */
  timeoutMs?: number;
  dryRun?: boolean;
}

export interface ListOptions extends RequestOptions {
  labelSelector?: string;
  fieldSelector?: string;
  /** Page size; pages are fetched until the list is complete. Default 500. */
  limit?: number;
  /**
   * Applied to each item as soon as its text has arrived, so only transformed items are kept: no
   * page, nor its text, is ever held whole.
   */
  transform?: (item: KubeObject) => KubeObject;
  /**
   * Items carry metadata only (a PartialObjectMetadataList: apiVersion, kind, metadata; no managedFields
   * are dropped by the server, so callers still transform): a fraction of the bytes of a full list.
   */
  metadataOnly?: boolean;
}

export interface ListResult<T> {
  items: T[];
  resourceVersion: string;
}

export type PatchType = 'merge' | 'json' | 'apply' | 'strategic';

export interface PatchOptions extends RequestOptions {
  /** Default "merge" (RFC 7386). "apply" is server-side apply; the body is the full intent. */
  type?: PatchType;
  /** Server-side apply only: take ownership of conflicting fields. */
  force?: boolean;
}

export interface DeleteOptions extends RequestOptions {
  /** Delete only this exact object: fails with 409 Conflict if the uid or resourceVersion differs. */
  preconditions?: { uid?: string; resourceVersion?: string };
  propagationPolicy?: 'Foreground' | 'Background' | 'Orphan';
  gracePeriodSeconds?: number;
}

export interface DeleteCollectionOptions extends RequestOptions {
  /** Required: a delete of a whole collection is never meant here. */
  labelSelector: string;
  fieldSelector?: string;
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';

export interface WatchEvent<T> {
  type: WatchEventType;
  /** The object; for ERROR, a metav1.Status. */
  object: T | KubeStatus;
}

export interface WatchQuery {
  resourceVersion?: string;
  allowWatchBookmarks?: boolean;
  /** The server ends the watch cleanly after this many seconds. */
  timeoutSeconds?: number;
  labelSelector?: string;
  fieldSelector?: string;
}

export interface WatchHandle {
  /** Ends the watch; onDone is then called with no error. Idempotent. */
  abort(): void;
}

const CONTENT_TYPES: Record<PatchType, string> = {
  merge: 'application/merge-patch+json',
  json: 'application/json-patch+json',
  apply: 'application/apply-patch+yaml',
  strategic: 'application/strategic-merge-patch+json',
};

/**
 * A @kubernetes/client-node KubeConfig (tests and tools that have one): read through its exportConfig,
 * so it takes the same path as a kubeconfig file. A type only: nothing here imports the package.
 */
export interface ClientNodeKubeConfigLike {
  exportConfig(): string;
  getCurrentContext(): string;
}

/** How long computed TLS settings (and their fingerprint) are trusted before files are read again. */
const FINGERPRINT_TTL_MS = 30_000;

type Query = Record<string, string | number | boolean | undefined>;

interface Call {
  verb: Verb;
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  path: string;
  resource: string;
  query?: Query;
  body?: unknown;
  contentType?: string;
  accept?: string;
  opts?: RequestOptions;
}

/** Accept header of a metadata-only list (what client-go's metadata informers ask for). */
const METADATA_LIST_ACCEPT = 'application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1beta1,application/json';

export class KubeClient {
  readonly fieldManager: string;
  readonly access: KubeAccess;
  private readonly timeoutMs: number;
  private readonly userAgent: string;
  private readonly onRequest: RequestHook | undefined;
  private readonly maxConnections: number;
  private shared: { fingerprint: string; dispatcher: Dispatcher } | undefined;
  private tlsCache: { tls: TlsSettings; fingerprint: string; at: number } | undefined;
  private readonly watches = new Set<WatchHandle>();
  private closed = false;

  constructor(access: KubeAccess | ClientNodeKubeConfigLike, options: KubeClientOptions = {}) {
    this.access = access instanceof KubeAccess ? access : kubeconfigFromString(access.exportConfig(), access.getCurrentContext());
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.fieldManager = options.fieldManager ?? 'tokenwarden';
    this.userAgent = options.userAgent ?? 'tokenwarden';
    this.onRequest = options.onRequest;
    this.maxConnections = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  }

  async get<T extends KubeObject>(type: ResourceType, namespace: string | undefined, name: string, opts?: RequestOptions): Promise<T> {
    const obj = await this.call<T>({ verb: 'get', method: 'GET', path: objectPath(type, namespace, name), resource: type.plural, opts });
    return withTypeMeta(type, obj);
  }

  /** GET of a path that is no resource, e.g. /version; `resource` names it to the request hook. */
  async getPath<T>(path: string, resource: string, opts?: RequestOptions): Promise<T> {
    return this.call<T>({ verb: 'get', method: 'GET', path, resource, opts });
  }

  /** Lists every page; the result's resourceVersion is the one to start a watch from. */
  async list<T extends KubeObject>(type: ResourceType, namespace?: string, opts: ListOptions = {}): Promise<ListResult<T>> {
    const path = collectionPath(type, namespace);
    const limit = opts.limit ?? 500;
    const items: T[] = [];
    let resourceVersion = '';
    let cont: string | undefined;
    do {
      let page: { metadata?: { resourceVersion?: string; continue?: string } };
      // Each item is parsed and transformed as its text arrives (list-stream.ts): neither a page's
      // text nor its raw objects are ever held whole, however large anyone made them.
      const onItem = (text: string) => {
        let item = withTypeMeta(type, parseJson<T>(text, `list ${path}`));
        if (opts.metadataOnly) item = { ...item, apiVersion: apiVersionOf(type), kind: type.kind };
        items.push(opts.transform ? (opts.transform(item) as T) : item);
      };
      try {
        page = await this.callList({
          verb: 'list',
          method: 'GET',
          path,
          resource: type.plural,
          query: { labelSelector: opts.labelSelector, fieldSelector: opts.fieldSelector, limit: limit > 0 ? limit : undefined, continue: cont },
          ...(opts.metadataOnly ? { accept: METADATA_LIST_ACCEPT } : {}),
          opts,
        }, onItem);
      } catch (err) {
        // The continue token expired mid-way (410): fall back to one unpaginated list, as client-go's pager does.
        if (cont !== undefined && err instanceof KubeApiError && err.statusCode === 410) {
          return this.list(type, namespace, { ...opts, limit: 0 });
        }
        throw err;
      }
      if (cont === undefined) resourceVersion = page.metadata?.resourceVersion ?? '';
      cont = page.metadata?.continue || undefined;
    } while (cont !== undefined);
    return { items, resourceVersion };
  }

  async create<T extends KubeObject>(type: ResourceType, namespace: string | undefined, body: T, opts?: RequestOptions): Promise<T> {
    const obj = await this.call<T>({
      verb: 'create',
      method: 'POST',
      path: collectionPath(type, namespace),
      resource: type.plural,
      query: this.writeQuery(opts),
      body: { apiVersion: apiVersionOf(type), kind: type.kind, ...body },
      opts,
    });
    return withTypeMeta(type, obj);
  }

  /** PUT: optimistic concurrency through body.metadata.resourceVersion. */
  async replace<T extends KubeObject>(type: ResourceType, namespace: string | undefined, name: string, body: T, opts?: RequestOptions): Promise<T> {
    const obj = await this.call<T>({
      verb: 'update',
      method: 'PUT',
      path: objectPath(type, namespace, name),
      resource: type.plural,
      query: this.writeQuery(opts),
      body: { apiVersion: apiVersionOf(type), kind: type.kind, ...body },
      opts,
    });
    return withTypeMeta(type, obj);
  }

  async patch<T extends KubeObject>(type: ResourceType, namespace: string | undefined, name: string, patch: unknown, opts: PatchOptions = {}): Promise<T> {
    return this.patchAt<T>(type, namespace, name, undefined, patch, opts);
  }

  async replaceStatus<T extends KubeObject>(type: ResourceType, namespace: string | undefined, name: string, body: T, opts?: RequestOptions): Promise<T> {
    const obj = await this.call<T>({
      verb: 'update',
      method: 'PUT',
      path: objectPath(type, namespace, name, 'status'),
      resource: resourceName(type, 'status'),
      query: this.writeQuery(opts),
      body: { apiVersion: apiVersionOf(type), kind: type.kind, ...body },
      opts,
    });
    return withTypeMeta(type, obj);
  }

  async patchStatus<T extends KubeObject>(type: ResourceType, namespace: string | undefined, name: string, patch: unknown, opts: PatchOptions = {}): Promise<T> {
    return this.patchAt<T>(type, namespace, name, 'status', patch, opts);
  }

  /**
   * DELETE. Returns the response body: the object (still there, with deletionTimestamp, when
   * finalizers hold it) or a Status.
   */
  async delete(type: ResourceType, namespace: string | undefined, name: string, opts: DeleteOptions = {}): Promise<unknown> {
    const hasBody = opts.preconditions !== undefined || opts.propagationPolicy !== undefined || opts.gracePeriodSeconds !== undefined;
    return this.call({
      verb: 'delete',
      method: 'DELETE',
      path: objectPath(type, namespace, name),
      resource: type.plural,
      query: { dryRun: opts.dryRun ? 'All' : undefined },
      body: hasBody
        ? {
            apiVersion: 'v1',
            kind: 'DeleteOptions',
            preconditions: opts.preconditions,
            propagationPolicy: opts.propagationPolicy,
            gracePeriodSeconds: opts.gracePeriodSeconds,
          }
        : undefined,
      opts,
    });
  }

  /**
   * DELETE of a collection: every object of the namespace the selectors match, deleted by the API
   * server one by one (admission sees each, as for a single delete). Returns how many it deleted.
   */
  async deleteCollection(type: ResourceType, namespace: string | undefined, opts: DeleteCollectionOptions): Promise<number> {
    const deleted = await this.call<{ items?: unknown[] }>({
      verb: 'deletecollection',
      method: 'DELETE',
      path: collectionPath(type, namespace),
      resource: type.plural,
      query: { labelSelector: opts.labelSelector, fieldSelector: opts.fieldSelector, dryRun: opts.dryRun ? 'All' : undefined },
      opts,
    });
    return deleted?.items?.length ?? 0;
  }

  /**
   * POST to a subresource, e.g. createSubresource(SERVICE_ACCOUNTS, ns, sa, 'token', tokenRequest).
   * The response can hold a token: it is returned, never logged.
   */
  async createSubresource<R = unknown>(type: ResourceType, namespace: string | undefined, name: string, subresource: string, body: unknown, opts?: RequestOptions): Promise<R> {
    return this.call<R>({
      verb: 'create',
      method: 'POST',
      path: objectPath(type, namespace, name, subresource),
      resource: resourceName(type, subresource),
      query: this.writeQuery(opts),
      body,
      opts,
    });
  }

  /**
   * Starts a watch. onEvent gets each event in order; onDone is called exactly once: with no error
   * when the server closed the stream or abort() was called, with a KubeApiError on a non-2xx
   * response (410 when the resourceVersion is too old), or with the transport error.
   * There is no inactivity timeout here: the informer's watchdog owns that decision.
   */
  watch<T extends KubeObject>(
    type: ResourceType,
    namespace: string | undefined,
    query: WatchQuery,
    onEvent: (event: WatchEvent<T>) => void,
    onDone: (err?: Error) => void,
  ): WatchHandle {
    const path = collectionPath(type, namespace);
    const controller = new AbortController();
    let finished = false;
    let aborted = false;
    const handle: WatchHandle = {
      abort: () => {
        aborted = true;
        controller.abort();
        finish();
      },
    };
    const finish = (err?: Error): void => {
      if (finished) return;
      finished = true;
      this.watches.delete(handle);
      controller.abort();
      onDone(aborted ? undefined : err);
    };
    if (this.closed) {
      queueMicrotask(() => finish(new Error('KubeClient is closed')));
      return handle;
    }
    this.watches.add(handle);
    void this.runWatch<T>(path, type, query, controller, onEvent).then(
      () => finish(),
      (err: unknown) => finish(err instanceof Error ? err : new Error(String(err))),
    );
    return handle;
  }

  /**
   * Connections open to the API server now, and requests running on them (watches included). Over
   * HTTP/2 (what the API server and undici negotiate) every request is a stream of one connection.
   */
  connectionStats(): { connected: number; running: number; pending: number } {
    const d = this.shared?.dispatcher;
    const out = { connected: 0, running: 0, pending: 0 };
    if (!(d instanceof Agent)) return out;
    for (const s of Object.values(d.stats) as { connected: number | boolean; running: number; pending: number }[]) {
      out.connected += Number(s.connected);
      out.running += s.running;
      out.pending += s.pending;
    }
    return out;
  }

  /** Ends all watches and closes connections. */
  async close(): Promise<void> {
    this.closed = true;
    for (const w of [...this.watches]) w.abort();
    const d = this.shared?.dispatcher;
    this.shared = undefined;
    if (d) await d.close().catch(() => undefined);
  }

  private async runWatch<T>(path: string, type: ResourceType, query: WatchQuery, controller: AbortController, onEvent: (event: WatchEvent<T>) => void): Promise<void> {
    const q: Query = {
      watch: 'true',
      resourceVersion: query.resourceVersion,
      allowWatchBookmarks: query.allowWatchBookmarks,
      timeoutSeconds: query.timeoutSeconds,
      labelSelector: query.labelSelector,
      fieldSelector: query.fieldSelector,
    };
    const headerTimer = setTimeout(() => controller.abort(new DOMException('watch: no response headers in time', 'TimeoutError')), this.timeoutMs);
    headerTimer.unref();
    let res;
    try {
      res = await this.send({ verb: 'watch', method: 'GET', path, resource: type.plural, query: q }, controller.signal);
    } finally {
      clearTimeout(headerTimer);
    }
    if (!res.response.ok) throw await errorFrom(res.response, res.method, res.pathForErrors);
    const body = res.response.body;
    if (!body) return;
    const decoder = new TextDecoder();
    let buffered = '';
    try {
      for await (const chunk of body as AsyncIterable<Uint8Array>) {
        buffered += decoder.decode(chunk, { stream: true });
        let start = 0;
        let nl: number;
        while ((nl = buffered.indexOf('\n', start)) >= 0) {
          const line = buffered.slice(start, nl).trim();
          start = nl + 1;
          if (line === '') continue;
          // A line that does not parse means the stream is corrupt: end the watch, let the caller restart it.
          const event = parseJson<WatchEvent<T>>(line, `watch ${path}`);
          onEvent(event);
        }
        // The rest is copied, not sliced: a slice keeps the whole text it was cut from alive (in V8),
        // and on a quiet watch that is the last event, as large as an object can be, until the next.
        if (start > 0) buffered = start >= buffered.length ? '' : Buffer.from(buffered.slice(start), 'utf8').toString('utf8');
      }
    } catch (err) {
      if (controller.signal.aborted && !(controller.signal.reason instanceof DOMException && controller.signal.reason.name === 'TimeoutError')) return;
      throw err;
    }
  }

  private async patchAt<T extends KubeObject>(type: ResourceType, namespace: string | undefined, name: string, subresource: string | undefined, patch: unknown, opts: PatchOptions): Promise<T> {
    const patchType = opts.type ?? 'merge';
    const query = this.writeQuery(opts);
    if (patchType === 'apply' && opts.force) query.force = true;
    const obj = await this.call<T>({
      verb: 'patch',
      method: 'PATCH',
      path: objectPath(type, namespace, name, subresource),
      resource: resourceName(type, subresource),
      query,
      body: patch,
      contentType: CONTENT_TYPES[patchType],
      opts,
    });
    return withTypeMeta(type, obj);
  }

  private writeQuery(opts?: RequestOptions): Query {
    return { fieldManager: this.fieldManager, dryRun: opts?.dryRun ? 'All' : undefined };
  }

  private async call<R>(c: Call): Promise<R> {
    const timeout = AbortSignal.timeout(c.opts?.timeoutMs ?? this.timeoutMs);
    const signal = c.opts?.signal ? AbortSignal.any([timeout, c.opts.signal]) : timeout;
    const { response, method, pathForErrors } = await this.send(c, signal);
    if (!response.ok) throw await errorFrom(response, method, pathForErrors);
    let text: string;
    try {
      text = await response.text();
    } catch (err) {
      throw networkError(method, pathForErrors, err, signal);
    }
    return (text === '' ? undefined : parseJson<R>(text, `${method} ${pathForErrors}`)) as R;
  }

  /** call() for a list: its items handed to onItem one by one as they arrive, the rest returned. */
  private async callList<R>(c: Call, onItem: (text: string) => void): Promise<R> {
    const timeout = AbortSignal.timeout(c.opts?.timeoutMs ?? this.timeoutMs);
    const signal = c.opts?.signal ? AbortSignal.any([timeout, c.opts.signal]) : timeout;
    const { response, method, pathForErrors } = await this.send(c, signal);
    if (!response.ok) throw await errorFrom(response, method, pathForErrors);
    const splitter = new ListItemSplitter(onItem);
    const decoder = new TextDecoder();
    try {
      for await (const chunk of (response.body ?? []) as AsyncIterable<Uint8Array>) splitter.push(decoder.decode(chunk, { stream: true }));
      splitter.push(decoder.decode());
    } catch (err) {
      if (err instanceof KubeApiError) throw err;
      throw networkError(method, pathForErrors, err, signal);
    }
    return parseJson<R>(splitter.end(), `${method} ${pathForErrors}`);
  }

  /** Sends the request and reports it to onRequest; transport failures become KubeApiError(0). */
  private async send(c: Call, signal: AbortSignal): Promise<{ response: Awaited<ReturnType<typeof fetch>>; method: string; pathForErrors: string }> {
    const url = new URL(this.access.server + c.path);
    for (const [k, v] of Object.entries(c.query ?? {})) {
      if (v !== undefined) url.searchParams.set(k, String(v));
    }
    // Errors name the path and query (selectors, fieldManager): never a body.
    const pathForErrors = url.pathname + url.search;
    const headers: [string, string][] = await this.access.headers();
    const dispatcher = this.dispatcher();
    headers.push(['Accept', c.accept ?? 'application/json'], ['User-Agent', this.userAgent]);
    if (c.body !== undefined) headers.push(['Content-Type', c.contentType ?? 'application/json']);
    try {
      const response = await fetch(url, {
        method: c.method,
        headers,
        body: c.body === undefined ? undefined : JSON.stringify(c.body),
        dispatcher,
        signal,
        // The API server never redirects these calls; following one would re-send the body (a Secret
        // write, a TokenRequest) and the Impersonate-* headers to wherever it points.
        redirect: 'error',
      });
      this.onRequest?.(c.verb, c.resource, response.status);
      return { response, method: c.method, pathForErrors };
    } catch (err) {
      this.onRequest?.(c.verb, c.resource, 0);
      throw networkError(c.method, pathForErrors, err, signal);
    }
  }

  /**
   * One dispatcher for every request, with at most maxConnections connections, replaced only when
   * the TLS material changes (a rotated client certificate or CA file, a new certificate from an
   * exec plugin); requests and watches in flight on the old one finish first.
   */
  private dispatcher(): Dispatcher {
    const { tls, fingerprint } = this.tlsSettings();
    const shared = this.shared;
    if (shared && shared.fingerprint === fingerprint) return shared.dispatcher;
    const proxy = this.access.proxyUrl;
    const connect = { ...tls, keepAlive: true, keepAliveInitialDelay: 30_000 };
    let dispatcher: Dispatcher;
    if (proxy === undefined) dispatcher = new Agent({ connect, connections: this.maxConnections });
    else if (/^socks5?:/i.test(proxy)) dispatcher = new Socks5ProxyAgent(proxy, { requestTls: tls, connections: this.maxConnections });
    else dispatcher = new ProxyAgent({ uri: proxy, requestTls: tls, connections: this.maxConnections });
    this.shared = { fingerprint, dispatcher };
    if (shared) void shared.dispatcher.close().catch(() => undefined);
    return dispatcher;
  }

  /** The access's TLS settings and their fingerprint, read again after FINGERPRINT_TTL_MS. */
  private tlsSettings(): { tls: TlsSettings; fingerprint: string } {
    const now = Date.now();
    if (this.tlsCache && now - this.tlsCache.at < FINGERPRINT_TTL_MS) return this.tlsCache;
    const tls = this.access.tls();
    const h = createHash('sha256');
    for (const v of [this.access.server, this.access.proxyUrl, tls.servername, String(tls.rejectUnauthorized), tls.ca, tls.cert, tls.key]) {
      h.update(v === undefined ? '-' : v);
      h.update('\0');
    }
    this.tlsCache = { tls, fingerprint: h.digest('hex'), at: now };
    return this.tlsCache;
  }
}

function withTypeMeta<T extends KubeObject>(type: ResourceType, obj: T): T {
  if (obj && typeof obj === 'object' && (obj.apiVersion === undefined || obj.kind === undefined)) {
    obj.apiVersion ??= apiVersionOf(type);
    obj.kind ??= type.kind;
  }
  return obj;
}

async function errorFrom(response: Awaited<ReturnType<typeof fetch>>, method: string, path: string): Promise<KubeApiError> {
  let text = '';
  try {
    text = await response.text();
  } catch {
    // The status line alone will do.
  }
  return KubeApiError.fromResponse(method, path, response.status, response.statusText, text, response.headers.get('retry-after'));
}

function networkError(method: string, path: string, err: unknown, signal: AbortSignal): KubeApiError {
  const timedOut = signal.aborted && signal.reason instanceof DOMException && signal.reason.name === 'TimeoutError';
  const cause = err instanceof Error && err.cause instanceof Error ? err.cause : err;
  // A TypeError of its own (no network cause) is fetch refusing to build the request, and its
  // message quotes the offending header or URL, which may be a credential.
  let detail = cause === err && err instanceof TypeError ? 'the request could not be built (a header or the server URL is invalid)' : cause instanceof Error ? cause.message : String(cause);
  const code = cause && typeof cause === 'object' ? (cause as { code?: unknown }).code : undefined;
  if (typeof code === 'string' && !detail.includes(code)) detail = `${code}: ${detail}`;
  return new KubeApiError({
    statusCode: 0,
    reason: timedOut ? 'Timeout' : signal.aborted ? 'Aborted' : 'NetworkError',
    message: timedOut ? 'request timed out' : detail,
    method,
    path,
    cause: err,
  });
}
