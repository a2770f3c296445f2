import { and, desc, eq, gt, inArray, isNotNull, lt, or, sql } from 'drizzle-orm';
import type { Db } from './client.ts';
import { jobLogs, jobs } from './schema.ts';

export type JobRole = 'orderer' | 'executor';
export type JobRow = typeof jobs.$inferSelect;
export type NewJobRow = typeof jobs.$inferInsert;
export type JobLogRow = typeof jobLogs.$inferSelect;

/** 1 = stdout, 2 = stderr, as the file descriptors. */
export const LOG_STREAMS = { stdout: 1, stderr: 2 } as const;
export type LogStreamName = keyof typeof LOG_STREAMS;

export interface JobFilter {
  readonly role?: JobRole;
  readonly states?: readonly string[];
  readonly peerId?: string;
}

/** Newest first; the cursor is the last row's (createdAt, id). */
export interface JobCursor {
  readonly createdAt: number;
  readonly id: string;
}

/**
 * Job records and their logs. Every state change is one statement (one transaction), so a crash
 * leaves each job in a state it really reached; the executor's start-up turns the unfinished ones
 * into ERRORED ("executor restarted").
 */
export class JobStore {
  constructor(private readonly db: Db) {}

  insert(row: NewJobRow): void {
    this.db.insert(jobs).values(row).run();
  }

  get(id: string, role: JobRole): JobRow | undefined {
    return this.db
      .select()
      .from(jobs)
      .where(and(eq(jobs.id, id), eq(jobs.role, role)))
      .get();
  }

  /** Either role's record of a job (the orderer's first: it is the one a user asks about). */
  find(id: string): JobRow | undefined {
    return this.get(id, 'orderer') ?? this.get(id, 'executor');
  }

  update(id: string, role: JobRole, changes: Partial<NewJobRow>): void {
    this.db
      .update(jobs)
      .set(changes)
      .where(and(eq(jobs.id, id), eq(jobs.role, role)))
      .run();
  }

  list(filter: JobFilter, first: number, after: JobCursor | null): JobRow[] {
    const conditions = [
      filter.role ? eq(jobs.role, filter.role) : undefined,
      filter.states && filter.states.length > 0 ? inArray(jobs.state, [...filter.states]) : undefined,
      filter.peerId ? eq(jobs.peerId, filter.peerId) : undefined,
      after ? or(lt(jobs.createdAt, after.createdAt), and(eq(jobs.createdAt, after.createdAt), lt(jobs.id, after.id))) : undefined,
    ];
    return this.db
      .select()
      .from(jobs)
      .where(and(...conditions))
      .orderBy(desc(jobs.createdAt), desc(jobs.id))
      .limit(first)
      .all();
  }

  count(filter: JobFilter): number {
    const conditions = [
      filter.role ? eq(jobs.role, filter.role) : undefined,
      filter.states && filter.states.length > 0 ? inArray(jobs.state, [...filter.states]) : undefined,
      filter.peerId ? eq(jobs.peerId, filter.peerId) : undefined,
    ];
    const row = this.db
      .select({ n: sql<number>`count(*)` })
      .from(jobs)
      .where(and(...conditions))
      .get();
    return row?.n ?? 0;
  }

  /** Records in one of `states` (start-up: what was running when the node stopped). */
  inStates(role: JobRole, states: readonly string[]): JobRow[] {
    return this.db
      .select()
      .from(jobs)
      .where(and(eq(jobs.role, role), inArray(jobs.state, [...states])))
      .all();
  }

  /** Appends a chunk with the job's next seq and returns it (one transaction: seq never repeats). */
  appendLog(jobId: string, role: JobRole, stream: LogStreamName, data: Buffer, at = Date.now()): number {
    return this.db.transaction((tx) => {
      const row = tx
        .update(jobs)
        .set({ logSeq: sql`${jobs.logSeq} + 1` })
        .where(and(eq(jobs.id, jobId), eq(jobs.role, role)))
        .returning({ seq: jobs.logSeq })
        .get();
      if (!row) throw new Error(`no ${role} record of job ${jobId}`);
      tx.insert(jobLogs).values({ jobId, role, seq: row.seq, stream: LOG_STREAMS[stream], data, at }).run();
      return row.seq;
    });
  }

  /** Stores a chunk the executor numbered (the orderer's copy keeps the executor's seq). */
  putLog(jobId: string, role: JobRole, seq: number, stream: LogStreamName, data: Buffer, at: number): boolean {
    return this.db.transaction((tx) => {
      const inserted = tx.insert(jobLogs).values({ jobId, role, seq, stream: LOG_STREAMS[stream], data, at }).onConflictDoNothing().run();
      if (inserted.changes === 0) return false;
      tx.update(jobs)
        .set({ logSeq: sql`max(${jobs.logSeq}, ${seq})` })
        .where(and(eq(jobs.id, jobId), eq(jobs.role, role)))
        .run();
      return true;
    });
  }

  logs(jobId: string, role: JobRole, afterSeq: number, limit: number): JobLogRow[] {
    return this.db
      .select()
      .from(jobLogs)
      .where(and(eq(jobLogs.jobId, jobId), eq(jobLogs.role, role), gt(jobLogs.seq, afterSeq)))
      .orderBy(jobLogs.seq)
      .limit(limit)
      .all();
  }

  /** Removes finished jobs (and their logs) older than `before` (ms); returns their ids and roles. */
  sweep(before: number): Array<{ id: string; role: JobRole }> {
    return this.db.transaction((tx) => {
      const old = tx
        .select({ id: jobs.id, role: jobs.role })
        .from(jobs)
        .where(and(isNotNull(jobs.finishedAt), lt(jobs.finishedAt, before)))
        .all();
      for (const { id, role } of old) {
        tx.delete(jobLogs)
          .where(and(eq(jobLogs.jobId, id), eq(jobLogs.role, role)))
          .run();
        tx.delete(jobs)
          .where(and(eq(jobs.id, id), eq(jobs.role, role)))
          .run();
      }
      return old;
    });
  }

  /** Output hashes still referenced by a kept job (a blob no job names may be removed). */
  referencedOutputs(): Set<string> {
    const hashes = new Set<string>();
    for (const row of this.db.select({ outputs: jobs.outputs }).from(jobs).all()) {
      for (const output of JSON.parse(row.outputs) as Array<{ sha256: string }>) hashes.add(output.sha256);
    }
    return hashes;
  }
}
