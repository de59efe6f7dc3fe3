/**
 * An admin's ValidatingAdmissionPolicy and its binding refusing some requests in one namespace: the
 * real way to make the API server refuse the operator (TokenRequests, bulk deletes). Both objects are
 * tracked for cleanup (support/operator.ts trackClusterObject); removeRefusalPolicy lifts it early.
 */
import { kube, trackClusterObject, type ResourceType } from '../../support/operator.ts';

const VAP: ResourceType = { group: 'admissionregistration.k8s.io', version: 'v1', plural: 'validatingadmissionpolicies', namespaced: false };
const VAP_BINDING: ResourceType = { group: 'admissionregistration.k8s.io', version: 'v1', plural: 'validatingadmissionpolicybindings', namespaced: false };

type Operation = 'CREATE' | 'UPDATE' | 'DELETE';

export interface RefusalPolicy {
  name: string;
  namespace: string;
  /** The request it matches, as a matchConstraints resourceRule (apiGroups and apiVersions of the core group). */
  operation: Operation | Operation[];
  resource: string;
  /** Refused unless true (CEL); 'false' refuses every match. */
  allowIf: string;
  /** The API group of `resource` (default the core group ''). */
  apiGroup?: string;
  message: string;
}

/** Creates the policy and its binding; in effect once the API server has compiled it (probe that). */
export async function createRefusalPolicy(p: RefusalPolicy): Promise<void> {
  await kube.create(VAP, undefined, {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'ValidatingAdmissionPolicy',
    metadata: { name: p.name },
    spec: {
      failurePolicy: 'Fail',
      matchConstraints: { resourceRules: [{ apiGroups: [p.apiGroup ?? ''], apiVersions: [p.apiGroup ? '*' : 'v1'], operations: Array.isArray(p.operation) ? p.operation : [p.operation], resources: [p.resource] }] },
      validations: [{ expression: p.allowIf, message: p.message, reason: 'Forbidden' }],
    },
  });
  trackClusterObject(VAP, p.name);
  await kube.create(VAP_BINDING, undefined, {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'ValidatingAdmissionPolicyBinding',
    metadata: { name: p.name },
    spec: { policyName: p.name, validationActions: ['Deny'], matchResources: { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': p.namespace } } } },
  });
  trackClusterObject(VAP_BINDING, p.name);
}

/** Removes the policy and its binding; already gone is fine. */
export async function removeRefusalPolicy(name: string): Promise<void> {
  await kube.remove(VAP_BINDING, undefined, name).catch(() => undefined);
  await kube.remove(VAP, undefined, name).catch(() => undefined);
}
