import type { BaseComponents } from '../components.ts';
import type { Component } from '../base/component.ts';
import {
  type QUICConfig,
  type QUICConnection,
  QUICClient,
  QUICServer,
  QUICSocket,
  type TLSVerifyCallback,
  errors as quicErrors,
  events as quicEvents,
} from '@matrixai/quic';
import type { HostPort } from '../base/address.ts';
import type { NodeIdentity } from '../identity/key-store.ts';
import type { Logger } from '../base/logger.ts';
import { settleWithin } from '../util/time-bounds.ts';
import { installQuicErrorGuard } from './library-error-guard.ts';
import { type NodeCertificate, certificateNeedsRenewal, createNodeCertificate } from './certificate.ts';
import {
  ALPN_PROTOCOL,
  APP_CLOSE_CODE,
  CERT_RENEW_CHECK_INTERVAL_MS,
  DEFAULT_DIAL_TIMEOUT_MS,
  DEFAULT_MAX_CONNECTIONS,
  HANDSHAKE_TIMEOUT_MS,
  DEAD_AFTER_KEEPALIVES,
  KEEPALIVE_INTERVAL_MS,
  MAX_INBOUND_STREAMS,
  READABLE_CHUNK_BYTES,
  STOP_GRACE_MS,
} from './constants.ts';
import {
  BindError,
  DialFailedError,
  DialTimeoutError,
  PeerConnectionLimitError,
  PeerIdMismatchError,
  RawSendError,
  StreamResetError,
  TooManyConnectionsError,
  TransportNotRunningError,
} from './errors.ts';
import { GatedQUICServer } from './gated-server.ts';
import { clientCrypto, serverCrypto } from './library-crypto.ts';
import { type QuicLibraryLogger, libraryLogger } from './library-logger.ts';
import { quicLibraryPatched } from './library-patch.ts';
import { type ProvenPeer, createVerifyCallback, peerFromCertificates } from './peer-certificate.ts';
import { QuicPeerConnection } from './quic-connection.ts';
import { LIMIT_APP_CLOSE_CODE, refusalPhrase, remoteLimitRefusal } from './refusal.ts';
import type { DialOptions, Direction, InboundAdmission, PeerConnection, Transport } from './types.ts';

export const CLOSE_REASON_TRANSPORT_STOPPED = 'transport stopped';
export const CLOSE_REASON_TOO_MANY_CONNECTIONS = refusalPhrase('capacity');
export const CLOSE_REASON_NOT_ACCEPTING = 'not accepting connections';

export interface QuicTransportOptions {
  readonly identity: NodeIdentity;
  readonly host: string;
  /** 0 = any free port. */
  readonly port: number;
  readonly logger: Logger;
  /** QUIC max idle timeout: a connection that hears nothing from its peer this long is closed. */
  readonly idleTimeoutMs: number;
  /** Open connections in both directions together (default DEFAULT_MAX_CONNECTIONS). */
  readonly maxConnections?: number;
  /** Keep-alive ping period; default min(KEEPALIVE_INTERVAL_MS, idleTimeoutMs / 2); 0 disables. */
  readonly keepAliveIntervalMs?: number;
  /** The connection limits, asked before the TLS handshake of every inbound connection; none = no limits. */
  readonly admission?: InboundAdmission;
}

interface PendingDial {
  readonly abort: AbortController;
  readonly settled: Promise<unknown>;
}

type State = 'stopped' | 'starting' | 'running' | 'stopping';

/**
 * The QUIC transport over @matrixai/quic. One UDP socket carries the server and every outgoing
 * client, so dials leave from the listening port (what NAT hole punching needs) and `sendRaw`
 * punches from that same port. Both sides present a self-signed certificate over their Ed25519
 * identity and check the other's in the TLS verify callback (see peer-certificate.ts).
 *
 * Inbound connections go to the `onConnection` handler; with none set they are closed, so set it
 * before `start()`.
 */
export class QuicTransport implements Transport, Component {
  readonly name = 'quic';
  private state: State = 'stopped';
  private socket: QUICSocket | undefined;
  private server: QUICServer | undefined;
  private certificate: NodeCertificate | undefined;
  private boundPort = 0;
  private starting: Promise<void> | undefined;
  private stopping: Promise<void> | undefined;
  private renewTimer: NodeJS.Timeout | undefined;
  private connectionHandler: ((connection: PeerConnection) => void) | undefined;
  private readonly open = new Set<QuicPeerConnection>();
  private readonly dials = new Set<PendingDial>();
  private readonly log: Logger;
  private readonly libraryLog: QuicLibraryLogger;
  private readonly maxConnections: number;
  private readonly keepAliveIntervalMs: number;

  /** As the node runs it: `[quic]` and `[node] listen_host`, inbound connections admitted by `admission`. */
  static create({ config, identity, logger }: BaseComponents, admission: InboundAdmission): QuicTransport {
    return new QuicTransport({
      identity,
      logger,
      host: config.node.listen_host,
      port: config.quic.quic_port,
      // Above the connection manager's idle timeout, so that the lifecycle marks a connection STALE
      // and closes it itself (and says so) before QUIC would drop it silently.
      idleTimeoutMs: config.quic.quic_idle_timeout * 1000 * 2,
      maxConnections: config.quic.max_connections,
      admission,
    });
  }

  constructor(private readonly options: QuicTransportOptions) {
    this.log = options.logger.child({ component: 'quic' });
    this.libraryLog = libraryLogger(this.log);
    this.maxConnections = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
    // quiche needs the ping period below the idle timeout, or the library refuses the config.
    this.keepAliveIntervalMs = options.keepAliveIntervalMs ?? Math.min(KEEPALIVE_INTERVAL_MS, Math.floor(options.idleTimeoutMs / 2));
  }

  /** Bound UDP port once started (0 before). */
  get port(): number {
    return this.boundPort;
  }

  get running(): boolean {
    return this.state === 'running';
  }

  /** Open connections, both directions. */
  connections(): PeerConnection[] {
    return [...this.open];
  }

  onConnection(handler: (connection: PeerConnection) => void): void {
    this.connectionHandler = handler;
  }

  /** Binds the socket and starts accepting. A stopped transport can be started again. */
  async start(): Promise<void> {
    installQuicErrorGuard(this.log);
    if (!quicLibraryPatched()) {
      this.log.warn('the QUIC library patches are not applied (run npm install): every packet and stream costs several times the CPU');
    }
    await this.stopping;
    if (this.state === 'running') return;
    this.starting ??= this.startListening().finally(() => {
      this.starting = undefined;
    });
    return this.starting;
  }

  /** Closes every connection, aborts dials in progress, then releases the socket. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      await this.starting?.catch(() => {});
      if (this.state === 'running') await this.stopAll();
    })().finally(() => {
      this.stopping = undefined;
    });
    return this.stopping;
  }

  private async startListening(): Promise<void> {
    this.state = 'starting';
    const socket = new QUICSocket({ logger: this.libraryLog.getChild('socket') });
    socket.addEventListener(quicEvents.EventQUICSocketError.name, this.ignoreLibraryError);
    try {
      const { keyPem, certPem } = await this.renewCertificateIfNeeded();
      await socket.start({ host: this.options.host, port: this.options.port }).catch((error: unknown) => {
        throw new BindError(`${this.options.host}:${this.options.port}`, { cause: error });
      });
      const serverOptions = {
        socket,
        crypto: serverCrypto(),
        config: { ...this.tlsConfig(this.verifyCallback()), key: keyPem, cert: certPem },
        minIdleTimeout: HANDSHAKE_TIMEOUT_MS,
        reasonToCode,
        codeToReason,
        logger: this.libraryLog.getChild('server'),
      };
      const { admission } = this.options;
      const server = admission ? new GatedQUICServer(serverOptions, admission, this.log) : new QUICServer(serverOptions);
      server.addEventListener(quicEvents.EventQUICServerConnection.name, this.handleInbound);
      server.addEventListener(quicEvents.EventQUICServerError.name, this.ignoreLibraryError);
      await server.start();
      this.socket = socket;
      this.server = server;
    } catch (error) {
      await socket.stop({ force: true }).catch(() => {});
      this.state = 'stopped';
      throw error;
    }
    this.boundPort = socket.port;
    this.renewTimer = setInterval(() => void this.renewWhileRunning(), CERT_RENEW_CHECK_INTERVAL_MS);
    this.renewTimer.unref();
    this.state = 'running';
    this.log.info({ host: socket.host, port: socket.port, alpn: ALPN_PROTOCOL }, 'QUIC transport listening');
  }

  async dial(address: HostPort, options: DialOptions = {}): Promise<PeerConnection> {
    const socket = this.requireRunning();
    if (this.liveCount() + this.dials.size >= this.maxConnections) throw new TooManyConnectionsError(this.maxConnections);
    const target = `${address.host}:${address.port}`;
    const timeoutMs = options.timeoutMs ?? DEFAULT_DIAL_TIMEOUT_MS;
    const { expectedPeerId } = options;
    let refusal: { reason: string; peer: ProvenPeer | undefined } | undefined;
    const verifyCallback = this.verifyCallback(expectedPeerId, (reason, peer) => {
      refusal = { reason, peer };
    });
    const certificate = this.requireCertificate();
    const abort = new AbortController();
    const creating = QUICClient.createQUICClient(
      {
        host: address.host,
        port: address.port,
        socket,
        crypto: clientCrypto(),
        config: { ...this.tlsConfig(verifyCallback), key: certificate.keyPem, cert: certificate.certPem },
        reasonToCode,
        codeToReason,
        logger: this.libraryLog.getChild(`client ${target}`),
      },
      { timer: timeoutMs, signal: abort.signal },
    );
    const pending: PendingDial = {
      abort,
      settled: creating.then(
        () => {},
        () => {},
      ),
    };
    this.dials.add(pending);
    let client: QUICClient;
    try {
      client = await creating;
    } catch (error) {
      if (refusal?.peer && expectedPeerId !== undefined && refusal.peer.peerId !== expectedPeerId) {
        throw new PeerIdMismatchError(expectedPeerId, refusal.peer.peerId, target);
      }
      if (abort.signal.aborted) throw new TransportNotRunningError();
      const limit = remoteLimitRefusal(error);
      if (limit !== undefined) throw new PeerConnectionLimitError(target, limit, { cause: error });
      if (isTimeout(error)) throw new DialTimeoutError(target, timeoutMs);
      throw new DialFailedError(target, refusal?.reason ?? describeError(error), { cause: error });
    } finally {
      this.dials.delete(pending);
    }

    // Errors are also re-dispatched on the client; unheard, the library would throw them.
    client.addEventListener(quicEvents.EventQUICClientError.name, this.ignoreLibraryError);
    const stopClient = (reason: Uint8Array, errorCode = APP_CLOSE_CODE) => client.destroy({ isApp: true, errorCode, reason, force: true });
    let peer: ProvenPeer;
    try {
      peer = peerFromCertificates(client.connection.getRemoteCertsChain());
    } catch (error) {
      await stopClient(Buffer.from('bad certificate'));
      throw new DialFailedError(target, describeError(error), { cause: error });
    }
    // The verify callback already refused a mismatch; this guards against the library ever
    // completing a handshake it did not verify.
    if (expectedPeerId !== undefined && peer.peerId !== expectedPeerId) {
      await stopClient(Buffer.from('peer id mismatch'));
      throw new PeerIdMismatchError(expectedPeerId, peer.peerId, target);
    }
    if (this.state !== 'running') {
      await stopClient(Buffer.from(CLOSE_REASON_TRANSPORT_STOPPED));
      throw new TransportNotRunningError();
    }
    const connection = this.track(client.connection, peer, 'outbound', stopClient);
    this.log.debug({ peer: peer.peerId, address: target, connection: connection.id }, 'QUIC connection out');
    return connection;
  }

  /**
   * Reachability probe (an AutoNAT dial-back): a handshake with `address` from a fresh socket on a
   * new port, so that a NAT mapping our listening socket opened towards that peer cannot carry it.
   * True when the handshake completed with `expectedPeerId`. The connection is then held until the
   * other side closes it (it proves the dial-back arrived) or `holdMs`, and dropped.
   */
  async probe(address: HostPort, expectedPeerId: string, timeoutMs: number, holdMs = 2_000): Promise<boolean> {
    this.requireRunning();
    const certificate = this.requireCertificate();
    let client: QUICClient;
    try {
      client = await QUICClient.createQUICClient(
        {
          host: address.host,
          port: address.port,
          localHost: this.options.host,
          localPort: 0,
          crypto: clientCrypto(),
          config: {
            ...this.tlsConfig(this.verifyCallback(expectedPeerId)),
            key: certificate.keyPem,
            cert: certificate.certPem,
            keepAliveIntervalTime: undefined,
          },
          reasonToCode,
          codeToReason,
          logger: this.libraryLog.getChild(`probe ${address.host}:${address.port}`),
        },
        { timer: timeoutMs },
      );
    } catch {
      return false;
    }
    client.addEventListener(quicEvents.EventQUICClientError.name, this.ignoreLibraryError);
    client.connection.addEventListener(quicEvents.EventQUICConnectionError.name, this.ignoreLibraryError);
    const closedByPeer = new Promise<void>((resolve) =>
      client.connection.addEventListener(quicEvents.EventQUICConnectionStopped.name, () => resolve(), { once: true }),
    );
    await settleWithin(closedByPeer, holdMs);
    await client.destroy({ isApp: true, errorCode: APP_CLOSE_CODE, reason: Buffer.from('probe done'), force: true }).catch(() => {});
    return true;
  }

  async sendRaw(data: Uint8Array, address: HostPort): Promise<void> {
    const socket = this.requireRunning();
    try {
      await socket.send(data, address.port, address.host);
    } catch (error) {
      throw new RawSendError(`${address.host}:${address.port}`, { cause: error });
    }
  }

  private readonly handleInbound = (event: Event): void => {
    if (!(event instanceof quicEvents.EventQUICServerConnection)) return;
    const connection = event.detail;
    const connectionId = connection.connectionId.toString();
    const { admission } = this.options;
    const stopServerSide = (reason: Uint8Array, errorCode = APP_CLOSE_CODE) =>
      connection.stop({ isApp: true, errorCode, reason, force: true });
    const refuseAfterHandshake = (reason: string, errorCode?: number) => {
      admission?.release(connectionId);
      void stopServerSide(Buffer.from(reason), errorCode).catch(() => {});
    };
    let peer: ProvenPeer;
    try {
      peer = peerFromCertificates(connection.getRemoteCertsChain());
    } catch (error) {
      this.log.error({ err: error }, 'inbound connection without a usable certificate after verification');
      refuseAfterHandshake('bad certificate');
      return;
    }
    const refuse = this.refusal();
    if (refuse !== undefined) {
      this.log.debug({ peer: peer.peerId, reason: refuse }, 'inbound QUIC connection refused');
      if (refuse === CLOSE_REASON_TOO_MANY_CONNECTIONS) admission?.refused(connection.remoteHost, 'capacity');
      refuseAfterHandshake(refuse, refuse === CLOSE_REASON_TOO_MANY_CONNECTIONS ? LIMIT_APP_CLOSE_CODE : APP_CLOSE_CODE);
      return;
    }
    admission?.handshakeDone(connectionId);
    const adapter = this.track(connection, peer, 'inbound', stopServerSide);
    if (admission) void adapter.closed.then(() => admission.release(connectionId));
    this.log.debug({ peer: peer.peerId, address: adapter.remoteAddress, connection: adapter.id }, 'QUIC connection in');
    try {
      this.connectionHandler?.(adapter);
    } catch (error) {
      // A throw here would escape into the library's event dispatch and end the process.
      this.log.error({ err: error }, 'connection handler threw; connection closed');
      void adapter.close('connection handler failed');
    }
  };

  /**
   * The library throws any error event without a listener as an uncaught exception (a remote close
   * would end the process). Connection errors are handled per connection; here they are only logged.
   */
  private readonly ignoreLibraryError = (event: Event): void => {
    this.log.debug({ event: event.type, detail: (event as Event & { detail?: unknown }).detail }, 'QUIC library error event');
  };

  private refusal(): string | undefined {
    if (this.state !== 'running') return CLOSE_REASON_TRANSPORT_STOPPED;
    if (!this.connectionHandler) return CLOSE_REASON_NOT_ACCEPTING;
    if (this.liveCount() >= this.maxConnections) return CLOSE_REASON_TOO_MANY_CONNECTIONS;
    return undefined;
  }

  /** Open connections not being closed: one closed to make room (pruned) no longer takes a slot. */
  private liveCount(): number {
    let live = 0;
    for (const connection of this.open) if (!connection.closing) live += 1;
    return live;
  }

  private track(
    connection: QUICConnection,
    peer: ProvenPeer,
    direction: Direction,
    stop: (reason: Uint8Array, errorCode?: number) => Promise<void>,
  ): QuicPeerConnection {
    const adapter = new QuicPeerConnection({ connection, peer, direction, logger: this.log, stop });
    this.open.add(adapter);
    void adapter.closed.then(() => this.open.delete(adapter));
    return adapter;
  }

  private async stopAll(): Promise<void> {
    this.state = 'stopping';
    clearInterval(this.renewTimer);
    this.renewTimer = undefined;
    for (const dial of this.dials) dial.abort.abort(new TransportNotRunningError());
    await Promise.all([...this.dials].map((dial) => dial.settled));
    // A graceful QUIC close waits for the peer and the closing period (seconds under load, and the
    // library's force flag does not cut it short): wait a moment, then the forced stops below end the rest.
    await settleWithin(Promise.all([...this.open].map((connection) => connection.close(CLOSE_REASON_TRANSPORT_STOPPED))), STOP_GRACE_MS);
    try {
      // The server's stop waits for each connection's closing period (seconds, longer under load)
      // even when forced; the forced socket stop below ends whatever is left.
      await settleWithin(this.server?.stop({ isApp: true, errorCode: APP_CLOSE_CODE, force: true }) ?? Promise.resolve(), STOP_GRACE_MS);
      this.server?.removeEventListener(quicEvents.EventQUICServerConnection.name, this.handleInbound);
      await this.socket?.stop({ force: true });
    } finally {
      this.server = undefined;
      this.socket = undefined;
      this.boundPort = 0;
      this.state = 'stopped';
    }
    this.log.info('QUIC transport stopped');
  }

  private tlsConfig(verifyCallback: TLSVerifyCallback): Partial<QUICConfig> {
    return {
      verifyPeer: true,
      verifyCallback,
      applicationProtos: [ALPN_PROTOCOL],
      // Pings make the idle timeout a dead-peer detector (see DEAD_AFTER_KEEPALIVES).
      maxIdleTimeout:
        this.keepAliveIntervalMs > 0
          ? Math.min(this.options.idleTimeoutMs, this.keepAliveIntervalMs * DEAD_AFTER_KEEPALIVES)
          : this.options.idleTimeoutMs,
      keepAliveIntervalTime: this.keepAliveIntervalMs > 0 ? this.keepAliveIntervalMs : undefined,
      initialMaxStreamsBidi: MAX_INBOUND_STREAMS,
      // The contract has bidirectional streams only; a peer gets no credit for others.
      initialMaxStreamsUni: 0,
      // 0-RTT data would arrive before the client's certificate is checked, and can be replayed.
      enableEarlyData: false,
      readableChunkSize: READABLE_CHUNK_BYTES,
    };
  }

  private verifyCallback(expectedPeerId?: string, onRefused?: (reason: string, peer: ProvenPeer | undefined) => void): TLSVerifyCallback {
    return createVerifyCallback({
      ownPeerId: this.options.identity.peerId,
      expectedPeerId,
      onReject: (reason, peer) => {
        this.log.debug({ reason, peer: peer?.peerId }, 'peer certificate refused');
        onRefused?.(reason, peer);
      },
    });
  }

  private async renewCertificateIfNeeded(): Promise<NodeCertificate> {
    if (this.certificate && !certificateNeedsRenewal(this.certificate)) return this.certificate;
    const certificate = await createNodeCertificate(this.options.identity);
    this.certificate = certificate;
    this.log.debug({ notAfter: certificate.notAfter.toISOString() }, 'QUIC certificate created');
    return certificate;
  }

  /** New connections pick up a renewed certificate; existing ones keep the one they started with. */
  private async renewWhileRunning(): Promise<void> {
    try {
      const before = this.certificate;
      const { keyPem, certPem } = await this.renewCertificateIfNeeded();
      if (this.certificate !== before) this.server?.updateConfig({ key: keyPem, cert: certPem });
    } catch (error) {
      this.log.error({ err: error }, 'QUIC certificate renewal failed');
    }
  }

  private requireRunning(): QUICSocket {
    if (this.state !== 'running' || !this.socket) throw new TransportNotRunningError();
    return this.socket;
  }

  private requireCertificate(): NodeCertificate {
    if (!this.certificate) throw new TransportNotRunningError();
    return this.certificate;
  }
}

/** Stream aborts carry a QUIC error code only; our reasons are not sent, so every abort is code 0. */
function reasonToCode(): number {
  return 0;
}

function codeToReason(direction: 'read' | 'write', code: number): StreamResetError {
  return new StreamResetError(direction, code);
}

function isTimeout(error: unknown): boolean {
  return error instanceof quicErrors.ErrorQUICClientCreateTimeout || error instanceof quicErrors.ErrorQUICConnectionStartTimeout;
}

function describeError(error: unknown): string {
  return error instanceof Error ? error.message || error.name : String(error);
}
