import type { JobRow, JobStore } from '../../db/jobs.ts';
import type { Component } from '../base/component.ts';
import { RemoteNetworkError } from '../base/errors.ts';
import type { Logger } from '../base/logger.ts';
import type { NodeComponents } from '../components.ts';
import type { PeerDialer } from '../discovery/peer-dialer.ts';
import type { EventBus } from '../events/bus.ts';
import type { NodeEventMap } from '../events/types.ts';
import type { JobMetrics } from './job-metrics.ts';
import type { ConnectionManager } from '../lifecycle/connection-manager.ts';
import { MessageChannel } from '../wire/channel.ts';
import { RemoteRefusedError } from '../wire/errors.ts';
import type { BlobStore } from './blob-store.ts';
import {
  ACTIVE_STATES,
  JobLimitExceededError,
  JobNotFoundError,
  type JobOutput,
  type JobReason,
  type JobState,
  type JobView,
  isFinal,
  jobView,
  emitJobState,
  newJobRow,
} from './job.ts';
import { newJobId } from './job-id.ts';
import { readAll } from '../wire/raw-stream.ts';
import {
  type JobRequestMessage,
  type JobResultMessage,
  MAX_INLINE_INPUT_BYTES,
  jobAcceptedMessage,
  jobCancelledMessage,
  jobLogMessage,
  jobOutputHeaderMessage,
  jobResultMessage,
  jobStatusMessage,
} from './job-messages.ts';

/** Re-attach attempts after the stream to the executor broke, 1 s apart and doubling, at most 30 s apart. */
const REATTACH_ATTEMPTS = 10;
const REATTACH_MAX_DELAY_MS = 30_000;
/** Added to the executor's announced wall time before a silent stream counts as lost. */
const SILENCE_MARGIN_MS = 60_000;
/** A cancel waits this long for the executor's final state (its kill grace included). */
const CANCEL_WAIT_MS = 60_000;

/** The executor refused the job; `code` is the executor's (UNKNOWN_SERVICE, EXECUTOR_BUSY, …). */
export class JobRefusedError extends RemoteNetworkError {
  constructor(
    readonly code: string,
    message: string,
    readonly job: JobView,
  ) {
    super(message);
  }
}

interface FirstRequest {
  readonly request: JobRequestMessage;
  readonly accepted: () => void;
  readonly refused: (error: unknown) => void;
}

export interface RunJobRequest {
  readonly peerId: string;
  readonly serviceId: string;
  readonly parameters: Record<string, string | number | boolean>;
  readonly stdin: Buffer | null;
  readonly inputs: ReadonlyArray<{ name: string; data: Buffer }>;
  readonly workflowId?: string | null;
}

export interface JobOrdererOptions {
  readonly logger: Logger;
  readonly bus: EventBus<NodeEventMap>;
  /** Shared by the executor and the orderer (one set of metric names per node). */
  readonly jobMetrics: JobMetrics;
  readonly connections: ConnectionManager;
  readonly jobStore: JobStore;
  readonly blobs: BlobStore;
  readonly dialer: Pick<PeerDialer, 'connectToPeer'>;
}

/**
 * The orderer side of the job protocol: runs jobs on peers, follows each over its stream (status,
 * logs, result: pushed, never polled), stores what arrives, fetches outputs too large to travel
 * inline and verifies their hash. When the stream breaks (the connection dropped, was upgraded
 * by a hole punch, or either node restarted) it re-attaches and resumes from the last log seq it
 * stored; after REATTACH_ATTEMPTS failures the job is ERRORED (EXECUTOR_UNREACHABLE).
 */
export class JobOrderer implements Component {
  readonly name = 'job-orderer';
  private readonly log: Logger;
  /** Jobs being followed, by id (one follower each). */
  private readonly following = new Map<string, Promise<void>>();
  private stopped = false;
  private readonly stopController = new AbortController();
  private readonly counters: JobMetrics;

  constructor(private readonly options: JobOrdererOptions) {
    this.log = options.logger.child({ component: this.name });
    this.counters = options.jobMetrics;
  }

  static create(c: NodeComponents, parts: Pick<JobOrdererOptions, 'jobStore' | 'blobs' | 'dialer' | 'jobMetrics'>): JobOrderer {
    return new JobOrderer({ ...c, ...parts });
  }

  start(): void {
    // Jobs this node ordered before it stopped: their executors still know the final state.
    for (const row of this.options.jobStore.inStates('orderer', ACTIVE_STATES)) this.follow(row.id, null);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.stopController.abort();
    await Promise.allSettled([...this.following.values()]);
  }

  get(jobId: string): JobView | undefined {
    const row = this.options.jobStore.get(jobId, 'orderer');
    return row ? jobView(row) : undefined;
  }

  /**
   * Sends the job and returns once the executor accepted it (READY) or refused it (then the job
   * is recorded ERRORED / REFUSED and JobRefusedError carries the executor's code).
   */
  async run(request: RunJobRequest): Promise<JobView> {
    const inline = (request.stdin?.length ?? 0) + request.inputs.reduce((n, i) => n + i.data.length, 0);
    if (inline > MAX_INLINE_INPUT_BYTES) {
      throw new JobLimitExceededError(`inline stdin and inputs are ${inline} bytes, more than ${MAX_INLINE_INPUT_BYTES}`);
    }
    const { jobStore } = this.options;
    const id = newJobId();
    const row = newJobRow({
      id,
      role: 'orderer',
      peerId: request.peerId,
      serviceId: request.serviceId,
      serviceName: request.serviceId,
      parameters: JSON.stringify(request.parameters),
      state: 'IDLE',
      workflowId: request.workflowId ?? null,
    });
    jobStore.insert(row);
    this.emitState(row, null, 'IDLE', null, null);
    const jobRequest: JobRequestMessage = {
      type: 'job_request',
      job_id: id,
      service_id: request.serviceId,
      parameters: request.parameters,
      stdin: request.stdin === null ? null : request.stdin.toString('base64'),
      inputs: request.inputs.map((i) => ({ name: i.name, data: i.data.toString('base64') })),
    };
    try {
      await new Promise<void>((resolve, reject) => this.follow(id, { request: jobRequest, accepted: resolve, refused: reject }));
    } catch (error) {
      const code =
        error instanceof RemoteRefusedError ? error.remoteCode : error instanceof RemoteNetworkError ? error.code : 'EXECUTOR_UNREACHABLE';
      const message = error instanceof Error ? error.message : String(error);
      const reason: JobReason = error instanceof RemoteRefusedError ? 'REFUSED' : 'EXECUTOR_UNREACHABLE';
      this.finish(id, { state: 'ERRORED', reason, message: `${code}: ${message}`.slice(0, 500) });
      throw new JobRefusedError(code, message, this.view(id));
    }
    return this.view(id);
  }

  /**
   * Asks the executor to stop the job and waits for its final state. Only this node's own jobs
   * (the executor checks the same from the connection's proven identity).
   */
  async cancel(jobId: string): Promise<JobView> {
    const row = this.options.jobStore.get(jobId, 'orderer');
    if (!row) throw new JobNotFoundError(jobId);
    if (isFinal(row.state)) return jobView(row);
    const final = this.waitFinal(jobId, CANCEL_WAIT_MS);
    // Handled now: a cancel that fails below must not leave it to reject unobserved later.
    final.catch(() => {});
    const answer = await this.converse(row.peerId, async (channel) => {
      await channel.sendFinal({ type: 'job_cancel', job_id: jobId });
      const cancelled = await channel.receive(jobCancelledMessage, 'job_cancelled', CANCEL_WAIT_MS);
      await channel.finish().catch(() => {});
      return cancelled;
    });
    await final.catch(() => {});
    const after = this.view(jobId);
    // The follower normally records the result; if its stream is down, the answer says enough.
    if (!isFinal(after.state) && isFinal(answer.state)) {
      this.finish(jobId, { state: answer.state, reason: 'CANCELLED', message: 'cancelled' });
    }
    return this.view(jobId);
  }

  private view(jobId: string): JobView {
    const row = this.options.jobStore.get(jobId, 'orderer');
    if (!row) throw new JobNotFoundError(jobId);
    return jobView(row);
  }

  /** One conversation on a new stream to the peer (connected first if need be); the stream counts as active meanwhile. */
  private async converse<T>(peerId: string, work: (channel: MessageChannel) => Promise<T>): Promise<T> {
    await this.options.dialer.connectToPeer(peerId);
    return this.options.connections.withPeerStream(peerId, async (stream) => {
      const channel = new MessageChannel(stream);
      try {
        return await work(channel);
      } catch (error) {
        await channel.fail(error);
        throw error;
      }
    });
  }

  /** Follows a job until it is final: sends it first when `first` is given, else attaches to it. */
  private follow(jobId: string, first: FirstRequest | null): void {
    if (this.following.has(jobId)) return;
    const run = this.followLoop(jobId, first)
      .catch((error: unknown) => this.log.error({ err: error, job: jobId }, 'following a job failed'))
      .finally(() => this.following.delete(jobId));
    this.following.set(jobId, run);
  }

  private async followLoop(jobId: string, first: FirstRequest | null): Promise<void> {
    let pending = first;
    let failures = 0;
    let lastError = '';
    while (!this.stopped) {
      const row = this.options.jobStore.get(jobId, 'orderer');
      if (!row || isFinal(row.state)) return;
      let accepted = false;
      try {
        await this.converse(row.peerId, async (channel) => {
          if (pending) await channel.send(pending.request);
          else await channel.send({ type: 'job_attach', job_id: jobId, log_after: row.logSeq });
          const answer = await channel.receive(jobAcceptedMessage, 'job_accepted');
          accepted = true;
          this.transition(jobId, answer.state);
          pending?.accepted();
          pending = null;
          await this.consume(jobId, channel, answer.wall_time_ms);
        });
        return;
      } catch (error) {
        if (pending && !accepted) {
          // The first request failed: the caller hears why, nothing is retried.
          pending.refused(error);
          return;
        }
        if (error instanceof RemoteRefusedError && error.remoteCode === 'JOB_NOT_FOUND') {
          this.finish(jobId, { state: 'ERRORED', reason: 'EXECUTOR_UNREACHABLE', message: 'the executor no longer knows this job' });
          return;
        }
        failures += 1;
        lastError = error instanceof Error ? error.message : String(error);
        if (failures >= REATTACH_ATTEMPTS) break;
        this.log.debug({ job: jobId, attempt: failures, err: error }, 'job stream lost: re-attaching');
        await this.pause(Math.min(1000 * 2 ** (failures - 1), REATTACH_MAX_DELAY_MS), row.peerId);
      }
    }
    if (this.stopped) return;
    this.finish(jobId, {
      state: 'ERRORED',
      reason: 'EXECUTOR_UNREACHABLE',
      message: `gave up after ${failures} attempts: ${lastError}`.slice(0, 500),
    });
  }

  /** Waits `ms`, or less when the executor's connection comes (back) up. */
  private pause(ms: number, peerId: string): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        off();
        this.stopController.signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      const off = this.options.bus.on('peer.exchanged', (e) => {
        if (e.payload.peerId === peerId) done();
      });
      this.stopController.signal.addEventListener('abort', done);
    });
  }

  /** Reads pushes until the result; stores each as it arrives. */
  private async consume(jobId: string, channel: MessageChannel, wallTimeMs: number): Promise<void> {
    const silence = wallTimeMs + SILENCE_MARGIN_MS;
    for (;;) {
      const message = await channel.receiveAny(silence);
      switch (message.type) {
        case 'job_status': {
          const status = jobStatusMessage.parse(message.body);
          this.transition(jobId, status.state, status.state === 'RUNNING' ? status.at : undefined);
          break;
        }
        case 'job_log': {
          const chunk = jobLogMessage.parse(message.body);
          const data = Buffer.from(chunk.data, 'base64');
          if (this.options.jobStore.putLog(jobId, 'orderer', chunk.seq, chunk.stream, data, chunk.at)) {
            this.options.bus.emit('job.log', {
              jobId,
              role: 'orderer',
              seq: chunk.seq,
              stream: chunk.stream,
              data: chunk.data,
              at: chunk.at,
            });
          }
          break;
        }
        case 'job_result': {
          const result = jobResultMessage.parse(message.body);
          await channel.finish().catch(() => {});
          await this.conclude(jobId, result);
          return;
        }
        default:
          throw new RemoteRefusedError('PROTOCOL_UNEXPECTED_MESSAGE', `unexpected ${message.type.slice(0, 40)} on a job stream`);
      }
    }
  }

  /** Stores the result; outputs not inline are fetched and verified first. */
  private async conclude(jobId: string, result: JobResultMessage): Promise<void> {
    const { blobs } = this.options;
    const outputs: JobOutput[] = [];
    let fetchError: string | null = null;
    for (const output of result.outputs) {
      try {
        if (output.data !== null) {
          const stored = await blobs.put(Buffer.from(output.data, 'base64'));
          if (stored.sha256 !== output.sha256) throw new Error(`inline ${output.name} hashes to ${stored.sha256}, not ${output.sha256}`);
        } else if ((await blobs.size(output.sha256)) !== output.size) {
          await this.fetchOutput(jobId, output);
        }
        outputs.push({ name: output.name, size: output.size, sha256: output.sha256 });
      } catch (error) {
        fetchError = `${output.name}: ${error instanceof Error ? error.message : String(error)}`;
        break;
      }
    }
    const failed = fetchError !== null && result.state === 'COMPLETED';
    this.finish(jobId, {
      state: failed ? 'ERRORED' : result.state,
      reason: failed ? 'OUTPUT_FETCH_FAILED' : result.reason,
      message: failed ? fetchError : result.message,
      exitCode: result.exit_code,
      signal: result.signal,
      outputs,
      stdoutBytes: result.stdout_bytes,
      stderrBytes: result.stderr_bytes,
      truncated: result.truncated,
      startedAt: result.started_at,
    });
  }

  private async fetchOutput(jobId: string, output: { name: string; size: number; sha256: string }): Promise<void> {
    const row = this.options.jobStore.get(jobId, 'orderer');
    if (!row) throw new JobNotFoundError(jobId);
    await this.converse(row.peerId, async (channel) => {
      await channel.sendFinal({ type: 'job_output_fetch', job_id: jobId, sha256: output.sha256 });
      const header = await channel.receive(jobOutputHeaderMessage, 'job_output_header');
      if (header.size !== output.size) throw new Error(`the executor announces ${header.size} bytes, the result said ${output.size}`);
      await this.options.blobs.receive(readAll(channel.detach().readable), output);
    });
  }

  /** A state on the way; a final state is recorded only with its result (finish). */
  private transition(jobId: string, to: JobState, startedAt?: number): void {
    const row = this.options.jobStore.get(jobId, 'orderer');
    if (!row || row.state === to || isFinal(row.state) || isFinal(to)) return;
    this.options.jobStore.update(jobId, 'orderer', { state: to, ...(startedAt === undefined ? {} : { startedAt }) });
    this.emitState(row, row.state as JobState, to, null, null);
  }

  private finish(
    jobId: string,
    outcome: { state: JobState; reason: JobReason | null; message: string | null } & Partial<
      Pick<JobRow, 'exitCode' | 'signal' | 'stdoutBytes' | 'stderrBytes' | 'truncated' | 'startedAt'>
    > & { outputs?: JobOutput[] },
  ): void {
    const row = this.options.jobStore.get(jobId, 'orderer');
    if (!row || isFinal(row.state)) return;
    const { outputs = [], ...rest } = outcome;
    this.options.jobStore.update(jobId, 'orderer', { ...rest, outputs: JSON.stringify(outputs), finishedAt: Date.now() });
    this.counters.finished.inc({ role: 'orderer', state: outcome.state, reason: outcome.reason ?? 'NONE' });
    this.emitState(row, row.state as JobState, outcome.state, outcome.reason, outcome.message);
    for (const output of outputs) {
      this.options.bus.emit('job.output.ready', { jobId, role: 'orderer', workflowId: row.workflowId, ...output });
    }
  }

  private waitFinal(jobId: string, timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new Error(`job ${jobId} not final within ${timeoutMs} ms`));
      }, timeoutMs);
      const off = this.options.bus.on('job.status.changed', (e) => {
        if (e.payload.jobId === jobId && e.payload.role === 'orderer' && isFinal(e.payload.to)) {
          clearTimeout(timer);
          off();
          resolve();
        }
      });
    });
  }

  private emitState(row: JobRow, from: JobState | null, to: JobState, reason: JobReason | null, message: string | null): void {
    emitJobState(this.options.bus, row, from, to, reason, message);
  }
}
