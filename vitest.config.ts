import { defineConfig } from 'vitest/config';

// The fault suite (test/faults, `make test-faults`) is long and restarts the control plane, so it is
// a project only when asked for by name (`vitest run --project faults`): a plain `vitest run`
// (`make test`) does not know it. The check is on argv because vitest runs every configured project
// unless --project filters them.
const requested = (name: string) => process.argv.some((arg, i, argv) => arg === `--project=${name}` || (arg === '--project' && argv[i + 1] === name));
const faultsRequested = requested('faults');
// The e2e test (test/e2e, `make test-e2e`) needs a real node that the Makefile brings up first.
const e2eRequested = requested('e2e');

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          environment: 'node',
          // Projects with different worker limits must run as separate groups: unit tests first.
          sequence: { groupOrder: 0 },
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          environment: 'node',
          // One real control plane per test run; each test file works in namespaces of its own.
          globalSetup: ['test/integration/support/global-setup.ts'],
          testTimeout: 120_000,
          hookTimeout: 180_000,
          // Two cores: more parallel files than that only makes the API server the bottleneck.
          maxWorkers: 2,
          sequence: { groupOrder: 1 },
        },
      },
      ...(faultsRequested
        ? [
            {
              test: {
                name: 'faults',
                include: ['test/faults/**/*.test.ts'],
                environment: 'node',
                // Its own control plane, started the same way as the integration tests'.
                globalSetup: ['test/integration/support/global-setup.ts'],
                testTimeout: 20 * 60_000,
                hookTimeout: 5 * 60_000,
                // One file at a time: a file restarts kube-apiserver and etcd under everything running.
                maxWorkers: 1,
                fileParallelism: false,
                sequence: { groupOrder: 2 },
              },
            },
          ]
        : []),
      ...(e2eRequested
        ? [
            {
              test: {
                name: 'e2e',
                include: ['test/e2e/**/*.test.ts'],
                environment: 'node',
                testTimeout: 120_000,
                hookTimeout: 120_000,
                maxWorkers: 1,
                fileParallelism: false,
                sequence: { groupOrder: 3 },
              },
            },
          ]
        : []),
    ],
  },
});
