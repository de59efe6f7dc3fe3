/**
 * The kubeconfig loader against the real API server: a kubeconfig file's token user, an exec
 * credential plugin (run by @kubernetes/client-node, imported for it only) in the operator's
 * KubeClient and in the built kubectl plugin, and what a user without credentials is told.
 * Identity is read from the API server's own Forbidden message, which names the user.
 */
import fs from 'node:fs';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { KubeClient } from '../../src/kube/client.ts';
import { isForbidden, KubeApiError } from '../../src/kube/errors.ts';
import { loadKubeconfig } from '../../src/kube/kubeconfig.ts';
import { SECRETS } from '../../src/kube/resources.ts';
import { adminKubeConfig, createTestNamespace, userKubeConfig } from './support/cluster.ts';
import { buildPlugin, runExecutable } from './plugin/support.ts';

const BOB = 'bob@example.com';
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenwarden-kubeconfig-it-'));
let ns: string;
let cluster: { server: string; 'certificate-authority-data'?: string; 'certificate-authority'?: string };
let bobToken: string;

beforeAll(async () => {
  ns = await createTestNamespace('kubeconfig');
  const c = adminKubeConfig().getCurrentCluster();
  if (!c) throw new Error('no cluster');
  cluster = { server: c.server, ...(c.caData ? { 'certificate-authority-data': c.caData } : {}), ...(c.caFile ? { 'certificate-authority': c.caFile } : {}) };
  bobToken = userKubeConfig(BOB).getCurrentUser()?.token ?? '';
  expect(bobToken).not.toBe('');
});

afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A kubeconfig file with the run's cluster and one user. */
function kubeconfigWith(name: string, user: object): string {
  const file = path.join(dir, `${name}.yaml`);
  fs.writeFileSync(file, stringify({
    apiVersion: 'v1',
    kind: 'Config',
    'current-context': name,
    clusters: [{ name: 'test', cluster }],
    users: [{ name, user }],
    contexts: [{ name, context: { cluster: 'test', user: name, namespace: ns } }],
  }), { mode: 0o600 });
  return file;
}

/** An exec credential plugin printing an ExecCredential with bob's token; counts its runs. */
function execUser(): { user: object; runs: () => number } {
  const counter = path.join(dir, 'runs');
  fs.writeFileSync(counter, '');
  const tokenFile = path.join(dir, 'bob.token');
  fs.writeFileSync(tokenFile, bobToken, { mode: 0o600 });
  const script = path.join(dir, 'credential-plugin.cjs');
  fs.writeFileSync(script, `
    const fs = require('fs');
    fs.appendFileSync(${JSON.stringify(counter)}, 'x');
    const token = fs.readFileSync(${JSON.stringify(tokenFile)}, 'utf8');
    process.stdout.write(JSON.stringify({ apiVersion: 'client.authentication.k8s.io/v1', kind: 'ExecCredential', status: { token } }));
  `);
  return {
    // Node by its absolute path: the plugin's tests run with no Node on PATH.
    user: { exec: { apiVersion: 'client.authentication.k8s.io/v1', command: process.execPath, args: [script], interactiveMode: 'Never' } },
    runs: () => fs.readFileSync(counter, 'utf8').length,
  };
}

async function forbiddenMessage(client: KubeClient): Promise<string> {
  try {
    await client.list(SECRETS, ns);
  } catch (err) {
    expect(isForbidden(err), String(err)).toBe(true);
    return (err as KubeApiError).message;
  } finally {
    await client.close();
  }
  throw new Error('listing Secrets was allowed');
}

describe('a kubeconfig file read by our loader authenticates as its user', () => {
  it('a token user: the API server sees bob', async () => {
    const access = loadKubeconfig({ file: kubeconfigWith('bob-token', { token: bobToken }) });
    expect(access.delegated).toBe(false);
    expect(await forbiddenMessage(new KubeClient(access))).toContain(`User "${BOB}" cannot list resource "secrets"`);
  });

  it('a tokenFile user (relative to the kubeconfig): the API server sees bob', async () => {
    fs.writeFileSync(path.join(dir, 'relative.token'), `${bobToken}\n`, { mode: 0o600 });
    const access = loadKubeconfig({ file: kubeconfigWith('bob-token-file', { tokenFile: 'relative.token' }) });
    expect(await forbiddenMessage(new KubeClient(access))).toContain(`User "${BOB}" cannot list resource "secrets"`);
  });

  it('an exec credential plugin (through @kubernetes/client-node): its token reaches the API server, the plugin runs once', async () => {
    const exec = execUser();
    const access = loadKubeconfig({ file: kubeconfigWith('bob-exec', exec.user) });
    expect(access.delegated).toBe(true);
    const client = new KubeClient(access);
    try {
      await expect(client.list(SECRETS, ns)).rejects.toThrow(`User "${BOB}" cannot list resource "secrets"`);
      await expect(client.list(SECRETS, ns)).rejects.toThrow(`User "${BOB}"`);
    } finally {
      await client.close();
    }
    // No expirationTimestamp: client-node keeps the credential for the life of the process.
    expect(exec.runs()).toBe(1);
  });

  it('proxy-url: requests go through the HTTP proxy (CONNECT) and still authenticate as the user', async () => {
    const tunnels: string[] = [];
    const proxy = http.createServer((_req, res) => res.writeHead(405).end());
    proxy.on('connect', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
      tunnels.push(req.url ?? '');
      const [host, port] = (req.url ?? '').split(':');
      const upstream = net.connect(Number(port), host, () => {
        socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        upstream.write(head);
        upstream.pipe(socket);
        socket.pipe(upstream);
      });
      upstream.on('error', () => socket.destroy());
      socket.on('error', () => upstream.destroy());
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    try {
      const file = path.join(dir, 'proxied.yaml');
      fs.writeFileSync(file, stringify({
        'current-context': 'p',
        clusters: [{ name: 'test', cluster: { ...cluster, 'proxy-url': `http://127.0.0.1:${(proxy.address() as AddressInfo).port}` } }],
        users: [{ name: 'bob', user: { token: bobToken } }],
        contexts: [{ name: 'p', context: { cluster: 'test', user: 'bob' } }],
      }), { mode: 0o600 });
      expect(await forbiddenMessage(new KubeClient(loadKubeconfig({ file })))).toContain(`User "${BOB}" cannot list resource "secrets"`);
      expect(tunnels.length).toBeGreaterThan(0);
      expect(new Set(tunnels)).toEqual(new Set([new URL(cluster.server).host]));
    } finally {
      proxy.closeAllConnections();
      await new Promise((resolve) => proxy.close(resolve));
    }
  });

  it('no user in the context: anonymous, refused', async () => {
    const file = path.join(dir, 'anonymous.yaml');
    fs.writeFileSync(file, stringify({ 'current-context': 'anon', clusters: [{ name: 'test', cluster }], contexts: [{ name: 'anon', context: { cluster: 'test' } }] }));
    const err = await new KubeClient(loadKubeconfig({ file })).list(SECRETS, ns).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(KubeApiError);
    // 401 when anonymous auth is off, 403 naming system:anonymous when it is on.
    expect([401, 403]).toContain((err as KubeApiError).statusCode);
  });
});

describe('the built kubectl plugin with an exec credential plugin', () => {
  it('whoami: the API server says bob (the bundled @kubernetes/client-node ran the exec plugin)', async () => {
    const plugin = await buildPlugin();
    const exec = execUser();
    const res = await runExecutable(plugin, ['--kubeconfig', kubeconfigWith('bob-exec-plugin', exec.user), 'whoami', '-o', 'json']);
    expect(JSON.parse(res.stdout || '{}'), res.stderr).toMatchObject({ username: BOB, namespace: ns });
    expect(exec.runs()).toBe(1);
    expect(res.stdout + res.stderr).not.toContain(bobToken);
  }, 240_000);
});
