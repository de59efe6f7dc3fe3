/**
 * vitest globalSetup of the integration project: one real control plane per test run, in a temp
 * folder, stopped at the end. Test files reach it through inject() (see cluster.ts).
 *
 * TOKENWARDEN_TEST_KUBECONFIG=path  use that cluster instead and start nothing.
 * TOKENWARDEN_KEEP_CONTROLPLANE=1   keep the temp folder (state and logs) after the run.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { TestProject } from 'vitest/node';
import { KubeConfig } from '@kubernetes/client-node';
import { startControlPlane, type Component } from '../../controlplane/launcher.ts';

export interface ProvidedControlPlane {
  /** True when TOKENWARDEN_TEST_KUBECONFIG points at a cluster this run did not start. */
  external: boolean;
  server: string;
  kubeconfigPath: string;
  /** Empty for an external cluster. */
  stateDir: string;
  logDir: string;
  binDir: string;
  /** The kubectl to run against this cluster. */
  kubectlPath: string;
  /** Pids at startup (kube-apiserver's changes if a test restarts it; launcher.attachControlPlane reads them live). */
  pids: Record<Component, number> | null;
}

declare module 'vitest' {
  export interface ProvidedContext {
    kubeconfigPath: string;
    controlPlane: ProvidedControlPlane;
  }
}

export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  const external = process.env.TOKENWARDEN_TEST_KUBECONFIG;
  if (external) {
    const kubeconfigPath = path.resolve(external);
    const binDir = spawnSync('bash', [fileURLToPath(new URL('../../controlplane/build.sh', import.meta.url)), '--dir'], { encoding: 'utf8' }).stdout.trim();
    // No build for an external cluster: the built kubectl if there is one, else TOKENWARDEN_KUBECTL or PATH's.
    const kubectlPath = process.env.TOKENWARDEN_KUBECTL
      ?? (fs.existsSync(path.join(binDir, 'kubectl')) ? path.join(binDir, 'kubectl') : 'kubectl');
    project.provide('kubeconfigPath', kubeconfigPath);
    project.provide('controlPlane', {
      external: true, server: currentServer(kubeconfigPath), kubeconfigPath, stateDir: '', logDir: '', binDir, kubectlPath, pids: null,
    });
    console.error(`[controlplane] using the cluster of TOKENWARDEN_TEST_KUBECONFIG=${kubeconfigPath}`);
    return undefined;
  }

  const root = await fsp.mkdtemp(path.join(os.tmpdir(), 'tokenwarden-it-'));
  // On failure the folder stays for the post-mortem (the error names the log file); nothing runs.
  const cp = await startControlPlane({ stateDir: path.join(root, 'state'), logDir: path.join(root, 'logs') });
  project.provide('kubeconfigPath', cp.kubeconfigPath);
  project.provide('controlPlane', {
    external: false,
    server: cp.server,
    kubeconfigPath: cp.kubeconfigPath,
    stateDir: cp.stateDir,
    logDir: cp.logDir,
    binDir: cp.binDir,
    kubectlPath: path.join(cp.binDir, 'kubectl'),
    pids: cp.pids,
  });

  return async () => {
    await cp.stop();
    if (process.env.TOKENWARDEN_KEEP_CONTROLPLANE) console.error(`[controlplane] kept ${root}`);
    else await fsp.rm(root, { recursive: true, force: true });
  };
}

function currentServer(kubeconfigPath: string): string {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfigPath);
  return kc.getCurrentCluster()?.server ?? '';
}
