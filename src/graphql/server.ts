import { type IncomingMessage, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { EnvelopArmor } from '@escape.tech/graphql-armor';
import { type DocumentNode, type ExecutionArgs, GraphQLError, type GraphQLSchema } from 'graphql';
import { createGraphQLError, createYoga } from 'graphql-yoga';
import { WebSocketServer } from 'ws';
import { RemoteNetworkError } from '../node/base/errors.ts';
import type { Logger } from '../node/base/logger.ts';
import { type AccessPolicy, MAX_REQUEST_BYTES, bearerToken, checkHostAndOrigin, checkToken, useAccessControl } from './access.ts';
import type { GraphQLContext, NodeApi } from './context.ts';
import { useCsrfPrevention } from './csrf.ts';
import { ErrorCode, exposeNodeError, withErrorCode, withVariableErrorCode } from './errors.ts';
import { useMetricsEndpoint } from './metrics-endpoint.ts';
import { schema } from './schema/index.ts';
import { type SubscriptionCaps, type SubscriptionClient, SubscriptionLimiter, useSubscriptionLimits } from './subscription-limits.ts';
import { serveGraphQLWs } from './ws-transport.ts';

export const GRAPHQL_PATH = '/graphql';
/** Concurrent WebSocket clients; more are refused with 503 at upgrade. */
export const MAX_WEBSOCKET_CLIENTS = 256;
/** A WebSocket that has not answered a ping within this period is dropped. */
export const WEBSOCKET_HEARTBEAT_MS = 30_000;
/**
 * Messages a graphql-ws socket may have in handling beyond its subscription cap (operations being
 * set up or answered, refusals being sent); past that the socket is not read until some finish.
 */
export const MESSAGES_IN_FLIGHT_HEADROOM = 64;
/** A client must send connection_init within this time. */
export const CONNECTION_INIT_TIMEOUT_MS = 10_000;
/** Parser tokens per document and directives per operation (armor limits). */
export const MAX_TOKENS = 5000;
export const MAX_DIRECTIVES = 50;

export interface QueryLimits {
  readonly maxDepth: number;
  readonly maxAliases: number;
  readonly maxCost: number;
}

export interface ApiServerOptions {
  readonly node: NodeApi;
  readonly host: string;
  readonly port: number;
  readonly access: AccessPolicy;
  readonly limits: QueryLimits;
  readonly subscriptions: SubscriptionCaps;
  readonly logger: Logger;
}

export interface ApiServer {
  /** http://host:port/graphql */
  readonly url: string;
  readonly port: number;
  /** Subscriptions open now, both transports (they return to 0 when every client has left). */
  readonly activeSubscriptions: number;
  close(): Promise<void>;
}

export class ApiListenError extends RemoteNetworkError {
  readonly code = 'API_LISTEN_FAILED';
}

/**
 * The GraphQL API on one HTTP port: queries and mutations over POST/GET, subscriptions over SSE
 * (yoga) and over graphql-ws on the same path. Both transports go through the same envelop
 * pipeline (limits, masking) and the same access policy.
 */
export async function startApiServer(options: ApiServerOptions): Promise<ApiServer> {
  const { node, logger, access, limits } = options;
  const log = logger.child({ component: 'api' });
  // Armor's own rejections are untyped "Syntax Error: …"; ours carry a code clients can match.
  const onReject = [rejectOverLimit];
  const armor = new EnvelopArmor({
    maxDepth: { n: limits.maxDepth, onReject },
    maxAliases: { n: limits.maxAliases, onReject },
    costLimit: { maxCost: limits.maxCost, onReject },
    maxTokens: { n: MAX_TOKENS, onReject },
    maxDirectives: { n: MAX_DIRECTIVES, onReject },
    // Suggestions help the operators of an admin API more than they help an attacker here.
    blockFieldSuggestion: { enabled: false },
  });

  const subscriptionLimiter = new SubscriptionLimiter(options.subscriptions);

  const yoga = createYoga<{ req: IncomingMessage; res: ServerResponse }, GraphQLContext>({
    schema,
    graphqlEndpoint: GRAPHQL_PATH,
    landingPage: false,
    graphiql: false,
    cors:
      access.allowedOrigins.length > 0
        ? {
            origin: [...access.allowedOrigins],
            methods: ['GET', 'POST'],
            allowedHeaders: ['content-type', 'authorization'],
          }
        : false,
    context: (): GraphQLContext => ({ node }),
    maskedErrors: { maskError: (error, message) => maskError(error, message, log) },
    logging: {
      debug: (...args) => log.debug({ args }, 'yoga'),
      info: (...args) => log.info({ args }, 'yoga'),
      warn: (...args) => log.warn({ args }, 'yoga'),
      error: (...args) => log.error({ args }, 'yoga'),
    },
    plugins: [
      useAccessControl(access),
      useMetricsEndpoint(node.metrics.exposition, log),
      useCsrfPrevention(),
      useSubscriptionLimits(subscriptionLimiter, subscriptionClientOf),
      ...armor.protect().plugins,
    ],
  });

  const httpServer = createServer((request, response) => void yoga(request, response));
  const wsServer = new WebSocketServer({
    server: httpServer,
    path: GRAPHQL_PATH,
    maxPayload: MAX_REQUEST_BYTES,
    verifyClient: ({ req }, callback) => {
      if (wsServer.clients.size >= MAX_WEBSOCKET_CLIENTS) return callback(false, 503, 'too many connections');
      // The token comes with connection_init (connectionParams.token); host and origin are checked now.
      const decision = checkHostAndOrigin(access, req.headers.host ?? null, req.headers.origin ?? null);
      if (!decision.ok) return callback(false, decision.status, decision.message);
      callback(true);
    },
  });

  const wsTransport = serveGraphQLWs({
    wsServer,
    log,
    heartbeatMs: WEBSOCKET_HEARTBEAT_MS,
    maxMessagesInFlight: options.subscriptions.perClient + MESSAGES_IN_FLIGHT_HEADROOM,
    graphqlWs: {
      connectionInitWaitTimeout: CONNECTION_INIT_TIMEOUT_MS,
      onConnect: (ctx) => {
        if (access.token.length === 0) return true;
        const fromParams = ctx.connectionParams?.token;
        const presented = typeof fromParams === 'string' ? fromParams : bearerToken(ctx.extra.request.headers.authorization);
        return checkToken(access, presented).ok;
      },
      onSubscribe: async (ctx, _id, payload) => {
        const enveloped = yoga.getEnveloped({ ...ctx, req: ctx.extra.request, socket: ctx.extra.socket, params: payload });
        // A throw here would close the whole socket (and the client's other subscriptions):
        // bad documents are answered with errors instead, coded as yoga codes them over HTTP.
        let document: DocumentNode;
        try {
          document = enveloped.parse(payload.query) as DocumentNode;
        } catch (error) {
          return [withErrorCode(error, ErrorCode.GRAPHQL_PARSE_FAILED)];
        }
        try {
          const errors = enveloped.validate(enveloped.schema, document) as readonly GraphQLError[];
          if (errors.length > 0) return errors.map((error: GraphQLError) => withErrorCode(error, ErrorCode.GRAPHQL_VALIDATION_FAILED));
          const args: ExecutionArgs = {
            schema: enveloped.schema as GraphQLSchema,
            document,
            operationName: payload.operationName ?? null,
            variableValues: payload.variables ?? null,
            contextValue: await enveloped.contextFactory(),
            rootValue: { execute: enveloped.execute, subscribe: enveloped.subscribe },
          };
          return args;
        } catch (error) {
          return [withErrorCode(error, ErrorCode.GRAPHQL_VALIDATION_FAILED)];
        }
      },
      execute: (args) => (args.rootValue as EnvelopedRoot).execute(args),
      subscribe: (args) => (args.rootValue as EnvelopedRoot).subscribe(args),
    },
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException) => {
      reject(
        new ApiListenError(
          `cannot listen on ${options.host}:${options.port} (${error.code ?? error.message})` +
            (error.code === 'EADDRINUSE' ? ': the port is in use; choose another with --api-port' : ''),
          { cause: error },
        ),
      );
    };
    httpServer.once('error', onError);
    httpServer.listen(options.port, options.host, () => {
      httpServer.off('error', onError);
      resolve();
    });
  });
  const port = (httpServer.address() as AddressInfo).port;
  const hostForUrl = options.host.includes(':') ? `[${options.host}]` : options.host;

  let closing: Promise<void> | undefined;
  return {
    url: `http://${hostForUrl}:${port}${GRAPHQL_PATH}`,
    port,
    get activeSubscriptions() {
      return subscriptionLimiter.active;
    },
    close() {
      closing ??= (async () => {
        await wsTransport.close();
        const closed = new Promise<void>((resolve) => httpServer.close(() => resolve()));
        // SSE subscriptions hold their connections open; end them rather than wait forever.
        httpServer.closeAllConnections();
        await closed;
        await yoga.dispose();
      })();
      return closing;
    },
  };
}

/**
 * graphql-ws operations carry their socket in the context (see onSubscribe above); SSE ones only
 * the HTTP request, and each SSE subscription is its own response, so they are charged to the
 * client's address.
 */
function subscriptionClientOf(context: { socket?: object; req?: IncomingMessage }): SubscriptionClient {
  if (context.socket) return context.socket;
  return `sse ${context.req?.socket.remoteAddress ?? 'unknown address'}`;
}

function rejectOverLimit(_context: unknown, error: GraphQLError): never {
  throw createGraphQLError(error.message.replace(/^Syntax Error: /, ''), {
    extensions: { code: ErrorCode.QUERY_LIMIT_EXCEEDED },
  });
}

interface EnvelopedRoot {
  execute: (args: ExecutionArgs) => ReturnType<typeof import('graphql').execute>;
  subscribe: (args: ExecutionArgs) => ReturnType<typeof import('graphql').subscribe>;
}

/**
 * Expected errors keep their message and code: GraphQL errors we raised on purpose, and the node's
 * own typed errors. Anything else is logged and replaced by a generic message.
 */
function maskError(error: unknown, message: string, log: Logger): Error {
  const graphQLError = error instanceof GraphQLError ? error : undefined;
  const original = graphQLError?.originalError ?? error;
  const nodeError = exposeNodeError(original);
  if (nodeError) {
    return createGraphQLError(nodeError.message, {
      nodes: graphQLError?.nodes ?? null,
      path: graphQLError?.path ?? null,
      extensions: nodeError.extensions,
    });
  }
  if (graphQLError && (graphQLError.originalError === undefined || graphQLError.originalError instanceof GraphQLError)) {
    return withVariableErrorCode(graphQLError);
  }
  log.error({ err: original }, 'unexpected error in a GraphQL operation');
  return createGraphQLError(message, {
    nodes: graphQLError?.nodes ?? null,
    path: graphQLError?.path ?? null,
    extensions: { code: 'INTERNAL_SERVER_ERROR' },
  });
}
