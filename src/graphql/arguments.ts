import { userInputError } from './errors.ts';

/** A peer id argument (the PeerId scalar checked its form) that must name another node than this one. */
export function otherPeerIdArgument(peerId: string, ownPeerId: string, argument = 'peerId'): string {
  if (peerId === ownPeerId) throw userInputError('that is this node', { argument });
  return peerId;
}
