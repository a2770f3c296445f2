import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { z } from 'zod';
import { HolePuncher } from '../src/node/holepunch/hole-puncher.ts';
import {
  DuplicateProtocolError,
  type ProtocolLimits,
  ProtocolRegistry,
  type ProtocolStats,
  type StreamOutcome,
  UNBOUNDED,
  UNIDENTIFIED_PROTOCOL,
} from '../src/node/lifecycle/protocol-registry.ts';
import { ObservedAddresses } from '../src/node/nat/observed-addresses.ts';
import { ReachabilityService } from '../src/node/nat/reachability.ts';
import { RelayServer } from '../src/node/relay/relay-server.ts';
import { RelayedTransport } from '../src/node/relay/relayed-transport.ts';
import { MessageChannel } from '../src/node/wire/channel.ts';
import { ReadTimeoutError, RemoteRefusedError } from '../src/node/wire/errors.ts';
import { encodeFrame } from '../src/node/wire/framing.ts';
import { type WireMessage, holePunchConnectMessage, holePunchSyncMessage } from '../src/node/wire/messages.ts';
import { connectionManagerUnderTest } from './helpers/components.ts';
import { type MemoryConnection, MemoryNetwork, connectionPair } from './helpers/memory-transport.ts';

/** A peer with an identity of its own (the registry never checks keys: the transport proved them). */
function fakePeer(host: string) {
  const publicKey = randomBytes(32);
  return { identity: { peerId: randomBytes(20).toString('hex'), publicKey }, address: { host, port: 4000 } };
}

const local = fakePeer('192.0.2.1');

/**
 * One connection from a peer to the registry's side: every stream the peer opens is accepted by
 * `registry` (as the connection manager does), its outcome kept.
 */
function connectPeer(registry: ProtocolRegistry, options: { viaRelay?: boolean } = {}) {
  const peer = fakePeer(`192.0.2.${10 + Math.floor(Math.random() * 200)}`);
  const [theirs, ours]: [MemoryConnection, MemoryConnection] = connectionPair(peer, local, { viaRelay: options.viaRelay ?? false });
  const outcomes: Array<Promise<StreamOutcome>> = [];
  ours.onStream((stream) => outcomes.push(registry.accept(ours, new MessageChannel(stream))));
  return {
    peerId: peer.identity.peerId,
    outcomes,
    /** Opens a stream and sends `first` on it (unless it is undefined). */
    async open(first?: WireMessage): Promise<MessageChannel> {
      const channel = new MessageChannel(await theirs.openStream());
      if (first) await channel.send(first);
      return channel;
    },
    async openRaw(bytes: Buffer): Promise<MessageChannel> {
      const stream = await theirs.openStream();
      const writer = stream.writable.getWriter();
      await writer.write(bytes);
      writer.releaseLock();
      return new MessageChannel(stream);
    },
  };
}

/** The error code the peer got back on `channel`. */
async function refusal(channel: MessageChannel): Promise<string> {
  const error = await channel.receiveAny().then(
    () => assert.fail('expected an error frame'),
    (e: unknown) => e,
  );
  assert.ok(error instanceof RemoteRefusedError, `an error frame, not ${String(error)}`);
  return error.remoteCode;
}

function refusedOf(registry: ProtocolRegistry, protocol: string): ProtocolStats['refused'] {
  const stats = registry.stats.find((s) => s.protocol === protocol);
  assert.ok(stats, `stats for ${protocol}`);
  return stats.refused;
}

/** A handler that holds its stream until `release()`; `started` resolves as each stream arrives. */
function holdingHandler() {
  const waiting: Array<() => void> = [];
  let arrived: () => void = () => {};
  let next = new Promise<void>((resolve) => (arrived = resolve));
  return {
    handler: async () => {
      arrived();
      next = new Promise<void>((resolve) => (arrived = resolve));
      await new Promise<void>((resolve) => waiting.push(resolve));
    },
    started: () => next,
    release: () => {
      for (const resolve of waiting.splice(0)) resolve();
    },
  };
}

const sync: WireMessage = { type: 'holepunch_sync' };

describe('protocol registry', () => {
  it('refuses a second registration of one message type with a typed error, and allows it again once unregistered', async () => {
    const registry = new ProtocolRegistry();
    const unregister = registry.handle(holePunchSyncMessage, () => {});
    assert.throws(
      () => registry.handle(holePunchSyncMessage, () => {}),
      (error: unknown) =>
        error instanceof DuplicateProtocolError && error.code === 'PROTOCOL_DUPLICATE' && error.protocol === 'holepunch_sync',
    );
    assert.deepEqual(registry.registered, ['holepunch_sync']);
    unregister();
    assert.deepEqual(registry.registered, []);
    // Unregistered: a stream of that type is a protocol nobody serves.
    const peer = connectPeer(registry);
    assert.equal(await refusal(await peer.open(sync)), 'PROTOCOL_UNEXPECTED_MESSAGE');
    assert.equal(refusedOf(registry, UNIDENTIFIED_PROTOCOL).unknown_protocol, 1);
    registry.handle(holePunchSyncMessage, () => {});
    assert.deepEqual(registry.registered, ['holepunch_sync']);
  });

  it('hands the handler the first message parsed by its schema, typed as its wire message', async () => {
    const registry = new ProtocolRegistry();
    const received: string[][] = [];
    registry.handle(holePunchConnectMessage, async (message, connection, channel) => {
      // Typed: `addresses` is a string[] here, no cast (the typecheck is part of this test).
      const addresses: string[] = message.addresses;
      received.push(addresses);
      assert.equal(Object.hasOwn(message, 'extra'), false, 'undeclared keys are not passed on');
      await channel.sendFinal({ type: 'holepunch_connect', addresses: [`${connection.remoteAddress.host}:1`] });
      await channel.finish();
    });
    const peer = connectPeer(registry);
    const channel = await peer.open({ type: 'holepunch_connect', addresses: ['192.0.2.7:9'], extra: 1 } as WireMessage);
    const answer = await channel.receive(holePunchConnectMessage, 'holepunch_connect');
    await channel.finish();
    assert.deepEqual(received, [['192.0.2.7:9']]);
    assert.equal(answer.addresses.length, 1);
    assert.deepEqual(await peer.outcomes[0], { ok: true, protocol: 'holepunch_connect' });
    const stats = registry.stats.find((s) => s.protocol === 'holepunch_connect');
    assert.deepEqual([stats?.served, stats?.active], [1, 0]);
  });

  it('answers an invalid first message with the typed error, counts it, and never runs the handler', async () => {
    const registry = new ProtocolRegistry();
    let ran = 0;
    registry.handle(holePunchConnectMessage, () => {
      ran += 1;
    });
    const peer = connectPeer(registry);
    // A known type whose body does not fit its schema: counted under its protocol.
    const invalid = await peer.open({ type: 'holepunch_connect', addresses: 'not a list' } as unknown as WireMessage);
    assert.equal(await refusal(invalid), 'PROTOCOL_MALFORMED');
    // A frame that is not JSON, and a JSON value without a type: no protocol to count them under.
    assert.equal(await refusal(await peer.openRaw(encodeFrame(Buffer.from('{not json')))), 'PROTOCOL_MALFORMED');
    assert.equal(await refusal(await peer.openRaw(encodeFrame(Buffer.from('[1,2]')))), 'PROTOCOL_MALFORMED');
    assert.equal(ran, 0);
    assert.equal(refusedOf(registry, 'holepunch_connect').malformed, 1);
    assert.equal(refusedOf(registry, UNIDENTIFIED_PROTOCOL).malformed, 2);
    const outcomes = await Promise.all(peer.outcomes);
    assert.deepEqual(
      outcomes.map((o) => [o.ok, o.protocol]),
      [
        [false, 'holepunch_connect'],
        [false, UNIDENTIFIED_PROTOCOL],
        [false, UNIDENTIFIED_PROTOCOL],
      ],
    );
  });

  it('a handler that fails (or throws at once) ends its stream and is reported, not thrown', async () => {
    const registry = new ProtocolRegistry();
    registry.handle(holePunchSyncMessage, () => {
      throw new TypeError('a bug of ours');
    });
    const peer = connectPeer(registry);
    const channel = await peer.open(sync);
    await assert.rejects(channel.receiveAny(), 'the stream is reset (an untyped error is not sent to peers)');
    const outcome = await peer.outcomes[0];
    assert.ok(outcome && !outcome.ok && outcome.error instanceof TypeError);
    assert.equal(registry.stats.find((s) => s.protocol === 'holepunch_sync')?.active, 0, 'its stream slot is released');
  });

  it('refuses a stream past the per-peer limit, counted, while other peers are still served', async () => {
    const registry = new ProtocolRegistry();
    const held = holdingHandler();
    registry.handle(holePunchSyncMessage, held.handler, { maxStreamsPerPeer: 1 });
    const first = connectPeer(registry);
    const other = connectPeer(registry);
    let started = held.started();
    await first.open(sync);
    await started;
    assert.equal(await refusal(await first.open(sync)), 'PROTOCOL_STREAM_LIMIT');
    started = held.started();
    await other.open(sync);
    await started;
    assert.deepEqual(refusedOf(registry, 'holepunch_sync'), {
      malformed: 0,
      timeout: 0,
      unknown_protocol: 0,
      access: 0,
      peer_limit: 1,
      stream_limit: 0,
    });
    assert.equal(registry.stats.find((s) => s.protocol === 'holepunch_sync')?.active, 2);
    held.release();
    await Promise.all([...first.outcomes, ...other.outcomes]);
    // Released: the first peer may open one again.
    started = held.started();
    await first.open(sync);
    await started;
    held.release();
  });

  it('refuses a stream past the limit for all peers together, counted', async () => {
    const registry = new ProtocolRegistry();
    const held = holdingHandler();
    registry.handle(holePunchSyncMessage, held.handler, { maxStreams: 2, maxStreamsPerPeer: UNBOUNDED });
    const a = connectPeer(registry);
    const b = connectPeer(registry);
    for (const peer of [a, a]) {
      const started = held.started();
      await peer.open(sync);
      await started;
    }
    assert.equal(await refusal(await b.open(sync)), 'PROTOCOL_STREAM_LIMIT');
    assert.equal(refusedOf(registry, 'holepunch_sync').stream_limit, 1);
    assert.equal(refusedOf(registry, 'holepunch_sync').peer_limit, 0);
    held.release();
  });

  it('answers a stream that stays silent past the first-message deadline, counted', async () => {
    const registry = new ProtocolRegistry({ firstMessageTimeoutMs: 100 });
    registry.handle(holePunchSyncMessage, () => {});
    const peer = connectPeer(registry);
    const started = performance.now();
    assert.equal(await refusal(await peer.open()), 'PROTOCOL_TIMEOUT');
    const elapsed = performance.now() - started;
    assert.ok(elapsed >= 90 && elapsed < 1_000, `answered after the registry's deadline (${Math.round(elapsed)} ms)`);
    assert.equal(refusedOf(registry, UNIDENTIFIED_PROTOCOL).timeout, 1);
  });

  it("applies a protocol's read deadline to the reads of its handler that name none", async () => {
    const registry = new ProtocolRegistry();
    let failure: unknown;
    registry.handle(
      holePunchConnectMessage,
      async (_message, _connection, channel) => {
        await channel.receive(holePunchSyncMessage, 'holepunch_sync').catch((error: unknown) => {
          failure = error;
          throw error;
        });
      },
      { readTimeoutMs: 100 },
    );
    const peer = connectPeer(registry);
    const channel = await peer.open({ type: 'holepunch_connect', addresses: [] });
    assert.equal(await refusal(channel), 'PROTOCOL_TIMEOUT');
    assert.ok(failure instanceof ReadTimeoutError && failure.timeoutMs === 100, `the protocol's deadline: ${String(failure)}`);
  });

  for (const [access, refusedVia, servedVia] of [
    ['direct', true, false],
    ['relayed', false, true],
  ] as const) {
    it(`access '${access}': refuses a stream over a ${refusedVia ? 'relayed' : 'direct'} connection, serves it over a ${servedVia ? 'relayed' : 'direct'} one`, async () => {
      const registry = new ProtocolRegistry();
      const limits: Partial<ProtocolLimits> = { access };
      let served = 0;
      registry.handle(
        holePunchSyncMessage,
        () => {
          served += 1;
        },
        limits,
      );
      const refused = connectPeer(registry, { viaRelay: refusedVia });
      assert.equal(await refusal(await refused.open(sync)), 'PROTOCOL_ACCESS_DENIED');
      const allowed = connectPeer(registry, { viaRelay: servedVia });
      await allowed.open(sync);
      assert.deepEqual(await allowed.outcomes[0], { ok: true, protocol: 'holepunch_sync' });
      assert.equal(served, 1);
      assert.equal(refusedOf(registry, 'holepunch_sync').access, 1);
    });
  }

  it("serves 'any' protocol over direct and relayed connections alike", async () => {
    const registry = new ProtocolRegistry();
    registry.handle(z.object({ type: z.literal('test_any') }), () => {});
    for (const viaRelay of [false, true]) {
      const peer = connectPeer(registry, { viaRelay });
      await peer.open({ type: 'test_any' } as unknown as WireMessage);
      assert.deepEqual(await peer.outcomes[0], { ok: true, protocol: 'test_any' });
    }
  });

  it('the components register their protocols at start and remove them at stop', async (t) => {
    const network = new MemoryNetwork();
    const node = connectionManagerUnderTest(t, network);
    const { connections, protocols, bus, logger } = node;
    assert.deepEqual(protocols.registered, ['identity'], 'the connection manager registers the exchange at start');
    const components = [
      new ReachabilityService({
        mode: 'auto',
        connections,
        protocols,
        probe: () => Promise.resolve(false),
        bus,
        logger,
        observed: new ObservedAddresses(() => node.transport.port),
        recheckIntervalMs: 60_000,
        unsettledRecheckIntervalMs: 60_000,
      }),
      new RelayServer({
        enabled: () => true,
        connections,
        protocols,
        bus,
        logger,
        limits: { maxSessions: 1, maxCircuitsPerPeer: 1, maxCircuitBytes: 1024, maxCircuitDurationMs: 1000 },
        keepaliveIntervalMs: 1000,
        ownAddress: () => null,
      }),
      new RelayedTransport({ identity: node.identity, connections, protocols, logger }),
      new HolePuncher({ connections, protocols, sendRaw: () => Promise.resolve(), bus, logger, ownAddresses: () => [] }),
    ];
    assert.deepEqual(protocols.registered, ['identity'], 'nothing is registered by a constructor');
    for (const component of components) component.start();
    assert.deepEqual(protocols.registered.sort(), [
      'dialback_request',
      'holepunch_connect',
      'identity',
      'relay_connect',
      'relay_incoming',
      'relay_register',
    ]);
    // Started twice (a second node's component on the same registry): a typed error, not a replacement.
    assert.throws(() => components[3]?.start(), DuplicateProtocolError);
    for (const component of [...components].reverse()) component.stop();
    assert.deepEqual(protocols.registered, ['identity']);
    await connections.stop();
    assert.deepEqual(protocols.registered, []);
  });
});
