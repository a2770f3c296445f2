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
  /** Checkpoints the WAL into the main file and closes; safe to call twice. */
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
  sqlite.pragma('busy_timeout = 5000');
  if (!options.readonly) {
    sqlite.pragma('journal_mode = WAL');
    // NORMAL under WAL loses no committed transaction on a process crash, only on power loss.
    sqlite.pragma('synchronous = NORMAL');
  }
  sqlite.pragma('foreign_keys = ON');
  const db = drizzle(sqlite, { schema });
  if (!options.readonly) migrate(db, { migrationsFolder: MIGRATIONS_FOLDER });

  let closed = false;
  return {
    db,
    sqlite,
    file,
    close() {
      if (closed) return;
      closed = true;
      if (!options.readonly) sqlite.pragma('wal_checkpoint(TRUNCATE)');
      sqlite.close();
    },
  };
}
