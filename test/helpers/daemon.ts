import { type Daemon, startDaemon } from '../../src/daemon.ts';
import { loadConfig, overridesFrom } from '../../src/node/config/load.ts';
import type { Config } from '../../src/node/config/schema.ts';
import { createLogger } from '../../src/node/base/logger.ts';
import { RemoteNode } from '../../src/node/node.ts';
import { tempDir } from './temp.ts';

type Settings = Record<string, string>;

/** Config for a test node: its own data dir, ephemeral loopback ports, no public bootstrap. */
export function testConfig(dataDir: string, settings: Settings = {}): Config {
  const base: Settings = {
    'node.data_dir': dataDir,
    'node.listen_host': '127.0.0.1',
    'node.log_level': 'silent',
    'api.host': '127.0.0.1',
    'api.port': '0',
    'quic.quic_port': '0',
    'dht.dht_port': '0',
    'dht.bootstrap_nodes': '',
  };
  return loadConfig({ flags: overridesFrom({ ...base, ...settings }, 'test') });
}

/** Starts a daemon (node + API) stopped automatically after the test. */
export async function startTestDaemon(t: { after(fn: () => unknown): void }, settings: Settings = {}): Promise<Daemon> {
  const config = testConfig(tempDir(t), settings);
  const daemon = await startDaemon(config, { logger: createLogger('silent') });
  t.after(() => daemon.stop('test finished'));
  return daemon;
}

/** Starts a node without API (the large network tests), stopped after the test. */
export async function startTestNode(t: { after(fn: () => unknown): void }, settings: Record<string, string> = {}): Promise<RemoteNode> {
  const node = await RemoteNode.start(testConfig(tempDir(t), settings), { logger: createLogger('silent') });
  t.after(() => node.stop('test finished'));
  return node;
}

/** Resolves when `condition` holds, re-checking on every event the node publishes (no polling sleeps). */
export function until(nodes: readonly RemoteNode[], condition: () => boolean, timeoutMs = 60_000): Promise<void> {
  return new Promise((resolve, reject) => {
    if (condition()) return resolve();
    const offs: Array<() => void> = [];
    const finish = (error?: Error) => {
      clearTimeout(timer);
      for (const off of offs) off();
      if (error) reject(error);
      else resolve();
    };
    const timer = setTimeout(() => finish(new Error(`condition not met within ${timeoutMs} ms`)), timeoutMs);
    for (const node of nodes) {
      offs.push(
        node.bus.onAny(() => {
          if (condition()) finish();
        }),
      );
    }
  });
}

/**
 * Resolves once the bus has more listeners than `before` (a subscription reached the node).
 * Registering a listener emits no event, so this re-checks on each turn of the event loop.
 */
export async function subscriptionActive(node: RemoteNode, before: number): Promise<void> {
  const deadline = Date.now() + 5000;
  while (node.bus.listenerCount() <= before) {
    if (Date.now() > deadline) throw new Error('subscription never became active');
    await new Promise((resolve) => setImmediate(resolve));
  }
}
