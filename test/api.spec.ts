import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { describe, it } from 'node:test';
import { createClient as createWsClient } from 'graphql-ws';
import { createClient as createSseClient } from 'graphql-sse';
import WebSocket from 'ws';
import type { Daemon } from '../src/daemon.ts';
import { startTestDaemon, subscriptionActive } from './helpers/daemon.ts';
import { type GraphQLResponse, gql } from './helpers/graphql.ts';
import { peerIdOf, randomPeer } from './helpers/peers.ts';

const TOKEN = 'test-token-0123456789abcdef';

const peer = randomPeer;

/** POST with headers that fetch refuses to set (Host). */
function rawPost(url: string, query: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify({ query });
    const request = httpRequest(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    request.on('error', reject);
    request.end(body);
  });
}

const wsUrl = (daemon: Daemon) => daemon.api.url.replace(/^http/, 'ws');

describe('GraphQL API over HTTP', () => {
  it('answers node { ... } with this node identity', async (t) => {
    const daemon = await startTestDaemon(t);
    const { status, data } = await gql(
      daemon.api.url,
      '{ node { peerId publicKey dhtNodeId nodeType isRelay version startedAt uptimeSeconds } }',
    );
    assert.equal(status, 200);
    const node = data?.node;
    assert.equal(node.peerId, daemon.node.peerId);
    assert.equal(node.publicKey, Buffer.from(daemon.node.identity.publicKey).toString('hex'));
    assert.match(node.publicKey, /^[0-9a-f]{64}$/);
    assert.equal(node.peerId, createHash('sha1').update(Buffer.from(node.publicKey, 'hex')).digest('hex'));
    assert.match(node.dhtNodeId, /^[0-9a-f]{40}$/);
    assert.equal(node.nodeType, 'PRIVATE');
    assert.equal(node.isRelay, false);
    assert.equal(node.version, daemon.node.version);
    assert.ok(node.uptimeSeconds >= 0);
    assert.equal(new Date(node.startedAt).getTime(), daemon.node.startedAt.getTime());
  });

  it('pages knownPeers with cursors, filters and totalCount', async (t) => {
    const daemon = await startTestDaemon(t);
    const inputs = Array.from({ length: 12 }, (_, i) => peer({ isRelay: i < 3 }));
    daemon.node.knownPeers.record(inputs);
    const query = `query($first: Int, $after: String, $isRelay: Boolean) {
      knownPeers(first: $first, after: $after, isRelay: $isRelay) {
        totalCount pageInfo { hasNextPage endCursor }
        edges { cursor node { peerId publicKey isRelay source topic firstSeen lastSeen dhtNodeId } }
      } }`;
    const ids: string[] = [];
    let after: string | null = null;
    let pages = 0;
    for (;;) {
      const response: GraphQLResponse = await gql(daemon.api.url, query, { first: 5, after });
      assert.equal(response.errors, undefined);
      const conn = response.data?.knownPeers as {
        totalCount: number;
        pageInfo: { hasNextPage: boolean; endCursor: string };
        edges: Array<{ node: { peerId: string } }>;
      };
      assert.equal(conn.totalCount, 12);
      ids.push(...conn.edges.map((e) => e.node.peerId));
      pages++;
      if (!conn.pageInfo.hasNextPage) break;
      after = conn.pageInfo.endCursor;
    }
    assert.equal(pages, 3);
    assert.deepEqual([...ids].sort(), inputs.map((p) => peerIdOf(p.publicKey)).sort());
    const relays = await gql(daemon.api.url, query, { first: 100, isRelay: true });
    assert.equal(relays.data?.knownPeers.totalCount, 3);
    assert.ok(relays.data?.knownPeers.edges.every((e: { node: { isRelay: boolean } }) => e.node.isRelay));
  });

  it('refuses bad pagination arguments with typed errors', async (t) => {
    const daemon = await startTestDaemon(t);
    for (const [args, pattern] of [
      ['first: 101', /first must be between 0 and 100/],
      ['after: "bm9wZQ"', /after is not a cursor/],
      ['last: 2', /pages forward only/],
    ] as const) {
      const { errors } = await gql(daemon.api.url, `{ knownPeers(${args}) { totalCount } }`);
      assert.equal(errors?.[0]?.extensions?.code, 'BAD_USER_INPUT', args);
      assert.match(errors?.[0]?.message ?? '', pattern);
    }
  });

  it('loads knownPeer through one batched DataLoader call', async (t) => {
    const daemon = await startTestDaemon(t);
    const [a, b] = [peer(), peer()];
    daemon.node.knownPeers.record([a, b]);
    const knownPeers = daemon.node.knownPeers;
    const calls: string[][] = [];
    const original = knownPeers.getMany.bind(knownPeers);
    knownPeers.getMany = (ids) => {
      calls.push([...ids]);
      return original(ids);
    };
    const [idA, idB] = [peerIdOf(a.publicKey), peerIdOf(b.publicKey)];
    const missing = 'f'.repeat(40);
    const { data, errors } = await gql(
      daemon.api.url,
      `{ a: knownPeer(peerId: "${idA}") { peerId } b: knownPeer(peerId: "${idB}") { peerId }
         c: knownPeer(peerId: "${idA}") { isRelay } d: knownPeer(peerId: "${missing}") { peerId } }`,
    );
    assert.equal(errors, undefined);
    assert.equal(data?.a.peerId, idA);
    assert.equal(data?.b.peerId, idB);
    assert.equal(data?.d, null, 'an unknown peer is null, not an error');
    assert.equal(calls.length, 1, 'one batched read');
    assert.deepEqual(new Set(calls[0]), new Set([idA, idB, missing]));
    const bad = await gql(daemon.api.url, '{ knownPeer(peerId: "xyz") { peerId } }');
    assert.equal(bad.errors?.[0]?.extensions?.code, 'BAD_USER_INPUT');
  });

  it('checks every peer id with the PeerId scalar: any case in, lower case out, malformed refused before the resolvers', async (t) => {
    const daemon = await startTestDaemon(t);
    const known = peer();
    daemon.node.knownPeers.record([known]);
    const id = peerIdOf(known.publicKey);
    const query = 'query($id: PeerId!) { knownPeer(peerId: $id) { peerId } }';
    const upper = await gql(daemon.api.url, query, { id: id.toUpperCase() });
    assert.equal(upper.errors, undefined);
    assert.equal(upper.data?.knownPeer.peerId, id, 'an upper-case peer id finds the peer and comes back in lower case');
    for (const bad of ['xyz', `${id}0`, id.replace(/^./, 'g')]) {
      const literal = await gql(daemon.api.url, `{ knownPeer(peerId: "${bad}") { peerId } }`);
      assert.equal(literal.errors?.[0]?.extensions?.code, 'BAD_USER_INPUT', bad);
      assert.match(literal.errors?.[0]?.message ?? '', /PeerId must be 40 hexadecimal characters/);
      assert.deepEqual((literal.errors?.[0] as { locations?: unknown }).locations, [{ line: 1, column: 21 }], 'points at the value');
      assert.equal(literal.data, undefined, 'refused before any resolver ran');
      const variable = await gql(daemon.api.url, query, { id: bad });
      assert.equal(variable.errors?.[0]?.extensions?.code, 'BAD_USER_INPUT', bad);
      assert.equal(variable.errors?.[0]?.extensions?.variable, 'id');
      assert.match(variable.errors?.[0]?.message ?? '', /PeerId must be 40 hexadecimal characters/);
    }
    const short = await gql(daemon.api.url, `mutation { disconnectPeer(peerId: "${'0'.repeat(39)}") }`);
    assert.equal(short.errors?.[0]?.extensions?.code, 'BAD_USER_INPUT');
    const self = await gql(daemon.api.url, 'mutation($id: PeerId!) { holePunch(peerId: $id) { direct } }', { id: daemon.node.peerId });
    assert.equal(self.errors?.[0]?.extensions?.code, 'BAD_USER_INPUT');
    assert.equal(self.errors?.[0]?.extensions?.argument, 'peerId');
    assert.match(self.errors?.[0]?.message ?? '', /that is this node/);
  });

  it('masks unexpected errors and keeps internals out of responses', async (t) => {
    const daemon = await startTestDaemon(t);
    daemon.node.knownPeers.page = () => {
      throw new Error('SQLITE_CORRUPT at /secret/path/remote-network.db');
    };
    const { errors, data } = await gql(daemon.api.url, '{ knownPeers { totalCount } }');
    assert.equal(data, null);
    assert.equal(errors?.[0]?.message, 'Unexpected error.');
    assert.equal(errors?.[0]?.extensions?.code, 'INTERNAL_SERVER_ERROR');
    assert.ok(!JSON.stringify(errors).includes('secret'));
  });

  it('enforces depth, alias and cost limits', async (t) => {
    const daemon = await startTestDaemon(t, { 'api.max_depth': '3', 'api.max_cost': '40' });
    const deep = await gql(daemon.api.url, '{ knownPeers { edges { node { peerId } } } }');
    assert.match(deep.errors?.[0]?.message ?? '', /^Query depth limit of 3 exceeded/);
    assert.equal(deep.errors?.[0]?.extensions?.code, 'QUERY_LIMIT_EXCEEDED');
    assert.equal(deep.data, undefined, 'not executed');
    const aliases = Array.from({ length: 16 }, (_, i) => `a${i}: node { peerId }`).join(' ');
    const wide = await gql(daemon.api.url, `{ ${aliases} }`);
    assert.match(wide.errors?.[0]?.message ?? '', /Aliases limit of 15 exceeded/);
    assert.equal(wide.errors?.[0]?.extensions?.code, 'QUERY_LIMIT_EXCEEDED');
    const costly = Array.from({ length: 10 }, (_, i) => `n${i}: node { peerId publicKey dhtNodeId version }`).join(' ');
    const expensive = await gql(daemon.api.url, `{ ${costly} }`);
    assert.match(expensive.errors?.[0]?.message ?? '', /Query Cost limit of 40 exceeded/);
    assert.equal(expensive.errors?.[0]?.extensions?.code, 'QUERY_LIMIT_EXCEEDED');
    const fine = await gql(daemon.api.url, '{ node { peerId } }');
    assert.equal(fine.errors, undefined);

    // The same limits hold over graphql-ws, which runs the same envelop pipeline.
    const client = createWsClient({ url: wsUrl(daemon), webSocketImpl: WebSocket, retryAttempts: 0 });
    t.after(() => client.dispose());
    const refused = await client
      .iterate({ query: '{ knownPeers { edges { node { peerId } } } }' })
      .next()
      .then(
        () => undefined,
        (errors: unknown) => errors as Array<{ message: string; extensions?: { code?: string } }>,
      );
    assert.equal(refused?.[0]?.extensions?.code, 'QUERY_LIMIT_EXCEEDED');
  });

  it('refuses foreign Host names (DNS rebinding) and foreign Origins, allows configured ones', async (t) => {
    const daemon = await startTestDaemon(t, { 'api.allowed_origins': 'https://admin.example' });
    const rebinding = await rawPost(daemon.api.url, '{ node { peerId } }', { host: 'attacker.example:8080' });
    assert.equal(rebinding.status, 403);
    assert.equal(JSON.parse(rebinding.body).errors[0].extensions.code, 'FORBIDDEN');
    const loopbackName = await rawPost(daemon.api.url, '{ node { peerId } }', { host: `localhost:${daemon.api.port}` });
    assert.equal(loopbackName.status, 200);
    const foreign = await gql(daemon.api.url, '{ node { peerId } }', {}, { origin: 'https://evil.example' });
    assert.equal(foreign.status, 403);
    const allowed = await fetch(daemon.api.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', origin: 'https://admin.example' },
      body: JSON.stringify({ query: '{ node { peerId } }' }),
    });
    assert.equal(allowed.status, 200);
    assert.equal(allowed.headers.get('access-control-allow-origin'), 'https://admin.example');
  });

  it('requires the bearer token when one is configured', async (t) => {
    const daemon = await startTestDaemon(t, { 'api.token': TOKEN });
    const none = await gql(daemon.api.url, '{ node { peerId } }');
    assert.equal(none.status, 401);
    assert.equal(none.errors?.[0]?.extensions?.code, 'UNAUTHENTICATED');
    const wrong = await gql(daemon.api.url, '{ node { peerId } }', {}, { authorization: `Bearer ${TOKEN}x` });
    assert.equal(wrong.status, 401);
    const right = await gql(daemon.api.url, '{ node { peerId } }', {}, { authorization: `Bearer ${TOKEN}` });
    assert.equal(right.status, 200);
    assert.equal(right.data?.node.peerId, daemon.node.peerId);
  });

  it('refuses oversized request bodies', async (t) => {
    const daemon = await startTestDaemon(t);
    const response = await fetch(daemon.api.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: `{ node { peerId } } # ${'x'.repeat(1024 * 1024)}` }),
    });
    assert.equal(response.status, 413);
  });
});

describe('GraphQL subscriptions', () => {
  it('streams bus events over graphql-ws with a real client', async (t) => {
    const daemon = await startTestDaemon(t);
    const client = createWsClient({ url: wsUrl(daemon), webSocketImpl: WebSocket, retryAttempts: 0 });
    t.after(() => client.dispose());
    const before = daemon.node.bus.listenerCount();
    const events = client.iterate<{ events: { type: string; seq: number; payload: { peerId: string } } }>({
      query: 'subscription { events(types: ["peer.discovered"]) { type seq at payload } }',
    });
    const first = events.next();
    await subscriptionActive(daemon.node, before);
    const input = peer();
    daemon.node.bus.emit('node.stopping', { peerId: 'filtered-out', reason: 'not subscribed to this type' });
    daemon.node.knownPeers.record([input]);
    const { value } = await first;
    assert.equal(value?.data?.events.type, 'peer.discovered');
    assert.equal(value?.data?.events.payload.peerId, peerIdOf(input.publicKey));
    await events.return?.();
  });

  it('answers an unknown event type with a typed error and keeps the socket usable', async (t) => {
    const daemon = await startTestDaemon(t);
    const client = createWsClient({ url: wsUrl(daemon), webSocketImpl: WebSocket, retryAttempts: 0 });
    t.after(() => client.dispose());
    const bad = client.iterate({ query: 'subscription { events(types: ["no.such.event"]) { type } }' });
    const result = await bad.next();
    const errors = (result.value as { errors?: Array<{ message: string; extensions?: { code?: string } }> })?.errors;
    assert.equal(errors?.[0]?.extensions?.code, 'BAD_USER_INPUT');
    assert.match(errors?.[0]?.message ?? '', /unknown event type\(s\): no.such.event/);
    const syntax = await client
      .iterate({ query: 'subscription { events(' })
      .next()
      .catch((e: unknown) => e);
    assert.ok(Array.isArray(syntax), 'a bad document is answered with errors, not a closed socket');
    assert.match((syntax as Array<{ message: string }>)[0]?.message ?? '', /Syntax Error/);
    const query = await client.iterate<{ node: { peerId: string } }>({ query: '{ node { peerId } }' }).next();
    assert.equal(query.value?.data?.node.peerId, daemon.node.peerId, 'the socket still serves operations');
  });

  it('streams bus events over SSE with a real client', async (t) => {
    const daemon = await startTestDaemon(t);
    const client = createSseClient({ url: daemon.api.url, retryAttempts: 0 });
    t.after(() => client.dispose());
    const before = daemon.node.bus.listenerCount();
    const events = client.iterate<{ events: { type: string; payload: { peerId: string } } }>({
      query: 'subscription { events(types: ["peer.discovered"]) { type payload } }',
    });
    const first = events.next();
    await subscriptionActive(daemon.node, before);
    const input = peer();
    daemon.node.knownPeers.record([input]);
    const { value } = await first;
    assert.equal(value?.data?.events.payload.peerId, peerIdOf(input.publicKey));
    await events.return?.();
  });

  it('requires the token in connectionParams over graphql-ws', async (t) => {
    const daemon = await startTestDaemon(t, { 'api.token': TOKEN });
    const refused = createWsClient({
      url: wsUrl(daemon),
      webSocketImpl: WebSocket,
      retryAttempts: 0,
      lazy: false,
      onNonLazyError: () => {}, // the refusal is what this test expects
    });
    t.after(() => refused.dispose());
    const closed = await new Promise<{ code: number }>((resolve) => refused.on('closed', (e) => resolve(e as { code: number })));
    assert.equal(closed.code, 4403, 'Forbidden');

    const client = createWsClient({
      url: wsUrl(daemon),
      webSocketImpl: WebSocket,
      retryAttempts: 0,
      connectionParams: { token: TOKEN },
    });
    t.after(() => client.dispose());
    const result = await client.iterate<{ node: { peerId: string } }>({ query: '{ node { peerId } }' }).next();
    assert.equal(result.value?.data?.node.peerId, daemon.node.peerId);
  });

  it('refuses a WebSocket upgrade from a foreign Origin', async (t) => {
    const daemon = await startTestDaemon(t);
    const socket = new WebSocket(wsUrl(daemon), 'graphql-transport-ws', { origin: 'https://evil.example' });
    const status = await new Promise<number>((resolve, reject) => {
      socket.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      socket.on('open', () => reject(new Error('upgrade should have been refused')));
    });
    assert.equal(status, 403);
  });
});
