import { type ASTNode, GraphQLError, Kind } from 'graphql';
import { createGraphQLError } from 'graphql-yoga';
import { RemoteNetworkError } from '../node/base/errors.ts';
import { PeerConnectionLimitError } from '../node/quic/errors.ts';
import { RemoteRefusedError } from '../node/wire/errors.ts';

/**
 * Expected errors carry `extensions.code`; anything else is masked as "Unexpected error." so that
 * internals (paths, SQL, stack traces) never reach a client. This is the one place that decides.
 */
export const ErrorCode = {
  BAD_USER_INPUT: 'BAD_USER_INPUT',
  UNAUTHENTICATED: 'UNAUTHENTICATED',
  FORBIDDEN: 'FORBIDDEN',
  QUERY_LIMIT_EXCEEDED: 'QUERY_LIMIT_EXCEEDED',
  /** yoga's codes for documents that do not parse or validate (set here for graphql-ws too). */
  GRAPHQL_PARSE_FAILED: 'GRAPHQL_PARSE_FAILED',
  GRAPHQL_VALIDATION_FAILED: 'GRAPHQL_VALIDATION_FAILED',
  SUBSCRIPTION_LIMIT: 'SUBSCRIPTION_LIMIT',
  UNSUPPORTED_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  /** A path that answers other methods than the one used (GET /metrics only). */
  METHOD_NOT_ALLOWED: 'METHOD_NOT_ALLOWED',
  /** Collecting the metrics failed (logged); the next scrape tries again. */
  METRICS_UNAVAILABLE: 'METRICS_UNAVAILABLE',
} as const;

export function userInputError(message: string, extensions: Record<string, unknown> = {}, node?: ASTNode): GraphQLError {
  return createGraphQLError(message, { ...(node && { nodes: node }), extensions: { code: ErrorCode.BAD_USER_INPUT, ...extensions } });
}

/** Node errors are part of the contract (typed, with a code); convert them for clients. */
export function exposeNodeError(error: unknown): GraphQLError | undefined {
  if (error instanceof PeerConnectionLimitError) {
    // Which limit, as the ConnectionLimitReason enum names it.
    return createGraphQLError(error.message, { extensions: { code: error.code, limit: error.reason.toUpperCase() } });
  }
  if (error instanceof RemoteRefusedError) {
    // The peer's own code (UNKNOWN_SERVICE, DATA_CHANGED, …): what it refused is what the client asked for.
    return createGraphQLError(error.message, { extensions: { code: error.remoteCode, refusedByPeer: true } });
  }
  if (error instanceof RemoteNetworkError) {
    return createGraphQLError(error.message, { extensions: { code: error.code } });
  }
  return undefined;
}

/** How graphql-js's own error starts when a request has more bad variable values than it reports. */
const TOO_MANY_VARIABLE_ERRORS = 'Too many errors processing variables';

/**
 * graphql-js reports a variable value that does not fit its declared type ("Variable "$first" got
 * invalid value …") as a GraphQLError without a code, pointing at the variable definition. It is
 * the client's input, so it gets BAD_USER_INPUT (unless a scalar's own error gave a code) and the
 * variable's name; other errors are returned unchanged.
 */
export function withVariableErrorCode(error: GraphQLError): GraphQLError {
  // After 50 bad variable values graphql-js stops with an error of its own that points nowhere
  // (reachable since an input holds a list of peer ids: allowedPeers).
  if (error.extensions.code === undefined && error.message.startsWith(TOO_MANY_VARIABLE_ERRORS)) {
    return createGraphQLError(error.message, { extensions: { ...error.extensions, code: ErrorCode.BAD_USER_INPUT } });
  }
  const node = error.nodes?.[0];
  if (node?.kind !== Kind.VARIABLE_DEFINITION || error.extensions.variable !== undefined) return error;
  return createGraphQLError(error.message, {
    nodes: error.nodes ?? null,
    extensions: { ...error.extensions, code: error.extensions.code ?? ErrorCode.BAD_USER_INPUT, variable: node.variable.name.value },
  });
}

/** `error` as a GraphQLError with a code: its own if it has one (armor's limits), else `code`. */
export function withErrorCode(error: unknown, code: string): GraphQLError {
  // Anything but a GraphQLError is not the client's doing; its message stays inside.
  if (!(error instanceof GraphQLError)) return createGraphQLError('invalid operation', { extensions: { code } });
  if (error.extensions.code !== undefined) return error;
  return createGraphQLError(error.message, {
    nodes: error.nodes ?? null,
    source: error.source,
    positions: error.positions,
    extensions: { ...error.extensions, code },
  });
}
