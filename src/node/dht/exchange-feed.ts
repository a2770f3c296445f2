import { parseHostPort } from '../base/address.ts';
import type { Component } from '../base/component.ts';
import type { EventBus } from '../events/bus.ts';
import type { NodeEventMap } from '../events/types.ts';
import type { MainlineDht } from './mainline-dht.ts';

/** Every exchanged peer's DHT node joins our routing table, once the exchange told us its DHT port. */
export class DhtExchangeFeed implements Component {
  readonly name = 'dht-exchange-feed';
  private off: (() => void) | undefined;

  constructor(private readonly options: { readonly bus: EventBus<NodeEventMap>; readonly dht: MainlineDht }) {}

  start(): void {
    const { bus, dht } = this.options;
    this.off = bus.on('peer.exchanged', (e) => {
      const remote = parseHostPort(e.payload.remoteAddress);
      if (remote && e.payload.dhtPort > 0 && dht.running) dht.addNode({ host: remote.host, port: e.payload.dhtPort });
    });
  }

  stop(): void {
    this.off?.();
    this.off = undefined;
  }
}
