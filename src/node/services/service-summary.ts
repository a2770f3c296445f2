import bencode from 'bencode';
import type { Component } from '../base/component.ts';
import type { Logger } from '../base/logger.ts';
import type { NodeComponents } from '../components.ts';
import { MAX_BEP44_VALUE_BYTES } from '../dht/constants.ts';
import type { EventBus } from '../events/bus.ts';
import type { NodeEventMap } from '../events/types.ts';
import type { MetadataContent, MetadataPublisher } from '../metadata/metadata-publisher.ts';
import { MAX_LIST_ITEM_CHARS, MAX_LIST_ITEMS, METADATA_VERSION, encodeMetadata } from '../metadata/peer-metadata.ts';
import { SUMMARY_DEBOUNCE_MS } from './constants.ts';
import type { ServiceRegistry } from './service-registry.ts';
import type { Service, ServiceKind } from './service.ts';

/** Capability entry prefixes of the services summary, per kind, and of the "more exist" entry. */
const ENTRY_PREFIX: Readonly<Record<ServiceKind, string>> = { STANDALONE: 'svc:', DATA: 'data:' };
const MORE_PREFIX = 'svc+:';

export function isServiceCapability(entry: string): boolean {
  return entry.startsWith(MORE_PREFIX) || Object.values(ENTRY_PREFIX).some((prefix) => entry.startsWith(prefix));
}

/**
 * The fields of our metadata that may still grow after the summary is chosen (a relay session,
 * a public address, the relay flag) at their longest, so that no later change can push the item
 * past the BEP 44 limit: the summary is measured against this, not against today's content.
 */
function worstCase(content: MetadataContent, capabilities: readonly string[]): Record<string, unknown> {
  return encodeMetadata({
    ...content,
    peerId: 'f'.repeat(40),
    publicIp: '255.255.255.255',
    privateIp: '255.255.255.255',
    publicPort: 65535,
    privatePort: 65535,
    isRelay: true,
    usingRelay: true,
    connectedRelay: 'f'.repeat(40),
    // Our relay client's session ids are 8 random bytes in hex.
    relaySessionId: 'f'.repeat(16),
    relayAddress: '255.255.255.255:65535',
    capabilities: ['relay', ...capabilities],
    timestamp: 9_999_999_999,
    version: METADATA_VERSION,
  });
}

/**
 * The capability entries that summarize the public services (`svc:<name>`, `data:<name>`, by
 * name): as many as fit within the 1000-byte BEP 44 limit and the 16 entries a reader accepts,
 * then one `svc+:<n>` entry counting the public services left out. Services with an allow-list
 * are not advertised (a search shows them to the peers allowed).
 */
export function serviceCapabilities(content: MetadataContent, services: readonly Service[]): string[] {
  const others = content.capabilities.filter((c) => !isServiceCapability(c) && c !== 'relay');
  const entries = services
    .filter((s) => s.allowedPeers === null)
    .map((s) => `${ENTRY_PREFIX[s.kind]}${s.name}`)
    .sort();
  const listable = entries.filter((e) => e.length <= MAX_LIST_ITEM_CHARS);
  const fits = (list: string[]) =>
    others.length + 1 + list.length <= MAX_LIST_ITEMS &&
    bencode.encode(worstCase(content, [...others, ...list])).length <= MAX_BEP44_VALUE_BYTES;
  const chosen: string[] = [];
  for (const entry of listable) {
    const next = [...chosen, entry];
    const left = entries.length - next.length;
    if (!fits(left > 0 ? [...next, `${MORE_PREFIX}${left}`] : next)) break;
    chosen.push(entry);
  }
  const left = entries.length - chosen.length;
  return left > 0 ? [...chosen, `${MORE_PREFIX}${left}`] : chosen;
}

/** `content` with its services summary replaced by the one of `services`. */
export function withServiceSummary(content: MetadataContent, services: readonly Service[]): MetadataContent {
  const kept = content.capabilities.filter((c) => !isServiceCapability(c));
  return { ...content, capabilities: [...kept, ...serviceCapabilities(content, services)] };
}

export interface ServiceSummaryOptions {
  readonly registry: ServiceRegistry;
  readonly publisher: MetadataPublisher;
  readonly bus: EventBus<NodeEventMap>;
  readonly logger: Logger;
}

/**
 * Keeps the services summary in our metadata current: a registration or removal republishes it
 * (changes within SUMMARY_DEBOUNCE_MS go out as one publication, so a directory of 200 files is
 * one new sequence number, not 200). The first publication carries it already (see node.ts).
 */
export class ServiceSummary implements Component {
  readonly name = 'service-summary';
  private timer: NodeJS.Timeout | undefined;
  private readonly offs: Array<() => void> = [];
  private readonly log: Logger;

  static create(c: NodeComponents): ServiceSummary {
    const { services, publisher, bus, logger } = c;
    return new ServiceSummary({ registry: services, publisher, bus, logger });
  }

  constructor(private readonly options: ServiceSummaryOptions) {
    this.log = options.logger.child({ component: 'service-summary' });
  }

  start(): void {
    const { bus } = this.options;
    this.offs.push(
      bus.on('service.registered', () => this.schedule()),
      bus.on('service.removed', () => this.schedule()),
    );
  }

  stop(): void {
    clearTimeout(this.timer);
    for (const off of this.offs.splice(0)) off();
  }

  private schedule(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.republish(), SUMMARY_DEBOUNCE_MS);
    this.timer.unref();
  }

  private async republish(): Promise<void> {
    const { publisher, registry } = this.options;
    const { capabilities } = withServiceSummary(publisher.current, registry.list());
    try {
      await publisher.update({ capabilities });
    } catch (error) {
      this.log.warn({ err: error }, 'publishing the services summary failed');
    }
  }
}
