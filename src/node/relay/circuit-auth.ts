import { randomBytes } from 'node:crypto';
import { RemoteNetworkError } from '../base/errors.ts';
import type { NodeIdentity } from '../identity/key-store.ts';
import { peerIdFromPublicKey } from '../base/peer-id.ts';
import { verifySignature } from '../identity/signatures.ts';
import type { MessageChannel } from '../wire/channel.ts';
import { circuitFinishMessage, circuitHelloMessage, circuitProofMessage } from '../wire/messages.ts';

/**
 * End-to-end authentication over a relay circuit. The relay sees and splices every byte, so TLS
 * (which ends at the relay) proves nothing about the far end. Each side signs a transcript holding
 * both fresh nonces, both peer ids, its role and the circuit's purpose: the relay cannot answer for
 * either side (it has neither key) nor replay an old circuit (the nonces are new each time).
 */
export class CircuitAuthError extends RemoteNetworkError {
  readonly code = 'CIRCUIT_AUTH_FAILED';
}

export type CircuitPurpose = 'control' | 'stream';

export interface CircuitPeer {
  readonly peerId: string;
  readonly publicKey: Uint8Array;
}

export interface AuthenticatedCircuit {
  readonly remote: CircuitPeer;
  readonly purpose: CircuitPurpose;
  /** Chosen by the initiator: names the relayed connection a `stream` circuit belongs to. */
  readonly connectionId: string;
  /** Initiator only: hello → proof round trip through the relay. */
  readonly rttMs: number | null;
}

const CONTEXT = 'remote-network/1 circuit';
const NONCE_BYTES = 32;

interface Transcript {
  readonly initiatorNonce: string;
  readonly responderNonce: string;
  readonly initiator: string;
  readonly responder: string;
  readonly purpose: CircuitPurpose;
  readonly connectionId: string;
}

function transcript(role: 'initiator' | 'responder', t: Transcript): Buffer {
  return Buffer.from([CONTEXT, role, t.initiator, t.responder, t.initiatorNonce, t.responderNonce, t.purpose, t.connectionId].join('\n'));
}

function provenKey(peerId: string, publicKeyHex: string, expectedPeerId: string, who: string): Uint8Array {
  const publicKey = Buffer.from(publicKeyHex, 'hex');
  if (peerIdFromPublicKey(publicKey) !== peerId) throw new CircuitAuthError(`${who}: peer id is not SHA1 of its key`);
  if (peerId !== expectedPeerId) throw new CircuitAuthError(`${who}: expected peer ${expectedPeerId}, got ${peerId}`);
  return publicKey;
}

export async function authenticateAsInitiator(
  channel: MessageChannel,
  identity: NodeIdentity,
  expectedPeerId: string,
  purpose: CircuitPurpose,
  connectionId: string,
): Promise<AuthenticatedCircuit> {
  const initiatorNonce = randomBytes(NONCE_BYTES).toString('hex');
  const started = performance.now();
  await channel.send({
    type: 'circuit_hello',
    peer_id: identity.peerId,
    public_key: Buffer.from(identity.publicKey).toString('hex'),
    nonce: initiatorNonce,
    purpose,
    connection_id: connectionId,
  });
  const proof = await channel.receive(circuitProofMessage, 'circuit_proof');
  const rttMs = performance.now() - started;
  const publicKey = provenKey(proof.peer_id, proof.public_key, expectedPeerId, 'responder');
  const t: Transcript = {
    initiatorNonce,
    responderNonce: proof.nonce,
    initiator: identity.peerId,
    responder: proof.peer_id,
    purpose,
    connectionId,
  };
  if (!verifySignature(publicKey, transcript('responder', t), Buffer.from(proof.signature, 'hex'))) {
    throw new CircuitAuthError('responder: bad signature');
  }
  await channel.send({ type: 'circuit_finish', signature: Buffer.from(identity.sign(transcript('initiator', t))).toString('hex') });
  return { remote: { peerId: proof.peer_id, publicKey }, purpose, connectionId, rttMs };
}

/** `claimedPeerId` is who the relay says is calling: the handshake must prove exactly that peer. */
export async function authenticateAsResponder(
  channel: MessageChannel,
  identity: NodeIdentity,
  claimedPeerId: string,
): Promise<AuthenticatedCircuit> {
  const hello = await channel.receive(circuitHelloMessage, 'circuit_hello');
  const publicKey = provenKey(hello.peer_id, hello.public_key, claimedPeerId, 'initiator');
  const responderNonce = randomBytes(NONCE_BYTES).toString('hex');
  const t: Transcript = {
    initiatorNonce: hello.nonce,
    responderNonce,
    initiator: hello.peer_id,
    responder: identity.peerId,
    purpose: hello.purpose,
    connectionId: hello.connection_id,
  };
  await channel.send({
    type: 'circuit_proof',
    peer_id: identity.peerId,
    public_key: Buffer.from(identity.publicKey).toString('hex'),
    nonce: responderNonce,
    signature: Buffer.from(identity.sign(transcript('responder', t))).toString('hex'),
  });
  const finish = await channel.receive(circuitFinishMessage, 'circuit_finish');
  if (!verifySignature(publicKey, transcript('initiator', t), Buffer.from(finish.signature, 'hex'))) {
    throw new CircuitAuthError('initiator: bad signature');
  }
  return { remote: { peerId: hello.peer_id, publicKey }, purpose: hello.purpose, connectionId: hello.connection_id, rttMs: null };
}
