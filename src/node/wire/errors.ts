import { RemoteNetworkError } from '../base/errors.ts';

/** A peer broke the wire protocol; the stream is reset with this code. */
export abstract class ProtocolError extends RemoteNetworkError {}

export class FrameTooLargeError extends ProtocolError {
  readonly code = 'PROTOCOL_FRAME_TOO_LARGE';

  constructor(
    readonly size: number,
    readonly limit: number,
  ) {
    super(`frame of ${size} bytes exceeds the limit of ${limit}`);
  }
}

export class MalformedMessageError extends ProtocolError {
  readonly code = 'PROTOCOL_MALFORMED';
}

export class UnexpectedMessageError extends ProtocolError {
  readonly code = 'PROTOCOL_UNEXPECTED_MESSAGE';
}

export class ReadTimeoutError extends ProtocolError {
  readonly code = 'PROTOCOL_TIMEOUT';

  constructor(readonly timeoutMs: number) {
    super(`no frame within ${timeoutMs} ms`);
  }
}

export class StreamEndedError extends ProtocolError {
  readonly code = 'PROTOCOL_STREAM_ENDED';
}

/** The remote answered with an error frame. */
export class RemoteRefusedError extends RemoteNetworkError {
  readonly code = 'REMOTE_REFUSED';

  constructor(
    readonly remoteCode: string,
    message: string,
  ) {
    super(`peer refused: ${remoteCode}: ${message}`);
  }
}
