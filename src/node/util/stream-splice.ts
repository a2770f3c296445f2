import type { PeerStream } from '../quic/types.ts';

/**
 * A stream whose end (the peer's FIN or reset, or our cancel) resolves `ended`: the owner of a
 * long-lived stream (a circuit, a relay session) holds the underlying connection busy until then.
 */
export function observeEnd(stream: PeerStream): { stream: PeerStream; ended: Promise<void> } {
  const relay = new TransformStream<Uint8Array, Uint8Array>();
  const ended = stream.readable.pipeTo(relay.writable).then(
    () => {},
    () => {},
  );
  return {
    stream: {
      readable: relay.readable,
      writable: stream.writable,
      cancel: (reason) => {
        stream.cancel(reason);
        void relay.readable.cancel(reason).catch(() => {});
      },
    },
    ended,
  };
}

export interface SpliceLimits {
  /** Bytes in both directions together. */
  readonly maxBytes: number;
  readonly maxDurationMs: number;
}

export interface SpliceCounters {
  /** Bytes read from `a` and written to `b`. */
  aToB(bytes: number): void;
  bToA(bytes: number): void;
}

/**
 * Copies bytes both ways between two streams until both directions end, counting them and cutting
 * the pair (both streams reset) past the byte or duration limit. Resolves with why it ended.
 */
export async function splice(a: PeerStream, b: PeerStream, limits: SpliceLimits, counters: SpliceCounters): Promise<string> {
  const abort = new AbortController();
  let total = 0;
  let cut: string | undefined;
  const stop = (reason: string) => {
    cut ??= reason;
    abort.abort(new Error(reason));
  };
  const counting = (count: (bytes: number) => void) =>
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        total += chunk.byteLength;
        count(chunk.byteLength);
        if (total > limits.maxBytes) stop(`byte limit of ${limits.maxBytes} reached`);
        else controller.enqueue(chunk);
      },
    });
  const timer = setTimeout(() => stop(`duration limit of ${limits.maxDurationMs} ms reached`), limits.maxDurationMs);
  timer.unref();
  // A broken direction stops the other: a half-open circuit would only hold resources.
  const pipe = (from: PeerStream, to: PeerStream, count: (bytes: number) => void) =>
    from.readable
      .pipeThrough(counting(count))
      .pipeTo(to.writable, { signal: abort.signal })
      .catch((error: unknown) => {
        stop('a side reset the circuit');
        throw error;
      });
  const results = await Promise.allSettled([pipe(a, b, (n) => counters.aToB(n)), pipe(b, a, (n) => counters.bToA(n))]);
  clearTimeout(timer);
  if (cut !== undefined || results.some((r) => r.status === 'rejected')) {
    const reason = cut ?? 'a side reset the circuit';
    abort.abort(new Error(reason));
    a.cancel(reason);
    b.cancel(reason);
    return reason;
  }
  return 'both sides finished';
}
