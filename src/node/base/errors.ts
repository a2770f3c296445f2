/**
 * Root of the node's error hierarchy. Every expected failure has its own class with a stable
 * `code`, so callers (the CLI, the GraphQL layer, tests) match on type or code, never on text.
 */
export abstract class RemoteNetworkError extends Error {
  abstract readonly code: string;

  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}
