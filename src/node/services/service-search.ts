import { RemoteNetworkError } from '../base/errors.ts';
import { isPeerId } from '../base/peer-id.ts';
import type { Logger } from '../base/logger.ts';
import type { NodeComponents } from '../components.ts';
import type { ConnectionInfo, ConnectionManager } from '../lifecycle/connection-manager.ts';
import type { Counter, Metrics } from '../metrics/metrics.ts';
import { NoopMetrics } from '../metrics/noop-metrics.ts';
import { MessageChannel } from '../wire/channel.ts';
import { ReadTimeoutError, RemoteRefusedError } from '../wire/errors.ts';
import { type SearchedServiceEntry, searchedServiceEntry, serviceSearchResultMessage } from '../wire/messages.ts';
import { MAX_QUERY_CHARS, MAX_SEARCH_PEERS } from './constants.ts';
import { SearchInvalidError } from './errors.ts';
import { searchPeersCounter } from './service-metrics.ts';
import type { ServiceKind } from './service.ts';

/** One item of a search's stream: a peer's matches, a peer's failure, or the final count. */
export type SearchItem =
  | { readonly kind: 'result'; readonly peerId: string; readonly services: SearchedServiceEntry[] }
  | { readonly kind: 'error'; readonly peerId: string; readonly code: string; readonly message: string }
  | {
      readonly kind: 'complete';
      readonly peersAsked: number;
      readonly answered: number;
      readonly failed: number;
      /** Peers that had not answered by the deadline (asked, or still waiting for their turn). */
      readonly timedOut: number;
      readonly timedOutPeers: string[];
      readonly durationMs: number;
    };

/** How a search reaches a peer it is not connected to (the node's dialer: DHT metadata, relays). */
export interface PeerConnector {
  connectToPeer(peerId: string): Promise<ConnectionInfo>;
}

export interface ServiceSearchOptions {
  readonly connections: ConnectionManager;
  readonly dialer: PeerConnector;
  /** This node's peer id (never asked). */
  readonly peerId: string;
  readonly logger: Logger;
  /** Peers asked at once. */
  readonly concurrency: number;
  /** The whole search, dialling included, completes after this. */
  readonly deadlineMs: number;
  /** Services kept of one peer's answer. */
  readonly maxResults: number;
  readonly metrics?: Metrics;
}

/** A peer's failure when nothing better is known (a dial or stream that failed without a code). */
const SEARCH_PEER_FAILED = 'SEARCH_PEER_FAILED';

/**
 * Searches the services of other peers: the given peers (dialled when not connected) or else the
 * connected ones, `concurrency` at a time, each answer streamed as it arrives, then one
 * `complete` item, at the latest at the deadline: a peer that never answers delays nothing past
 * it. Peers given twice are asked once, and a service listed twice in one answer is kept once.
 */
export class ServiceSearch {
  /** As the node runs it: `[services] search_concurrency`, `search_deadline`, `search_max_results`. */
  static create(c: NodeComponents, dialer: PeerConnector): ServiceSearch {
    const { connections, identity, logger, config, metrics } = c;
    const { search_concurrency, search_deadline, search_max_results } = config.services;
    return new ServiceSearch({
      connections,
      dialer,
      peerId: identity.peerId,
      logger: logger.child({ component: 'service-search' }),
      concurrency: search_concurrency,
      deadlineMs: search_deadline * 1000,
      maxResults: search_max_results,
      metrics,
    });
  }

  private readonly peersAsked: Counter<'outcome'>;

  constructor(private readonly options: ServiceSearchOptions) {
    this.peersAsked = searchPeersCounter(options.metrics ?? new NoopMetrics());
  }

  /** Starts a search; its items arrive through the iterator (returning it abandons the search). */
  search(query: string, kind: ServiceKind | null, peerIds: readonly string[] | null): AsyncIterableIterator<SearchItem> {
    if (query.length > MAX_QUERY_CHARS) throw new SearchInvalidError(`query is longer than ${MAX_QUERY_CHARS} characters`);
    if (peerIds !== null && peerIds.length > MAX_SEARCH_PEERS) throw new SearchInvalidError(`at most ${MAX_SEARCH_PEERS} peer ids`);
    const invalid = peerIds?.find((p): boolean => !isPeerId(p));
    if (invalid !== undefined) throw new SearchInvalidError(`${invalid.slice(0, 40)} is not a peer id`);
    const peers = [...new Set(peerIds ?? this.connectedPeers())].filter((p) => p !== this.options.peerId).slice(0, MAX_SEARCH_PEERS);
    return new SearchRun(this.options, this.peersAsked, query, kind, peers).items();
  }

  private connectedPeers(): string[] {
    return this.options.connections
      .list()
      .filter((c) => c.peerId !== null && (c.state === 'IDLE' || c.state === 'CONNECTED'))
      .map((c) => c.peerId as string);
  }
}

/** One search: its workers, its deadline and the queue of items its iterator hands out. */
class SearchRun {
  private readonly queued: SearchItem[] = [];
  private waiting: ((result: IteratorResult<SearchItem>) => void) | undefined;
  private readonly pending: Set<string>;
  private readonly startedAt = Date.now();
  private readonly deadlineAt: number;
  private timer: NodeJS.Timeout | undefined;
  private next = 0;
  private answered = 0;
  private failed = 0;
  private completed = false;
  private closed = false;

  constructor(
    private readonly options: ServiceSearchOptions,
    private readonly peersAsked: Counter<'outcome'>,
    private readonly query: string,
    private readonly kind: ServiceKind | null,
    private readonly peers: readonly string[],
  ) {
    this.pending = new Set(peers);
    this.deadlineAt = this.startedAt + options.deadlineMs;
  }

  items(): AsyncIterableIterator<SearchItem> {
    this.timer = setTimeout(() => this.complete(), this.options.deadlineMs);
    this.timer.unref();
    for (let i = 0; i < Math.min(this.options.concurrency, this.peers.length); i++) void this.work();
    if (this.peers.length === 0) this.complete();
    const iterator: AsyncIterableIterator<SearchItem> = {
      next: () => this.pull(),
      return: () => {
        this.close();
        return Promise.resolve({ value: undefined, done: true });
      },
      throw: (error?: unknown) => {
        this.close();
        return Promise.reject(error);
      },
      [Symbol.asyncIterator]: () => iterator,
    };
    return iterator;
  }

  private async work(): Promise<void> {
    while (!this.completed && this.next < this.peers.length) {
      const peerId = this.peers[this.next++] as string;
      const item = await this.ask(peerId);
      if (this.completed) return;
      // No answer by the deadline: the peer counts as timed out (the deadline timer may fire a moment later).
      if (item === undefined) {
        if (Date.now() >= this.deadlineAt) this.complete();
        return;
      }
      this.pending.delete(peerId);
      if (item.kind === 'result') this.answered += 1;
      else this.failed += 1;
      this.peersAsked.inc({ outcome: item.kind === 'result' ? 'answered' : 'failed' });
      this.push(item);
      if (this.pending.size === 0) this.complete();
    }
  }

  /** The peer's item, or undefined when it had not answered by the deadline. */
  private async ask(peerId: string): Promise<SearchItem | undefined> {
    const { connections, dialer } = this.options;
    try {
      if (!connections.isConnected(peerId)) await dialer.connectToPeer(peerId);
      const answer = await connections.withPeerStream(peerId, async (stream) => {
        const channel = new MessageChannel(stream);
        await channel.sendFinal({ type: 'service_search', query: this.query, kind: this.kind });
        const result = await channel.receive(serviceSearchResultMessage, 'service_search_result', this.remaining());
        await channel.finish(this.remaining());
        return result;
      });
      return { kind: 'result', peerId, services: this.entriesOf(answer.services) };
    } catch (error) {
      if (error instanceof ReadTimeoutError || Date.now() >= this.deadlineAt) return undefined;
      this.options.logger.debug({ peerId, err: error }, 'a peer did not answer a service search');
      return { kind: 'error', peerId, ...describe(error) };
    }
  }

  /** Valid entries only, each service once, at most maxResults. */
  private entriesOf(services: readonly unknown[]): SearchedServiceEntry[] {
    const seen = new Set<string>();
    const kept: SearchedServiceEntry[] = [];
    for (const raw of services) {
      const parsed = searchedServiceEntry.safeParse(raw);
      if (!parsed.success || seen.has(parsed.data.id)) continue;
      seen.add(parsed.data.id);
      kept.push(parsed.data);
      if (kept.length >= this.options.maxResults) break;
    }
    return kept;
  }

  private remaining(): number {
    return Math.max(1, this.deadlineAt - Date.now());
  }

  private complete(): void {
    if (this.completed) return;
    this.completed = true;
    clearTimeout(this.timer);
    const timedOutPeers = [...this.pending];
    if (timedOutPeers.length > 0) this.peersAsked.inc({ outcome: 'timed_out' }, timedOutPeers.length);
    this.push({
      kind: 'complete',
      peersAsked: this.peers.length,
      answered: this.answered,
      failed: this.failed,
      timedOut: timedOutPeers.length,
      timedOutPeers,
      durationMs: Date.now() - this.startedAt,
    });
  }

  private push(item: SearchItem): void {
    if (this.closed) return;
    const waiting = this.waiting;
    if (waiting) {
      this.waiting = undefined;
      waiting({ value: item, done: false });
    } else this.queued.push(item);
  }

  private pull(): Promise<IteratorResult<SearchItem>> {
    const item = this.queued.shift();
    if (item) return Promise.resolve({ value: item, done: false });
    if (this.completed || this.closed) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => {
      this.waiting = resolve;
    });
  }

  /** The consumer went away: nothing more is handed out, and no worker starts another peer. */
  private close(): void {
    this.closed = true;
    this.completed = true;
    clearTimeout(this.timer);
    this.queued.length = 0;
    this.waiting?.({ value: undefined, done: true });
    this.waiting = undefined;
  }
}

function describe(error: unknown): { code: string; message: string } {
  if (error instanceof RemoteRefusedError) return { code: error.remoteCode, message: error.message };
  if (error instanceof RemoteNetworkError) return { code: error.code, message: error.message };
  return { code: SEARCH_PEER_FAILED, message: error instanceof Error ? error.message : 'the peer could not be asked' };
}
