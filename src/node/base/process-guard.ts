import type { Logger } from './logger.ts';

/** What the process-level guard has absorbed since start (the API shows it). */
export interface ProcessFaults {
  /** Uncaught exceptions a subsystem declared harmless (see `absorbUncaught`). */
  readonly absorbedExceptions: number;
  /** Promise rejections nobody handled: logged and counted, never the end of the process. */
  readonly unhandledRejections: number;
}

const absorbers = new Set<(error: unknown) => boolean>();
const faults = { absorbedExceptions: 0, unhandledRejections: 0 };
let logger: Logger | undefined;
let installed = false;

/** Declares a kind of uncaught exception harmless (a library that throws unlistened error events). */
export function absorbUncaught(isHarmless: (error: unknown) => boolean): void {
  absorbers.add(isHarmless);
}

export function processFaults(): ProcessFaults {
  return { ...faults };
}

/**
 * The last line of defence, under the subsystems' own containment (every network entry point
 * catches what its handlers throw: DHT datagrams in KrpcGuard, QUIC streams in the connection
 * manager's dispatch, GraphQL in yoga). A promise rejection that escaped all of them is a bug,
 * but one in an asynchronous path that left nothing half-done: it is logged and counted, and the
 * node keeps serving (Node's default would end the process, so that anyone able to trigger one
 * remotely could stop the node). An uncaught exception is different: it unwound synchronous code
 * in the middle of its work, and what that left behind is unknown, so it still ends the process
 * (exit code 1) unless a subsystem declared that kind harmless.
 */
export function installProcessGuard(log: Logger): void {
  logger = log;
  if (installed) return;
  installed = true;
  process.on('uncaughtException', (error) => {
    if ([...absorbers].some((isHarmless) => isHarmless(error))) {
      faults.absorbedExceptions += 1;
      logger?.debug({ err: error }, 'uncaught exception absorbed');
      return;
    }
    logger?.fatal({ err: error }, 'uncaught exception');
    console.error(error);
    process.exit(1);
  });
  process.on('unhandledRejection', (reason) => {
    faults.unhandledRejections += 1;
    logger?.error({ err: reason }, 'unhandled promise rejection (contained)');
  });
}
