import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createClient as createWsClient } from 'graphql-ws';
import WebSocket from 'ws';
import type { RemoteNode } from '../src/node/node.ts';
import type { SearchItem } from '../src/node/services/service-search.ts';
import { startTestDaemon, startTestNode } from './helpers/daemon.ts';
import { startDaemonProcess } from './helpers/daemon-process.ts';
import { gql } from './helpers/graphql.ts';
import { MessageChannel } from '../src/node/wire/channel.ts';
import { RemoteRefusedError } from '../src/node/wire/errors.ts';
import { type WireMessage, serviceSearchResultMessage } from '../src/node/wire/messages.ts';

type TestContext = { after(fn: () => unknown): void };

const address = (node: RemoteNode) => ({ host: '127.0.0.1', port: node.quicPort });

async function collect(items: AsyncIterable<SearchItem>): Promise<SearchItem[]> {
  const all: SearchItem[] = [];
  for await (const item of items) all.push(item);
  return all;
}

async function nodeWithEcho(t: TestContext, name: string, settings: Record<string, string> = {}, allowedPeers: string[] | null = null) {
  const node = await startTestNode(t, settings);
  await node.services.register({
    kind: 'STANDALONE',
    name,
    description: `Echo service ${name}`,
    executable: '/bin/echo',
    args: ['{{text}}'],
    parameters: [{ name: 'text', type: 'string', required: true }],
    allowedPeers,
  });
  return node;
}

const SEARCH = `subscription Search($query: String, $kind: ServiceKind, $peerIds: [PeerId!]) {
  serviceSearch(query: $query, kind: $kind, peerIds: $peerIds) {
    peerId
    services { id name kind description parameters { name type required } interfaces { stdout inputs } }
    error { code message }
    complete { peersAsked answered failed timedOut timedOutPeers durationMs }
  }
}`;

interface GqlItem {
  peerId: string | null;
  services: Array<{ name: string; kind: string; parameters: Array<{ name: string }> }>;
  error: { code: string } | null;
  complete: { peersAsked: number; answered: number; failed: number; timedOut: number; timedOutPeers: string[]; durationMs: number } | null;
}

describe('service search', () => {
  it('across 5 nodes streams each result through GraphQL and completes by the deadline despite a node that never answers', async (t) => {
    // A daemon in its own process, stopped (SIGSTOP) once connected: its connection stays, nothing answers.
    const silent = await startDaemonProcess(t);
    const searcher = await startTestDaemon(t, { 'services.search_deadline': '3' });
    const peers = await Promise.all([0, 1, 2, 3, 4].map((i) => nodeWithEcho(t, `echo-${i}`)));
    await Promise.all(peers.map((p) => searcher.node.connections.connect(address(p), p.peerId)));
    const searcherAddress = `127.0.0.1:${searcher.node.quicPort}`;
    const silentInfo = await gql(silent.url, 'mutation($a: String!, $p: PeerId!) { connectPeer(address: $a, peerId: $p) { peerId } }', {
      a: searcherAddress,
      p: searcher.node.peerId,
    });
    assert.equal(silentInfo.errors, undefined, JSON.stringify(silentInfo.errors));
    const silentPeerId = (await gql(silent.url, '{ node { peerId } }')).data?.node.peerId as string;
    assert.ok(searcher.node.connections.isConnected(silentPeerId));
    silent.child.kill('SIGSTOP');

    const client = createWsClient({ url: searcher.api.url.replace(/^http/, 'ws'), webSocketImpl: WebSocket, retryAttempts: 0 });
    t.after(() => client.dispose());
    const started = Date.now();
    const items: Array<{ at: number; item: GqlItem }> = [];
    for await (const result of client.iterate<{ serviceSearch: GqlItem }>({ query: SEARCH, variables: { query: 'ECHO' } })) {
      assert.equal(result.errors, undefined, JSON.stringify(result.errors));
      if (result.data) items.push({ at: Date.now() - started, item: result.data.serviceSearch });
    }
    const complete = items.at(-1)?.item.complete;
    assert.deepEqual(
      { ...complete, durationMs: 0 },
      { peersAsked: 6, answered: 5, failed: 0, timedOut: 1, timedOutPeers: [silentPeerId], durationMs: 0 },
      JSON.stringify(items),
    );
    const results = items.slice(0, -1);
    assert.deepEqual(results.map((r) => r.item.peerId).sort(), peers.map((p) => p.peerId).sort());
    for (const { item } of results) {
      const peer = peers.findIndex((p) => p.peerId === item.peerId);
      assert.deepEqual(
        item.services.map((s) => [s.name, s.kind, s.parameters.map((p) => p.name)]),
        [[`echo-${peer}`, 'STANDALONE', ['text']]],
      );
    }
    const completedAt = items.at(-1)?.at ?? Infinity;
    assert.ok(completedAt >= 2900 && completedAt < 4500, `completed after ${completedAt} ms (deadline 3000 ms)`);
    // Closed here rather than by the node's stop, which waits far longer on a peer that never acknowledges.
    await searcher.node.connections.disconnect(silentPeerId);
    // Streamed: each answer came as it arrived, not held back until the silent node's deadline.
    assert.ok(Math.max(...results.map((r) => r.at)) < completedAt - 1000, JSON.stringify(items.map((i) => i.at)));
  });

  it('shows an allow-listed service only to the peers listed; given peer ids are dialled and asked once', async (t) => {
    const [asker, allowed] = await Promise.all([startTestNode(t), startTestNode(t)]);
    const offering = await nodeWithEcho(t, 'private-echo', {}, [allowed.peerId]);
    await offering.services.register({ kind: 'STANDALONE', name: 'public-echo', executable: '/bin/echo' });
    await Promise.all([asker, allowed].map((n) => n.connections.connect(address(offering), offering.peerId)));

    const seenBy = async (node: RemoteNode) => {
      const items = await collect(node.serviceSearch.search('echo', null, [offering.peerId, offering.peerId]));
      assert.equal(items.length, 2, JSON.stringify(items));
      const [result, complete] = items;
      assert.equal(complete?.kind === 'complete' && complete.peersAsked, 1);
      assert.equal(result?.kind, 'result', JSON.stringify(result));
      return result?.kind === 'result' ? result.services.map((s) => s.name) : [];
    };
    assert.deepEqual(await seenBy(asker), ['public-echo']);
    assert.deepEqual(await seenBy(allowed), ['private-echo', 'public-echo']);
    // A kind filter applies on the answering side.
    const data = await collect(asker.serviceSearch.search('', 'DATA', [offering.peerId]));
    assert.deepEqual(data[0]?.kind === 'result' && data[0].services, []);
  });

  it('refuses a peer that searches too often with SEARCH_RATE_LIMITED', async (t) => {
    const offering = await nodeWithEcho(t, 'echo', { 'services.search_rate_limit': '2' });
    const [asker, other] = await Promise.all([startTestNode(t), startTestNode(t)]);
    await Promise.all([asker, other].map((n) => n.connections.connect(address(offering), offering.peerId)));
    const once = async (node: RemoteNode) => (await collect(node.serviceSearch.search('echo', null, [offering.peerId])))[0];
    assert.equal((await once(asker))?.kind, 'result');
    assert.equal((await once(asker))?.kind, 'result');
    const refused = await once(asker);
    assert.equal(refused?.kind === 'error' && refused.code, 'SEARCH_RATE_LIMITED', JSON.stringify(refused));
    // Per requesting peer: another peer is still answered.
    assert.equal((await once(other))?.kind, 'result');
    const text = (await offering.metrics.exposition?.text()) ?? '';
    assert.match(text, /^remote_network_service_searches_served_total\{outcome="answered"\} 3$/m);
    assert.match(text, /^remote_network_service_searches_served_total\{outcome="rate_limited"\} 1$/m);
    assert.match((await asker.metrics.exposition?.text()) ?? '', /^remote_network_service_search_peers_total\{outcome="failed"\} 1$/m);
  });

  it('answers malformed searches from a peer with PROTOCOL_MALFORMED and keeps serving it', async (t) => {
    const offering = await nodeWithEcho(t, 'echo');
    const asker = await startTestNode(t);
    await asker.connections.connect(address(offering), offering.peerId);
    const send = (message: Record<string, unknown>) =>
      asker.connections.withPeerStream(offering.peerId, async (stream) => {
        const channel = new MessageChannel(stream);
        // A hostile peer sends what the schema forbids.
        await channel.sendFinal(message as unknown as WireMessage);
        return channel.receive(serviceSearchResultMessage, 'service_search_result').then(
          (answer) => `answer ${answer.services.length}`,
          (error: unknown) => (error instanceof RemoteRefusedError ? error.remoteCode : String(error)),
        );
      });
    assert.equal(await send({ type: 'service_search', query: 'x'.repeat(101), kind: null }), 'PROTOCOL_MALFORMED');
    assert.equal(await send({ type: 'service_search', query: 'echo', kind: 'DOCKER' }), 'PROTOCOL_MALFORMED');
    // (A third protocol error would close the connection: MAX_PROTOCOL_ERRORS.)
    assert.equal(await send({ type: 'service_search', query: 'echo', kind: null }), 'answer 1');
  });

  it('completes at once with no peers, and refuses bad arguments with typed errors', async (t) => {
    const daemon = await startTestDaemon(t);
    const none = await collect(daemon.node.serviceSearch.search('', null, null));
    assert.deepEqual(none.length === 1 && none[0]?.kind === 'complete' && [none[0].peersAsked, none[0].timedOut], [0, 0]);
    // A given peer that is not connected is dialled; one nobody knows fails with the dialer's code.
    const unknown = 'ab'.repeat(20);
    const [failed, complete] = await collect(daemon.node.serviceSearch.search('', null, [unknown, daemon.node.peerId]));
    assert.equal(failed?.kind === 'error' && failed.peerId, unknown);
    assert.match(failed?.kind === 'error' ? failed.code : '', /^[A-Z_]+$/);
    assert.deepEqual(complete?.kind === 'complete' && [complete.peersAsked, complete.failed], [1, 1], 'this node itself is never asked');
    const client = createWsClient({ url: daemon.api.url.replace(/^http/, 'ws'), webSocketImpl: WebSocket, retryAttempts: 0 });
    t.after(() => client.dispose());
    const refused = await client.iterate({ query: SEARCH, variables: { query: 'x'.repeat(101) } }).next();
    assert.equal(refused.value?.errors?.[0]?.extensions?.code, 'SEARCH_INVALID', JSON.stringify(refused.value));
  });
});

describe('services GraphQL API', () => {
  it('registers, lists, reads and removes services with typed errors', async (t) => {
    const daemon = await startTestDaemon(t);
    const url = daemon.api.url;
    const register = `mutation($input: RegisterServiceInput!) {
      registerService(input: $input) { id name kind source allowedPeers ... on StandaloneService { executable args parameters { name type required default } interfaces { stdin stdout inputs } limits { wallTimeMs network } } }
    }`;
    const input = {
      kind: 'STANDALONE',
      name: 'echo',
      executable: '/bin/echo',
      args: ['{{text}}'],
      parameters: [{ name: 'text', type: 'STRING', required: false, default: 'hi' }],
      limits: { wallTimeMs: 1000 },
    };
    const created = await gql(url, register, { input });
    assert.equal(created.errors, undefined, JSON.stringify(created.errors));
    const service = created.data?.registerService;
    assert.equal(service.source, 'API');
    assert.equal(service.allowedPeers, null);
    assert.deepEqual(service.parameters, [{ name: 'text', type: 'STRING', required: false, default: 'hi' }]);
    assert.deepEqual(service.interfaces, { stdin: false, stdout: true, inputs: [] });
    assert.deepEqual(service.limits, { wallTimeMs: 1000, network: null });

    const taken = await gql(url, register, { input });
    assert.equal(taken.errors?.[0]?.extensions?.code, 'SERVICE_NAME_TAKEN');
    const missing = await gql(url, register, { input: { ...input, name: 'other', executable: '/nonexistent' } });
    assert.equal(missing.errors?.[0]?.extensions?.code, 'SERVICE_EXECUTABLE_MISSING');
    const invalid = await gql(url, register, { input: { ...input, name: 'other', args: ['{{undeclared}}'] } });
    assert.equal(invalid.errors?.[0]?.extensions?.code, 'SERVICE_INVALID');
    assert.match(invalid.errors?.[0]?.message ?? '', /undeclared/);
    const noExecutable = await gql(url, register, { input: { kind: 'STANDALONE', name: 'other' } });
    assert.equal(noExecutable.errors?.[0]?.extensions?.code, 'SERVICE_INVALID');

    const listed = await gql(url, '{ services { id name kind } byKind: services(kind: DATA) { id } }');
    assert.deepEqual(listed.data?.services, [{ id: service.id, name: 'echo', kind: 'STANDALONE' }]);
    assert.deepEqual(listed.data?.byKind, []);
    const one = await gql(url, 'query($id: ID!) { service(id: $id) { name } }', { id: service.id });
    assert.deepEqual(one.data?.service, { name: 'echo' });
    const removed = await gql(url, 'mutation($id: ID!) { removeService(id: $id) }', { id: service.id });
    assert.equal(removed.data?.removeService, true);
    const gone = await gql(url, 'query($id: ID!) { service(id: $id) { name } }', { id: service.id });
    assert.equal(gone.data?.service, null);
  });
});
