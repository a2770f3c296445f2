import { accessSync, constants } from 'node:fs';
import { isAbsolute, join } from 'node:path';

/** Where the sandbox's helper programs are looked for (not the node's PATH, which an operator may have changed). */
const SYSTEM_PATH = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

export function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** An absolute path to `name` (or `name` itself when absolute), or null when not found. */
export function findTool(name: string): string | null {
  if (isAbsolute(name)) return isExecutable(name) ? name : null;
  const dirs = [...(process.env.PATH ?? '').split(':').filter((dir) => isAbsolute(dir)), ...SYSTEM_PATH];
  for (const dir of dirs) {
    const candidate = join(dir, name);
    if (isExecutable(candidate)) return candidate;
  }
  return null;
}
