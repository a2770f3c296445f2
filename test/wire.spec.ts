import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { PeerStream } from '../src/node/quic/types.ts';
import { MessageChannel } from '../src/node/wire/channel.ts';
import { MAX_FRAME_BYTES } from '../src/node/wire/constants.ts';
import {
  FrameTooLargeError,
  MalformedMessageError,
  ReadTimeoutError,
  RemoteRefusedError,
  StreamEndedError,
  UnexpectedMessageError,
} from '../src/node/wire/errors.ts';
import { FrameReader, encodeFrame } from '../src/node/wire/framing.ts';
import { knownPeersMessage } from '../src/node/wire/messages.ts';

/** Two ends of an in-memory duplex built from web streams (what a QUIC stream exposes). */
function streamPair(): [PeerStream, PeerStream] {
  // Buffered like a QUIC stream's window, so a write does not wait for the reader.
  const pipe = () => new TransformStream<Uint8Array, Uint8Array>({}, { highWaterMark: 64 }, { highWaterMark: 64 });
  const aToB = pipe();
  const bToA = pipe();
  const end = (readable: ReadableStream<Uint8Array>, writable: WritableStream<Uint8Array>): PeerStream => ({
    readable,
    writable,
    cancel: () => {
      void readable.cancel().catch(() => {});
      void writable.abort().catch(() => {});
    },
  });
  return [end(bToA.readable, aToB.writable), end(aToB.readable, bToA.writable)];
}

async function writeRaw(stream: PeerStream, ...chunks: Uint8Array[]): Promise<void> {
  const writer = stream.writable.getWriter();
  for (const chunk of chunks) await writer.write(chunk);
  writer.releaseLock();
}

describe('framing', () => {
  it('reassembles frames split across chunks and several frames in one chunk', async () => {
    const [a, b] = streamPair();
    const one = encodeFrame(Buffer.from('hello'));
    const two = encodeFrame(Buffer.from('world!'));
    const both = Buffer.concat([one, two]);
    const reader = new FrameReader(b.readable);
    await writeRaw(a, both.subarray(0, 3), both.subarray(3, 7), both.subarray(7));
    assert.equal((await reader.next())?.toString(), 'hello');
    assert.equal((await reader.next())?.toString(), 'world!');
    await a.writable.close();
    assert.equal(await reader.next(), null, 'clean end between frames');
  });

  it('refuses an oversized frame from its header, before reading the payload', async () => {
    const [a, b] = streamPair();
    const header = Buffer.alloc(4);
    header.writeUInt32BE(MAX_FRAME_BYTES + 1);
    await writeRaw(a, header);
    await assert.rejects(new FrameReader(b.readable).next(), FrameTooLargeError);
    assert.throws(() => encodeFrame(Buffer.alloc(MAX_FRAME_BYTES + 1)), FrameTooLargeError, 'nor do we send one');
  });

  it('reports a stream that ends inside a frame, and a read that times out', async () => {
    const [a, b] = streamPair();
    const frame = encodeFrame(Buffer.from('truncated'));
    await writeRaw(a, frame.subarray(0, 8));
    const reader = new FrameReader(b.readable);
    await assert.rejects(reader.next(50), ReadTimeoutError);
    await a.writable.close();
    await assert.rejects(reader.next(), StreamEndedError);
  });
});

describe('message channel', () => {
  it('validates each message against its schema and type', async () => {
    const [a, b] = streamPair();
    const sender = new MessageChannel(a);
    const receiver = new MessageChannel(b);
    await sender.send({ type: 'known_peers', topic: 't', peers: [], count: 0 });
    assert.deepEqual(await receiver.receive(knownPeersMessage, 'known_peers'), { type: 'known_peers', topic: 't', peers: [], count: 0 });

    await sender.send({ type: 'known_peers', topic: '', peers: [], count: 0 });
    await assert.rejects(receiver.receive(knownPeersMessage, 'known_peers'), MalformedMessageError);

    await sender.send({ type: 'known_peers', topic: 't', peers: Array.from({ length: 51 }, () => ({})), count: 51 });
    await assert.rejects(receiver.receive(knownPeersMessage, 'known_peers'), /peers/, 'more than 50 peers');

    await sender.send({ type: 'error', code: 'X', message: 'no' });
    await assert.rejects(receiver.receive(knownPeersMessage, 'known_peers'), RemoteRefusedError);

    // Raw frames from a peer that does not speak the protocol.
    const [raw, c] = streamPair();
    const rawReceiver = new MessageChannel(c);
    await writeRaw(raw, encodeFrame(Buffer.from('{"type":"identity"')));
    await assert.rejects(rawReceiver.receiveAny(), /not JSON/);
    await writeRaw(raw, encodeFrame(Buffer.from('[1,2]')));
    await assert.rejects(rawReceiver.receiveAny(), /not an object with a string type/);
    await writeRaw(raw, encodeFrame(Buffer.from('{"type":"gossip"}')));
    await assert.rejects(rawReceiver.receive(knownPeersMessage, 'known_peers'), UnexpectedMessageError);
  });

  it('tells the peer why before resetting the stream', async () => {
    const [a, b] = streamPair();
    const failing = new MessageChannel(a);
    const peer = new MessageChannel(b);
    const answer = peer.receiveAny();
    await failing.fail(new MalformedMessageError('bad input'));
    await assert.rejects(answer, (error: unknown) => {
      assert.ok(error instanceof RemoteRefusedError);
      assert.equal(error.remoteCode, 'PROTOCOL_MALFORMED');
      return true;
    });
  });
});
