/**
 * `make plugin`: builds bin/kubectl-tokenwarden, the kubectl plugin as one executable that needs no
 * Node on the machine it runs on (Node's single executable applications):
 *
 * 1. esbuild bundles src/cli/main.ts and everything it imports (src/api, src/policy, src/kube,
 *    @kubernetes/client-node, zod, undici) into one CommonJS file: Node 24's SEA runs a CommonJS
 *    main script, and cannot load modules from disk.
 * 2. `node --experimental-sea-config` turns it into a preparation blob.
 * 3. postject injects the blob into a copy of the Node 24 binary this script runs on (the npm
 *    package `node`), flipping the SEA fuse.
 *
 * The result is cached: .cache/plugin-build/inputs.sha256 holds a hash of every input (sources, lockfile,
 * this script, the Node binary's version), and a build whose hash matches is skipped.
 *
 *   node tools/build-plugin.ts [--out bin/kubectl-tokenwarden] [--force]
 */
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const outArg = args.indexOf('--out');
const out = path.resolve(root, outArg >= 0 ? (args[outArg + 1] ?? '') : 'bin/kubectl-tokenwarden');
const force = args.includes('--force');
// Intermediate files (bundle, blob, input hash) live in .cache/, which git and eslint ignore.
const work = path.join(root, '.cache', 'plugin-build');
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';

function log(msg: string): void {
  console.error(`[plugin] ${msg}`);
}

if (Number(process.versions.node.split('.')[0]) !== 24) {
  console.error(`[plugin] the single executable embeds the Node that runs this script, which must be Node 24 (this is ${process.version}); run it through make plugin or npm's node_modules/.bin`);
  process.exit(1);
}

/** Every file whose change must rebuild the executable. */
function inputFiles(): string[] {
  const files: string[] = [];
  const walk = (dir: string): void => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(p);
      else if (entry.name.endsWith('.ts')) files.push(p);
    }
  };
  walk(path.join(root, 'src'));
  files.push(path.join(root, 'package-lock.json'), path.join(root, 'package.json'), fileURLToPath(import.meta.url));
  return files.sort();
}

function gitCommit(): string {
  try {
    const commit = execFileSync('git', ['rev-parse', '--short=12', 'HEAD'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    return dirty ? `${commit}-dirty` : commit;
  } catch {
    return 'unknown';
  }
}

const version = (JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string }).version;
const commit = gitCommit();
const hash = createHash('sha256');
for (const f of inputFiles()) hash.update(path.relative(root, f)).update('\0').update(fs.readFileSync(f)).update('\0');
hash.update(process.version).update(commit);
const inputsHash = hash.digest('hex');
const hashFile = path.join(work, 'inputs.sha256');
if (!force && fs.existsSync(out) && fs.existsSync(hashFile) && fs.readFileSync(hashFile, 'utf8') === inputsHash) {
  log(`${path.relative(root, out)} is up to date`);
  process.exit(0);
}

fs.mkdirSync(work, { recursive: true });
fs.mkdirSync(path.dirname(out), { recursive: true });
const started = Date.now();
const bundle = path.join(work, 'main.cjs');
const esbuild = await import('esbuild');
await esbuild.build({
  entryPoints: [path.join(root, 'src/cli/main.ts')],
  outfile: bundle,
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node24',
  minify: false,
  legalComments: 'none',
  logLevel: 'warning',
  define: {
    TOKENWARDEN_PLUGIN_VERSION: JSON.stringify(version),
    TOKENWARDEN_PLUGIN_COMMIT: JSON.stringify(commit),
  },
});
log(`bundled src/cli/main.ts (${Math.round(fs.statSync(bundle).size / 1024)} KiB)`);

const blob = path.join(work, 'sea.blob');
const seaConfig = path.join(work, 'sea-config.json');
// execArgvExtension none: the executable ignores NODE_OPTIONS, so a user's Node settings (--require,
// --inspect, ...) neither break nor reach the plugin; it is a kubectl plugin, not a Node.
fs.writeFileSync(seaConfig, JSON.stringify({ main: bundle, output: blob, disableExperimentalSEAWarning: true, useSnapshot: false, useCodeCache: true, execArgvExtension: 'none' }, null, 2));
execFileSync(process.execPath, ['--experimental-sea-config', seaConfig], { stdio: ['ignore', 'ignore', 'inherit'] });

// A copy of this very Node binary (resolving the npm package's link), without its debug symbols.
const nodeBinary = fs.realpathSync(process.execPath);
const tmp = `${out}.tmp`;
fs.rmSync(tmp, { force: true });
fs.copyFileSync(nodeBinary, tmp);
fs.chmodSync(tmp, 0o755);
try {
  execFileSync('strip', ['--strip-debug', tmp], { stdio: 'ignore' });
} catch {
  log('strip not found: the executable keeps Node\'s debug symbols (larger, works the same)');
}
const postject = path.join(root, 'node_modules/postject/dist/cli.js');
execFileSync(process.execPath, [postject, tmp, 'NODE_SEA_BLOB', blob, '--sentinel-fuse', SEA_FUSE], { stdio: ['ignore', 'ignore', 'pipe'] });
fs.renameSync(tmp, out);
fs.writeFileSync(hashFile, inputsHash);
log(`built ${path.relative(root, out)} (${Math.round(fs.statSync(out).size / 1024 / 1024)} MiB, ${version} ${commit}, Node ${process.version}) in ${((Date.now() - started) / 1000).toFixed(1)}s`);
