import { readFile, readdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Config } from '../config/schema.ts';
import { MAX_SERVICE_FILE_BYTES, MAX_SERVICE_FILES } from './constants.ts';
import { ServiceInvalidError } from './errors.ts';

/** One file of the services directory: its parsed JSON, or why it could not be read. */
export type DirectoryEntry = { readonly path: string; readonly content: unknown } | { readonly path: string; readonly error: Error };

/** `[services] services_dir`, or `<data_dir>/services` when empty. */
export function servicesDirOf(config: Config): string {
  const dir = config.services.services_dir;
  return resolve(dir === '' ? join(config.node.data_dir, 'services') : dir);
}

/**
 * The `*.json` files of the directory, in name order (at most MAX_SERVICE_FILES): an absent
 * directory holds none. A file too large, unreadable or not JSON comes back with its error, for
 * the caller to log and skip; nothing here throws for one bad file. A directory that exists but
 * cannot be listed (not a directory, no permission) is an error of its own: what it defines is
 * unknown, so the caller must not treat it as empty.
 */
export async function readServicesDirectory(dir: string): Promise<DirectoryEntry[] | { readonly error: Error }> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    return { error: new ServiceInvalidError(`cannot be listed (${(error as NodeJS.ErrnoException).code ?? 'error'})`) };
  }
  const files = names.filter((n) => n.endsWith('.json') && !n.startsWith('.')).sort();
  const entries: DirectoryEntry[] = [];
  for (const [i, name] of files.entries()) {
    const path = join(dir, name);
    if (i >= MAX_SERVICE_FILES) {
      entries.push({ path, error: new ServiceInvalidError(`more than ${MAX_SERVICE_FILES} service files: not read`) });
      continue;
    }
    entries.push(await readEntry(path));
  }
  return entries;
}

async function readEntry(path: string): Promise<DirectoryEntry> {
  try {
    const info = await stat(path);
    if (!info.isFile()) return { path, error: new ServiceInvalidError('not a regular file') };
    if (info.size > MAX_SERVICE_FILE_BYTES) return { path, error: new ServiceInvalidError(`larger than ${MAX_SERVICE_FILE_BYTES} bytes`) };
    const text = await readFile(path, 'utf8');
    try {
      return { path, content: JSON.parse(text) as unknown };
    } catch (error) {
      return { path, error: new ServiceInvalidError(`not JSON: ${(error as Error).message}`) };
    }
  } catch (error) {
    return { path, error: new ServiceInvalidError(`cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'})`) };
  }
}
