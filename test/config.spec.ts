import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parse as parseIni } from 'ini';
import { ConfigError } from '../src/node/config/errors.ts';
import { loadConfig } from '../src/node/config/load.ts';
import { SECTION_NAMES, settingsOf } from '../src/node/config/schema.ts';
import { tempDir } from './helpers/temp.ts';
import { withConfigTable } from '../scripts/config-table.ts';

function problemsOf(fn: () => unknown): readonly string[] {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected ConfigError, got ${String(error)}`);
    return error.problems;
  }
  assert.fail('expected a ConfigError');
}

describe('configuration', () => {
  it('has the seed defaults when nothing is given', () => {
    const config = loadConfig();
    assert.equal(config.dht.metadata_republish_interval, 1800);
    assert.equal(config.peer_discovery.discovery_interval, 30);
    assert.equal(config.peer_discovery.max_known_peers_to_share, 50);
    assert.equal(config.peer_discovery.topic, 'remote-network-mesh');
    assert.equal(config.peer_discovery.max_known_peers, 10000);
    assert.equal(config.relay.relay_mode, false);
    assert.equal(config.relay.relay_keepalive_interval, 5);
    assert.equal(config.quic.quic_port, 30906);
    assert.equal(config.quic.quic_idle_timeout, 300);
    assert.equal(config.api.host, '127.0.0.1');
    assert.equal(config.api.port, 8080);
    assert.equal(config.node.node_type, 'auto');
  });

  it('configs/default.ini lists every setting with exactly the built-in default', () => {
    const ini = parseIni(readFileSync(new URL('../configs/default.ini', import.meta.url), 'utf8')) as Record<
      string,
      Record<string, unknown>
    >;
    assert.deepEqual(Object.keys(ini), SECTION_NAMES);
    for (const section of SECTION_NAMES) {
      const expected = Object.fromEntries(settingsOf(section).map(([k, s]) => [k, s.default]));
      const actual = Object.fromEntries(Object.entries(ini[section] ?? {}).map(([k, v]) => [k, String(v)]));
      assert.deepEqual(actual, expected, `[${section}] differs from the schema: run npm run config:print`);
    }
    // And loading it changes nothing.
    assert.deepEqual(loadConfig({ file: 'configs/default.ini' }), loadConfig());
  });

  it("README.md's configuration table lists every setting as the schema declares it", () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    assert.equal(readme, withConfigTable(readme), 'README.md differs from the schema: run npm run config:print');
  });

  it('layers defaults < file < environment < flags', (t) => {
    const file = join(tempDir(t), 'node.ini');
    writeFileSync(file, '[quic]\nquic_port = 1111\nquic_idle_timeout = 60\n[api]\nport = 2222\n[peer_discovery]\ntopic = from-file\n');
    const config = loadConfig({
      file,
      env: { REMOTE_NETWORK_QUIC_QUIC_PORT: '3333', REMOTE_NETWORK_PEER_DISCOVERY_TOPIC: 'from-env', PATH: '/bin' },
      flags: [{ section: 'quic', key: 'quic_port', value: '4444', source: 'flag --quic-port' }],
    });
    assert.equal(config.quic.quic_port, 4444, 'flag beats environment');
    assert.equal(config.peer_discovery.topic, 'from-env', 'environment beats file');
    assert.equal(config.api.port, 2222, 'file beats default');
    assert.equal(config.quic.quic_idle_timeout, 60);
    assert.equal(config.dht.dht_port, 6881, 'default when nobody sets it');
  });

  it('parses lists, booleans and host:port forms', () => {
    const config = loadConfig({
      env: {
        REMOTE_NETWORK_DHT_BOOTSTRAP_NODES: '127.0.0.1:6881, [::1]:7000,dht.example.org:6881',
        REMOTE_NETWORK_RELAY_RELAY_MODE: 'yes',
        REMOTE_NETWORK_NODE_NODE_TYPE: 'public',
      },
    });
    assert.deepEqual(config.dht.bootstrap_nodes, [
      { host: '127.0.0.1', port: 6881 },
      { host: '::1', port: 7000 },
      { host: 'dht.example.org', port: 6881 },
    ]);
    assert.equal(config.relay.relay_mode, true);
    assert.deepEqual(loadConfig({ env: { REMOTE_NETWORK_DHT_BOOTSTRAP_NODES: '' } }).dht.bootstrap_nodes, []);
  });

  it('names the file, section, key and expected form of a bad value', (t) => {
    const file = join(tempDir(t), 'bad.ini');
    writeFileSync(file, '[quic]\nquic_port = not-a-port\n[relay]\nrelay_mode = maybe\n');
    const problems = problemsOf(() => loadConfig({ file }));
    assert.equal(problems.length, 2, 'every problem is reported, not only the first');
    assert.ok(
      problems.includes(
        `config file ${file}: [quic] quic_port = "not-a-port": expected an integer port from 0 to 65535 (0 = any free port)`,
      ),
    );
    assert.ok(problems.includes(`config file ${file}: [relay] relay_mode = "maybe": expected true or false`));
  });

  it('refuses unknown keys and sections, naming what is known', (t) => {
    const file = join(tempDir(t), 'unknown.ini');
    writeFileSync(file, 'stray = 1\n[quic]\nquic_prot = 1\n[qiuc]\nx = 1\n');
    const problems = problemsOf(() => loadConfig({ file }));
    assert.ok(problems.some((p) => /"stray" is outside any \[section\]/.test(p)));
    assert.ok(problems.some((p) => /unknown setting \[quic\] quic_prot; known keys in \[quic\] are quic_port, quic_idle_timeout/.test(p)));
    assert.ok(problems.some((p) => /unknown section \[qiuc\]/.test(p)));
  });

  it('reports environment and flag problems with their source', () => {
    const problems = problemsOf(() =>
      loadConfig({
        env: { REMOTE_NETWORK_NOPE_KEY: '1', REMOTE_NETWORK_API_PORT: '70000' },
        flags: [{ section: 'dht', key: 'bootstrap_nodes', value: 'localhost', source: 'flag --dht-bootstrap' }],
      }),
    );
    assert.ok(problems.some((p) => p.startsWith('environment variable REMOTE_NETWORK_NOPE_KEY: names no known section')));
    assert.ok(problems.some((p) => p.startsWith('environment variable REMOTE_NETWORK_API_PORT: [api] port = "70000"')));
    assert.ok(
      problems.some(
        (p) => p.startsWith('flag --dht-bootstrap: [dht] bootstrap_nodes = "localhost"') && p.includes('"localhost" is not host:port'),
      ),
    );
  });

  it('reports an unreadable config file', () => {
    const problems = problemsOf(() => loadConfig({ file: '/nonexistent/remote-network.ini' }));
    assert.match(problems[0] ?? '', /config file \/nonexistent\/remote-network.ini: cannot be read \(ENOENT\)/);
  });

  it('requires an API token when the API is bound off loopback', () => {
    const problems = problemsOf(() => loadConfig({ env: { REMOTE_NETWORK_API_HOST: '0.0.0.0' } }));
    assert.match(problems[0] ?? '', /\[api\] host = 0.0.0.0 is not a loopback address, so \[api\] token must be set/);
    const config = loadConfig({ env: { REMOTE_NETWORK_API_HOST: '0.0.0.0', REMOTE_NETWORK_API_TOKEN: 'a-long-enough-secret' } });
    assert.equal(config.api.token, 'a-long-enough-secret');
    assert.match(problemsOf(() => loadConfig({ env: { REMOTE_NETWORK_API_TOKEN: 'short' } }))[0] ?? '', /at least 16 characters/);
  });

  it('refuses a relay that is forced private', () => {
    const problems = problemsOf(() =>
      loadConfig({ env: { REMOTE_NETWORK_RELAY_RELAY_MODE: 'true', REMOTE_NETWORK_NODE_NODE_TYPE: 'private' } }),
    );
    assert.match(problems[0] ?? '', /relay_mode = true needs a public node/);
  });
});
