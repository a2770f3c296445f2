import { MAX_LOG_CHUNK_BYTES } from './job-messages.ts';

/** How long output may wait to be joined with what follows (one row and one frame per burst, not per write). */
const COALESCE_MS = 20;
/** Output written in a burst is stored in chunks of about this size. */
const CHUNK_BYTES = 16 * 1024;

/**
 * Joins a job's small writes into chunks: a job printing a line at a time would otherwise cost a
 * database transaction, a bus event and a frame per line. Order across stdout and stderr is kept
 * (a switch of stream flushes), and nothing waits longer than COALESCE_MS.
 */
export class LogCoalescer {
  private stream: 'stdout' | 'stderr' | null = null;
  private pending: Buffer[] = [];
  private bytes = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly sink: (stream: 'stdout' | 'stderr', data: Buffer) => void) {}

  add(stream: 'stdout' | 'stderr', chunk: Buffer): void {
    if (this.stream !== stream) this.flush();
    this.stream = stream;
    this.pending.push(chunk);
    this.bytes += chunk.length;
    if (this.bytes >= CHUNK_BYTES) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), COALESCE_MS);
  }

  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const stream = this.stream;
    if (stream === null || this.bytes === 0) return;
    const data = Buffer.concat(this.pending, this.bytes);
    this.pending = [];
    this.bytes = 0;
    for (let offset = 0; offset < data.length; offset += MAX_LOG_CHUNK_BYTES) {
      this.sink(stream, data.subarray(offset, offset + MAX_LOG_CHUNK_BYTES));
    }
  }
}
