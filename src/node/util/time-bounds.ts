/** Time bounds for work that waits on the network. */

/**
 * Rejects with `onTimeout()` if `work` has not settled within `ms`. With `unref`, the timer does
 * not keep the process alive (work a stop may abandon, such as a DHT lookup).
 */
export async function withDeadline<T>(work: Promise<T>, ms: number, onTimeout: () => Error, options: { unref?: boolean } = {}): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), ms);
    if (options.unref) timer.unref();
  });
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** Waits for `work` to settle, but at most `ms`; never rejects (shutdown paths must go on). */
export async function settleWithin(work: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([work.catch(() => {}), new Promise((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}
