/**
 * Iterator wrappers for subscriptions. They are plain iterator objects rather than async
 * generators on purpose: `return()` on a generator that is suspended in `await source.next()` is
 * queued until that next event arrives, so a cancelled subscription on a quiet event type would
 * keep its bus listener (and everything it holds) until then, possibly forever. These forward
 * `return()` to the source at once.
 */

/** Only the items of `source` that satisfy `keep`. */
export function filterAsyncIterator<T>(source: AsyncIterator<T>, keep: (item: T) => boolean): AsyncIterableIterator<T> {
  const iterator: AsyncIterableIterator<T> = {
    async next() {
      for (;;) {
        const result = await source.next();
        if (result.done || keep(result.value)) return result;
      }
    },
    return: (value?: unknown) => source.return?.(value) ?? Promise.resolve({ value: undefined, done: true }),
    throw: (error?: unknown) => source.throw?.(error) ?? Promise.reject(error),
    [Symbol.asyncIterator]: () => iterator,
  };
  return iterator;
}

/**
 * `source`, calling `release` exactly once when it ends for any reason: exhausted, failed, or
 * cancelled by the consumer (`return`/`throw`, which graphql-ws and yoga call when a client
 * completes the operation or goes away).
 */
export function releaseWhenDone<T>(source: AsyncIterable<T>, release: () => void): AsyncIterableIterator<T> {
  const inner = source[Symbol.asyncIterator]();
  let released = false;
  const releaseOnce = () => {
    if (released) return;
    released = true;
    release();
  };
  const iterator: AsyncIterableIterator<T> = {
    next: () =>
      inner.next().then(
        (result) => {
          if (result.done) releaseOnce();
          return result;
        },
        (error: unknown) => {
          releaseOnce();
          throw error;
        },
      ),
    return: (value?: unknown) => {
      releaseOnce();
      return inner.return?.(value) ?? Promise.resolve({ value: undefined, done: true });
    },
    throw: (error?: unknown) => {
      releaseOnce();
      return inner.throw?.(error) ?? Promise.reject(error);
    },
    [Symbol.asyncIterator]: () => iterator,
  };
  return iterator;
}
