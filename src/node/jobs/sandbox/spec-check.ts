import { statSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { checkJobId } from '../job-id.ts';
import { InvalidJobSpecError } from './errors.ts';
import { checkLimits } from './limits.ts';
import type { SandboxSpec } from './sandbox.ts';

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Far above any real command line, far below what would make exec fail with E2BIG. */
export const MAX_ARGS = 4096;
export const MAX_ENV = 1024;

function checkNoNul(value: string, what: string): void {
  if (value.includes('\0')) throw new InvalidJobSpecError(`${what} contains a NUL character`);
}

/** Refuses a spec the sandbox could not run faithfully; nothing has started yet. */
export function checkSpec(spec: SandboxSpec): void {
  checkJobId(spec.jobId);
  checkNoNul(spec.executable, 'executable');
  if (!isAbsolute(spec.executable)) throw new InvalidJobSpecError(`executable must be an absolute path, got ${spec.executable}`);
  if (spec.args.length > MAX_ARGS) throw new InvalidJobSpecError(`at most ${MAX_ARGS} arguments, got ${spec.args.length}`);
  spec.args.forEach((arg, i) => checkNoNul(arg, `argument ${i}`));
  const env = Object.entries(spec.env);
  if (env.length > MAX_ENV) throw new InvalidJobSpecError(`at most ${MAX_ENV} environment variables, got ${env.length}`);
  for (const [name, value] of env) {
    if (!ENV_NAME.test(name)) throw new InvalidJobSpecError(`environment variable name ${JSON.stringify(name)} is not a valid name`);
    checkNoNul(value, `environment variable ${name}`);
  }
  checkNoNul(spec.workspace, 'workspace');
  if (!isAbsolute(spec.workspace) || !statSync(spec.workspace, { throwIfNoEntry: false })?.isDirectory()) {
    throw new InvalidJobSpecError(`workspace ${spec.workspace} is not an existing absolute directory`);
  }
  checkLimits(spec.limits);
}
