import type { MainlineDht } from '../dht/mainline-dht.ts';
import type { AddressBook } from '../addresses/address-book.ts';
import type { BaseComponents } from '../components.ts';
import type { NodeType } from '../base/node-type.ts';
import { formatAddress } from '../base/address.ts';
import type { KnownPeerInput } from '../../db/known-peers.ts';
import { RemoteNetworkError } from '../base/errors.ts';
import type { NodeIdentity } from '../identity/key-store.ts';
import { peerIdFromPublicKey } from '../base/peer-id.ts';
import type { KnownPeersService } from '../peers/known-peers-service.ts';
import type { PeerConnection, PeerStream } from '../quic/types.ts';
import { TokenBuckets } from '../util/token-buckets.ts';
import { MessageChannel } from '../wire/channel.ts';
import {
  type IdentityMessage,
  type KnownPeerEntry,
  PROTOCOL_VERSION,
  identityMessage,
  knownPeerEntry,
  knownPeersMessage,
} from '../wire/messages.ts';

/** Peers remembered per connection as already named to the other side (see `told`). */
const MAX_TOLD_PER_CONNECTION = 1000;
/** Connections whose sharing budget is tracked at once (a bucket that refilled is forgotten). */
const MAX_BUDGETED_CONNECTIONS = 10_000;

/** The identity a peer claims in the exchange is not the one its TLS certificate proves. */
export class IdentityMismatchError extends RemoteNetworkError {
  readonly code = 'IDENTITY_MISMATCH';
}

export interface ExchangeResult {
  readonly remote: IdentityMessage;
  /** Entries in the peer's list. */
  readonly peersReceived: number;
  /** Entries dropped as invalid (bad format, or peer_id ≠ SHA1(public_key)). */
  readonly peersDropped: number;
  /** Peers that were new to us (hearsay until verified). */
  readonly peersDiscovered: number;
  /** New peers not taken: past the sender's hearsay allowance (PeerTrust). */
  readonly peersRefused: number;
  /** Entries (the peer's own included) that could not be stored: the storage failed (see node { health }). */
  readonly peersNotStored: number;
}

/** What this node says about itself; read at each exchange (ports and ids may change). */
export interface LocalIdentity {
  readonly identity: NodeIdentity;
  dhtNodeId(): string;
  nodeType(): NodeType;
  isRelay(): boolean;
  topic(): string;
  dhtPort(): number;
  listenAddresses(): string[];
}

export interface IdentityExchangerOptions {
  readonly local: LocalIdentity;
  readonly knownPeers: KnownPeersService;
  readonly maxPeersToShare: number;
  /**
   * Peers we name to one connection per minute at most: the allowance the other side gives us
   * (`hearsay_per_minute`, the PEX norm). Whatever it refused past its allowance would stay
   * "told" on this connection and never be sent again, so we stay within it instead.
   */
  readonly sharePerMinute: number;
}

/**
 * The seed's two-phase exchange, run once on every new connection over one stream the dialer
 * opens: both sides send their identity, then up to `maxPeersToShare` verified known peers (most
 * recently seen first, neither party included, nor any peer already named on this connection;
 * hearsay is never passed on). What the peer lists is hearsay to us, within its allowance. Each side
 * writes both phases and its end of the stream in one go (the order on the stream is the seed's),
 * so an exchange costs one round trip. No DHT lookup happens here: the exchange is local work only.
 */
export class IdentityExchanger {
  /**
   * Per connection, the peers either side has already named to the other in an exchange over it
   * (the peer knows them): re-exchanges leave them out, so each one carries what the other side
   * may not know yet instead of the same most recent peers again. A converged pair exchanges
   * short lists. Forgotten past MAX_TOLD_PER_CONNECTION, then filled again.
   */
  private readonly told = new WeakMap<PeerConnection, Set<string>>();
  /** What each connection may still be told this minute (see `sharePerMinute`). */
  private readonly budget: TokenBuckets;

  /** As the node runs it: what we tell peers about ourselves comes from the address book. */
  static create({ config, identity, knownPeers }: BaseComponents, dht: MainlineDht, addresses: AddressBook): IdentityExchanger {
    const discovery = config.peer_discovery;
    return new IdentityExchanger({
      local: {
        identity,
        dhtNodeId: () => dht.nodeId.toString('hex'),
        nodeType: () => addresses.nodeType,
        isRelay: () => addresses.isRelay,
        topic: () => discovery.topic,
        dhtPort: () => dht.port,
        listenAddresses: () => addresses.listenAddresses(),
      },
      knownPeers,
      maxPeersToShare: discovery.max_known_peers_to_share,
      sharePerMinute: discovery.hearsay_per_minute,
    });
  }

  constructor(private readonly options: IdentityExchangerOptions) {
    const perMinute = options.sharePerMinute;
    this.budget = new TokenBuckets({ burst: perMinute, perSecond: perMinute / 60, maxKeys: MAX_BUDGETED_CONNECTIONS });
  }

  /** Dialer side: opens the stream (with `open`, when given) and leads the conversation. */
  async initiate(connection: PeerConnection, open: () => Promise<PeerStream> = () => connection.openStream()): Promise<ExchangeResult> {
    const channel = new MessageChannel(await open());
    try {
      // Both phases and our end at once: the peer id TLS proved already names whom to leave out
      // of the list, so nothing here waits for the peer's identity; one round trip in all.
      const ours = this.knownPeersFor(connection, connection.remotePeerId);
      await channel.sendFinal(this.identityFor(connection), ours);
      const remote = this.checkIdentity(await channel.receive(identityMessage, 'identity'), connection);
      const list = await channel.receive(knownPeersMessage, 'known_peers');
      // Stored before the peer's end is read: a peer that never ends the stream costs its stream,
      // not what it told us.
      const result = this.store(connection, remote, list.peers, ours);
      await channel.finish();
      return result;
    } catch (error) {
      await channel.fail(error);
      throw error;
    }
  }

  /** Listener side: the stream's first message was `identity` (validated by the protocol registry). */
  async respond(connection: PeerConnection, channel: MessageChannel, claimed: IdentityMessage): Promise<ExchangeResult> {
    try {
      const remote = this.checkIdentity(claimed, connection);
      // Answered before reading the dialer's list: a dialer that waits for our identity before
      // sending its list (phase by phase) is served as well as one that sent both at once.
      const ours = this.knownPeersFor(connection, remote.peer_id);
      await channel.sendFinal(this.identityFor(connection), ours);
      const list = await channel.receive(knownPeersMessage, 'known_peers');
      const result = this.store(connection, remote, list.peers, ours);
      await channel.finish();
      return result;
    } catch (error) {
      await channel.fail(error);
      throw error;
    }
  }

  private identityFor(connection: PeerConnection): IdentityMessage {
    const { local } = this.options;
    return {
      type: 'identity',
      protocol_version: PROTOCOL_VERSION,
      peer_id: local.identity.peerId,
      dht_node_id: local.dhtNodeId(),
      public_key: Buffer.from(local.identity.publicKey).toString('hex'),
      node_type: local.nodeType(),
      is_relay: local.isRelay(),
      topic: local.topic(),
      dht_port: local.dhtPort(),
      listen_addresses: local.listenAddresses(),
      observed_address: formatAddress(connection.remoteAddress),
    };
  }

  /** peer_id = SHA1(public_key) = the key TLS proved; anything else ends the connection. */
  private checkIdentity(remote: IdentityMessage, connection: PeerConnection): IdentityMessage {
    const keyHex = Buffer.from(connection.remotePublicKey).toString('hex');
    if (peerIdFromPublicKey(Buffer.from(remote.public_key, 'hex')) !== remote.peer_id) {
      throw new IdentityMismatchError(`claimed peer id ${remote.peer_id} is not SHA1 of the claimed public key`);
    }
    if (remote.peer_id !== connection.remotePeerId || remote.public_key !== keyHex) {
      throw new IdentityMismatchError(
        `claimed peer id ${remote.peer_id} differs from ${connection.remotePeerId} proven by the TLS certificate`,
      );
    }
    return remote;
  }

  private knownPeersFor(connection: PeerConnection, remotePeerId: string) {
    const { local, knownPeers, maxPeersToShare } = this.options;
    const told = this.toldOn(connection);
    const limit = Math.min(maxPeersToShare, this.budget.available(connection.id));
    const peers: KnownPeerEntry[] = (limit > 0 ? knownPeers.recent(limit, [local.identity.peerId, remotePeerId, ...told]) : []).map(
      (p) => ({
        peer_id: p.peerId,
        dht_node_id: p.dhtNodeId,
        public_key: Buffer.from(p.publicKey).toString('hex'),
        is_relay: p.isRelay,
      }),
    );
    this.budget.takeUpTo(connection.id, peers.length);
    return { type: 'known_peers' as const, topic: local.topic(), peers, count: peers.length };
  }

  private toldOn(connection: PeerConnection): Set<string> {
    let told = this.told.get(connection);
    if (!told || told.size > MAX_TOLD_PER_CONNECTION) {
      told = new Set();
      this.told.set(connection, told);
    }
    return told;
  }

  /** Stores what the peer told us; both lists count as told once the exchange got this far. */
  private store(
    connection: PeerConnection,
    remote: IdentityMessage,
    entries: readonly unknown[],
    ours: { readonly peers: readonly KnownPeerEntry[] },
  ): ExchangeResult {
    const told = this.toldOn(connection);
    for (const p of ours.peers) told.add(p.peer_id);
    const inputs: KnownPeerInput[] = [
      {
        publicKey: Buffer.from(remote.public_key, 'hex'),
        dhtNodeId: remote.dht_node_id,
        isRelay: remote.is_relay,
        topic: remote.topic,
        source: 'identity_exchange',
      },
    ];
    let dropped = 0;
    for (const entry of entries) {
      const parsed = knownPeerEntry.safeParse(entry);
      if (!parsed.success || peerIdFromPublicKey(Buffer.from(parsed.data.public_key, 'hex')) !== parsed.data.peer_id) {
        dropped += 1;
        continue;
      }
      told.add(parsed.data.peer_id);
      inputs.push({
        publicKey: Buffer.from(parsed.data.public_key, 'hex'),
        dhtNodeId: parsed.data.dht_node_id,
        isRelay: parsed.data.is_relay,
        topic: remote.topic,
        source: 'peer_exchange',
      });
    }
    const result = this.options.knownPeers.record(inputs, connection.remotePeerId);
    return {
      remote,
      peersReceived: entries.length,
      peersDropped: dropped,
      peersDiscovered: result.inserted.length,
      peersRefused: result.refused,
      peersNotStored: result.notStored,
    };
  }
}
