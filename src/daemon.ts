import { startApiServer, type ApiServer } from './graphql/server.ts';
import type { Config } from './node/config/schema.ts';
import type { Logger } from './node/base/logger.ts';
import { createLogger } from './node/base/logger.ts';
import { RemoteNode } from './node/node.ts';

/** A running node with its GraphQL API: what `remote-network start` runs and what tests start. */
export interface Daemon {
  readonly node: RemoteNode;
  readonly api: ApiServer;
  /** Closes the API first (no new work), then the node (network, then database). */
  stop(reason?: string): Promise<void>;
}

export async function startDaemon(config: Config, options: { logger?: Logger } = {}): Promise<Daemon> {
  const logger = options.logger ?? createLogger(config.node.log_level);
  const node = await RemoteNode.start(config, { logger });
  let api: ApiServer;
  try {
    api = await startApiServer({
      node,
      host: config.api.host,
      port: config.api.port,
      access: { token: config.api.token, allowedOrigins: config.api.allowed_origins },
      limits: { maxDepth: config.api.max_depth, maxAliases: config.api.max_aliases, maxCost: config.api.max_cost },
      subscriptions: { perClient: config.api.max_subscriptions_per_client, perNode: config.api.max_subscriptions },
      logger,
    });
  } catch (error) {
    // The API's failure is the one to report; a failing close was logged by stop().
    await node.stop('API failed to start').catch(() => {});
    throw error;
  }
  node.bus.emit('node.started', { peerId: node.peerId, apiUrl: api.url });
  logger.info({ peerId: node.peerId, graphql: api.url, version: node.version }, 'node started');

  let stopping: Promise<void> | undefined;
  return {
    node,
    api,
    stop(reason = 'stop requested') {
      stopping ??= (async () => {
        await api.close();
        await node.stop(reason);
      })();
      return stopping;
    },
  };
}
