import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { z } from 'zod';
import type { PeerStream } from '../src/node/quic/types.ts';
import { FRAME_HEADER_BYTES, MAX_FRAME_BYTES } from '../src/node/wire/constants.ts';
import { FrameReader, encodeFrame } from '../src/node/wire/framing.ts';
import { startBenchNode } from './bench-node.ts';
import type { Figure } from './report.ts';

/**
 * MiB per stream. The issue's figure is 64 MiB over one stream, but at the library's ~1 MB/s that
 * is a minute per stream, too long for `npm run bench`: each mode sends two 8 MiB streams (in the
 * order raw, framed, framed, raw, so that drift over the run falls on both alike) and the 64 MiB
 * time is extrapolated from the rate. RN_BENCH_THROUGHPUT_MIB=64 measures the full size.
 */
export const THROUGHPUT_MIB = Number(process.env.RN_BENCH_THROUGHPUT_MIB ?? 8);
const MIB = 1024 * 1024;
/** Stream type of the benchmark's conversation (the first frame selects the handler). */
const BULK = 'bench_bulk';
/** The first message of a bulk stream: what follows and how much. */
const bulkMessage = z.object({ type: z.literal(BULK), mode: z.string(), bytes: z.number() });
/** A raw write is as large as a frame's payload, so both modes hand the library the same amount per call. */
const CHUNK_BYTES = MAX_FRAME_BYTES;
const WARM_UP_BYTES = 1 * MIB;

type Mode = 'raw' | 'framed';

export interface TransferResult {
  readonly mode: Mode;
  readonly bytes: number;
  readonly ms: number;
  /** Process CPU time (user + system, both nodes: they share the process) during the transfer. */
  readonly cpuMs: number;
  readonly mbPerS: number;
}

const control = (message: Record<string, unknown>) => encodeFrame(Buffer.from(JSON.stringify(message)));
const controlType = (frame: Buffer): unknown => (JSON.parse(frame.toString()) as { type?: unknown }).type;

/**
 * Receiving side. `raw` counts bytes as the library hands them over; `framed` reads them as our
 * length-prefixed frames with FrameReader (the node's own reading path). Either way it answers
 * `ready` first (so that setup stays out of the timing) and `done` after the last byte.
 */
async function receive(stream: PeerStream, mode: Mode, bytes: number): Promise<void> {
  const writer = stream.writable.getWriter();
  await writer.write(control({ type: 'ready' }));
  let received = 0;
  if (mode === 'raw') {
    const reader = stream.readable.getReader();
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) received += chunk.value.length;
  } else {
    const frames = new FrameReader(stream.readable);
    for (let frame = await frames.next(); frame !== null; frame = await frames.next()) received += frame.length;
  }
  if (received !== bytes) throw new Error(`received ${received} bytes, expected ${bytes}`);
  await writer.write(control({ type: 'done', received }));
  await writer.close();
}

/** Sending side: `bytes` in CHUNK_BYTES pieces, each one write (a frame is header + payload in one buffer). */
async function send(stream: PeerStream, mode: Mode, bytes: number): Promise<TransferResult> {
  const writer = stream.writable.getWriter();
  const replies = new FrameReader(stream.readable);
  await writer.write(control({ type: BULK, mode, bytes }));
  const ready = await replies.next();
  if (ready === null || controlType(ready) !== 'ready') throw new Error('receiver not ready');
  const payload = Buffer.alloc(CHUNK_BYTES, 0x5a);
  const cpu = process.cpuUsage();
  const start = performance.now();
  for (let sent = 0; sent < bytes; sent += CHUNK_BYTES) {
    const piece = payload.subarray(0, Math.min(CHUNK_BYTES, bytes - sent));
    // One awaited write per 256 KiB (the stream's backpressure), nothing per packet.
    await writer.write(mode === 'framed' ? encodeFrame(piece) : piece);
  }
  await writer.close();
  const done = await replies.next(60_000);
  const ms = performance.now() - start;
  const used = process.cpuUsage(cpu);
  if (done === null || controlType(done) !== 'done') throw new Error('no completion from the receiver');
  if ((await replies.next()) !== null) throw new Error('unexpected data after done');
  return { mode, bytes, ms, cpuMs: (used.user + used.system) / 1000, mbPerS: bytes / 1e6 / (ms / 1000) };
}

/** Two nodes on 127.0.0.1, one connection; runs `fn` with a transfer function, then stops both. */
export async function withBulkPair<T>(fn: (transfer: (mode: Mode, bytes: number) => Promise<TransferResult>) => Promise<T>): Promise<T> {
  const root = mkdtempSync(join(tmpdir(), 'rn-bench-bulk-'));
  const a = await startBenchNode(join(root, 'a'));
  const b = await startBenchNode(join(root, 'b'));
  try {
    b.protocols.handle(bulkMessage, async (first, _connection, channel) => {
      const mode = first.mode === 'framed' ? 'framed' : 'raw';
      await receive(channel.detach(), mode, first.bytes);
    });
    await a.connections.connect({ host: '127.0.0.1', port: b.quicPort }, b.peerId);
    const transfer = (mode: Mode, bytes: number) => a.connections.withPeerStream(b.peerId, (stream) => send(stream, mode, bytes));
    return await fn(transfer);
  } finally {
    await Promise.all([a.stop(), b.stop()]);
    rmSync(root, { recursive: true, force: true });
  }
}

const mbs = (r: TransferResult) => `${r.mbPerS.toFixed(2)} MB/s`;
const cpuPerMib = (r: TransferResult) => r.cpuMs / (r.bytes / MIB);

/** Both runs of one mode as one figure (bytes, time and CPU added up). */
function total(runs: readonly TransferResult[]): TransferResult {
  const bytes = runs.reduce((sum, r) => sum + r.bytes, 0);
  const ms = runs.reduce((sum, r) => sum + r.ms, 0);
  const cpuMs = runs.reduce((sum, r) => sum + r.cpuMs, 0);
  return { mode: runs[0]?.mode ?? 'raw', bytes, ms, cpuMs, mbPerS: bytes / 1e6 / (ms / 1000) };
}

/** Bulk throughput of one stream with our framing, against raw writes to the library's stream. */
export async function benchThroughput(mib = THROUGHPUT_MIB): Promise<Figure[]> {
  const bytes = Math.round(mib * MIB);
  return withBulkPair(async (transfer) => {
    await transfer('raw', WARM_UP_BYTES);
    await transfer('framed', WARM_UP_BYTES);
    const runs: TransferResult[] = [];
    for (const mode of ['raw', 'framed', 'framed', 'raw'] as const) runs.push(await transfer(mode, bytes));
    const raw = total(runs.filter((r) => r.mode === 'raw'));
    const framed = total(runs.filter((r) => r.mode === 'framed'));
    const size = `2 streams of ${mib} MiB each`;
    const at64 = (r: TransferResult) => `${((64 * MIB) / 1e6 / r.mbPerS).toFixed(0)} s`;
    return [
      {
        name: `one stream, our framing (${CHUNK_BYTES / 1024} KiB frames, one write each), ${size}`,
        value: mbs(framed),
        baseline: `raw ${CHUNK_BYTES / 1024} KiB writes straight to the library's stream: ${mbs(raw)}; framed/raw ${(framed.mbPerS / raw.mbPerS).toFixed(2)}x`,
      },
      {
        name: `process CPU time per MiB (both ends are in this process)`,
        value: `${cpuPerMib(framed).toFixed(0)} ms/MiB framed`,
        baseline: `raw ${cpuPerMib(raw).toFixed(0)} ms/MiB; CPU-bound (CPU ${(framed.cpuMs / framed.ms).toFixed(2)} s per s of transfer); framing adds ${FRAME_HEADER_BYTES} bytes per ${CHUNK_BYTES / 1024} KiB`,
      },
      {
        name: mib === 64 ? '64 MiB over one stream' : `64 MiB over one stream, extrapolated from the ${mib} MiB streams`,
        value: `${at64(framed)} framed`,
        baseline: `raw ${at64(raw)}; process CPU ${((cpuPerMib(framed) * 64) / 1000).toFixed(0)} s framed, ${((cpuPerMib(raw) * 64) / 1000).toFixed(0)} s raw`,
      },
    ];
  });
}

// `node --import tsx bench/throughput.ts [MiB] [raw|framed]`: one transfer on its own (for profiling).
if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const mib = Number(process.argv[2] ?? THROUGHPUT_MIB);
  const only = process.argv[3] as Mode | undefined;
  if (only) {
    const result = await withBulkPair(async (transfer) => {
      await transfer(only, WARM_UP_BYTES);
      return transfer(only, Math.round(mib * MIB));
    });
    console.log(`${only}: ${mib} MiB in ${(result.ms / 1000).toFixed(1)} s = ${mbs(result)}, CPU ${(result.cpuMs / 1000).toFixed(1)} s`);
  } else {
    for (const f of await benchThroughput(mib)) console.log(`- ${f.name}: ${f.value}${f.baseline ? `  (${f.baseline})` : ''}`);
  }
}
