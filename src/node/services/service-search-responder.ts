import type { Component } from '../base/component.ts';
import type { Logger } from '../base/logger.ts';
import type { NodeComponents } from '../components.ts';
import type { ProtocolRegistry } from '../lifecycle/protocol-registry.ts';
import type { Counter, Metrics } from '../metrics/metrics.ts';
import { NoopMetrics } from '../metrics/noop-metrics.ts';
import type { PeerConnection } from '../quic/types.ts';
import { TokenBuckets } from '../util/token-buckets.ts';
import type { MessageChannel } from '../wire/channel.ts';
import { type SearchedServiceEntry, type ServiceSearchMessage, serviceSearchMessage } from '../wire/messages.ts';
import { MAX_RATE_LIMITED_PEERS, MAX_SEARCH_RESULT_BYTES, MAX_SEARCH_RESULTS_WIRE } from './constants.ts';
import { SearchRateLimitedError } from './errors.ts';
import { searchesServedCounter } from './service-metrics.ts';
import type { ServiceRegistry } from './service-registry.ts';
import type { Service } from './service.ts';

/** Searches of one peer being answered at once (each is one request and one answer). */
const MAX_SEARCH_STREAMS_PER_PEER = 4;

export interface ServiceSearchResponderOptions {
  readonly registry: ServiceRegistry;
  readonly protocols: ProtocolRegistry;
  readonly logger: Logger;
  /** Services in one answer, at most. */
  readonly maxResults: number;
  /** Searches one peer may send per minute (in bursts of as many). */
  readonly perMinute: number;
  readonly now?: () => number;
  readonly metrics?: Metrics;
}

/**
 * Answers `service_search` from peers: the services the asking peer (the one TLS proved on the
 * connection) may use that match, at most `maxResults` and as many as fit the frame. A peer that
 * asks more often than `perMinute` is refused with SEARCH_RATE_LIMITED. Answering never reveals a
 * service whose allow-list does not name the asker.
 */
export class ServiceSearchResponder implements Component {
  readonly name = 'service-search-responder';
  private readonly buckets: TokenBuckets;
  private unhandle: (() => void) | undefined;
  private readonly log: Logger;
  private readonly served: Counter<'outcome'>;

  /** As the node runs it: `[services] search_max_results`, `search_rate_limit`. */
  static create(c: NodeComponents): ServiceSearchResponder {
    const { services, protocols, logger, config, metrics } = c;
    return new ServiceSearchResponder({
      registry: services,
      protocols,
      logger,
      metrics,
      maxResults: config.services.search_max_results,
      perMinute: config.services.search_rate_limit,
    });
  }

  constructor(private readonly options: ServiceSearchResponderOptions) {
    const { perMinute, now } = options;
    this.buckets = new TokenBuckets({ burst: perMinute, perSecond: perMinute / 60, maxKeys: MAX_RATE_LIMITED_PEERS, ...(now && { now }) });
    this.log = options.logger.child({ component: 'service-search' });
    this.served = searchesServedCounter(options.metrics ?? new NoopMetrics());
  }

  start(): void {
    this.unhandle = this.options.protocols.handle(
      serviceSearchMessage,
      (request, connection, channel) => this.answer(request, connection, channel),
      {
        maxStreamsPerPeer: MAX_SEARCH_STREAMS_PER_PEER,
      },
    );
  }

  stop(): void {
    this.unhandle?.();
    this.unhandle = undefined;
  }

  private async answer(request: ServiceSearchMessage, connection: PeerConnection, channel: MessageChannel): Promise<void> {
    const peerId = connection.remotePeerId;
    if (!this.buckets.take(peerId)) {
      this.log.debug({ peerId }, 'service search refused: rate limited');
      this.served.inc({ outcome: 'rate_limited' });
      throw new SearchRateLimitedError(this.options.perMinute);
    }
    const limit = Math.min(this.options.maxResults, MAX_SEARCH_RESULTS_WIRE);
    const services = fitted(this.options.registry.search(request.query, request.kind, peerId, limit).map(searchEntryOf));
    this.served.inc({ outcome: 'answered' });
    await channel.sendFinal({ type: 'service_search_result', services });
    await channel.finish();
  }
}

/** What a search shows of a service (never its executable, path, arguments or allow-list). */
export function searchEntryOf(service: Service): SearchedServiceEntry {
  const { id, name, kind, description } = service;
  if (service.kind === 'DATA') return { id, name, kind, description, parameters: [], interfaces: null };
  return { id, name, kind, description, parameters: service.parameters, interfaces: service.interfaces };
}

/** The first entries whose JSON stays within MAX_SEARCH_RESULT_BYTES. */
function fitted(entries: SearchedServiceEntry[]): SearchedServiceEntry[] {
  let bytes = 0;
  const kept: SearchedServiceEntry[] = [];
  for (const entry of entries) {
    bytes += Buffer.byteLength(JSON.stringify(entry)) + 1;
    if (bytes > MAX_SEARCH_RESULT_BYTES) break;
    kept.push(entry);
  }
  return kept;
}
