import { type DestinationStream, type Logger, pino } from 'pino';

export type { Logger };

/** JSON logs on stdout (pino); components get children named after themselves. */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino({ level, base: { pid: process.pid } }, destination ?? pino.destination(1));
}
