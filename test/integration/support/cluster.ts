/**
 * What every integration test uses to reach the run's control plane (started by global-setup.ts):
 * kubeconfigs for the admin and the test users, test namespaces, polling, TokenReview, kubectl.
 */
import { spawn } from 'node:child_process';
import https from 'node:https';
import { randomBytes } from 'node:crypto';
import { afterAll, inject } from 'vitest';
import { AuthenticationV1Api, CoreV1Api, KubeConfig } from '@kubernetes/client-node';

export function kubeconfigPath(): string {
  return inject('kubeconfigPath');
}

/** The cluster admin: context `admin` (client cert, system:masters), else the current context. */
export function adminKubeConfig(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfigPath());
  if (kc.getContexts().some((c) => c.name === 'admin')) kc.setCurrentContext('admin');
  return kc;
}

/** A test user (static token), e.g. `alice@example.com`, through the context of that exact name. */
export function userKubeConfig(user: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfigPath());
  if (!kc.getContexts().some((c) => c.name === user)) throw new Error(`no context named ${user} in ${kubeconfigPath()}`);
  kc.setCurrentContext(user);
  return kc;
}

// Namespaces a test file created; deleted after the file (registered at import, i.e. on the file's
// root suite, since vitest evaluates this module afresh for each test file).
const createdNamespaces = new Set<string>();
afterAll(async () => {
  if (createdNamespaces.size === 0) return;
  const core = adminKubeConfig().makeApiClient(CoreV1Api);
  // Not awaited to completion: the namespace controller empties them in the background.
  await Promise.all([...createdNamespaces].map(async (name) => {
    try {
      await core.deleteNamespace({ name });
    } catch (err) {
      if (statusCode(err) !== 404 && statusCode(err) !== 409) throw err; // gone, or already going
    }
  }));
  createdNamespaces.clear();
});

/** Creates a uniquely named namespace labelled tokenwarden.io/test=true, deleted after the test file. */
export async function createTestNamespace(prefix: string): Promise<string> {
  const base = prefix.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 48) || 'test';
  const name = `${base}-${randomBytes(4).toString('hex')}`;
  const core = adminKubeConfig().makeApiClient(CoreV1Api);
  await core.createNamespace({ body: { metadata: { name, labels: { 'tokenwarden.io/test': 'true' } } } });
  createdNamespaces.add(name);
  return name;
}

/**
 * Polls `probe` until it returns something other than undefined, null or false, and returns that.
 * A probe that throws counts as "not yet"; on timeout the error names `description` and the last error.
 */
export async function waitFor<T>(
  probe: () => Promise<T | undefined | null | false>,
  opts: { timeoutMs?: number; intervalMs?: number; description?: string } = {},
): Promise<T> {
  const { timeoutMs = 30_000, intervalMs = 250, description = 'condition' } = opts;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    const remaining = deadline - Date.now();
    let timer: NodeJS.Timeout | undefined;
    try {
      // Raced against the deadline so one hung probe cannot outlast the timeout.
      const value = await Promise.race([
        probe(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error('probe still running at the deadline')), Math.max(remaining, 0));
        }),
      ]);
      if (value !== undefined && value !== null && value !== false) return value;
    } catch (err) {
      lastError = err;
    } finally {
      clearTimeout(timer);
    }
    if (Date.now() + intervalMs > deadline) {
      const last = lastError === undefined ? '' : `; last error: ${lastError instanceof Error ? lastError.message : String(lastError)}`;
      throw new Error(`timed out after ${timeoutMs}ms waiting for ${description}${last}`, { cause: lastError });
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

export interface TokenReviewResult {
  authenticated: boolean;
  username?: string;
  groups?: string[];
  audiences?: string[];
  error?: string;
}

/** Asks the API server (as admin) who `token` is. The token never appears in an error. */
export async function tokenReview(token: string, audiences?: string[]): Promise<TokenReviewResult> {
  const api = adminKubeConfig().makeApiClient(AuthenticationV1Api);
  let status;
  try {
    ({ status } = await api.createTokenReview({
      body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, ...(audiences ? { audiences } : {}) } },
    }));
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    // eslint-disable-next-line preserve-caught-error -- no `cause` on purpose: the original may carry the request, token included
    throw new Error(`TokenReview failed (HTTP ${statusCode(err) ?? '?'}): ${token ? message.split(token).join('<redacted>') : message}`);
  }
  return {
    authenticated: status?.authenticated ?? false,
    ...(status?.user?.username !== undefined ? { username: status.user.username } : {}),
    ...(status?.user?.groups !== undefined ? { groups: status.user.groups } : {}),
    ...(status?.audiences !== undefined ? { audiences: status.audiences } : {}),
    ...(status?.error ? { error: status.error } : {}),
  };
}

/** Runs the control plane's kubectl with the test kubeconfig, as admin or as `user` (a context name). */
export async function kubectl(
  args: string[],
  opts: { user?: string; input?: string; timeoutMs?: number } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const { kubectlPath } = inject('controlPlane');
  const argv = ['--kubeconfig', kubeconfigPath(), ...(opts.user ? ['--context', opts.user] : []), ...args];
  return new Promise((resolve, reject) => {
    const child = spawn(kubectlPath, argv, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, KUBECONFIG: kubeconfigPath() } });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr: signal ? `${stderr}\nkubectl killed by ${signal}` : stderr });
    });
    child.stdin.on('error', () => {}); // kubectl may exit before reading its input
    child.stdin.end(opts.input ?? '');
  });
}

/** GET /metrics of kube-apiserver, as admin (Prometheus text). */
export async function apiserverMetrics(): Promise<string> {
  const kc = adminKubeConfig();
  const server = kc.getCurrentCluster()?.server;
  if (!server) throw new Error('the admin context has no cluster');
  const opts: https.RequestOptions = { timeout: 30_000 };
  await kc.applyToHTTPSOptions(opts);
  return new Promise((resolve, reject) => {
    const req = https.get(new URL('/metrics', server), opts, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`GET /metrics: HTTP ${res.statusCode}: ${body.slice(0, 300)}`))));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('GET /metrics timed out')));
    req.on('error', reject);
  });
}

function statusCode(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
}
