/**
 * The cluster connection, from kubeconfig files or the pod's ServiceAccount, resolved the way kubectl
 * (client-go) resolves it, without @kubernetes/client-node: importing that package costs ~20 MiB of
 * V8 heap (it loads every generated model), and the operator only needs its authentication.
 *
 * Where from: an explicit file (--kubeconfig), else every file of KUBECONFIG merged (the first file
 * to define a cluster, user or context by name wins it, and the first current-context wins; missing
 * files are skipped), else ~/.kube/config, else in-cluster (KUBERNETES_SERVICE_HOST/PORT and the
 * ServiceAccount's token and ca.crt). Relative paths in a file are relative to that file.
 *
 * Clusters: server, certificate-authority(-data), insecure-skip-tls-verify, tls-server-name,
 * proxy-url (http, https; socks5 through undici's Socks5ProxyAgent). Users: client-certificate(-data),
 * client-key(-data), token, tokenFile (re-read every minute, as client-go does; the in-cluster token
 * too, since bound tokens rotate), username/password, as/as-groups/as-uid (impersonation). Users with
 * `exec` or `auth-provider` are handed to @kubernetes/client-node, imported only then, which runs
 * them exactly as it did before this loader existed.
 *
 * Errors name the file, context, user or cluster; never a token, a key or a password.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseDocument } from 'yaml';

export class KubeconfigError extends Error {}

/**
 * A credential that can go into an HTTP header as it is: visible ASCII only. Otherwise undici's own
 * error would quote the whole header value, token included; this one names where it came from only.
 */
function headerSafeToken<T extends string>(value: T, where: string): T {
  if (!/^[\x21-\x7e]+( [\x21-\x7e]+)?$/.test(value)) throw new KubeconfigError(`${where}: the token holds characters an HTTP header cannot carry (a line break?)`);
  return value;
}

export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';
/** How long a token read from a file is used before the file is read again (client-go: one minute). */
export const TOKEN_FILE_TTL_MS = 60_000;
/** The context name of the in-cluster configuration (client-node's name for it). */
export const IN_CLUSTER_CONTEXT = 'inClusterContext';

export interface KubeconfigOptions {
  /** Exactly this file (kubectl's --kubeconfig); it must exist. */
  file?: string;
  /** The context to use instead of the current one (kubectl's --context). */
  context?: string;
  /** KUBECONFIG, KUBERNETES_SERVICE_HOST, KUBERNETES_SERVICE_PORT. Default process.env. */
  env?: NodeJS.ProcessEnv;
  /** The home folder holding .kube/config. Default os.homedir(). */
  home?: string;
  /** Where a pod's ServiceAccount token, ca.crt and namespace are. Default SERVICE_ACCOUNT_DIR. */
  serviceAccountDir?: string;
}

/** TLS settings of the connection to the API server (undici's connect options). */
export interface TlsSettings {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  rejectUnauthorized?: boolean;
  servername?: string;
}

type Raw = Record<string, unknown>;
interface Entry {
  name: string;
  body: Raw;
  /** The file that defined it ('' when it came from a string). */
  file: string;
}

/** The minimum of @kubernetes/client-node's KubeConfig this module uses (type only: no import). */
interface ClientNodeKubeConfig {
  loadFromString(text: string): void;
  applyToHTTPSOptions(opts: { headers?: Record<string, unknown>; cert?: unknown; key?: unknown }): Promise<void>;
}

/**
 * One resolved context: where the API server is and how to authenticate to it. headers() and tls()
 * are called per request (the client caches tls() for a while and rebuilds its connections when it
 * changes), so rotated files are picked up.
 */
export class KubeAccess {
  readonly server: string;
  readonly contextName: string;
  readonly namespace: string | undefined;
  readonly proxyUrl: string | undefined;
  /** Whether authentication goes through @kubernetes/client-node (exec or auth-provider users). */
  readonly delegated: boolean;
  private readonly cluster: Entry;
  private readonly user: Entry | undefined;
  private readonly staticHeaders: [string, string][];
  private fileToken: { value: string; at: number } | undefined;
  private clientNode: Promise<ClientNodeKubeConfig> | undefined;
  private delegatedTls: { cert?: Buffer; key?: Buffer } = {};

  constructor(args: { contextName: string; namespace: string | undefined; cluster: Entry; user: Entry | undefined }) {
    this.contextName = args.contextName;
    this.namespace = args.namespace;
    this.cluster = args.cluster;
    this.user = args.user;
    const c = args.cluster.body;
    const where = `cluster "${args.cluster.name}"${inFile(args.cluster.file)}`;
    const server = str(c.server);
    if (!server) throw new KubeconfigError(`${where} has no server`);
    let url: URL;
    try {
      url = new URL(server);
    } catch {
      throw new KubeconfigError(`${where}: server is not a URL`);
    }
    // Never echo the server string itself: it may hold a password.
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new KubeconfigError(`${where}: server must be an https:// (or http://) URL`);
    if (url.username !== '' || url.password !== '') throw new KubeconfigError(`${where}: server URL must not contain credentials (use the user's token or client certificate)`);
    this.server = server.replace(/\/+$/, '');
    this.proxyUrl = str(c['proxy-url']);
    if (c['certificate-authority'] && c['certificate-authority-data']) {
      throw new KubeconfigError(`${where}: certificate-authority and certificate-authority-data are both set; keep one`);
    }
    if (c['insecure-skip-tls-verify'] === true && (c['certificate-authority'] || c['certificate-authority-data'])) {
      throw new KubeconfigError(`${where}: a certificate authority together with insecure-skip-tls-verify is not allowed`);
    }
    const u = args.user?.body ?? {};
    const who = args.user ? `user "${args.user.name}"${inFile(args.user.file)}` : '';
    if (u['client-certificate'] && u['client-certificate-data']) throw new KubeconfigError(`${who}: client-certificate and client-certificate-data are both set; keep one`);
    if (u['client-key'] && u['client-key-data']) throw new KubeconfigError(`${who}: client-key and client-key-data are both set; keep one`);
    const hasCert = Boolean(u['client-certificate'] || u['client-certificate-data']);
    const hasKey = Boolean(u['client-key'] || u['client-key-data']);
    if (hasCert !== hasKey) throw new KubeconfigError(`${who}: a client certificate needs its key, and a key its certificate`);
    this.delegated = isSet(u.exec) || isSet(u['auth-provider']);
    if (isSet(u.exec) && isSet(u['auth-provider'])) throw new KubeconfigError(`${who}: exec and auth-provider are both set; keep one`);
    const methods = [
      ...(str(u.token) || tokenFileOf(u) ? ['token'] : []),
      ...(str(u.username) !== undefined || str(u.password) !== undefined ? ['username/password'] : []),
      ...(this.delegated ? [isSet(u.exec) ? 'exec' : 'auth-provider'] : []),
    ];
    // As client-go: one way to fill the Authorization header (exec/auth-provider keep client-node's rules).
    if (!this.delegated && methods.length > 1) throw new KubeconfigError(`${who}: more than one authentication method (${methods.join(', ')}); keep one`);
    if (isSet(u['as-user-extra'])) throw new KubeconfigError(`${who}: as-user-extra is not supported`);
    // kubectl would send them in the clear; only to this machine is that not a leak.
    if (url.protocol === 'http:' && methods.length > 0 && !isLoopback(url.hostname)) {
      throw new KubeconfigError(`${where}: plain http:// would carry the credentials of ${who} unencrypted; use https:// (plain http to localhost only)`);
    }
    this.staticHeaders = [];
    if (str(u.as)) this.staticHeaders.push(['Impersonate-User', str(u.as) as string]);
    if (str(u['as-uid'])) this.staticHeaders.push(['Impersonate-Uid', str(u['as-uid']) as string]);
    if (Array.isArray(u['as-groups'])) for (const g of u['as-groups']) if (typeof g === 'string') this.staticHeaders.push(['Impersonate-Group', g]);
    if (str(u.token) !== undefined) headerSafeToken(str(u.token) as string, who);
    if (!this.delegated && str(u.username) !== undefined) {
      const basic = Buffer.from(`${str(u.username) ?? ''}:${str(u.password) ?? ''}`).toString('base64');
      this.staticHeaders.push(['Authorization', `Basic ${basic}`]);
    }
  }

  /** The headers that authenticate a request: Authorization (unless anonymous or by certificate only), Impersonate-*. */
  async headers(): Promise<[string, string][]> {
    const out = [...this.staticHeaders];
    if (this.delegated) {
      let authorization: string | undefined;
      try {
        authorization = await this.delegatedAuth();
      } catch (err) {
        // client-node's errors carry the plugin's stderr or a parse of its stdout, which may hold a token.
        const code = err && typeof err === 'object' ? (err as { code?: unknown }).code : undefined;
        const source = isSet(this.user?.body.exec) ? 'the exec credential plugin' : 'the auth-provider';
        throw new KubeconfigError(`user "${this.user?.name}": ${source} failed${typeof code === 'string' ? ` (${code})` : ''}; run it by hand to see why`);
      }
      if (authorization) out.push(['Authorization', headerSafeToken(authorization, `user "${this.user?.name}"`)]);
      return out;
    }
    const token = this.token();
    if (token) out.push(['Authorization', `Bearer ${token}`]);
    return out;
  }

  /** The TLS settings, files read now. Throws naming the file (never its content). */
  tls(): TlsSettings {
    const c = this.cluster.body;
    const u = this.user?.body ?? {};
    const tls: TlsSettings = {};
    if (c['insecure-skip-tls-verify'] === true) tls.rejectUnauthorized = false;
    if (str(c['tls-server-name'])) tls.servername = str(c['tls-server-name']);
    const clusterWhere = `cluster "${this.cluster.name}"`;
    const userWhere = `user "${this.user?.name ?? ''}"`;
    const ca = material(clusterWhere, 'certificate-authority', c);
    if (ca) tls.ca = ca;
    const cert = this.delegatedTls.cert ?? material(userWhere, 'client-certificate', u);
    if (cert) tls.cert = cert;
    const key = this.delegatedTls.key ?? material(userWhere, 'client-key', u);
    if (key) tls.key = key;
    return tls;
  }

  /** token, or tokenFile's content (re-read after TOKEN_FILE_TTL_MS; the last good read is kept if a read fails). */
  private token(): string | undefined {
    const u = this.user?.body ?? {};
    const file = tokenFileOf(u);
    if (!file) return str(u.token);
    const now = Date.now();
    if (this.fileToken && now - this.fileToken.at < TOKEN_FILE_TTL_MS) return this.fileToken.value;
    try {
      const value = fs.readFileSync(file, 'utf8').trim();
      // As client-go: an empty token file is an error, never an anonymous request.
      if (value === '') throw new KubeconfigError(`user "${this.user?.name}": the token file ${file} is empty`);
      headerSafeToken(value, `user "${this.user?.name}": the token file ${file}`);
      this.fileToken = { value, at: now };
      return value;
    } catch (err) {
      if (this.fileToken) return this.fileToken.value;
      if (err instanceof KubeconfigError) throw err;
      throw new KubeconfigError(`user "${this.user?.name}": cannot read the token file ${file} (${codeOf(err)})`);
    }
  }

  /** exec and auth-provider users: @kubernetes/client-node runs them (imported on first use only). */
  private async delegatedAuth(): Promise<string | undefined> {
    const user = this.user as Entry;
    this.clientNode ??= import('@kubernetes/client-node').then(({ KubeConfig }) => {
      const kc = new KubeConfig();
      // Only the user matters to client-node's authenticators; the cluster is a placeholder.
      kc.loadFromString(JSON.stringify({
        clusters: [{ name: 'cluster', cluster: { server: 'https://kubernetes.invalid' } }],
        users: [{ name: user.name, user: user.body }],
        contexts: [{ name: 'context', context: { cluster: 'cluster', user: user.name } }],
        'current-context': 'context',
      }));
      return kc;
    });
    const kc = await this.clientNode;
    const opts: { headers?: Record<string, unknown>; cert?: unknown; key?: unknown } = {};
    await kc.applyToHTTPSOptions(opts);
    // A client certificate from the plugin's ExecCredential (PEM) or the user's own.
    this.delegatedTls = { ...(opts.cert ? { cert: toBuffer(opts.cert) } : {}), ...(opts.key ? { key: toBuffer(opts.key) } : {}) };
    const authorization = opts.headers?.Authorization ?? opts.headers?.authorization;
    return typeof authorization === 'string' && authorization !== '' ? authorization : undefined;
  }
}

/** Loads and resolves the configuration (see the module comment for the order). */
export function loadKubeconfig(opts: KubeconfigOptions = {}): KubeAccess {
  const env = opts.env ?? process.env;
  let files: string[];
  if (opts.file !== undefined) {
    if (!fs.existsSync(opts.file)) throw new KubeconfigError(`kubeconfig ${opts.file}: no such file`);
    files = [opts.file];
  } else if (env.KUBECONFIG) {
    files = env.KUBECONFIG.split(path.delimiter).filter((f) => f !== '' && fs.existsSync(f));
    if (files.length === 0) throw new KubeconfigError(`none of the files in KUBECONFIG exists: ${env.KUBECONFIG}`);
  } else {
    const home = path.join(opts.home ?? os.homedir(), '.kube', 'config');
    if (fs.existsSync(home)) files = [home];
    else if (env.KUBERNETES_SERVICE_HOST && env.KUBERNETES_SERVICE_PORT) return inCluster(env, opts.serviceAccountDir ?? SERVICE_ACCOUNT_DIR, opts.context);
    else throw new KubeconfigError('no kubeconfig: use --kubeconfig, set KUBECONFIG, or create ~/.kube/config (or run in a pod)');
  }
  return resolve(merge(files.map((file) => ({ doc: readKubeconfig(file), file }))), opts.context, files.join(path.delimiter));
}

/** A kubeconfig given as text (e.g. @kubernetes/client-node's exportConfig()); paths in it must be absolute. */
export function kubeconfigFromString(text: string, context?: string, origin = 'the kubeconfig'): KubeAccess {
  return resolve(merge([{ doc: parseKubeconfig(text, origin), file: '' }]), context, origin);
}

/** The pod's own ServiceAccount, as client-go's InClusterConfig. */
function inCluster(env: NodeJS.ProcessEnv, dir: string, context: string | undefined): KubeAccess {
  if (context !== undefined && context !== IN_CLUSTER_CONTEXT) throw new KubeconfigError(`context "${context}" does not exist (in-cluster configuration: no kubeconfig file found)`);
  const tokenFile = path.join(dir, 'token');
  try {
    fs.accessSync(tokenFile, fs.constants.R_OK);
  } catch (err) {
    throw new KubeconfigError(`in-cluster configuration: cannot read the ServiceAccount token ${tokenFile} (${codeOf(err)})`);
  }
  const host = env.KUBERNETES_SERVICE_HOST as string;
  const server = `https://${net.isIPv6(host) ? `[${host}]` : host}:${env.KUBERNETES_SERVICE_PORT}`;
  let namespace: string | undefined;
  try {
    namespace = fs.readFileSync(path.join(dir, 'namespace'), 'utf8').trim() || undefined;
  } catch {
    // No namespace file: the namespace is "default" to whoever asks.
  }
  return new KubeAccess({
    contextName: IN_CLUSTER_CONTEXT,
    namespace,
    cluster: { name: 'inCluster', file: '', body: { server, 'certificate-authority': path.join(dir, 'ca.crt') } },
    user: { name: 'inClusterUser', file: '', body: { tokenFile } },
  });
}

function readKubeconfig(file: string): Raw {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new KubeconfigError(`kubeconfig ${file}: cannot read it (${codeOf(err)})`);
  }
  const doc = parseKubeconfig(text, `kubeconfig ${file}`);
  // Relative paths are relative to the file that names them (client-go's ResolveLocalPaths).
  const dir = path.dirname(path.resolve(file));
  const abs = (p: unknown) => (typeof p === 'string' && p !== '' && !path.isAbsolute(p) ? path.join(dir, p) : p);
  for (const e of listOf(doc.clusters)) {
    const c = (e as Raw | null)?.cluster as Raw | undefined;
    if (isObj(c) && c['certificate-authority'] !== undefined) c['certificate-authority'] = abs(c['certificate-authority']);
  }
  for (const e of listOf(doc.users)) {
    const u = (e as Raw | null)?.user as Raw | undefined;
    if (!isObj(u)) continue;
    for (const k of ['client-certificate', 'client-key', 'tokenFile', 'token-file']) if (u[k] !== undefined) u[k] = abs(u[k]);
    // An exec command with a path separator is relative to the kubeconfig; a bare name is looked up in PATH.
    if (isObj(u.exec) && typeof u.exec.command === 'string' && u.exec.command.includes('/')) u.exec.command = abs(u.exec.command);
  }
  return doc;
}

function parseKubeconfig(text: string, origin: string): Raw {
  // The YAML library's own messages quote the text around an error, which can hold a token: only the position and code are kept.
  const parsed = parseDocument(text);
  const error = parsed.errors[0];
  if (error) {
    const line = error.linePos?.[0]?.line;
    throw new KubeconfigError(`${origin}: not valid YAML${line !== undefined ? ` at line ${line}` : ''} (${error.code})`);
  }
  const doc: unknown = parsed.toJS();
  if (doc === null || doc === undefined) return {};
  if (!isObj(doc)) throw new KubeconfigError(`${origin}: not a kubeconfig (a mapping of clusters, users and contexts)`);
  for (const kind of ['clusters', 'users', 'contexts'] as const) {
    if (doc[kind] !== undefined && doc[kind] !== null && !Array.isArray(doc[kind])) throw new KubeconfigError(`${origin}: ${kind} is not a list`);
  }
  return doc;
}

interface Merged {
  clusters: Map<string, Entry>;
  users: Map<string, Entry>;
  contexts: Map<string, Entry>;
  current: string | undefined;
}

/** kubectl's merge: the first file to define a name wins it whole; the first current-context wins. */
function merge(docs: { doc: Raw; file: string }[]): Merged {
  const m: Merged = { clusters: new Map(), users: new Map(), contexts: new Map(), current: undefined };
  for (const { doc, file } of docs) {
    m.current ??= str(doc['current-context']);
    for (const [kind, field] of [['clusters', 'cluster'], ['users', 'user'], ['contexts', 'context']] as const) {
      const inThisFile = new Set<string>();
      listOf(doc[kind]).forEach((e, i) => {
        const name = isObj(e) ? str(e.name) : undefined;
        if (name === undefined) throw new KubeconfigError(`${file ? `kubeconfig ${file}` : 'the kubeconfig'}: ${kind}[${i}] has no name`);
        // As client-go: within one file a name is defined once (across files the first file wins).
        if (inThisFile.has(name)) throw new KubeconfigError(`${file ? `kubeconfig ${file}` : 'the kubeconfig'}: ${kind} has "${name}" twice`);
        inThisFile.add(name);
        const body = (e as Raw)[field];
        if (!m[kind].has(name)) m[kind].set(name, { name, body: isObj(body) ? body : {}, file });
      });
    }
  }
  return m;
}

function resolve(m: Merged, context: string | undefined, origin: string): KubeAccess {
  const where = `the kubeconfig (${origin})`;
  const name = context ?? m.current;
  if (name === undefined) {
    throw new KubeconfigError(m.contexts.size > 0 ? `${where} has no current context: use --context` : `${where} defines no context`);
  }
  const ctx = m.contexts.get(name);
  if (!ctx) throw new KubeconfigError(`context "${name}" does not exist in ${where}`);
  const clusterName = str(ctx.body.cluster);
  if (clusterName === undefined) throw new KubeconfigError(`context "${name}" names no cluster`);
  const cluster = m.clusters.get(clusterName);
  if (!cluster) throw new KubeconfigError(`context "${name}" names cluster "${clusterName}", which ${where} does not define`);
  const userName = str(ctx.body.user);
  const user = userName === undefined ? undefined : m.users.get(userName);
  if (userName !== undefined && !user) throw new KubeconfigError(`context "${name}" names user "${userName}", which ${where} does not define`);
  return new KubeAccess({ contextName: name, namespace: str(ctx.body.namespace), cluster, user });
}

/** A file path or base64 data (path wins only when data is absent; both set is refused earlier). */
function material(where: string, field: string, body: Raw): Buffer | undefined {
  const data = str(body[`${field}-data`]);
  if (data) return Buffer.from(data, 'base64');
  const file = str(body[field]);
  if (!file) return undefined;
  try {
    return fs.readFileSync(file);
  } catch (err) {
    throw new KubeconfigError(`${where}: cannot read ${field} ${file} (${codeOf(err)})`);
  }
}

function tokenFileOf(u: Raw): string | undefined {
  // kubectl spells it tokenFile; client-node read token-file.
  return str(u.tokenFile) ?? str(u['token-file']);
}

function inFile(file: string): string {
  return file ? ` in ${file}` : '';
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

function isSet(v: unknown): boolean {
  return v !== undefined && v !== null;
}

function isObj(v: unknown): v is Raw {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function listOf(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

function toBuffer(v: unknown): Buffer {
  return Buffer.isBuffer(v) ? v : Buffer.from(String(v));
}

function codeOf(err: unknown): string {
  const code = err && typeof err === 'object' ? (err as { code?: unknown }).code : undefined;
  return typeof code === 'string' ? code : 'unreadable';
}

/** localhost, 127.0.0.0/8 or ::1: a plain-http server there is on this machine (kubectl proxy, a test). */
function isLoopback(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '');
  return host === 'localhost' || host === '::1' || /^127(?:\.\d{1,3}){3}$/.test(host);
}
