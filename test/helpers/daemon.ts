import { type Daemon, startDaemon } from '../../src/daemon.ts';
import { type ConfigOverride, loadConfig } from '../../src/node/config/load.ts';
import type { Config } from '../../src/node/config/schema.ts';
import { createLogger } from '../../src/node/logger.ts';
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
  const flags: ConfigOverride[] = Object.entries({ ...base, ...settings }).map(([name, value]) => {
    const [section = '', key = ''] = name.split('.');
    return { section, key, value, source: 'test' };
  });
  return loadConfig({ flags });
}

/** Starts a daemon (node + API) stopped automatically after the test. */
export async function startTestDaemon(t: { after(fn: () => unknown): void }, settings: Settings = {}): Promise<Daemon> {
  const config = testConfig(tempDir(t), settings);
  const daemon = await startDaemon(config, { logger: createLogger('silent') });
  t.after(() => daemon.stop('test finished'));
  return daemon;
}
