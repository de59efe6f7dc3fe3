/**
 * A corrupt answer from the API server must not put its content into an error: the errors of the
 * cluster edge end up in log lines, and a TokenRequest answer or a Secret in a watch holds a token.
 * V8's SyntaxError quotes the text it failed on, which is what this guards against.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KubeClient } from '../../../src/kube/client.ts';
import { parseJson } from '../../../src/kube/errors.ts';
import { SECRETS, SERVICE_ACCOUNTS } from '../../../src/kube/resources.ts';

const TOKEN = 'eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LWNsYWltcw.do-not-leak-this-signature';
/** The token left unquoted, as a broken encoder or proxy might: V8's message then quotes it. */
const CORRUPT_TOKEN_REQUEST = `{"kind":"TokenRequest","status":{"token":${TOKEN}}}`;
const CORRUPT_WATCH_LINE = `{"type":"ADDED","object":{"kind":"Secret","data":{"token":${TOKEN}}}}\n`;

let server: http.Server;
let client: KubeClient;

beforeAll(async () => {
  server = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(req.url?.includes('watch=') ? CORRUPT_WATCH_LINE : CORRUPT_TOKEN_REQUEST);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'c', server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, skipTLSVerify: true }],
    users: [{ name: 'u' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  client = new KubeClient(kc);
});

afterAll(async () => {
  await client.close();
  await new Promise((resolve) => server.close(resolve));
});

describe('errors from answers that are not JSON never quote them', () => {
  it('JSON.parse itself would quote the token (what the guard is for)', () => {
    expect(() => JSON.parse(CORRUPT_TOKEN_REQUEST)).toThrow(/eyJhbGci/);
  });

  it('parseJson names the request and the size only', () => {
    expect(() => parseJson(CORRUPT_TOKEN_REQUEST, 'POST /x')).toThrow(`POST /x: the answer is not valid JSON (${CORRUPT_TOKEN_REQUEST.length} characters)`);
  });

  it('a corrupt TokenRequest answer: the error holds no part of the token', async () => {
    const err = await client.createSubresource(SERVICE_ACCOUNTS, 'ns', 'sa', 'token', { spec: {} }).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err).toBeInstanceOf(Error);
    expect(err?.message).toMatch(/not valid JSON/);
    expect(`${err?.message} ${err?.stack}`).not.toMatch(/eyJhbGci|do-not-leak|c2VjcmV0/);
  });

  it('a corrupt watch line: the watch ends with an error that holds no part of the Secret', async () => {
    const err = await new Promise<Error | undefined>((resolve) => {
      client.watch(SECRETS, undefined, {}, () => undefined, resolve);
    });
    expect(err?.message).toMatch(/not valid JSON/);
    expect(`${err?.message} ${err?.stack}`).not.toMatch(/eyJhbGci|do-not-leak|c2VjcmV0/);
  });
});
