import { randomBytes } from 'node:crypto';
import { InvalidJobSpecError } from './sandbox/errors.ts';

/** 128 random bits: a job id nobody can guess, and a safe file and cgroup name. */
export const JOB_ID_PATTERN = /^[0-9a-f]{32}$/;

export function newJobId(): string {
  return randomBytes(16).toString('hex');
}

export function checkJobId(jobId: string): string {
  if (!JOB_ID_PATTERN.test(jobId))
    throw new InvalidJobSpecError(`job id must be 32 lowercase hex characters, got ${JSON.stringify(jobId)}`);
  return jobId;
}
