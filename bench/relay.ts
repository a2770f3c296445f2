import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import type { RemoteNode } from '../src/node/node.ts';
import { encodeFrame } from '../src/node/wire/framing.ts';
import { startBenchNode as startNode } from './bench-node.ts';
import { type Figure, ms, percentile } from './report.ts';

const TRANSFER_BYTES = 8 * 1024 * 1024;
const CHUNK_BYTES = 64 * 1024;
const CIRCUITS = 60;
const RELAYED_CONNECTS = 15;
const RELAY_NODE = fileURLToPath(new URL('./fixtures/relay-node.ts', import.meta.url));

/** The relay runs in its own process: forwarding gets its own core, as on a real relay. */
async function spawnRelay(): Promise<{ child: ChildProcess; peerId: string; port: number }> {
  const child = spawn(process.execPath, ['--import', 'tsx', RELAY_NODE], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout ?? process.stdin });
  const first = await new Promise<string>((resolve, reject) => {
    lines.once('line', resolve);
    child.once('exit', (code) => reject(new Error(`relay process exited (${code}) before starting`)));
  });
  const { peerId, port } = JSON.parse(first) as { peerId: string; port: number };
  return { child, peerId, port };
}

/** Disconnects and waits until the other side has seen the close too (else it would keep the old one). */
async function disconnectBoth(a: RemoteNode, b: RemoteNode): Promise<void> {
  const gone = new Promise<void>((resolve) => {
    if (!b.connections.isConnected(a.peerId)) return resolve();
    const off = b.bus.on('connection.state.changed', () => {
      if (b.connections.isConnected(a.peerId)) return;
      off();
      resolve();
    });
  });
  await a.connections.disconnect(b.peerId);
  await gone;
}

/** A sink protocol for the measurement: reads everything, then answers with the byte count. */
function installSink(node: RemoteNode): void {
  node.protocols.handle(z.object({ type: z.literal('bench_sink') }), async (_sink, _connection, channel) => {
    const raw = channel.detach();
    const reader = raw.readable.getReader();
    let bytes = 0;
    for (;;) {
      const chunk = await reader.read();
      if (chunk.done) break;
      bytes += chunk.value.byteLength;
    }
    const answer = Buffer.alloc(8);
    answer.writeBigUInt64BE(BigInt(bytes));
    const writer = raw.writable.getWriter();
    await writer.write(answer);
    await writer.close();
  });
}

/** Bytes per second from `from` to `to` over one stream of their current connection. */
async function transfer(from: RemoteNode, to: RemoteNode, bytes: number): Promise<number> {
  return from.connections.withPeerStream(to.peerId, async (stream) => {
    const writer = stream.writable.getWriter();
    await writer.write(encodeFrame(Buffer.from(JSON.stringify({ type: 'bench_sink' }))));
    const chunk = Buffer.alloc(CHUNK_BYTES, 7);
    const started = performance.now();
    for (let sent = 0; sent < bytes; sent += CHUNK_BYTES) {
      await writer.ready;
      void writer.write(chunk).catch(() => {});
    }
    await writer.close();
    const reader = stream.readable.getReader();
    let answer = Buffer.alloc(0);
    for (;;) {
      const next = await reader.read();
      if (next.done) break;
      answer = Buffer.concat([answer, next.value]);
    }
    const elapsedS = (performance.now() - started) / 1000;
    const received = Number(answer.readBigUInt64BE(0));
    if (received !== bytes) throw new Error(`sink received ${received} of ${bytes} bytes`);
    return bytes / elapsedS;
  });
}

/**
 * Relay figures on loopback: throughput through a relay circuit against a direct QUIC stream
 * between the same two nodes, the set-up time of one circuit (each relayed stream is one, with its
 * end-to-end authentication), and a whole relayed connection (control circuit + exchange).
 */
export async function benchRelay(): Promise<Figure[]> {
  const root = mkdtempSync(join(tmpdir(), 'rn-bench-relay-'));
  const relay = await spawnRelay();
  const relayAddress = { host: '127.0.0.1', port: relay.port };
  const target = await startNode(join(root, 'target'), {
    'node.node_type': 'private',
    'peer_discovery.bootstrap_peers': `127.0.0.1:${relay.port}`,
  });
  const caller = await startNode(join(root, 'caller'));
  caller.holePuncher.stop(); // on loopback a punch would replace the relayed connection at once
  try {
    if (!target.relayClient.session) {
      await new Promise<void>((resolve) => {
        const off = target.bus.on('relay.session.registered', () => {
          off();
          resolve();
        });
      });
    }
    installSink(target);
    const route = { targetPeerId: target.peerId, relayPeerId: relay.peerId, relayAddress };
    const connectRelayed = () => caller.dialer.connectRelayed(route);

    await caller.connections.connect({ host: '127.0.0.1', port: target.quicPort }, target.peerId);
    await transfer(caller, target, CHUNK_BYTES * 16); // warm-up
    const direct = await transfer(caller, target, TRANSFER_BYTES);
    await disconnectBoth(caller, target);

    const connects: number[] = [];
    for (let i = 0; i < RELAYED_CONNECTS; i++) {
      const started = performance.now();
      await connectRelayed();
      connects.push(performance.now() - started);
      await disconnectBoth(caller, target);
    }
    await connectRelayed();
    const circuits: number[] = [];
    for (let i = 0; i < CIRCUITS; i++) {
      const started = performance.now();
      await caller.connections.withPeerStream(target.peerId, async (stream) => {
        circuits.push(performance.now() - started);
        stream.cancel('measured');
      });
    }
    await transfer(caller, target, CHUNK_BYTES * 16);
    const relayed = await transfer(caller, target, TRANSFER_BYTES);
    const share = relayed / direct;
    const mbps = (bytesPerS: number) => `${(bytesPerS / 1e6).toFixed(2)} MB/s`;
    return [
      {
        name: `throughput through a relay circuit (${TRANSFER_BYTES / 1024 / 1024} MiB, relay in its own process)`,
        value: `${mbps(relayed)} = ${(share * 100).toFixed(0)} % of direct`,
        target: '≥ 50 % of direct',
        met: share >= 0.5,
        baseline: `direct QUIC stream between the same nodes ${mbps(direct)}`,
      },
      {
        name: 'relay circuit set-up (one relayed stream: relay_connect, target accept, end-to-end signed nonces)',
        value: `p50 ${ms(percentile(circuits, 50))} / p99 ${ms(percentile(circuits, 99))}`,
      },
      {
        name: 'relayed connection set-up (direct relay connection reused; control circuit + identity exchange)',
        value: `p50 ${ms(percentile(connects, 50))} / p99 ${ms(percentile(connects, 99))}`,
      },
    ];
  } finally {
    await caller.stop();
    await target.stop();
    relay.child.kill('SIGTERM');
    rmSync(root, { recursive: true, force: true });
  }
}
