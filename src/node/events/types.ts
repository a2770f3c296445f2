import type { KnownPeerSource } from '../../db/known-peers.ts';
import type { ConnectionState } from '../base/connection-state.ts';
import type { DecidedReachability, Reachability } from '../base/node-type.ts';
import type { LimitReason } from '../quic/refusal.ts';
import type { ServiceKind } from '../services/service.ts';
import type { JobReason, JobState } from '../jobs/job.ts';

/**
 * Every event the node publishes, name → payload. Payloads are plain JSON values so that the API
 * can stream them unchanged. Events declared here before anything emits them (jobs, workflows,
 * docker, relay, hole punching) fix the names and shapes that later components must use.
 */
export type RelayRole = 'server' | 'client';

export interface NodeEventMap {
  'node.started': { peerId: string; apiUrl: string | null };
  'node.stopping': { peerId: string; reason: string };
  /** A part of `node { health }` changed status, or met a new kind of failure (code and message then). */
  'health.changed': { part: 'storage'; status: 'OK' | 'DEGRADED' | 'FAILING'; code: string | null; message: string | null };

  /**
   * A peer became known. `verified` false: hearsay (`via` told us of it), neither shared nor
   * dialled until it proves itself (`peer.verified`).
   */
  'peer.discovered': { peerId: string; topic: string; isRelay: boolean; source: KnownPeerSource; verified: boolean; via: string | null };
  /** Hearsay proved itself: an exchange with the peer, or its signed metadata found in the DHT. */
  'peer.verified': { peerId: string; isRelay: boolean; by: 'exchange' | 'dht'; via: string | null };
  /** What a peer tells us about others is believed less (or again): its entries kept failing verification. */
  'peer.trust.changed': { peerId: string; level: 'trusted' | 'rate_limited' | 'distrusted'; verified: number; unverifiable: number };
  'peer.evicted': { count: number; reason: 'max_known_peers' };

  'connection.state.changed': {
    peerId: string | null;
    connectionId: string;
    remoteAddress: string;
    from: ConnectionState | null;
    to: ConnectionState;
    /** Carried through a relay circuit. */
    viaRelay: boolean;
  };
  'connection.rejected': { remoteAddress: string; claimedPeerId: string | null; reason: string };
  /**
   * A connection refused or closed for a connection limit (see src/node/quic/refusal.ts for the
   * reasons). peerId is null when refused before the TLS handshake proved who it was.
   */
  'connection.limited': { remoteAddress: string; peerId: string | null; reason: LimitReason };
  /** An identity + known-peers exchange completed on a connection. */
  'peer.exchanged': {
    peerId: string;
    connectionId: string;
    remoteAddress: string;
    /** Our address as the peer sees it. */
    observedAddress: string | null;
    dhtPort: number;
    peersReceived: number;
    peersDiscovered: number;
    peersDropped: number;
    /** New peers not taken: past the sender's hearsay allowance. */
    peersRefused: number;
  };

  'dht.metadata.published': { sequence: number; nodesAccepted: number };
  'dht.metadata.fetched': { peerId: string; sequence: number; cached: boolean };
  'dht.topic.peer': { address: string; topic: string };

  /** On a relay (`server`) peerId is the client; on a NAT node (`client`) it is the relay. */
  'relay.session.registered': { sessionId: string; peerId: string; role: RelayRole };
  'relay.session.expired': { sessionId: string; peerId: string; role: RelayRole };
  'relay.session.closed': { sessionId: string; peerId: string; role: RelayRole; reason: string };

  'holepunch.started': { peerId: string; attempt: number };
  /** Reachability detection concluded (or changed its mind). */
  'nat.reachability.changed': {
    reachability: DecidedReachability;
    previous: Reachability;
    /** PROVISIONAL (one peer, or one network) or CONFIRMED (two distinct peers and networks). */
    confidence: 'NONE' | 'PROVISIONAL' | 'CONFIRMED' | 'CONFIGURED';
    natType: string;
    observedAddresses: string[];
  };
  'holepunch.succeeded': { peerId: string; attempt: number; durationMs: number };
  'holepunch.failed': { peerId: string; attempt: number; reason: string };

  /** A service was registered by the operator (API or services directory), or its file changed. */
  'service.registered': { serviceId: string; name: string; kind: ServiceKind };
  'service.removed': { serviceId: string; name: string };

  /**
   * A job's record changed state, on the side that holds it: `orderer` (a job we run on `peerId`)
   * or `executor` (a job we run for `peerId`). Written to the database before it is emitted.
   */
  'job.status.changed': {
    jobId: string;
    role: 'orderer' | 'executor';
    peerId: string;
    serviceId: string;
    workflowId: string | null;
    from: JobState | null;
    to: JobState;
    reason: JobReason | null;
    message: string | null;
  };
  /** A finished job's output is stored here (the executor's copy, or the orderer's once fetched and verified). */
  'job.output.ready': {
    jobId: string;
    role: 'orderer' | 'executor';
    workflowId: string | null;
    name: string;
    size: number;
    sha256: string;
  };
  /** A chunk of a job's stdout or stderr (base64), numbered per job from 1; stored before it is emitted. */
  'job.log': { jobId: string; role: 'orderer' | 'executor'; seq: number; stream: 'stdout' | 'stderr'; data: string; at: number };
  'workflow.started': { workflowId: string; executionId: string };
  'workflow.completed': { workflowId: string; executionId: string; durationMs: number };
  'workflow.failed': { workflowId: string; executionId: string; error: string };

  'docker.pull.progress': { image: string; layer: string | null; current: number; total: number | null };
  'docker.build.progress': { image: string; step: number; totalSteps: number | null; message: string };
  'docker.execution.log': { containerId: string; stream: 'stdout' | 'stderr'; line: string };
}

export type NodeEventType = keyof NodeEventMap;

/** The names as a runtime list (the API validates subscription filters against it). */
export const NODE_EVENT_TYPES = [
  'node.started',
  'node.stopping',
  'health.changed',
  'peer.discovered',
  'peer.verified',
  'peer.trust.changed',
  'peer.evicted',
  'connection.state.changed',
  'connection.rejected',
  'connection.limited',
  'peer.exchanged',
  'dht.metadata.published',
  'dht.metadata.fetched',
  'dht.topic.peer',
  'relay.session.registered',
  'relay.session.expired',
  'relay.session.closed',
  'holepunch.started',
  'nat.reachability.changed',
  'holepunch.succeeded',
  'holepunch.failed',
  'service.registered',
  'service.removed',
  'job.status.changed',
  'job.output.ready',
  'job.log',
  'workflow.started',
  'workflow.completed',
  'workflow.failed',
  'docker.pull.progress',
  'docker.build.progress',
  'docker.execution.log',
] as const satisfies readonly NodeEventType[];

// Compile-time check that the list names every event of the map.
type Missing = Exclude<NodeEventType, (typeof NODE_EVENT_TYPES)[number]>;
const everyEventListed: Missing extends never ? true : Missing = true;
void everyEventListed;
