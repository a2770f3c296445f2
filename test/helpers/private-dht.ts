import { randomBytes } from 'node:crypto';
import type { HostPort } from '../../src/node/base/address.ts';
import { MainlineDht } from '../../src/node/dht/mainline-dht.ts';
import { createLogger } from '../../src/node/base/logger.ts';

export interface PrivateDht {
  readonly nodes: MainlineDht[];
  /** Bootstrap list for another node joining this DHT (as a config value or objects). */
  readonly bootstrap: HostPort[];
  readonly bootstrapSetting: string;
  stop(): Promise<void>;
}

/**
 * A private mainline DHT of `size` nodes on 127.0.0.1 (no public router is ever contacted: the
 * first node has no bootstrap, each later one bootstraps from the first three). Each node waits
 * for its own bootstrap lookup before the next starts, so every node ends up known to the others.
 */
export async function startPrivateDht(size: number): Promise<PrivateDht> {
  const logger = createLogger('silent');
  const nodes: MainlineDht[] = [];
  try {
    for (let i = 0; i < size; i++) {
      const bootstrap = nodes.slice(0, 3).map((n) => ({ host: '127.0.0.1', port: n.port }));
      const node = new MainlineDht({ nodeId: randomBytes(20), bootstrap, host: '127.0.0.1', port: 0, logger });
      await node.start();
      await node.whenReady();
      nodes.push(node);
    }
  } catch (error) {
    await Promise.all(nodes.map((n) => n.stop()));
    throw error;
  }
  const bootstrap = nodes.slice(0, 4).map((n) => ({ host: '127.0.0.1', port: n.port }));
  return {
    nodes,
    bootstrap,
    bootstrapSetting: bootstrap.map((b) => `${b.host}:${b.port}`).join(','),
    stop: async () => {
      await Promise.all(nodes.map((n) => n.stop()));
    },
  };
}
