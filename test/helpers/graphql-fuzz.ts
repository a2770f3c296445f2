import fc from 'fast-check';
import {
  type GraphQLArgument,
  type GraphQLField,
  type GraphQLInputType,
  type GraphQLNamedType,
  type GraphQLOutputType,
  type GraphQLSchema,
  getNamedType,
  isEnumType,
  isInputObjectType,
  isLeafType,
  isListType,
  isNonNullType,
  isObjectType,
  isRequiredArgument,
  isScalarType,
} from 'graphql';

/**
 * Property-based GraphQL operations generated from the schema itself: every root field of Query,
 * Mutation and Subscription, with each argument omitted, given a literal or given a variable, and
 * values of the right type, of every wrong type, and hostile (huge, unicode, out of range,
 * NaN-like, nested, null, malformed peer ids, addresses and cursors).
 */

/** An enum literal (a bare name in a document; a string in variables). */
export class EnumName {
  constructor(readonly name: string) {}
}

/** Text spliced into the document as is: malformed literals the parser must refuse. */
export class RawLiteral {
  constructor(readonly text: string) {}
}

export type FuzzValue =
  string | number | bigint | boolean | null | EnumName | RawLiteral | readonly FuzzValue[] | { readonly [key: string]: FuzzValue };

export type OperationType = 'query' | 'mutation' | 'subscription';

export interface FuzzOperation {
  readonly type: OperationType;
  readonly field: string;
  readonly query: string;
  readonly variables: Record<string, unknown>;
  /** The string value each peerId argument got, when it got one (the peer id oracle checks it). */
  readonly peerIds: readonly string[];
}

/** Values that mean something to this node (its own id, a real peer, valid cursors, event types). */
export interface FuzzContext {
  readonly validStrings: readonly string[];
  /** Addresses that may be dialled: loopback ones where something answers at once. */
  readonly dialableAddresses: readonly string[];
  readonly isSafeToDial: (address: string) => boolean;
}

const HEX = '0123456789abcdef';
const hexString = (length: number) => fc.string({ unit: fc.constantFrom(...HEX), minLength: length, maxLength: length });

const NAN_LIKE = [
  'NaN',
  '-NaN',
  'Infinity',
  '-Infinity',
  '1e309',
  '-0',
  '0x10',
  '1_000',
  '  1',
  '1.0',
  '',
  ' ',
  'null',
  'undefined',
  'true',
];
const HOSTILE = [
  '\u0000',
  '\u0000'.repeat(64),
  '\u202e\u200b\ufeff',
  '😀'.repeat(500),
  'é'.normalize('NFD'),
  '__proto__',
  'constructor',
  "'; DROP TABLE known_peers; --",
  '%00%ff',
  '../../../../etc/passwd',
  '${jndi:ldap://127.0.0.1/a}',
  '{"a":1}',
  '[1,2]',
  '\\',
  '"',
  '\r\n\t',
];

function peerIdLike(): fc.Arbitrary<string> {
  return fc.oneof(
    hexString(40),
    hexString(40).map((s) => s.toUpperCase()),
    hexString(39),
    hexString(41),
    hexString(40).map((s) => `${s.slice(0, 20)}g${s.slice(21)}`),
    hexString(40).map((s) => ` ${s} `),
    hexString(40).map((s) => `0x${s}`),
    hexString(80),
    fc.constant(''),
  );
}

function addressLike(): fc.Arbitrary<string> {
  return fc.oneof(
    fc.constantFrom(
      '127.0.0.1:0',
      '127.0.0.1:65536',
      '127.0.0.1:-1',
      '127.0.0.1:99999999999999999999',
      '127.0.0.1',
      '127.0.0.1:',
      ':30906',
      '[::1',
      '[::1]',
      '[127.0.0.1]:1',
      '[zz::1]:1',
      '1.2.3.4.5:1',
      '256.256.256.256:1',
      '127.0.0.1:1:2',
      'localhost:abc',
      '-host-:1',
      `${'a'.repeat(300)}:1`,
      'host name:1',
      '127.0.0.1:1\u0000',
      'http://127.0.0.1:1/',
    ),
    fc.integer({ min: -5, max: 70_000 }).map((port) => `127.0.0.1:${port}x`),
  );
}

function cursorLike(): fc.Arbitrary<string> {
  const b64 = (text: string) => Buffer.from(text).toString('base64url');
  return fc.oneof(
    fc.string().map(b64),
    hexString(40).map((id) => b64(`KnownPeer:${id}`)),
    fc.string().map((junk) => b64(`KnownPeer:${junk}`)),
    hexString(40).map((id) => b64(`KnownPeer:${id}`).slice(1)),
    fc.constantFrom('====', '!!!', 'KnownPeer:', b64('KnownPeer:'), b64(`KnownPeer:${'0'.repeat(40)}`)),
  );
}

/** Strings of every kind: hostile, unicode, huge, NaN-like, peer-id-like, addresses, cursors. */
function hostileString(context: FuzzContext): fc.Arbitrary<string> {
  return fc.oneof(
    { arbitrary: fc.string(), weight: 3 },
    { arbitrary: fc.string({ unit: 'grapheme', maxLength: 40 }), weight: 2 },
    { arbitrary: fc.string({ unit: 'binary', maxLength: 40 }), weight: 2 },
    { arbitrary: fc.constantFrom(...NAN_LIKE, ...HOSTILE), weight: 3 },
    { arbitrary: fc.integer({ min: 1000, max: 300_000 }).map((n) => 'x'.repeat(n)), weight: 1 },
    { arbitrary: peerIdLike(), weight: 4 },
    { arbitrary: addressLike(), weight: 2 },
    { arbitrary: cursorLike(), weight: 2 },
    { arbitrary: fc.constantFrom(...context.validStrings), weight: 3 },
  );
}

function hostileInt(): fc.Arbitrary<number | bigint | RawLiteral> {
  return fc.oneof(
    fc.integer({ min: -5, max: 200 }),
    fc.integer(),
    fc.constantFrom(-2147483648, 2147483647, 0, -1, 100, 101),
    fc.constantFrom(2 ** 31, -(2 ** 31) - 1, Number.MAX_SAFE_INTEGER, 2 ** 63),
    fc.bigInt({ min: -(10n ** 40n), max: 10n ** 40n }),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.constantFrom(new RawLiteral('1e309'), new RawLiteral('0x10'), new RawLiteral('01'), new RawLiteral('1.'), new RawLiteral('-')),
  );
}

/** A value of any GraphQL kind, nested: what goes where it does not belong. */
function anyValue(context: FuzzContext): fc.Arbitrary<FuzzValue> {
  const { value } = fc.letrec<{ value: FuzzValue }>((tie) => ({
    value: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      hostileString(context),
      hostileInt(),
      fc.boolean(),
      fc.constant(null),
      fc.constantFrom(new EnumName('CONNECTED'), new EnumName('FOO'), new EnumName('true'), new EnumName('NaN')),
      fc.array(tie('value'), { maxLength: 4 }),
      fc.dictionary(fc.stringMatching(/^[a-z][a-zA-Z0-9_]{0,8}$/), tie('value'), { maxKeys: 3 }),
    ),
  }));
  return value;
}

/**
 * Strings for arguments whose name says what they hold: valid ones often enough to reach the node
 * behind the resolver, malformed ones as often, anything else now and then.
 */
function stringFor(argument: string, context: FuzzContext): fc.Arbitrary<string> {
  const valid = context.validStrings.length > 0 ? fc.constantFrom(...context.validStrings) : fc.constant('');
  const anything = hostileString(context);
  switch (argument) {
    case 'peerId':
      return fc.oneof(
        { arbitrary: valid, weight: 3 },
        { arbitrary: hexString(40), weight: 2 },
        { arbitrary: peerIdLike(), weight: 3 },
        { arbitrary: anything, weight: 2 },
      );
    case 'address':
      return fc.oneof(
        { arbitrary: fc.constantFrom(...context.dialableAddresses), weight: 2 },
        { arbitrary: addressLike(), weight: 3 },
        { arbitrary: anything, weight: 1 },
      );
    case 'after':
    case 'before':
      return fc.oneof({ arbitrary: valid, weight: 2 }, { arbitrary: cursorLike(), weight: 3 }, { arbitrary: anything, weight: 1 });
    default:
      return fc.oneof({ arbitrary: valid, weight: 2 }, { arbitrary: anything, weight: 3 });
  }
}

/** Values for one input type: mostly of that type (to reach resolvers), some of any other. */
function valueFor(type: GraphQLInputType, context: FuzzContext, argument: string, depth = 0): fc.Arbitrary<FuzzValue> {
  if (isNonNullType(type)) return valueFor(type.ofType, context, argument, depth);
  const wrong = anyValue(context);
  if (isListType(type)) {
    const items = valueFor(type.ofType, context, argument, depth + 1);
    return fc.oneof(
      { arbitrary: fc.array(items, { maxLength: 8 }), weight: 4 },
      {
        arbitrary: fc.integer({ min: 500, max: 5000 }).chain((n) => items.map((item) => Array.from({ length: n }, () => item))),
        weight: 1,
      },
      { arbitrary: fc.array(fc.array(items, { maxLength: 3 }), { maxLength: 3 }), weight: 1 },
      { arbitrary: fc.array(fc.constant(null), { minLength: 1, maxLength: 3 }), weight: 1 },
      { arbitrary: items, weight: 1 }, // a single item where a list is expected (allowed by coercion)
      { arbitrary: wrong, weight: 1 },
    );
  }
  const right = rightValueFor(type, context, argument);
  return fc.oneof({ arbitrary: right, weight: 12 }, { arbitrary: wrong, weight: 1 }, { arbitrary: fc.constant(null), weight: 1 });
}

function rightValueFor(type: GraphQLNamedType & GraphQLInputType, context: FuzzContext, argument: string): fc.Arbitrary<FuzzValue> {
  if (isEnumType(type)) {
    const names = type.getValues().map((v) => v.name);
    return fc.oneof(
      { arbitrary: fc.constantFrom(...names).map((name) => new EnumName(name)), weight: 4 },
      { arbitrary: fc.constantFrom(...names.map((n) => new EnumName(n.toLowerCase())), new EnumName('FOO')), weight: 1 },
      { arbitrary: fc.constantFrom(...names), weight: 1 }, // a string where an enum name is expected
    );
  }
  if (isInputObjectType(type)) {
    const fields = Object.values(type.getFields());
    return fc.record(Object.fromEntries(fields.map((f) => [f.name, valueFor(f.type, context, f.name)])), {
      requiredKeys: [],
    }) as fc.Arbitrary<FuzzValue>;
  }
  if (isScalarType(type)) {
    switch (type.name) {
      case 'Int':
      case 'Float':
        return hostileInt();
      case 'Boolean':
        return fc.boolean();
      case 'ID':
      case 'PeerId':
        return fc.oneof({ arbitrary: stringFor(argument, context), weight: 6 }, { arbitrary: hostileInt(), weight: 1 });
      case 'DateTime':
        return fc.oneof(
          fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
          stringFor(argument, context),
        );
      case 'JSON':
        return anyValue(context);
      default:
        return stringFor(argument, context);
    }
  }
  return anyValue(context);
}

/** How one argument is passed. */
type ArgumentChoice =
  | { readonly kind: 'omit' }
  | { readonly kind: 'literal'; readonly value: FuzzValue }
  | { readonly kind: 'variable'; readonly declared: string; readonly value: FuzzValue | undefined };

function argumentChoice(arg: GraphQLArgument, context: FuzzContext): fc.Arbitrary<ArgumentChoice> {
  const value = valueFor(arg.type, context, arg.name);
  const declared = fc.oneof(
    { arbitrary: fc.constant(String(arg.type)), weight: 12 },
    { arbitrary: fc.constantFrom('Int', 'String!', '[ID]', 'Boolean', 'ConnectionState', 'JSON', 'DateTime', 'NoSuchType'), weight: 1 },
  );
  return fc.oneof(
    { arbitrary: fc.constant({ kind: 'omit' as const }), weight: 1 },
    { arbitrary: value.map((v) => ({ kind: 'literal' as const, value: v })), weight: 3 },
    {
      arbitrary: fc
        .record({ declared, value: fc.option(value, { nil: undefined, freq: 8 }) })
        .map((r) => ({ kind: 'variable' as const, ...r })),
      weight: 3,
    },
  );
}

/** GraphQL literal text for a value (strings as JSON, which is valid GraphQL string syntax except lone surrogates). */
export function literal(value: FuzzValue): string {
  if (value === null) return 'null';
  if (value instanceof EnumName) return value.name;
  if (value instanceof RawLiteral) return value.text;
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'number') return Number.isFinite(value) ? String(value) : 'NaN';
  if (typeof value === 'boolean') return String(value);
  if (Array.isArray(value)) return `[${value.map(literal).join(', ')}]`;
  return `{${Object.entries(value)
    .map(([k, v]) => `${k}: ${literal(v)}`)
    .join(', ')}}`;
}

/** The JSON a client would send as a variable value. */
export function variableValue(value: FuzzValue): unknown {
  if (value instanceof EnumName) return value.name;
  if (value instanceof RawLiteral) return value.text;
  if (typeof value === 'bigint') return Number(value);
  if (Array.isArray(value)) return value.map(variableValue);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value as Record<string, FuzzValue>).map(([k, v]) => [k, variableValue(v)]));
  }
  return value;
}

/** Leaf fields of the return type (one level of objects deep), so child resolvers run too. */
export function selectionFor(type: GraphQLOutputType, depth = 0): string {
  const named = getNamedType(type);
  if (isLeafType(named)) return '';
  if (!isObjectType(named)) return '{ __typename }';
  const parts = ['__typename'];
  for (const field of Object.values(named.getFields())) {
    if (field.args.some(isRequiredArgument)) continue;
    const child = getNamedType(field.type);
    if (isLeafType(child)) parts.push(field.name);
    else if (depth < 2 && isObjectType(child)) parts.push(`${field.name} ${selectionFor(field.type, depth + 1)}`);
  }
  return `{ ${parts.join(' ')} }`;
}

function operationFor(type: OperationType, field: GraphQLField<unknown, unknown>, context: FuzzContext): fc.Arbitrary<FuzzOperation> {
  const choices = fc.tuple(...field.args.map((arg) => argumentChoice(arg, context)));
  const extras = fc.oneof(
    { arbitrary: fc.constant(''), weight: 12 },
    { arbitrary: fc.constantFrom('bogus: 1', 'first: 1, first: 2'), weight: 1 },
  );
  return fc.tuple(choices, extras).map(([picked, extra]) => {
    const args: string[] = [];
    const definitions: string[] = [];
    const variables: Record<string, unknown> = {};
    const peerIds: string[] = [];
    field.args.forEach((arg, i) => {
      const choice = picked[i] as ArgumentChoice;
      if (choice.kind === 'omit') return;
      let value = choice.kind === 'literal' ? choice.value : choice.value;
      if (arg.name === 'address' && typeof value === 'string' && !context.isSafeToDial(value)) value = `[${value}`;
      if (arg.name === 'peerId' && (typeof value === 'string' || typeof value === 'number' || typeof value === 'bigint'))
        peerIds.push(String(value));
      if (choice.kind === 'literal') {
        args.push(`${arg.name}: ${literal(value as FuzzValue)}`);
      } else {
        const name = `v_${arg.name}`;
        definitions.push(`$${name}: ${choice.declared}`);
        args.push(`${arg.name}: $${name}`);
        if (value !== undefined) variables[name] = variableValue(value);
      }
    });
    if (extra) args.push(extra);
    const argText = args.length > 0 ? `(${args.join(', ')})` : '';
    const defText = definitions.length > 0 ? `(${definitions.join(', ')})` : '';
    const query = `${type} Fuzz${defText} { ${field.name}${argText} ${selectionFor(field.type)} }`;
    return { type, field: field.name, query, variables, peerIds };
  });
}

/** Operations on every root field of `types`, equally often per field. */
export function operations(schema: GraphQLSchema, types: readonly OperationType[], context: FuzzContext): fc.Arbitrary<FuzzOperation> {
  const roots = { query: schema.getQueryType(), mutation: schema.getMutationType(), subscription: schema.getSubscriptionType() };
  const all = types.flatMap((type) => Object.values(roots[type]?.getFields() ?? {}).map((field) => operationFor(type, field, context)));
  return fc.oneof(...all);
}

/** Every root field the schema has, per operation type (the run checks each was exercised). */
export function rootFields(schema: GraphQLSchema, type: OperationType): string[] {
  const root = { query: schema.getQueryType(), mutation: schema.getMutationType(), subscription: schema.getSubscriptionType() }[type];
  return Object.keys(root?.getFields() ?? {});
}
