/**
 * `make dev`: start the operator in the background against the local control plane, apply the
 * samples, wait until every ServiceAccountClient is Ready, and show them. `down` stops the operator.
 *
 *   node tools/dev.ts up | down
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve as resolvePath } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// TOKENWARDEN_DEV_DIR (the Makefile's DEV): the folder `make controlplane-up` used.
const dev = resolvePath(process.env.TOKENWARDEN_DEV_DIR || join(root, '.dev'));
const pidFile = join(dev, 'operator.pid');
const logFile = join(dev, 'logs', 'operator.log');
const kubeconfig = join(dev, 'kubeconfig');
/** For messages: paths as the user, in the repository, types them. */
const shown = (file: string): string => relative(process.cwd(), file);

function kubectlPath(): string {
  const built = spawnSync('bash', [join(root, 'test/controlplane/build.sh')], { encoding: 'utf8' });
  if (built.status !== 0) throw new Error(`building the control plane failed:\n${built.stderr}`);
  return join(built.stdout.trim(), 'kubectl');
}

function kubectl(args: string[]): { status: number; stdout: string; stderr: string } {
  const result = spawnSync(kubectlPath(), args, { encoding: 'utf8', env: { ...process.env, KUBECONFIG: kubeconfig } });
  return { status: result.status ?? 1, stdout: result.stdout, stderr: result.stderr };
}

function running(): number | undefined {
  if (!existsSync(pidFile)) return undefined;
  const pid = Number(readFileSync(pidFile, 'utf8').trim());
  try {
    process.kill(pid, 0);
    return pid;
  } catch {
    return undefined;
  }
}

async function up(): Promise<number> {
  if (!existsSync(kubeconfig)) {
    console.error('no local control plane: run `make controlplane-up` first');
    return 1;
  }
  let pid = running();
  if (pid === undefined) {
    mkdirSync(dirname(logFile), { recursive: true });
    const out = openSync(logFile, 'a');
    const child = spawn(process.execPath, [join(root, 'src/main.ts'), '--kubeconfig', kubeconfig], {
      cwd: root,
      detached: true,
      stdio: ['ignore', out, out],
    });
    child.unref();
    pid = child.pid as number;
    writeFileSync(pidFile, `${pid}\n`);
    console.log(`operator started (pid ${pid}, logs in ${shown(logFile)})`);
  } else {
    console.log(`operator already running (pid ${pid})`);
  }
  const applied = kubectl(['apply', '-k', join(root, 'config/samples')]);
  process.stdout.write(applied.stdout);
  if (applied.status !== 0) {
    console.error(applied.stderr);
    return 1;
  }
  const deadline = Date.now() + 60_000;
  const samplesReady = (): boolean => {
    const ready = kubectl(['get', 'sac', '-A', '-o', 'jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\\n"}{end}']);
    const states = ready.stdout.split('\n').filter(Boolean);
    return ready.status === 0 && states.length > 0 && states.every((s) => s === 'True');
  };
  let allReady: boolean;
  while (!(allReady = samplesReady()) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 500));
  process.stdout.write(`\n$ kubectl get tiers,tenantbindings,sac -A\n${kubectl(['get', 'tiers,tenantbindings,sac', '-A']).stdout}`);
  if (!allReady) {
    // make dev must not look successful when the main job is not working.
    console.error(`\nthe samples are not Ready after 60s; see ${shown(logFile)} (the operator and control plane are left running to look at)`);
    return 1;
  }
  console.log(`\nexport KUBECONFIG=${shown(kubeconfig)} to use it; \`make dev-down\` stops everything.`);
  return 0;
}

async function down(): Promise<number> {
  const pid = running();
  if (pid !== undefined) {
    process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 100 && running() !== undefined; i++) await new Promise((resolve) => setTimeout(resolve, 100));
    if (running() !== undefined) process.kill(pid, 'SIGKILL');
    console.log(`operator stopped (pid ${pid})`);
  }
  rmSync(pidFile, { force: true });
  return 0;
}

const command = process.argv[2];
const run = command === 'up' ? up : command === 'down' ? down : undefined;
if (run === undefined) {
  console.error('usage: node tools/dev.ts up|down');
  process.exit(2);
}
process.exit(await run());
