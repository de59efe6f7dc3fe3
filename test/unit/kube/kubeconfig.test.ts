/**
 * The kubeconfig loader (src/kube/kubeconfig.ts): kubectl's merge and resolution rules, in-cluster
 * configuration, data vs files, clear errors that never hold a secret, and exec/auth-provider users
 * handed to @kubernetes/client-node (imported for them only).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { stringify } from 'yaml';
import { IN_CLUSTER_CONTEXT, KubeconfigError, TOKEN_FILE_TTL_MS, kubeconfigFromString, loadKubeconfig, type KubeAccess } from '../../../src/kube/kubeconfig.ts';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenwarden-kubeconfig-unit-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
afterEach(() => {
  vi.useRealTimers();
});

const SECRET_TOKEN = 'tok-3c1d6e-do-not-print';
const SECRET_PASSWORD = 'pw-9f2a-do-not-print';

let n = 0;
function write(content: unknown, name = `kc-${++n}.yaml`, folder = dir): string {
  const p = path.join(folder, name);
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, typeof content === 'string' ? content : stringify(content));
  return p;
}

/** A kubeconfig of one cluster, user and context each, all named `name`. */
function single(name: string, cluster: object, user: object, extra: object = {}): object {
  return {
    apiVersion: 'v1',
    kind: 'Config',
    'current-context': name,
    clusters: [{ name, cluster }],
    users: [{ name, user }],
    contexts: [{ name, context: { cluster: name, user: name } }],
    ...extra,
  };
}

const headersOf = async (a: KubeAccess): Promise<Record<string, string[]>> => {
  const out: Record<string, string[]> = {};
  for (const [k, v] of await a.headers()) (out[k] ??= []).push(v);
  return out;
};

/** The error thrown by fn (must be a KubeconfigError). */
function errorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(KubeconfigError);
    return (err as Error).message;
  }
  throw new Error('no error thrown');
}

describe('where the configuration comes from', () => {
  const one = write({
    'current-context': 'a',
    clusters: [{ name: 'a', cluster: { server: 'https://one-a' } }, { name: 'shared', cluster: { server: 'https://one-shared' } }],
    users: [{ name: 'u', user: { token: 'from-one' } }],
    contexts: [{ name: 'a', context: { cluster: 'a', user: 'u', namespace: 'ns-a' } }, { name: 'shared', context: { cluster: 'shared', user: 'u' } }],
  }, 'one.yaml');
  const two = write({
    'current-context': 'b',
    clusters: [{ name: 'b', cluster: { server: 'https://two-b' } }, { name: 'shared', cluster: { server: 'https://two-shared' } }],
    users: [{ name: 'u', user: { token: 'from-two' } }, { name: 'v', user: { token: 'only-two' } }],
    contexts: [{ name: 'b', context: { cluster: 'b', user: 'v' } }, { name: 'shared', context: { cluster: 'b', user: 'v' } }],
  }, 'two.yaml');
  const list = (...files: string[]) => ({ KUBECONFIG: files.join(path.delimiter) });

  it('KUBECONFIG: merged, the first file to define a name wins it whole, the first current-context wins, missing files skipped', async () => {
    const env = list(path.join(dir, 'missing.yaml'), one, two);
    const current = loadKubeconfig({ env });
    expect(current.contextName).toBe('a');
    expect(current.namespace).toBe('ns-a');
    expect(current.server).toBe('https://one-a');
    // Context "shared" is one.yaml's (cluster "shared", user "u"), cluster "shared" is one.yaml's.
    const shared = loadKubeconfig({ env, context: 'shared' });
    expect(shared.server).toBe('https://one-shared');
    expect(await headersOf(shared)).toEqual({ Authorization: ['Bearer from-one'] });
    // Context "b" exists only in two.yaml, its user "v" too.
    const b = loadKubeconfig({ env, context: 'b' });
    expect(b.server).toBe('https://two-b');
    expect(await headersOf(b)).toEqual({ Authorization: ['Bearer only-two'] });
    // In the other order, two.yaml wins.
    expect(loadKubeconfig({ env: list(two, one) }).contextName).toBe('b');
    expect(loadKubeconfig({ env: list(two, one), context: 'shared' }).server).toBe('https://two-b');
  });

  it('an empty current-context does not win: the next file\'s does', () => {
    const empty = write({ 'current-context': '', clusters: [], users: [], contexts: [] });
    expect(loadKubeconfig({ env: list(empty, two) }).contextName).toBe('b');
  });

  it('an explicit file beats KUBECONFIG and ~/.kube/config; then KUBECONFIG; then ~/.kube/config', () => {
    const home = path.join(dir, 'home');
    write(single('home', { server: 'https://home' }, {}), '.kube/config', home);
    expect(loadKubeconfig({ file: two, env: list(one), home }).server).toBe('https://two-b');
    expect(loadKubeconfig({ env: list(one), home }).server).toBe('https://one-a');
    expect(loadKubeconfig({ env: {}, home }).server).toBe('https://home');
    // A home kubeconfig beats in-cluster, as in kubectl.
    expect(loadKubeconfig({ env: { KUBERNETES_SERVICE_HOST: '10.0.0.1', KUBERNETES_SERVICE_PORT: '443' }, home }).server).toBe('https://home');
  });

  it('says what is missing: the file, every file of KUBECONFIG, any configuration at all', () => {
    expect(errorOf(() => loadKubeconfig({ file: path.join(dir, 'nope.yaml'), env: list(one) }))).toBe(`kubeconfig ${path.join(dir, 'nope.yaml')}: no such file`);
    const missing = list(path.join(dir, 'x.yaml'), path.join(dir, 'y.yaml'));
    expect(errorOf(() => loadKubeconfig({ env: missing }))).toBe(`none of the files in KUBECONFIG exists: ${missing.KUBECONFIG}`);
    expect(errorOf(() => loadKubeconfig({ env: {}, home: path.join(dir, 'no-home') }))).toMatch(/^no kubeconfig: use --kubeconfig, set KUBECONFIG, or create ~\/\.kube\/config/);
  });

  it('says which context, cluster or user is missing, and in which files', () => {
    const env = list(one, two);
    expect(errorOf(() => loadKubeconfig({ env, context: 'nobody' }))).toBe(`context "nobody" does not exist in the kubeconfig (${one}${path.delimiter}${two})`);
    const noCluster = write({ 'current-context': 'c', contexts: [{ name: 'c', context: { cluster: 'gone', user: 'u' } }], users: [{ name: 'u', user: {} }] });
    expect(errorOf(() => loadKubeconfig({ file: noCluster }))).toBe(`context "c" names cluster "gone", which the kubeconfig (${noCluster}) does not define`);
    const noUser = write({ 'current-context': 'c', contexts: [{ name: 'c', context: { cluster: 'k', user: 'ghost' } }], clusters: [{ name: 'k', cluster: { server: 'https://k' } }] });
    expect(errorOf(() => loadKubeconfig({ file: noUser }))).toBe(`context "c" names user "ghost", which the kubeconfig (${noUser}) does not define`);
    const noCurrent = write({ contexts: [{ name: 'c', context: { cluster: 'k' } }], clusters: [{ name: 'k', cluster: { server: 'https://k' } }] });
    expect(errorOf(() => loadKubeconfig({ file: noCurrent }))).toBe(`the kubeconfig (${noCurrent}) has no current context: use --context`);
    // No user in the context: anonymous, no Authorization header.
    expect(loadKubeconfig({ file: noCurrent, context: 'c' }).server).toBe('https://k');
    const noServer = write(single('s', {}, {}));
    expect(errorOf(() => loadKubeconfig({ file: noServer }))).toBe(`cluster "s" in ${noServer} has no server`);
  });
});

describe('clusters and users', () => {
  const pki = path.join(dir, 'pki');
  fs.mkdirSync(pki, { recursive: true });
  fs.writeFileSync(path.join(pki, 'ca.crt'), 'CA FROM FILE');
  fs.writeFileSync(path.join(pki, 'client.crt'), 'CERT FROM FILE');
  fs.writeFileSync(path.join(pki, 'client.key'), 'KEY FROM FILE');
  const b64 = (s: string) => Buffer.from(s).toString('base64');

  it('files, relative to the kubeconfig that names them', () => {
    const file = write(single('f', { server: 'https://f', 'certificate-authority': 'pki/ca.crt' }, { 'client-certificate': 'pki/client.crt', 'client-key': path.join(pki, 'client.key') }));
    const tls = loadKubeconfig({ file }).tls();
    expect(tls.ca?.toString()).toBe('CA FROM FILE');
    expect(tls.cert?.toString()).toBe('CERT FROM FILE');
    expect(tls.key?.toString()).toBe('KEY FROM FILE');
    expect(tls.rejectUnauthorized).toBeUndefined();
  });

  it('base64 data; insecure-skip-tls-verify and tls-server-name', () => {
    const file = write(single('d', { server: 'https://d', 'certificate-authority-data': b64('CA DATA'), 'tls-server-name': 'kubernetes.default' }, { 'client-certificate-data': b64('CERT DATA'), 'client-key-data': b64('KEY DATA') }));
    const tls = loadKubeconfig({ file }).tls();
    expect([tls.ca?.toString(), tls.cert?.toString(), tls.key?.toString(), tls.servername]).toEqual(['CA DATA', 'CERT DATA', 'KEY DATA', 'kubernetes.default']);
    const insecure = write(single('i', { server: 'https://i', 'insecure-skip-tls-verify': true }, {}));
    expect(loadKubeconfig({ file: insecure }).tls()).toEqual({ rejectUnauthorized: false });
  });

  it('refuses what kubectl refuses: data and file both set, a CA with insecure-skip-tls-verify, two ways to authenticate', () => {
    const both = write(single('b', { server: 'https://b', 'certificate-authority': 'pki/ca.crt', 'certificate-authority-data': b64('x') }, {}));
    expect(errorOf(() => loadKubeconfig({ file: both }))).toBe(`cluster "b" in ${both}: certificate-authority and certificate-authority-data are both set; keep one`);
    const certs = write(single('c', { server: 'https://c' }, { 'client-key': 'k', 'client-key-data': b64('x') }));
    expect(errorOf(() => loadKubeconfig({ file: certs }))).toBe(`user "c" in ${certs}: client-key and client-key-data are both set; keep one`);
    const insecureCa = write(single('i', { server: 'https://i', 'insecure-skip-tls-verify': true, 'certificate-authority-data': b64('x') }, {}));
    expect(errorOf(() => loadKubeconfig({ file: insecureCa }))).toMatch(/a certificate authority together with insecure-skip-tls-verify is not allowed/);
    const twoWays = write(single('t', { server: 'https://t' }, { token: SECRET_TOKEN, username: 'me', password: SECRET_PASSWORD }));
    const msg = errorOf(() => loadKubeconfig({ file: twoWays }));
    expect(msg).toBe(`user "t" in ${twoWays}: more than one authentication method (token, username/password); keep one`);
  });

  it('an unreadable certificate file: the error names the user, the field and the file', () => {
    const file = write(single('m', { server: 'https://m' }, { 'client-certificate': 'pki/missing.crt', 'client-key': 'pki/missing.key' }));
    const access = loadKubeconfig({ file });
    expect(errorOf(() => access.tls())).toBe(`user "m": cannot read client-certificate ${path.join(dir, 'pki/missing.crt')} (ENOENT)`);
  });

  it('token, basic, impersonation', async () => {
    const token = write(single('t', { server: 'https://t' }, { token: SECRET_TOKEN, as: 'jane', 'as-groups': ['g1', 'g2'], 'as-uid': '42' }));
    expect(await headersOf(loadKubeconfig({ file: token }))).toEqual({
      'Impersonate-User': ['jane'],
      'Impersonate-Uid': ['42'],
      'Impersonate-Group': ['g1', 'g2'],
      Authorization: [`Bearer ${SECRET_TOKEN}`],
    });
    const basic = write(single('b', { server: 'https://b' }, { username: 'me', password: SECRET_PASSWORD }));
    expect(await headersOf(loadKubeconfig({ file: basic }))).toEqual({ Authorization: [`Basic ${b64(`me:${SECRET_PASSWORD}`)}`] });
    expect(await headersOf(loadKubeconfig({ file: write(single('anon', { server: 'https://a' }, {})) }))).toEqual({});
  });

  it('tokenFile (relative to the kubeconfig) is read again after a minute; a failed read keeps the last token', async () => {
    const tokenPath = write('first\n', 'token.txt');
    const file = write(single('tf', { server: 'https://tf' }, { tokenFile: 'token.txt' }));
    vi.useFakeTimers({ now: 1_000_000 });
    const access = loadKubeconfig({ file });
    expect(await headersOf(access)).toEqual({ Authorization: ['Bearer first'] });
    fs.writeFileSync(tokenPath, 'second');
    vi.setSystemTime(1_000_000 + TOKEN_FILE_TTL_MS - 1);
    expect(await headersOf(access)).toEqual({ Authorization: ['Bearer first'] });
    vi.setSystemTime(1_000_000 + TOKEN_FILE_TTL_MS + 1);
    expect(await headersOf(access)).toEqual({ Authorization: ['Bearer second'] });
    fs.rmSync(tokenPath);
    vi.setSystemTime(1_000_000 + 3 * TOKEN_FILE_TTL_MS);
    expect(await headersOf(access)).toEqual({ Authorization: ['Bearer second'] });
    // Never read: the error names the file.
    const never = loadKubeconfig({ file });
    await expect(never.headers()).rejects.toThrow(`user "tf": cannot read the token file ${tokenPath} (ENOENT)`);
  });
});

describe('in-cluster', () => {
  const sa = path.join(dir, 'serviceaccount');
  fs.mkdirSync(sa, { recursive: true });
  fs.writeFileSync(path.join(sa, 'ca.crt'), 'POD CA');
  fs.writeFileSync(path.join(sa, 'namespace'), 'tokenwarden-system');
  const noHome = path.join(dir, 'no-home');

  it('the ServiceAccount token (re-read each minute, bound tokens rotate), ca.crt, namespace; IPv6 hosts bracketed', async () => {
    fs.writeFileSync(path.join(sa, 'token'), 'pod-token-1');
    vi.useFakeTimers({ now: 5_000_000 });
    const access = loadKubeconfig({ env: { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' }, home: noHome, serviceAccountDir: sa });
    expect([access.server, access.contextName, access.namespace]).toEqual(['https://10.96.0.1:443', IN_CLUSTER_CONTEXT, 'tokenwarden-system']);
    expect(access.tls().ca?.toString()).toBe('POD CA');
    expect(await headersOf(access)).toEqual({ Authorization: ['Bearer pod-token-1'] });
    fs.writeFileSync(path.join(sa, 'token'), 'pod-token-2');
    vi.setSystemTime(5_000_000 + TOKEN_FILE_TTL_MS + 1);
    expect(await headersOf(access)).toEqual({ Authorization: ['Bearer pod-token-2'] });
    expect(loadKubeconfig({ env: { KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '6443' }, home: noHome, serviceAccountDir: sa }).server).toBe('https://[fd00::1]:6443');
  });

  it('no token file: the error names it; another --context: refused', () => {
    const env = { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' };
    const empty = path.join(dir, 'empty-sa');
    fs.mkdirSync(empty, { recursive: true });
    expect(errorOf(() => loadKubeconfig({ env, home: noHome, serviceAccountDir: empty }))).toBe(`in-cluster configuration: cannot read the ServiceAccount token ${path.join(empty, 'token')} (ENOENT)`);
    expect(errorOf(() => loadKubeconfig({ env, home: noHome, serviceAccountDir: sa, context: 'other' }))).toMatch(/^context "other" does not exist/);
  });
});

describe('errors never hold a secret', () => {
  it('bad YAML: the position and the parser\'s code, not the text around it', () => {
    const file = write(`users:\n- name: u\n  user: {token: ${SECRET_TOKEN}\ncontexts: [\n`);
    const msg = errorOf(() => loadKubeconfig({ file }));
    expect(msg).toMatch(new RegExp(`^kubeconfig ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: not valid YAML at line \\d+ \\(\\w+\\)$`));
    expect(msg).not.toContain(SECRET_TOKEN);
  });

  it('a server URL with a password, or without a scheme: refused without echoing it', () => {
    const withPassword = write(single('p', { server: `https://me:${SECRET_PASSWORD}@p.example` }, { token: 'x' }));
    const msg = errorOf(() => loadKubeconfig({ file: withPassword }));
    expect(msg).toBe(`cluster "p" in ${withPassword}: server URL must not contain credentials (use the user's token or client certificate)`);
    expect(msg).not.toContain(SECRET_PASSWORD);
    const noScheme = write(single('s', { server: 'localhost:6443' }, { token: 'x' }));
    expect(errorOf(() => loadKubeconfig({ file: noScheme }))).toBe(`cluster "s" in ${noScheme}: server must be an https:// (or http://) URL`);
  });

  it('credentials for a plain-http server elsewhere than this machine: refused, naming no secret; localhost and anonymous allowed', async () => {
    for (const user of [{ token: SECRET_TOKEN }, { username: 'u', password: SECRET_PASSWORD }]) {
      const remote = write(single('h', { server: 'http://api.example:8080' }, user));
      const msg = errorOf(() => loadKubeconfig({ file: remote }));
      expect(msg).toBe(`cluster "h" in ${remote}: plain http:// would carry the credentials of user "h" in ${remote} unencrypted; use https:// (plain http to localhost only)`);
      expect(msg).not.toContain(SECRET_TOKEN);
      expect(msg).not.toContain(SECRET_PASSWORD);
    }
    for (const server of ['http://localhost:8001', 'http://127.0.0.1:8001', 'http://[::1]:8001']) {
      expect(await headersOf(loadKubeconfig({ file: write(single('l', { server }, { token: 'local' })) })), server).toMatchObject({ Authorization: ['Bearer local'] });
    }
    expect(await headersOf(loadKubeconfig({ file: write(single('a', { server: 'http://api.example:8080' }, {})) }))).toEqual({});
  });

  it('a token an HTTP header cannot carry, an empty token file, a certificate without its key: refused, naming no token', async () => {
    const broken = `${SECRET_TOKEN}\nsecond-line`;
    const inline = write(single('n', { server: 'https://n' }, { token: broken }));
    const msg = errorOf(() => loadKubeconfig({ file: inline }));
    expect(msg).toMatch(/^user "n" in .*: the token holds characters an HTTP header cannot carry/);
    expect(msg).not.toContain(SECRET_TOKEN);
    const tokenFile = write(`${SECRET_TOKEN}\r\nmore\n`, `token-${++n}`);
    const fromFile = loadKubeconfig({ file: write(single('f', { server: 'https://f' }, { tokenFile })) });
    const fileMsg = await fromFile.headers().then(() => 'no error', (err: Error) => err.message);
    expect(fileMsg).toMatch(/the token holds characters an HTTP header cannot carry/);
    expect(fileMsg).not.toContain(SECRET_TOKEN);
    const empty = write('\n', `token-${++n}`);
    const emptyMsg = await loadKubeconfig({ file: write(single('e', { server: 'https://e' }, { tokenFile: empty })) }).headers().then(() => 'no error', (err: Error) => err.message);
    expect(emptyMsg).toBe(`user "e": the token file ${empty} is empty`);
    const certOnly = write(single('c', { server: 'https://c' }, { 'client-certificate-data': Buffer.from('CERT').toString('base64') }));
    expect(errorOf(() => loadKubeconfig({ file: certOnly }))).toBe(`user "c" in ${certOnly}: a client certificate needs its key, and a key its certificate`);
  });

  it('a name defined twice in one file is refused, naming neither definition', () => {
    const text = `users:\n- name: u\n  user: {token: ${SECRET_TOKEN}}\n- name: u\n  user: {token: other}\n`;
    const msg = errorOf(() => kubeconfigFromString(text, undefined, 'x'));
    expect(msg).toBe('the kubeconfig: users has "u" twice');
    expect(msg).not.toContain(SECRET_TOKEN);
  });

  it('not a kubeconfig, a list that is not a list, an entry without a name', () => {
    expect(errorOf(() => kubeconfigFromString('- a\n- b\n', undefined, 'x'))).toBe('x: not a kubeconfig (a mapping of clusters, users and contexts)');
    expect(errorOf(() => kubeconfigFromString(`users: {token: ${SECRET_TOKEN}}\n`, undefined, 'x'))).toBe('x: users is not a list');
    expect(errorOf(() => kubeconfigFromString(`users: [{user: {token: ${SECRET_TOKEN}}}]\n`))).toBe('the kubeconfig: users[0] has no name');
  });
});

describe('exec and auth-provider users: @kubernetes/client-node, imported for them only', () => {
  /** An exec credential plugin: prints an ExecCredential holding `token` (and counts its runs). */
  function plugin(token: string): { command: string; runs: () => number } {
    const counter = write('', `runs-${++n}.txt`);
    const script = write(
      `#!/usr/bin/env node\nrequire('fs').appendFileSync(${JSON.stringify(counter)}, 'x');\n` +
      `process.stdout.write(JSON.stringify({ apiVersion: 'client.authentication.k8s.io/v1', kind: 'ExecCredential', status: { token: ${JSON.stringify(token)}, expirationTimestamp: new Date(Date.now() + 3600e3).toISOString() } }));\n`,
      `plugin-${n}.cjs`,
    );
    fs.chmodSync(script, 0o755);
    return { command: script, runs: () => fs.readFileSync(counter, 'utf8').length };
  }

  it('an exec user is delegated and gets the plugin\'s token (run once while it is valid); a token user is not delegated', async () => {
    const p = plugin('exec-token-1');
    const file = write(single('e', { server: 'https://e' }, { exec: { apiVersion: 'client.authentication.k8s.io/v1', command: p.command, interactiveMode: 'Never' } }));
    const access = loadKubeconfig({ file });
    expect(access.delegated).toBe(true);
    expect(await headersOf(access)).toEqual({ Authorization: ['Bearer exec-token-1'] });
    expect(await headersOf(access)).toEqual({ Authorization: ['Bearer exec-token-1'] });
    expect(p.runs()).toBe(1);
    expect(loadKubeconfig({ file: write(single('t', { server: 'https://t' }, { token: 'x' })) }).delegated).toBe(false);
    expect(kubeconfigFromString(stringify(single('ap', { server: 'https://a' }, { 'auth-provider': { name: 'oidc', config: {} } }))).delegated).toBe(true);
  }, 30_000);

  it('a failing plugin: the error names the user, not what the plugin printed', async () => {
    const script = write(`process.stderr.write(${JSON.stringify(`leaked ${SECRET_TOKEN}`)}); process.stdout.write(${JSON.stringify(`{"token": "${SECRET_TOKEN}`)}); process.exit(1);\n`, `bad-plugin-${++n}.cjs`);
    const file = write(single('bad', { server: 'https://bad' }, { exec: { apiVersion: 'client.authentication.k8s.io/v1', command: process.execPath, args: [script] } }));
    const msg = await loadKubeconfig({ file }).headers().then(() => 'no error', (err: Error) => err.message);
    expect(msg).toMatch(/^user "bad": the exec credential plugin failed/);
    expect(msg).not.toContain(SECRET_TOKEN);
  }, 30_000);

  it('a client certificate from the ExecCredential becomes the connection\'s certificate', async () => {
    const script = write(
      `process.stdout.write(JSON.stringify({ apiVersion: 'client.authentication.k8s.io/v1', kind: 'ExecCredential', status: { clientCertificateData: 'EXEC CERT PEM', clientKeyData: 'EXEC KEY PEM' } }));\n`,
      `cert-plugin-${++n}.cjs`,
    );
    const file = write(single('ec', { server: 'https://ec' }, { exec: { apiVersion: 'client.authentication.k8s.io/v1', command: process.execPath, args: [script] } }));
    const access = loadKubeconfig({ file });
    expect(access.tls().cert).toBeUndefined();
    expect(await headersOf(access)).toEqual({});
    const tls = access.tls();
    expect([tls.cert?.toString(), tls.key?.toString()]).toEqual(['EXEC CERT PEM', 'EXEC KEY PEM']);
  }, 30_000);

  it('the package is loaded for an exec user only: not by the operator\'s modules, nor for token, certificate or in-cluster users', () => {
    // A child Node with a resolve hook that records every module it loads.
    const p = plugin('exec-token-2');
    const token = write(single('t', { server: 'https://t', 'insecure-skip-tls-verify': true }, { token: 'x' }));
    const exec = write(single('e', { server: 'https://e' }, { exec: { apiVersion: 'client.authentication.k8s.io/v1', command: p.command } }));
    const script = `
      import { registerHooks } from 'node:module';
      const seen = [];
      registerHooks({ resolve(s, c, next) { const r = next(s, c); seen.push(r.url); return r; } });
      const loaded = () => seen.some((u) => u.includes('@kubernetes/client-node'));
      for (const m of ['src/operator.ts', 'src/kube/client.ts', 'src/cli/context.ts', 'src/cli/commands/version.ts']) await import(${JSON.stringify(repo)} + '/' + m);
      const { loadKubeconfig } = await import(${JSON.stringify(repo)} + '/src/kube/kubeconfig.ts');
      const t = loadKubeconfig({ file: ${JSON.stringify(token)} });
      await t.headers(); t.tls();
      const before = loaded();
      const e = loadKubeconfig({ file: ${JSON.stringify(exec)} });
      const header = (await e.headers()).find(([k]) => k === 'Authorization')?.[1];
      console.log(JSON.stringify({ before, after: loaded(), header }));
    `;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', cwd: repo });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ before: false, after: true, header: 'Bearer exec-token-2' });
  }, 60_000);
});
