/**
 * Prometheus metrics (prom-client): the controller-runtime and client-go names that existing
 * dashboards query, tokenwarden's own token and client metrics, and Node's process metrics, all in
 * one Registry of our own (never prom-client's global one, so tests can build several).
 *
 * Adapters implement the hooks the operator already calls (TokenMetrics, ControllerMetrics,
 * WorkQueueMetrics, RequestHook). Gauges that describe the clients are computed from the informer
 * caches at scrape time, once attachCaches() has been called.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ServiceAccountClient, Tier } from '../api/index.ts';
import { getCondition } from '../controller/conditions.ts';
import type { ControllerMetrics, ReconcileOutcome } from '../controller/controller.ts';
import type { WorkQueueMetrics } from '../controller/workqueue.ts';
import type { RequestHook, Verb } from '../kube/client.ts';
import type { TokenMetrics } from '../reconcilers/metrics.ts';

/** controller-runtime's buckets for controller_runtime_reconcile_time_seconds. */
export const RECONCILE_TIME_BUCKETS = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5,
  4.0, 4.5, 5, 6, 7, 8, 9, 10, 15, 20, 25, 30, 40, 50, 60,
];

/** client-go/controller-runtime's workqueue duration buckets: ExponentialBuckets(10e-9, 10, 12), 10ns to 1000s. */
export const WORKQUEUE_DURATION_BUCKETS = Array.from({ length: 12 }, (_, i) => Number((1e-8 * 10 ** i).toPrecision(1)));

/** controller-runtime's result label of controller_runtime_reconcile_total. */
export type ReconcileResultLabel = 'success' | 'error' | 'requeue' | 'requeue_after';
const RESULTS: readonly ReconcileResultLabel[] = ['success', 'error', 'requeue', 'requeue_after'];

/**
 * The controller's outcome as controller-runtime labels it. The controller reports 'requeue' when
 * the reconcile asked to come back after a delay (requeueAfterMs), which controller-runtime calls
 * requeue_after; a terminal error is an error.
 */
export function resultLabel(outcome: ReconcileOutcome): ReconcileResultLabel {
  switch (outcome) {
    case 'success':
      return 'success';
    case 'requeue':
      return 'requeue_after';
    case 'error':
    case 'terminal':
      return 'error';
  }
}

const HTTP_METHOD: Record<Verb, string> = {
  get: 'GET',
  list: 'GET',
  watch: 'GET',
  create: 'POST',
  update: 'PUT',
  patch: 'PATCH',
  delete: 'DELETE',
  deletecollection: 'DELETE',
};

/** The caches the scrape-time gauges read (RunningOperator.caches has them). */
export interface MetricsCaches {
  tiers: { list(): Tier[] };
  clients: { list(): ServiceAccountClient[] };
}

export interface MetricsOptions {
  /** The name label of leader_election_master_status (the Lease name); default "tokenwarden". */
  leaseName?: string;
  /** Node process metrics (process_*, nodejs_*); default true. */
  processMetrics?: boolean;
  /** Clock for tokenwarden_token_earliest_expiry_seconds; default Date.now. */
  now?: () => number;
}

/** The hooks startOperator({ metrics }) takes. */
export interface OperatorMetricHooks {
  tokens: TokenMetrics;
  controller: ControllerMetrics;
  workqueue: (name: string) => WorkQueueMetrics;
  onRequest: RequestHook;
  /** An Event dropped because too many were pending (tokenwarden_events_dropped_total). */
  eventDropped?: (type: string) => void;
}

export interface OperatorMetrics extends OperatorMetricHooks {
  readonly registry: Registry;
  /** Sets leader_election_master_status{name} to 1 (leading) or 0. Absent until first called. */
  setLeader(isLeader: boolean, leaseName?: string): void;
  /** Gives the scrape-time gauges their caches; before this they report nothing. */
  attachCaches(caches: MetricsCaches): void;
  /** Detaches the caches (e.g. once the operator stopped). */
  detachCaches(): void;
  /** The hooks alone, to pass as startOperator's `metrics` option. */
  hooks(): OperatorMetricHooks;
}

/** A Gauge that exports no sample at all while it has no value (rather than a misleading 0). */
class OptionalGauge extends Gauge {
  present = false;

  override async get() {
    const metric = await super.get();
    return this.present ? metric : { ...metric, values: [] };
  }
}

export function createMetrics(opts: MetricsOptions = {}): OperatorMetrics {
  const registry = new Registry();
  const registers = [registry];
  const now = opts.now ?? Date.now;
  const defaultLease = opts.leaseName ?? 'tokenwarden';
  let caches: MetricsCaches | undefined;

  // controller-runtime
  const reconcileTotal = new Counter({
    name: 'controller_runtime_reconcile_total',
    help: 'Total number of reconciliations per controller',
    labelNames: ['controller', 'result'] as const,
    registers,
  });
  const reconcileErrors = new Counter({
    name: 'controller_runtime_reconcile_errors_total',
    help: 'Total number of reconciliation errors per controller',
    labelNames: ['controller'] as const,
    registers,
  });
  const terminalErrors = new Counter({
    name: 'controller_runtime_terminal_reconcile_errors_total',
    help: 'Total number of terminal reconciliation errors per controller',
    labelNames: ['controller'] as const,
    registers,
  });
  const reconcileTime = new Histogram({
    name: 'controller_runtime_reconcile_time_seconds',
    help: 'Length of time per reconciliation per controller',
    labelNames: ['controller'] as const,
    buckets: RECONCILE_TIME_BUCKETS,
    registers,
  });

  // workqueue (client-go names, as controller-runtime registers them)
  const depth = new Gauge({ name: 'workqueue_depth', help: 'Current depth of workqueue', labelNames: ['name'] as const, registers });
  const adds = new Counter({ name: 'workqueue_adds_total', help: 'Total number of adds handled by workqueue', labelNames: ['name'] as const, registers });
  const queueDuration = new Histogram({
    name: 'workqueue_queue_duration_seconds',
    help: 'How long in seconds an item stays in workqueue before being requested',
    labelNames: ['name'] as const,
    buckets: WORKQUEUE_DURATION_BUCKETS,
    registers,
  });
  const workDuration = new Histogram({
    name: 'workqueue_work_duration_seconds',
    help: 'How long in seconds processing an item from workqueue takes',
    labelNames: ['name'] as const,
    buckets: WORKQUEUE_DURATION_BUCKETS,
    registers,
  });
  const retries = new Counter({ name: 'workqueue_retries_total', help: 'Total number of retries handled by workqueue', labelNames: ['name'] as const, registers });

  // leader election and the REST client (client-go names)
  const leader = new Gauge({
    name: 'leader_election_master_status',
    help: 'Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master',
    labelNames: ['name'] as const,
    registers,
  });
  const restRequests = new Counter({
    name: 'rest_client_requests_total',
    help: 'Number of HTTP requests to the API server, partitioned by status code and method',
    labelNames: ['code', 'method'] as const,
    registers,
  });

  // tokenwarden
  const issued = new Counter({ name: 'tokenwarden_tokens_issued_total', help: 'Tokens issued (first token, re-issue after revocation, repair), per tier', labelNames: ['tier'] as const, registers });
  const rotated = new Counter({ name: 'tokenwarden_tokens_rotated_total', help: 'Tokens issued to replace one due for renewal or expired, per tier', labelNames: ['tier'] as const, registers });
  const revoked = new Counter({ name: 'tokenwarden_tokens_revoked_total', help: 'Tokens revoked (anchor Secret deleted), per tier', labelNames: ['tier'] as const, registers });
  const earliestExpiry = new OptionalGauge({
    name: 'tokenwarden_token_earliest_expiry_seconds',
    help: 'Seconds until the earliest expiry of the current token of any Ready client (absent when no client is Ready)',
    registers,
    collect() {
      let earliest = Infinity;
      for (const client of caches?.clients.list() ?? []) {
        if (!isReady(client) || client.status?.expiresAt === undefined) continue;
        const at = Date.parse(client.status.expiresAt);
        if (at < earliest) earliest = at;
      }
      earliestExpiry.present = Number.isFinite(earliest);
      this.set(earliestExpiry.present ? (earliest - now()) / 1000 : 0);
    },
  });
  new Gauge({
    name: 'tokenwarden_clients',
    help: 'ServiceAccountClients by resolved tier ("" while unresolved) and Ready condition',
    labelNames: ['tier', 'ready'] as const,
    registers,
    collect() {
      this.reset();
      if (caches === undefined) return;
      for (const tier of caches.tiers.list()) {
        for (const ready of ['true', 'false']) this.set({ tier: tier.metadata.name, ready }, 0);
      }
      for (const client of caches.clients.list()) this.inc({ tier: client.status?.tier ?? '', ready: String(isReady(client)) });
    },
  });

  const eventsDropped = new Counter({
    name: 'tokenwarden_events_dropped_total',
    help: 'Events not recorded because too many were already pending (the recorder is bounded), by type',
    labelNames: ['type'] as const,
    registers,
  });
  eventsDropped.inc({ type: 'Normal' }, 0);
  eventsDropped.inc({ type: 'Warning' }, 0);
  const eventDropped = (type: string) => eventsDropped.inc({ type });

  if (opts.processMetrics ?? true) collectDefaultMetrics({ register: registry });

  const initialised = new Set<string>();
  /** Zero series for a controller, as controller-runtime creates them when the controller starts. */
  const initController = (controller: string) => {
    if (initialised.has(controller)) return;
    initialised.add(controller);
    for (const result of RESULTS) reconcileTotal.inc({ controller, result }, 0);
    reconcileErrors.inc({ controller }, 0);
    terminalErrors.inc({ controller }, 0);
  };

  const tokens: TokenMetrics = {
    issued: (tier) => issued.inc({ tier }),
    rotated: (tier) => rotated.inc({ tier }),
    revoked: (tier, count) => {
      if (count > 0) revoked.inc({ tier }, count);
    },
  };
  const controller: ControllerMetrics = {
    reconciled(name, outcome, seconds) {
      initController(name);
      reconcileTotal.inc({ controller: name, result: resultLabel(outcome) });
      if (outcome === 'terminal') terminalErrors.inc({ controller: name });
      reconcileTime.observe({ controller: name }, seconds);
    },
    error(name) {
      initController(name);
      reconcileErrors.inc({ controller: name });
    },
  };
  const workqueue = (name: string): WorkQueueMetrics => {
    // startOperator names each queue after its controller, as controller-runtime does.
    initController(name);
    depth.set({ name }, 0);
    adds.inc({ name }, 0);
    retries.inc({ name }, 0);
    return {
      depth: (n) => depth.set({ name }, n),
      add: () => adds.inc({ name }),
      queueDuration: (s) => queueDuration.observe({ name }, s),
      workDuration: (s) => workDuration.observe({ name }, s),
      retry: () => retries.inc({ name }),
    };
  };
  const onRequest: RequestHook = (verb, _resource, code) => {
    restRequests.inc({ code: code === 0 ? '<error>' : String(code), method: HTTP_METHOD[verb] });
  };

  return {
    registry,
    tokens,
    controller,
    workqueue,
    onRequest,
    setLeader(isLeader, leaseName = defaultLease) {
      leader.set({ name: leaseName }, isLeader ? 1 : 0);
    },
    attachCaches(c) {
      caches = c;
    },
    detachCaches() {
      caches = undefined;
    },
    hooks: () => ({ tokens, controller, workqueue, onRequest, eventDropped }),
  };
}

function isReady(client: ServiceAccountClient): boolean {
  return getCondition(client.status?.conditions, 'Ready')?.status === 'True';
}
