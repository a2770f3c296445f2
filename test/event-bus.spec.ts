import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EventBus, SubscriberOverflowError } from '../src/node/events/bus.ts';
import { NODE_EVENT_TYPES, type NodeEventMap } from '../src/node/events/types.ts';
import { setBounded } from '../src/node/util/bounded-map.ts';

const discovered = (peerId: string) =>
  ({ peerId, topic: 't', isRelay: false, source: 'peer_exchange', verified: false, via: null }) as const;

describe('event bus', () => {
  it('declares the seed event types', () => {
    for (const type of [
      'peer.discovered',
      'connection.state.changed',
      'relay.session.registered',
      'relay.session.expired',
      'relay.session.closed',
      'job.status.changed',
      'job.output.ready',
      'workflow.started',
      'workflow.completed',
      'workflow.failed',
      'docker.pull.progress',
      'docker.build.progress',
      'docker.execution.log',
    ]) {
      assert.ok((NODE_EVENT_TYPES as readonly string[]).includes(type), type);
    }
  });

  it('delivers typed payloads with increasing sequence numbers', () => {
    const bus = new EventBus<NodeEventMap>();
    const seen: Array<[string, number]> = [];
    bus.on('peer.discovered', (e) => seen.push([e.payload.peerId, e.seq]));
    bus.emit('peer.discovered', discovered('a'));
    bus.emit('node.stopping', { peerId: 'x', reason: 'r' });
    bus.emit('peer.discovered', discovered('b'));
    assert.deepEqual(seen, [
      ['a', 1],
      ['b', 3],
    ]);
  });

  it('isolates a throwing listener from the emitter and other listeners', () => {
    const errors: unknown[] = [];
    const bus = new EventBus<NodeEventMap>((error) => errors.push(error));
    let delivered = 0;
    bus.on('peer.discovered', () => {
      throw new Error('broken consumer');
    });
    bus.on('peer.discovered', () => delivered++);
    assert.doesNotThrow(() => bus.emit('peer.discovered', discovered('a')));
    assert.equal(delivered, 1);
    assert.equal(errors.length, 1);
  });

  it('streams filtered events to a subscriber and removes it on return', async () => {
    const bus = new EventBus<NodeEventMap>();
    const stream = bus.subscribe({ types: new Set(['peer.discovered'] as const) });
    bus.emit('node.stopping', { peerId: 'x', reason: 'r' });
    bus.emit('peer.discovered', discovered('a'));
    const first = await stream.next();
    assert.equal(first.done, false);
    assert.equal(first.value?.type, 'peer.discovered');
    const pending = stream.next();
    bus.emit('peer.discovered', discovered('b'));
    assert.equal((await pending).value?.payload.peerId, 'b');
    await stream.return?.();
    assert.equal(bus.listenerCount(), 0);
    assert.equal((await stream.next()).done, true);
  });

  it('ends a subscriber that falls too far behind with a typed error instead of dropping events', async () => {
    const bus = new EventBus<NodeEventMap>();
    const stream = bus.subscribe({ bufferLimit: 3 });
    for (let i = 0; i < 5; i++) bus.emit('peer.discovered', discovered(String(i)));
    const received: string[] = [];
    await assert.rejects(
      (async () => {
        for await (const event of stream) received.push((event.payload as { peerId: string }).peerId);
      })(),
      SubscriberOverflowError,
    );
    assert.deepEqual(received, ['0', '1', '2'], 'everything buffered is delivered before the error');
    assert.equal(bus.listenerCount(), 0);
  });

  it('resolves once() on the first matching event', async () => {
    const bus = new EventBus<NodeEventMap>();
    const waiting = bus.once('peer.discovered', (e) => e.payload.peerId === 'b');
    bus.emit('peer.discovered', discovered('a'));
    bus.emit('peer.discovered', discovered('b'));
    assert.equal((await waiting).payload.peerId, 'b');
    assert.equal(bus.listenerCount(), 0);
  });
});

describe('setBounded', () => {
  it('keeps the newest entries within the limit, refreshing a re-set key', () => {
    const map = new Map<string, number>();
    for (const [i, key] of ['a', 'b', 'c'].entries()) setBounded(map, key, i, 3);
    setBounded(map, 'a', 9, 3); // a becomes the newest
    setBounded(map, 'd', 4, 3); // b, now the oldest, goes
    assert.deepEqual([...map.keys()], ['c', 'a', 'd']);
    assert.equal(map.get('a'), 9);
  });
});
