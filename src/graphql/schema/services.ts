import type { ServiceInput } from '../../node/services/definition.ts';
import {
  type DataService,
  type ParameterSpec,
  SERVICE_KINDS,
  type Service,
  type ServiceInterfaces as ServiceInterfacesValue,
  type ServiceLimits as ServiceLimitsValue,
  type StandaloneService,
} from '../../node/services/service.ts';
import { builder } from '../builder.ts';

export const ServiceKind = builder.enumType('ServiceKind', {
  description: 'What a service is: an executable run as a job (STANDALONE) or a file served by hash (DATA). DOCKER comes later.',
  values: SERVICE_KINDS,
});

const ServiceSource = builder.enumType('ServiceSource', {
  description: 'How the service was registered: through this API, or from a file of the services directory (re-read at start).',
  values: { API: { value: 'api' }, FILE: { value: 'file' } } as const,
});

const ParameterType = builder.enumType('ParameterType', {
  values: { STRING: { value: 'string' }, INTEGER: { value: 'integer' }, BOOLEAN: { value: 'boolean' } } as const,
});

export const ParameterSpecType = builder.objectRef<ParameterSpec>('ParameterSpec').implement({
  description: "One parameter of a service's declared schema (what a job's parameters are checked against).",
  fields: (t) => ({
    name: t.exposeString('name'),
    type: t.field({ type: ParameterType, resolve: (p) => p.type }),
    required: t.exposeBoolean('required'),
    default: t.field({ type: 'JSON', nullable: true, resolve: (p) => p.default ?? null }),
    pattern: t.string({
      nullable: true,
      description: 'Strings: a regular expression the whole value must match.',
      resolve: (p) => p.pattern ?? null,
    }),
    maxLength: t.int({ nullable: true, resolve: (p) => p.maxLength ?? null }),
    min: t.float({ nullable: true, description: 'Integers: the smallest value allowed.', resolve: (p) => p.min ?? null }),
    max: t.float({ nullable: true, description: 'Integers: the largest value allowed.', resolve: (p) => p.max ?? null }),
    description: t.string({ nullable: true, resolve: (p) => p.description ?? null }),
  }),
});

export const ServiceInterfacesType = builder.objectRef<ServiceInterfacesValue>('ServiceInterfaces').implement({
  description: 'What a job of the service reads and writes: its standard streams and named files in its workspace.',
  fields: (t) => ({
    stdin: t.exposeBoolean('stdin'),
    stdout: t.exposeBoolean('stdout'),
    stderr: t.exposeBoolean('stderr'),
    inputs: t.exposeStringList('inputs'),
    outputs: t.exposeStringList('outputs'),
  }),
});

const ServiceLimitsType = builder.objectRef<ServiceLimitsValue>('ServiceLimits').implement({
  description: "A service's own limits; null = the node's default ([jobs] section).",
  fields: (t) => ({
    memoryBytes: t.float({ nullable: true, resolve: (l) => l.memoryBytes ?? null }),
    pids: t.float({ nullable: true, resolve: (l) => l.pids ?? null }),
    cpuPercent: t.float({ nullable: true, resolve: (l) => l.cpuPercent ?? null }),
    wallTimeMs: t.float({ nullable: true, resolve: (l) => l.wallTimeMs ?? null }),
    outputBytes: t.float({ nullable: true, resolve: (l) => l.outputBytes ?? null }),
    outputFileBytes: t.float({ nullable: true, resolve: (l) => l.outputFileBytes ?? null }),
    network: t.boolean({ nullable: true, resolve: (l) => l.network ?? null }),
  }),
});

const ServiceType = builder.interfaceRef<Service>('Service').implement({
  description: 'A service this node offers.',
  resolveType: (service) => (service.kind === 'DATA' ? 'DataService' : 'StandaloneService'),
  fields: (t) => ({
    id: t.id({ description: 'Random 128-bit id (32 hex characters).', resolve: (s) => s.id }),
    name: t.exposeString('name'),
    kind: t.field({ type: ServiceKind, resolve: (s) => s.kind }),
    description: t.exposeString('description'),
    allowedPeers: t.field({
      type: ['PeerId'],
      nullable: true,
      description: 'The peers allowed to use it; null = public (any peer).',
      resolve: (s) => s.allowedPeers,
    }),
    createdAt: t.field({ type: 'DateTime', resolve: (s) => s.createdAt }),
    source: t.field({ type: ServiceSource, resolve: (s) => s.source }),
  }),
});

builder.objectRef<StandaloneService>('StandaloneService').implement({
  description: 'An executable of this node, run as a job with an argument template rendered from checked parameters.',
  interfaces: [ServiceType],
  isTypeOf: (value) => (value as Service).kind === 'STANDALONE',
  fields: (t) => ({
    executable: t.exposeString('executable'),
    args: t.exposeStringList('args', {
      description: 'Literal strings and {{parameter}} placeholders; rendered per argument, never through a shell.',
    }),
    parameters: t.field({ type: [ParameterSpecType], resolve: (s) => s.parameters }),
    interfaces: t.field({ type: ServiceInterfacesType, resolve: (s) => s.interfaces }),
    limits: t.field({ type: ServiceLimitsType, resolve: (s) => s.limits }),
  }),
});

builder.objectRef<DataService>('DataService').implement({
  description: 'A file this node serves, identified by its SHA-256.',
  interfaces: [ServiceType],
  isTypeOf: (value) => (value as Service).kind === 'DATA',
  fields: (t) => ({
    path: t.exposeString('path'),
    size: t.float({ description: 'Bytes, when registered.', resolve: (s) => s.size }),
    sha256: t.exposeString('sha256'),
  }),
});

const ParameterSpecInput = builder.inputType('ParameterSpecInput', {
  fields: (t) => ({
    name: t.string({ required: true }),
    type: t.field({ type: ParameterType, required: true }),
    required: t.boolean({ required: false }),
    default: t.field({ type: 'JSON', required: false }),
    pattern: t.string({ required: false }),
    maxLength: t.int({ required: false }),
    min: t.float({ required: false }),
    max: t.float({ required: false }),
    description: t.string({ required: false }),
  }),
});

const ServiceInterfacesInput = builder.inputType('ServiceInterfacesInput', {
  fields: (t) => ({
    stdin: t.boolean({ required: false }),
    stdout: t.boolean({ required: false }),
    stderr: t.boolean({ required: false }),
    inputs: t.stringList({ required: false }),
    outputs: t.stringList({ required: false }),
  }),
});

const ServiceLimitsInput = builder.inputType('ServiceLimitsInput', {
  fields: (t) => ({
    memoryBytes: t.float({ required: false }),
    pids: t.float({ required: false }),
    cpuPercent: t.float({ required: false }),
    wallTimeMs: t.float({ required: false }),
    outputBytes: t.float({ required: false }),
    outputFileBytes: t.float({ required: false }),
    network: t.boolean({ required: false }),
  }),
});

const RegisterServiceInput = builder.inputType('RegisterServiceInput', {
  description: 'A service definition (the same fields as a file of the services directory). STANDALONE needs executable; DATA needs path.',
  fields: (t) => ({
    kind: t.field({ type: ServiceKind, required: true }),
    name: t.string({ required: true, description: 'Unique on this node: [a-z0-9][a-z0-9._-]{0,63}.' }),
    description: t.string({ required: false }),
    allowedPeers: t.field({ type: ['PeerId'], required: false, description: 'Omitted or null: public.' }),
    executable: t.string({ required: false, description: 'STANDALONE: absolute path of an existing executable.' }),
    args: t.stringList({ required: false }),
    parameters: t.field({ type: [ParameterSpecInput], required: false }),
    interfaces: t.field({ type: ServiceInterfacesInput, required: false }),
    limits: t.field({ type: ServiceLimitsInput, required: false }),
    path: t.string({ required: false, description: 'DATA: absolute path of the file to serve.' }),
  }),
});

builder.queryField('services', (t) =>
  t.field({
    type: [ServiceType],
    description: 'The services this node offers, optionally of one kind.',
    args: { kind: t.arg({ type: ServiceKind, required: false }) },
    resolve: (_root, args, ctx) => ctx.node.services.list().filter((s) => args.kind == null || s.kind === args.kind),
  }),
);

builder.queryField('service', (t) =>
  t.field({
    type: ServiceType,
    nullable: true,
    args: { id: t.arg.id({ required: true }) },
    resolve: (_root, args, ctx) => ctx.node.services.get(String(args.id)) ?? null,
  }),
);

builder.mutationField('registerService', (t) =>
  t.field({
    type: ServiceType,
    description:
      'Registers a service (operator only). Refusals: SERVICE_INVALID, SERVICE_NAME_TAKEN, SERVICE_EXECUTABLE_MISSING, ' +
      'DATA_FILE_MISSING, SERVICE_LIMIT_EXCEEDED.',
    args: { input: t.arg({ type: RegisterServiceInput, required: true }) },
    // The registry validates the whole definition (the same schema as a services-directory file).
    resolve: (_root, args, ctx) => ctx.node.services.register(withoutNulls(args.input) as ServiceInput),
  }),
);

builder.mutationField('removeService', (t) =>
  t.boolean({
    description: 'Removes a service (operator only); false if there was none with that id.',
    args: { id: t.arg.id({ required: true }) },
    resolve: (_root, args, ctx) => ctx.node.services.remove(String(args.id)),
  }),
);

/** GraphQL's null for "not given" becomes absent, so the definition's defaults apply; nested inputs too. */
function withoutNulls(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutNulls);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(
    Object.entries(value)
      .filter(([key, v]) => v !== null || key === 'allowedPeers' || key === 'default')
      .map(([key, v]) => [key, key === 'default' ? v : withoutNulls(v)]),
  );
}
