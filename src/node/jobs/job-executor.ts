import { join, resolve } from 'node:path';
import type { JobLogRow, JobRow, JobStore } from '../../db/jobs.ts';
import type { Component } from '../base/component.ts';
import { RemoteNetworkError } from '../base/errors.ts';
import type { Logger } from '../base/logger.ts';
import type { NodeComponents } from '../components.ts';
import type { Config } from '../config/schema.ts';
import type { EventBus } from '../events/bus.ts';
import type { NodeEventMap } from '../events/types.ts';
import type { Metrics } from '../metrics/metrics.ts';
import type { ProtocolRegistry } from '../lifecycle/protocol-registry.ts';
import type { PeerConnection } from '../quic/types.ts';
import type { ServiceRegistry } from '../services/service-registry.ts';
import { type StandaloneService, renderArguments } from '../services/service.ts';
import type { MessageChannel } from '../wire/channel.ts';
import type { BlobStore } from './blob-store.ts';
import {
  ExecutorBusyError,
  JobAlreadyExistsError,
  JobLimitExceededError,
  JobNotFoundError,
  type JobOutput,
  type JobReason,
  type JobState,
  JobsDisabledError,
  OutputNotFoundError,
  ServiceNotAllowedError,
  UnknownServiceError,
  emitJobState,
  newJobRow,
} from './job.ts';
import { JobListener } from './job-events.ts';
import { jobLimits } from './job-limits.ts';
import type { JobMetrics } from './job-metrics.ts';
import {
  type JobRequestMessage,
  type JobResultMessage,
  MAX_INLINE_INPUT_BYTES,
  MAX_INLINE_OUTPUT_BYTES,
  jobAttachMessage,
  jobCancelMessage,
  jobOutputFetchMessage,
  jobRequestMessage,
} from './job-messages.ts';
import { LogCoalescer } from './log-coalescer.ts';
import type { JobLimits } from './sandbox/limits.ts';
import { type JobSandbox, type RunningJob, type SandboxResult, createSandbox } from './sandbox/sandbox.ts';
import { SandboxUnavailableError } from './sandbox/errors.ts';
import { drain } from '../wire/raw-stream.ts';
import { checkRemoteName, collectOutputs, prepareWorkspace, removeWorkspace } from './workspace.ts';

/** Replayed log chunks per database read. */
const LOG_PAGE = 200;
/** How often finished jobs past retention are removed. */
const SWEEP_INTERVAL_MS = 10 * 60_000;
/** A job's environment: nothing of the node's own (its secrets, its paths). */
const JOB_ENV: Readonly<Record<string, string>> = { PATH: '/usr/local/bin:/usr/bin:/bin', LANG: 'C.UTF-8', HOME: '/tmp' };

export interface JobExecutorOptions {
  readonly config: Config;
  readonly logger: Logger;
  readonly bus: EventBus<NodeEventMap>;
  readonly metrics: Metrics;
  /** Shared by the executor and the orderer (one set of metric names per node). */
  readonly jobMetrics: JobMetrics;
  readonly protocols: ProtocolRegistry;
  readonly jobStore: JobStore;
  readonly services: ServiceRegistry;
  readonly blobs: BlobStore;
  readonly dataDir: string;
}

export interface JobRunnerStatus {
  readonly enabled: boolean;
  readonly sandbox: string | null;
  readonly cgroups: string | null;
  /** Why job requests are refused (no sandbox, jobs disabled); null when they are served. */
  readonly unavailableReason: string | null;
  readonly running: number;
  readonly maxConcurrentJobs: number;
}

interface ActiveJob {
  row: JobRow;
  readonly service: StandaloneService;
  readonly limits: JobLimits;
  readonly listeners: Set<JobListener>;
  running: RunningJob | null;
  cancelledBy: string | null;
  /** Resolves with the final state once the job is over (cancel waits for it). */
  readonly over: Promise<JobState>;
  finish(state: JobState): void;
}

/**
 * Runs jobs for peers on the services this node offers (the executor side of the job protocol).
 * Every operation on a job is authorized by the TLS-proven peer id of its connection: only the
 * peer that ordered a job can attach to it, cancel it or fetch its outputs; anyone else is told
 * JOB_NOT_FOUND. Records persist; a job the node was running when it stopped is ERRORED
 * (EXECUTOR_RESTARTED) at the next start, and its orderer hears so when it re-attaches.
 */
export class JobExecutor implements Component {
  readonly name = 'job-executor';
  private readonly log: Logger;
  private readonly active = new Map<string, ActiveJob>();
  private readonly unhandle: Array<() => void> = [];
  private sandbox: JobSandbox | null = null;
  private sandboxError: string | null = null;
  /** Set at stop: a job still being prepared is not started any more. */
  private stopping = false;
  private sweepTimer: NodeJS.Timeout | undefined;
  private readonly workspaceRoot: string;
  private readonly counters: JobMetrics;

  constructor(private readonly options: JobExecutorOptions) {
    this.log = options.logger.child({ component: this.name });
    this.counters = options.jobMetrics;
    options.metrics.observedGauge({
      name: 'remote_network_jobs_running',
      help: 'Jobs this node is running for peers now (accepted and not final).',
      observe: (record) => record(this.active.size),
    });
    const configured = options.config.jobs.workspace_dir;
    this.workspaceRoot = configured === '' ? join(options.dataDir, 'jobs') : resolve(configured);
  }

  static create(c: NodeComponents, parts: Pick<JobExecutorOptions, 'jobStore' | 'blobs' | 'dataDir' | 'jobMetrics'>): JobExecutor {
    return new JobExecutor({ ...c, ...parts });
  }

  /** Whether this node runs jobs for peers, in what, and why not when it cannot. */
  get status(): JobRunnerStatus {
    const jobs = this.options.config.jobs;
    return {
      enabled: jobs.enabled,
      sandbox: this.sandbox?.kind ?? null,
      cgroups: this.sandbox?.cgroups ?? null,
      unavailableReason: jobs.enabled ? this.sandboxError : 'jobs are disabled ([jobs] enabled = false)',
      running: this.active.size,
      maxConcurrentJobs: jobs.max_concurrent_jobs,
    };
  }

  async start(): Promise<void> {
    this.markInterrupted();
    const jobs = this.options.config.jobs;
    if (jobs.enabled) {
      try {
        this.sandbox = await createSandbox(
          { mode: jobs.sandbox, uid: jobs.sandbox_uid, gid: jobs.sandbox_gid, graceMs: jobs.kill_grace * 1000 },
          this.log,
        );
        this.log.info({ sandbox: this.sandbox.kind, cgroups: this.sandbox.cgroups }, 'jobs sandbox ready');
      } catch (error) {
        // The node still serves everything else; job requests are refused with this reason.
        this.sandboxError = error instanceof Error ? error.message : String(error);
        this.log.warn({ err: error }, 'no sandbox for jobs: job requests will be refused (SANDBOX_UNAVAILABLE)');
      }
    }
    const { protocols } = this.options;
    this.unhandle.push(
      protocols.handle(jobRequestMessage, (m, connection, channel) => this.serveRequest(m, connection, channel), {
        maxStreamsPerPeer: jobs.max_concurrent_jobs * 2,
      }),
      protocols.handle(jobAttachMessage, (m, connection, channel) => this.serveAttach(m.job_id, m.log_after, connection, channel)),
      protocols.handle(jobCancelMessage, (m, connection, channel) => this.serveCancel(m.job_id, connection, channel)),
      protocols.handle(jobOutputFetchMessage, (m, connection, channel) => this.serveOutput(m.job_id, m.sha256, connection, channel), {
        maxStreamsPerPeer: 4,
      }),
    );
    await this.sweep();
    this.sweepTimer = setInterval(() => void this.sweep(), SWEEP_INTERVAL_MS);
    this.sweepTimer.unref();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    for (const off of this.unhandle.splice(0)) off();
    clearInterval(this.sweepTimer);
    // Jobs die with the node: kill them, and say why to whoever is attached.
    await Promise.all(
      [...this.active.values()].map(async (job) => {
        job.cancelledBy = null;
        job.row = { ...job.row, message: 'executor stopping' };
        await job.running?.cancel();
        await job.over;
      }),
    );
    await this.sandbox?.close();
  }

  private markInterrupted(): void {
    const { jobStore } = this.options;
    for (const row of jobStore.inStates('executor', ['IDLE', 'READY', 'RUNNING'])) {
      const finishedAt = Date.now();
      jobStore.update(row.id, 'executor', {
        state: 'ERRORED',
        reason: 'EXECUTOR_RESTARTED',
        message: 'the executor stopped while the job was running',
        finishedAt,
      });
      this.emitState(row, row.state as JobState, 'ERRORED', 'EXECUTOR_RESTARTED', 'the executor stopped while the job was running');
      this.log.warn({ job: row.id, was: row.state }, 'job interrupted by a restart');
    }
  }

  private async serveRequest(request: JobRequestMessage, connection: PeerConnection, channel: MessageChannel): Promise<void> {
    const orderer = connection.remotePeerId;
    let job: ActiveJob;
    try {
      job = this.admit(request, orderer);
    } catch (error) {
      this.counters.refused.inc({ code: error instanceof RemoteNetworkError ? error.code : 'INTERNAL' });
      throw error;
    }
    const listener = new JobListener(channel, orderer);
    job.listeners.add(listener);
    listener.open(0);
    await listener.send({ type: 'job_accepted', job_id: job.row.id, state: 'READY', wall_time_ms: job.limits.wallTimeMs });
    void this.run(job, request);
    await listener.done();
  }

  /** Checks a request against the service and the node's limits; creates the record (READY). */
  private admit(request: JobRequestMessage, orderer: string): ActiveJob {
    const { config, services, jobStore } = this.options;
    if (!config.jobs.enabled) throw new JobsDisabledError('this node does not run jobs for peers');
    if (!this.sandbox) throw new SandboxUnavailableError(`this node cannot run jobs: ${this.sandboxError ?? 'no sandbox'}`);
    const service = services.get(request.service_id) ?? services.byName(request.service_id);
    if (!service || !services.allows(service, orderer)) {
      if (service) throw new ServiceNotAllowedError(`service ${service.name} is not offered to peer ${orderer}`);
      throw new UnknownServiceError(`no service ${request.service_id} here`);
    }
    if (service.kind !== 'STANDALONE') throw new UnknownServiceError(`service ${service.name} is ${service.kind}: it is fetched, not run`);
    renderArguments(service, request.parameters);
    let inline = 0;
    if (request.stdin !== null) {
      if (!service.interfaces.stdin) throw new JobLimitExceededError(`service ${service.name} takes no stdin`);
      inline += Buffer.byteLength(request.stdin, 'base64');
    }
    for (const input of request.inputs) {
      checkRemoteName(input.name, 'input file name');
      if (!service.interfaces.inputs.includes(input.name)) {
        throw new JobLimitExceededError(`service ${service.name} declares no input ${input.name}`);
      }
      inline += Buffer.byteLength(input.data, 'base64');
    }
    if (inline > MAX_INLINE_INPUT_BYTES) {
      throw new JobLimitExceededError(`inline stdin and inputs are ${inline} bytes, more than ${MAX_INLINE_INPUT_BYTES}`);
    }
    if (this.active.size >= config.jobs.max_concurrent_jobs) {
      throw new ExecutorBusyError(`this node runs ${config.jobs.max_concurrent_jobs} jobs at once already`);
    }
    if (jobStore.get(request.job_id, 'executor')) throw new JobAlreadyExistsError(`job ${request.job_id} exists already`);
    const row = newJobRow({
      id: request.job_id,
      role: 'executor',
      peerId: orderer,
      serviceId: service.id,
      serviceName: service.name,
      parameters: JSON.stringify(request.parameters),
      state: 'READY',
      workflowId: null,
    });
    jobStore.insert(row);
    let finish!: (state: JobState) => void;
    const over = new Promise<JobState>((resolve) => (finish = resolve));
    const job: ActiveJob = {
      row,
      service,
      limits: jobLimits(service.limits, config.jobs),
      listeners: new Set(),
      running: null,
      cancelledBy: null,
      over,
      finish,
    };
    this.active.set(row.id, job);
    this.emitState(row, null, 'READY', null, null);
    return job;
  }

  private async run(job: ActiveJob, request: JobRequestMessage): Promise<void> {
    const { jobStore } = this.options;
    const id = job.row.id;
    const logs = new LogCoalescer((stream, data) => this.appendLog(job, stream, data));
    let workspace: string | null = null;
    try {
      const inputs = request.inputs.map((i) => ({ name: i.name, data: Buffer.from(i.data, 'base64') }));
      const sandbox = this.sandbox;
      if (sandbox === null) throw new SandboxUnavailableError('the sandbox went away');
      workspace = await prepareWorkspace(this.workspaceRoot, id, inputs, sandbox.jobUser);
      if (job.cancelledBy !== null) return this.finalize(job, 'CANCELLED', 'CANCELLED', `cancelled by ${job.cancelledBy}`);
      if (this.stopping) return this.finalize(job, 'ERRORED', 'EXECUTOR_RESTARTED', 'executor stopping');
      const args = renderArguments(job.service, request.parameters);
      job.running = sandbox.start(
        {
          jobId: id,
          executable: job.service.executable,
          args,
          workspace,
          stdin: request.stdin === null ? null : Buffer.from(request.stdin, 'base64'),
          env: JOB_ENV,
          limits: job.limits,
        },
        // A stream the service does not declare is not kept (it still counts toward the output cap).
        (stream, chunk) => {
          if (job.service.interfaces[stream]) logs.add(stream, chunk);
        },
      );
      const startedAt = Date.now();
      jobStore.update(id, 'executor', { state: 'RUNNING', startedAt });
      job.row = { ...job.row, state: 'RUNNING', startedAt };
      this.emitState(job.row, 'READY', 'RUNNING', null, null);
      this.pushAll(job, { type: 'job_status', job_id: id, state: 'RUNNING', at: startedAt });
      const result = await job.running.done;
      logs.flush();
      await this.conclude(job, result, workspace);
    } catch (error) {
      logs.flush();
      this.log.error({ err: error, job: id }, 'job failed to run');
      this.finalize(
        job,
        'ERRORED',
        'SANDBOX_FAILED',
        error instanceof Error ? error.message.slice(0, 500) : 'the job could not be started',
      );
    } finally {
      if (workspace !== null)
        await removeWorkspace(this.workspaceRoot, id).catch((error: unknown) =>
          this.log.warn({ err: error, job: id }, 'workspace not removed'),
        );
    }
  }

  /** Maps the sandbox's result (and the outputs) to the job's final state. */
  private async conclude(job: ActiveJob, result: SandboxResult, workspace: string): Promise<void> {
    const counts = { stdoutBytes: result.stdoutBytes, stderrBytes: result.stderrBytes, truncated: result.truncated };
    const ended = { exitCode: result.exitCode, signal: result.signal };
    if (job.cancelledBy !== null || result.reason === 'CANCELLED') {
      const by = job.cancelledBy === null ? (job.row.message ?? 'cancelled') : `cancelled by ${job.cancelledBy}`;
      const state: JobState = job.cancelledBy === null ? 'ERRORED' : 'CANCELLED';
      return this.finalize(job, state, job.cancelledBy === null ? 'EXECUTOR_RESTARTED' : 'CANCELLED', by, { ...counts, ...ended });
    }
    if (result.reason !== 'EXITED') {
      return this.finalize(job, 'ERRORED', result.reason, describe(result, job.limits), { ...counts, ...ended });
    }
    if (result.exitCode !== 0) {
      return this.finalize(job, 'ERRORED', 'EXITED', `exited with code ${result.exitCode}`, { ...counts, ...ended });
    }
    const collected = await collectOutputs(workspace, job.service.interfaces.outputs, job.limits.outputFileBytes);
    if (collected.refused.length > 0) {
      const detail = collected.refused.map((r) => `${r.name}: ${r.reason}`).join('; ');
      return this.finalize(job, 'ERRORED', 'OUTPUT_REFUSED', `outputs refused: ${detail}`.slice(0, 500), { ...counts, ...ended });
    }
    if (collected.missing.length > 0) {
      return this.finalize(
        job,
        'ERRORED',
        'OUTPUT_MISSING',
        `declared outputs not written: ${collected.missing.join(', ')}`.slice(0, 500),
        {
          ...counts,
          ...ended,
        },
      );
    }
    const outputs: JobOutput[] = [];
    for (const output of collected.outputs) {
      const stored = await this.options.blobs.importFile(output.path);
      outputs.push({ name: output.name, size: stored.size, sha256: stored.sha256 });
    }
    return this.finalize(job, 'COMPLETED', 'EXITED', null, { ...counts, ...ended, outputs });
  }

  private finalize(
    job: ActiveJob,
    state: JobState,
    reason: JobReason,
    message: string | null,
    extra: Partial<Pick<JobRow, 'exitCode' | 'signal' | 'stdoutBytes' | 'stderrBytes' | 'truncated'>> & { outputs?: JobOutput[] } = {},
  ): void {
    const { jobStore } = this.options;
    const finishedAt = Date.now();
    const outputs = extra.outputs ?? [];
    const changes = {
      state,
      reason,
      message,
      exitCode: extra.exitCode ?? null,
      signal: extra.signal ?? null,
      stdoutBytes: extra.stdoutBytes ?? 0,
      stderrBytes: extra.stderrBytes ?? 0,
      truncated: extra.truncated ?? false,
      outputs: JSON.stringify(outputs),
      finishedAt,
    };
    jobStore.update(job.row.id, 'executor', changes);
    const from = job.row.state as JobState;
    job.row = { ...job.row, ...changes };
    this.active.delete(job.row.id);
    this.counters.finished.inc({ role: 'executor', state, reason });
    if (job.row.startedAt !== null) this.counters.duration.observe({ state }, (finishedAt - job.row.startedAt) / 1000);
    this.emitState(job.row, from, state, reason, message);
    for (const output of outputs) {
      this.options.bus.emit('job.output.ready', { jobId: job.row.id, role: 'executor', workflowId: null, ...output });
    }
    void this.resultOf(job.row).then((result) => {
      for (const listener of job.listeners) listener.end(result);
      job.finish(state);
    });
    this.log.info({ job: job.row.id, service: job.service.name, state, reason, message }, 'job finished');
  }

  private appendLog(job: ActiveJob, stream: 'stdout' | 'stderr', data: Buffer): void {
    const at = Date.now();
    const seq = this.options.jobStore.appendLog(job.row.id, 'executor', stream, data, at);
    job.row = { ...job.row, logSeq: seq };
    const encoded = data.toString('base64');
    this.options.bus.emit('job.log', { jobId: job.row.id, role: 'executor', seq, stream, data: encoded, at });
    this.pushAll(job, { type: 'job_log', job_id: job.row.id, seq, stream, data: encoded, at });
  }

  private pushAll(job: ActiveJob, message: Parameters<JobListener['push']>[0]): void {
    for (const listener of job.listeners) {
      if (listener.alive) listener.push(message);
      else job.listeners.delete(listener);
    }
  }

  private async serveAttach(jobId: string, logAfter: number, connection: PeerConnection, channel: MessageChannel): Promise<void> {
    const row = this.owned(jobId, connection.remotePeerId);
    const active = this.active.get(jobId);
    const listener = new JobListener(channel, connection.remotePeerId);
    // Listen first, then replay: a chunk logged meanwhile is held, and sent once if the replay missed it.
    active?.listeners.add(listener);
    const wallTime = active?.limits.wallTimeMs ?? 0;
    await listener.send({ type: 'job_accepted', job_id: jobId, state: row.state as JobState, wall_time_ms: wallTime });
    let seq = logAfter;
    for (let page = this.page(jobId, seq); page.length > 0; page = this.page(jobId, seq)) {
      for (const chunk of page) {
        await listener.send(logMessage(chunk));
        seq = chunk.seq;
      }
    }
    if (active && this.active.has(jobId)) {
      listener.open(seq);
    } else {
      listener.end(await this.resultOf(this.options.jobStore.get(jobId, 'executor') ?? row));
    }
    await listener.done();
  }

  private page(jobId: string, afterSeq: number): JobLogRow[] {
    return this.options.jobStore.logs(jobId, 'executor', afterSeq, LOG_PAGE);
  }

  private async serveCancel(jobId: string, connection: PeerConnection, channel: MessageChannel): Promise<void> {
    const row = this.owned(jobId, connection.remotePeerId);
    const active = this.active.get(jobId);
    let state = row.state as JobState;
    if (active) {
      active.cancelledBy ??= connection.remotePeerId;
      this.log.info({ job: jobId, by: connection.remotePeerId }, 'job cancel requested');
      if (active.running) await active.running.cancel();
      state = await active.over;
    }
    await channel.sendFinal({ type: 'job_cancelled', job_id: jobId, state });
    await channel.finish();
  }

  private async serveOutput(jobId: string, sha256: string, connection: PeerConnection, channel: MessageChannel): Promise<void> {
    const row = this.owned(jobId, connection.remotePeerId);
    const outputs = JSON.parse(row.outputs) as JobOutput[];
    const output = outputs.find((o) => o.sha256 === sha256);
    const size = output ? await this.options.blobs.size(sha256) : undefined;
    if (!output || size === undefined) throw new OutputNotFoundError(`job ${jobId} has no output ${sha256} (any more)`);
    await channel.send({ type: 'job_output_header', sha256, size });
    const stream = channel.detach();
    const writer = stream.writable.getWriter();
    for await (const chunk of this.options.blobs.read(sha256)) await writer.write(chunk as Buffer);
    await writer.close();
    await drain(stream.readable);
  }

  /** The executor's record of a job the peer ordered; anyone else's job is "not found". */
  private owned(jobId: string, peerId: string): JobRow {
    const row = this.active.get(jobId)?.row ?? this.options.jobStore.get(jobId, 'executor');
    if (!row || row.peerId !== peerId) throw new JobNotFoundError(jobId);
    return row;
  }

  private async resultOf(row: JobRow): Promise<JobResultMessage> {
    const outputs = JSON.parse(row.outputs) as JobOutput[];
    const entries = await Promise.all(
      outputs.map(async (o) => {
        if (o.size > MAX_INLINE_OUTPUT_BYTES) return { ...o, data: null };
        try {
          const chunks: Buffer[] = [];
          for await (const chunk of this.options.blobs.read(o.sha256)) chunks.push(chunk as Buffer);
          return { ...o, data: Buffer.concat(chunks).toString('base64') };
        } catch {
          return { ...o, data: null };
        }
      }),
    );
    return {
      type: 'job_result',
      job_id: row.id,
      state: row.state as JobState,
      reason: row.reason as JobReason | null,
      message: row.message,
      exit_code: row.exitCode,
      signal: row.signal,
      outputs: entries,
      stdout_bytes: row.stdoutBytes,
      stderr_bytes: row.stderrBytes,
      truncated: row.truncated,
      log_seq: row.logSeq,
      started_at: row.startedAt,
      finished_at: row.finishedAt ?? Date.now(),
    };
  }

  private emitState(row: JobRow, from: JobState | null, to: JobState, reason: JobReason | null, message: string | null): void {
    emitJobState(this.options.bus, row, from, to, reason, message);
  }

  private async sweep(): Promise<void> {
    const { jobStore, blobs, config } = this.options;
    try {
      const removed = jobStore.sweep(Date.now() - config.jobs.log_retention * 1000);
      const blobsRemoved = removed.length > 0 ? await blobs.prune(jobStore.referencedOutputs()) : 0;
      if (removed.length > 0) this.log.info({ jobs: removed.length, blobs: blobsRemoved }, 'finished jobs past retention removed');
    } catch (error) {
      this.log.warn({ err: error }, 'job retention sweep failed');
    }
  }
}

function logMessage(chunk: JobLogRow): Parameters<JobListener['push']>[0] {
  return {
    type: 'job_log',
    job_id: chunk.jobId,
    seq: chunk.seq,
    stream: chunk.stream === 2 ? 'stderr' : 'stdout',
    data: chunk.data.toString('base64'),
    at: chunk.at,
  };
}

function describe(result: SandboxResult, limits: JobLimits): string {
  switch (result.reason) {
    case 'OOM':
      return `killed for using more than its ${limits.memoryBytes} bytes of memory`;
    case 'TIMEOUT':
      return `stopped at its wall time of ${limits.wallTimeMs} ms`;
    case 'OUTPUT_LIMIT':
      return `stopped after writing its ${limits.outputBytes} bytes of output`;
    case 'SIGNALED':
      return `killed by ${result.signal ?? 'a signal'}`;
    default:
      return result.reason;
  }
}
