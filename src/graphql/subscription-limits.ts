import type { ExecutionArgs, ExecutionResult, GraphQLError } from 'graphql';
import { createGraphQLError, isAsyncIterable, type Plugin } from 'graphql-yoga';
import { releaseWhenDone } from './async-iterators.ts';
import { ErrorCode } from './errors.ts';

/**
 * Caps on open subscriptions. Each one holds a bus listener, its event buffer and the transport's
 * per-operation state (~10 KB measured); without caps one local client opened half a million and
 * drove the node out of memory.
 */
export interface SubscriptionCaps {
  /** Per graphql-ws socket, and per client address over SSE (one HTTP response per subscription). */
  readonly perClient: number;
  /** For the whole API, both transports together. */
  readonly perNode: number;
}

/** Who a subscription is charged to: a graphql-ws socket (the object), or an SSE client's address. */
export type SubscriptionClient = object | string;

export type SlotDecision =
  { readonly ok: true; readonly release: () => void } | { readonly ok: false; readonly scope: 'client' | 'node'; readonly limit: number };

/** Counts open subscriptions per client and in total. */
export class SubscriptionLimiter {
  private total = 0;
  private readonly byClient = new Map<SubscriptionClient, number>();

  constructor(readonly caps: SubscriptionCaps) {}

  /** Open subscriptions, all clients together. */
  get active(): number {
    return this.total;
  }

  /** Clients with at least one open subscription. */
  get clients(): number {
    return this.byClient.size;
  }

  activeFor(client: SubscriptionClient): number {
    return this.byClient.get(client) ?? 0;
  }

  /** Takes a slot for `client`, or names the cap that is full. `release` is idempotent. */
  tryAcquire(client: SubscriptionClient): SlotDecision {
    const mine = this.activeFor(client);
    if (mine >= this.caps.perClient) return { ok: false, scope: 'client', limit: this.caps.perClient };
    if (this.total >= this.caps.perNode) return { ok: false, scope: 'node', limit: this.caps.perNode };
    this.byClient.set(client, mine + 1);
    this.total++;
    let released = false;
    return {
      ok: true,
      release: () => {
        if (released) return;
        released = true;
        this.total--;
        const left = this.activeFor(client) - 1;
        // Entries go away with their last subscription, so closed sockets leave nothing behind.
        if (left > 0) this.byClient.set(client, left);
        else this.byClient.delete(client);
      },
    };
  }
}

export function subscriptionLimitError(refusal: { scope: 'client' | 'node'; limit: number }): GraphQLError {
  const message =
    refusal.scope === 'client'
      ? `this client already has ${refusal.limit} subscriptions open (api.max_subscriptions_per_client); complete one first`
      : `the API already has ${refusal.limit} subscriptions open (api.max_subscriptions); try again later`;
  return createGraphQLError(message, {
    extensions: { code: ErrorCode.SUBSCRIPTION_LIMIT, scope: refusal.scope, limit: refusal.limit },
  });
}

/**
 * Envelop plugin charging every subscription (graphql-ws and SSE go through the same `subscribe`)
 * to its client. Past a cap the operation gets a SUBSCRIPTION_LIMIT error as its result and
 * nothing is set up, so the transport stays open and the client's other operations keep
 * working. The slot is released when the stream ends, fails or is cancelled, or at once when
 * `subscribe` returned no stream (a bad argument, for instance).
 */
export function useSubscriptionLimits<C extends Record<string, unknown>>(
  limiter: SubscriptionLimiter,
  clientOf: (context: C) => SubscriptionClient,
): Plugin<C> {
  return {
    onSubscribe({ subscribeFn, setSubscribeFn, args }) {
      const client = clientOf(args.contextValue);
      const limited = async (subscribeArgs: ExecutionArgs): Promise<AsyncGenerator<ExecutionResult> | ExecutionResult> => {
        const slot = limiter.tryAcquire(client);
        if (!slot.ok) return { errors: [subscriptionLimitError(slot)] };
        let result: AsyncIterable<ExecutionResult> | ExecutionResult;
        try {
          result = (await subscribeFn(subscribeArgs)) as AsyncIterable<ExecutionResult> | ExecutionResult;
        } catch (error) {
          slot.release();
          throw error;
        }
        if (!isAsyncIterable(result)) {
          slot.release();
          return result;
        }
        return releaseWhenDone(result, slot.release) as AsyncGenerator<ExecutionResult>;
      };
      setSubscribeFn(limited as typeof subscribeFn);
    },
  };
}
