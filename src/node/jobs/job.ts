import { RemoteNetworkError } from '../base/errors.ts';
import type { JobRole, JobRow } from '../../db/jobs.ts';
import type { EventBus } from '../events/bus.ts';
import type { NodeEventMap } from '../events/types.ts';

/** The seed's job states: IDLE (ordered, not accepted yet) → READY (accepted) → RUNNING → a final one. */
export const JOB_STATES = ['IDLE', 'READY', 'RUNNING', 'COMPLETED', 'ERRORED', 'CANCELLED'] as const;
export type JobState = (typeof JOB_STATES)[number];
export const FINAL_STATES: readonly JobState[] = ['COMPLETED', 'ERRORED', 'CANCELLED'];
export const ACTIVE_STATES: readonly JobState[] = ['IDLE', 'READY', 'RUNNING'];

export function isFinal(state: string): boolean {
  return (FINAL_STATES as readonly string[]).includes(state);
}

/**
 * Why a job is where it is. EXITED carries the exit code (0 = COMPLETED); the sandbox's reasons
 * come first, then what the job layer adds: the executor refused it, restarted under it, its
 * outputs broke the rules, or the orderer could not reach the executor or verify what it sent.
 */
export const JOB_REASONS = [
  'EXITED',
  'SIGNALED',
  'OOM',
  'TIMEOUT',
  'OUTPUT_LIMIT',
  'CANCELLED',
  'EXECUTOR_RESTARTED',
  'OUTPUT_MISSING',
  'OUTPUT_REFUSED',
  'SANDBOX_FAILED',
  'REFUSED',
  'EXECUTOR_UNREACHABLE',
  'OUTPUT_FETCH_FAILED',
] as const;
export type JobReason = (typeof JOB_REASONS)[number];

export interface JobOutput {
  readonly name: string;
  readonly size: number;
  readonly sha256: string;
}

/** A job as the API shows it (either role's record). */
export interface JobView {
  readonly id: string;
  readonly role: JobRole;
  readonly peerId: string;
  readonly serviceId: string;
  readonly serviceName: string;
  readonly parameters: Record<string, unknown>;
  readonly state: JobState;
  readonly reason: JobReason | null;
  readonly message: string | null;
  readonly exitCode: number | null;
  readonly signal: string | null;
  readonly outputs: readonly JobOutput[];
  readonly stdoutBytes: number;
  readonly stderrBytes: number;
  readonly truncated: boolean;
  readonly logSeq: number;
  readonly workflowId: string | null;
  readonly createdAt: Date;
  readonly startedAt: Date | null;
  readonly finishedAt: Date | null;
}

export function jobView(row: JobRow): JobView {
  return {
    id: row.id,
    role: row.role,
    peerId: row.peerId,
    serviceId: row.serviceId,
    serviceName: row.serviceName,
    parameters: JSON.parse(row.parameters) as Record<string, unknown>,
    state: row.state as JobState,
    reason: row.reason as JobReason | null,
    message: row.message,
    exitCode: row.exitCode,
    signal: row.signal,
    outputs: JSON.parse(row.outputs) as JobOutput[],
    stdoutBytes: row.stdoutBytes,
    stderrBytes: row.stderrBytes,
    truncated: row.truncated,
    logSeq: row.logSeq,
    workflowId: row.workflowId,
    createdAt: new Date(row.createdAt),
    startedAt: row.startedAt === null ? null : new Date(row.startedAt),
    finishedAt: row.finishedAt === null ? null : new Date(row.finishedAt),
  };
}

// --- Refusals, each with its code (the executor answers them on the wire; the API shows them) ---

export class JobsDisabledError extends RemoteNetworkError {
  readonly code = 'JOBS_DISABLED';
}
export class UnknownServiceError extends RemoteNetworkError {
  readonly code = 'UNKNOWN_SERVICE';
}
export class ServiceNotAllowedError extends RemoteNetworkError {
  readonly code = 'SERVICE_NOT_ALLOWED';
}
export class JobLimitExceededError extends RemoteNetworkError {
  readonly code = 'LIMIT_EXCEEDED';
}
export class ExecutorBusyError extends RemoteNetworkError {
  readonly code = 'EXECUTOR_BUSY';
}
/** Also what a peer hears about a job that is not its own: whether it exists is not its business. */
export class JobNotFoundError extends RemoteNetworkError {
  readonly code = 'JOB_NOT_FOUND';
  constructor(readonly jobId: string) {
    super(`no job ${jobId}`);
  }
}
export class JobAlreadyExistsError extends RemoteNetworkError {
  readonly code = 'JOB_EXISTS';
}
export class OutputNotFoundError extends RemoteNetworkError {
  readonly code = 'OUTPUT_NOT_FOUND';
}

/** Announces a state change of a job record (after it was written), for its role. */
export function emitJobState(
  bus: EventBus<NodeEventMap>,
  row: JobRow,
  from: JobState | null,
  to: JobState,
  reason: JobReason | null,
  message: string | null,
): void {
  bus.emit('job.status.changed', {
    jobId: row.id,
    role: row.role,
    peerId: row.peerId,
    serviceId: row.serviceId,
    workflowId: row.workflowId,
    from,
    to,
    reason,
    message,
  });
}

/** A new job record: nothing happened to it yet but its creation. */
export function newJobRow(
  fields: Pick<JobRow, 'id' | 'role' | 'peerId' | 'serviceId' | 'serviceName' | 'parameters' | 'state' | 'workflowId'>,
): JobRow {
  return {
    ...fields,
    reason: null,
    message: null,
    exitCode: null,
    signal: null,
    outputs: '[]',
    stdoutBytes: 0,
    stderrBytes: 0,
    truncated: false,
    logSeq: 0,
    createdAt: Date.now(),
    startedAt: null,
    finishedAt: null,
  };
}
