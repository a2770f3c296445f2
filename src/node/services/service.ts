import { MAX_PARAMETER_VALUE_CHARS } from './constants.ts';
import { InvalidParametersError } from './errors.ts';

/** What a node can offer. A discriminated union on `kind`: `DOCKER` joins it in a later issue. */
export type ServiceKind = 'STANDALONE' | 'DATA';
export const SERVICE_KINDS = ['STANDALONE', 'DATA'] as const satisfies readonly ServiceKind[];

export type ParameterType = 'string' | 'integer' | 'boolean';
export const PARAMETER_TYPES = ['string', 'integer', 'boolean'] as const satisfies readonly ParameterType[];

/** A service's declared parameter schema. */
export interface ParameterSpec {
  /** [a-z][a-z0-9_]{0,31} */
  name: string;
  type: ParameterType;
  required: boolean;
  default?: string | number | boolean;
  /** Strings: a regex the whole value must match. */
  pattern?: string;
  maxLength?: number;
  min?: number;
  max?: number;
  description?: string;
}

/** All optional: unset = the node's default ([jobs] section). */
export interface ServiceLimits {
  memoryBytes?: number;
  pids?: number;
  cpuPercent?: number;
  wallTimeMs?: number;
  outputBytes?: number;
  outputFileBytes?: number;
  network?: boolean;
}

export interface ServiceInterfaces {
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  /** File names inside the job's workspace (checked safe: no separators, no `..`). */
  inputs: string[];
  outputs: string[];
}

interface ServiceBase {
  /** Random 128-bit, 32 hex chars, assigned at registration. */
  id: string;
  /** Unique per node: [a-z0-9][a-z0-9._-]{0,63} */
  name: string;
  description: string;
  /** null = public (any peer); otherwise the peer ids (40 hex) allowed to use it. */
  allowedPeers: string[] | null;
  createdAt: Date;
  /** Registered through GraphQL, or read from the services directory. */
  source: 'api' | 'file';
}

export interface StandaloneService extends ServiceBase {
  kind: 'STANDALONE';
  /** Absolute path on this node; existed and was executable at registration. */
  executable: string;
  /** Literal strings and `{{param}}` placeholders (a whole entry, or inside one). */
  args: string[];
  parameters: ParameterSpec[];
  interfaces: ServiceInterfaces;
  limits: ServiceLimits;
}

export interface DataService extends ServiceBase {
  kind: 'DATA';
  /** Absolute path of the file this node serves. */
  path: string;
  /** Computed at registration (and checked again when served). */
  size: number;
  sha256: string;
}

export type Service = StandaloneService | DataService;

/** `{{name}}` in an argument template. */
export const PLACEHOLDER = /\{\{([a-z][a-z0-9_]{0,31})\}\}/g;
/** An entry that is one placeholder and nothing else. */
const WHOLE_PLACEHOLDER = /^\{\{([a-z][a-z0-9_]{0,31})\}\}$/;

/**
 * Checks `parameters` (from a remote peer: untrusted JSON) against the service's declared schema
 * and renders the argument list. Rendering is argv-level, never through a shell, and in one pass:
 * a value is put into the one entry its placeholder is in and is never read again, so a value
 * holding spaces, quotes, `;` or `{{other}}` stays literal text of that one argument. An entry that
 * is only the placeholder of an optional parameter left unset (without a default) is dropped; a
 * placeholder inside a longer entry renders as empty then.
 */
export function renderArguments(service: StandaloneService, parameters: Readonly<Record<string, unknown>>): string[] {
  if (parameters === null || typeof parameters !== 'object' || Array.isArray(parameters)) {
    throw new InvalidParametersError('(parameters)', 'must be an object of name → value');
  }
  const specs = new Map(service.parameters.map((p) => [p.name, p]));
  for (const name of Object.keys(parameters)) {
    if (!specs.has(name)) throw new InvalidParametersError(name.slice(0, 64), `unknown to service ${service.name}`);
  }
  const values = new Map<string, string>();
  for (const spec of service.parameters) {
    const given = Object.hasOwn(parameters, spec.name) ? parameters[spec.name] : undefined;
    const value = given ?? spec.default;
    if (value === undefined || value === null) {
      if (spec.required) throw new InvalidParametersError(spec.name, 'is required');
      continue;
    }
    values.set(spec.name, checkValue(spec, value));
  }
  const rendered: string[] = [];
  for (const entry of service.args) {
    const whole = WHOLE_PLACEHOLDER.exec(entry);
    if (whole?.[1] !== undefined && !values.has(whole[1])) continue;
    rendered.push(entry.replace(PLACEHOLDER, (_match, name: string) => values.get(name) ?? ''));
  }
  return rendered;
}

/** The value as argument text, or the reason it does not fit its spec. */
function checkValue(spec: ParameterSpec, value: unknown): string {
  switch (spec.type) {
    case 'string': {
      if (typeof value !== 'string') throw new InvalidParametersError(spec.name, `must be a string, got ${typeOf(value)}`);
      const maxLength = Math.min(spec.maxLength ?? MAX_PARAMETER_VALUE_CHARS, MAX_PARAMETER_VALUE_CHARS);
      if (value.length > maxLength) throw new InvalidParametersError(spec.name, `is longer than ${maxLength} characters`);
      // An argv entry cannot hold NUL: the kernel would cut it there.
      if (value.includes('\0')) throw new InvalidParametersError(spec.name, 'contains a NUL character');
      if (spec.pattern !== undefined && !anchored(spec.pattern).test(value)) {
        throw new InvalidParametersError(spec.name, `does not match ${spec.pattern}`);
      }
      return value;
    }
    case 'integer': {
      if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
        throw new InvalidParametersError(spec.name, `must be an integer, got ${typeOf(value)}`);
      }
      if (spec.min !== undefined && value < spec.min) throw new InvalidParametersError(spec.name, `is below the minimum ${spec.min}`);
      if (spec.max !== undefined && value > spec.max) throw new InvalidParametersError(spec.name, `is above the maximum ${spec.max}`);
      return String(value);
    }
    case 'boolean':
      if (typeof value !== 'boolean') throw new InvalidParametersError(spec.name, `must be a boolean, got ${typeOf(value)}`);
      return String(value);
  }
}

/** The pattern must match the whole value, not a part of it. */
export function anchored(pattern: string): RegExp {
  return new RegExp(`^(?:${pattern})$`, 'u');
}

function typeOf(value: unknown): string {
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'number') return Number.isSafeInteger(value) ? 'a number' : 'a fractional or unsafe number';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}
