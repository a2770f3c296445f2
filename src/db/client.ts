import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { type BetterSQLite3Database, drizzle } from 'drizzle-orm/better-sqlite3';
import { migrate } from 'drizzle-orm/better-sqlite3/migrator';
import * as schema from './schema.ts';

export type Db = BetterSQLite3Database<typeof schema>;

export const MIGRATIONS_FOLDER = fileURLToPath(new URL('../../drizzle', import.meta.url));
export const DATABASE_FILE = 'remote-network.db';

export interface OpenedDatabase {
  readonly db: Db;
  readonly sqlite: Database.Database;
  readonly file: string;
  /**
   * Checkpoints the WAL into the main file and closes; safe to call twice. The file is closed even
   * when the checkpoint fails (a full disk cannot take the WAL's pages); that failure is then
   * thrown, and the WAL keeps every committed transaction for the next open.
   */
  close(): void;
}

export interface OpenDatabaseOptions {
  /** Open without applying migrations or writing (the CLI's read-only commands). */
  readonly readonly?: boolean;
}

/**
 * Opens the node's SQLite file in WAL mode and applies pending drizzle-kit migrations from
 * `drizzle/`. WAL lets read-only tools (`remote-network peers`) read while the node writes.
 */
export function openDatabase(file: string, options: OpenDatabaseOptions = {}): OpenedDatabase {
  if (!options.readonly) mkdirSync(dirname(file), { recursive: true });
  const sqlite = new Database(file, { readonly: options.readonly ?? false, fileMustExist: options.readonly ?? false });
  let db: Db;
  try {
    sqlite.pragma('busy_timeout = 5000');
    if (!options.readonly) {
      sqlite.pragma('journal_mode = WAL');
      // NORMAL under WAL loses no committed transaction on a process crash, only on power loss.
      sqlite.pragma('synchronous = NORMAL');
    }
    sqlite.pragma('foreign_keys = ON');
    db = drizzle(sqlite, { schema });
    if (!options.readonly) migrate(db, { migrationsFolder: MIGRATIONS_FOLDER });
  } catch (error) {
    // A full or read-only disk fails here (WAL files, migrations): never leave the file open.
    sqlite.close();
    throw error;
  }

  let closed = false;
  return {
    db,
    sqlite,
    file,
    close() {
      if (closed) return;
      closed = true;
      try {
        if (!options.readonly) sqlite.pragma('wal_checkpoint(TRUNCATE)');
      } catch (error) {
        try {
          sqlite.close();
        } catch {
          // the checkpoint's failure is the one to report: it says why
        }
        throw error;
      }
      sqlite.close();
    },
  };
}
