import type { Plugin } from 'graphql-yoga';
import { errorResponse } from './access.ts';
import { ErrorCode } from './errors.ts';

/**
 * Request bodies a POST may carry: the ones yoga parses as GraphQL except form and multipart.
 * None of them is a CORS "simple" content type, so a browser sends them cross-origin only after a
 * preflight, which our CORS policy refuses for origins not in `allowed_origins`.
 */
export const GRAPHQL_POST_CONTENT_TYPES: ReadonlySet<string> = new Set([
  'application/json',
  'application/graphql+json',
  'application/graphql',
]);

/**
 * CSRF prevention. A web page can make a browser POST `application/x-www-form-urlencoded`,
 * `multipart/form-data` or `text/plain` to any address without asking (a plain HTML form does
 * it), and some browsers omit `Origin` on such requests, which the origin check then cannot
 * see; yoga would parse the first two and run a mutation. So every POST whose body is not JSON or
 * GraphQL is refused with 415 before it is parsed, whatever the operation (we accept no file
 * uploads, so nothing needs multipart). GET never runs a mutation (yoga answers 405) and keeps
 * serving queries and SSE subscriptions.
 *
 * Same rule as `@graphql-yoga/plugin-csrf-prevention` for POST; that plugin also requires a custom
 * header on every GET, which would break `curl` and `EventSource` subscriptions, hence our own.
 */
export function useCsrfPrevention(): Plugin {
  return {
    // eslint-disable-next-line @typescript-eslint/unbound-method -- whatwg-node's endResponse uses no `this`
    onRequest({ request, fetchAPI, endResponse }) {
      if (request.method !== 'POST') return;
      const contentType = request.headers.get('content-type');
      if (contentType !== null && GRAPHQL_POST_CONTENT_TYPES.has(mediaType(contentType))) return;
      endResponse(
        errorResponse(
          415,
          ErrorCode.UNSUPPORTED_MEDIA_TYPE,
          `POST bodies must be ${[...GRAPHQL_POST_CONTENT_TYPES].join(', ')} (got ${contentType === null ? 'no content type' : JSON.stringify(contentType.slice(0, 100))}); ` +
            'form, multipart and text/plain requests are refused because any web page can send them (CSRF)',
          fetchAPI,
        ),
      );
    },
  };
}

/** "application/json; charset=utf-8" → "application/json" (yoga reads only the first of a list). */
function mediaType(contentType: string): string {
  return (contentType.split(',')[0] ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
}
