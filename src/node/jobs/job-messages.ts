import { z } from 'zod';
import { JOB_REASONS, JOB_STATES } from './job.ts';

/**
 * The job protocol, one stream per job and attachment (see JobExecutor): `job_request` or
 * `job_attach` → `job_accepted` (or a typed error) → `job_status` / `job_log` pushes → `job_result`,
 * then the executor ends the stream. `job_cancel` and `job_output_fetch` are streams of their own.
 */

/** Inline stdin and input files of one request, decoded, at most (the rest of a 256 KiB frame is base64's overhead). */
export const MAX_INLINE_INPUT_BYTES = 128 * 1024;
/** Outputs up to this size travel inside `job_result`; larger ones are fetched by hash. */
export const MAX_INLINE_OUTPUT_BYTES = 32 * 1024;
/** One `job_log` frame's data, decoded. */
export const MAX_LOG_CHUNK_BYTES = 64 * 1024;
export const MAX_PARAMETERS = 64;
export const MAX_INPUT_FILES = 16;
export const MAX_OUTPUT_FILES = 64;

const jobId = z.string().regex(/^[0-9a-f]{32}$/);
const sha256 = z.string().regex(/^[0-9a-f]{64}$/);
const base64 = (maxDecodedBytes: number) =>
  z
    .string()
    .max(Math.ceil(maxDecodedBytes / 3) * 4)
    .regex(/^[A-Za-z0-9+/]*={0,2}$/);
/** A file name as the remote side gave it; the workspace checks it again before it touches a disk. */
const fileName = z.string().min(1).max(255);
const parameterValue = z.union([z.string().max(4096), z.number().finite(), z.boolean()]);

export const jobRequestMessage = z.object({
  type: z.literal('job_request'),
  job_id: jobId,
  service_id: z.string().min(1).max(64),
  parameters: z.record(z.string().max(64), parameterValue).refine((p) => Object.keys(p).length <= MAX_PARAMETERS, 'too many parameters'),
  stdin: base64(MAX_INLINE_INPUT_BYTES).nullable(),
  inputs: z.array(z.object({ name: fileName, data: base64(MAX_INLINE_INPUT_BYTES) })).max(MAX_INPUT_FILES),
});
export type JobRequestMessage = z.infer<typeof jobRequestMessage>;

/** Re-attaches to a job (after a reconnect or a restart of the orderer): logs after `log_after`, then live. */
export const jobAttachMessage = z.object({ type: z.literal('job_attach'), job_id: jobId, log_after: z.number().int().min(0) });

export const jobAcceptedMessage = z.object({
  type: z.literal('job_accepted'),
  job_id: jobId,
  state: z.enum(JOB_STATES),
  /** How long the job may run: the orderer's reads wait that long (plus a margin) for news. */
  wall_time_ms: z.number().int().min(0),
});

export const jobStatusMessage = z.object({
  type: z.literal('job_status'),
  job_id: jobId,
  state: z.enum(JOB_STATES),
  at: z.number().int().min(0),
});

export const jobLogMessage = z.object({
  type: z.literal('job_log'),
  job_id: jobId,
  seq: z.number().int().min(1),
  stream: z.enum(['stdout', 'stderr']),
  data: base64(MAX_LOG_CHUNK_BYTES),
  at: z.number().int().min(0),
});

const outputEntry = z.object({
  name: fileName,
  size: z.number().int().min(0),
  sha256,
  /** The content, when at most MAX_INLINE_OUTPUT_BYTES. */
  data: base64(MAX_INLINE_OUTPUT_BYTES).nullable(),
});

export const jobResultMessage = z.object({
  type: z.literal('job_result'),
  job_id: jobId,
  state: z.enum(JOB_STATES),
  reason: z.enum(JOB_REASONS).nullable(),
  message: z.string().max(500).nullable(),
  exit_code: z.number().int().nullable(),
  signal: z.string().max(16).nullable(),
  outputs: z.array(outputEntry).max(MAX_OUTPUT_FILES),
  stdout_bytes: z.number().int().min(0),
  stderr_bytes: z.number().int().min(0),
  truncated: z.boolean(),
  /** Seq of the last log chunk: the orderer knows whether it has them all. */
  log_seq: z.number().int().min(0),
  started_at: z.number().int().min(0).nullable(),
  finished_at: z.number().int().min(0),
});
export type JobResultMessage = z.infer<typeof jobResultMessage>;

export const jobCancelMessage = z.object({ type: z.literal('job_cancel'), job_id: jobId });
export const jobCancelledMessage = z.object({ type: z.literal('job_cancelled'), job_id: jobId, state: z.enum(JOB_STATES) });

/** Asks for an output's bytes; the answer is `job_output_header`, then the raw bytes to the end of the stream. */
export const jobOutputFetchMessage = z.object({ type: z.literal('job_output_fetch'), job_id: jobId, sha256 });
export const jobOutputHeaderMessage = z.object({ type: z.literal('job_output_header'), sha256, size: z.number().int().min(0) });

export type JobWireMessage =
  | JobRequestMessage
  | z.infer<typeof jobAttachMessage>
  | z.infer<typeof jobAcceptedMessage>
  | z.infer<typeof jobStatusMessage>
  | z.infer<typeof jobLogMessage>
  | JobResultMessage
  | z.infer<typeof jobCancelMessage>
  | z.infer<typeof jobCancelledMessage>
  | z.infer<typeof jobOutputFetchMessage>
  | z.infer<typeof jobOutputHeaderMessage>;
