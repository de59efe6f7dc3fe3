/**
 * The cluster connection of one plugin invocation, resolved the way kubectl resolves it:
 * --kubeconfig, else every file of KUBECONFIG merged (the first to set a value wins, missing files
 * skipped), else ~/.kube/config, else in-cluster; --context, else the current context; -n, else the
 * context's namespace, else "default".
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { KubeClient } from '../kube/client.ts';
import { CliError, parseDurationFlag, str, type Parsed } from './args.ts';

export const FIELD_MANAGER = 'kubectl-tokenwarden';

export interface Cli {
  kc: KubeConfig;
  client: KubeClient;
  /** The namespace of -n, the context's, or "default". */
  namespace: string;
  /** Whether -n was given. */
  namespaceExplicit: boolean;
  contextName: string;
}

export function loadKubeConfig(parsed: Parsed, env: NodeJS.ProcessEnv = process.env): KubeConfig {
  const kc = new KubeConfig();
  const explicit = str(parsed, 'kubeconfig');
  try {
    if (explicit !== undefined) {
      if (!fs.existsSync(explicit)) throw new CliError(`--kubeconfig ${explicit}: no such file`);
      kc.loadFromFile(explicit);
    } else if (env.KUBECONFIG) {
      const files = env.KUBECONFIG.split(path.delimiter).filter((f) => f !== '' && fs.existsSync(f));
      if (files.length === 0) throw new CliError(`none of the files in KUBECONFIG exists: ${env.KUBECONFIG}`);
      kc.loadFromFile(files[0] as string);
      for (const file of files.slice(1)) {
        const next = new KubeConfig();
        next.loadFromFile(file);
        // As kubectl merges: the first file to define a name (or the current context) wins.
        for (const c of next.clusters) if (!kc.getCluster(c.name)) kc.addCluster(c);
        for (const u of next.users) if (!kc.getUser(u.name)) kc.addUser(u);
        for (const c of next.contexts) if (!kc.getContextObject(c.name)) kc.addContext(c);
        if (!kc.getCurrentContext() && next.getCurrentContext()) kc.setCurrentContext(next.getCurrentContext());
      }
    } else {
      const home = path.join(os.homedir(), '.kube', 'config');
      if (fs.existsSync(home)) kc.loadFromFile(home);
      else if (env.KUBERNETES_SERVICE_HOST) kc.loadFromCluster();
      else throw new CliError('no kubeconfig: use --kubeconfig, set KUBECONFIG, or create ~/.kube/config');
    }
  } catch (err) {
    if (err instanceof CliError) throw err;
    throw new CliError(`cannot load the kubeconfig: ${err instanceof Error ? err.message : String(err)}`);
  }
  const context = str(parsed, 'context');
  if (context !== undefined) {
    if (kc.getContextObject(context) === null) throw new CliError(`context "${context}" does not exist in the kubeconfig`);
    kc.setCurrentContext(context);
  }
  if (!kc.getCurrentContext() && kc.getContexts().length > 0) {
    throw new CliError('the kubeconfig has no current context: use --context');
  }
  if (!kc.getCurrentCluster()) throw new CliError(`context "${kc.getCurrentContext()}" names no cluster that the kubeconfig defines`);
  return kc;
}

export function connect(parsed: Parsed, env: NodeJS.ProcessEnv = process.env): Cli {
  const kc = loadKubeConfig(parsed, env);
  const flagNamespace = str(parsed, 'namespace');
  if (flagNamespace === '') throw new CliError('-n/--namespace: empty namespace');
  const contextNamespace = kc.getContextObject(kc.getCurrentContext())?.namespace;
  const timeout = str(parsed, 'request-timeout');
  const client = new KubeClient(kc, {
    fieldManager: FIELD_MANAGER,
    userAgent: 'kubectl-tokenwarden',
    ...(timeout !== undefined ? { timeoutMs: parseDurationFlag('request-timeout', timeout) } : {}),
  });
  return {
    kc,
    client,
    namespace: flagNamespace ?? (contextNamespace || 'default'),
    namespaceExplicit: flagNamespace !== undefined,
    contextName: kc.getCurrentContext(),
  };
}
