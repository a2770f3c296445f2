import type { BaseComponents } from '../components.ts';
import type { Component } from '../base/component.ts';
import type { NodeStateRepository } from '../../db/node-state.ts';
import type { MainlineDht, PutOutcome } from '../dht/mainline-dht.ts';
import type { EventBus } from '../events/bus.ts';
import type { NodeEventMap } from '../events/types.ts';
import type { StorageWriteReporter } from '../health/storage-health.ts';
import type { NodeIdentity } from '../identity/key-store.ts';
import type { Logger } from '../base/logger.ts';
import { storageFailureCode } from '../storage/storage-failure.ts';
import { METADATA_VERSION, type PeerMetadata, encodeMetadataChecked, sameContent } from './peer-metadata.ts';

/** The persisted last sequence number handed out; every start and every change takes a new one. */
export const SEQUENCE_STATE_KEY = 'dht.metadata.sequence';
/** First retry after a publish that no node stored; doubles up to the republish interval. */
const FIRST_RETRY_MS = 2_000;

export type MetadataContent = Omit<PeerMetadata, 'peerId' | 'timestamp' | 'version'>;

export interface PublishRecord {
  readonly sequence: number;
  readonly at: Date;
  /** Nodes that hold this sequence now (stored it, or refused with 302 because they had it). */
  readonly nodesAccepted: number;
}

export interface MetadataPublisherOptions {
  readonly dht: MainlineDht;
  readonly identity: NodeIdentity;
  readonly nodeState: NodeStateRepository;
  readonly bus: EventBus<NodeEventMap>;
  readonly logger: Logger;
  readonly republishIntervalMs: number;
  /** Read at start, when the ports actually bound are known. */
  readonly content: () => MetadataContent;
  /** Private nodes start held: nothing is published until a relay session exists. */
  readonly held: boolean;
  /** Told about sequence writes; a change whose sequence cannot be stored waits (see update). */
  readonly storage?: StorageWriteReporter;
}

/**
 * Publishes this node's metadata as a BEP 44 item under SHA1(public key): at start (unless held),
 * every `republishIntervalMs` with the same seq, and at once with a new seq when the content
 * changes. Sequence numbers are allocated through the database before use, so a restarted node
 * never reuses or lowers one; if the DHT turns out to hold a higher seq (state lost), the next
 * publish jumps above it. Content changes only together with a stored sequence number: while the
 * database refuses writes (a full disk) a change waits, the last stored content keeps being
 * republished under its own seq, and the change goes out with a new seq once a write works.
 */
export class MetadataPublisher implements Component {
  readonly name = 'metadata-publisher';
  private metadata: PeerMetadata | undefined;
  /** A change not published yet because its sequence number could not be stored. */
  private pending: PeerMetadata | undefined;
  private sequence = 0;
  private held: boolean;
  private last: PublishRecord | null = null;
  private republishTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryDelay = FIRST_RETRY_MS;
  private running = false;
  private queue: Promise<unknown> = Promise.resolve();
  private readonly log: Logger;

  /** As the node runs it: republished every `[dht] metadata_republish_interval`; `content` until the first update. */
  static create(c: BaseComponents, dht: MainlineDht, content: () => MetadataContent): MetadataPublisher {
    const { config, identity, nodeState, bus, logger, storage } = c;
    return new MetadataPublisher({
      dht,
      identity,
      nodeState,
      bus,
      logger,
      storage,
      content,
      republishIntervalMs: config.dht.metadata_republish_interval * 1000,
      // The seed: a NAT node publishes only once it has a relay session (and `auto` waits for its
      // reachability verdict: an unreachable address must never be published).
      held: config.node.node_type !== 'public',
    });
  }

  constructor(private readonly options: MetadataPublisherOptions) {
    this.held = options.held;
    this.log = options.logger.child({ component: 'metadata-publisher' });
  }

  get current(): PeerMetadata {
    this.metadata ??= this.build(this.options.content());
    return this.metadata;
  }

  get currentSequence(): number {
    return this.sequence;
  }

  get lastPublish(): PublishRecord | null {
    return this.last;
  }

  get isHeld(): boolean {
    return this.held;
  }

  start(): void {
    this.running = true;
    this.metadata = this.build(this.options.content());
    this.sequence = this.allocateSequence();
    this.republishTimer = setInterval(() => this.publishInBackground('republish'), this.options.republishIntervalMs);
    this.republishTimer.unref();
    if (!this.held) this.publishInBackground('start');
  }

  /** A put in flight is abandoned, not awaited: stopping never waits on the network. */
  stop(): void {
    this.running = false;
    clearInterval(this.republishTimer);
    clearTimeout(this.retryTimer);
  }

  /** Stops publishing until release() (a NAT node without relay). */
  hold(): void {
    this.held = true;
  }

  /** Allows publishing again and publishes at once. */
  release(): Promise<PublishRecord> {
    this.held = false;
    return this.publish('release');
  }

  /**
   * Applies a change; new content gets a new sequence number and is published at once. When the
   * number cannot be stored, the change waits for a later publish (retried with backoff) and this
   * resolves null: publishing new content under an old seq would reuse that seq.
   */
  update(changes: Partial<MetadataContent>): Promise<PublishRecord | null> {
    const base = this.pending ?? this.current;
    const next = this.build({ ...base, ...changes });
    if (sameContent(next, base)) return Promise.resolve(null);
    this.pending = next;
    if (!this.applyPending()) {
      this.scheduleRetry(0);
      return Promise.resolve(null);
    }
    return this.held ? Promise.resolve(null) : this.publish('change');
  }

  /** Publishes the current content and sequence now (also what the republish timer does). */
  publish(reason: string): Promise<PublishRecord> {
    // One publish at a time, in order: a change must never be overtaken by an older republish.
    const run = this.queue.then(() => this.publishOnce(reason));
    this.queue = run.catch(() => {});
    return run;
  }

  private publishInBackground(reason: string): void {
    if (!this.running || this.held) return;
    this.publish(reason).catch((error: unknown) => this.log.warn({ err: error, reason }, 'metadata publish failed'));
  }

  private async publishOnce(reason: string): Promise<PublishRecord> {
    try {
      return await this.putAndRecord(reason);
    } catch (error) {
      // A put that failed (a lookup past its deadline on a loaded node, say) is tried again soon,
      // like one nobody accepted: otherwise the node stays unpublished until the next republish
      // (30 minutes), unreachable and unverifiable for everyone that hears of it meanwhile.
      this.scheduleRetry(0);
      throw error;
    }
  }

  private async putAndRecord(reason: string): Promise<PublishRecord> {
    // A change held back by a failed write goes out now if its seq can be stored; if not, the
    // content already published is republished under its own seq.
    this.applyPending();
    let outcome = await this.put();
    const previous = outcome.previousSeq;
    if (previous !== null && previous > this.sequence) {
      // The DHT holds a newer item signed by our key than our database knows: jump above it.
      this.sequence = this.allocateSequence(previous);
      outcome = await this.put();
    }
    const accepted = outcome.stored + (outcome.previousSeq === this.sequence ? outcome.alreadyHeld : 0);
    const record: PublishRecord = { sequence: this.sequence, at: new Date(), nodesAccepted: accepted };
    this.last = record;
    this.options.bus.emit('dht.metadata.published', { sequence: record.sequence, nodesAccepted: accepted });
    this.log.info({ reason, sequence: record.sequence, nodesAccepted: accepted }, 'metadata published');
    this.scheduleRetry(accepted);
    return record;
  }

  private put(): Promise<PutOutcome> {
    const { value } = encodeMetadataChecked(this.current);
    return this.options.dht.putMutable({
      publicKey: this.options.identity.publicKey,
      seq: this.sequence,
      value,
      sign: (message) => this.options.identity.sign(message),
    });
  }

  /** Nobody holds our item (no DHT neighbours yet?): try again soon rather than in 30 minutes. */
  private scheduleRetry(accepted: number): void {
    clearTimeout(this.retryTimer);
    if ((accepted > 0 && this.pending === undefined) || !this.running) {
      this.retryDelay = FIRST_RETRY_MS;
      return;
    }
    this.retryTimer = setTimeout(() => this.publishInBackground('retry'), this.retryDelay);
    this.retryTimer.unref();
    this.retryDelay = Math.min(this.retryDelay * 2, this.options.republishIntervalMs);
  }

  /** Makes the pending change current with a new stored seq; false if the seq could not be stored. */
  private applyPending(): boolean {
    if (this.pending === undefined) return true;
    let sequence: number;
    try {
      sequence = this.allocateSequence();
    } catch (error) {
      // Already reported by allocateSequence; the change waits for a write that works.
      if (storageFailureCode(error) !== undefined) return false;
      throw error;
    }
    this.metadata = this.pending;
    this.pending = undefined;
    this.sequence = sequence;
    return true;
  }

  /** The next seq, stored before it is used (a failed write throws and hands out nothing). */
  private allocateSequence(atLeastAbove = 0): number {
    let sequence: number;
    try {
      sequence = this.options.nodeState.update<number>(SEQUENCE_STATE_KEY, (n) => Math.max(n ?? 0, atLeastAbove) + 1);
    } catch (error) {
      // Counted and logged as a storage failure (if it is one); the caller decides what to do.
      this.options.storage?.failed('node_state', error);
      throw error;
    }
    this.options.storage?.succeeded();
    return sequence;
  }

  private build(content: MetadataContent): PeerMetadata {
    const metadata: PeerMetadata = {
      ...content,
      peerId: this.options.identity.peerId,
      timestamp: Math.floor(Date.now() / 1000),
      version: METADATA_VERSION,
    };
    encodeMetadataChecked(metadata); // refuse oversize content before it is ever accepted
    return metadata;
  }
}
