import type { z } from 'zod';
import { GROUP } from './common.ts';
import { ServiceAccountClientSpec, ServiceAccountClientStatus } from './service-account-client.ts';
import { TenantBindingSpec, TenantBindingStatus } from './tenant-binding.ts';
import { TierSpec, TierStatus } from './tier.ts';

/** How each kind is served: names, scope and what `kubectl get` shows. CRDs are generated from this. */
export interface KindDefinition {
  kind: string;
  plural: string;
  singular: string;
  scope: 'Cluster' | 'Namespaced';
  shortNames: string[];
  categories: string[];
  spec: z.ZodType;
  specName: string;
  status: z.ZodType;
  statusName: string;
  printerColumns: PrinterColumn[];
}

export interface PrinterColumn {
  name: string;
  type: 'string' | 'integer' | 'boolean' | 'date' | 'number';
  jsonPath: string;
  description: string;
  priority?: number;
}

const ready: PrinterColumn = {
  name: 'Ready',
  type: 'string',
  jsonPath: '.status.conditions[?(@.type=="Ready")].status',
  description: 'Whether the object is reconciled',
};
const age: PrinterColumn = { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp', description: 'Age' };

export const KINDS: KindDefinition[] = [
  {
    kind: 'Tier',
    plural: 'tiers',
    singular: 'tier',
    scope: 'Cluster',
    shortNames: [],
    categories: ['tokenwarden'],
    spec: TierSpec,
    specName: 'TierSpec',
    status: TierStatus,
    statusName: 'TierStatus',
    printerColumns: [
      { name: 'Level', type: 'integer', jsonPath: '.spec.level', description: 'Rank of the tier' },
      { name: 'Default', type: 'boolean', jsonPath: '.spec.default', description: 'Given to subjects that match no tier' },
      { name: 'Namespace', type: 'string', jsonPath: '.status.namespace', description: 'Namespace of the tier' },
      { name: 'Clients', type: 'integer', jsonPath: '.status.clients', description: 'Clients resolved to the tier' },
      ready,
      age,
    ],
  },
  {
    kind: 'TenantBinding',
    plural: 'tenantbindings',
    singular: 'tenantbinding',
    scope: 'Namespaced',
    shortNames: ['tb'],
    categories: ['tokenwarden'],
    spec: TenantBindingSpec,
    specName: 'TenantBindingSpec',
    status: TenantBindingStatus,
    statusName: 'TenantBindingStatus',
    printerColumns: [
      { name: 'Tier', type: 'string', jsonPath: '.spec.tierRef.name', description: 'The Tier granted' },
      { name: 'Subjects', type: 'string', jsonPath: '.spec.subjects[*].name', description: 'Users and groups granted' },
      { name: 'Clients', type: 'integer', jsonPath: '.status.clients', description: 'Clients bound through this binding' },
      ready,
      age,
    ],
  },
  {
    kind: 'ServiceAccountClient',
    plural: 'serviceaccountclients',
    singular: 'serviceaccountclient',
    scope: 'Namespaced',
    shortNames: ['sac'],
    categories: ['tokenwarden'],
    spec: ServiceAccountClientSpec,
    specName: 'ServiceAccountClientSpec',
    status: ServiceAccountClientStatus,
    statusName: 'ServiceAccountClientStatus',
    printerColumns: [
      { name: 'Subject', type: 'string', jsonPath: '.spec.subject.user', description: 'The user tokens are issued for' },
      { name: 'Tier', type: 'string', jsonPath: '.status.tier', description: 'The tier the client resolved to' },
      ready,
      {
        name: 'Reason',
        type: 'string',
        jsonPath: '.status.conditions[?(@.type=="Ready")].reason',
        description: 'Why Ready is what it is (IssuanceFailed, RenewalFailed, ...)',
      },
      // A string, not a date: kubectl renders future dates as "<invalid>".
      { name: 'Expires', type: 'string', jsonPath: '.status.expiresAt', description: 'When the newest token expires' },
      { name: 'Secret', type: 'string', jsonPath: '.status.secretName', description: 'Secret holding the token' },
      age,
      {
        name: 'Status',
        type: 'string',
        jsonPath: '.status.conditions[?(@.type=="Ready")].message',
        description: 'The Ready message',
        priority: 1,
      },
      {
        name: 'ServiceAccount',
        type: 'string',
        jsonPath: '.status.serviceAccount.name',
        description: 'The per-user ServiceAccount',
        priority: 1,
      },
    ],
  },
];

export const crdName = (def: KindDefinition): string => `${def.plural}.${GROUP}`;
