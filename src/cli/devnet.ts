import { join } from 'node:path';
import { type Daemon, startDaemon } from '../daemon.ts';
import { loadConfig, overridesFrom } from '../node/config/load.ts';
import { createLogger } from '../node/base/logger.ts';

export interface DevnetOptions {
  readonly nodes: number;
  /** Node i serves GraphQL on apiPortBase + i (0: any free port). */
  readonly apiPortBase: number;
  readonly dataDir: string;
  readonly logLevel: string;
  readonly discoveryIntervalSeconds?: number;
}

export interface Devnet {
  readonly daemons: Daemon[];
  stop(): Promise<void>;
}

export const MAX_DEVNET_NODES = 200;

/**
 * N public nodes on 127.0.0.1 with their own private DHT (node 0 is its root, every other node
 * bootstraps from it) and a QUIC bootstrap chain (node i dials node i-1); discovery does the rest.
 * Nothing leaves the machine: no public router is configured.
 */
export async function startDevnet(options: DevnetOptions): Promise<Devnet> {
  const daemons: Daemon[] = [];
  const logger = createLogger(options.logLevel);
  try {
    for (let i = 0; i < options.nodes; i++) {
      const root = daemons[0];
      const previous = daemons[i - 1];
      const settings: Record<string, string> = {
        'node.data_dir': join(options.dataDir, `node-${i}`),
        'node.node_type': 'public',
        'node.listen_host': '127.0.0.1',
        'node.log_level': options.logLevel,
        'api.host': '127.0.0.1',
        'api.port': String(options.apiPortBase === 0 ? 0 : options.apiPortBase + i),
        'quic.quic_port': '0',
        'dht.dht_port': '0',
        'dht.bootstrap_nodes': root ? `127.0.0.1:${root.node.dht.port}` : '',
        'peer_discovery.bootstrap_peers': previous ? `127.0.0.1:${previous.node.quicPort}` : '',
        'peer_discovery.discovery_interval': String(options.discoveryIntervalSeconds ?? 5),
      };
      const flags = overridesFrom(settings, `devnet node ${i}`);
      daemons.push(await startDaemon(loadConfig({ flags }), { logger: logger.child({ devnetNode: i }) }));
    }
  } catch (error) {
    await Promise.all(daemons.map((d) => d.stop('devnet failed to start')));
    throw error;
  }
  return {
    daemons,
    stop: async () => {
      for (const daemon of [...daemons].reverse()) await daemon.stop('devnet stopping');
    },
  };
}
