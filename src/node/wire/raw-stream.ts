/** A web ReadableStream as an async iterable (for Node's stream utilities). */
export async function* readAll(readable: ReadableStream<Uint8Array>): AsyncGenerator<Uint8Array> {
  const reader = readable.getReader();
  for (;;) {
    const chunk = await reader.read();
    if (chunk.done) return;
    yield chunk.value;
  }
}

/** Reads the peer's end of a stream: QUIC returns a stream's credit only once both directions finished. */
export async function drain(readable: ReadableStream<Uint8Array>): Promise<void> {
  const reader = readable.getReader();
  while (!(await reader.read()).done) {
    // the peer sends nothing after its request
  }
}
