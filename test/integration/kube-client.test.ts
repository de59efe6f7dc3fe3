/** KubeClient against a real API server: verbs, patches, preconditions, subresources, errors. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KubeClient, type Verb } from '../../src/kube/client.ts';
import { isAlreadyExists, isConflict, isForbidden, isInvalid, isNotFound, KubeApiError } from '../../src/kube/errors.ts';
import { CONFIG_MAPS, NAMESPACES, SECRETS, SERVICE_ACCOUNTS, TOKEN_REVIEWS, type KubeObject } from '../../src/kube/resources.ts';
import { adminKubeConfig, createTestNamespace, userKubeConfig } from './support/cluster.ts';

interface ConfigMap extends KubeObject {
  data?: Record<string, string>;
}

const requests: { verb: Verb; resource: string; code: number }[] = [];
let client: KubeClient;
let ns: string;

beforeAll(async () => {
  client = new KubeClient(adminKubeConfig(), { onRequest: (verb, resource, code) => requests.push({ verb, resource, code }) });
  ns = await createTestNamespace('kube-client');
});

afterAll(async () => {
  await client?.close();
});

async function errorOf(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected the call to fail');
}

describe('KubeClient', () => {
  it('creates, gets, lists with selectors, replaces and deletes', async () => {
    const created = await client.create<ConfigMap>(CONFIG_MAPS, ns, { metadata: { name: 'one', labels: { app: 'x' } }, data: { a: '1' } });
    expect(created.metadata?.uid).toBeTruthy();
    expect(created.kind).toBe('ConfigMap');
    await client.create<ConfigMap>(CONFIG_MAPS, ns, { metadata: { name: 'two', labels: { app: 'y' } } });

    const got = await client.get<ConfigMap>(CONFIG_MAPS, ns, 'one');
    expect(got.data).toEqual({ a: '1' });

    const listed = await client.list<ConfigMap>(CONFIG_MAPS, ns, { labelSelector: 'app=x' });
    expect(listed.items.map((i) => i.metadata?.name)).toEqual(['one']);
    expect(listed.items[0]?.apiVersion).toBe('v1');
    expect(listed.resourceVersion).toMatch(/^\d+$/);

    const paged = await client.list<ConfigMap>(CONFIG_MAPS, ns, { limit: 1, fieldSelector: 'metadata.name!=kube-root-ca.crt' });
    expect(paged.items.map((i) => i.metadata?.name).sort()).toEqual(['one', 'two']);

    const replaced = await client.replace<ConfigMap>(CONFIG_MAPS, ns, 'one', { ...got, data: { a: '2' } });
    expect(replaced.data).toEqual({ a: '2' });
    const managers = (replaced.metadata as { managedFields?: { manager?: string }[] }).managedFields?.map((f) => f.manager);
    expect(managers).toContain('tokenwarden');

    await client.delete(CONFIG_MAPS, ns, 'two');
    expect(isNotFound(await errorOf(client.get(CONFIG_MAPS, ns, 'two')))).toBe(true);
  });

  it('transforms each item of a paged list as its page arrives, and lists metadata only on request', async () => {
    const sub = await createTestNamespace('kube-client-pages');
    for (const name of ['p1', 'p2', 'p3']) await client.create<ConfigMap>(CONFIG_MAPS, sub, { metadata: { name, labels: { page: 'yes' } }, data: { big: 'x'.repeat(1000) } });
    const seen: string[] = [];
    const before = requests.length;
    const slim = await client.list<ConfigMap>(CONFIG_MAPS, sub, {
      labelSelector: 'page=yes',
      limit: 1,
      transform: (o) => {
        seen.push(`${o.metadata?.name}@${requests.length - before}`);
        return { metadata: { name: o.metadata?.name } };
      },
    });
    expect(slim.items).toEqual([{ metadata: { name: 'p1' } }, { metadata: { name: 'p2' } }, { metadata: { name: 'p3' } }]);
    // Each item was transformed after its own page came back and before the next page was asked for.
    expect(seen).toEqual(['p1@1', 'p2@2', 'p3@3']);
    const meta = await client.list<ConfigMap>(CONFIG_MAPS, sub, { labelSelector: 'page=yes', metadataOnly: true });
    expect(meta.items.map((o) => o.metadata?.name)).toEqual(['p1', 'p2', 'p3']);
    expect(meta.items.every((o) => o.data === undefined && /^\d+$/.test(o.metadata?.resourceVersion ?? '') && o.metadata?.uid)).toBe(true);
    expect(meta.items[0]?.kind).toBe('ConfigMap');
  });

  it('sends every request and watch over one shared connection', async () => {
    const shared = new KubeClient(adminKubeConfig(), { maxConnections: 2 });
    try {
      const watches = Array.from({ length: 8 }, () => shared.watch(CONFIG_MAPS, ns, { timeoutSeconds: 60 }, () => undefined, () => undefined));
      await Promise.all(Array.from({ length: 20 }, () => shared.list(CONFIG_MAPS, ns)));
      const stats = shared.connectionStats();
      // HTTP/2: eight watches and twenty lists on one connection; the bound of 2 is never reached.
      expect(stats.connected).toBe(1);
      expect(stats.running).toBe(8);
      for (const w of watches) w.abort();
    } finally {
      await shared.close();
    }
  });

  it('classifies conflicts, already-exists and invalid objects', async () => {
    const cm = await client.create<ConfigMap>(CONFIG_MAPS, ns, { metadata: { name: 'conflict' } });
    await client.patch(CONFIG_MAPS, ns, 'conflict', { data: { b: '1' } });
    const stale = await errorOf(client.replace(CONFIG_MAPS, ns, 'conflict', { ...cm, data: { c: '1' } }));
    expect(stale).toBeInstanceOf(KubeApiError);
    expect(isConflict(stale)).toBe(true);
    expect((stale as KubeApiError).message).toMatch(/^PUT \/api\/v1\/namespaces\/.+\/configmaps\/conflict\?fieldManager=tokenwarden: 409 Conflict: /);

    const dup = await errorOf(client.create(CONFIG_MAPS, ns, { metadata: { name: 'conflict' } }));
    expect(isAlreadyExists(dup)).toBe(true);
    expect(isConflict(dup)).toBe(false);

    const invalid = await errorOf(client.create(CONFIG_MAPS, ns, { metadata: { name: 'Not_Valid' } }));
    expect(isInvalid(invalid)).toBe(true);
  });

  it('does not put the request body in errors', async () => {
    const secretValue = 'c3VwZXItc2VjcmV0LXRva2Vu';
    const err = await errorOf(client.create(SECRETS, ns, { metadata: { name: 'Bad_Name' }, data: { token: secretValue } } as KubeObject));
    expect(isInvalid(err)).toBe(true);
    expect(String((err as Error).message)).not.toContain(secretValue);
    expect(JSON.stringify(err)).not.toContain(secretValue);
  });

  it('patches with merge, json-patch and server-side apply', async () => {
    await client.create<ConfigMap>(CONFIG_MAPS, ns, { metadata: { name: 'patched' }, data: { a: '1' } });
    await client.patch(CONFIG_MAPS, ns, 'patched', { data: { b: '2' } });
    await client.patch(CONFIG_MAPS, ns, 'patched', [{ op: 'remove', path: '/data/a' }], { type: 'json' });
    let got = await client.get<ConfigMap>(CONFIG_MAPS, ns, 'patched');
    expect(got.data).toEqual({ b: '2' });

    await client.patch(CONFIG_MAPS, ns, 'patched', { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'patched' }, data: { c: '3' } }, { type: 'apply', force: true });
    got = await client.get<ConfigMap>(CONFIG_MAPS, ns, 'patched');
    expect(got.data?.c).toBe('3');
  });

  it('deletes only with matching preconditions', async () => {
    const cm = await client.create<ConfigMap>(CONFIG_MAPS, ns, { metadata: { name: 'precond' } });
    const wrong = await errorOf(client.delete(CONFIG_MAPS, ns, 'precond', { preconditions: { uid: '00000000-0000-0000-0000-000000000000' } }));
    expect(isConflict(wrong)).toBe(true);
    await client.delete(CONFIG_MAPS, ns, 'precond', { preconditions: { uid: cm.metadata?.uid, resourceVersion: cm.metadata?.resourceVersion }, propagationPolicy: 'Background' });
    expect(isNotFound(await errorOf(client.get(CONFIG_MAPS, ns, 'precond')))).toBe(true);
  });

  it('deletes a collection by label and field selector, and says how many went', async () => {
    for (const [name, app] of [['dc-1', 'gone'], ['dc-2', 'gone'], ['dc-3', 'kept']] as const) {
      await client.create(CONFIG_MAPS, ns, { metadata: { name, labels: { app, sweep: 'dc' } } });
    }
    const before = requests.length;
    expect(await client.deleteCollection(CONFIG_MAPS, ns, { labelSelector: 'sweep=dc,app in (gone,other)', fieldSelector: 'metadata.name!=dc-9' })).toBe(2);
    expect(requests.slice(before)).toEqual([{ verb: 'deletecollection', resource: 'configmaps', code: 200 }]);
    const left = await client.list<ConfigMap>(CONFIG_MAPS, ns, { labelSelector: 'sweep=dc' });
    expect(left.items.map((i) => i.metadata?.name)).toEqual(['dc-3']);
    expect(await client.deleteCollection(CONFIG_MAPS, ns, { labelSelector: 'sweep=dc,app=gone' })).toBe(0);
  });

  it('writes the status subresource of a namespace', async () => {
    const sub = await createTestNamespace('kube-client-status');
    const patched = await client.patchStatus<KubeObject & { status?: { conditions?: unknown[] } }>(NAMESPACES, undefined, sub, {
      status: { conditions: [{ type: 'tokenwarden.io/Test', status: 'True', reason: 'Test', message: 'm' }] },
    });
    expect(patched.status?.conditions?.length).toBe(1);
    const ns2 = await client.get<KubeObject & { status?: object }>(NAMESPACES, undefined, sub);
    const replaced = await client.replaceStatus(NAMESPACES, undefined, sub, { ...ns2, status: { phase: 'Active' } } as KubeObject);
    expect(replaced.metadata?.name).toBe(sub);
  });

  it('mints a token through the TokenRequest subresource, and reviews it', async () => {
    await client.create(SERVICE_ACCOUNTS, ns, { metadata: { name: 'robot' } });
    const tr = await client.createSubresource<{ status: { token: string; expirationTimestamp: string } }>(SERVICE_ACCOUNTS, ns, 'robot', 'token', {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenRequest',
      spec: { expirationSeconds: 600 },
    });
    expect(tr.status.token.split('.').length).toBe(3);
    const review = await client.create<KubeObject & { status?: { authenticated?: boolean; user?: { username?: string } } }>(TOKEN_REVIEWS, undefined, {
      spec: { token: tr.status.token },
    } as KubeObject);
    expect(review.status?.authenticated).toBe(true);
    expect(review.status?.user?.username).toBe(`system:serviceaccount:${ns}:robot`);
    expect(requests.some((r) => r.verb === 'create' && r.resource === 'serviceaccounts/token' && r.code === 201)).toBe(true);
  });

  it('reports every request to the hook, errors included', () => {
    expect(requests.some((r) => r.verb === 'get' && r.resource === 'configmaps' && r.code === 404)).toBe(true);
    expect(requests.some((r) => r.verb === 'list' && r.code === 200)).toBe(true);
    expect(requests.some((r) => r.verb === 'patch' && r.resource === 'namespaces/status' && r.code === 200)).toBe(true);
  });

  it('classifies forbidden requests of a user without rights', async () => {
    const bob = new KubeClient(userKubeConfig('bob@example.com'));
    try {
      expect(isForbidden(await errorOf(bob.list(SECRETS, ns)))).toBe(true);
    } finally {
      await bob.close();
    }
  });

  it('reports transport failures as retryable KubeApiErrors without response', async () => {
    const kc = adminKubeConfig();
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new Error('no cluster');
    kc.clusters = kc.clusters.map((c) => (c.name === cluster.name ? { ...c, server: 'https://127.0.0.1:1' } : c));
    const dead = new KubeClient(kc, { timeoutMs: 2000 });
    try {
      const err = await errorOf(dead.get(CONFIG_MAPS, ns, 'x'));
      expect(err).toBeInstanceOf(KubeApiError);
      expect((err as KubeApiError).statusCode).toBe(0);
      expect((err as KubeApiError).reason).toBe('NetworkError');
    } finally {
      await dead.close();
    }
  });

  it('ends a watch with onDone once aborted, and delivers events before', async () => {
    const { resourceVersion } = await client.list(CONFIG_MAPS, ns);
    const events: string[] = [];
    let doneWith: Error | undefined | null = null;
    const handle = client.watch<ConfigMap>(CONFIG_MAPS, ns, { resourceVersion, allowWatchBookmarks: true }, (e) => events.push(`${e.type}:${(e.object as ConfigMap).metadata?.name}`), (err) => (doneWith = err));
    await client.create(CONFIG_MAPS, ns, { metadata: { name: 'watched' } });
    const deadline = Date.now() + 10_000;
    while (!events.includes('ADDED:watched') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(events).toContain('ADDED:watched');
    handle.abort();
    expect(doneWith).toBeUndefined();
  });
});
