/**
 * Acting as the test users (alice, bob, mallory) and other identities through their own credentials,
 * never as admin: a REST client that answers with the HTTP status instead of throwing, and the
 * admin's side of giving a user a role (bound, then waited for until the authorizer sees it).
 */
import https from 'node:https';
import type { KubeConfig } from '@kubernetes/client-node';
import { userKubeConfig, waitFor } from './cluster.ts';
import { adminRequest } from './crds.ts';
import { R, kube, resourcePath, type KObject, type ResourceType } from './operator.ts';

export interface Answer<T = KObject> {
  code: number;
  body: T & { message?: string };
}

/** A REST client with the credentials of `kc`'s current context: answers, never throws on an HTTP status. */
export function restAs(kc: KubeConfig) {
  const server = kc.getCurrentCluster()?.server;
  if (!server) throw new Error('no cluster in the kubeconfig');
  const send = async <T>(method: string, urlPath: string, body?: unknown, contentType = 'application/json'): Promise<Answer<T>> => {
    const opts: https.RequestOptions = { method, timeout: 30_000, headers: { Accept: 'application/json', 'Content-Type': contentType } };
    await kc.applyToHTTPSOptions(opts);
    return new Promise((resolve, reject) => {
      const req = https.request(new URL(urlPath, server), opts, (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (d: string) => (text += d));
        res.on('end', () => resolve({ code: res.statusCode ?? 0, body: (text ? JSON.parse(text) : {}) as T & { message?: string } }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(body === undefined ? undefined : JSON.stringify(body));
    });
  };
  return {
    get: <T = KObject>(type: ResourceType, namespace: string | undefined, name?: string) => send<T>('GET', resourcePath(type, namespace, name)),
    create: <T = KObject>(type: ResourceType, namespace: string | undefined, body: unknown) => send<T>('POST', resourcePath(type, namespace), body),
    /** A POST to a URL of its own, e.g. a subresource. */
    post: <T = KObject>(urlPath: string, body: unknown) => send<T>('POST', urlPath, body),
    patch: <T = KObject>(type: ResourceType, namespace: string | undefined, name: string, patch: unknown) =>
      send<T>('PATCH', resourcePath(type, namespace, name), patch, 'application/merge-patch+json'),
    remove: <T = KObject>(type: ResourceType, namespace: string | undefined, name: string) => send<T>('DELETE', resourcePath(type, namespace, name)),
    /** A deletecollection of the objects matching `labelSelector`. */
    deleteAll: <T = KObject>(type: ResourceType, namespace: string, labelSelector: string) =>
      send<T>('DELETE', `${resourcePath(type, namespace)}?labelSelector=${encodeURIComponent(labelSelector)}`),
  };
}
export type Rest = ReturnType<typeof restAs>;

/** A test user (its kubeconfig context of that exact name, e.g. `alice@example.com`). */
export const asUser = (user: string): Rest => restAs(userKubeConfig(user));

/** Whether the authorizer allows `user` (with `groups`) the attributes: RBAC changes reach it by watch. */
export async function userMay(user: string, attrs: Record<string, string>, groups: string[] = []): Promise<boolean> {
  const res = await adminRequest<{ status?: { allowed?: boolean } }>('POST', '/apis/authorization.k8s.io/v1/subjectaccessreviews', {
    apiVersion: 'authorization.k8s.io/v1',
    kind: 'SubjectAccessReview',
    spec: { user, groups: [...groups, 'system:authenticated'], resourceAttributes: attrs },
  });
  return res.body.status?.allowed === true;
}

/** Admin: the built-in `edit` in `namespace` for `user`, once the authorizer says so. */
export async function grantEdit(namespace: string, user: string): Promise<void> {
  await kube.create(R.roleBinding, namespace, {
    metadata: { name: `${user.split('@')[0]}-edit` },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'edit' },
    subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: user }],
  });
  await waitFor(() => userMay(user, { verb: 'create', group: 'tokenwarden.io', resource: 'serviceaccountclients', namespace }), {
    timeoutMs: 15_000,
    description: `${user} may create clients in ${namespace}`,
  });
}
