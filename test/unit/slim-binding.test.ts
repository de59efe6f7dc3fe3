/**
 * src/operator.ts slimBinding, the transform of the RoleBinding and ClusterRoleBinding informers:
 * they are selected by tokenwarden's label, which a namespace admin may put on a binding of hers, so
 * each keeps only the two labels, the roleRef and a subject of the one shape the operator writes.
 */
import { describe, expect, it } from 'vitest';
import { slimBinding } from '../../src/operator.ts';
import type { Binding } from '../../src/reconcilers/context.ts';
import { dictionaryObjects } from './support/v8-shape.ts';

const GROUP = { kind: 'Group', apiGroup: 'rbac.authorization.k8s.io', name: 'system:serviceaccounts:tokenwarden-tier-free' };

function binding(extra: Partial<Binding> = {}): Binding {
  return {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'RoleBinding',
    metadata: {
      name: 'tokenwarden-tier-free-model-user',
      namespace: 'models',
      uid: 'u1',
      resourceVersion: '7',
      labels: { 'app.kubernetes.io/managed-by': 'tokenwarden', 'tokenwarden.io/tier': 'free', team: 'x'.repeat(60) },
      annotations: { note: 'y'.repeat(250_000) },
      managedFields: [{ manager: 'kubectl' }],
    } as Binding['metadata'],
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'model-user' },
    subjects: [GROUP],
    ...extra,
  };
}

describe('slimBinding', () => {
  it('keeps what the tier reconciler compares and nothing else', () => {
    const slim = slimBinding(binding());
    expect(slim.metadata?.labels).toEqual({ 'app.kubernetes.io/managed-by': 'tokenwarden', 'tokenwarden.io/tier': 'free' });
    expect(slim.metadata?.annotations).toBeUndefined();
    expect(slim.roleRef).toEqual({ apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'model-user' });
    // Compared with JSON.stringify against what the operator writes: the same keys in the same order.
    expect(JSON.stringify(slim.subjects)).toBe(JSON.stringify([GROUP]));
    expect(JSON.stringify(slim).length).toBeLessThan(800);
  });

  it('drops subjects of any other shape, so they compare unequal whatever their size', () => {
    const many = Array.from({ length: 5000 }, (_, i) => ({ kind: 'User', apiGroup: 'rbac.authorization.k8s.io', name: `u${i}` }));
    for (const subjects of [many, [GROUP, GROUP], [{ ...GROUP, kind: 'User' }], [{ ...GROUP, name: 'g'.repeat(100_000) }], [{ kind: 'ServiceAccount', name: 'x', namespace: 'ns' }]]) {
      const slim = slimBinding(binding({ subjects }));
      expect(slim.subjects).toEqual([]);
      expect(JSON.stringify(slim).length).toBeLessThan(800);
    }
  });

  it('builds the cached object whole (no V8 dictionaries)', () => {
    expect(dictionaryObjects(slimBinding(binding()))).toEqual([]);
  });
});
