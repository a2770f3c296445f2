/**
 * A part of the node with a lifecycle. The composition root starts components in order and stops
 * them in reverse; a component registers its listeners and protocols in `start()` and removes them
 * in `stop()`, so that a stopped node leaves nothing behind.
 */
export interface Component {
  readonly name: string;
  start?(): Promise<void> | void;
  stop?(): Promise<void> | void;
}
