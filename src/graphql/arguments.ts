import { isPeerId } from '../node/identity/peer-id.ts';
import { userInputError } from './errors.ts';

/**
 * A peer id argument (40 hex characters, any case) as the node's lower-case form, or a
 * BAD_USER_INPUT error naming the argument. Every resolver taking a peer id goes through here,
 * so none passes an arbitrary string (up to the 1 MiB body limit) on to the node.
 */
export function peerIdArgument(value: unknown, argument = 'peerId'): string {
  const peerId = typeof value === 'string' || typeof value === 'number' ? String(value).toLowerCase() : '';
  if (!isPeerId(peerId)) throw userInputError(`${argument} must be 40 hexadecimal characters`, { argument });
  return peerId;
}

/** A peer id argument that must name another node than this one. */
export function otherPeerIdArgument(value: unknown, ownPeerId: string, argument = 'peerId'): string {
  const peerId = peerIdArgument(value, argument);
  if (peerId === ownPeerId) throw userInputError('that is this node', { argument });
  return peerId;
}
