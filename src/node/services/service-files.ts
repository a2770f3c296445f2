import { createHash } from 'node:crypto';
import { constants, createReadStream } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { DataFileMissingError, ServiceExecutableMissingError } from './errors.ts';

/** The executable exists, is a regular file (symlinks resolved) and this process may execute it. */
export async function checkExecutable(path: string): Promise<void> {
  const info = await stat(path).catch(() => undefined);
  if (!info) throw new ServiceExecutableMissingError(path, 'does not exist');
  if (!info.isFile()) throw new ServiceExecutableMissingError(path, 'is not a regular file');
  await access(path, constants.X_OK).catch(() => {
    throw new ServiceExecutableMissingError(path, 'is not executable');
  });
}

/** The data file's size and SHA-256 (hex), read once in full; it must be a readable regular file. */
export async function checkDataFile(path: string): Promise<{ size: number; sha256: string }> {
  const info = await stat(path).catch(() => undefined);
  if (!info) throw new DataFileMissingError(path, 'does not exist');
  if (!info.isFile()) throw new DataFileMissingError(path, 'is not a regular file');
  const hash = createHash('sha256');
  let size = 0;
  try {
    for await (const chunk of createReadStream(path)) {
      const bytes = chunk as Buffer;
      size += bytes.length;
      hash.update(bytes);
    }
  } catch (error) {
    throw new DataFileMissingError(path, `cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  return { size, sha256: hash.digest('hex') };
}
