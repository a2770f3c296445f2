import type { NodeComponents } from '../components.ts';
import type { AddressBook } from '../addresses/address-book.ts';
import { type HostPort, parseHostPort } from '../base/address.ts';
import type { Component } from '../base/component.ts';
import type { Logger } from '../base/logger.ts';
import type { DecidedReachability, NodeTypeSetting } from '../base/node-type.ts';
import type { EventBus } from '../events/bus.ts';
import type { NodeEventMap } from '../events/types.ts';
import type { ConnectionManager } from '../lifecycle/connection-manager.ts';
import type { ReachabilityService } from '../nat/reachability.ts';
import type { RelayClient } from '../relay/relay-client.ts';
import type { MetadataContent, MetadataPublisher } from './metadata-publisher.ts';

/** Our metadata before anything is decided: a forced public node publishes this as it is. */
export function initialMetadata(addresses: AddressBook): MetadataContent {
  const port = addresses.quicPort || null;
  const isPublic = addresses.nodeType === 'public';
  return {
    publicIp: isPublic ? addresses.specificHost : null,
    privateIp: addresses.specificHost,
    publicPort: isPublic ? port : null,
    privatePort: port,
    nodeType: addresses.nodeType,
    isRelay: addresses.isRelay,
    usingRelay: false,
    connectedRelay: null,
    relaySessionId: null,
    relayAddress: null,
    protocols: ['remote-network/1'],
    capabilities: addresses.isRelay ? ['relay'] : [],
  };
}

/** `capabilities` with `relay` set or cleared; the other entries (the services summary) stay. */
export function withRelayCapability(capabilities: readonly string[], isRelay: boolean): string[] {
  return [...(isRelay ? ['relay'] : []), ...capabilities.filter((c) => c !== 'relay')];
}

export interface SelfMetadataOptions {
  readonly mode: NodeTypeSetting;
  readonly reachability: ReachabilityService;
  readonly addresses: AddressBook;
  readonly relayClient: RelayClient;
  readonly publisher: MetadataPublisher;
  readonly connections: ConnectionManager;
  readonly bus: EventBus<NodeEventMap>;
  readonly logger: Logger;
  /** An undecided `auto` node registers with a relay after this (to be reachable meanwhile). */
  readonly relayGraceMs: number;
}

/**
 * Our own metadata, built and republished from reachability, relay and address events, per the
 * seed's startup flow: a public node publishes
 * its address (and offers relay service if configured); a private node keeps a relay session and
 * publishes that relay; an `auto` node still undecided after the grace period registers with a relay
 * already, so it is reachable meanwhile, and drops the session if it turns out public. Every change
 * of verdict or relay is republished at once (seq + 1), a lost relay included (`using_relay` false,
 * no stale relay address), and told to connected peers by a re-exchange (their `is_relay`,
 * `node_type` for us change). A private node's metadata must name its relay, so the relay client's
 * session is driven from here too.
 */
export class SelfMetadata implements Component {
  readonly name = 'self-metadata';
  private graceTimer: NodeJS.Timeout | undefined;
  private readonly offs: Array<() => void> = [];
  private readonly log: Logger;

  /** As the node runs it: `[node] node_type`, `[nat] relay_grace_period`. */
  static create(c: NodeComponents, reachability: ReachabilityService, relayClient: RelayClient): SelfMetadata {
    const { config, addresses, publisher, connections, bus, logger } = c;
    return new SelfMetadata({
      mode: config.node.node_type,
      reachability,
      relayClient,
      addresses,
      publisher,
      connections,
      bus,
      logger,
      relayGraceMs: config.nat.relay_grace_period * 1000,
    });
  }

  constructor(private readonly options: SelfMetadataOptions) {
    this.log = options.logger.child({ component: 'self-metadata' });
  }

  start(): void {
    const { bus, mode, reachability, relayClient } = this.options;
    this.offs.push(
      bus.on('nat.reachability.changed', (e) => void this.verdictChanged(e.payload.reachability, e.payload.previous)),
      bus.on('relay.session.registered', (e) => {
        if (e.payload.role === 'client') void this.relayChanged();
      }),
      bus.on('relay.session.closed', (e) => {
        if (e.payload.role === 'client') void this.relayChanged();
      }),
      // A public node that listens on every interface learns the address to publish from its peers.
      bus.on('peer.exchanged', () => {
        if (reachability.reachability === 'PUBLIC' && this.options.addresses.specificHost === null) void this.publishAddress();
      }),
    );
    if (mode === 'private') relayClient.activate();
    if (mode === 'auto') {
      this.graceTimer = setTimeout(() => {
        if (reachability.reachability !== 'UNKNOWN') return;
        this.log.info({ graceMs: this.options.relayGraceMs }, 'no reachability verdict yet: registering with a relay meanwhile');
        relayClient.activate();
      }, this.options.relayGraceMs);
      this.graceTimer.unref();
    }
  }

  async stop(): Promise<void> {
    clearTimeout(this.graceTimer);
    for (const off of this.offs.splice(0)) off();
  }

  private async verdictChanged(verdict: DecidedReachability, previous: string): Promise<void> {
    const { publisher, relayClient } = this.options;
    try {
      if (verdict === 'PUBLIC') {
        clearTimeout(this.graceTimer);
        // Reachable directly: a relay session (from the grace period, or from when we were behind
        // NAT) is dropped; the one publication below says so along with the rest.
        await relayClient.deactivate('this node is public');
        const isRelay = this.options.addresses.isRelay;
        await publisher.update({
          nodeType: 'public',
          isRelay,
          capabilities: withRelayCapability(publisher.current.capabilities, isRelay),
          usingRelay: false,
          connectedRelay: null,
          relaySessionId: null,
          relayAddress: null,
          ...this.addressFields(),
        });
        if (publisher.isHeld) await publisher.release();
      } else {
        await publisher.update({
          nodeType: 'private',
          publicIp: null,
          publicPort: null,
          isRelay: false,
          capabilities: withRelayCapability(publisher.current.capabilities, false),
        });
        relayClient.activate();
      }
      this.log.info({ verdict, previous }, 'reachability changed: metadata updated');
    } catch (error) {
      this.log.warn({ err: error }, 'metadata update after the reachability verdict failed');
    }
    this.tellPeers();
  }

  /** Publishes the relay we use now, or that we have none (never a stale relay address). */
  private async relayChanged(): Promise<void> {
    const { publisher, relayClient, reachability } = this.options;
    // A public node drops its relay session on purpose; verdictChanged publishes that.
    if (reachability.reachability === 'PUBLIC') return;
    const session = relayClient.session;
    try {
      await publisher.update({
        usingRelay: session !== null,
        connectedRelay: session?.relayPeerId ?? null,
        relaySessionId: session?.sessionId ?? null,
        relayAddress: session?.relayAddress ?? null,
      });
      if (session && publisher.isHeld) await publisher.release();
    } catch (error) {
      this.log.warn({ err: error }, 'publishing our relay failed');
    }
  }

  /** Publishes our public address when it differs from the one in our metadata. */
  private async publishAddress(): Promise<void> {
    const address = this.addressFields();
    const current = this.options.publisher.current;
    if (address.publicIp === undefined || (current.publicIp === address.publicIp && current.publicPort === address.publicPort)) return;
    await this.options.publisher.update(address).catch((error: unknown) => {
      this.log.warn({ err: error }, 'publishing our address failed');
    });
  }

  private addressFields(): { publicIp?: string; publicPort?: number } {
    const text = this.options.addresses.publicAddress;
    const address: HostPort | undefined = text ? parseHostPort(text) : undefined;
    return address ? { publicIp: address.host, publicPort: address.port } : {};
  }

  /** Connected peers learn our new node type and relay flag from a re-exchange. */
  private tellPeers(): void {
    const { connections } = this.options;
    for (const connection of connections.list()) {
      if (!connection.peerId || (connection.state !== 'IDLE' && connection.state !== 'CONNECTED')) continue;
      connections
        .reexchange(connection.peerId)
        .catch((error: unknown) => this.log.debug({ err: error }, 're-exchange after a verdict failed'));
    }
  }
}
