import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { createClient as createSseClient } from 'graphql-sse';
import { createClient as createWsClient } from 'graphql-ws';
import WebSocket from 'ws';
import type { Daemon } from '../src/daemon.ts';
import { schema } from '../src/graphql/schema/index.ts';
import { parseHostPort } from '../src/node/base/address.ts';
import { NODE_EVENT_TYPES } from '../src/node/events/types.ts';
import { MAX_REQUEST_BYTES } from '../src/graphql/access.ts';
import { startTestDaemon, startTestNode } from './helpers/daemon.ts';
import { gql } from './helpers/graphql.ts';
import { type FuzzContext, type FuzzOperation, type OperationType, operations, rootFields } from './helpers/graphql-fuzz.ts';
import { randomPeer } from './helpers/peers.ts';

/**
 * GraphQL input fuzzing against a real daemon: operations generated from the schema for every root
 * field, over HTTP, graphql-ws and SSE. Reproduce a failure with the seed it prints:
 * `FC_SEED=<seed> node --import tsx --test test/graphql-fuzz.spec.ts` (FC_RUNS scales the runs).
 */
const SEED = Number(process.env.FC_SEED ?? 20_261_111);
const SCALE = Number(process.env.FC_RUNS ?? 1);
const HTTP_RUNS = Math.round(2000 * SCALE);
const WS_RUNS = Math.round(400 * SCALE);
const SSE_RUNS = Math.round(150 * SCALE);

interface ResponseError {
  readonly message?: unknown;
  readonly path?: unknown;
  readonly extensions?: { readonly code?: unknown; readonly argument?: unknown; readonly variable?: unknown };
}

const VALID_PEER_ID = /^[0-9a-f]{40}$/i;

/**
 * What every answer must be: JSON with data and/or errors; each error a message and a code that
 * is not INTERNAL_SERVER_ERROR; BAD_USER_INPUT from a resolver names its argument; a malformed
 * peerId never reaches the resolvers (the PeerId scalar refuses it with the request).
 */
function checkResult(op: FuzzOperation, body: unknown): void {
  const describe = () =>
    `${op.query.slice(0, 2000)}\nvariables: ${JSON.stringify(op.variables).slice(0, 2000)}\nanswer: ${JSON.stringify(body).slice(0, 2000)}`;
  assert.ok(body !== null && typeof body === 'object', `not a JSON object:\n${describe()}`);
  const result = body as { data?: unknown; errors?: unknown };
  assert.ok('data' in result || 'errors' in result, `neither data nor errors:\n${describe()}`);
  if (result.errors !== undefined) return checkErrors(op, result.errors, describe);
  const malformed = op.peerIds.find((id) => !VALID_PEER_ID.test(id));
  assert.equal(malformed, undefined, `malformed peerId ${JSON.stringify(malformed)} accepted:\n${describe()}`);
}

function checkErrors(op: FuzzOperation, value: unknown, describe: () => string): void {
  assert.ok(Array.isArray(value) && value.length > 0, `errors is not a non-empty list:\n${describe()}`);
  const errors = value as ResponseError[];
  for (const error of errors) {
    assert.equal(typeof error.message, 'string', `an error without a message:\n${describe()}`);
    const code = error.extensions?.code;
    assert.equal(typeof code, 'string', `an error without extensions.code:\n${describe()}`);
    assert.notEqual(code, 'INTERNAL_SERVER_ERROR', `an internal error:\n${describe()}`);
    assert.notEqual(error.message, 'Unexpected error.', `a masked error:\n${describe()}`);
    // A resolver's refusal names its argument (request-level ones, such as a variable that does not
    // fit its type, point at the variable through `locations`).
    if (code === 'BAD_USER_INPUT' && error.path !== undefined) {
      assert.equal(typeof error.extensions?.argument, 'string', `BAD_USER_INPUT names no argument:\n${describe()}`);
    }
  }
  const requestLevel = errors.some((e) => e.path === undefined);
  const malformed = op.peerIds.find((id) => !VALID_PEER_ID.test(id));
  assert.ok(requestLevel || malformed === undefined, `malformed peerId ${JSON.stringify(malformed)} reached the resolvers:\n${describe()}`);
}

async function fuzzNode(t: { after(fn: () => unknown): void }): Promise<{ daemon: Daemon; context: FuzzContext }> {
  const daemon = await startTestDaemon(t);
  const peer = await startTestNode(t);
  const others = Array.from({ length: 30 }, (_, i) => randomPeer({ isRelay: i % 3 === 0 }));
  daemon.node.knownPeers.record(others);
  await daemon.node.connections.connect({ host: '127.0.0.1', port: peer.quicPort }, peer.peerId);
  const page = await gql<{ knownPeers: { pageInfo: { endCursor: string } } }>(
    daemon.api.url,
    '{ knownPeers(first: 5) { pageInfo { endCursor } } }',
  );
  const dialable = new Set([`127.0.0.1:${peer.quicPort}`]);
  const context: FuzzContext = {
    validStrings: [
      daemon.node.peerId,
      peer.peerId,
      peer.peerId.toUpperCase(),
      daemon.node.knownPeers.page({}, 3).rows[0]?.peerId ?? peer.peerId,
      page.data?.knownPeers.pageInfo.endCursor ?? '',
      daemon.node.config.peer_discovery.topic,
      ...NODE_EVENT_TYPES,
      ...dialable,
    ],
    dialableAddresses: [...dialable],
    // Only loopback addresses where a node answers at once are dialled: never a public host, never a
    // silent port (a dial there waits 5 s for its QUIC_DIAL_TIMEOUT).
    isSafeToDial: (address) => {
      const parsed = parseHostPort(address);
      return parsed === undefined || dialable.has(`${parsed.host}:${parsed.port}`);
    },
  };
  return { daemon, context };
}

async function genuineQueryAnswers(daemon: Daemon): Promise<void> {
  const answer = await gql<{ node: { peerId: string } }>(daemon.api.url, '{ node { peerId } }');
  assert.equal(answer.status, 200);
  assert.equal(answer.data?.node.peerId, daemon.node.peerId, 'the node still answers a genuine query');
}

function assertEveryField(seen: Set<string>, types: readonly OperationType[]): void {
  for (const type of types) {
    for (const field of rootFields(schema, type)) assert.ok(seen.has(`${type}.${field}`), `${type}.${field} was never generated`);
  }
}

/** The `data` of each `next` event in an event stream. */
function sseData(stream: string): string[] {
  return stream
    .split(/\n\n/)
    .filter((event) => /^event: next$/m.test(event))
    .map((event) =>
      event
        .split('\n')
        .filter((line) => line.startsWith('data:'))
        .map((line) => line.slice(5).trim())
        .join('\n'),
    );
}

/** Resolves once `condition` holds, re-checked on every turn of the event loop (bounded). */
async function eventually(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`${what}: not reached within ${timeoutMs} ms`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

describe('GraphQL input fuzzing (fast-check, operations generated from the schema)', () => {
  it(`answers ${HTTP_RUNS} generated queries and mutations over HTTP with well-formed, typed responses`, async (t) => {
    const { daemon, context } = await fuzzNode(t);
    const types: OperationType[] = ['query', 'mutation'];
    const seen = new Set<string>();
    const statuses = new Map<number, number>();
    const codes = new Map<string, number>();
    let oversized = 0;
    await fc.assert(
      fc.asyncProperty(operations(schema, types, context), async (op) => {
        seen.add(`${op.type}.${op.field}`);
        const body = JSON.stringify({ query: op.query, variables: op.variables });
        // Large inputs (lists of long strings) can pass the 1 MiB body limit. The server answers 413
        // before reading the rest (api.spec checks that) and may reset the upload, so fetch can fail
        // either way: such an operation is counted, not sent.
        if (Buffer.byteLength(body) > MAX_REQUEST_BYTES) {
          oversized += 1;
          return;
        }
        const response = await fetch(daemon.api.url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json' },
          body,
        });
        const text = await response.text();
        statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
        assert.ok([200, 400].includes(response.status), `HTTP ${response.status} for ${op.query.slice(0, 500)}: ${text.slice(0, 500)}`);
        const answer = JSON.parse(text) as { errors?: ResponseError[] };
        checkResult(op, answer);
        for (const error of answer.errors ?? [{ extensions: { code: 'none' } }]) {
          const code = String(error.extensions?.code);
          codes.set(code, (codes.get(code) ?? 0) + 1);
        }
      }),
      { seed: SEED, numRuns: HTTP_RUNS, includeErrorInReport: true },
    );
    t.diagnostic(
      `HTTP statuses: ${JSON.stringify(Object.fromEntries(statuses))}; error codes: ${JSON.stringify(Object.fromEntries(codes))}; over the body limit, not sent: ${oversized}`,
    );
    assertEveryField(seen, types);
    await genuineQueryAnswers(daemon);
  });

  it(`answers ${WS_RUNS} generated subscriptions and queries over graphql-ws and ${SSE_RUNS} subscriptions over SSE, and releases them all`, async (t) => {
    const { daemon, context } = await fuzzNode(t);
    const listenersBefore = daemon.node.bus.listenerCount();
    // Not lazy: a lazy client closes its socket whenever no operation is running.
    const ws = createWsClient({
      url: daemon.api.url.replace(/^http/, 'ws'),
      webSocketImpl: WebSocket,
      retryAttempts: 0,
      lazy: false,
      onNonLazyError: () => {},
    });
    t.after(() => ws.dispose());
    let closed: unknown;
    ws.on('closed', (event) => (closed = event));
    // A refusal before any stream starts is a plain HTTP error response: keep its body to check it.
    let refused: { status: number; body: string } | undefined;
    const sse = createSseClient({
      url: daemon.api.url,
      retryAttempts: 0,
      fetchFn: async (input: RequestInfo | URL, init?: RequestInit) => {
        const response = await fetch(input, init);
        if (!response.ok) refused = { status: response.status, body: await response.clone().text() };
        return response;
      },
    });
    t.after(() => sse.dispose());

    const seen = new Set<string>();
    let oversized = 0;
    const run = (transport: 'ws' | 'sse') => async (op: FuzzOperation) => {
      seen.add(`${op.type}.${op.field}`);
      const before = daemon.api.activeSubscriptions;
      refused = undefined;
      let answer: { kind: 'next'; value: unknown } | { kind: 'error'; value: unknown } | { kind: 'complete' } | undefined;
      const payload = { query: op.query, variables: op.variables };
      // A message past the 1 MiB limit closes the socket (1009), as it should; the HTTP run checks
      // that limit. Here it would only end every later operation on this socket.
      if (Buffer.byteLength(JSON.stringify(payload)) > MAX_REQUEST_BYTES - 1024) {
        oversized += 1;
        return;
      }
      const sink = {
        next: (value: unknown) => void (answer ??= { kind: 'next', value }),
        error: (value: unknown) => void (answer ??= { kind: 'error', value }),
        complete: () => void (answer ??= { kind: 'complete' }),
      };
      const stop = transport === 'ws' ? ws.subscribe(payload, sink) : sse.subscribe(payload, sink);
      // Either an answer comes, or the subscription is open (then no event need ever come).
      await eventually(() => answer !== undefined || daemon.api.activeSubscriptions > before, `${transport}: ${op.query.slice(0, 300)}`);
      stop();
      await eventually(() => daemon.api.activeSubscriptions === before, 'the subscription released its slot');
      assert.equal(closed, undefined, `the socket was closed by ${op.query.slice(0, 500)}`);
      if (answer === undefined || answer.kind === 'complete') return;
      const describe = () =>
        `${op.query.slice(0, 2000)}\nvariables: ${JSON.stringify(op.variables).slice(0, 1000)}\nanswer: ${JSON.stringify(answer).slice(0, 2000)}`;
      if (answer.kind === 'error') {
        const refusal = refused as { status: number; body: string } | undefined;
        if (transport === 'sse' && refusal !== undefined) {
          // yoga answers a request error with HTTP 400, its body JSON or an event stream of results.
          assert.equal(refusal.status, 400, `SSE answered HTTP ${refusal.status}:\n${describe()}`);
          const results = refusal.body.trimStart().startsWith('{') ? [refusal.body] : sseData(refusal.body);
          assert.ok(results.length > 0, `an empty SSE refusal:\n${describe()}`);
          for (const result of results) checkResult(op, JSON.parse(result));
          return;
        }
        // graphql-ws sends validation errors as a list; anything else here is a transport failure.
        assert.ok(Array.isArray(answer.value), `transport error:\n${describe()}`);
        checkErrors(op, answer.value, describe);
      } else {
        checkResult(op, answer.value);
      }
    };
    await fc.assert(fc.asyncProperty(operations(schema, ['subscription', 'query'], context), run('ws')), {
      seed: SEED,
      numRuns: WS_RUNS,
      includeErrorInReport: true,
    });
    await fc.assert(fc.asyncProperty(operations(schema, ['subscription'], context), run('sse')), {
      seed: SEED + 1,
      numRuns: SSE_RUNS,
      includeErrorInReport: true,
    });
    t.diagnostic(`operations over the 1 MiB message limit, not sent over the socket: ${oversized}`);
    assertEveryField(seen, ['subscription', 'query']);

    await ws.dispose();
    await eventually(() => daemon.node.bus.listenerCount() === listenersBefore, 'every bus listener released');
    await genuineQueryAnswers(daemon);
  });
});
