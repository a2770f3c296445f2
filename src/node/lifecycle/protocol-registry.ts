import type { z } from 'zod';
import { RemoteNetworkError } from '../base/errors.ts';
import type { PeerConnection } from '../quic/types.ts';
import { type MessageChannel, isProtocolError, parse } from '../wire/channel.ts';
import { READ_TIMEOUT_MS } from '../wire/constants.ts';
import { ReadTimeoutError, UnexpectedMessageError } from '../wire/errors.ts';

/** A limit that does not bind (the protocol's own limits, or the connection limits, bound it). */
export const UNBOUNDED = Number.POSITIVE_INFINITY;
/** Streams of one protocol one peer may have open at once, unless the protocol says otherwise. */
export const DEFAULT_MAX_STREAMS_PER_PEER = 16;
/** Streams of one protocol open at once from all peers together, unless the protocol says otherwise. */
export const DEFAULT_MAX_STREAMS = 1024;

/**
 * Who may open a protocol: `any` peer over any connection (relayed ones included), `direct`
 * connections only (what a relayed peer must not reach: the relay itself, dial-backs), or
 * `relayed` connections only (hole punching, which upgrades a relayed connection).
 */
export type ProtocolAccess = 'any' | 'direct' | 'relayed';

export interface ProtocolLimits {
  readonly access: ProtocolAccess;
  readonly maxStreamsPerPeer: number;
  readonly maxStreams: number;
  /** Default deadline of every read after the first message (a handler may pass its own). */
  readonly readTimeoutMs: number;
}

export const DEFAULT_PROTOCOL_LIMITS: ProtocolLimits = {
  access: 'any',
  maxStreamsPerPeer: DEFAULT_MAX_STREAMS_PER_PEER,
  maxStreams: DEFAULT_MAX_STREAMS,
  readTimeoutMs: READ_TIMEOUT_MS,
};

/** Why a stream was refused before its handler ran. */
export type ProtocolRefusalReason = 'malformed' | 'timeout' | 'unknown_protocol' | 'access' | 'peer_limit' | 'stream_limit';
const REFUSAL_REASONS: readonly ProtocolRefusalReason[] = [
  'malformed',
  'timeout',
  'unknown_protocol',
  'access',
  'peer_limit',
  'stream_limit',
];

/**
 * Refusals counted before the stream's protocol is known (no message in time, a frame that is not
 * a message, a type nobody handles): a peer names the type, so it is never a key of its own.
 */
export const UNIDENTIFIED_PROTOCOL = '(unidentified)';

/** The schema of a protocol's first message: an object whose `type` is one literal. */
export type ProtocolSchema<M extends { readonly type: string }> = z.ZodType<M> & {
  readonly shape: { readonly type: z.ZodLiteral<M['type']> };
};

/** Serves one inbound stream, its first message already validated (and typed by its schema). */
export type ProtocolHandler<M> = (message: M, connection: PeerConnection, channel: MessageChannel) => Promise<void> | void;

export interface ProtocolStats {
  readonly protocol: string;
  /** Streams being served now. */
  readonly active: number;
  readonly served: number;
  readonly refused: Readonly<Record<ProtocolRefusalReason, number>>;
}

/** How one inbound stream ended: served, or failed (answered with an error frame, or reset). */
export type StreamOutcome =
  { readonly ok: true; readonly protocol: string } | { readonly ok: false; readonly protocol: string; readonly error: unknown };

export class DuplicateProtocolError extends RemoteNetworkError {
  readonly code = 'PROTOCOL_DUPLICATE';

  constructor(readonly protocol: string) {
    super(`a handler for ${protocol} is already registered`);
  }
}

/** A protocol's concurrent-stream limit is reached (for this peer, or for everyone). */
export class ProtocolStreamLimitError extends RemoteNetworkError {
  readonly code = 'PROTOCOL_STREAM_LIMIT';

  constructor(
    readonly protocol: string,
    readonly scope: 'peer' | 'node',
    readonly limit: number,
  ) {
    super(scope === 'peer' ? `at most ${limit} ${protocol} streams per peer at once` : `at most ${limit} ${protocol} streams at once`);
  }
}

/** The protocol is not served over this kind of connection (see ProtocolAccess). */
export class ProtocolAccessError extends RemoteNetworkError {
  readonly code = 'PROTOCOL_ACCESS_DENIED';

  constructor(
    readonly protocol: string,
    readonly access: Exclude<ProtocolAccess, 'any'>,
  ) {
    super(`${protocol} is served over ${access} connections only`);
  }
}

export interface ProtocolRegistryOptions {
  /** How long a new stream may stay silent before its first message (its protocol is not known yet). */
  readonly firstMessageTimeoutMs?: number;
}

interface Registration {
  readonly schema: z.ZodType<{ readonly type: string }>;
  readonly handler: ProtocolHandler<{ readonly type: string }>;
  readonly limits: ProtocolLimits;
  active: number;
  readonly activeByPeer: Map<string, number>;
}

interface Counts {
  served: number;
  readonly refused: Record<ProtocolRefusalReason, number>;
}

/**
 * Inbound streams, by the type of their first message: each protocol registers a schema and a
 * handler once (a second registration is an error, not a replacement) and gets the message
 * validated and typed. Before a handler runs, its protocol's limits apply: who may open it and how
 * many streams of it may be open at once, per peer and in all. What fails is answered on the
 * stream with an `error` frame (MessageChannel.fail), counted, and told to the caller; nothing a
 * peer sends gets past here as an exception.
 */
export class ProtocolRegistry {
  private readonly protocols = new Map<string, Registration>();
  /** Kept across unregistering, so a protocol's refusals stay visible. */
  private readonly counts = new Map<string, Counts>();
  private readonly firstMessageTimeoutMs: number;

  constructor(options: ProtocolRegistryOptions = {}) {
    this.firstMessageTimeoutMs = options.firstMessageTimeoutMs ?? READ_TIMEOUT_MS;
  }

  /** Registers the protocol whose streams start with `schema`'s message; returns its unregistration. */
  handle<M extends { readonly type: string }>(
    schema: ProtocolSchema<M>,
    handler: ProtocolHandler<M>,
    limits: Partial<ProtocolLimits> = {},
  ): () => void {
    const type = schema.shape.type.value;
    if (this.protocols.has(type)) throw new DuplicateProtocolError(type);
    const registration: Registration = {
      schema,
      // The registry calls it only with what `schema` parsed.
      handler: handler as ProtocolHandler<{ readonly type: string }>,
      limits: { ...DEFAULT_PROTOCOL_LIMITS, ...limits },
      active: 0,
      activeByPeer: new Map(),
    };
    this.protocols.set(type, registration);
    this.countsOf(type);
    return () => {
      if (this.protocols.get(type) === registration) this.protocols.delete(type);
    };
  }

  has(type: string): boolean {
    return this.protocols.has(type);
  }

  /** The registered protocols, by first-message type. */
  get registered(): string[] {
    return [...this.protocols.keys()];
  }

  get stats(): ProtocolStats[] {
    return [...this.counts].map(([protocol, counts]) => ({
      protocol,
      active: this.protocols.get(protocol)?.active ?? 0,
      served: counts.served,
      refused: { ...counts.refused },
    }));
  }

  /** Serves one inbound stream: reads its first message, checks the limits, runs the handler. */
  async accept(connection: PeerConnection, channel: MessageChannel): Promise<StreamOutcome> {
    let protocol = UNIDENTIFIED_PROTOCOL;
    let admitted: Registration | undefined;
    try {
      const first = await this.receiveFirst(channel);
      const registration = this.protocols.get(first.type);
      if (!registration) {
        this.refused(UNIDENTIFIED_PROTOCOL, 'unknown_protocol');
        throw new UnexpectedMessageError(`no protocol starts with a ${first.type.slice(0, 40)} message`);
      }
      protocol = first.type;
      const message = this.validate(protocol, registration, first.body);
      this.admit(protocol, registration, connection);
      admitted = registration;
      channel.setReadTimeout(registration.limits.readTimeoutMs);
      await registration.handler(message, connection, channel);
      this.countsOf(protocol).served += 1;
      return { ok: true, protocol };
    } catch (error) {
      await channel.fail(error);
      return { ok: false, protocol, error };
    } finally {
      if (admitted) release(admitted, connection.remotePeerId);
    }
  }

  private async receiveFirst(channel: MessageChannel): Promise<{ type: string; body: Record<string, unknown> }> {
    try {
      return await channel.receiveAny(this.firstMessageTimeoutMs);
    } catch (error) {
      if (error instanceof ReadTimeoutError) this.refused(UNIDENTIFIED_PROTOCOL, 'timeout');
      else if (isProtocolError(error)) this.refused(UNIDENTIFIED_PROTOCOL, 'malformed');
      throw error;
    }
  }

  private validate(protocol: string, registration: Registration, body: unknown): { readonly type: string } {
    try {
      return parse(registration.schema, body, protocol);
    } catch (error) {
      this.refused(protocol, 'malformed');
      throw error;
    }
  }

  /** Takes one of the protocol's stream slots for the peer, or refuses the stream. */
  private admit(protocol: string, registration: Registration, connection: PeerConnection): void {
    const { access, maxStreamsPerPeer, maxStreams } = registration.limits;
    if ((access === 'direct' && connection.viaRelay) || (access === 'relayed' && !connection.viaRelay)) {
      this.refused(protocol, 'access');
      throw new ProtocolAccessError(protocol, access);
    }
    const peerId = connection.remotePeerId;
    const ofPeer = registration.activeByPeer.get(peerId) ?? 0;
    if (ofPeer >= maxStreamsPerPeer) {
      this.refused(protocol, 'peer_limit');
      throw new ProtocolStreamLimitError(protocol, 'peer', maxStreamsPerPeer);
    }
    if (registration.active >= maxStreams) {
      this.refused(protocol, 'stream_limit');
      throw new ProtocolStreamLimitError(protocol, 'node', maxStreams);
    }
    registration.active += 1;
    registration.activeByPeer.set(peerId, ofPeer + 1);
  }

  private refused(protocol: string, reason: ProtocolRefusalReason): void {
    this.countsOf(protocol).refused[reason] += 1;
  }

  private countsOf(protocol: string): Counts {
    let counts = this.counts.get(protocol);
    if (!counts) {
      counts = { served: 0, refused: Object.fromEntries(REFUSAL_REASONS.map((r) => [r, 0])) as Record<ProtocolRefusalReason, number> };
      this.counts.set(protocol, counts);
    }
    return counts;
  }
}

function release(registration: Registration, peerId: string): void {
  registration.active -= 1;
  const left = (registration.activeByPeer.get(peerId) ?? 1) - 1;
  if (left <= 0) registration.activeByPeer.delete(peerId);
  else registration.activeByPeer.set(peerId, left);
}
