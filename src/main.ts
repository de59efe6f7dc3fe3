/** Entry point: configuration, logger, cluster connection, start; stop cleanly on SIGTERM/SIGINT. */
import { ConfigError, loadConfig, type Config } from './config.ts';
import { createLogger } from './controller/logger.ts';
import { leaderIdentity, runLeaderElected } from './controller/leader-election.ts';
import { KubeClient } from './kube/client.ts';
import { loadKubeconfig, type KubeAccess } from './kube/kubeconfig.ts';
import { createMetrics } from './observability/metrics.ts';
import { startObservability } from './observability/server.ts';
import { startOperator } from './operator.ts';

/** --kubeconfig (or KUBECONFIG, a list merged as kubectl merges it), else ~/.kube/config, else in-cluster. */
function kubeConfigFor(config: Config): KubeAccess {
  return loadKubeconfig({ env: { ...process.env, KUBECONFIG: config.kubeconfig } });
}

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig(process.argv.slice(2), process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`tokenwarden: ${err.message}`);
      process.exit(2);
    }
    throw err;
  }
  const logger = createLogger({ level: config['log-level'], name: 'tokenwarden' });
  // Metrics and probes first. /readyz: 503 until the caches are synced; 200 on a standby waiting for
  // the lease (it is healthy, and a rolling update must not wait for it to lead).
  const metrics = createMetrics({ leaseName: config['leader-election-id'] });
  const health = { synced: false, standby: config['leader-elect'], stopping: false };
  if (config['leader-elect']) metrics.setLeader(false);
  const observability = await startObservability({
    metricsAddress: config['metrics-bind-address'],
    healthAddress: config['health-probe-bind-address'],
    registry: metrics.registry,
    ready: () => !health.stopping && (health.synced || health.standby),
    logger,
  });
  // With --leader-elect=true only the leader reconciles: startReconciling runs once it leads.
  const startReconciling = () => startOperator({
    kubeConfig: kubeConfigFor(config),
    logger,
    namespacePrefix: config['namespace-prefix'],
    selector: config.selector,
    workers: config.workers,
    resyncPeriodMs: config['resync-period'],
    instance: config.instance as string,
    metrics: metrics.hooks(),
  }).then((running) => {
    metrics.attachCaches(running.caches);
    health.synced = true;
    return running;
  });
  const operator = config['leader-elect']
    ? runLeaderElected({
        elector: {
          client: new KubeClient(kubeConfigFor(config), { userAgent: 'tokenwarden-leader-election' }),
          namespace: config['leader-election-namespace'] as string,
          name: config['leader-election-id'],
          identity: leaderIdentity(config.instance as string),
          leaseDurationMs: config['lease-duration'],
          renewDeadlineMs: config['renew-deadline'],
          retryPeriodMs: config['retry-period'],
        },
        start: startReconciling,
        onLeadingChange: (leading) => {
          metrics.setLeader(leading);
          if (leading) health.standby = false;
        },
        logger,
        // Leadership lost: stop reconciling at once, mid-reconcile or not; the Deployment restarts us.
        exit: (code) => process.exit(code),
      })
    : await startReconciling();
  // Stay up until a signal: while the API server is unreachable, every other handle (backoff and
  // requeue timers) is unref'd, and Node would quietly exit 0 with the operator still "running".
  setInterval(() => {}, 2 ** 30);
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    health.stopping = true;
    logger.info({ signal }, 'stopping');
    // Bounded: the drain, then (leader) the lease release; well inside terminationGracePeriodSeconds.
    setTimeout(() => process.exit(1), 25_000).unref();
    operator.stop(10_000).then(() => observability.close(1_000)).then(
      () => {
        logger.info('stopped');
        process.exit(0);
      },
      (err: unknown) => {
        logger.error({ err: (err as Error).message }, 'stop failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

main().catch((err: unknown) => {
  console.error(`tokenwarden: ${(err as Error).message}`);
  process.exit(1);
});
