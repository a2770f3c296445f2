/** Where a connection is in its life: dialled, exchanged (with or without open streams), idle past its timeout, gone. */
export type ConnectionState = 'CONNECTING' | 'CONNECTED' | 'IDLE' | 'STALE' | 'CLOSED';
