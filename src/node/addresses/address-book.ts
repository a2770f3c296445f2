import type { BaseComponents } from '../components.ts';
import { type HostPort, formatAddress } from '../base/address.ts';
import type { Component } from '../base/component.ts';
import type { NodeType, NodeTypeSetting, Reachability } from '../base/node-type.ts';
import type { EventBus } from '../events/bus.ts';
import type { NodeEventMap } from '../events/types.ts';
import { ObservedAddresses } from '../nat/observed-addresses.ts';
import { isLocalHost } from '../util/local-addresses.ts';

export interface AddressBookOptions {
  /** `[node] node_type`: a forced type never changes; `auto` follows the reachability verdicts. */
  readonly mode: NodeTypeSetting;
  /** `[node] listen_host`: a specific address is our listen address; 0.0.0.0 is none. */
  readonly listenHost: string;
  /** `[relay] relay_mode`: a relay serves only once it is known to be public. */
  readonly relayMode: boolean;
  /** The QUIC port configured (0: any), until the transport has bound one. */
  readonly configuredQuicPort: number;
  readonly transport: { readonly running: boolean; readonly port: number };
  readonly dht: { readonly port: number };
  readonly bus: EventBus<NodeEventMap>;
}

/**
 * The node's own addresses and how it is reached: what it listens on, what peers observe, whether
 * it is public (and so a relay, when it offers to be one), and what to publish as its address.
 * Everything that asks "which address is ours" asks here.
 */
export class AddressBook implements Component {
  readonly name = 'address-book';
  /** Our address as each directly connected peer sees it (recorded by the reachability service). */
  readonly observed: ObservedAddresses;
  /** The listen host when it is a specific address (it is then our address), else null. */
  readonly specificHost: string | null;
  private verdict: Reachability;
  private off: (() => void) | undefined;

  static create({ config, bus }: BaseComponents, transport: AddressBookOptions['transport'], dht: AddressBookOptions['dht']): AddressBook {
    return new AddressBook({
      mode: config.node.node_type,
      listenHost: config.node.listen_host,
      relayMode: config.relay.relay_mode,
      configuredQuicPort: config.quic.quic_port,
      transport,
      dht,
      bus,
    });
  }

  constructor(private readonly options: AddressBookOptions) {
    this.specificHost = options.listenHost === '0.0.0.0' ? null : options.listenHost;
    this.observed = new ObservedAddresses(() => this.quicPort);
    this.verdict = options.mode === 'public' ? 'PUBLIC' : options.mode === 'private' ? 'PRIVATE' : 'UNKNOWN';
  }

  /** Started before every other component, so that their listeners of a verdict already see it here. */
  start(): void {
    if (this.options.mode !== 'auto') return;
    this.off = this.options.bus.on('nat.reachability.changed', (e) => {
      this.verdict = e.payload.reachability;
    });
  }

  stop(): void {
    this.off?.();
    this.off = undefined;
  }

  /** Forced by the config, or as reachability detection found (`auto` is private until then). */
  get nodeType(): NodeType {
    return this.verdict === 'PUBLIC' ? 'public' : 'private';
  }

  get isRelay(): boolean {
    return this.options.relayMode && this.nodeType === 'public';
  }

  /** The QUIC port peers dial (the bound one once the transport started). */
  get quicPort(): number {
    return this.options.transport.running ? this.options.transport.port : this.options.configuredQuicPort;
  }

  get dhtAddress(): HostPort {
    return { host: this.options.listenHost, port: this.options.dht.port };
  }

  /** What we listen on, as peers may dial it (nothing when bound to every interface). */
  listenAddresses(): string[] {
    return this.specificHost ? [formatAddress({ host: this.specificHost, port: this.quicPort })] : [];
  }

  /** Our address as the internet reaches it, when known (the listen address, or what peers observe). */
  get publicAddress(): string | null {
    if (this.nodeType !== 'public') return null;
    return publicAddressOf(this.observed, this.specificHost, this.quicPort);
  }

  /** Every address that is ours: observed by peers and listened on (hole punching must not target them). */
  ownAddresses(): string[] {
    return [...this.observed.addresses(), ...this.listenAddresses()];
  }

  /** Our QUIC port on one of our interfaces (a bootstrap list shared by every node names us too). */
  isOwnAddress(address: HostPort): boolean {
    return address.port === this.quicPort && isLocalHost(address.host);
  }
}

/** The observed address to publish for a node found public (its listen address if it has one). */
function publicAddressOf(observed: ObservedAddresses, specificHost: string | null, port: number): string | null {
  if (specificHost) return formatAddress({ host: specificHost, port });
  const primary = observed.primary;
  return primary ? formatAddress(primary) : null;
}
