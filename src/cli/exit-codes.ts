/** What `remote-network` exits with (documented in README.md, CLI). */
export const EXIT_OK = 0;
/** Any other failure to start or run (a damaged key file, a data directory in use, a port in use). */
export const EXIT_FAILURE = 1;
/** A configuration problem: every one is listed with its source. */
export const EXIT_CONFIG = 2;
/**
 * A storage failure: the data directory is full, read-only or not accessible, at start (lock,
 * key, database, migrations) or at stop (the WAL could not be checkpointed; the data is kept).
 */
export const EXIT_STORAGE = 3;
