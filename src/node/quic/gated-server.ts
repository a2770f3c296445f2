import { type QUICConnection, type QUICConnectionId, QUICServer, type QUICSocket, type RemoteInfo, native } from '@matrixai/quic';
import type { Header } from '@matrixai/quic/native/types.js';
import type { Logger } from '../base/logger.ts';
import { setBounded } from '../util/bounded-map.ts';
import { QUIC_VERSION_1, initialClosePacket } from './initial-close.ts';
import { type LimitReason, TRANSPORT_CONNECTION_REFUSED, refusalPhrase } from './refusal.ts';
import type { InboundAdmission } from './types.ts';

/** Refused connection ids remembered, so that a retransmitted Initial gets the same answer and is not counted twice. */
export const MAX_REMEMBERED_REFUSALS = 1024;

type ServerOptions = ConstructorParameters<typeof QUICServer>[0] & { readonly socket: QUICSocket };

type AcceptConnection = (
  remoteInfo: RemoteInfo,
  header: Header,
  dcid: QUICConnectionId,
  data: Uint8Array,
) => Promise<QUICConnection | undefined>;

/**
 * The one internal of the library's QUICServer (2.0.9) this subclass overrides: the socket calls
 * it for every packet no connection claims. Not in its type declarations, hence the view.
 */
interface AcceptView {
  readonly acceptConnection: AcceptConnection;
}

/**
 * A QUICServer that asks the connection limits before it builds a connection. The library
 * answers a first Initial with a stateless Retry (no state, no TLS), and the client's second
 * Initial carries the token: that proves the source address, so a spoofed source can neither use
 * up another address's slots nor its rate. That second Initial is where the limits are asked,
 * before quiche, TLS or any connection object exists; a refused client gets one Initial packet
 * carrying CONNECTION_REFUSED and the reason (initial-close.ts) and nothing is kept.
 */
export class GatedQUICServer extends QUICServer {
  /** Connection ids being accepted: a retransmitted Initial must not be admitted (and counted) twice. */
  private readonly accepting = new Set<string>();
  private readonly refused = new Map<string, LimitReason>();

  constructor(
    options: ServerOptions,
    private readonly admission: InboundAdmission,
    private readonly log: Logger,
  ) {
    super(options);
  }

  async acceptConnection(
    remoteInfo: RemoteInfo,
    header: Header,
    dcid: QUICConnectionId,
    data: Uint8Array,
  ): Promise<QUICConnection | undefined> {
    const accept = (QUICServer.prototype as unknown as AcceptView).acceptConnection;
    const token = header.token;
    // Version negotiation, the Retry and anything that is not an Initial: the library's way.
    if (header.ty !== native.quiche.Type.Initial || header.version !== QUIC_VERSION_1 || token === undefined || token.byteLength === 0) {
      return accept.call(this, remoteInfo, header, dcid, data);
    }
    if ((await this.validateToken(Buffer.from(token), remoteInfo.host)) === undefined) return undefined;
    // The library names the connection by this id (its `connectionId`, hex in the node).
    const connectionId = Buffer.from(header.dcid).toString('hex');
    if (this.accepting.has(connectionId)) return undefined;
    // A client retransmits its Initial until our close arrives: the same answer, decided once.
    const refusal = this.refused.get(connectionId) ?? this.admission.admit(remoteInfo.host, connectionId);
    if (refusal !== undefined) {
      setBounded(this.refused, connectionId, refusal, MAX_REMEMBERED_REFUSALS);
      await this.refuse(remoteInfo, header, refusalPhrase(refusal));
      return undefined;
    }
    this.accepting.add(connectionId);
    let connection: QUICConnection | undefined;
    try {
      connection = await accept.call(this, remoteInfo, header, dcid, data);
    } finally {
      this.accepting.delete(connectionId);
      if (connection === undefined) this.admission.release(connectionId);
    }
    return connection;
  }

  private async refuse(remoteInfo: RemoteInfo, header: Header, reason: string): Promise<void> {
    const packet = initialClosePacket({
      clientScid: header.scid,
      clientDcid: header.dcid,
      errorCode: TRANSPORT_CONNECTION_REFUSED,
      reason,
    });
    try {
      await this.socket.send(packet, remoteInfo.port, remoteInfo.host);
    } catch (error) {
      this.log.debug({ err: error, host: remoteInfo.host }, 'sending a connection refusal failed');
    }
  }
}
