import type { Component } from '../base/component.ts';
import type { Logger } from '../base/logger.ts';

/** Starts `components` in order; when one fails, those already started are stopped (in reverse) and the failure thrown. */
export async function startInOrder(components: readonly Component[], logger: Logger): Promise<void> {
  const started: Component[] = [];
  try {
    for (const component of components) {
      await component.start?.();
      started.push(component);
    }
  } catch (error) {
    await stopInReverse(started, logger);
    throw error;
  }
}

/** Stops `components` last first; one failing is logged and the rest still stop (no socket or file left open). */
export async function stopInReverse(components: readonly Component[], logger: Logger): Promise<void> {
  for (const component of [...components].reverse()) {
    const started = performance.now();
    try {
      await component.stop?.();
      logger.debug({ component: component.name, ms: Math.round(performance.now() - started) }, 'component stopped');
    } catch (error) {
      logger.error({ err: error, component: component.name }, 'component failed to stop');
    }
  }
}
