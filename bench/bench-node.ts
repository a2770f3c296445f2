import { loadConfig, overridesFrom } from '../src/node/config/load.ts';
import { createLogger } from '../src/node/base/logger.ts';
import { RemoteNode } from '../src/node/node.ts';

/** A benchmark node: public on 127.0.0.1, free ports, no DHT bootstrap, no periodic rounds. */
export function benchNodeSettings(dataDir: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    'node.data_dir': dataDir,
    'node.listen_host': '127.0.0.1',
    'node.node_type': 'public',
    'node.log_level': 'silent',
    'quic.quic_port': '0',
    'dht.dht_port': '0',
    'dht.bootstrap_nodes': '',
    // No periodic rounds during a measurement.
    'peer_discovery.discovery_interval': '3600',
    ...extra,
  };
}

export function startBenchNode(dataDir: string, extra: Record<string, string> = {}): Promise<RemoteNode> {
  return RemoteNode.start(loadConfig({ flags: overridesFrom(benchNodeSettings(dataDir, extra), 'bench') }), {
    logger: createLogger('silent'),
  });
}
