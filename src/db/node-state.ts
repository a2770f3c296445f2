import { eq } from 'drizzle-orm';
import type { Db } from './client.ts';
import { nodeState } from './schema.ts';

/** Small key/value store for the node's own persistent state; values are JSON. */
export class NodeStateRepository {
  constructor(private readonly db: Db) {}

  get<T>(key: string): T | undefined {
    const row = this.db.select({ value: nodeState.value }).from(nodeState).where(eq(nodeState.key, key)).get();
    return row === undefined ? undefined : (JSON.parse(row.value) as T);
  }

  set(key: string, value: unknown): void {
    const text = JSON.stringify(value);
    const updatedAt = Math.floor(Date.now() / 1000);
    this.db
      .insert(nodeState)
      .values({ key, value: text, updatedAt })
      .onConflictDoUpdate({ target: nodeState.key, set: { value: text, updatedAt } })
      .run();
  }

  /**
   * Atomically reads, transforms and writes one value (e.g. "the next sequence number"), so that
   * a crash between read and write can never hand out the same value twice.
   */
  update<T>(key: string, fn: (current: T | undefined) => T): T {
    return this.db.transaction(() => {
      const next = fn(this.get<T>(key));
      this.set(key, next);
      return next;
    });
  }
}
