import type { EventBus } from '../events/bus.ts';
import type { NodeEventMap } from '../events/types.ts';
import type { Logger } from '../base/logger.ts';
import { storageFailureCode, storageFailureDetail } from '../storage/storage-failure.ts';
import type { HealthPart } from './health-status.ts';

/** Which store a write was for (`stream_handler`: met by a protocol handler, store unknown). */
export type StorageOperation = 'known_peers' | 'node_state' | 'stream_handler';

export interface StorageFailure {
  /** SQLITE_FULL, SQLITE_IOERR, SQLITE_READONLY, EROFS, EACCES… */
  readonly code: string;
  /** The cause as SQLite or the OS put it, e.g. "database or disk is full". */
  readonly message: string;
  readonly operation: StorageOperation;
  readonly at: Date;
}

/** What a component that writes to the database tells the storage health. */
export interface StorageWriteReporter {
  /**
   * A write failed. True when `error` is a storage failure (counted, logged once per kind): the
   * caller carries on without it. False for anything else, which the caller must rethrow.
   * `unstoredPeers` counts the known-peer entries the write would have stored.
   */
  failed(operation: StorageOperation, error: unknown, unstoredPeers?: number): boolean;
  /** A write committed: a failing storage has recovered. */
  succeeded(): void;
}

export interface StorageHealthOptions {
  /** The database file, named in the log. */
  readonly path: string;
  readonly bus: EventBus<NodeEventMap>;
  readonly logger: Logger;
}

/**
 * Whether the node's database takes writes. FAILING from a failed write until the next write
 * that commits. A failure is logged once per kind per outage (a flood of exchanges on a full disk
 * is one line, not one per exchange), again when another kind appears, and the recovery once;
 * every failure is counted. Nothing here deletes or retries anything: the writers carry on.
 */
export class StorageHealth implements HealthPart, StorageWriteReporter {
  private failures = 0;
  private peersNotStored = 0;
  private last: StorageFailure | null = null;
  private since: Date | null = null;
  private recovered: Date | null = null;
  /** Kinds already logged in the current outage, and what the outage cost so far. */
  private readonly loggedKinds = new Set<string>();
  private outageFailures = 0;
  private outagePeersNotStored = 0;
  private readonly log: Logger;

  constructor(private readonly options: StorageHealthOptions) {
    this.log = options.logger.child({ component: 'storage' });
  }

  get status(): 'OK' | 'FAILING' {
    return this.since === null ? 'OK' : 'FAILING';
  }

  get path(): string {
    return this.options.path;
  }

  /** Failed writes since start. */
  get writeFailures(): number {
    return this.failures;
  }

  /** Known-peer entries (new peers, or news about known ones) that could not be written, since start. */
  get unstoredPeers(): number {
    return this.peersNotStored;
  }

  get lastFailure(): StorageFailure | null {
    return this.last;
  }

  /** Start of the current outage; null while OK. */
  get failingSince(): Date | null {
    return this.since;
  }

  /** End of the last outage; null if there was none. */
  get recoveredAt(): Date | null {
    return this.recovered;
  }

  failed(operation: StorageOperation, error: unknown, unstoredPeers = 0): boolean {
    const code = storageFailureCode(error);
    if (code === undefined) return false;
    const message = storageFailureDetail(error);
    const at = new Date();
    this.failures += 1;
    this.peersNotStored += unstoredPeers;
    this.outageFailures += 1;
    this.outagePeersNotStored += unstoredPeers;
    this.last = { code, message, operation, at };
    this.since ??= at;
    if (!this.loggedKinds.has(code)) {
      this.loggedKinds.add(code);
      this.log.error(
        { code, operation, path: this.options.path, err: error },
        `storage write failed: ${code} (${message}) on ${this.options.path}; the node keeps running, and further ${code} failures are counted, not logged`,
      );
      this.options.bus.emit('health.changed', { part: 'storage', status: 'FAILING', code, message });
    }
    return true;
  }

  succeeded(): void {
    if (this.since === null) return;
    const at = new Date();
    this.log.info(
      {
        path: this.options.path,
        failures: this.outageFailures,
        unstoredPeers: this.outagePeersNotStored,
        failingForMs: at.getTime() - this.since.getTime(),
      },
      'storage writes succeed again',
    );
    this.since = null;
    this.recovered = at;
    this.loggedKinds.clear();
    this.outageFailures = 0;
    this.outagePeersNotStored = 0;
    this.options.bus.emit('health.changed', { part: 'storage', status: 'OK', code: null, message: null });
  }
}
