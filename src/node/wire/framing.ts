import { FRAME_HEADER_BYTES, MAX_FRAME_BYTES, READ_TIMEOUT_MS } from './constants.ts';
import { withDeadline } from '../util/time-bounds.ts';
import { FrameTooLargeError, ReadTimeoutError, StreamEndedError } from './errors.ts';

/**
 * Length-prefixed frames over a byte stream: a 4-byte big-endian length, then the payload.
 * Reading checks the announced length against the limit before buffering any of the payload,
 * and every read has a deadline.
 */
export class FrameReader {
  private readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  private buffer: Buffer = Buffer.alloc(0);
  private ended = false;

  constructor(
    private readonly readable: ReadableStream<Uint8Array>,
    private readonly maxFrameBytes = MAX_FRAME_BYTES,
  ) {
    this.reader = readable.getReader();
  }

  /** The next frame's payload, or null when the stream ended cleanly between frames. */
  async next(timeoutMs = READ_TIMEOUT_MS): Promise<Buffer | null> {
    const deadline = Date.now() + timeoutMs;
    if (!(await this.fill(FRAME_HEADER_BYTES, deadline, timeoutMs))) {
      if (this.buffer.length === 0) return null;
      throw new StreamEndedError('stream ended inside a frame header');
    }
    const length = this.buffer.readUInt32BE(0);
    if (length > this.maxFrameBytes) throw new FrameTooLargeError(length, this.maxFrameBytes);
    if (!(await this.fill(FRAME_HEADER_BYTES + length, deadline, timeoutMs))) {
      throw new StreamEndedError(`stream ended inside a ${length}-byte frame`);
    }
    const payload = this.buffer.subarray(FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + length);
    this.buffer = this.buffer.subarray(FRAME_HEADER_BYTES + length);
    return payload;
  }

  release(): void {
    this.reader.releaseLock();
  }

  /**
   * Hands the rest of the byte stream to someone else (a relay splicing a circuit, or a protocol
   * that runs inside a circuit): bytes already read past the last frame come first, so nothing the
   * peer sent early is lost.
   */
  detach(): ReadableStream<Uint8Array> {
    const leftover = this.buffer;
    this.buffer = Buffer.alloc(0);
    this.reader.releaseLock();
    if (leftover.length === 0) return this.readable;
    const source = this.readable.getReader();
    return new ReadableStream<Uint8Array>({
      start: (controller) => controller.enqueue(leftover),
      pull: async (controller) => {
        const chunk = await source.read();
        if (chunk.done) controller.close();
        else controller.enqueue(chunk.value);
      },
      cancel: (reason) => source.cancel(reason),
    });
  }

  /**
   * Reads until `bytes` are buffered. The library delivers ~1.3 KB chunks: they are collected and
   * joined once, not re-copied on every chunk (which made a large frame quadratic).
   */
  private async fill(bytes: number, deadline: number, timeoutMs: number): Promise<boolean> {
    if (this.buffer.length >= bytes) return true;
    const chunks: Uint8Array[] = [this.buffer];
    let length = this.buffer.length;
    try {
      while (length < bytes) {
        if (this.ended) return false;
        const remaining = deadline - Date.now();
        if (remaining <= 0) throw new ReadTimeoutError(timeoutMs);
        const chunk = await withDeadline(this.reader.read(), remaining, () => new ReadTimeoutError(timeoutMs));
        if (chunk.done) {
          this.ended = true;
          return false;
        }
        chunks.push(chunk.value);
        length += chunk.value.byteLength;
      }
      return true;
    } finally {
      this.buffer = chunks.length === 1 ? this.buffer : Buffer.concat(chunks, length);
    }
  }
}

/** Header and payload in one buffer, so a frame is one write (no per-chunk awaits of ours). */
export function encodeFrame(payload: Uint8Array, maxFrameBytes = MAX_FRAME_BYTES): Buffer {
  if (payload.length > maxFrameBytes) throw new FrameTooLargeError(payload.length, maxFrameBytes);
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payload.length);
  frame.writeUInt32BE(payload.length, 0);
  frame.set(payload, FRAME_HEADER_BYTES);
  return frame;
}
