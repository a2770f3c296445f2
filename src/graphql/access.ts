import { createHash, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import type { Plugin } from 'graphql-yoga';
import { ErrorCode } from './errors.ts';

/** Largest request body accepted (queries are small; anything bigger is a mistake or an attack). */
export const MAX_REQUEST_BYTES = 1024 * 1024;

export interface AccessPolicy {
  /** When set, every HTTP request and WebSocket connection must present it. */
  readonly token: string;
  /** Browser origins allowed besides the API's own. */
  readonly allowedOrigins: readonly string[];
}

export interface AccessRequest {
  readonly host: string | null;
  readonly origin: string | null;
  /** The bearer token presented (HTTP Authorization header or graphql-ws connectionParams.token). */
  readonly presentedToken: string | null;
}

export type AccessDecision =
  { readonly ok: true } | { readonly ok: false; readonly status: 401 | 403; readonly code: string; readonly message: string };

const LOOPBACK_NAMES = new Set(['localhost', '127.0.0.1', '::1', '[::1]']);

/**
 * Decides whether a request may use the API: the token check, then the host and origin check.
 * HTTP applies both at once; a WebSocket applies the second at upgrade and the first when the
 * client's connection_init brings its token.
 */
export function decideAccess(policy: AccessPolicy, request: AccessRequest): AccessDecision {
  const token = checkToken(policy, request.presentedToken);
  return token.ok ? checkHostAndOrigin(policy, request.host, request.origin) : token;
}

/** Required whenever configured (always, off loopback); compared in constant time. */
export function checkToken(policy: AccessPolicy, presented: string | null): AccessDecision {
  if (policy.token.length === 0) return ALLOWED;
  if (presented !== null && tokensEqual(presented, policy.token)) return ALLOWED;
  return { ok: false, status: 401, code: ErrorCode.UNAUTHENTICATED, message: 'a valid API token is required' };
}

/**
 * Host: without a token, the API trusts that only local processes reach it, which DNS rebinding
 * would break (a web page whose name resolves to 127.0.0.1), so only loopback Host names pass.
 * Origin: browsers attach it to cross-site requests and to every WebSocket; a page from another
 * origin must not drive the node, so only our own origin and `allowedOrigins` pass. Tools that
 * send no Origin (curl, scripts) are unaffected.
 */
export function checkHostAndOrigin(policy: AccessPolicy, host: string | null, origin: string | null): AccessDecision {
  if (policy.token.length === 0 && !isLoopbackHostHeader(host)) {
    return {
      ok: false,
      status: 403,
      code: ErrorCode.FORBIDDEN,
      message: 'this API answers only to loopback host names unless a token is configured',
    };
  }
  if (origin !== null && !originAllowed(policy, origin, host)) {
    return { ok: false, status: 403, code: ErrorCode.FORBIDDEN, message: `origin ${origin} is not allowed` };
  }
  return ALLOWED;
}

const ALLOWED: AccessDecision = { ok: true };

export function bearerToken(authorization: string | null | undefined): string | null {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
  return match?.[1] ?? null;
}

function tokensEqual(presented: string, expected: string): boolean {
  // Hashing first makes the comparison constant-time regardless of the lengths.
  const a = createHash('sha256').update(presented).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

function hostnameOf(hostHeader: string): string {
  if (hostHeader.startsWith('[')) return hostHeader.slice(0, hostHeader.indexOf(']') + 1);
  const colon = hostHeader.lastIndexOf(':');
  return colon === -1 ? hostHeader : hostHeader.slice(0, colon);
}

function isLoopbackHostHeader(host: string | null): boolean {
  if (host === null) return false;
  const name = hostnameOf(host.trim().toLowerCase());
  return LOOPBACK_NAMES.has(name) || (isIP(name) === 4 && name.startsWith('127.'));
}

function originAllowed(policy: AccessPolicy, origin: string, host: string | null): boolean {
  if (policy.allowedOrigins.includes(origin)) return true;
  try {
    return host !== null && new URL(origin).host === host.toLowerCase();
  } catch {
    return false;
  }
}

/** A GraphQL-shaped error response for refusals made before GraphQL runs. */
export function errorResponse(status: number, code: string, message: string, fetchAPI: { Response: typeof Response }): Response {
  const headers: Record<string, string> = { 'content-type': 'application/json; charset=utf-8' };
  if (status === 401) headers['www-authenticate'] = 'Bearer';
  return new fetchAPI.Response(JSON.stringify({ errors: [{ message, extensions: { code } }] }), { status, headers });
}

/** Yoga plugin applying `decideAccess` and the body size limit to every HTTP request. */
export function useAccessControl(policy: AccessPolicy): Plugin {
  return {
    // eslint-disable-next-line @typescript-eslint/unbound-method -- whatwg-node's endResponse uses no `this`
    onRequest({ request, fetchAPI, endResponse }) {
      const headers = request.headers;
      const isPreflight = request.method === 'OPTIONS';
      const decision = decideAccess(policy, {
        host: headers.get('host'),
        origin: headers.get('origin'),
        // A CORS preflight carries no credentials by design; it only learns what is allowed.
        presentedToken: isPreflight ? policy.token : bearerToken(headers.get('authorization')),
      });
      if (!decision.ok) {
        endResponse(errorResponse(decision.status, decision.code, decision.message, fetchAPI));
        return;
      }
      const length = Number(headers.get('content-length') ?? 0);
      if (length > MAX_REQUEST_BYTES) {
        endResponse(errorResponse(413, 'PAYLOAD_TOO_LARGE', `request body exceeds ${MAX_REQUEST_BYTES} bytes`, fetchAPI));
      }
    },
  };
}
