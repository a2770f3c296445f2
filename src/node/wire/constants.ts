/** Wire limits, declared once for both sides. */

/** Frame header: the payload length as an unsigned 32-bit big-endian integer. */
export const FRAME_HEADER_BYTES = 4;
/** Largest frame payload accepted or sent (a known-peers list of 50 is ~12 KiB). */
export const MAX_FRAME_BYTES = 256 * 1024;
/** Longest wait for the next frame of a conversation before the stream is reset. */
export const READ_TIMEOUT_MS = 10_000;
/** Protocol errors from one connection before it is closed. */
export const MAX_PROTOCOL_ERRORS = 3;
