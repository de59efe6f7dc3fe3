/**
 * Restarting parts of the run's control plane from a test worker.
 *
 * kube-apiserver: the launcher's own stopApiServer/startApiServer, on a handle from
 * attachControlPlane(stateDir). etcd: the launcher has no stopEtcd/startEtcd, so this file stops it
 * the way the launcher stops a component (its pid file, checked to be a process of this state
 * folder, SIGTERM or SIGKILL) and starts it again through the handle's start(component), which
 * spawns it with the exact argv of state.json, writes its pid file (the launcher's reaper reads the
 * pid files when it fires, so the new process is cleaned up with the rest) and waits for /health.
 * etcd keeps its data folder, so the cluster comes back with all its objects.
 */
import fs from 'node:fs';
import path from 'node:path';
import { inject } from 'vitest';
import { attachControlPlane, type Component, type ControlPlane } from '../../controlplane/launcher.ts';

/** The launcher's Handle has start(component); the ControlPlane interface does not name it. */
type Handle = ControlPlane & { start(c: Component): Promise<void> };

const log = (line: string): void => console.error(`[faults] ${line}`);

export async function controlPlane(): Promise<Handle> {
  const { stateDir, external } = inject('controlPlane');
  if (external || !stateDir) throw new Error('the fault suite restarts the control plane: it needs the one the run starts (not TOKENWARDEN_TEST_KUBECONFIG)');
  const cp = (await attachControlPlane(stateDir, log)) as Handle;
  if (typeof cp.start !== 'function') throw new Error('launcher handle has no start(component); the etcd restart needs it');
  return cp;
}

interface StateFile {
  stateDir: string;
  pidDir: string;
}

function pidOf(stateDir: string, c: Component): { pid: number; pidFile: string } {
  const state = JSON.parse(fs.readFileSync(path.join(stateDir, 'state.json'), 'utf8')) as StateFile;
  const pidFile = path.join(state.pidDir, `${c}.pid`);
  const pid = Number.parseInt(fs.readFileSync(pidFile, 'utf8'), 10);
  const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  // Never signal a recycled pid: the component's argv names the state folder.
  if (!argv.some((a) => a.includes(state.stateDir))) throw new Error(`pid ${pid} of ${pidFile} is not this control plane's ${c}`);
  return { pid, pidFile };
}

function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const s = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return s !== 'Z' && s !== 'X';
  } catch {
    return false;
  }
}

/** Stops etcd: SIGKILL (a crash) or SIGTERM (a clean stop, SIGKILL after 10s). */
export async function stopEtcd(opts: { kill?: boolean } = {}): Promise<void> {
  const { stateDir } = inject('controlPlane');
  const { pid, pidFile } = pidOf(stateDir, 'etcd');
  process.kill(pid, opts.kill ? 'SIGKILL' : 'SIGTERM');
  const deadline = Date.now() + 10_000;
  while (alive(pid)) {
    if (Date.now() > deadline) process.kill(pid, 'SIGKILL');
    if (Date.now() > deadline + 10_000) throw new Error(`etcd (pid ${pid}) survived SIGKILL`);
    await new Promise((r) => setTimeout(r, 100));
  }
  fs.rmSync(pidFile, { force: true });
}

/** Starts etcd again (same argv, same data folder) and waits until it is healthy. */
export async function startEtcd(): Promise<void> {
  await (await controlPlane()).start('etcd');
}

/** The current pid of a component (0 when it is not running). */
export async function pidOfComponent(c: Component): Promise<number> {
  return (await controlPlane()).pids[c];
}
