/**
 * Making issuance fail the real way, and counting what the operator sends while it does.
 *
 * A ValidatingAdmissionPolicy (admin-applied, bound to one tier namespace) refuses
 * `serviceaccounts/token` CREATE there. The operator runs as a ServiceAccount of its own
 * (support/writes.ts), and a FlowSchema that matches only that identity's TokenRequests counts them
 * in kube-apiserver's apiserver_flowcontrol_dispatched_requests_total.
 */
import { waitFor } from '../../support/cluster.ts';
import { R, kube, request, resourcePath } from '../../support/operator.ts';
import { createRefusalPolicy, removeRefusalPolicy } from './refusal-policy.ts';
import { countedIdentity, countedRequests, type CountedIdentity } from '../../support/writes.ts';


export interface TokenRequestCounter {
  identity: CountedIdentity;
  /** TokenRequests the identity sent since kube-apiserver started. */
  tokenRequests(): Promise<number>;
}

/** countedIdentity(prefix), plus a FlowSchema of its own counting that identity's TokenRequests. */
export async function countedTokenRequests(prefix: string): Promise<TokenRequestCounter> {
  const identity = await countedIdentity(prefix);
  const tokenRequests = await countedRequests(identity, `${prefix}-token-requests`, { verbs: ['create'], resources: ['serviceaccounts/token'] });
  return { identity, tokenRequests };
}

/** Refusals of one test file: refuse(), allow(), and allowAll() for its afterAll. */
export function tokenRequestRefusals(prefix: string) {
  const active = new Map<string, string>();
  let made = 0;

  /** An admin's TokenRequest in `namespace`: undefined when allowed, the error when refused. */
  async function probe(namespace: string): Promise<string | undefined> {
    const name = `${prefix}-probe`;
    if ((await kube.tryGet(R.serviceAccount, namespace, name)) === null) {
      await kube.create(R.serviceAccount, namespace, { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name } }).catch(() => undefined);
    }
    try {
      await request('POST', resourcePath(R.serviceAccount, namespace, name, 'token'), { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { expirationSeconds: 600 } });
      return undefined;
    } catch (err) {
      return String(err);
    }
  }

  return {
    /** A policy refusing every TokenRequest in `namespace`, in effect when this returns. Returns its name. */
    async refuse(namespace: string, message: string): Promise<string> {
      const name = `${prefix}-refuse-${made++}`;
      await createRefusalPolicy({ name, namespace, operation: 'CREATE', resource: 'serviceaccounts/token', allowIf: 'false', message });
      active.set(name, namespace);
      // In effect once the admin's own TokenRequest in that namespace is refused (the policy is
      // compiled asynchronously after the create).
      await waitFor(async () => ((await probe(namespace))?.includes(message) ? true : undefined), {
        timeoutMs: 30_000,
        description: `the policy ${name} refusing TokenRequests in ${namespace}`,
      });
      return name;
    },

    /** Removes the policy; with `settled`, returns once the admin's own TokenRequest there passes again. */
    async allow(name: string, opts: { settled?: boolean } = {}): Promise<void> {
      const namespace = active.get(name);
      await removeRefusalPolicy(name);
      active.delete(name);
      if (opts.settled && namespace !== undefined) {
        await waitFor(async () => ((await probe(namespace)) === undefined ? true : undefined), {
          timeoutMs: 30_000,
          intervalMs: 100,
          description: `TokenRequests in ${namespace} allowed again after removing ${name}`,
        });
      }
    },

    async allowAll(): Promise<void> {
      for (const name of [...active.keys()]) {
        await removeRefusalPolicy(name);
        active.delete(name);
      }
    },
  };
}
