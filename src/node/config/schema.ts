import { isIP } from 'node:net';
import { z } from 'zod';
import { type HostPort, parseHostPort } from '../base/address.ts';
import { NODE_TYPE_SETTINGS } from '../base/node-type.ts';
import { type IpPrefix, parseIpPrefix } from '../util/ip-prefix.ts';

/**
 * Every setting the node understands, declared once. The loader, the environment mapping, the CLI
 * flags and `configs/default.ini` (checked by a test) all derive from this table, so a key cannot
 * exist in one place and be missing in another.
 *
 * Values arrive as strings from every source (INI file, environment, flags); each setting parses
 * its own string, and `form` is what an error message shows the operator as the expected form.
 */
interface Setting<T> {
  readonly schema: z.ZodType<T, string>;
  readonly default: string;
  readonly form: string;
  readonly doc: string;
}

function setting<T>(schema: z.ZodType<T, string>, def: string, form: string, doc: string): Setting<T> {
  return { schema, default: def, form, doc };
}

const integer = (min: number, max: number) => z.string().trim().regex(/^\d+$/).transform(Number).pipe(z.number().int().min(min).max(max));

const port = integer(0, 65535);
const seconds = (min: number, max: number) => integer(min, max);

const TRUE_WORDS = ['true', 'yes', 'on', '1'];
const FALSE_WORDS = ['false', 'no', 'off', '0'];
const boolean = z
  .string()
  .trim()
  .toLowerCase()
  .refine((v) => TRUE_WORDS.includes(v) || FALSE_WORDS.includes(v))
  .transform((v) => TRUE_WORDS.includes(v));

const ipv4Address = z
  .string()
  .trim()
  .refine((v) => isIP(v) === 4);
const apiHost = z
  .string()
  .trim()
  .refine((v) => v === 'localhost' || isIP(v) !== 0);

/** Marks an issue whose message adds to the setting's expected form (shown to the operator). */
export const DETAIL = { detail: true } as const;

const hostPortList = z.string().transform((text, ctx) => {
  const items = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  const parsed: HostPort[] = [];
  for (const item of items) {
    const hp = parseHostPort(item);
    if (!hp) {
      ctx.addIssue({ code: 'custom', message: `"${item}" is not host:port`, params: DETAIL });
      return z.NEVER;
    }
    parsed.push(hp);
  }
  return parsed;
});

const ORIGIN = /^https?:\/\/[^/\s]+$/;
const originList = z.string().transform((text, ctx) => {
  const items = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  for (const item of items) {
    if (!ORIGIN.test(item)) {
      ctx.addIssue({ code: 'custom', message: `"${item}" is not an origin`, params: DETAIL });
      return z.NEVER;
    }
  }
  return items;
});

const prefixList = z.string().transform((text, ctx) => {
  const prefixes: IpPrefix[] = [];
  for (const item of text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0)) {
    const prefix = parseIpPrefix(item);
    if (!prefix) {
      ctx.addIssue({ code: 'custom', message: `"${item}" is not an IP address or CIDR prefix`, params: DETAIL });
      return z.NEVER;
    }
    prefixes.push(prefix);
  }
  return prefixes;
});

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** The public mainline routers: used only when no bootstrap list is configured (never in tests). */
const MAINLINE_ROUTERS = 'router.bittorrent.com:6881,dht.transmissionbt.com:6881,router.utorrent.com:6881';

export const CONFIG_SPEC = {
  node: {
    data_dir: setting(z.string().trim().min(1), './data', 'a directory path', 'Where the SQLite file and keys/ live.'),
    node_type: setting(
      z.enum(NODE_TYPE_SETTINGS),
      'auto',
      'one of auto, public, private',
      'auto detects reachability; public or private forces it.',
    ),
    listen_host: setting(ipv4Address, '0.0.0.0', 'an IPv4 address', 'Address the DHT and QUIC sockets bind to (the mainline DHT is IPv4).'),
    log_level: setting(z.enum(LOG_LEVELS), 'info', `one of ${LOG_LEVELS.join(', ')}`, 'Log verbosity (pino).'),
  },
  dht: {
    dht_port: setting(port, '6881', 'an integer port from 0 to 65535 (0 = any free port)', 'UDP port of the DHT node.'),
    bootstrap_nodes: setting(
      hostPortList,
      MAINLINE_ROUTERS,
      'a comma-separated list of host:port (may be empty)',
      'DHT routers to bootstrap from; empty means none.',
    ),
    metadata_republish_interval: setting(
      seconds(10, 86_400),
      '1800',
      'a number of seconds from 10 to 86400',
      'How often our BEP 44 metadata is republished.',
    ),
    metadata_cache_ttl: setting(
      seconds(0, 86_400),
      '300',
      'a number of seconds from 0 to 86400 (0 = no cache)',
      "How long peers' metadata read from the DHT is served from cache.",
    ),
  },
  peer_discovery: {
    topic: setting(
      z.string().trim().min(1).max(100),
      'remote-network-mesh',
      'a non-empty string of at most 100 characters',
      'Topic whose SHA1 is announced in the DHT (BEP 5).',
    ),
    discovery_interval: setting(seconds(1, 3600), '30', 'a number of seconds from 1 to 3600', 'Period of topic lookups.'),
    max_known_peers_to_share: setting(integer(0, 50), '50', 'an integer from 0 to 50', 'How many known peers we send in an exchange.'),
    max_known_peers: setting(
      integer(10, 1_000_000),
      '10000',
      'an integer from 10 to 1000000',
      'Cap of the known_peers table; unverified peers go first, then the oldest last_seen.',
    ),
    hearsay_per_minute: setting(
      integer(0, 100_000),
      '50',
      'an integer from 0 to 100000',
      'New unverified peers one peer may tell us about per minute (BEP 11 PEX norm: 50); raise only among peers you trust.',
    ),
    max_unverified_peers: setting(
      integer(0, 1_000_000),
      '1000',
      'an integer from 0 to 1000000',
      'Peers heard of from other peers but not verified yet (no exchange with them, no signed metadata found) kept at most; the oldest go first.',
    ),
    target_connections: setting(
      integer(1, 10_000),
      '8',
      'an integer from 1 to 10000',
      'Discovery dials newly found peers only while fewer connections are open (news still spreads by exchange).',
    ),
    bootstrap_peers: setting(
      hostPortList,
      '',
      'a comma-separated list of host:port QUIC addresses (may be empty)',
      'Peers dialled at start.',
    ),
  },
  nat: {
    recheck_interval: setting(
      seconds(10, 86_400),
      '300',
      'a number of seconds from 10 to 86400',
      'With node_type = auto: how often a confirmed reachability verdict is checked again (also at once when our observed address or interfaces change).',
    ),
    unsettled_recheck_interval: setting(
      seconds(1, 3600),
      '30',
      'a number of seconds from 1 to 3600',
      'With node_type = auto: how often an undecided verdict is checked again, and a provisional one while a peer not asked yet is connected, or after an opposite check.',
    ),
    relay_grace_period: setting(
      seconds(0, 3600),
      '10',
      'a number of seconds from 0 to 3600',
      'With node_type = auto: an undecided node registers with a known relay after this, to be reachable until its verdict (dropped if it turns out public).',
    ),
  },
  relay: {
    relay_mode: setting(
      boolean,
      'false',
      'true or false',
      'Offer relay service to NAT peers, once the node is public (with node_type = auto, from its verdict on).',
    ),
    relay_keepalive_interval: setting(
      seconds(1, 300),
      '5',
      'a number of seconds from 1 to 300',
      'Relay keepalive period (a session missing 3 is closed).',
    ),
    relay_max_sessions: setting(integer(1, 100_000), '128', 'an integer from 1 to 100000', 'NAT clients a relay serves at once.'),
    relay_max_circuits_per_peer: setting(
      integer(1, 1024),
      '16',
      'an integer from 1 to 1024',
      'Circuits open at once per peer, as caller or target (each relayed stream is one circuit).',
    ),
    relay_max_circuit_bytes: setting(
      integer(1024, 1_099_511_627_776),
      '268435456',
      'a number of bytes from 1024 to 1099511627776',
      'Bytes one circuit may carry (both directions); past it the relay cuts the circuit.',
    ),
    relay_max_circuit_duration: setting(
      seconds(10, 604_800),
      '3600',
      'a number of seconds from 10 to 604800',
      'Lifetime of one circuit; a relayed connection lasts at most this long, then is re-established.',
    ),
  },
  quic: {
    quic_port: setting(port, '30906', 'an integer port from 0 to 65535 (0 = any free port)', 'UDP port of the QUIC socket.'),
    quic_idle_timeout: setting(
      seconds(5, 86_400),
      '300',
      'a number of seconds from 5 to 86400',
      'Idle time after which a connection with no stream is closed.',
    ),
    max_connections: setting(
      integer(1, 10_000),
      '200',
      'an integer from 1 to 10000',
      'Open connections at most (beyond it an inbound one prunes an unprotected connection of a more crowded network or is refused; dials wait).',
    ),
  },
  connection_limits: {
    max_inbound_per_ip: setting(
      integer(1, 10_000),
      '8',
      'an integer from 1 to 10000',
      'Inbound connections from one IP address at once, handshakes included (IPv6: one /64). A home NAT hides a few nodes behind one address; a relay serving NAT clients behind a carrier-grade NAT may need more.',
    ),
    max_inbound_per_subnet: setting(
      integer(1, 10_000),
      '32',
      'an integer from 1 to 10000',
      'Inbound connections from one /24 (IPv4) or /48 (IPv6) at once.',
    ),
    max_pending_per_ip: setting(
      integer(1, 10_000),
      '4',
      'an integer from 1 to 10000',
      'Inbound connections from one IP address still in the TLS handshake or the identity exchange.',
    ),
    max_pending: setting(
      integer(1, 10_000),
      '32',
      'an integer from 1 to 10000',
      'Inbound connections still in the TLS handshake or the identity exchange, all addresses together.',
    ),
    inbound_rate_per_ip: setting(
      integer(1, 60_000),
      '60',
      'a number of connections per minute from 1 to 60000',
      'New inbound connections per minute from one IP address, once its burst is spent (a token bucket).',
    ),
    inbound_burst_per_ip: setting(
      integer(1, 10_000),
      '10',
      'an integer from 1 to 10000',
      'New inbound connections one IP address may open in a burst before inbound_rate_per_ip applies.',
    ),
    allowlist: setting(
      prefixList,
      '127.0.0.0/8,::1/128',
      'a comma-separated list of IP addresses or CIDR prefixes such as 10.0.0.0/8 (may be empty)',
      'Addresses exempt from the limits of this section (they still count toward max_connections): loopback by default, where devnets and tests run many nodes on one address.',
    ),
  },
  jobs: {
    enabled: setting(
      boolean,
      'true',
      'true or false',
      'Run jobs for peers on the services this node offers (ordering jobs on other peers works either way).',
    ),
    sandbox: setting(
      z.enum(['auto', 'bubblewrap', 'none']),
      'auto',
      'one of auto, bubblewrap, none',
      'How jobs are isolated: bubblewrap inside cgroups (auto = bubblewrap when the machine allows it, else jobs are refused); none runs them as plain processes (only where every service is trusted).',
    ),
    sandbox_uid: setting(integer(1, 4_294_967_294), '65534', 'a uid from 1 to 4294967294', 'Unprivileged user jobs run as (never root).'),
    sandbox_gid: setting(integer(1, 4_294_967_294), '65534', 'a gid from 1 to 4294967294', 'Unprivileged group jobs run as.'),
    max_concurrent_jobs: setting(
      integer(1, 1024),
      '4',
      'an integer from 1 to 1024',
      'Jobs running at once for peers; past it a request is refused with EXECUTOR_BUSY.',
    ),
    default_memory: setting(
      integer(4_194_304, 1_099_511_627_776),
      '268435456',
      'a number of bytes from 4194304 to 1099511627776',
      "A job's memory limit (cgroup) when its service sets none.",
    ),
    max_memory: setting(
      integer(4_194_304, 1_099_511_627_776),
      '2147483648',
      'a number of bytes from 4194304 to 1099511627776',
      'The most memory any service may give a job.',
    ),
    default_pids: setting(
      integer(1, 100_000),
      '64',
      'an integer from 1 to 100000',
      "A job's process and thread limit when its service sets none.",
    ),
    max_pids: setting(integer(1, 100_000), '1024', 'an integer from 1 to 100000', 'The most processes any service may give a job.'),
    default_cpu_percent: setting(
      integer(1, 100_000),
      '100',
      'a percentage of one core from 1 to 100000',
      "A job's CPU quota (100 = one core) when its service sets none.",
    ),
    max_cpu_percent: setting(
      integer(1, 100_000),
      '200',
      'a percentage of one core from 1 to 100000',
      'The most CPU any service may give a job.',
    ),
    default_wall_time: setting(
      seconds(1, 604_800),
      '300',
      'a number of seconds from 1 to 604800',
      'Wall time after which a job is stopped (TIMEOUT) when its service sets none.',
    ),
    max_wall_time: setting(
      seconds(1, 604_800),
      '3600',
      'a number of seconds from 1 to 604800',
      'The most wall time any service may give a job.',
    ),
    default_output_bytes: setting(
      integer(1024, 1_073_741_824),
      '1048576',
      'a number of bytes from 1024 to 1073741824',
      'Stdout and stderr kept per job (together) when its service sets none; past it the job is stopped (OUTPUT_LIMIT).',
    ),
    max_output_bytes: setting(
      integer(1024, 1_073_741_824),
      '67108864',
      'a number of bytes from 1024 to 1073741824',
      'The most stdout and stderr any service may let a job write.',
    ),
    default_output_file_bytes: setting(
      integer(1024, 1_099_511_627_776),
      '67108864',
      'a number of bytes from 1024 to 1099511627776',
      'Largest file a job may write (its outputs included) when its service sets none.',
    ),
    max_output_file_bytes: setting(
      integer(1024, 1_099_511_627_776),
      '1073741824',
      'a number of bytes from 1024 to 1099511627776',
      'The largest file any service may let a job write.',
    ),
    kill_grace: setting(
      seconds(0, 300),
      '5',
      'a number of seconds from 0 to 300',
      'Between SIGTERM and SIGKILL when a job is cancelled or times out.',
    ),
    workspace_dir: setting(
      z.string().trim(),
      '',
      'a directory path (empty = <data_dir>/jobs)',
      "Where each job's workspace (inputs, outputs) is made; removed when the job ends.",
    ),
    log_retention: setting(
      seconds(60, 31_536_000),
      '604800',
      'a number of seconds from 60 to 31536000',
      'How long finished jobs, their logs and their outputs are kept (both on the executor and the orderer).',
    ),
  },
  api: {
    host: setting(apiHost, '127.0.0.1', 'an IP address or localhost', 'GraphQL API bind address; off loopback a token is required.'),
    port: setting(port, '8080', 'an integer port from 0 to 65535 (0 = any free port)', 'GraphQL API port.'),
    token: setting(
      z
        .string()
        .trim()
        .refine((v) => v.length === 0 || v.length >= 16),
      '',
      'empty, or a secret of at least 16 characters',
      'Bearer token for the API (required off loopback).',
    ),
    allowed_origins: setting(
      originList,
      '',
      'a comma-separated list of origins such as https://admin.example (may be empty)',
      'Browser origins allowed to call the API (CORS and WebSocket Origin).',
    ),
    max_depth: setting(integer(2, 100), '12', 'an integer from 2 to 100', 'Maximum query depth.'),
    max_aliases: setting(integer(1, 1000), '15', 'an integer from 1 to 1000', 'Maximum aliases per operation.'),
    max_cost: setting(integer(10, 1_000_000), '5000', 'an integer from 10 to 1000000', 'Maximum query cost.'),
    max_subscriptions_per_client: setting(
      integer(1, 100_000),
      '100',
      'an integer from 1 to 100000',
      'Subscriptions open at once on one graphql-ws socket, and over SSE from one client address.',
    ),
    max_subscriptions: setting(
      integer(1, 1_000_000),
      '1000',
      'an integer from 1 to 1000000',
      'Subscriptions open at once on the whole API, graphql-ws and SSE together (each costs ~10 KB).',
    ),
  },
  metrics: {
    enabled: setting(
      boolean,
      'true',
      'true or false',
      'Serve Prometheus metrics at GET /metrics on the API port (same access rules as /graphql); false exports nothing.',
    ),
  },
  services: {
    services_dir: setting(
      z.string().trim(),
      '',
      'a directory path, or empty for <data_dir>/services',
      'Directory of service definition files (*.json) read at start; an absent directory holds none.',
    ),
    search_concurrency: setting(integer(1, 64), '8', 'an integer from 1 to 64', 'Peers a service search asks at once.'),
    search_deadline: setting(
      seconds(1, 120),
      '5',
      'a number of seconds from 1 to 120',
      'A service search completes after this, whatever peers have not answered (they count as timed out).',
    ),
    search_max_results: setting(
      integer(1, 100),
      '20',
      'an integer from 1 to 100',
      'Services one peer answers a search with, at most (what this node answers, and what it keeps of each answer).',
    ),
    search_rate_limit: setting(
      integer(1, 10_000),
      '30',
      'an integer from 1 to 10000',
      'Searches one peer may send this node per minute (in bursts of as many); more are refused with SEARCH_RATE_LIMITED.',
    ),
  },
} as const;

type Spec = typeof CONFIG_SPEC;
export type SectionName = keyof Spec;
type ParsedValue<S> = S extends Setting<infer T> ? T : never;

/** The validated configuration: sections and keys exactly as in the INI file. */
export type Config = {
  readonly [S in SectionName]: { readonly [K in keyof Spec[S]]: ParsedValue<Spec[S][K]> };
};

export const SECTION_NAMES = Object.keys(CONFIG_SPEC) as SectionName[];

export function settingsOf(section: SectionName): ReadonlyArray<[string, Setting<unknown>]> {
  return Object.entries(CONFIG_SPEC[section]) as Array<[string, Setting<unknown>]>;
}

export function lookupSetting(section: string, key: string): Setting<unknown> | undefined {
  if (!Object.hasOwn(CONFIG_SPEC, section)) return undefined;
  const entries = CONFIG_SPEC[section as SectionName] as Record<string, Setting<unknown>>;
  return Object.hasOwn(entries, key) ? entries[key] : undefined;
}

export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || (isIP(host) === 4 && host.startsWith('127.'));
}
