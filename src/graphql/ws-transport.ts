import type { IncomingMessage } from 'node:http';
import { CloseCode, type ServerOptions, handleProtocols, makeServer } from 'graphql-ws';
import type { WebSocket, WebSocketServer } from 'ws';
import type { Logger } from '../node/base/logger.ts';

/** What graphql-ws hooks see as `ctx.extra`. */
export interface WsExtra {
  readonly socket: WebSocket;
  readonly request: IncomingMessage;
}

export interface GraphQLWsTransportOptions {
  readonly wsServer: WebSocketServer;
  readonly graphqlWs: ServerOptions<Record<string, unknown> | undefined, WsExtra>;
  /**
   * Messages of one socket being handled at once (a subscribe message is handled until its
   * operation ends, so open subscriptions count). Past it the socket is no longer read.
   */
  readonly maxMessagesInFlight: number;
  /** A socket that has not answered the previous ping by the next one is dropped. */
  readonly heartbeatMs: number;
  readonly log: Logger;
}

export interface GraphQLWsTransport {
  /** Closes every socket (1001) and stops accepting. */
  close(): Promise<void>;
}

/**
 * graphql-ws on a `ws` server. This replaces graphql-ws's own `useServer` glue for two reasons:
 *
 * - Backpressure. `ws` reads as fast as the network delivers and starts a handler per message, so
 *   a client sending subscribe messages faster than they are answered made the node hold an
 *   operation for each (50 000 messages on one socket: +105 MiB with the subscription cap alone;
 *   160 000 on 16 sockets: +159 MiB). Here a socket with `maxMessagesInFlight` messages in
 *   handling is paused (TCP pushes back on the client) and resumed as they finish.
 * - Quiet failure. `useServer` rejects a send to a client that has gone and then logs one
 *   "Internal error" line per pending operation on stderr; a vanished client is normal here, and
 *   the socket's close handler cleans up.
 */
export function serveGraphQLWs(options: GraphQLWsTransportOptions): GraphQLWsTransport {
  const { wsServer, log, maxMessagesInFlight } = options;
  const server = makeServer(options.graphqlWs);
  wsServer.options.handleProtocols = handleProtocols;
  wsServer.on('error', (error) => log.error({ err: error }, 'WebSocket server error'));

  const alive = new WeakSet<WebSocket>();
  wsServer.on('connection', (socket: WebSocket, request: IncomingMessage) => {
    alive.add(socket);
    socket.on('pong', () => alive.add(socket));
    // Protocol errors (bad frames, oversized messages): ws closes the socket itself.
    socket.on('error', (error) => log.debug({ err: error }, 'WebSocket client error'));

    let inFlight = 0;
    const closed = server.opened(
      {
        protocol: socket.protocol,
        send: (data) =>
          new Promise<void>((resolve) => {
            if (socket.readyState !== socket.OPEN) return resolve();
            socket.send(data, () => resolve());
          }),
        close: (code, reason) => socket.close(code, reason),
        onMessage: (handle) =>
          socket.on('message', (data: Buffer) => {
            inFlight++;
            if (inFlight >= maxMessagesInFlight && !socket.isPaused) socket.pause();
            handle(data.toString())
              .catch((error: unknown) => {
                log.error({ err: error }, 'graphql-ws message handling failed');
                socket.close(CloseCode.InternalServerError, 'Internal server error');
              })
              .finally(() => {
                inFlight--;
                if (inFlight < maxMessagesInFlight && socket.isPaused) socket.resume();
              });
          }),
      },
      { socket, request },
    );
    socket.once('close', (code: number, reason: Buffer) => {
      closed(code, reason.toString()).catch((error: unknown) => log.error({ err: error }, 'graphql-ws close handling failed'));
    });
  });

  const heartbeat = setInterval(() => {
    for (const socket of wsServer.clients) {
      if (!alive.has(socket)) {
        socket.terminate();
        continue;
      }
      alive.delete(socket);
      socket.ping();
    }
  }, options.heartbeatMs);
  heartbeat.unref();

  return {
    async close() {
      clearInterval(heartbeat);
      for (const socket of wsServer.clients) socket.close(1001, 'server shutting down');
      await new Promise<void>((resolve) => wsServer.close(() => resolve()));
    },
  };
}
