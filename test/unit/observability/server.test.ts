import http from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { formatBindAddress, parseBindAddress } from '../../../src/observability/address.ts';
import { createMetrics } from '../../../src/observability/metrics.ts';
import { startObservability, startObservabilityServer, type ObservabilityServer } from '../../../src/observability/server.ts';
import { createLogger } from '../../../src/controller/logger.ts';

const local = { host: '127.0.0.1', port: 0 };
const started: { close(timeoutMs?: number): Promise<void> }[] = [];

afterEach(async () => {
  await Promise.all(started.splice(0).map((s) => s.close(0)));
});

async function start(opts: Omit<Parameters<typeof startObservabilityServer>[0], 'address'>): Promise<ObservabilityServer> {
  const server = await startObservabilityServer({ address: local, ...opts });
  started.push(server);
  return server;
}

function get(url: string, method = 'GET', agent?: http.Agent): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, agent }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('parseBindAddress', () => {
  it('takes controller-runtime\'s forms', () => {
    expect(parseBindAddress(':8080')).toEqual({ host: undefined, port: 8080 });
    expect(parseBindAddress('127.0.0.1:0')).toEqual({ host: '127.0.0.1', port: 0 });
    expect(parseBindAddress('[::1]:9090')).toEqual({ host: '::1', port: 9090 });
    expect(parseBindAddress('localhost:8081')).toEqual({ host: 'localhost', port: 8081 });
    expect(parseBindAddress('0')).toBeNull();
  });

  it('refuses anything else with a reason', () => {
    expect(() => parseBindAddress('8080')).toThrow(/host:port/);
    expect(() => parseBindAddress(':65536')).toThrow(/port/);
    expect(() => parseBindAddress(':http')).toThrow(/port/);
    expect(() => parseBindAddress('::1:8080')).toThrow(/brackets/);
    expect(() => parseBindAddress('[1.2.3.4]:80')).toThrow(/IPv6/);
    expect(() => parseBindAddress('a b:80')).toThrow(/host name/);
  });

  it('formats back', () => {
    for (const text of [':8080', '127.0.0.1:0', '[::1]:9090', '0']) expect(formatBindAddress(parseBindAddress(text))).toBe(text);
  });
});

describe('startObservabilityServer', () => {
  it('serves the registry on /metrics in Prometheus text format', async () => {
    const metrics = createMetrics({ processMetrics: false });
    metrics.tokens.issued('gold');
    const server = await start({ registry: metrics.registry });
    const res = await get(`${server.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toContain('text/plain; version=0.0.4');
    expect(res.body).toContain('tokenwarden_tokens_issued_total{tier="gold"} 1');
    expect((await get(`${server.url}/metrics?name[]=x`)).status).toBe(200);
    // Probes are not served here.
    expect((await get(`${server.url}/healthz`)).status).toBe(404);
  });

  it('answers /healthz always and /readyz per ready()', async () => {
    let ready = false;
    const server = await start({ ready: () => ready });
    expect((await get(`${server.url}/healthz`)).status).toBe(200);
    expect((await get(`${server.url}/readyz`)).status).toBe(503);
    ready = true;
    expect((await get(`${server.url}/readyz`)).status).toBe(200);
    expect((await get(`${server.url}/metrics`)).status).toBe(404);
  });

  it('serves no other path and only GET and HEAD', async () => {
    const server = await start({ registry: createMetrics({ processMetrics: false }).registry, ready: () => true });
    for (const path of ['/', '/metrics/', '/healthz/ping', '/readyz/x', '/debug/pprof']) expect((await get(`${server.url}${path}`)).status, path).toBe(404);
    const post = await get(`${server.url}/metrics`, 'POST');
    expect(post.status).toBe(405);
    expect(post.headers.allow).toBe('GET, HEAD');
    const head = await get(`${server.url}/healthz`, 'HEAD');
    expect(head.status).toBe(200);
    expect(head.body).toBe('');
  });

  it('answers 500 when collecting fails, and keeps serving', async () => {
    const metrics = createMetrics({ processMetrics: false });
    metrics.attachCaches({
      tiers: { list: () => [] },
      clients: {
        list: () => {
          throw new Error('boom');
        },
      },
    });
    const server = await start({ registry: metrics.registry, ready: () => true, logger: createLogger({ level: 'silent' }) });
    expect((await get(`${server.url}/metrics`)).status).toBe(500);
    expect((await get(`${server.url}/healthz`)).status).toBe(200);
  });

  it('closes gracefully, even with a keep-alive connection open', async () => {
    const server = await startObservabilityServer({ address: local, ready: () => true });
    const agent = new http.Agent({ keepAlive: true });
    expect((await get(`${server.url}/healthz`, 'GET', agent)).status).toBe(200);
    const t0 = Date.now();
    await server.close(5_000);
    expect(Date.now() - t0).toBeLessThan(1_000);
    await expect(get(`${server.url}/healthz`)).rejects.toThrow();
    agent.destroy();
  });

  it('fails to start on a port in use', async () => {
    const first = await start({ ready: () => true });
    await expect(startObservabilityServer({ address: { host: '127.0.0.1', port: first.port }, ready: () => true })).rejects.toThrow(/EADDRINUSE/);
  });
});

describe('startObservability', () => {
  const logger = createLogger({ level: 'silent' });
  const registry = () => createMetrics({ processMetrics: false }).registry;

  it('runs metrics and probes on two servers', async () => {
    const o = await startObservability({ metricsAddress: local, healthAddress: local, registry: registry(), ready: () => true, logger });
    started.push(o);
    expect(o.servers).toHaveLength(2);
    const [m, h] = o.servers as [ObservabilityServer, ObservabilityServer];
    expect((await get(`${m.url}/metrics`)).status).toBe(200);
    expect((await get(`${m.url}/healthz`)).status).toBe(404);
    expect((await get(`${h.url}/readyz`)).status).toBe(200);
    expect((await get(`${h.url}/metrics`)).status).toBe(404);
  });

  it('uses one server when both addresses are the same', async () => {
    const probe = await startObservabilityServer({ address: local });
    const port = probe.port;
    await probe.close(0);
    const address = { host: '127.0.0.1', port };
    const o = await startObservability({ metricsAddress: address, healthAddress: address, registry: registry(), ready: () => false, logger });
    started.push(o);
    expect(o.servers).toHaveLength(1);
    expect((await get(`http://127.0.0.1:${port}/metrics`)).status).toBe(200);
    expect((await get(`http://127.0.0.1:${port}/readyz`)).status).toBe(503);
  });

  it('starts nothing when both are disabled, and cleans up when one fails', async () => {
    const none = await startObservability({ metricsAddress: null, healthAddress: null, registry: registry(), ready: () => true, logger });
    expect(none.servers).toEqual([]);
    const busy = await start({ ready: () => true });
    await expect(
      startObservability({ metricsAddress: local, healthAddress: { host: '127.0.0.1', port: busy.port }, registry: registry(), ready: () => true, logger }),
    ).rejects.toThrow(/cannot serve metrics\/health probes: .*EADDRINUSE/);
  });
});
