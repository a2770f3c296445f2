import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Component } from '../base/component.ts';
import { RemoteNetworkError } from '../base/errors.ts';

const SHA256 = /^[0-9a-f]{64}$/;

export class BlobVerificationError extends RemoteNetworkError {
  readonly code = 'BLOB_VERIFICATION_FAILED';
}

/**
 * Job outputs by content: `<root>/<sha256>`, written to a temporary name and renamed once complete
 * and verified, so a file under a hash name always has that hash. The executor keeps what its jobs
 * produced; the orderer keeps what it fetched (and workflows will pass them on by hash).
 */
export class BlobStore implements Component {
  readonly name = 'blob-store';
  constructor(private readonly root: string) {}

  async start(): Promise<void> {
    await mkdir(this.root, { recursive: true, mode: 0o700 });
    // Leftovers of writes a crash interrupted.
    for (const name of await readdir(this.root)) if (name.endsWith('.part')) await rm(join(this.root, name), { force: true });
  }

  path(sha256: string): string {
    if (!SHA256.test(sha256)) throw new BlobVerificationError(`not a SHA-256: ${sha256.slice(0, 80)}`);
    return join(this.root, sha256);
  }

  async size(sha256: string): Promise<number | undefined> {
    try {
      return (await stat(this.path(sha256))).size;
    } catch {
      return undefined;
    }
  }

  /** Copies a file in (hashing as it goes), unless its content is there already. */
  async importFile(file: string): Promise<{ sha256: string; size: number }> {
    return this.write(createReadStream(file));
  }

  async put(data: Buffer): Promise<{ sha256: string; size: number }> {
    const sha256 = createHash('sha256').update(data).digest('hex');
    if ((await this.size(sha256)) === data.length) return { sha256, size: data.length };
    const part = this.partName();
    await writeFile(part, data, { mode: 0o600 });
    await rename(part, this.path(sha256));
    return { sha256, size: data.length };
  }

  /** Writes `source` and checks it is exactly `expected` (size and hash) before it gets its name. */
  async receive(source: Readable | AsyncIterable<Uint8Array>, expected: { sha256: string; size: number }): Promise<void> {
    await this.write(Readable.from(source), expected);
  }

  read(sha256: string): Readable {
    return createReadStream(this.path(sha256));
  }

  /** Removes every blob no kept job names (retention). */
  async prune(referenced: ReadonlySet<string>): Promise<number> {
    let removed = 0;
    for (const name of await readdir(this.root)) {
      if (SHA256.test(name) && !referenced.has(name)) {
        await rm(join(this.root, name), { force: true });
        removed += 1;
      }
    }
    return removed;
  }

  private partName(): string {
    return join(this.root, `${randomBytes(8).toString('hex')}.part`);
  }

  private async write(source: Readable, expected?: { sha256: string; size: number }): Promise<{ sha256: string; size: number }> {
    const part = this.partName();
    const hash = createHash('sha256');
    let size = 0;
    const meter = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        size += chunk.length;
        if (expected && size > expected.size) return done(new BlobVerificationError(`more than the ${expected.size} bytes announced`));
        hash.update(chunk);
        done(null, chunk);
      },
    });
    try {
      await pipeline(source, meter, createWriteStream(part, { mode: 0o600 }));
      if (expected && size !== expected.size) throw new BlobVerificationError(`${size} bytes arrived, ${expected.size} were announced`);
      const sha256 = hash.digest('hex');
      if (expected && sha256 !== expected.sha256) throw new BlobVerificationError(`content hashes to ${sha256}, not ${expected.sha256}`);
      await rename(part, this.path(sha256));
      return { sha256, size };
    } catch (error) {
      await rm(part, { force: true });
      throw error;
    }
  }
}
