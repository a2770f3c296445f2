import type { HealthStatus as NodeHealthStatus } from '../../node/health/health-status.ts';
import type { NodeHealth as NodeHealthModel } from '../../node/health/node-health.ts';
import type { StorageFailure as StorageFailureModel, StorageHealth as StorageHealthModel } from '../../node/health/storage-health.ts';
import { builder } from '../builder.ts';
import { NodeInfo } from './node-info.ts';

export const HealthStatus = builder.enumType('HealthStatus', {
  description: "How well a part of the node works; the node's status is its worst part's.",
  values: {
    OK: { value: 'OK' satisfies NodeHealthStatus, description: 'Working.' },
    DEGRADED: {
      value: 'DEGRADED' satisfies NodeHealthStatus,
      description: 'Working, with less than it should (no part reports this yet).',
    },
    FAILING: {
      value: 'FAILING' satisfies NodeHealthStatus,
      description: 'Failing: what it should do is not done (the node keeps running).',
    },
  } as const,
});

const StorageFailure = builder.objectRef<StorageFailureModel>('StorageFailure').implement({
  description: 'One failed write to the database.',
  fields: (t) => ({
    code: t.string({
      description: 'The kind: SQLITE_FULL, SQLITE_IOERR, SQLITE_READONLY, SQLITE_CANTOPEN, SQLITE_BUSY, EROFS, EACCES, ENOSPC…',
      resolve: (f) => f.code,
    }),
    message: t.string({ description: 'The cause as SQLite or the OS put it, e.g. "database or disk is full".', resolve: (f) => f.message }),
    operation: t.string({ description: 'What was written: known_peers, node_state, or stream_handler.', resolve: (f) => f.operation }),
    at: t.field({ type: 'DateTime', resolve: (f) => f.at }),
  }),
});

const StorageHealth = builder.objectRef<StorageHealthModel>('StorageHealth').implement({
  description:
    'Whether the database takes writes. FAILING from a failed write until the next write that commits. While FAILING the node keeps running: exchanges go on, what could not be stored is counted, and nothing is deleted.',
  fields: (t) => ({
    status: t.field({ type: HealthStatus, description: 'OK or FAILING.', resolve: (s) => s.status }),
    path: t.string({ description: 'The database file.', resolve: (s) => s.path }),
    writeFailures: t.int({ description: 'Failed writes since the node started.', resolve: (s) => s.writeFailures }),
    unstoredPeers: t.int({
      description: 'Known-peer entries (new peers, or news about known ones) that could not be written, since the node started.',
      resolve: (s) => s.unstoredPeers,
    }),
    lastFailure: t.field({
      type: StorageFailure,
      nullable: true,
      description: 'The latest failed write; null if none.',
      resolve: (s) => s.lastFailure,
    }),
    failingSince: t.field({
      type: 'DateTime',
      nullable: true,
      description: 'Start of the current outage; null while OK.',
      resolve: (s) => s.failingSince,
    }),
    recoveredAt: t.field({
      type: 'DateTime',
      nullable: true,
      description: 'When writes last worked again after failing; null if they never failed.',
      resolve: (s) => s.recoveredAt,
    }),
  }),
});

const NodeHealth = builder.objectRef<NodeHealthModel>('NodeHealth').implement({
  description: "The node's health, one field per part that can fail while the node runs.",
  fields: (t) => ({
    status: t.field({ type: HealthStatus, description: 'The worst status of any part.', resolve: (h) => h.status }),
    storage: t.field({ type: StorageHealth, resolve: (h) => h.storage }),
  }),
});

builder.objectField(NodeInfo, 'health', (t) => t.field({ type: NodeHealth, resolve: (node) => node.health }));
