export * from './common.ts';
export * from './tier.ts';
export * from './tenant-binding.ts';
export * from './service-account-client.ts';
export * from './crds.ts';
