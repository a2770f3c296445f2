import { Kind, type ValueNode } from 'graphql';
import { isPeerId } from '../../node/base/peer-id.ts';
import { builder } from '../builder.ts';
import { userInputError } from '../errors.ts';

builder.scalarType('DateTime', {
  description: 'An instant as an ISO 8601 string in UTC, e.g. 2026-01-31T12:00:00.000Z.',
  serialize: (value) => value.toISOString(),
  parseValue: (value) => parseDate(value),
  parseLiteral: (ast) => parseDate(ast.kind === Kind.STRING ? ast.value : undefined),
});

builder.scalarType('JSON', {
  description: 'Any JSON value.',
  serialize: (value) => value,
  parseValue: (value) => value,
  parseLiteral: (ast) => literalValue(ast),
});

/**
 * Every peer id the API takes or returns. Input is accepted in any case (as a string, or a 40-digit
 * integer literal as ID took it) and reaches the resolvers in the node's lower-case form, so none
 * passes an arbitrary string (up to the 1 MiB body limit) on to the node; a malformed one is refused
 * before any resolver runs.
 */
builder.scalarType('PeerId', {
  description: 'A peer id: hex(SHA1(Ed25519 public key)), 40 hexadecimal characters; accepted in any case, returned in lower case.',
  serialize: (value) => {
    // Only the node's own values come out here: a malformed one is a bug, masked as unexpected.
    if (!isPeerId(value)) throw new TypeError('not a peer id');
    return value;
  },
  parseValue: (value) => parsePeerId(value),
  parseLiteral: (ast) => parsePeerId(ast.kind === Kind.STRING || ast.kind === Kind.INT ? ast.value : undefined, ast),
});

/** `literal`: where the value is written in the document, so that the error points at it. */
function parsePeerId(value: unknown, literal?: ValueNode): string {
  const peerId = typeof value === 'string' || typeof value === 'number' ? String(value).toLowerCase() : '';
  if (!isPeerId(peerId)) throw userInputError('PeerId must be 40 hexadecimal characters', {}, literal);
  return peerId;
}

function parseDate(value: unknown): Date {
  const date = typeof value === 'string' ? new Date(value) : undefined;
  if (!date || Number.isNaN(date.getTime())) throw userInputError('DateTime must be an ISO 8601 string');
  return date;
}

function literalValue(ast: ValueNode): unknown {
  switch (ast.kind) {
    case Kind.STRING:
    case Kind.BOOLEAN:
    case Kind.ENUM:
      return ast.value;
    case Kind.INT:
    case Kind.FLOAT:
      return Number(ast.value);
    case Kind.NULL:
      return null;
    case Kind.LIST:
      return ast.values.map(literalValue);
    case Kind.OBJECT:
      return Object.fromEntries(ast.fields.map((f) => [f.name.value, literalValue(f.value)]));
    default:
      throw userInputError('JSON literals cannot contain variables');
  }
}
