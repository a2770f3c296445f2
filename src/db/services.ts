import { eq } from 'drizzle-orm';
import type { Db } from './client.ts';
import { services } from './schema.ts';

/** One stored service; `definition` is the kind's fields as the registry validated them. */
export interface StoredService {
  readonly id: string;
  readonly name: string;
  readonly kind: string;
  readonly source: string;
  readonly definition: unknown;
  readonly createdAt: Date;
}

/** The services table. Knows rows, not service kinds: the registry validates what it stores and reads. */
export class ServicesRepository {
  constructor(private readonly db: Db) {}

  list(): StoredService[] {
    return this.db
      .select()
      .from(services)
      .orderBy(services.createdAt, services.id)
      .all()
      .map((row) => ({ ...row, definition: JSON.parse(row.definition) as unknown, createdAt: new Date(row.createdAt) }));
  }

  /** Inserts, or replaces the row with the same id (a services-directory file that changed). */
  save(service: StoredService): void {
    const row = {
      id: service.id,
      name: service.name,
      kind: service.kind,
      source: service.source,
      definition: JSON.stringify(service.definition),
      createdAt: service.createdAt.getTime(),
    };
    this.db.insert(services).values(row).onConflictDoUpdate({ target: services.id, set: row }).run();
  }

  remove(id: string): boolean {
    return this.db.delete(services).where(eq(services.id, id)).run().changes > 0;
  }
}
