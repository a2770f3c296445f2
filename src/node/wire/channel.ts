import type { z } from 'zod';
import { RemoteNetworkError } from '../base/errors.ts';
import type { PeerStream } from '../quic/types.ts';
import { FRAME_HEADER_BYTES, READ_TIMEOUT_MS } from './constants.ts';
import { MalformedMessageError, ProtocolError, RemoteRefusedError, StreamEndedError, UnexpectedMessageError } from './errors.ts';
import { FrameReader, encodeFrame } from './framing.ts';
import { type WireMessage, errorMessage } from './messages.ts';

/**
 * Typed messages over one stream: each frame is one JSON message, validated against the schema
 * of the type the conversation expects. A peer's `error` message surfaces as RemoteRefusedError.
 */
export class MessageChannel {
  private readonly reader: FrameReader;
  private readonly writer: WritableStreamDefaultWriter<Uint8Array>;
  /** Our side has ended (or is ending): nothing more can be written, not even an error frame. */
  private writeClosed = false;
  private failed = false;
  /** Deadline of a read that names none (a protocol may set its own, see ProtocolLimits). */
  private readTimeoutMs = READ_TIMEOUT_MS;
  /** The type of the conversation's first message, either way (what its bytes are counted under). */
  private protocol: string | undefined;

  constructor(private readonly stream: PeerStream) {
    this.reader = new FrameReader(stream.readable);
    this.writer = stream.writable.getWriter();
  }

  /** Several messages go out as one write, so they can share packets instead of one send each. */
  async send(...messages: WireMessage[]): Promise<void> {
    const frames = messages.map(frameOf);
    this.count(
      'sent',
      frames.reduce((sum, f) => sum + f.length, 0),
      messages[0]?.type,
    );
    await this.writer.write(frames.length === 1 ? frames[0] : Buffer.concat(frames));
  }

  /**
   * Writes the messages and ends our side in the same turn of the event loop, so the end leaves
   * in the packet that carries the last message. An end written on its own, after everything
   * before it had left, was at times never sent by the QUIC library (seen between lab nodes: the
   * peer waited for it until its read deadline), and it costs a packet of its own anyway.
   */
  async sendFinal(...messages: WireMessage[]): Promise<void> {
    await this.send(...messages);
    this.writeClosed = true;
    await this.writer.close();
  }

  /** The deadline of every later read that names none. */
  setReadTimeout(timeoutMs: number): void {
    this.readTimeoutMs = timeoutMs;
  }

  /** The next message, whatever its type (a stream's first message selects its handler). */
  async receiveAny(timeoutMs = this.readTimeoutMs): Promise<{ type: string; body: Record<string, unknown> }> {
    const payload = await this.reader.next(timeoutMs);
    if (payload === null) throw new StreamEndedError('stream ended before a message');
    let body: unknown;
    try {
      body = JSON.parse(payload.toString('utf8'));
    } catch {
      this.count('received', FRAME_HEADER_BYTES + payload.length, undefined);
      throw new MalformedMessageError('frame is not JSON');
    }
    const type = (body as { type?: unknown } | null)?.type;
    this.count('received', FRAME_HEADER_BYTES + payload.length, typeof type === 'string' ? type : undefined);
    if (body === null || typeof body !== 'object' || Array.isArray(body) || typeof type !== 'string') {
      throw new MalformedMessageError('message is not an object with a string type');
    }
    const typed = body as Record<string, unknown> & { type: string };
    if (typed.type === 'error') {
      const parsed = errorMessage.safeParse(typed);
      throw parsed.success
        ? new RemoteRefusedError(parsed.data.code, parsed.data.message)
        : new MalformedMessageError('malformed error message');
    }
    return { type: typed.type, body: typed };
  }

  async receive<T>(schema: z.ZodType<T>, type: string, timeoutMs = this.readTimeoutMs): Promise<T> {
    const message = await this.receiveAny(timeoutMs);
    if (message.type !== type) throw new UnexpectedMessageError(`expected ${type}, got ${message.type.slice(0, 40)}`);
    return parse(schema, message.body, type);
  }

  /**
   * Ends the conversation cleanly: closes our direction (unless `sendFinal` did) and reads the
   * peer's end. QUIC returns a
   * stream's credit only once both directions are finished, so a conversation that never reads
   * the peer's FIN leaks one stream each time, and a connection runs out of streams.
   */
  async finish(timeoutMs = this.readTimeoutMs): Promise<void> {
    if (!this.writeClosed) {
      this.writeClosed = true;
      await this.writer.close().catch(() => {});
    }
    const extra = await this.reader.next(timeoutMs);
    if (extra !== null) throw new UnexpectedMessageError('a message after the end of the conversation');
  }

  /** The raw stream from here on (see FrameReader.detach); the channel must not be used after. */
  detach(): PeerStream {
    this.writer.releaseLock();
    return { readable: this.reader.detach(), writable: this.stream.writable, cancel: (reason) => this.stream.cancel(reason) };
  }

  /**
   * Ends a failed conversation: tells the peer what went wrong (not when it was the peer who
   * refused) and closes the stream. The error frame is followed by the end of our side, which
   * QUIC delivers after it (a reset would discard whatever of the frame was still unsent), and
   * the peer is told to stop sending; without an error frame the stream is reset both ways.
   */
  async fail(error: unknown): Promise<void> {
    // Several layers may fail one conversation (a handler, then its dispatcher): the first ends it.
    if (this.failed) return;
    this.failed = true;
    if (!this.writeClosed && error instanceof RemoteNetworkError && !(error instanceof RemoteRefusedError)) {
      this.writeClosed = true;
      const frame = frameOf({ type: 'error', code: error.code, message: error.message.slice(0, 500) });
      this.count('sent', frame.length, 'error');
      await this.writer
        .write(frame)
        .then(() => this.writer.close())
        .catch(() => {});
    }
    // Our side is already finished when the frame went out; then this only stops the peer's.
    this.stream.cancel(error);
  }

  private count(direction: 'sent' | 'received', bytes: number, type: string | undefined): void {
    const traffic = this.stream.traffic;
    if (!traffic) return;
    this.protocol ??= type ?? 'unknown';
    traffic[direction](this.protocol, bytes);
  }
}

const frameOf = (message: WireMessage) => encodeFrame(Buffer.from(JSON.stringify(message)));

export function parse<T>(schema: z.ZodType<T>, body: unknown, type: string): T {
  const result = schema.safeParse(body);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new MalformedMessageError(`${type}: ${issue?.path.join('.') || 'message'}: ${issue?.message ?? 'invalid'}`);
  }
  return result.data;
}

export function isProtocolError(error: unknown): error is ProtocolError {
  return error instanceof ProtocolError;
}
