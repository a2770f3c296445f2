import type { JobLogRow, JobRole as JobRoleValue } from '../../db/jobs.ts';
import type { AnyBusEvent } from '../../node/events/bus.ts';
import type { NodeEventMap } from '../../node/events/types.ts';
import { JOB_REASONS, JOB_STATES, type JobOutput, type JobView, isFinal, jobView } from '../../node/jobs/job.ts';
import { JOB_ID_PATTERN } from '../../node/jobs/job-id.ts';
import type { JobRunnerStatus } from '../../node/jobs/job-executor.ts';
import { MAX_INLINE_INPUT_BYTES } from '../../node/jobs/job-messages.ts';
import { builder } from '../builder.ts';
import type { GraphQLContext } from '../context.ts';
import { userInputError } from '../errors.ts';

const MAX_PAGE_SIZE = 100;
const DEFAULT_PAGE_SIZE = 20;
const LOG_PAGE_SIZE = 200;

export const JobState = builder.enumType('JobState', {
  description: 'IDLE (ordered, not accepted yet) → READY (accepted) → RUNNING → COMPLETED, ERRORED or CANCELLED.',
  values: JOB_STATES,
});

export const JobReason = builder.enumType('JobReason', {
  description:
    'Why a job ended as it did: EXITED (see exitCode; 0 = COMPLETED), SIGNALED, OOM (memory limit), TIMEOUT (wall time), ' +
    'OUTPUT_LIMIT (stdout/stderr cap), CANCELLED, EXECUTOR_RESTARTED, OUTPUT_MISSING / OUTPUT_REFUSED (declared outputs absent, ' +
    'or a symlink, not a regular file, too large), SANDBOX_FAILED, REFUSED (the executor refused it: see message), ' +
    'EXECUTOR_UNREACHABLE, OUTPUT_FETCH_FAILED (an output did not arrive or did not match its hash).',
  values: JOB_REASONS,
});

const JobRole = builder.enumType('JobRole', {
  values: {
    ORDERER: { value: 'orderer', description: 'This node ordered the job; peerId runs it.' },
    EXECUTOR: { value: 'executor', description: 'This node runs the job for peerId.' },
  } as const satisfies Record<Uppercase<JobRoleValue>, { value: JobRoleValue; description: string }>,
});

const JobOutputRef = builder.objectRef<JobOutput>('JobOutput').implement({
  description: 'A declared output of a finished job, stored on this node by content.',
  fields: (t) => ({
    name: t.exposeString('name'),
    size: t.exposeInt('size', { description: 'Bytes.' }),
    sha256: t.exposeString('sha256'),
  }),
});

interface LogChunk {
  readonly jobId: string;
  readonly seq: number;
  readonly stream: 'stdout' | 'stderr';
  readonly data: Buffer;
  readonly at: Date;
}

const LogStream = builder.enumType('JobLogStream', { values: ['STDOUT', 'STDERR'] as const });

const JobLogChunk = builder.objectRef<LogChunk>('JobLogChunk').implement({
  description: "A piece of a job's stdout or stderr, as the job wrote it (numbered from 1 per job).",
  fields: (t) => ({
    jobId: t.exposeString('jobId'),
    seq: t.exposeInt('seq'),
    stream: t.field({ type: LogStream, resolve: (c) => (c.stream === 'stdout' ? 'STDOUT' : 'STDERR') }),
    text: t.string({ description: 'The bytes as UTF-8 (invalid sequences replaced).', resolve: (c) => c.data.toString('utf8') }),
    base64: t.string({ description: 'The exact bytes.', resolve: (c) => c.data.toString('base64') }),
    at: t.field({ type: 'DateTime', resolve: (c) => c.at }),
  }),
});

export const Job = builder.objectRef<JobView>('Job');
Job.implement({
  description: 'A job this node ordered on a peer, or runs for one.',
  fields: (t) => ({
    id: t.exposeID('id', { description: '128 random bits, 32 hex characters.' }),
    role: t.field({ type: JobRole, resolve: (j) => j.role }),
    peerId: t.field({
      type: 'PeerId',
      description: 'The executor (role ORDERER) or the orderer (role EXECUTOR).',
      resolve: (j) => j.peerId,
    }),
    serviceId: t.exposeString('serviceId'),
    serviceName: t.exposeString('serviceName'),
    parameters: t.field({ type: 'JSON', resolve: (j) => j.parameters }),
    state: t.field({ type: JobState, resolve: (j) => j.state }),
    reason: t.field({ type: JobReason, nullable: true, resolve: (j) => j.reason }),
    message: t.exposeString('message', { nullable: true, description: 'What happened, in words (a refusal names its code).' }),
    exitCode: t.exposeInt('exitCode', { nullable: true }),
    signal: t.exposeString('signal', { nullable: true }),
    outputs: t.field({ type: [JobOutputRef], resolve: (j) => [...j.outputs] }),
    stdoutBytes: t.exposeInt('stdoutBytes'),
    stderrBytes: t.exposeInt('stderrBytes'),
    truncated: t.exposeBoolean('truncated', { description: 'Output was cut at the output limit.' }),
    workflowId: t.exposeString('workflowId', { nullable: true }),
    createdAt: t.field({ type: 'DateTime', resolve: (j) => j.createdAt }),
    startedAt: t.field({ type: 'DateTime', nullable: true, resolve: (j) => j.startedAt }),
    finishedAt: t.field({ type: 'DateTime', nullable: true, resolve: (j) => j.finishedAt }),
    logs: t.connection(
      {
        type: JobLogChunk,
        description: `Stdout and stderr in order. At most ${LOG_PAGE_SIZE} chunks per page; the cursor is the chunk's seq.`,
        resolve: (job, args, ctx) => {
          const first = pageSize(args.first, LOG_PAGE_SIZE, LOG_PAGE_SIZE);
          const after = args.after == null ? 0 : Number.parseInt(Buffer.from(args.after, 'base64url').toString(), 10);
          if (!Number.isSafeInteger(after) || after < 0)
            throw userInputError('after is not a cursor returned by logs', { argument: 'after' });
          const rows = ctx.node.jobStore.logs(job.id, job.role, after, first + 1);
          const page = rows.slice(0, first).map(chunkOf);
          const edges = page.map((node) => ({ node, cursor: Buffer.from(String(node.seq)).toString('base64url') }));
          return {
            edges,
            totalCount: job.logSeq,
            pageInfo: {
              hasNextPage: rows.length > first,
              hasPreviousPage: after > 0,
              startCursor: edges[0]?.cursor ?? null,
              endCursor: edges.at(-1)?.cursor ?? null,
            },
          };
        },
      },
      { name: 'JobLogConnection' },
      { name: 'JobLogEdge' },
    ),
  }),
});

function chunkOf(row: JobLogRow): LogChunk {
  return { jobId: row.jobId, seq: row.seq, stream: row.stream === 2 ? 'stderr' : 'stdout', data: row.data, at: new Date(row.at) };
}

function pageSize(first: number | null | undefined, fallback: number, max: number): number {
  const size = first ?? fallback;
  if (size < 0 || size > max) throw userInputError(`first must be between 0 and ${max}`, { argument: 'first' });
  return size;
}

function jobIdArgument(id: string): string {
  const jobId = id.toLowerCase();
  if (!JOB_ID_PATTERN.test(jobId)) throw userInputError('a job id is 32 hexadecimal characters', { argument: 'id' });
  return jobId;
}

/** The record a user asks about: the one this node ordered, else the one it runs. */
function findJob(ctx: GraphQLContext, id: string): JobView | null {
  const row = ctx.node.jobStore.find(id);
  return row ? jobView(row) : null;
}

builder.queryField('job', (t) =>
  t.field({
    type: Job,
    nullable: true,
    args: { id: t.arg.id({ required: true }) },
    resolve: (_root, args, ctx) => findJob(ctx, jobIdArgument(String(args.id))),
  }),
);

builder.queryField('jobs', (t) =>
  t.connection(
    {
      type: Job,
      description: `Jobs newest first, both those this node ordered and those it runs (filter with role). At most ${MAX_PAGE_SIZE} per page.`,
      args: {
        state: t.arg({ type: [JobState], required: false }),
        peerId: t.arg({ type: 'PeerId', required: false }),
        role: t.arg({ type: JobRole, required: false }),
      },
      resolve: (_root, args, ctx) => {
        if (args.last != null || args.before != null)
          throw userInputError('jobs pages forward only: use first and after', { argument: 'last' });
        const first = pageSize(args.first, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
        const after = args.after == null ? null : decodeJobCursor(args.after);
        const filter = { states: args.state ?? undefined, peerId: args.peerId ?? undefined, role: args.role ?? undefined };
        const rows = ctx.node.jobStore.list(filter, first + 1, after);
        const edges = rows.slice(0, first).map((row) => ({ node: jobView(row), cursor: encodeJobCursor(row.createdAt, row.id, row.role) }));
        return {
          edges,
          totalCount: ctx.node.jobStore.count(filter),
          pageInfo: {
            hasNextPage: rows.length > first,
            hasPreviousPage: after !== null,
            startCursor: edges[0]?.cursor ?? null,
            endCursor: edges.at(-1)?.cursor ?? null,
          },
        };
      },
    },
    { name: 'JobsConnection' },
    { name: 'JobsEdge' },
  ),
);

function encodeJobCursor(createdAt: number, id: string, role: string): string {
  return Buffer.from(`Job:${createdAt}:${id}:${role}`).toString('base64url');
}

function decodeJobCursor(cursor: string): { createdAt: number; id: string } {
  const match = /^Job:(\d{1,15}):([0-9a-f]{32}):(orderer|executor)$/.exec(Buffer.from(cursor, 'base64url').toString());
  if (!match) throw userInputError('after is not a cursor returned by jobs', { argument: 'after' });
  return { createdAt: Number(match[1]), id: match[2] ?? '' };
}

const JobInputFile = builder.inputType('JobInputFile', {
  description: `A named input file, sent inline (stdin and all inputs together at most ${MAX_INLINE_INPUT_BYTES} bytes).`,
  fields: (t) => ({
    name: t.string({ required: true, description: 'One of the names the service declares.' }),
    text: t.string({ required: false, description: 'The content as UTF-8 text.' }),
    base64: t.string({ required: false, description: 'The content as base64 (instead of text).' }),
  }),
});

builder.mutationField('runJob', (t) =>
  t.field({
    type: Job,
    description:
      'Runs a job on a peer and returns it once the peer accepted it (state READY); follow it with jobStatusChanged and jobLogs. ' +
      "A refusal is an error with the executor's code (UNKNOWN_SERVICE, SERVICE_NOT_ALLOWED, INVALID_PARAMETERS, LIMIT_EXCEEDED, " +
      'SANDBOX_UNAVAILABLE, EXECUTOR_BUSY, JOBS_DISABLED) and the job is kept as ERRORED / REFUSED.',
    args: {
      peerId: t.arg({ type: 'PeerId', required: true }),
      serviceId: t.arg.string({ required: true, description: "The service's id or name on that peer." }),
      parameters: t.arg({ type: 'JSON', required: false, description: 'An object of the parameters the service declares.' }),
      stdin: t.arg.string({ required: false, description: 'Text for the job to read on stdin (when the service takes stdin).' }),
      inputs: t.arg({ type: [JobInputFile], required: false }),
    },
    resolve: async (_root, args, ctx) => {
      if (args.peerId === ctx.node.peerId)
        throw userInputError('runJob runs a job on another peer: this node is not one', { argument: 'peerId' });
      const parameters = parametersArgument(args.parameters);
      const inputs = (args.inputs ?? []).map((input) => {
        if ((input.text == null) === (input.base64 == null))
          throw userInputError(`input ${input.name}: give text or base64`, { argument: 'inputs' });
        return { name: input.name, data: input.text != null ? Buffer.from(input.text) : Buffer.from(input.base64 ?? '', 'base64') };
      });
      return ctx.node.jobs.run({
        peerId: args.peerId,
        serviceId: args.serviceId,
        parameters,
        stdin: args.stdin == null ? null : Buffer.from(args.stdin),
        inputs,
      });
    },
  }),
);

function parametersArgument(value: unknown): Record<string, string | number | boolean> {
  if (value == null) return {};
  if (typeof value !== 'object' || Array.isArray(value)) throw userInputError('parameters must be an object', { argument: 'parameters' });
  const parameters: Record<string, string | number | boolean> = {};
  for (const [name, v] of Object.entries(value)) {
    if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') {
      throw userInputError(`parameter ${name} must be a string, a number or a boolean`, { argument: 'parameters' });
    }
    parameters[name] = v;
  }
  return parameters;
}

builder.mutationField('cancelJob', (t) =>
  t.field({
    type: Job,
    description: 'Stops a job this node ordered (its whole process tree on the executor) and returns it in its final state.',
    args: { id: t.arg.id({ required: true }) },
    resolve: (_root, args, ctx) => ctx.node.jobs.cancel(jobIdArgument(String(args.id))),
  }),
);

type StatusEvent = AnyBusEvent<NodeEventMap> & { type: 'job.status.changed'; payload: NodeEventMap['job.status.changed'] };

const JobStatusChange = builder.objectRef<StatusEvent>('JobStatusChange').implement({
  fields: (t) => ({
    jobId: t.string({ resolve: (e) => e.payload.jobId }),
    role: t.field({ type: JobRole, resolve: (e) => e.payload.role }),
    peerId: t.field({ type: 'PeerId', resolve: (e) => e.payload.peerId }),
    from: t.field({ type: JobState, nullable: true, resolve: (e) => e.payload.from }),
    to: t.field({ type: JobState, resolve: (e) => e.payload.to }),
    reason: t.field({ type: JobReason, nullable: true, resolve: (e) => e.payload.reason }),
    message: t.string({ nullable: true, resolve: (e) => e.payload.message }),
    at: t.field({ type: 'DateTime', resolve: (e) => e.at }),
    job: t.field({
      type: Job,
      nullable: true,
      description: 'The job as it is now.',
      resolve: (e, _args, ctx) => {
        const row = ctx.node.jobStore.get(e.payload.jobId, e.payload.role);
        return row ? jobView(row) : null;
      },
    }),
  }),
});

builder.subscriptionField('jobStatusChanged', (t) =>
  t.field({
    type: JobStatusChange,
    description: 'State changes of one job (or of every job), as they happen; ends after the job reaches a final state.',
    args: { jobId: t.arg.id({ required: false }) },
    subscribe: (_root, args, ctx) => {
      const jobId = args.jobId == null ? null : jobIdArgument(String(args.jobId));
      return statusStream(ctx, jobId);
    },
    resolve: (event) => event,
  }),
);

builder.subscriptionField('jobLogs', (t) =>
  t.field({
    type: JobLogChunk,
    description: "A job's stdout and stderr: everything logged so far, then live; ends once the job is final and every chunk was sent.",
    args: { jobId: t.arg.id({ required: true }) },
    subscribe: (_root, args, ctx) => logStream(ctx, jobIdArgument(String(args.jobId))),
    resolve: (chunk) => chunk,
  }),
);

/** Live changes (one job's, ending after its final state; or all). */
function statusStream(ctx: GraphQLContext, jobId: string | null): AsyncIterableIterator<StatusEvent> {
  const source = ctx.node.bus.subscribe({ types: new Set(['job.status.changed'] as const) });
  let ended = false;
  const existing = jobId === null ? null : findJob(ctx, jobId);
  if (jobId !== null && existing === null) throw userInputError(`no job ${jobId}`, { argument: 'jobId' });
  const role = existing?.role;
  const iterator: AsyncIterableIterator<StatusEvent> = {
    async next() {
      if (ended) return { value: undefined, done: true };
      for (;;) {
        const result = await source.next();
        if (result.done) return result;
        const event = result.value as StatusEvent;
        if (jobId !== null && (event.payload.jobId !== jobId || event.payload.role !== role)) continue;
        if (jobId !== null && isFinal(event.payload.to)) {
          ended = true;
          void source.return?.();
        }
        return { value: event, done: false };
      }
    },
    async return() {
      await source.return?.();
      return { value: undefined, done: true };
    },
    async throw(error?: unknown) {
      await source.return?.();
      throw error;
    },
    [Symbol.asyncIterator]: () => iterator,
  };
  return iterator;
}

/**
 * Replay, then live, without a gap or a duplicate: the bus is subscribed before the first read of
 * the stored log, and live chunks at or below the last replayed seq are skipped.
 */
function logStream(ctx: GraphQLContext, jobId: string): AsyncIterableIterator<LogChunk> {
  const { jobStore, bus } = ctx.node;
  const job = findJob(ctx, jobId);
  if (!job) throw userInputError(`no job ${jobId}`, { argument: 'jobId' });
  const role = job.role;
  const live = bus.subscribe({ types: new Set(['job.log', 'job.status.changed'] as const) });
  let seq = 0;
  let queue: LogChunk[] = [];
  let replaying = true;
  let ended = false;
  const finish = () => {
    ended = true;
    void live.return?.();
  };
  const readStored = (): boolean => {
    queue = jobStore.logs(jobId, role, seq, LOG_PAGE_SIZE).map(chunkOf);
    return queue.length > 0;
  };
  const iterator: AsyncIterableIterator<LogChunk> = {
    async next() {
      for (;;) {
        const queued = queue.shift();
        if (queued) {
          seq = queued.seq;
          return { value: queued, done: false };
        }
        if (ended) return { value: undefined, done: true };
        if (replaying) {
          if (readStored()) continue;
          replaying = false;
          const now = jobStore.get(jobId, role);
          if (!now || isFinal(now.state)) {
            finish();
            continue;
          }
        }
        const result = await live.next();
        if (result.done) return result;
        const event = result.value;
        if (event.type === 'job.log') {
          const p = event.payload;
          if (p.jobId !== jobId || p.role !== role || p.seq <= seq) continue;
          queue.push({ jobId, seq: p.seq, stream: p.stream, data: Buffer.from(p.data, 'base64'), at: new Date(p.at) });
        } else {
          const p = event.payload as NodeEventMap['job.status.changed'];
          if (p.jobId !== jobId || p.role !== role || !isFinal(p.to)) continue;
          // Whatever was stored before the final state and not seen live, then the end.
          for (
            let after = seq, page = jobStore.logs(jobId, role, after, LOG_PAGE_SIZE);
            page.length > 0;
            page = jobStore.logs(jobId, role, after, LOG_PAGE_SIZE)
          ) {
            queue.push(...page.map(chunkOf));
            after = page.at(-1)?.seq ?? after;
          }
          finish();
        }
      }
    },
    async return() {
      await live.return?.();
      return { value: undefined, done: true };
    },
    async throw(error?: unknown) {
      await live.return?.();
      throw error;
    },
    [Symbol.asyncIterator]: () => iterator,
  };
  return iterator;
}

const JobRunner = builder.objectRef<JobRunnerStatus>('JobRunner').implement({
  description: 'Whether this node runs jobs for peers ([jobs] section), in what sandbox, and why not when it cannot.',
  fields: (t) => ({
    enabled: t.exposeBoolean('enabled'),
    sandbox: t.exposeString('sandbox', { nullable: true, description: 'bubblewrap, or none when the operator chose no sandbox.' }),
    cgroups: t.exposeString('cgroups', { nullable: true, description: 'v1 or v2: where memory, pids and CPU limits are enforced.' }),
    unavailableReason: t.exposeString('unavailableReason', {
      nullable: true,
      description: 'Why job requests are refused; null when they are served.',
    }),
    running: t.exposeInt('running'),
    maxConcurrentJobs: t.exposeInt('maxConcurrentJobs'),
  }),
});

builder.queryField('jobRunner', (t) => t.field({ type: JobRunner, resolve: (_root, _args, ctx) => ctx.node.jobExecutor.status }));
