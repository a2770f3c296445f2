import { type RemoteInfo, type Socket, createSocket } from 'node:dgram';
import type { Logger } from '../base/logger.ts';
import type { Counter } from '../metrics/metrics.ts';
import { type BencodeValue, decodeKrpc } from './krpc-decode.ts';
import { type KrpcDropReason, checkKrpc, queryArguments } from './krpc-schemas.ts';

/** Inbound queries that passed the checks, by method (one of BEP 5 / BEP 44's, or `other`) and outcome. */
export type InboundQueryCounter = Counter<'method' | 'outcome'>;

/** What the guard has seen (the API shows it). */
export interface KrpcGuardStats {
  readonly received: number;
  readonly dropped: Readonly<Record<KrpcDropReason, number>>;
  /** Exceptions thrown by the DHT library while it handled a datagram that passed the checks. */
  readonly handlerFailures: number;
}

/** The datagram being handed to the library right now (its handlers run synchronously). */
export interface KrpcDispatch {
  readonly kind: 'query' | 'response' | 'error';
  readonly from: RemoteInfo;
  readonly message: BencodeValue;
}

export const NO_KRPC_TRAFFIC: KrpcGuardStats = {
  received: 0,
  dropped: { malformed: 0, envelope: 0, query: 0, response: 0, unsolicited: 0, error: 0 },
  handlerFailures: 0,
};

/** One log line per kind of problem per this period, with the count since the last one. */
const LOG_EVERY_MS = 60_000;

/**
 * Stands between the DHT's UDP socket and bittorrent-dht: every datagram is decoded strictly and
 * checked against the KRPC schemas first, and only then handed to the library; what fails is
 * dropped and counted. The library runs its whole handling of a datagram synchronously inside
 * the socket's `message` event (k-rpc-socket emits queries outside its own try/catch), so an
 * exception it throws is caught here too: logged, counted, and the socket keeps serving. Without
 * this, one spoofable datagram ended the process.
 */
export class KrpcGuard {
  readonly socket: Socket;
  private received = 0;
  private readonly dropped: Record<KrpcDropReason, number> = { ...NO_KRPC_TRAFFIC.dropped };
  private handlerFailures = 0;
  private current: KrpcDispatch | undefined;
  private readonly lastLogged = new Map<string, { at: number; suppressed: number }>();
  /** Which query of ours an answer from `from` answers, by transaction id (set once the library owns the socket). */
  pendingMethod: (transactionId: Buffer, from: RemoteInfo) => string | undefined = () => undefined;

  constructor(
    private readonly log: Logger,
    private readonly queries?: InboundQueryCounter,
  ) {
    this.socket = createSocket('udp4');
    const emit = this.socket.emit.bind(this.socket);
    // Node's dgram delivers each datagram as emit('message', buffer, rinfo).
    this.socket.emit = ((event: string | symbol, ...args: unknown[]): boolean => {
      if (event !== 'message') return emit(event, ...args);
      return this.deliver(emit, args[0] as Buffer, args[1] as RemoteInfo);
    }) as Socket['emit'];
  }

  /** The datagram the library is handling at this moment, if any (read by the routing-table policy). */
  get dispatching(): KrpcDispatch | undefined {
    return this.current;
  }

  get stats(): KrpcGuardStats {
    return { received: this.received, dropped: { ...this.dropped }, handlerFailures: this.handlerFailures };
  }

  private deliver(emit: Socket['emit'], data: Buffer, from: RemoteInfo): boolean {
    this.received += 1;
    let message: BencodeValue;
    try {
      message = decodeKrpc(data);
    } catch (error) {
      this.reject('malformed', (error as Error).message, from);
      return false;
    }
    const verdict = checkKrpc(message, (t) => this.pendingMethod(t, from));
    if (!verdict.ok) {
      this.reject(verdict.reason, verdict.detail, from);
      return false;
    }
    this.current = { kind: verdict.kind, from, message };
    // A label value from a bounded set: a peer can send any method name.
    const method = verdict.kind === 'query' ? (Object.hasOwn(queryArguments, verdict.method) ? verdict.method : 'other') : undefined;
    try {
      const handled = emit('message', data, from);
      if (method !== undefined) this.queries?.inc({ method, outcome: 'answered' });
      return handled;
    } catch (error) {
      this.handlerFailures += 1;
      if (method !== undefined) this.queries?.inc({ method, outcome: 'failed' });
      this.report('handler', (suppressed) =>
        this.log.warn({ err: error, from: `${from.address}:${from.port}`, suppressed }, 'DHT handler failed on a datagram (contained)'),
      );
      return false;
    } finally {
      this.current = undefined;
    }
  }

  private reject(reason: KrpcDropReason, detail: string, from: RemoteInfo): void {
    this.dropped[reason] += 1;
    this.report(reason, (suppressed) =>
      this.log.debug({ reason, detail, from: `${from.address}:${from.port}`, suppressed }, 'DHT datagram dropped'),
    );
  }

  private report(kind: string, write: (suppressed: number) => void): void {
    const now = Date.now();
    const last = this.lastLogged.get(kind);
    if (last && now - last.at < LOG_EVERY_MS) {
      last.suppressed += 1;
      return;
    }
    write(last?.suppressed ?? 0);
    this.lastLogged.set(kind, { at: now, suppressed: 0 });
  }
}
