/**
 * A small REST client for the benchmark: node:https with a keep-alive agent and the credentials of
 * one kubeconfig (client-node's applyToHTTPSOptions), JSON in and out, a list+watch tracker, and a
 * count of every request it makes by (verb, resource) so the bench can tell its own requests apart
 * from the operator's in apiserver_request_total.
 */
import https from 'node:https';
import { KubeConfig } from '@kubernetes/client-node';

export interface ResourceType {
  group: string;
  version: string;
  plural: string;
  namespaced: boolean;
}

const rt = (group: string, version: string, plural: string, namespaced: boolean): ResourceType => ({ group, version, plural, namespaced });

export const GROUP = 'tokenwarden.io';
export const R = {
  tier: rt(GROUP, 'v1alpha1', 'tiers', false),
  binding: rt(GROUP, 'v1alpha1', 'tenantbindings', true),
  client: rt(GROUP, 'v1alpha1', 'serviceaccountclients', true),
  namespace: rt('', 'v1', 'namespaces', false),
  secret: rt('', 'v1', 'secrets', true),
  serviceAccount: rt('', 'v1', 'serviceaccounts', true),
  clusterRoleBinding: rt('rbac.authorization.k8s.io', 'v1', 'clusterrolebindings', false),
  flowSchema: rt('flowcontrol.apiserver.k8s.io', 'v1', 'flowschemas', false),
  crd: rt('apiextensions.k8s.io', 'v1', 'customresourcedefinitions', false),
  tokenReview: rt('authentication.k8s.io', 'v1', 'tokenreviews', false),
} as const;

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
}

export interface KObject {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  [key: string]: unknown;
}

export class ApiError extends Error {
  readonly status: number;
  readonly body: unknown;
  constructor(status: number, method: string, urlPath: string, body: unknown) {
    const message = typeof body === 'object' && body !== null && 'message' in body ? String((body as { message: unknown }).message) : String(body).slice(0, 300);
    super(`${method} ${urlPath.split('?')[0]}: HTTP ${status}: ${message}`);
    this.status = status;
    this.body = body;
  }
}

export function resourcePath(type: ResourceType, namespace?: string, name?: string, subresource?: string): string {
  const base = type.group === '' ? `/api/${type.version}` : `/apis/${type.group}/${type.version}`;
  const ns = type.namespaced && namespace ? `/namespaces/${encodeURIComponent(namespace)}` : '';
  return `${base}${ns}/${type.plural}${name ? `/${encodeURIComponent(name)}` : ''}${subresource ? `/${subresource}` : ''}`;
}

/** apiserver_request_total's verb and resource[/subresource] for a request this client makes. */
function classify(method: string, urlPath: string): { verb: string; resource: string } {
  const path = urlPath.split('?')[0] as string;
  const query = urlPath.includes('?') ? new URLSearchParams(urlPath.slice(urlPath.indexOf('?') + 1)) : new URLSearchParams();
  const parts = path.split('/').filter(Boolean);
  // /api/v1/... or /apis/group/version/...
  let rest = parts[0] === 'api' ? parts.slice(2) : parts.slice(3);
  if (rest[0] === 'namespaces' && rest.length >= 3) rest = rest.slice(2);
  const [resource = '', name, sub] = rest;
  const resourceName = sub ? `${resource}/${sub}` : resource;
  let verb = method;
  if (method === 'GET') verb = query.get('watch') === 'true' ? 'WATCH' : name ? 'GET' : 'LIST';
  return { verb, resource: resourceName };
}

export type RequestCounts = Map<string, number>;

export class Kube {
  readonly kc: KubeConfig;
  readonly server: string;
  private readonly agent: https.Agent;
  /** Requests made, "VERB resource" -> count (apiserver_request_total's naming). */
  readonly counts: RequestCounts = new Map();

  constructor(kubeconfigPath: string, context?: string, maxSockets = 64) {
    this.kc = new KubeConfig();
    this.kc.loadFromFile(kubeconfigPath);
    if (context) this.kc.setCurrentContext(context);
    const server = this.kc.getCurrentCluster()?.server;
    if (!server) throw new Error(`no cluster in ${kubeconfigPath}`);
    this.server = server;
    this.agent = new https.Agent({ keepAlive: true, maxSockets });
  }

  private async options(method: string, contentType?: string): Promise<https.RequestOptions> {
    const opts: https.RequestOptions = {
      method,
      agent: this.agent,
      timeout: 60_000,
      headers: { Accept: 'application/json', ...(contentType ? { 'Content-Type': contentType } : {}) },
    };
    await this.kc.applyToHTTPSOptions(opts);
    return opts;
  }

  count(method: string, urlPath: string): void {
    const { verb, resource } = classify(method, urlPath);
    const key = `${verb} ${resource}`;
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
  }

  async request<T>(method: string, urlPath: string, body?: unknown, contentType = 'application/json'): Promise<T> {
    const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    const opts = await this.options(method, payload !== undefined ? contentType : undefined);
    this.count(method, urlPath);
    return new Promise<T>((resolve, reject) => {
      const req = https.request(new URL(urlPath, this.server), opts, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown = text;
          try {
            parsed = text ? JSON.parse(text) : undefined;
          } catch {
            // not JSON (e.g. /metrics): keep the text
          }
          const status = res.statusCode ?? 0;
          if (status >= 200 && status < 300) resolve(parsed as T);
          else reject(new ApiError(status, method, urlPath, parsed));
        });
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new Error(`${method} ${urlPath} timed out`)));
      req.on('error', reject);
      if (payload !== undefined) req.write(payload);
      req.end();
    });
  }

  get<T extends KObject = KObject>(type: ResourceType, namespace: string | undefined, name: string): Promise<T> {
    return this.request<T>('GET', resourcePath(type, namespace, name));
  }

  async list<T extends KObject = KObject>(type: ResourceType, namespace?: string, query: Record<string, string> = {}): Promise<{ items: T[]; resourceVersion: string }> {
    const qs = new URLSearchParams(query);
    const items: T[] = [];
    let resourceVersion = '';
    let cont: string | undefined;
    do {
      if (cont) qs.set('continue', cont);
      qs.set('limit', '1000');
      const page = await this.request<{ items?: T[]; metadata?: { resourceVersion?: string; continue?: string } }>('GET', `${resourcePath(type, namespace)}?${qs.toString()}`);
      items.push(...(page.items ?? []));
      resourceVersion = page.metadata?.resourceVersion ?? resourceVersion;
      cont = page.metadata?.continue || undefined;
    } while (cont);
    return { items, resourceVersion };
  }

  create<T extends KObject = KObject>(type: ResourceType, namespace: string | undefined, body: unknown): Promise<T> {
    return this.request<T>('POST', resourcePath(type, namespace), body);
  }

  /** A PATCH; `query` e.g. { fieldManager, force } for server-side apply (application/apply-patch+yaml). */
  patch<T extends KObject = KObject>(type: ResourceType, namespace: string | undefined, name: string, patch: unknown, subresource?: string, contentType = 'application/merge-patch+json', query?: Record<string, string>): Promise<T> {
    const qs = query ? `?${new URLSearchParams(query).toString()}` : '';
    return this.request<T>('PATCH', `${resourcePath(type, namespace, name, subresource)}${qs}`, patch, contentType);
  }

  async remove(type: ResourceType, namespace: string | undefined, name: string): Promise<boolean> {
    try {
      await this.request('DELETE', resourcePath(type, namespace, name), { apiVersion: 'v1', kind: 'DeleteOptions', propagationPolicy: 'Background' });
      return true;
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) return false;
      throw err;
    }
  }

  post<T>(urlPath: string, body: unknown): Promise<T> {
    return this.request<T>('POST', urlPath, body);
  }

  /** GET of a non-JSON path (e.g. /metrics), as text. */
  async text(urlPath: string): Promise<string> {
    const opts = await this.options('GET');
    opts.headers = { Accept: 'text/plain' };
    return new Promise<string>((resolve, reject) => {
      const req = https.request(new URL(urlPath, this.server), opts, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          if ((res.statusCode ?? 0) === 200) resolve(text);
          else reject(new ApiError(res.statusCode ?? 0, 'GET', urlPath, text));
        });
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new Error(`GET ${urlPath} timed out`)));
      req.on('error', reject);
      req.end();
    });
  }

  /**
   * A watch from `resourceVersion`; calls onEvent per event, resolves when the server ends it (or
   * stop() is called). Rejects on HTTP errors (410 included).
   */
  watch<T extends KObject>(
    type: ResourceType,
    query: Record<string, string>,
    onEvent: (type: string, obj: T) => void,
  ): { done: Promise<void>; stop: () => void } {
    const qs = new URLSearchParams({ ...query, watch: 'true', allowWatchBookmarks: 'true' });
    const urlPath = `${resourcePath(type)}?${qs.toString()}`;
    let req: ReturnType<typeof https.request> | undefined;
    let stopped = false;
    const done = (async () => {
      const opts = await this.options('GET');
      opts.timeout = 0;
      this.count('GET', urlPath);
      await new Promise<void>((resolve, reject) => {
        req = https.request(new URL(urlPath, this.server), opts, (res) => {
          if ((res.statusCode ?? 0) !== 200) {
            let text = '';
            res.setEncoding('utf8').on('data', (d: string) => (text += d));
            res.on('end', () => reject(new ApiError(res.statusCode ?? 0, 'GET', urlPath, text)));
            return;
          }
          let buffered = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => {
            buffered += d;
            let nl: number;
            while ((nl = buffered.indexOf('\n')) >= 0) {
              const line = buffered.slice(0, nl).trim();
              buffered = buffered.slice(nl + 1);
              if (!line) continue;
              const ev = JSON.parse(line) as { type: string; object: T };
              if (ev.type === 'ERROR') {
                const status = ev.object as unknown as { code?: number };
                reject(new ApiError(status.code ?? 500, 'WATCH', urlPath, ev.object));
                req?.destroy();
                return;
              }
              onEvent(ev.type, ev.object);
            }
          });
          res.on('end', () => resolve());
          res.on('error', (err) => (stopped ? resolve() : reject(err)));
        });
        req.on('error', (err) => (stopped ? resolve() : reject(err)));
        req.end();
      });
    })();
    return {
      done,
      stop: () => {
        stopped = true;
        req?.destroy();
      },
    };
  }

  close(): void {
    this.agent.destroy();
  }
}

/**
 * Keeps a live view of a collection: lists, then watches from the list's resourceVersion, and
 * restarts the watch whenever it ends (relisting on 410). onEvent sees every ADDED/MODIFIED/DELETED
 * with the local time it arrived.
 */
export class Tracker<T extends KObject> {
  readonly objects = new Map<string, T>();
  private stopped = false;
  private current: { stop: () => void } | undefined;
  private loop: Promise<void> | undefined;
  private synced!: Promise<void>;

  private readonly kube: Kube;
  private readonly type: ResourceType;
  private readonly query: Record<string, string>;
  private readonly onEvent: (type: string, obj: T, at: number) => void;

  constructor(kube: Kube, type: ResourceType, query: Record<string, string>, onEvent: (type: string, obj: T, at: number) => void = () => {}) {
    this.kube = kube;
    this.type = type;
    this.query = query;
    this.onEvent = onEvent;
  }

  start(): Promise<void> {
    let markSynced!: () => void;
    this.synced = new Promise((r) => (markSynced = r));
    this.loop = this.run(markSynced);
    return this.synced;
  }

  private key(obj: KObject): string {
    return `${obj.metadata.namespace ?? ''}/${obj.metadata.name}`;
  }

  private async run(markSynced: () => void): Promise<void> {
    let rv = '';
    while (!this.stopped) {
      try {
        if (!rv) {
          const list = await this.kube.list<T>(this.type, undefined, this.query);
          const at = Date.now();
          const seen = new Set<string>();
          for (const obj of list.items) {
            seen.add(this.key(obj));
            const old = this.objects.get(this.key(obj));
            this.objects.set(this.key(obj), obj);
            if (!old || old.metadata.resourceVersion !== obj.metadata.resourceVersion) this.onEvent(old ? 'MODIFIED' : 'ADDED', obj, at);
          }
          for (const [k, obj] of this.objects) {
            if (!seen.has(k)) {
              this.objects.delete(k);
              this.onEvent('DELETED', obj, at);
            }
          }
          rv = list.resourceVersion;
          markSynced();
        }
        const w = this.kube.watch<T>(this.type, { ...this.query, resourceVersion: rv, timeoutSeconds: '600' }, (type, obj) => {
          rv = obj.metadata.resourceVersion ?? rv;
          if (type === 'BOOKMARK') return;
          const at = Date.now();
          if (type === 'DELETED') this.objects.delete(this.key(obj));
          else this.objects.set(this.key(obj), obj);
          this.onEvent(type, obj, at);
        });
        this.current = w;
        await w.done;
      } catch (err) {
        if (this.stopped) return;
        if (err instanceof ApiError && err.status === 410) rv = '';
        else await new Promise((r) => setTimeout(r, 500));
      }
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.current?.stop();
    await this.loop?.catch(() => undefined);
  }
}

/** Runs `fn` over `items` with at most `concurrency` at a time; rethrows the first error. */
export async function pool<T>(items: readonly T[], concurrency: number, fn: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.min(concurrency, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i] as T, i);
    }
  });
  await Promise.all(workers);
}

/** Retries fn on 429/5xx and network errors (the bench's own setup must not fail on a busy server). */
export async function retrying<T>(fn: () => Promise<T>, attempts = 8): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await fn();
    } catch (err) {
      const status = err instanceof ApiError ? err.status : 0;
      const retryable = status === 0 || status === 429 || status >= 500;
      if (!retryable || i >= attempts) throw err;
      await new Promise((r) => setTimeout(r, 100 * 2 ** i));
    }
  }
}

export interface Sample {
  labels: Record<string, string>;
  value: number;
}

/** Samples of one metric family in Prometheus text format. */
export function metricSamples(text: string, name: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== '{' && rest[0] !== ' ') continue;
    const labels: Record<string, string> = {};
    let valuePart = rest.trim();
    if (rest[0] === '{') {
      const end = rest.lastIndexOf('}');
      for (const m of rest.slice(1, end).matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[m[1] as string] = (m[2] as string).replace(/\\(.)/g, '$1');
      valuePart = rest.slice(end + 1).trim();
    }
    samples.push({ labels, value: Number(valuePart.split(' ')[0]) });
  }
  return samples;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
