import type { z } from 'zod';
import { RemoteNetworkError } from '../errors.ts';
import type { PeerStream } from '../quic/types.ts';
import { READ_TIMEOUT_MS } from './constants.ts';
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

  constructor(private readonly stream: PeerStream) {
    this.reader = new FrameReader(stream.readable);
    this.writer = stream.writable.getWriter();
  }

  async send(message: WireMessage): Promise<void> {
    await this.writer.write(encodeFrame(Buffer.from(JSON.stringify(message))));
  }

  /** The next message, whatever its type (a stream's first message selects its handler). */
  async receiveAny(timeoutMs = READ_TIMEOUT_MS): Promise<{ type: string; body: Record<string, unknown> }> {
    const payload = await this.reader.next(timeoutMs);
    if (payload === null) throw new StreamEndedError('stream ended before a message');
    let body: unknown;
    try {
      body = JSON.parse(payload.toString('utf8'));
    } catch {
      throw new MalformedMessageError('frame is not JSON');
    }
    if (body === null || typeof body !== 'object' || Array.isArray(body) || typeof (body as { type?: unknown }).type !== 'string') {
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

  async receive<T>(schema: z.ZodType<T>, type: string, timeoutMs = READ_TIMEOUT_MS): Promise<T> {
    const message = await this.receiveAny(timeoutMs);
    if (message.type !== type) throw new UnexpectedMessageError(`expected ${type}, got ${message.type.slice(0, 40)}`);
    return parse(schema, message.body, type);
  }

  /**
   * Ends the conversation cleanly: closes our direction and reads the peer's end. QUIC returns a
   * stream's credit only once both directions are finished, so a conversation that never reads
   * the peer's FIN leaks one stream each time, and a connection runs out of streams.
   */
  async finish(timeoutMs = READ_TIMEOUT_MS): Promise<void> {
    await this.writer.close().catch(() => {});
    const extra = await this.reader.next(timeoutMs);
    if (extra !== null) throw new UnexpectedMessageError('a message after the end of the conversation');
  }

  /** The raw stream from here on (see FrameReader.detach); the channel must not be used after. */
  detach(): PeerStream {
    this.writer.releaseLock();
    return { readable: this.reader.detach(), writable: this.stream.writable, cancel: (reason) => this.stream.cancel(reason) };
  }

  /**
   * Ends a failed conversation: tells the peer what went wrong (best effort; not when it was the
   * peer who refused) and resets the stream.
   */
  async fail(error: unknown): Promise<void> {
    if (error instanceof RemoteNetworkError && !(error instanceof RemoteRefusedError)) {
      const frame = encodeFrame(Buffer.from(JSON.stringify({ type: 'error', code: error.code, message: error.message.slice(0, 500) })));
      await this.writer.write(frame).catch(() => {});
    }
    this.stream.cancel(error);
  }
}

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
