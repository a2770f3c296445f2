import { isAbsolute } from 'node:path';
import { z } from 'zod';
import {
  MAX_ALLOWED_PEERS,
  MAX_ARG_CHARS,
  MAX_ARGS,
  MAX_DESCRIPTION_CHARS,
  MAX_FILE_NAME_CHARS,
  MAX_INTERFACE_FILES,
  MAX_PARAMETER_DESCRIPTION_CHARS,
  MAX_PARAMETER_VALUE_CHARS,
  MAX_PARAMETERS,
  MAX_PATTERN_CHARS,
} from './constants.ts';
import { ServiceInvalidError } from './errors.ts';
import { PARAMETER_TYPES, PLACEHOLDER, type ParameterSpec, anchored } from './service.ts';

/**
 * A service definition as the operator gives it (GraphQL `registerService`, or one JSON file of
 * the services directory), validated by one schema. What the registry adds (id, createdAt,
 * source, a data file's size and hash) is not part of it.
 */
export const SERVICE_NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;
export const PARAMETER_NAME = /^[a-z][a-z0-9_]{0,31}$/;
/** A file name inside a job's workspace: no separator, no leading dot (so no `.` or `..`), no NUL. */
export const WORKSPACE_FILE_NAME = new RegExp(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,${MAX_FILE_NAME_CHARS - 1}}$`);

const absolutePath = z
  .string()
  .min(1)
  .max(4096)
  .refine((p) => isAbsolute(p) && !p.includes('\0'), 'must be an absolute path');
const peerId = z.string().regex(/^[0-9a-f]{40}$/, 'must be a peer id (40 lowercase hex characters)');
const count = z.number().int().min(1).max(Number.MAX_SAFE_INTEGER);

const parameterSpec = z
  .strictObject({
    name: z.string().regex(PARAMETER_NAME, 'must match [a-z][a-z0-9_]{0,31}'),
    type: z.enum(PARAMETER_TYPES),
    required: z.boolean().default(false),
    default: z.union([z.string().max(MAX_PARAMETER_VALUE_CHARS), z.number(), z.boolean()]).optional(),
    pattern: z
      .string()
      .max(MAX_PATTERN_CHARS)
      .refine((p) => compiles(p), 'is not a valid regular expression')
      .optional(),
    maxLength: z.number().int().min(0).max(MAX_PARAMETER_VALUE_CHARS).optional(),
    min: z.number().int().optional(),
    max: z.number().int().optional(),
    description: z.string().max(MAX_PARAMETER_DESCRIPTION_CHARS).optional(),
  })
  .superRefine((spec, ctx) => {
    if ((spec.pattern !== undefined || spec.maxLength !== undefined) && spec.type !== 'string') {
      ctx.addIssue({ code: 'custom', message: 'pattern and maxLength apply to string parameters only' });
    }
    if ((spec.min !== undefined || spec.max !== undefined) && spec.type !== 'integer') {
      ctx.addIssue({ code: 'custom', message: 'min and max apply to integer parameters only' });
    }
    if (spec.min !== undefined && spec.max !== undefined && spec.min > spec.max) {
      ctx.addIssue({ code: 'custom', path: ['min'], message: 'is above max' });
    }
    const problem = spec.default === undefined ? undefined : defaultProblem(spec);
    if (problem !== undefined) ctx.addIssue({ code: 'custom', path: ['default'], message: problem });
  });

const fileNames = z
  .array(z.string().regex(WORKSPACE_FILE_NAME, 'must be a plain file name (letters, digits, . _ -; no leading dot)'))
  .max(MAX_INTERFACE_FILES)
  .refine((names) => new Set(names).size === names.length, 'names a file twice')
  .default([]);

const limits = z
  .strictObject({
    memoryBytes: count.optional(),
    pids: count.optional(),
    cpuPercent: count.optional(),
    wallTimeMs: count.optional(),
    outputBytes: count.optional(),
    outputFileBytes: count.optional(),
    network: z.boolean().optional(),
  })
  .default({});

const common = {
  name: z.string().regex(SERVICE_NAME, 'must match [a-z0-9][a-z0-9._-]{0,63}'),
  description: z.string().max(MAX_DESCRIPTION_CHARS).default(''),
  /** Absent or null: public. */
  allowedPeers: z
    .array(peerId)
    .max(MAX_ALLOWED_PEERS)
    .nullable()
    .default(null)
    .transform((peers) => (peers === null ? null : [...new Set(peers)])),
};

const standaloneInput = z
  .strictObject({
    kind: z.literal('STANDALONE'),
    ...common,
    executable: absolutePath,
    args: z.array(z.string().max(MAX_ARG_CHARS)).max(MAX_ARGS).default([]),
    parameters: z.array(parameterSpec).max(MAX_PARAMETERS).default([]),
    interfaces: z
      .strictObject({
        stdin: z.boolean().default(false),
        stdout: z.boolean().default(true),
        stderr: z.boolean().default(true),
        inputs: fileNames,
        outputs: fileNames,
      })
      .default({ stdin: false, stdout: true, stderr: true, inputs: [], outputs: [] }),
    limits,
  })
  .superRefine((service, ctx) => {
    const names = new Set<string>();
    for (const [i, p] of service.parameters.entries()) {
      if (names.has(p.name)) ctx.addIssue({ code: 'custom', path: ['parameters', i, 'name'], message: `${p.name} is declared twice` });
      names.add(p.name);
    }
    for (const [i, arg] of service.args.entries()) {
      for (const match of arg.matchAll(PLACEHOLDER)) {
        if (match[1] !== undefined && !names.has(match[1])) {
          ctx.addIssue({ code: 'custom', path: ['args', i], message: `{{${match[1]}}} names no declared parameter` });
        }
      }
      if (arg.includes('\0')) ctx.addIssue({ code: 'custom', path: ['args', i], message: 'contains a NUL character' });
    }
  });

const dataInput = z.strictObject({ kind: z.literal('DATA'), ...common, path: absolutePath });

export const serviceInputSchema = z.discriminatedUnion('kind', [standaloneInput, dataInput]);

/** What an operator may write (defaults may be left out). */
export type ServiceInput = z.input<typeof serviceInputSchema>;
/** A validated definition, defaults filled in. */
export type ServiceDefinition = z.output<typeof serviceInputSchema>;

/** Validates a definition; the error names the first field that is wrong. */
export function parseServiceInput(input: unknown): ServiceDefinition {
  const result = serviceInputSchema.safeParse(input);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const path = issue?.path.join('.') ?? '';
  throw new ServiceInvalidError(`${path || 'service'}: ${issue?.message ?? 'invalid'}`);
}

function compiles(pattern: string): boolean {
  try {
    anchored(pattern);
    return true;
  } catch {
    return false;
  }
}

/** Why a parameter's default does not fit its own spec, if it does not. */
function defaultProblem(spec: ParameterSpec): string | undefined {
  const value = spec.default;
  if (spec.type === 'string') {
    if (typeof value !== 'string') return 'must be a string';
    if (spec.maxLength !== undefined && value.length > spec.maxLength) return 'is longer than maxLength';
    if (spec.pattern !== undefined && compiles(spec.pattern) && !anchored(spec.pattern).test(value)) return 'does not match pattern';
  } else if (spec.type === 'integer') {
    if (typeof value !== 'number' || !Number.isSafeInteger(value)) return 'must be an integer';
    if ((spec.min !== undefined && value < spec.min) || (spec.max !== undefined && value > spec.max)) return 'is outside min..max';
  } else if (typeof value !== 'boolean') return 'must be a boolean';
  return undefined;
}
