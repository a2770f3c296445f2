import type { Component } from '../base/component.ts';
import { type HostPort, formatAddress } from '../base/address.ts';
import type { EventBus } from '../events/bus.ts';
import type { NodeEventMap } from '../events/types.ts';
import { PROTECTION_TAGS } from './connection-pruner.ts';

/** The part of the connection manager this component sets tags on. */
export interface Protector {
  protect(peerId: string, tag: string): void;
  unprotect(peerId: string, tag: string): void;
}

export interface HistoryProtectionOptions {
  readonly bus: EventBus<NodeEventMap>;
  readonly connections: Protector;
  /** Configured bootstrap peers; matched by IP address and port as connections report them. */
  readonly bootstrap: readonly HostPort[];
}

/**
 * Protects from pruning the peers this node has history with, as the events tell: the relay it
 * uses and the NAT peers it relays for (while their session lasts), and peers at a configured
 * bootstrap address (for the node's lifetime). Jobs, when they come, tag their peers the same way.
 */
export class HistoryProtection implements Component {
  readonly name = 'history-protection';
  private readonly offs: Array<() => void> = [];
  private readonly bootstrap: ReadonlySet<string>;
  /** Relay sessions by `tag peerId`: a session replaced by a new one must not unprotect the peer. */
  private readonly sessions = new Map<string, Set<string>>();

  constructor(private readonly options: HistoryProtectionOptions) {
    this.bootstrap = new Set(options.bootstrap.map(formatAddress));
  }

  start(): void {
    const { bus, connections } = this.options;
    this.offs.push(
      bus.on('relay.session.registered', (e) => this.sessionStarted(e.payload)),
      bus.on('relay.session.expired', (e) => this.sessionEnded(e.payload)),
      bus.on('relay.session.closed', (e) => this.sessionEnded(e.payload)),
      bus.on('peer.exchanged', (e) => {
        if (this.bootstrap.has(e.payload.remoteAddress)) connections.protect(e.payload.peerId, PROTECTION_TAGS.bootstrap);
      }),
    );
  }

  stop(): void {
    for (const off of this.offs.splice(0)) off();
  }

  private sessionStarted(session: RelaySessionEvent): void {
    const tag = tagOf(session.role);
    const key = `${tag} ${session.peerId}`;
    let ids = this.sessions.get(key);
    if (!ids) {
      ids = new Set();
      this.sessions.set(key, ids);
    }
    ids.add(session.sessionId);
    this.options.connections.protect(session.peerId, tag);
  }

  private sessionEnded(session: RelaySessionEvent): void {
    const tag = tagOf(session.role);
    const key = `${tag} ${session.peerId}`;
    const ids = this.sessions.get(key);
    ids?.delete(session.sessionId);
    if (ids && ids.size > 0) return;
    this.sessions.delete(key);
    this.options.connections.unprotect(session.peerId, tag);
  }
}

type RelaySessionEvent = NodeEventMap['relay.session.registered'];

function tagOf(role: RelaySessionEvent['role']): string {
  return role === 'client' ? PROTECTION_TAGS.relay : PROTECTION_TAGS.relayedPeer;
}
