import { RemoteNetworkError } from '../base/errors.ts';
import type { Counter, Metrics } from '../metrics/metrics.ts';
import { NoopMetrics } from '../metrics/noop-metrics.ts';

/** One published event: its type, payload, time and a per-bus sequence number (gaps are visible). */
export interface BusEvent<M, K extends keyof M = keyof M> {
  readonly type: K;
  readonly payload: M[K];
  readonly at: Date;
  readonly seq: number;
}

export type AnyBusEvent<M> = { [K in keyof M]: BusEvent<M, K> }[keyof M];

/** A subscriber fell behind by more than its buffer; its stream ends rather than skipping events. */
export class SubscriberOverflowError extends RemoteNetworkError {
  readonly code = 'SUBSCRIPTION_OVERFLOW';

  constructor(readonly limit: number) {
    super(`subscriber fell more than ${limit} events behind; the stream was closed so that no event is silently lost`);
  }
}

export interface SubscribeOptions<M> {
  readonly types?: ReadonlySet<keyof M> | undefined;
  /** Events buffered for a slow consumer before the stream fails with SubscriberOverflowError. */
  readonly bufferLimit?: number;
  readonly signal?: AbortSignal;
}

export const DEFAULT_SUBSCRIBER_BUFFER = 1024;

type Handler<M> = (event: AnyBusEvent<M>) => void;

/**
 * The node's single, typed event bus. Emitting is synchronous and a throwing listener is reported
 * (never propagated), so a broken consumer cannot break the component that emits.
 */
export class EventBus<M extends object> {
  private seq = 0;
  private readonly byType = new Map<keyof M, Set<Handler<M>>>();
  private readonly any = new Set<Handler<M>>();
  /** Streams from `subscribe` still open. */
  private streams = 0;
  private readonly overflows: Counter;

  constructor(
    private readonly onListenerError: (error: unknown, type: keyof M) => void = () => {},
    metrics: Metrics = new NoopMetrics(),
  ) {
    this.overflows = busMetrics(metrics, this);
  }

  /** Streams opened by `subscribe` and not yet ended (API subscriptions, for one). */
  get streamCount(): number {
    return this.streams;
  }

  /** Events published so far (the last sequence number). */
  get published(): number {
    return this.seq;
  }

  on<K extends keyof M>(type: K, handler: (event: BusEvent<M, K>) => void): () => void {
    let set = this.byType.get(type);
    if (!set) {
      set = new Set();
      this.byType.set(type, set);
    }
    const h = handler as unknown as Handler<M>;
    set.add(h);
    return () => set.delete(h);
  }

  onAny(handler: Handler<M>): () => void {
    this.any.add(handler);
    return () => this.any.delete(handler);
  }

  /** Resolves with the first event of `type` that satisfies `predicate` (tests wait on this). */
  once<K extends keyof M>(
    type: K,
    predicate: (event: BusEvent<M, K>) => boolean = () => true,
    signal?: AbortSignal,
  ): Promise<BusEvent<M, K>> {
    return new Promise((resolve, reject) => {
      const off = this.on(type, (event) => {
        if (!predicate(event)) return;
        off();
        resolve(event);
      });
      signal?.addEventListener('abort', () => {
        off();
        reject(signal.reason);
      });
    });
  }

  emit<K extends keyof M>(type: K, payload: M[K]): BusEvent<M, K> {
    const event: BusEvent<M, K> = { type, payload, at: new Date(), seq: ++this.seq };
    for (const handler of [...(this.byType.get(type) ?? []), ...this.any]) {
      try {
        handler(event);
      } catch (error) {
        this.onListenerError(error, type);
      }
    }
    return event;
  }

  listenerCount(): number {
    let n = this.any.size;
    for (const set of this.byType.values()) n += set.size;
    return n;
  }

  /**
   * Streams events (optionally only some types) into an async iterator with a bounded buffer.
   * The listener is removed when the consumer returns, the signal aborts or the buffer overflows.
   */
  subscribe(options: SubscribeOptions<M> = {}): AsyncIterableIterator<AnyBusEvent<M>> {
    const limit = options.bufferLimit ?? DEFAULT_SUBSCRIBER_BUFFER;
    const queue: AnyBusEvent<M>[] = [];
    let waiting: ((result: IteratorResult<AnyBusEvent<M>>) => void) | undefined;
    let failure: SubscriberOverflowError | undefined;
    let done = false;
    this.streams += 1;
    let counted = true;
    const uncount = () => {
      if (counted) this.streams -= 1;
      counted = false;
    };

    const finish = () => {
      done = true;
      uncount();
      off();
      waiting?.({ value: undefined, done: true });
      waiting = undefined;
    };
    const off = this.onAny((event) => {
      if (done || (options.types && !options.types.has(event.type))) return;
      if (waiting) {
        const resolve = waiting;
        waiting = undefined;
        resolve({ value: event, done: false });
        return;
      }
      if (queue.length >= limit) {
        failure = new SubscriberOverflowError(limit);
        this.overflows.inc();
        done = true;
        uncount();
        off();
        return;
      }
      queue.push(event);
    });
    options.signal?.addEventListener('abort', finish, { once: true });

    const iterator: AsyncIterableIterator<AnyBusEvent<M>> = {
      next: () => {
        const event = queue.shift();
        if (event) return Promise.resolve({ value: event, done: false });
        if (failure !== undefined) {
          const error = failure;
          failure = undefined;
          return Promise.reject(error);
        }
        if (done) return Promise.resolve({ value: undefined, done: true });
        // Overflow only happens while nobody waits (a waiting consumer takes events directly).
        return new Promise((resolve) => {
          waiting = resolve;
        });
      },
      return: () => {
        queue.length = 0;
        finish();
        return Promise.resolve({ value: undefined, done: true });
      },
      throw: (error?: unknown) => {
        queue.length = 0;
        finish();
        return Promise.reject(error);
      },
      [Symbol.asyncIterator]() {
        return iterator;
      },
    };
    return iterator;
  }
}

/** The bus's metrics: listeners and streams are read at scrape time; overflows are counted here. */
function busMetrics<M extends object>(metrics: Metrics, bus: EventBus<M>): Counter {
  metrics.observedGauge({
    name: 'remote_network_events_subscribers',
    help: "Listeners on the event bus, by kind (handler: a component or test listening; stream: an open subscription such as the API's).",
    labelNames: ['kind'],
    observe: (record) => {
      const streams = bus.streamCount;
      record({ kind: 'stream' }, streams);
      // Each stream listens through one `onAny` handler: counted once, as a stream.
      record({ kind: 'handler' }, bus.listenerCount() - streams);
    },
  });
  metrics.observedCounter({
    name: 'remote_network_events_published_total',
    help: "Events published on the node's event bus.",
    observe: (record) => record(bus.published),
  });
  return metrics.counter({
    name: 'remote_network_events_subscriber_overflows_total',
    help: 'Subscription streams closed because their consumer fell more than its buffer behind (SUBSCRIPTION_OVERFLOW).',
  });
}
