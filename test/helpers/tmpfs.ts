import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, statfsSync, unlinkSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

interface TestContext {
  after(fn: () => unknown): void;
  skip(message?: string): void;
}

/** Bytes a full-disk test's ballast writes per call. */
const BALLAST_CHUNK = 64 * 1024;

/**
 * Mounts a fresh tmpfs of `size` (a mount(8) size such as "2m") and unmounts it after the test.
 * Needs root (CI runs as root). Where it cannot mount, the test is skipped with the reason, except
 * under CI=true, where it fails: a storage test that silently never runs proves nothing.
 */
export function mountTmpfs(t: TestContext, size = '2m'): string | undefined {
  const dir = mkdtempSync(join(tmpdir(), 'rn-tmpfs-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', dir], { stdio: 'pipe' });
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    const reason = `cannot mount a tmpfs (needs root): ${(error as { stderr?: Buffer }).stderr?.toString().trim() || String(error)}`;
    if (process.env.CI === 'true') throw new Error(`${reason}; under CI=true this test must run`, { cause: error });
    t.skip(reason);
    return undefined;
  }
  t.after(() => {
    try {
      execFileSync('umount', [dir], { stdio: 'pipe' });
    } catch {
      // Still busy (a handle the test failed to close): detach it so no mount outlives the run.
      execFileSync('umount', ['-l', dir], { stdio: 'pipe' });
    }
    rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

export function freeBytes(dir: string): number {
  const stats = statfsSync(dir);
  return stats.bavail * stats.bsize;
}

/**
 * Writes `<dir>/ballast` until at most `leaveBytes` remain free (0: until the disk is full).
 * Returns the ballast's path; deleting it gives the space back.
 */
export function fillDisk(dir: string, leaveBytes = 0): string {
  const file = join(dir, 'ballast');
  const fd = openSync(file, 'a');
  const chunk = Buffer.alloc(BALLAST_CHUNK, 0xa5);
  try {
    for (let free = freeBytes(dir); free > leaveBytes; free = freeBytes(dir)) {
      const size = Math.min(chunk.length, free - leaveBytes);
      try {
        writeSync(fd, chunk, 0, size);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOSPC') break;
        throw error;
      }
    }
  } finally {
    closeSync(fd);
  }
  return file;
}

export function freeDisk(ballast: string): void {
  unlinkSync(ballast);
}

/** Remounts the tmpfs read-only (the test's after() unmounts it all the same). */
export function remountReadOnly(dir: string): void {
  execFileSync('mount', ['-o', 'remount,ro', dir], { stdio: 'pipe' });
}
