import { createGraphQLError } from 'graphql-yoga';
import type { GraphQLError } from 'graphql';
import { RemoteNetworkError } from '../node/errors.ts';

/**
 * Expected errors carry `extensions.code`; anything else is masked as "Unexpected error." so that
 * internals (paths, SQL, stack traces) never reach a client. This is the one place that decides.
 */
export const ErrorCode = {
  BAD_USER_INPUT: 'BAD_USER_INPUT',
  UNAUTHENTICATED: 'UNAUTHENTICATED',
  FORBIDDEN: 'FORBIDDEN',
  QUERY_LIMIT_EXCEEDED: 'QUERY_LIMIT_EXCEEDED',
  SUBSCRIPTION_LIMIT: 'SUBSCRIPTION_LIMIT',
  UNSUPPORTED_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
} as const;

export function userInputError(message: string, extensions: Record<string, unknown> = {}): GraphQLError {
  return createGraphQLError(message, { extensions: { code: ErrorCode.BAD_USER_INPUT, ...extensions } });
}

/** Node errors are part of the contract (typed, with a code); convert them for clients. */
export function exposeNodeError(error: unknown): GraphQLError | undefined {
  if (error instanceof RemoteNetworkError) {
    return createGraphQLError(error.message, { extensions: { code: error.code } });
  }
  return undefined;
}
