import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { chown, lstat, mkdir, open, realpath, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { RemoteNetworkError } from '../base/errors.ts';
import { checkJobId } from './job-id.ts';

/** A name from a remote peer or a job that could point outside where it belongs. */
export class UnsafeNameError extends RemoteNetworkError {
  readonly code = 'UNSAFE_NAME';
}

/** Where inputs are written and outputs are collected from, inside a workspace. */
export const INPUTS_DIR = 'inputs';
export const OUTPUTS_DIR = 'outputs';
/** Longest file name Linux file systems take. */
export const MAX_NAME_BYTES = 255;
const READ_CHUNK = 64 * 1024;

/**
 * A single path component, safe to join under a directory: refused when empty, longer than 255
 * bytes, `.` or `..`, or holding `/`, `\`, NUL or a control character (which also rules out
 * absolute paths). Returns the name unchanged.
 */
export function checkRemoteName(name: string, what: string): string {
  const refuse = (why: string): never => {
    throw new UnsafeNameError(`${what} ${JSON.stringify(name)} refused: ${why}`);
  };
  if (typeof name !== 'string' || name.length === 0) refuse('empty');
  if (Buffer.byteLength(name, 'utf8') > MAX_NAME_BYTES) refuse(`longer than ${MAX_NAME_BYTES} bytes`);
  if (name === '.' || name === '..') refuse('a relative directory name');
  if (name.includes('/') || name.includes('\\')) refuse('contains a path separator (names are single file names)');
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
  if (/[\u0000-\u001f\u007f]/.test(name)) refuse('contains NUL or a control character');
  return name;
}

function checkNames(names: readonly string[], what: string): void {
  const seen = new Set<string>();
  for (const name of names) {
    checkRemoteName(name, what);
    if (seen.has(name)) throw new UnsafeNameError(`${what} ${JSON.stringify(name)} is given twice`);
    seen.add(name);
  }
}

/**
 * Creates `<root>/<jobId>/` (0700, owned by the job user so the job can write it) with `inputs/`
 * (the given files, mode 0400) and an empty `outputs/`; returns its path. `root` itself
 * is created 0700 root-owned when missing: the job reaches its workspace through a bind mount, never
 * through `root`.
 */
export async function prepareWorkspace(
  root: string,
  jobId: string,
  inputs: ReadonlyArray<{ name: string; data: Buffer }>,
  owner: { uid: number; gid: number },
): Promise<string> {
  checkJobId(jobId);
  checkNames(
    inputs.map((input) => input.name),
    'input file name',
  );
  await mkdir(root, { recursive: true, mode: 0o700 });
  const workspace = join(root, jobId);
  // No `recursive`: an existing workspace (a reused id) is an error, never silently shared.
  await mkdir(workspace, { mode: 0o700 });
  try {
    await mkdir(join(workspace, INPUTS_DIR), { mode: 0o700 });
    await mkdir(join(workspace, OUTPUTS_DIR), { mode: 0o700 });
    for (const input of inputs) {
      await writeFile(join(workspace, INPUTS_DIR, input.name), input.data, { mode: 0o400, flag: 'wx' });
    }
    for (const path of [
      workspace,
      join(workspace, INPUTS_DIR),
      join(workspace, OUTPUTS_DIR),
      ...inputs.map((i) => join(workspace, INPUTS_DIR, i.name)),
    ]) {
      await chown(path, owner.uid, owner.gid);
    }
  } catch (error) {
    await rm(workspace, { recursive: true, force: true });
    throw error;
  }
  return workspace;
}

export interface CollectedOutput {
  name: string;
  size: number;
  sha256: string;
  /** Host path of the file, inside the workspace. */
  path: string;
}

export interface CollectedOutputs {
  outputs: CollectedOutput[];
  /** Declared, but the job did not write them. */
  missing: string[];
  /** Declared, but not collected: a symlink, not a regular file, over the size cap, or an unsafe name. */
  refused: Array<{ name: string; reason: string }>;
}

function errnoCode(error: unknown): string | undefined {
  return error instanceof Error && 'code' in error && typeof error.code === 'string' ? error.code : undefined;
}

/** Hashes a regular file opened without following a symlink; null with a reason when it is not one or too big. */
async function hashFile(path: string, maxBytes: number): Promise<{ size: number; sha256: string } | { refused: string }> {
  let handle;
  try {
    // O_NOFOLLOW: a symlink swapped in after lstat fails here (ELOOP); O_NONBLOCK: a FIFO cannot hang us.
    handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (error) {
    return {
      refused: errnoCode(error) === 'ELOOP' ? 'is a symlink (never followed)' : `cannot be opened (${errnoCode(error) ?? String(error)})`,
    };
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) return { refused: 'is not a regular file' };
    if (stat.size > maxBytes) return { refused: `is ${stat.size} bytes, over the ${maxBytes}-byte cap` };
    const hash = createHash('sha256');
    const buffer = Buffer.alloc(READ_CHUNK);
    let size = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, size);
      if (bytesRead === 0) break;
      size += bytesRead;
      // The size may not grow past the cap between the stat and the read (a process still writing).
      if (size > maxBytes) return { refused: `grew past the ${maxBytes}-byte cap while read` };
      hash.update(buffer.subarray(0, bytesRead));
    }
    return { size, sha256: hash.digest('hex') };
  } finally {
    await handle.close();
  }
}

/**
 * Collects the declared outputs from `<workspace>/outputs/`, nothing else: each name must be safe,
 * each file a regular file (lstat and O_NOFOLLOW: a symlink is refused, never followed) of at most
 * `maxBytes`. Undeclared files are ignored.
 */
export async function collectOutputs(workspace: string, declared: readonly string[], maxBytes: number): Promise<CollectedOutputs> {
  const result: CollectedOutputs = { outputs: [], missing: [], refused: [] };
  const outputsDir = join(workspace, OUTPUTS_DIR);
  const dirStat = await lstat(outputsDir).catch(() => null);
  // The job owns its workspace: it may have replaced outputs/ with a symlink to somewhere else.
  const dirProblem =
    dirStat === null
      ? null
      : !dirStat.isDirectory()
        ? `${OUTPUTS_DIR}/ is not a directory (a symlink is never followed)`
        : (await realpath(outputsDir)) !== join(await realpath(workspace), OUTPUTS_DIR)
          ? `${OUTPUTS_DIR}/ resolves outside the workspace`
          : null;
  for (const name of new Set(declared)) {
    try {
      checkRemoteName(name, 'output name');
    } catch (error) {
      result.refused.push({ name, reason: error instanceof Error ? error.message : String(error) });
      continue;
    }
    if (dirProblem !== null) {
      result.refused.push({ name, reason: dirProblem });
      continue;
    }
    const path = join(outputsDir, name);
    const stat = await lstat(path).catch((error: unknown) => (errnoCode(error) === 'ENOENT' ? null : Promise.reject(error)));
    if (stat === null) {
      result.missing.push(name);
      continue;
    }
    if (stat.isSymbolicLink()) {
      result.refused.push({ name, reason: 'is a symlink (never followed)' });
      continue;
    }
    const hashed = await hashFile(path, maxBytes);
    if ('refused' in hashed) result.refused.push({ name, reason: hashed.refused });
    else result.outputs.push({ name, size: hashed.size, sha256: hashed.sha256, path });
  }
  return result;
}

/** Removes a job's workspace (idempotent). */
export async function removeWorkspace(root: string, jobId: string): Promise<void> {
  checkJobId(jobId);
  await rm(join(root, jobId), { recursive: true, force: true });
}
