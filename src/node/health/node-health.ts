import { type HealthPart, type HealthStatus, worstStatus } from './health-status.ts';
import type { StorageHealth } from './storage-health.ts';

/**
 * The node's health: one part per subsystem that can fail while the node keeps running, and the
 * worst of them as the node's status. A subsystem adds its part here (and a field to the API's
 * `NodeHealth` type).
 */
export class NodeHealth {
  constructor(readonly storage: StorageHealth) {}

  get parts(): readonly HealthPart[] {
    return [this.storage];
  }

  get status(): HealthStatus {
    return worstStatus(this.parts.map((part) => part.status));
  }
}
