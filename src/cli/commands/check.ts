/**
 * check api: is tokenwarden installed and running here? The CRDs established, the admission policies
 * of access/ and their bindings present, and the operator alive: its Lease tokenwarden-leader renewed
 * within its duration (with --leader-elect), or else every Tier and client reconciled at its current
 * generation with a status write by the operator.
 */
import { KubeApiError } from '../../kube/errors.ts';
import { LEASES, SERVICE_ACCOUNT_CLIENTS, TIERS, type KubeObject } from '../../kube/resources.ts';
import { CliError, parseDurationFlag, str, type Parsed } from '../args.ts';
import type { Command, Env } from '../command.ts';
import type { Cli } from '../context.ts';
import { CRDS, VAPS, VAP_BINDINGS, humanDuration, poll } from '../common.ts';

const CRD_NAMES = ['tiers.tokenwarden.io', 'tenantbindings.tokenwarden.io', 'serviceaccountclients.tokenwarden.io'];
const POLICIES = ['tokenwarden-client-subject', 'tokenwarden-tenantbinding-bind', 'tokenwarden-tier-namespace-no-pods', 'tokenwarden-operator-events'];

interface Check {
  what: string;
  ok: boolean;
  detail: string;
}

interface Crd extends KubeObject {
  status?: { conditions?: { type: string; status: string }[] };
}

interface Lease extends KubeObject {
  spec?: { holderIdentity?: string; leaseDurationSeconds?: number; renewTime?: string; acquireTime?: string };
}

interface Reconciled extends KubeObject {
  status?: { observedGeneration?: number; conditions?: { type: string; status: string; lastTransitionTime?: string }[] };
}

async function tryGet<T extends KubeObject>(cli: Cli, type: Parameters<Cli['client']['get']>[0], namespace: string | undefined, name: string): Promise<T | undefined | 'forbidden'> {
  try {
    return await cli.client.get<T>(type, namespace, name);
  } catch (err) {
    if (err instanceof KubeApiError && err.statusCode === 404) return undefined;
    if (err instanceof KubeApiError && err.statusCode === 403) return 'forbidden';
    throw err;
  }
}

/** The operator's last status write on an object: managedFields of the status subresource by its field manager. */
function lastStatusWrite(obj: KubeObject & { metadata?: { managedFields?: { manager?: string; subresource?: string; time?: string }[] } }): number | undefined {
  const times = (obj.metadata?.managedFields ?? [])
    .filter((f) => f.subresource === 'status' && f.manager === 'tokenwarden' && f.time)
    .map((f) => Date.parse(f.time as string));
  return times.length ? Math.max(...times) : undefined;
}

async function checks(cli: Cli, opts: { leaseNamespace: string; leaseName: string; selector: string | undefined }): Promise<Check[]> {
  const result: Check[] = [];
  for (const name of CRD_NAMES) {
    const crd = await tryGet<Crd>(cli, CRDS, undefined, name);
    if (crd === 'forbidden') result.push({ what: `CRD ${name}`, ok: false, detail: 'you may not read CustomResourceDefinitions' });
    else if (crd === undefined) result.push({ what: `CRD ${name}`, ok: false, detail: 'not installed (make install, or kubectl apply --server-side -f crds/)' });
    else {
      const established = crd.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True') ?? false;
      result.push({ what: `CRD ${name}`, ok: established, detail: established ? 'established' : 'not established yet' });
    }
  }
  for (const name of POLICIES) {
    const policy = await tryGet<KubeObject>(cli, VAPS, undefined, name);
    const binding = policy === undefined || policy === 'forbidden' ? undefined : await tryGet<KubeObject>(cli, VAP_BINDINGS, undefined, name);
    if (policy === 'forbidden' || binding === 'forbidden') result.push({ what: `admission policy ${name}`, ok: false, detail: 'you may not read ValidatingAdmissionPolicies' });
    else if (policy === undefined) result.push({ what: `admission policy ${name}`, ok: false, detail: 'not installed: without it anyone who may create clients may name any subject (kubectl apply --server-side -f access/)' });
    else if (binding === undefined) result.push({ what: `admission policy ${name}`, ok: false, detail: 'installed but not bound: it checks nothing (kubectl apply --server-side -f access/)' });
    else result.push({ what: `admission policy ${name}`, ok: true, detail: 'installed and bound' });
  }
  const lease = await tryGet<Lease>(cli, LEASES, opts.leaseNamespace, opts.leaseName);
  const now = Date.now();
  if (lease !== undefined && lease !== 'forbidden' && lease.spec?.holderIdentity) {
    const renewed = Date.parse(lease.spec.renewTime ?? lease.spec.acquireTime ?? '');
    const duration = (lease.spec.leaseDurationSeconds ?? 15) * 1000;
    const fresh = !Number.isNaN(renewed) && now - renewed <= duration;
    result.push({
      what: 'operator',
      ok: fresh,
      detail: fresh
        ? `leader ${lease.spec.holderIdentity} (Lease ${opts.leaseNamespace}/${opts.leaseName} renewed ${humanDuration(now - renewed)} ago)`
        : `Lease ${opts.leaseNamespace}/${opts.leaseName} held by ${lease.spec.holderIdentity} but not renewed for ${Number.isNaN(renewed) ? '?' : humanDuration(now - renewed)}: the operator is down or cannot reach the API server`,
    });
    return result;
  }
  // No leader election (make run, make dev): judge by what the operator wrote.
  let tiers: Reconciled[];
  let clients: Reconciled[];
  try {
    const list = { ...(opts.selector ? { labelSelector: opts.selector } : {}) };
    tiers = (await cli.client.list<Reconciled>(TIERS, undefined, list)).items;
    clients = (await cli.client.list<Reconciled>(SERVICE_ACCOUNT_CLIENTS, undefined, list)).items;
  } catch (err) {
    if (err instanceof KubeApiError && err.statusCode === 403) {
      result.push({ what: 'operator', ok: false, detail: `no Lease ${opts.leaseNamespace}/${opts.leaseName}${lease === 'forbidden' ? ' (you may not read it)' : ''}, and you may not list Tiers and clients cluster-wide to judge by status` });
      return result;
    }
    throw err;
  }
  const objects = [...tiers, ...clients];
  const behind = objects.filter((o) => o.metadata?.deletionTimestamp === undefined && o.status?.observedGeneration !== o.metadata?.generation);
  const writes = objects.map(lastStatusWrite).filter((t): t is number => t !== undefined);
  const last = writes.length ? Math.max(...writes) : undefined;
  const noLease = `no Lease ${opts.leaseNamespace}/${opts.leaseName} (not running with --leader-elect)`;
  if (objects.length === 0) {
    result.push({ what: 'operator', ok: false, detail: `${noLease}, and no Tier or client to judge by` });
  } else if (behind.length > 0) {
    result.push({
      what: 'operator',
      ok: false,
      detail: `${noLease}; ${behind.length} of ${objects.length} Tiers and clients not reconciled at their current generation (e.g. ${behind[0]?.kind ?? ''} ${behind[0]?.metadata?.namespace ? `${behind[0].metadata.namespace}/` : ''}${behind[0]?.metadata?.name}): is the operator running?`,
    });
  } else {
    result.push({ what: 'operator', ok: true, detail: `${noLease}; every one of ${objects.length} Tiers and clients reconciled at its current generation${last ? `, last status write ${humanDuration(now - last)} ago` : ''}` });
  }
  return result;
}

export const checkApi: Command = {
  name: 'check api',
  args: '',
  summary: 'Whether tokenwarden is installed and running: CRDs, admission policies, the operator',
  flags: [
    { name: 'wait', kind: 'string', value: 'DURATION', help: 'keep checking this long until everything passes (default 0)' },
    { name: 'selector', short: 'l', kind: 'string', value: 'SELECTOR', help: 'without a Lease: judge the operator by the Tiers and clients matching this selector (its --selector)' },
    { name: 'lease-namespace', kind: 'string', value: 'NS', help: 'namespace of the operator\'s Lease (default tokenwarden-system)' },
    { name: 'lease-name', kind: 'string', value: 'NAME', help: 'name of the operator\'s Lease (default tokenwarden-leader)' },
  ],
  async run(parsed: Parsed, env: Env) {
    if (parsed.positionals.length > 0) throw new CliError(`check api takes no arguments, got ${parsed.positionals.join(' ')}`);
    const waitMs = parseDurationFlag('wait', str(parsed, 'wait') ?? '0s');
    const opts = { leaseNamespace: str(parsed, 'lease-namespace') ?? 'tokenwarden-system', leaseName: str(parsed, 'lease-name') ?? 'tokenwarden-leader', selector: str(parsed, 'selector') };
    const cli = env.connect();
    let last: Check[] = [];
    await poll(async () => {
      last = await checks(cli, opts);
      return last.every((c) => c.ok) ? last : undefined;
    }, waitMs, 1000);
    for (const c of last) env.out(`${c.ok ? 'ok  ' : 'FAIL'}  ${c.what}: ${c.detail}`);
    const failed = last.filter((c) => !c.ok);
    if (failed.length > 0) throw new CliError(`not ready: ${failed.map((c) => c.what).join(', ')}`);
    env.out('tokenwarden is installed and running');
    return 0;
  },
};
