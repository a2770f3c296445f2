import { join } from 'node:path';
import { openDatabase } from '../../src/db/client.ts';
import { KnownPeersRepository } from '../../src/db/known-peers.ts';
import { EventBus } from '../../src/node/events/bus.ts';
import type { NodeEventMap } from '../../src/node/events/types.ts';
import { IdentityExchanger } from '../../src/node/exchange/identity-exchange.ts';
import { type NodeIdentity, loadOrCreateIdentity } from '../../src/node/identity/key-store.ts';
import { ConnectionManager, type ConnectionManagerOptions } from '../../src/node/lifecycle/connection-manager.ts';
import { ProtocolRegistry, type ProtocolRegistryOptions } from '../../src/node/lifecycle/protocol-registry.ts';
import type { Logger } from '../../src/node/base/logger.ts';
import { KnownPeersService } from '../../src/node/peers/known-peers-service.ts';
import { captureLogs, type LogLine } from './log-capture.ts';
import type { MemoryNetwork, MemoryTransport } from './memory-transport.ts';
import { TOPIC } from './peers.ts';
import { tempDir } from './temp.ts';

interface TestContext {
  after(fn: () => unknown): void;
}

/** What a component under test is built from: its own identity, bus, logger and peer store. */
export interface TestParts {
  readonly identity: NodeIdentity;
  readonly bus: EventBus<NodeEventMap>;
  readonly logger: Logger;
  readonly logs: LogLine[];
  readonly knownPeers: KnownPeersService;
}

/** A fresh identity (a real key file), a bus, a captured logger and a real SQLite peer store, closed after the test. */
export function testParts(t: TestContext): TestParts {
  const dir = tempDir(t);
  const { identity } = loadOrCreateIdentity(dir);
  const bus = new EventBus<NodeEventMap>();
  const { logger, lines } = captureLogs('debug');
  const database = openDatabase(join(dir, 'state.db'));
  t.after(() => database.close());
  const knownPeers = new KnownPeersService(new KnownPeersRepository(database.db, 1000, 1000), bus, identity.publicKey);
  return { identity, bus, logger, logs: lines, knownPeers };
}

export interface ManagerUnderTest extends TestParts {
  readonly connections: ConnectionManager;
  readonly protocols: ProtocolRegistry;
  readonly transport: MemoryTransport;
}

/**
 * A ConnectionManager alone, as the node builds it but over a MemoryTransport on `network`: the
 * real identity exchange (public, no DHT) and a real protocol registry. Started (unless `start: false`); stopped after the test.
 */
export function connectionManagerUnderTest(
  t: TestContext,
  network: MemoryNetwork,
  options: {
    host?: string;
    manager?: Partial<ConnectionManagerOptions>;
    registry?: ProtocolRegistryOptions;
    /** False: not started (nothing answers at its address until the test calls `connections.start()`). */
    start?: boolean;
    /** The identity the transport proves, when it is not the one the exchange claims (an impostor). */
    transportIdentity?: Pick<NodeIdentity, 'peerId' | 'publicKey'>;
  } = {},
): ManagerUnderTest {
  const parts = testParts(t);
  const transport = network.transport(options.transportIdentity ?? parts.identity, options.host);
  const protocols = new ProtocolRegistry(options.registry);
  const exchanger = new IdentityExchanger({
    local: {
      identity: parts.identity,
      dhtNodeId: () => '00'.repeat(20),
      nodeType: () => 'public',
      isRelay: () => false,
      topic: () => TOPIC,
      dhtPort: () => 0,
      listenAddresses: () => [`${transport.address.host}:${transport.address.port}`],
    },
    knownPeers: parts.knownPeers,
    maxPeersToShare: 50,
    sharePerMinute: 100,
  });
  const connections = new ConnectionManager({
    transport,
    exchanger,
    protocols,
    bus: parts.bus,
    logger: parts.logger,
    idleTimeoutMs: 60_000,
    cleanupIntervalMs: 60_000,
    maxConnections: 16,
    ownPeerId: parts.identity.peerId,
    ...options.manager,
  });
  if (options.start !== false) connections.start();
  t.after(() => connections.stop());
  return { ...parts, connections, protocols, transport };
}
