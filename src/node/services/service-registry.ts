import { randomBytes } from 'node:crypto';
import type { ServicesRepository, StoredService } from '../../db/services.ts';
import type { Component } from '../base/component.ts';
import type { Logger } from '../base/logger.ts';
import type { BaseComponents } from '../components.ts';
import type { EventBus } from '../events/bus.ts';
import type { NodeEventMap } from '../events/types.ts';
import { MAX_SERVICES } from './constants.ts';
import { type ServiceDefinition, type ServiceInput, parseServiceInput } from './definition.ts';
import { ServiceInvalidError, ServiceLimitExceededError, ServiceNameTakenError } from './errors.ts';
import { checkDataFile, checkExecutable } from './service-files.ts';
import type { Service, ServiceKind, ServiceLimits } from './service.ts';
import { type DirectoryEntry, readServicesDirectory, servicesDirOf } from './services-directory.ts';

export interface ServiceRegistryOptions {
  readonly store: ServicesRepository;
  readonly bus: EventBus<NodeEventMap>;
  readonly logger: Logger;
  /** The directory of declarative service files read at start; null = none. */
  readonly servicesDir: string | null;
  /** The node's maxima for service limits ([jobs] section); unset = no maximum. */
  readonly maxLimits?: () => ServiceLimits;
}

/**
 * The services this node offers, registered by the operator only (GraphQL, or the services
 * directory read at start): nothing a remote peer sends reaches `register`. Every definition is
 * validated by one schema, kept in memory for lookups and searches, and persisted in the services
 * table before it counts (a failed write registers nothing). Changes are serialized, so two
 * registrations of one name cannot both pass the uniqueness check.
 */
export class ServiceRegistry implements Component {
  readonly name = 'service-registry';
  private readonly services = new Map<string, Service>();
  private queue: Promise<unknown> = Promise.resolve();
  private readonly log: Logger;

  /** As the node runs it: the services table, `[services] services_dir` (default `<data_dir>/services`). */
  static create(
    c: Pick<BaseComponents, 'config' | 'logger' | 'bus' | 'serviceStore'>,
    options: Pick<ServiceRegistryOptions, 'maxLimits'> = {},
  ): ServiceRegistry {
    const { config, logger, bus, serviceStore } = c;
    return new ServiceRegistry({ store: serviceStore, bus, logger, servicesDir: servicesDirOf(config), ...options });
  }

  constructor(private readonly options: ServiceRegistryOptions) {
    this.log = options.logger.child({ component: 'service-registry' });
  }

  /** Loads the stored services, then re-syncs those of the services directory with its files. */
  async start(): Promise<void> {
    for (const row of this.options.store.list()) {
      try {
        this.services.set(row.id, fromStored(row));
      } catch (error) {
        this.log.warn({ serviceId: row.id, name: row.name, err: error }, 'a stored service does not validate: skipped');
      }
    }
    if (this.options.servicesDir !== null) await this.serialized(() => this.syncDirectory(this.options.servicesDir as string));
  }

  list(): Service[] {
    return [...this.services.values()];
  }

  get(id: string): Service | undefined {
    return this.services.get(id);
  }

  byName(name: string): Service | undefined {
    for (const service of this.services.values()) if (service.name === name) return service;
    return undefined;
  }

  /** Validates and registers a service (the operator's, through the API). */
  register(input: ServiceInput): Promise<Service> {
    return this.serialized(async () => {
      const definition = parseServiceInput(input);
      if (this.byName(definition.name)) throw new ServiceNameTakenError(definition.name);
      if (this.services.size >= MAX_SERVICES) throw new ServiceInvalidError(`this node holds the maximum of ${MAX_SERVICES} services`);
      return this.add(await this.build(definition, 'api'));
    });
  }

  remove(id: string): Promise<boolean> {
    return this.serialized(async () => this.delete(id));
  }

  /** May `peerId` use this service? (public, or in allowedPeers) */
  allows(service: Service, peerId: string): boolean {
    return service.allowedPeers === null || service.allowedPeers.includes(peerId);
  }

  /** What `requester` may see: matches on name/description (case-insensitive substring), kind filter, at most `limit`, by name. */
  search(query: string, kind: ServiceKind | null, requester: string, limit: number): Service[] {
    const needle = query.trim().toLowerCase();
    return this.list()
      .filter((s) => this.allows(s, requester) && (kind === null || s.kind === kind))
      .filter((s) => needle === '' || s.name.includes(needle) || s.description.toLowerCase().includes(needle))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
      .slice(0, Math.max(0, limit));
  }

  /** A validated definition as a service: its id, its files checked (a data file hashed), its limits bounded. */
  private async build(definition: ServiceDefinition, source: Service['source'], keep?: Service): Promise<Service> {
    const base = {
      id: keep?.id ?? randomBytes(16).toString('hex'),
      name: definition.name,
      description: definition.description,
      allowedPeers: definition.allowedPeers,
      createdAt: keep?.createdAt ?? new Date(),
      source,
    };
    if (definition.kind === 'DATA') return { ...base, kind: 'DATA', path: definition.path, ...(await checkDataFile(definition.path)) };
    await checkExecutable(definition.executable);
    this.checkLimits(definition.limits);
    const { executable, args, parameters, interfaces, limits } = definition;
    return { ...base, kind: 'STANDALONE', executable, args, parameters, interfaces, limits };
  }

  private checkLimits(limits: ServiceLimits): void {
    const maxima = this.options.maxLimits?.() ?? {};
    for (const [key, value] of Object.entries(limits) as Array<[keyof ServiceLimits, number | boolean | undefined]>) {
      const maximum = maxima[key];
      if (value === undefined || maximum === undefined) continue;
      if (typeof value === 'boolean' ? value && maximum === false : value > (maximum as number)) {
        throw new ServiceLimitExceededError(key, value, maximum);
      }
    }
  }

  /** Stored first: a service that could not be written is not registered. */
  private add(service: Service): Service {
    this.options.store.save(toStored(service));
    this.services.set(service.id, service);
    this.options.bus.emit('service.registered', { serviceId: service.id, name: service.name, kind: service.kind });
    this.log.info({ serviceId: service.id, name: service.name, kind: service.kind, source: service.source }, 'service registered');
    return service;
  }

  private delete(id: string): boolean {
    const service = this.services.get(id);
    if (!service) return false;
    this.options.store.remove(id);
    this.services.delete(id);
    this.options.bus.emit('service.removed', { serviceId: id, name: service.name });
    this.log.info({ serviceId: id, name: service.name, source: service.source }, 'service removed');
    return true;
  }

  /**
   * The directory's files become the file-sourced services: a new or changed file is (re)registered
   * (a changed one keeps its id and is announced as registered again), a bad file is logged with its path and reason and skipped (its
   * earlier service goes: the file no longer defines it), a removed file's service is removed.
   */
  private async syncDirectory(dir: string): Promise<void> {
    const entries = await readServicesDirectory(dir);
    if (!Array.isArray(entries)) {
      // Unreadable: its file services stay as they were rather than all being removed.
      this.log.warn({ path: dir, reason: entries.error.message }, 'services directory not read');
      return;
    }
    const defined = new Set<string>();
    for (const entry of entries) {
      try {
        const service = await this.syncFile(entry);
        defined.add(service.id);
      } catch (error) {
        this.log.warn({ path: entry.path, reason: error instanceof Error ? error.message : String(error) }, 'service file skipped');
      }
    }
    for (const service of this.list()) if (service.source === 'file' && !defined.has(service.id)) this.delete(service.id);
  }

  private async syncFile(entry: DirectoryEntry): Promise<Service> {
    if ('error' in entry) throw entry.error;
    const definition = parseServiceInput(entry.content);
    const existing = this.byName(definition.name);
    if (existing?.source === 'api') throw new ServiceNameTakenError(definition.name);
    const service = await this.build(definition, 'file', existing);
    if (existing && JSON.stringify(toStored(existing)) === JSON.stringify(toStored(service))) return existing;
    if (!existing && this.services.size >= MAX_SERVICES)
      throw new ServiceInvalidError(`this node holds the maximum of ${MAX_SERVICES} services`);
    return this.add(service);
  }

  private serialized<T>(work: () => Promise<T>): Promise<T> {
    const run = this.queue.then(work);
    this.queue = run.catch(() => {});
    return run;
  }
}

/** The row: the kind's own fields as JSON, the rest as columns. */
function toStored(service: Service): StoredService {
  const { id, name, kind, source, createdAt, ...definition } = service;
  return { id, name, kind, source, createdAt, definition };
}

/** A stored row back as a service, validated again (the file may have been edited, or written by an older version). */
function fromStored(row: StoredService): Service {
  const stored = (row.definition ?? {}) as Record<string, unknown>;
  const { size, sha256, ...fields } = stored;
  const definition = parseServiceInput({ ...fields, kind: row.kind, name: row.name });
  const source = row.source === 'file' ? 'file' : 'api';
  const base = { id: row.id, createdAt: row.createdAt, source } as const;
  if (definition.kind === 'DATA') {
    if (typeof size !== 'number' || typeof sha256 !== 'string')
      throw new ServiceInvalidError('a stored data service lacks its size or hash');
    return { ...base, ...definition, size, sha256 };
  }
  return { ...base, ...definition };
}
