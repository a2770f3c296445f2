import { lookup } from 'node:dns/promises';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Command, Option } from 'commander';
import { startDaemon } from '../daemon.ts';
import { DATABASE_FILE, openDatabase } from '../db/client.ts';
import { KnownPeersRepository } from '../db/known-peers.ts';
import { ConfigError } from '../node/config/errors.ts';
import { ENV_CONFIG_FILE, type ConfigOverride, loadConfig } from '../node/config/load.ts';
import type { Config } from '../node/config/schema.ts';
import { RemoteNetworkError } from '../node/base/errors.ts';
import { loadOrCreateIdentity } from '../node/identity/key-store.ts';
import { StorageError, storageStep } from '../node/storage/storage-failure.ts';
import { NODE_VERSION } from '../node/version.ts';
import { MAX_DEVNET_NODES, startDevnet } from './devnet.ts';
import { EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, EXIT_STORAGE } from './exit-codes.ts';
import { formatPeersTable } from './peers-table.ts';

/** CLI flags that set a configuration key (highest precedence). */
const SETTING_FLAGS = [
  { flag: '--data-dir <dir>', section: 'node', key: 'data_dir' },
  { flag: '--node-type <type>', section: 'node', key: 'node_type' },
  { flag: '--listen-host <ip>', section: 'node', key: 'listen_host' },
  { flag: '--log-level <level>', section: 'node', key: 'log_level' },
  { flag: '--api-host <host>', section: 'api', key: 'host' },
  { flag: '--api-port <port>', section: 'api', key: 'port' },
  { flag: '--quic-port <port>', section: 'quic', key: 'quic_port' },
  { flag: '--dht-port <port>', section: 'dht', key: 'dht_port' },
  { flag: '--bootstrap <host:port,...>', section: 'peer_discovery', key: 'bootstrap_peers' },
  { flag: '--dht-bootstrap <host:port,...>', section: 'dht', key: 'bootstrap_nodes' },
  { flag: '--topic <topic>', section: 'peer_discovery', key: 'topic' },
] as const;

type FlagValues = Record<string, string | boolean | undefined>;

function optionName(flag: string): string {
  const long = flag.split(' ')[0] ?? '';
  return long.slice(2).replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase());
}

function configFromFlags(values: FlagValues): Config {
  const flags: ConfigOverride[] = [];
  for (const { flag, section, key } of SETTING_FLAGS) {
    const value = values[optionName(flag)];
    if (typeof value === 'string') flags.push({ section, key, value, source: `flag ${flag.split(' ')[0]}` });
  }
  if (values.relay === true) flags.push({ section: 'relay', key: 'relay_mode', value: 'true', source: 'flag --relay' });
  const file = typeof values.config === 'string' ? values.config : process.env[ENV_CONFIG_FILE];
  return loadConfig({ file, env: process.env, flags });
}

function withSettingFlags(command: Command, only?: ReadonlyArray<string>): Command {
  command.option('--config <file>', `INI configuration file (or ${ENV_CONFIG_FILE})`);
  for (const { flag, section, key } of SETTING_FLAGS) {
    if (only && !only.includes(key)) continue;
    command.option(flag, `sets [${section}] ${key}`);
  }
  return command;
}

async function runStart(values: FlagValues): Promise<void> {
  const config = configFromFlags(values);
  const daemon = await startDaemon(config);
  stopOnSignals((reason) => daemon.stop(reason));
}

/** SIGINT/SIGTERM stop cleanly and exit 0; a second signal exits at once. */
function stopOnSignals(stop: (reason: string) => Promise<void>): void {
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals += 1;
    if (signals > 1) {
      console.error(`remote-network: second ${signal}: exiting without a clean stop`);
      process.exit(EXIT_FAILURE);
    }
    stop(`received ${signal}`)
      .then(() => process.exit(EXIT_OK))
      .catch((error: unknown) => {
        if (error instanceof StorageError) {
          console.error(`remote-network: stopped, but ${error.message}; the WAL file keeps the data for the next start`);
          process.exit(EXIT_STORAGE);
        }
        console.error('remote-network: stop failed', error);
        process.exit(EXIT_FAILURE);
      });
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

async function runDevnet(values: FlagValues): Promise<void> {
  const nodes = Number(values.nodes);
  const apiPortBase = Number(values.apiPortBase);
  if (!Number.isInteger(nodes) || nodes < 1 || nodes > MAX_DEVNET_NODES) {
    throw new CliUsageError(`--nodes must be an integer from 1 to ${MAX_DEVNET_NODES}`);
  }
  if (!Number.isInteger(apiPortBase) || apiPortBase < 0 || apiPortBase + nodes > 65535) {
    throw new CliUsageError('--api-port-base must be 0 or a port that leaves room for every node');
  }
  const devnet = await startDevnet({
    nodes,
    apiPortBase,
    dataDir: String(values.dataDir),
    logLevel: String(values.logLevel),
  });
  console.log(`devnet of ${nodes} node(s) on 127.0.0.1 (its own DHT; nothing leaves this machine). Ctrl-C stops it.`);
  for (const [i, d] of devnet.daemons.entries()) console.log(`node ${i}: peer ${d.node.peerId}  GraphQL ${d.api.url}`);
  stopOnSignals(() => devnet.stop());
}

/** `npm start`: a node on the internet when the DHT routers resolve, else a local devnet. */
async function runQuickstart(values: FlagValues): Promise<void> {
  const config = configFromFlags(values);
  if (await internetReachable(config.dht.bootstrap_nodes.map((b) => b.host))) {
    await runStart(values);
    return;
  }
  console.log('The DHT routers cannot be reached from here: starting a local devnet instead.');
  await runDevnet({ nodes: '3', apiPortBase: String(config.api.port), dataDir: join(config.node.data_dir, 'devnet'), logLevel: 'warn' });
}

async function internetReachable(hosts: readonly string[]): Promise<boolean> {
  const attempts = hosts.map((host) =>
    Promise.race([lookup(host).then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 3000).unref())]).catch(
      () => false,
    ),
  );
  return (await Promise.all(attempts)).some(Boolean);
}

function runKeyInfo(values: FlagValues): void {
  const config = configFromFlags(values);
  const dataDir = resolve(config.node.data_dir);
  const { identity, privateKeyFile } = loadOrCreateIdentity(dataDir, { create: false });
  const info = {
    peerId: identity.peerId,
    publicKey: Buffer.from(identity.publicKey).toString('hex'),
    keyFile: privateKeyFile,
  };
  if (values.json === true) console.log(JSON.stringify(info, null, 2));
  else console.log(`peer id:    ${info.peerId}\npublic key: ${info.publicKey}\nkey file:   ${info.keyFile}`);
}

function runPeers(values: FlagValues): void {
  const config = configFromFlags(values);
  const file = join(resolve(config.node.data_dir), DATABASE_FILE);
  if (!existsSync(file)) {
    throw new CliUsageError(`no database at ${file}: this data directory has no node yet (start the node once)`);
  }
  const limit = Number(values.limit ?? 50);
  if (!Number.isInteger(limit) || limit < 1 || limit > 100_000) {
    throw new CliUsageError('--limit must be an integer from 1 to 100000');
  }
  const database = storageStep('open the database', file, () => openDatabase(file, { readonly: true }));
  try {
    const repository = new KnownPeersRepository(
      database.db,
      config.peer_discovery.max_known_peers,
      config.peer_discovery.max_unverified_peers,
    );
    const peers = repository.latest(limit);
    const total = repository.count();
    if (values.json === true) {
      console.log(
        JSON.stringify(
          peers.map((p) => ({ ...p, publicKey: Buffer.from(p.publicKey).toString('hex') })),
          null,
          2,
        ),
      );
    } else {
      console.log(formatPeersTable(peers, total));
    }
  } finally {
    database.close();
  }
}

class CliUsageError extends RemoteNetworkError {
  readonly code = 'CLI_USAGE';
}

export function buildProgram(): Command {
  const program = new Command('remote-network')
    .description('Remote Network: a P2P node (BitTorrent DHT discovery, QUIC, Ed25519 identity) with a GraphQL API')
    .version(NODE_VERSION);

  withSettingFlags(program.command('start').description('run a node and its GraphQL API'))
    .option('--relay', 'offer relay service (sets [relay] relay_mode = true)')
    .action((values: FlagValues) => runStart(values));

  const key = program.command('key').description('the node identity');
  withSettingFlags(key.command('info').description('print the peer id and public key'), ['data_dir'])
    .option('--json', 'print JSON')
    .action((values: FlagValues) => runKeyInfo(values));

  withSettingFlags(program.command('peers').description('list known peers, most recently seen first'), ['data_dir'])
    .addOption(new Option('--limit <n>', 'how many to list').default('50'))
    .option('--json', 'print JSON')
    .action((values: FlagValues) => runPeers(values));

  withSettingFlags(program.command('quickstart').description('start a node, or a local devnet when the internet is unreachable'))
    .option('--relay', 'offer relay service (sets [relay] relay_mode = true)')
    .action((values: FlagValues) => runQuickstart(values));

  program
    .command('devnet')
    .description('run N public nodes on 127.0.0.1 with their own private DHT and GraphQL APIs')
    .addOption(new Option('--nodes <n>', 'how many nodes').default('3'))
    .addOption(new Option('--api-port-base <port>', 'node i serves GraphQL on this port + i (0 = any free port)').default('8080'))
    .addOption(new Option('--data-dir <dir>', 'where the nodes keep keys and databases').default('./data/devnet'))
    .addOption(new Option('--log-level <level>', 'log level').default('warn'))
    .action((values: FlagValues) => runDevnet(values));

  return program;
}

export async function main(argv: string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`remote-network: ${error.message}`);
      process.exit(EXIT_CONFIG);
    }
    if (error instanceof StorageError) {
      console.error(`remote-network: ${error.message}`);
      process.exit(EXIT_STORAGE);
    }
    if (error instanceof RemoteNetworkError) {
      console.error(`remote-network: ${error.message}`);
      process.exit(EXIT_FAILURE);
    }
    console.error(error);
    process.exit(EXIT_FAILURE);
  }
}

await main(process.argv);
