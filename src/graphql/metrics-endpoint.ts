import type { Plugin } from 'graphql-yoga';
import type { Logger } from '../node/base/logger.ts';
import type { MetricsExposition } from '../node/metrics/metrics.ts';
import { errorResponse } from './access.ts';
import { ErrorCode } from './errors.ts';

export const METRICS_PATH = '/metrics';

/**
 * `GET /metrics`: the node's metrics in the Prometheus text format. Placed after the access
 * control plugin, so it answers under the same rules as /graphql (the token when one is set, the
 * host and origin checks, CORS). Without an exposition (`[metrics] enabled = false`) the path is
 * left to yoga, which answers 404.
 */
export function useMetricsEndpoint(exposition: MetricsExposition | null, log: Logger): Plugin {
  return {
    // eslint-disable-next-line @typescript-eslint/unbound-method -- whatwg-node's endResponse uses no `this`
    async onRequest({ url, request, fetchAPI, endResponse }) {
      if (exposition === null || url.pathname !== METRICS_PATH) return;
      if (request.method !== 'GET' && request.method !== 'HEAD') {
        endResponse(errorResponse(405, ErrorCode.METHOD_NOT_ALLOWED, `${METRICS_PATH} answers GET only`, fetchAPI));
        return;
      }
      let body: string;
      try {
        body = await exposition.text();
      } catch (error) {
        log.error({ err: error }, 'collecting the metrics failed');
        endResponse(errorResponse(500, ErrorCode.METRICS_UNAVAILABLE, 'collecting the metrics failed (see the node log)', fetchAPI));
        return;
      }
      endResponse(
        new fetchAPI.Response(request.method === 'HEAD' ? null : body, {
          status: 200,
          headers: { 'content-type': exposition.contentType },
        }),
      );
    },
  };
}
