import type { NodeComponents } from '../components.ts';
import type { Component } from '../base/component.ts';
import type { EventBus } from '../events/bus.ts';
import type { NodeEventMap } from '../events/types.ts';
import type { Logger } from '../base/logger.ts';
import type { MetadataFetcher } from '../metadata/metadata-fetcher.ts';
import { setBounded } from '../util/bounded-map.ts';
import type { KnownPeersService } from './known-peers-service.ts';

/** DHT lookups for verification in flight at once, and started per second at most. */
export const VERIFY_CONCURRENCY = 4;
export const VERIFICATIONS_PER_SECOND = 20;
/** Hearsay waiting for verification at most; beyond, it waits in the table for a sweep. */
export const MAX_VERIFY_QUEUE = 1000;
/**
 * A peer not found is looked up again after each of these (it may publish late: a node whose
 * first put failed retries it, a NAT node waits for its relay); only the first miss counts
 * against the source.
 */
export const VERIFY_RETRIES_MS = [5_000, 20_000, 60_000] as const;
/** When the queue is empty, hearsay left in the table is swept into it this often. */
const SWEEP_MS = 60_000;
/** The sweep leaves a peer alone this long after its last attempt. */
const ATTEMPT_QUIET_MS = 5 * 60_000;

interface Pending {
  readonly peerId: string;
  /** Who told us (its trust pays for the outcome); null for hearsay left from before a restart. */
  readonly via: string | null;
  readonly attempt: number;
}

export interface HearsayVerifierOptions {
  readonly knownPeers: KnownPeersService;
  readonly fetcher: MetadataFetcher;
  readonly bus: EventBus<NodeEventMap>;
  readonly logger: Logger;
  /** Ends our connections to a source that lost all trust. */
  readonly disconnect: (peerId: string, reason: string) => Promise<unknown>;
}

/**
 * Turns hearsay into known peers, or not: each peer another peer told us of is looked up in the
 * DHT (its BEP 44 metadata, signed by its key), at a bounded rate. Found: verified (shared from now
 * on, a relay candidate if its metadata says relay). Not found (retried a few times): unverifiable,
 * which counts against the peer that told us; a source that keeps naming peers nobody can find is
 * rate-limited, then disconnected (PeerTrust), and a distrusted peer that connects again is
 * disconnected again after its exchange.
 */
export class HearsayVerifier implements Component {
  readonly name = 'hearsay-verifier';
  private readonly queue: Pending[] = [];
  private readonly queued = new Set<string>();
  private readonly attempted = new Map<string, number>();
  private inFlight = 0;
  private window = { second: 0, started: 0 };
  private pumpTimer: NodeJS.Timeout | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  private readonly retries = new Set<NodeJS.Timeout>();
  private readonly offs: Array<() => void> = [];
  private running = false;
  private counts = { verified: 0, unverifiable: 0 };
  private readonly log: Logger;

  static create({ knownPeers, fetcher, bus, logger, connections }: NodeComponents): HearsayVerifier {
    return new HearsayVerifier({
      knownPeers,
      fetcher,
      bus,
      logger,
      disconnect: (peerId, reason) => connections.disconnect(peerId, reason),
    });
  }

  constructor(private readonly options: HearsayVerifierOptions) {
    this.log = options.logger.child({ component: 'hearsay' });
  }

  start(): void {
    this.running = true;
    const { bus } = this.options;
    this.offs.push(
      bus.on('peer.discovered', (e) => {
        if (!e.payload.verified) this.enqueue({ peerId: e.payload.peerId, via: e.payload.via, attempt: 0 });
      }),
      bus.on('peer.exchanged', (e) => {
        if (this.options.knownPeers.trust.level(e.payload.peerId) === 'distrusted') {
          void this.options.disconnect(e.payload.peerId, 'distrusted: its peer lists could not be verified');
        }
      }),
    );
    this.sweep();
    this.sweepTimer = setInterval(() => this.sweep(), SWEEP_MS);
    this.sweepTimer.unref();
  }

  stop(): void {
    this.running = false;
    for (const off of this.offs.splice(0)) off();
    clearInterval(this.sweepTimer);
    clearTimeout(this.pumpTimer);
    for (const timer of this.retries) clearTimeout(timer);
    this.retries.clear();
    this.queue.length = 0;
    this.queued.clear();
  }

  /** Verifications so far (diagnostics and tests), and what waits. */
  get stats(): { verified: number; unverifiable: number; queued: number; inFlight: number } {
    return { ...this.counts, queued: this.queue.length, inFlight: this.inFlight };
  }

  private enqueue(entry: Pending): void {
    if (!this.running || this.queued.has(entry.peerId) || this.queue.length >= MAX_VERIFY_QUEUE) return;
    this.queued.add(entry.peerId);
    this.queue.push(entry);
    this.pump();
  }

  /** Hearsay in the table that nobody is verifying (left from before a restart, or past a full queue). */
  private sweep(): void {
    if (this.queue.length > 0) return;
    const now = Date.now();
    for (const peer of this.options.knownPeers.latest(MAX_VERIFY_QUEUE, { hearsayOnly: true })) {
      if ((this.attempted.get(peer.peerId) ?? -Infinity) > now - ATTEMPT_QUIET_MS) continue;
      this.enqueue({ peerId: peer.peerId, via: null, attempt: 0 });
    }
  }

  private pump(): void {
    while (this.running && this.inFlight < VERIFY_CONCURRENCY && this.queue.length > 0) {
      const second = Math.floor(Date.now() / 1000);
      if (this.window.second !== second) this.window = { second, started: 0 };
      if (this.window.started >= VERIFICATIONS_PER_SECOND) {
        if (!this.pumpTimer) {
          this.pumpTimer = setTimeout(
            () => {
              this.pumpTimer = undefined;
              this.pump();
            },
            1000 - (Date.now() % 1000),
          );
          this.pumpTimer.unref();
        }
        return;
      }
      const entry = this.queue.shift();
      if (!entry) return;
      this.queued.delete(entry.peerId);
      this.window.started += 1;
      this.inFlight += 1;
      void this.verify(entry).finally(() => {
        this.inFlight -= 1;
        this.pump();
      });
    }
  }

  private async verify(entry: Pending): Promise<void> {
    const peer = this.options.knownPeers.get(entry.peerId);
    if (!peer || peer.verified) return;
    setBounded(this.attempted, entry.peerId, Date.now(), MAX_VERIFY_QUEUE * 4);
    const found = await this.options.fetcher.findAny(peer.publicKey).catch((error: unknown) => {
      this.log.debug({ err: error, peerId: entry.peerId }, 'verification lookup failed');
      return null;
    });
    if (!this.running) return;
    if (found) {
      this.options.knownPeers.markVerified(entry.peerId, found.metadata.isRelay, entry.via);
      this.counts.verified += 1;
    } else {
      this.counts.unverifiable += 1;
      const delay = VERIFY_RETRIES_MS[entry.attempt];
      if (delay !== undefined) this.retryLater({ ...entry, attempt: entry.attempt + 1 }, delay);
    }
    // The first miss counts against the source; a later find counts for it (the peer was late).
    if (entry.via !== null && (found || entry.attempt === 0)) this.judge(entry.via, found !== null);
  }

  private retryLater(entry: Pending, delayMs: number): void {
    const timer = setTimeout(() => {
      this.retries.delete(timer);
      this.enqueue(entry);
    }, delayMs);
    timer.unref();
    this.retries.add(timer);
  }

  /** Reports an entry's outcome to its source's trust; acts on a change. */
  private judge(source: string, verified: boolean): void {
    const change = this.options.knownPeers.trust.outcome(source, verified);
    if (!change) return;
    this.options.bus.emit('peer.trust.changed', { peerId: source, ...change });
    this.log.info({ peerId: source, ...change }, 'peer trust changed');
    if (change.level === 'distrusted') void this.options.disconnect(source, 'distrusted: its peer lists could not be verified');
  }
}
