/**
 * The cluster connection of one plugin invocation, resolved the way kubectl resolves it:
 * --kubeconfig, else every file of KUBECONFIG merged (the first to set a value wins, missing files
 * skipped), else ~/.kube/config, else in-cluster; --context, else the current context; -n, else the
 * context's namespace, else "default".
 */
import fs from 'node:fs';
import { KubeClient } from '../kube/client.ts';
import { KubeconfigError, loadKubeconfig, type KubeAccess } from '../kube/kubeconfig.ts';
import { CliError, parseDurationFlag, str, type Parsed } from './args.ts';

export const FIELD_MANAGER = 'kubectl-tokenwarden';

export interface Cli {
  access: KubeAccess;
  client: KubeClient;
  /** The namespace of -n, the context's, or "default". */
  namespace: string;
  /** Whether -n was given. */
  namespaceExplicit: boolean;
  contextName: string;
}

export function loadKubeConfig(parsed: Parsed, env: NodeJS.ProcessEnv = process.env): KubeAccess {
  const explicit = str(parsed, 'kubeconfig');
  if (explicit !== undefined && !fs.existsSync(explicit)) throw new CliError(`--kubeconfig ${explicit}: no such file`);
  try {
    return loadKubeconfig({ file: explicit, context: str(parsed, 'context'), env });
  } catch (err) {
    if (err instanceof KubeconfigError) throw new CliError(err.message);
    throw new CliError(`cannot load the kubeconfig: ${err instanceof Error ? err.message : String(err)}`);
  }
}

export function connect(parsed: Parsed, env: NodeJS.ProcessEnv = process.env): Cli {
  const access = loadKubeConfig(parsed, env);
  const flagNamespace = str(parsed, 'namespace');
  if (flagNamespace === '') throw new CliError('-n/--namespace: empty namespace');
  const timeout = str(parsed, 'request-timeout');
  const client = new KubeClient(access, {
    fieldManager: FIELD_MANAGER,
    userAgent: 'kubectl-tokenwarden',
    ...(timeout !== undefined ? { timeoutMs: parseDurationFlag('request-timeout', timeout) } : {}),
  });
  return {
    access,
    client,
    namespace: flagNamespace ?? access.namespace ?? 'default',
    namespaceExplicit: flagNamespace !== undefined,
    contextName: access.contextName,
  };
}
