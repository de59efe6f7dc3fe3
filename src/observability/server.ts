/**
 * The metrics and health HTTP server (node:http): GET /metrics, /healthz, /readyz and nothing else.
 *
 * - /metrics: the Registry in Prometheus text format.
 * - /healthz: 200 whenever the process answers at all (its event loop runs).
 * - /readyz: 200 while ready() says so (the caches are synced), 503 otherwise.
 *
 * Like controller-runtime, metrics and probes may be on two addresses; one server can also serve both.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { Logger } from '../controller/logger.ts';
import type { BindAddress } from './address.ts';

export interface ObservabilityServerOptions {
  address: BindAddress;
  /** Serves /metrics when given. */
  registry?: Registry;
  /** Serves /healthz and /readyz when given: /readyz answers 200 while it returns true. */
  ready?: () => boolean;
  logger?: Logger;
}

export interface ObservabilityServer {
  /** The port actually bound (useful with port 0). */
  port: number;
  /** http://host:port, with 127.0.0.1 for "every interface". */
  url: string;
  /** Stops accepting, ends idle keep-alive connections, and after timeoutMs (default 5s) all others. */
  close(timeoutMs?: number): Promise<void>;
}

export async function startObservabilityServer(opts: ObservabilityServerOptions): Promise<ObservabilityServer> {
  const { registry, ready, logger } = opts;
  const server = http.createServer((req, res) => {
    void handle(req, res).catch((err: unknown) => {
      logger?.error({ err: (err as Error).message, path: req.url }, 'metrics/health request failed');
      if (!res.headersSent) reply(res, 500, 'internal error\n');
      else res.destroy();
    });
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  server.keepAliveTimeout = 65_000; // longer than Prometheus' scrape interval default, so it can reuse the connection

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    const route = path === '/metrics' && registry ? 'metrics' : (path === '/healthz' || path === '/readyz') && ready ? path : undefined;
    if (route === undefined) return reply(res, 404, 'not found\n');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      return reply(res, 405, 'method not allowed\n');
    }
    if (route === 'metrics') {
      const body = await (registry as Registry).metrics();
      return reply(res, 200, body, (registry as Registry).contentType);
    }
    if (route === '/healthz') return reply(res, 200, 'ok\n');
    return (ready as () => boolean)() ? reply(res, 200, 'ok\n') : reply(res, 503, 'not ready: caches not synced\n');
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port: opts.address.port, host: opts.address.host }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (err) => logger?.error({ err: err.message }, 'metrics/health server error'));
  const bound = server.address() as AddressInfo;
  const host = opts.address.host === undefined || bound.address === '::' || bound.address === '0.0.0.0' ? '127.0.0.1' : bound.address;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${bound.port}`;

  let closing: Promise<void> | undefined;
  return {
    port: bound.port,
    url,
    close(timeoutMs = 5_000) {
      closing ??= new Promise<void>((resolve) => {
        const timer = setTimeout(() => server.closeAllConnections(), timeoutMs);
        timer.unref();
        server.close(() => {
          clearTimeout(timer);
          resolve();
        });
        server.closeIdleConnections();
      });
      return closing;
    },
  };
}

function reply(res: http.ServerResponse, status: number, body: string, contentType = 'text/plain; charset=utf-8'): void {
  res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

export interface ObservabilityOptions {
  /** --metrics-bind-address; null: no /metrics. */
  metricsAddress: BindAddress | null;
  /** --health-probe-bind-address; null: no /healthz, /readyz. */
  healthAddress: BindAddress | null;
  registry: Registry;
  ready: () => boolean;
  logger: Logger;
}

export interface Observability {
  /** The servers started: one, two, or none when both addresses are "0". */
  servers: ObservabilityServer[];
  close(timeoutMs?: number): Promise<void>;
}

/**
 * Starts the metrics server and the health-probe server; one server for both when the two
 * addresses are the same. Logs "serving metrics" / "serving health probes" with the bound URL.
 */
export async function startObservability(opts: ObservabilityOptions): Promise<Observability> {
  const { metricsAddress, healthAddress, logger } = opts;
  const same = metricsAddress !== null && healthAddress !== null && metricsAddress.port !== 0 && metricsAddress.host === healthAddress.host && metricsAddress.port === healthAddress.port;
  const servers: ObservabilityServer[] = [];
  const close = async (timeoutMs?: number) => {
    await Promise.all(servers.map((s) => s.close(timeoutMs)));
  };
  try {
    if (metricsAddress !== null) {
      const server = await startObservabilityServer({ address: metricsAddress, registry: opts.registry, logger, ...(same ? { ready: opts.ready } : {}) });
      servers.push(server);
      logger.info({ url: `${server.url}/metrics` }, 'serving metrics');
      if (same) logger.info({ url: `${server.url}/healthz` }, 'serving health probes');
    }
    if (healthAddress !== null && !same) {
      const server = await startObservabilityServer({ address: healthAddress, ready: opts.ready, logger });
      servers.push(server);
      logger.info({ url: `${server.url}/healthz` }, 'serving health probes');
    }
  } catch (err) {
    await close(0);
    throw new Error(`cannot serve metrics/health probes: ${(err as Error).message}`, { cause: err });
  }
  return { servers, close };
}
