/** Entry point: configuration, logger, cluster connection, start; stop cleanly on SIGTERM/SIGINT. */
import { KubeConfig } from '@kubernetes/client-node';
import { ConfigError, loadConfig, type Config } from './config.ts';
import { createLogger } from './controller/logger.ts';
import { startOperator } from './operator.ts';

function kubeConfigFor(config: Config): KubeConfig {
  const kc = new KubeConfig();
  if (config.kubeconfig) kc.loadFromFile(config.kubeconfig);
  else kc.loadFromDefault();
  return kc;
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
  const operator = await startOperator({
    kubeConfig: kubeConfigFor(config),
    logger,
    namespacePrefix: config['namespace-prefix'],
    selector: config.selector,
    workers: config.workers,
    resyncPeriodMs: config['resync-period'],
    instance: config.instance as string,
  });
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping');
    operator.stop(20_000).then(
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
