import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { loadOrCreateIdentity } from '../src/node/identity/key-store.ts';
import { createLogger } from '../src/node/base/logger.ts';
import { processFaults } from '../src/node/base/process-guard.ts';
import { QuicTransport } from '../src/node/quic/quic-transport.ts';
import type { PeerConnection } from '../src/node/quic/types.ts';
import { MessageChannel } from '../src/node/wire/channel.ts';
import { RemoteRefusedError } from '../src/node/wire/errors.ts';
import { encodeFrame } from '../src/node/wire/framing.ts';
import { startTestNode } from './helpers/daemon.ts';
import { usePrivateNetwork } from './helpers/network.ts';
import { tempDir } from './helpers/temp.ts';

const SEED = Number(process.env.FC_SEED ?? 20261202);

/** Every message type of the wire protocol (src/node/wire/messages.ts) with its declared fields. */
const MESSAGE_FIELDS: Record<string, readonly string[]> = {
  identity: [
    'protocol_version',
    'peer_id',
    'dht_node_id',
    'public_key',
    'node_type',
    'is_relay',
    'topic',
    'dht_port',
    'listen_addresses',
    'observed_address',
  ],
  known_peers: ['topic', 'peers', 'count'],
  error: ['code', 'message'],
  relay_register: ['peer_id'],
  relay_registered: ['session_id', 'relay_address', 'keepalive_interval'],
  relay_keepalive: ['session_id'],
  relay_keepalive_ack: ['session_id'],
  relay_connect: ['target_peer_id'],
  relay_incoming: ['source_peer_id'],
  relay_accept: [],
  relay_connected: [],
  circuit_hello: ['peer_id', 'public_key', 'nonce', 'purpose', 'connection_id'],
  circuit_proof: ['peer_id', 'public_key', 'nonce', 'signature'],
  circuit_finish: ['signature'],
  dialback_request: [],
  dialback_result: ['address', 'reached', 'reason'],
  holepunch_connect: ['addresses'],
  holepunch_sync: [],
};

/** What the node may answer: a message, the end of the stream, or a typed refusal. */
const TYPED_CODE = /^(PROTOCOL_[A-Z_]+|RELAY_[A-Z_]+|CIRCUIT_[A-Z_]+|DIALBACK_[A-Z_]+|HOLE_PUNCH_[A-Z_]+|IDENTITY_MISMATCH)$/;

describe('QUIC wire protocol: property-based messages of every schema', { timeout: 300_000 }, () => {
  const { settings } = usePrivateNetwork();

  it('answers 1 500 generated messages of every type with fields of every wrong type, typed, and keeps serving', async (t) => {
    const target = await startTestNode(t, settings({ 'relay.relay_mode': 'true' }));
    const { identity } = loadOrCreateIdentity(tempDir(t));
    const rogue = new QuicTransport({ identity, host: '127.0.0.1', port: 0, logger: createLogger('silent'), idleTimeoutMs: 30_000 });
    await rogue.start();
    t.after(() => rogue.stop());

    // Values that are sometimes right (ids, keys, addresses, enum words of the protocol, the two
    // peer ids on this connection) so generated conversations get past the schema now and then.
    const hex = (bytes: number) => fc.uint8Array({ minLength: bytes, maxLength: bytes }).map((b) => Buffer.from(b).toString('hex'));
    const leaf = fc.oneof(
      hex(8),
      hex(20),
      hex(32),
      hex(64),
      fc.constantFrom(
        identity.peerId,
        target.peerId,
        '127.0.0.1:1',
        `127.0.0.1:${target.quicPort}`,
        'public',
        'private',
        'control',
        'stream',
        'remote-network-mesh',
      ),
      fc.string({ maxLength: 40 }),
      fc.string({ minLength: 300, maxLength: 3000 }),
      fc.integer(),
      fc.double(),
      fc.boolean(),
      fc.constant(null),
    );
    const value = fc.oneof(leaf, fc.array(leaf, { maxLength: 60 }), fc.dictionary(fc.string({ maxLength: 10 }), leaf, { maxKeys: 5 }));
    const message = fc.constantFrom(...Object.keys(MESSAGE_FIELDS)).chain((type) =>
      fc.record({
        type: fc.oneof({ weight: 9, arbitrary: fc.constant<unknown>(type) }, value),
        fields: fc.record(Object.fromEntries(MESSAGE_FIELDS[type]!.map((f) => [f, fc.option(value, { nil: undefined })]))),
        extra: fc.dictionary(fc.string({ maxLength: 8 }), value, { maxKeys: 2 }),
        second: fc.option(fc.constantFrom(...Object.keys(MESSAGE_FIELDS)), { nil: undefined }),
      }),
    );
    const samples = fc.sample(message, { numRuns: 1_500, seed: SEED });

    const faultsBefore = processFaults();
    let connection: PeerConnection | undefined;
    const outcomes = new Map<string, number>();
    for (const sample of samples) {
      const body = { ...sample.extra, ...dropUndefined(sample.fields), type: sample.type };
      const frames = [encodeFrame(Buffer.from(JSON.stringify(body)))];
      if (sample.second) frames.push(encodeFrame(Buffer.from(JSON.stringify({ type: sample.second }))));
      connection ??= await rogue.dial({ host: '127.0.0.1', port: target.quicPort });
      const current = connection;
      let outcome: string;
      try {
        const stream = await current.openStream();
        const writer = stream.writable.getWriter();
        await writer.write(Buffer.concat(frames));
        // Our side ends with what we said: the node must never wait on us.
        await writer.close();
        writer.releaseLock();
        outcome = await new MessageChannel(stream).receiveAny(15_000).then(
          (answer) => `answer ${answer.type}`,
          (error: unknown) => (error instanceof RemoteRefusedError ? error.remoteCode : (error as Error).name),
        );
      } catch (error) {
        outcome = `local ${(error as Error).name}`;
      }
      if (/ErrorQUICConnection|ConnectionClosedError/.test(outcome)) {
        // The node closed the connection: say why (three protocol errors, or an identity it refused).
        outcome = `closed: ${await current.closed}`;
        connection = undefined;
      }
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    }
    t.diagnostic(`outcomes: ${JSON.stringify([...outcomes])}`);
    const untyped = [...outcomes].filter(
      ([o]) =>
        !(
          o.startsWith('answer ') ||
          TYPED_CODE.test(o) ||
          o === 'StreamEndedError' ||
          /^closed: .*(protocol errors|claimed peer id)/.test(o)
        ),
    );
    assert.deepEqual(untyped, [], `every answer is a message, an end or a typed code: ${JSON.stringify([...outcomes])}`);
    assert.ok((outcomes.get('PROTOCOL_MALFORMED') ?? 0) > 100, `schema refusals: ${JSON.stringify([...outcomes])}`);
    assert.ok((outcomes.get('PROTOCOL_UNEXPECTED_MESSAGE') ?? 0) > 100, 'messages that start no conversation');
    assert.equal(processFaults().unhandledRejections, faultsBefore.unhandledRejections, 'no handler let a rejection escape');

    // The node still serves an honest peer.
    const honest = await startTestNode(t, settings());
    const info = await honest.connections.connect({ host: '127.0.0.1', port: target.quicPort });
    assert.equal(info.peerId, target.peerId);
  });
});

function dropUndefined(fields: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined));
}
