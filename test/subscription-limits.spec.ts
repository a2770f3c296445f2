import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createClient as createSseClient } from 'graphql-sse';
import { type Client, createClient as createWsClient } from 'graphql-ws';
import WebSocket from 'ws';
import type { Daemon } from '../src/daemon.ts';
import { startTestDaemon, subscriptionActive } from './helpers/daemon.ts';
import { startDaemonProcess } from './helpers/daemon-process.ts';
import { randomPeer } from './helpers/peers.ts';

const EVENTS = 'subscription { events(types: ["peer.discovered"]) { type payload } }';

interface GraphQLErrorShape {
  readonly message: string;
  readonly extensions?: { code?: string; scope?: string; limit?: number };
}

/** Counts what a batch of subscriptions received; `reached` resolves once a condition on it holds. */
class Tally {
  readonly refusals: GraphQLErrorShape[] = [];
  readonly transportErrors: unknown[] = [];
  events = 0;
  private waiters: Array<() => boolean> = [];

  sink() {
    return {
      next: (result: { data?: unknown; errors?: readonly GraphQLErrorShape[] }) => {
        if (result.errors) this.refusals.push(...result.errors);
        else this.events++;
        this.check();
      },
      error: (error: unknown) => {
        if (Array.isArray(error)) this.refusals.push(...(error as GraphQLErrorShape[]));
        else this.transportErrors.push(error);
        this.check();
      },
      complete: () => {},
    };
  }

  reached(condition: () => boolean, what: string, timeoutMs = 60_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${what}: not reached within ${timeoutMs} ms`)), timeoutMs);
      const waiter = () => {
        if (!condition()) return false;
        clearTimeout(timer);
        resolve();
        return true;
      };
      if (!waiter()) this.waiters.push(waiter);
    });
  }

  private check() {
    this.waiters = this.waiters.filter((waiter) => !waiter());
  }
}

/** Resolves once `condition` holds, re-checked on every turn of the event loop (bounded). */
async function eventually(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`${what}: not reached within ${timeoutMs} ms`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

const wsUrl = (url: string) => url.replace(/^http/, 'ws');

function wsClient(t: { after(fn: () => unknown): void }, url: string): Client {
  const client = createWsClient({ url: wsUrl(url), webSocketImpl: WebSocket, retryAttempts: 0, lazy: true });
  t.after(() => client.dispose());
  return client;
}

function released(daemon: Daemon, listenersBefore: number): Promise<void> {
  return eventually(
    () => daemon.api.activeSubscriptions === 0 && daemon.node.bus.listenerCount() === listenersBefore,
    `subscriptions released (active ${daemon.api.activeSubscriptions}, listeners ${daemon.node.bus.listenerCount()} vs ${listenersBefore})`,
  );
}

describe('subscription caps', () => {
  it('refuses subscriptions past the per-socket cap with SUBSCRIPTION_LIMIT; the socket and the earlier ones keep working', async (t) => {
    const daemon = await startTestDaemon(t);
    const cap = daemon.node.config.api.max_subscriptions_per_client;
    const listenersBefore = daemon.node.bus.listenerCount();
    const client = wsClient(t, daemon.api.url);
    const tally = new Tally();
    const total = 5000;
    const unsubscribe = Array.from({ length: total }, () => client.subscribe({ query: EVENTS }, tally.sink()));

    await tally.reached(() => tally.refusals.length >= total - cap, 'refusals');
    assert.equal(tally.refusals.length, total - cap, 'exactly the subscriptions past the cap are refused');
    for (const refusal of tally.refusals) {
      assert.equal(refusal.extensions?.code, 'SUBSCRIPTION_LIMIT');
      assert.equal(refusal.extensions?.scope, 'client');
      assert.equal(refusal.extensions?.limit, cap);
    }
    assert.match(tally.refusals[0]?.message ?? '', /already has 100 subscriptions open \(api.max_subscriptions_per_client\)/);
    assert.deepEqual(tally.transportErrors, [], 'the socket was never closed');
    assert.equal(daemon.api.activeSubscriptions, cap);
    assert.equal(daemon.node.bus.listenerCount(), listenersBefore + cap, 'one bus listener per open subscription, none for refusals');

    daemon.node.knownPeers.record([randomPeer()]);
    await tally.reached(() => tally.events === cap, 'an event on every open subscription');

    const query = await client.iterate<{ node: { peerId: string } }>({ query: '{ node { peerId } }' }).next();
    assert.equal(query.value?.data?.node.peerId, daemon.node.peerId, 'the socket still serves operations');

    for (const stop of unsubscribe.slice(0, 10)) stop();
    await eventually(() => daemon.api.activeSubscriptions === cap - 10, 'completed subscriptions release their slots');
    const again = new Tally();
    client.subscribe({ query: EVENTS }, again.sink());
    await eventually(() => daemon.api.activeSubscriptions === cap - 9, 'a freed slot can be taken again');
    assert.equal(again.refusals.length, 0);

    await client.dispose();
    await released(daemon, listenersBefore);
  });

  it('caps the whole API across sockets and SSE, and per client address over SSE', async (t) => {
    const daemon = await startTestDaemon(t, { 'api.max_subscriptions_per_client': '3', 'api.max_subscriptions': '5' });
    const listenersBefore = daemon.node.bus.listenerCount();
    const first = wsClient(t, daemon.api.url);
    const second = wsClient(t, daemon.api.url);
    const a = new Tally();
    const b = new Tally();
    const stopA = Array.from({ length: 4 }, () => first.subscribe({ query: EVENTS }, a.sink()));
    await a.reached(() => a.refusals.length === 1, 'the fourth on one socket refused');
    assert.equal(a.refusals[0]?.extensions?.scope, 'client');
    Array.from({ length: 3 }, () => second.subscribe({ query: EVENTS }, b.sink()));
    await b.reached(() => b.refusals.length === 1, 'the sixth on the node refused');
    assert.equal(b.refusals[0]?.extensions?.code, 'SUBSCRIPTION_LIMIT');
    assert.equal(b.refusals[0]?.extensions?.scope, 'node');
    assert.equal(b.refusals[0]?.extensions?.limit, 5);
    assert.equal(daemon.api.activeSubscriptions, 5);

    // SSE counts against the same node cap.
    const sse = createSseClient({ url: daemon.api.url, retryAttempts: 0 });
    t.after(() => sse.dispose());
    const refusedOverSse = await sse.iterate({ query: EVENTS }).next();
    const sseErrors = (refusedOverSse.value as { errors?: GraphQLErrorShape[] } | undefined)?.errors;
    assert.equal(sseErrors?.[0]?.extensions?.code, 'SUBSCRIPTION_LIMIT');
    assert.equal(sseErrors?.[0]?.extensions?.scope, 'node');

    // The first socket leaves: its slots return, and SSE streams from one address stop at 3.
    for (const stop of stopA) stop();
    await first.dispose();
    await eventually(() => daemon.api.activeSubscriptions === 2, 'the first socket released its slots');
    const streams = Array.from({ length: 3 }, () => sse.iterate<{ events: { type: string } }>({ query: EVENTS }));
    const pending = streams.map((stream) => stream.next());
    await eventually(() => daemon.api.activeSubscriptions === 5, 'three SSE streams open');
    const fourth = await sse.iterate({ query: EVENTS }).next();
    const fourthErrors = (fourth.value as { errors?: GraphQLErrorShape[] } | undefined)?.errors;
    assert.equal(fourthErrors?.[0]?.extensions?.code, 'SUBSCRIPTION_LIMIT');
    assert.equal(fourthErrors?.[0]?.extensions?.scope, 'client', 'both caps are full; the client one is named first');
    daemon.node.knownPeers.record([randomPeer()]);
    for (const result of await Promise.all(pending)) assert.equal(result.value?.data?.events.type, 'peer.discovered');
    for (const stream of streams) await stream.return?.();
    await second.dispose();
    await released(daemon, listenersBefore);
  });

  it('charges SSE streams to the client address', async (t) => {
    const daemon = await startTestDaemon(t, { 'api.max_subscriptions_per_client': '2' });
    const sse = createSseClient({ url: daemon.api.url, retryAttempts: 0 });
    t.after(() => sse.dispose());
    const listenersBefore = daemon.node.bus.listenerCount();
    const streams = [sse.iterate({ query: EVENTS }), sse.iterate({ query: EVENTS })];
    const pending = streams.map((stream) => stream.next());
    await eventually(() => daemon.api.activeSubscriptions === 2, 'two SSE streams open');
    const third = await sse.iterate({ query: EVENTS }).next();
    const errors = (third.value as { errors?: GraphQLErrorShape[] } | undefined)?.errors;
    assert.equal(errors?.[0]?.extensions?.code, 'SUBSCRIPTION_LIMIT');
    assert.equal(errors?.[0]?.extensions?.scope, 'client');
    // A graphql-ws socket from the same address is a client of its own.
    const ws = wsClient(t, daemon.api.url);
    const overWs = new Tally();
    ws.subscribe({ query: EVENTS }, overWs.sink());
    await eventually(() => daemon.api.activeSubscriptions === 3, 'the WebSocket subscription is accepted');
    daemon.node.knownPeers.record([randomPeer()]);
    await Promise.all(pending);
    for (const stream of streams) await stream.return?.();
    await ws.dispose();
    await released(daemon, listenersBefore);
  });

  it('releases the bus listener of a cancelled filtered subscription at once, even when no event comes', async (t) => {
    const daemon = await startTestDaemon(t);
    const client = wsClient(t, daemon.api.url);
    const listenersBefore = daemon.node.bus.listenerCount();
    const changes = client.iterate({ query: `subscription { connectionStateChanged(peerId: "${'ab'.repeat(20)}") { to } }` });
    const first = changes.next();
    await subscriptionActive(daemon.node, listenersBefore);
    await changes.return?.();
    await first;
    await released(daemon, listenersBefore);

    const peers = client.iterate({ query: 'subscription { connectionStateChanged { to } }' });
    void peers.next();
    await subscriptionActive(daemon.node, listenersBefore);
    await client.dispose();
    await released(daemon, listenersBefore);
  });
});

describe('subscription memory (the daemon as its own process)', () => {
  it('keeps RSS bounded under 5 000 subscriptions on one socket, and under a client that never reads its answers', async (t) => {
    const daemon = await startDaemonProcess(t);
    // Warm the code paths first, so the baseline includes them.
    const warm = createWsClient({ url: wsUrl(daemon.url), webSocketImpl: WebSocket, retryAttempts: 0 });
    await warm.iterate({ query: '{ node { peerId } }' }).next();
    await warm.dispose();
    const baseline = daemon.rssMiB();

    const client = createWsClient({ url: wsUrl(daemon.url), webSocketImpl: WebSocket, retryAttempts: 0 });
    t.after(() => client.dispose());
    const tally = new Tally();
    const total = 5000;
    for (let i = 0; i < total; i++) client.subscribe({ query: EVENTS }, tally.sink());
    await tally.reached(() => tally.refusals.length >= total - 100, 'refusals');
    const withSubscriptions = daemon.rssMiB();
    await client.dispose();

    // A raw client that floods subscribe messages and never reads what comes back: 30 MB, more than
    // the loopback socket buffers hold, so a node that stops reading leaves some in our send buffer.
    const socket = new WebSocket(wsUrl(daemon.url), 'graphql-transport-ws');
    t.after(() => socket.terminate());
    await new Promise((resolve) => socket.once('open', resolve));
    socket.send(JSON.stringify({ type: 'connection_init' }));
    await new Promise((resolve) => socket.once('message', resolve));
    socket.pause();
    const padded = `${EVENTS} # ${'x'.repeat(1000)}`;
    for (let id = 0; id < 30_000; id++) {
      socket.send(JSON.stringify({ id: String(id), type: 'subscribe', payload: { query: padded } }));
    }
    // Wait until the node has read everything or stopped reading (our send buffer no longer moves).
    let peak = daemon.rssMiB();
    let unchanged = 0;
    let last = -1;
    for (let i = 0; i < 600 && socket.bufferedAmount > 0 && unchanged < 10; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      peak = Math.max(peak, daemon.rssMiB());
      unchanged = socket.bufferedAmount === last ? unchanged + 1 : 0;
      last = socket.bufferedAmount;
    }
    assert.ok(socket.bufferedAmount > 0, 'the node stopped reading a client that does not read its answers');
    t.diagnostic(
      `RSS: baseline ${baseline.toFixed(1)} MiB, with 5000 subscriptions ${withSubscriptions.toFixed(1)} MiB, flood ${peak.toFixed(1)} MiB, unread by the node ${(socket.bufferedAmount / 2 ** 20).toFixed(1)} MiB`,
    );
    // Measured before the caps: +49 MiB for 5 000 subscriptions; the flood was read whole.
    assert.ok(withSubscriptions - baseline < 40, `5 000 subscriptions took ${(withSubscriptions - baseline).toFixed(1)} MiB`);
    assert.ok(peak - baseline < 100, `the flood took ${(peak - baseline).toFixed(1)} MiB`);
  });
});
