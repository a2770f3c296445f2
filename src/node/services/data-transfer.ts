import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { z } from 'zod';
import type { Component } from '../base/component.ts';
import { RemoteNetworkError } from '../base/errors.ts';
import type { Logger } from '../base/logger.ts';
import type { NodeComponents } from '../components.ts';
import type { PeerDialer } from '../discovery/peer-dialer.ts';
import type { ConnectionManager } from '../lifecycle/connection-manager.ts';
import type { ProtocolRegistry } from '../lifecycle/protocol-registry.ts';
import type { PeerConnection } from '../quic/types.ts';
import { MessageChannel } from '../wire/channel.ts';
import type { BlobStore } from '../jobs/blob-store.ts';
import { drain, readAll } from '../wire/raw-stream.ts';
import type { ServiceRegistry } from './service-registry.ts';

/** Fetches of one peer's DATA services at once, on this node as the server. */
const MAX_FETCH_STREAMS_PER_PEER = 4;

export const dataFetchMessage = z.object({ type: z.literal('data_fetch'), service_id: z.string().min(1).max(64) });
export const dataHeaderMessage = z.object({
  type: z.literal('data_header'),
  service_id: z.string().regex(/^[0-9a-f]{32}$/),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  size: z.number().int().min(0),
});
export type DataWireMessage = z.infer<typeof dataFetchMessage> | z.infer<typeof dataHeaderMessage>;

export class DataNotFoundError extends RemoteNetworkError {
  readonly code = 'UNKNOWN_SERVICE';
}
/** The file on disk is no longer what was registered (edited, truncated): it is not served. */
export class DataChangedError extends RemoteNetworkError {
  readonly code = 'DATA_CHANGED';
}

export interface DataTransferOptions {
  readonly logger: Logger;
  readonly protocols: ProtocolRegistry;
  readonly connections: ConnectionManager;
  readonly services: ServiceRegistry;
  readonly blobs: BlobStore;
  readonly dialer: Pick<PeerDialer, 'connectToPeer'>;
}

/**
 * DATA services by content: a peer allowed to use one asks for it by id or name and receives a
 * header (SHA-256, size) and the raw bytes (QUIC flow control); the fetching side keeps them in its
 * blob store only once size and hash match. A file changed since its registration is refused
 * (DATA_CHANGED) rather than served under a hash it no longer has.
 */
export class DataTransfer implements Component {
  readonly name = 'data-transfer';
  private unhandle: (() => void) | undefined;
  private readonly log: Logger;

  constructor(private readonly options: DataTransferOptions) {
    this.log = options.logger.child({ component: this.name });
  }

  static create(c: NodeComponents, parts: Pick<DataTransferOptions, 'blobs' | 'dialer'>): DataTransfer {
    return new DataTransfer({ ...c, ...parts });
  }

  start(): void {
    this.unhandle = this.options.protocols.handle(
      dataFetchMessage,
      (m, connection, channel) => this.serve(m.service_id, connection, channel),
      {
        maxStreamsPerPeer: MAX_FETCH_STREAMS_PER_PEER,
      },
    );
  }

  stop(): void {
    this.unhandle?.();
  }

  /** Fetches a peer's DATA service into the blob store; resolves with what was verified. */
  async fetch(peerId: string, serviceId: string): Promise<{ serviceId: string; sha256: string; size: number }> {
    const { connections, dialer, blobs } = this.options;
    await dialer.connectToPeer(peerId);
    return connections.withPeerStream(peerId, async (stream) => {
      const channel = new MessageChannel(stream);
      try {
        await channel.sendFinal({ type: 'data_fetch', service_id: serviceId });
        const header = await channel.receive(dataHeaderMessage, 'data_header');
        const expected = { sha256: header.sha256, size: header.size };
        if ((await blobs.size(header.sha256)) !== header.size) await blobs.receive(readAll(channel.detach().readable), expected);
        else channel.detach().cancel('already stored');
        return { serviceId: header.service_id, ...expected };
      } catch (error) {
        await channel.fail(error);
        throw error;
      }
    });
  }

  private async serve(serviceId: string, connection: PeerConnection, channel: MessageChannel): Promise<void> {
    const { services } = this.options;
    const service = services.get(serviceId) ?? services.byName(serviceId);
    // Not allowed looks like not there: a peer outside the allow-list learns nothing of the file.
    if (!service || service.kind !== 'DATA' || !services.allows(service, connection.remotePeerId)) {
      throw new DataNotFoundError(`no DATA service ${serviceId} here`);
    }
    const info = await stat(service.path).catch(() => undefined);
    if (info?.size !== service.size) throw new DataChangedError(`the file of ${service.name} changed since it was registered`);
    await channel.send({ type: 'data_header', service_id: service.id, sha256: service.sha256, size: service.size });
    const stream = channel.detach();
    const writer = stream.writable.getWriter();
    const hash = createHash('sha256');
    for await (const chunk of createReadStream(service.path)) {
      hash.update(chunk as Buffer);
      await writer.write(chunk as Buffer);
    }
    if (hash.digest('hex') !== service.sha256) {
      // Too late to refuse: the receiver's check fails; the stream is reset so it fails at once.
      this.log.error({ service: service.name, path: service.path }, 'a DATA file changed while it was served');
      stream.cancel(new DataChangedError('content changed'));
      return;
    }
    await writer.close();
    await drain(stream.readable);
  }
}
