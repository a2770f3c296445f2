import { RemoteNetworkError } from '../base/errors.ts';

/**
 * Primary SQLite result codes that mean the disk or the file let us down (full, read-only,
 * unreadable, locked by someone else), as opposed to a bug in a statement (SQLITE_CONSTRAINT,
 * SQLITE_ERROR, SQLITE_MISUSE), which must keep surfacing as one.
 */
const SQLITE_STORAGE_CODES = [
  'SQLITE_FULL',
  'SQLITE_IOERR',
  'SQLITE_READONLY',
  'SQLITE_CANTOPEN',
  'SQLITE_CORRUPT',
  'SQLITE_NOTADB',
  'SQLITE_PERM',
  'SQLITE_BUSY',
  'SQLITE_LOCKED',
  'SQLITE_NOLFS',
  'SQLITE_AUTH',
] as const;

/** File system errno codes of the same kind (key files, the lock, the data directory). */
const ERRNO_STORAGE_CODES = ['ENOSPC', 'EDQUOT', 'EROFS', 'EACCES', 'EPERM', 'EIO', 'EFBIG'] as const;

/** How deep `cause` chains are followed (a KeyFileError wraps the errno error it met). */
const MAX_CAUSE_DEPTH = 4;

/**
 * The kind of storage failure an error is: SQLITE_FULL, SQLITE_IOERR, SQLITE_READONLY, EROFS,
 * EACCES… (extended SQLite codes such as SQLITE_IOERR_WRITE fold into their primary code, so one
 * failure mode is one kind), or undefined when the error is not a storage failure.
 */
export function storageFailureCode(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < MAX_CAUSE_DEPTH && current instanceof Error; depth++) {
    if (current instanceof StorageError) return current.kind;
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string') {
      const sqlite = SQLITE_STORAGE_CODES.find((c) => code === c || code.startsWith(`${c}_`));
      if (sqlite) return sqlite;
      if ((ERRNO_STORAGE_CODES as readonly string[]).includes(code)) return code;
    }
    current = current.cause;
  }
  return undefined;
}

/**
 * What the failing call said, without the errno prefix and syscall suffix Node adds, plus SQLite's
 * extended code when it says more than the kind (SQLITE_IOERR_SHMSIZE: the WAL index did not fit).
 */
export function storageFailureDetail(error: unknown): string {
  let current: unknown = error;
  for (let depth = 0; depth < MAX_CAUSE_DEPTH && current instanceof Error; depth++) {
    const { code } = current as { code?: unknown };
    const kind = storageFailureCode(current);
    if (typeof code === 'string' && kind !== undefined && !(current instanceof StorageError)) {
      const message = current.message.replace(new RegExp(`^${code}: `), '').replace(/, \w+( '.*')?$/, '');
      return code === kind ? message : `${message}, ${code}`;
    }
    current = current.cause;
  }
  return error instanceof Error ? error.message : String(error);
}

/**
 * The data directory could not be written or read: a full disk, a read-only file system, missing
 * permissions. Names what the node was doing, the path and the cause; the CLI exits with
 * EXIT_STORAGE on it.
 */
export class StorageError extends RemoteNetworkError {
  readonly code = 'STORAGE_FAILURE';

  constructor(
    /** SQLITE_FULL, EROFS, … (see storageFailureCode). */
    readonly kind: string,
    /** What failed, as "cannot <action>": "take the lock", "open the database". */
    readonly action: string,
    readonly path: string,
    cause: unknown,
  ) {
    super(`storage failure: cannot ${action} ${path}: ${kind} (${storageFailureDetail(cause)})`, { cause });
  }
}

/** The error as a StorageError naming `action` and `path` when it is a storage failure, else itself. */
export function asStorageError(error: unknown, action: string, path: string): unknown {
  if (error instanceof StorageError) return error;
  const kind = storageFailureCode(error);
  if (kind === undefined) return error;
  const reportedPath = (error as NodeJS.ErrnoException).path;
  return new StorageError(kind, action, typeof reportedPath === 'string' ? reportedPath : path, error);
}

/** Runs one step of opening or closing the data directory; a storage failure names the step. */
export function storageStep<T>(action: string, path: string, work: () => T): T {
  try {
    return work();
  } catch (error) {
    throw asStorageError(error, action, path);
  }
}
