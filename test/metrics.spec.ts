import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Daemon } from '../src/daemon.ts';
import type { Metrics } from '../src/node/metrics/metrics.ts';
import { NoopMetrics } from '../src/node/metrics/noop-metrics.ts';
import { PrometheusMetrics } from '../src/node/metrics/prometheus-metrics.ts';
import { startTestDaemon, startTestNode, until } from './helpers/daemon.ts';
import { gql } from './helpers/graphql.ts';
import { usePrivateNetwork } from './helpers/network.ts';
import {
  type HistogramSeries,
  type MetricFamily,
  type MetricType,
  type Sample,
  histogramSeries,
  parsePrometheusText,
} from './helpers/prometheus-text.ts';

const TOKEN = 'metrics-token-0123456789abcdef';

const metricsUrl = (daemon: Daemon) => daemon.api.url.replace(/\/graphql$/, '/metrics');

interface Scrape {
  readonly status: number;
  readonly contentType: string | null;
  readonly families: ReadonlyMap<string, MetricFamily>;
}

async function scrape(daemon: Daemon, headers: Record<string, string> = {}): Promise<Scrape> {
  const response = await fetch(metricsUrl(daemon), { headers });
  const text = await response.text();
  const families = response.status === 200 ? parsePrometheusText(text) : new Map<string, MetricFamily>();
  return { status: response.status, contentType: response.headers.get('content-type'), families };
}

function family(scraped: Scrape, name: string, type: MetricType): MetricFamily {
  const found = scraped.families.get(name);
  assert.ok(found, `metric family ${name} is exported`);
  assert.equal(found.type, type, `${name} is a ${type}`);
  return found;
}

const matches = (labels: Readonly<Record<string, string>>, wanted: Record<string, string>) =>
  Object.entries(wanted).every(([k, v]) => labels[k] === v);

/** The sample whose labels include all of `labels` (exactly one must match). */
function sample(f: MetricFamily, labels: Record<string, string> = {}): Sample {
  const matching = f.samples.filter((m) => matches(m.labels, labels));
  assert.equal(matching.length, 1, `one ${f.name} sample with ${JSON.stringify(labels)}`);
  return matching[0] as Sample;
}

const valueOf = (f: MetricFamily, labels: Record<string, string> = {}) => sample(f, labels).value;
const sumOf = (f: MetricFamily, labels: Record<string, string> = {}) =>
  f.samples.filter((m) => matches(m.labels, labels)).reduce((sum, m) => sum + m.value, 0);
const seriesOf = (f: MetricFamily, labels: Record<string, string>): HistogramSeries[] =>
  histogramSeries(f).filter((h) => matches(h.labels, labels));

describe('metrics', () => {
  it('GET /metrics serves the node in the Prometheus text format, matching what the API says', async (t) => {
    const daemon = await startTestDaemon(t);
    const other = await startTestNode(t);
    const before = await scrape(daemon);
    assert.equal(before.status, 200);
    assert.match(before.contentType ?? '', /^text\/plain; version=0\.0\.4/);
    assert.equal(valueOf(family(before, 'remote_network_connections', 'gauge'), { state: 'IDLE', direction: 'outbound' }), 0);

    const connected = await gql(daemon.api.url, `mutation { connectPeer(address: "127.0.0.1:${other.quicPort}") { peerId state } }`);
    assert.equal(connected.data?.connectPeer.peerId, other.peerId);
    await until([daemon.node], () => daemon.node.connections.byPeer(other.peerId)?.state === 'IDLE');
    const after = await scrape(daemon);
    assert.equal(after.status, 200);

    const connections = family(after, 'remote_network_connections', 'gauge');
    assert.equal(valueOf(connections, { state: 'IDLE', direction: 'outbound' }), 1, 'one idle outbound connection');
    assert.equal(sumOf(connections), 1, 'and no other');

    const dials = family(after, 'remote_network_connection_dials_total', 'counter');
    assert.equal(valueOf(dials, { path: 'direct', outcome: 'connected' }), 1);

    const exchange = family(after, 'remote_network_exchange_duration_seconds', 'histogram');
    const [initiated] = seriesOf(exchange, { role: 'initiator', outcome: 'ok' });
    assert.ok(initiated && initiated.count >= 1, 'the exchange was timed');
    assert.ok(initiated.sum > 0);

    // The exchange's own bytes, counted under its protocol on both sides of the stream.
    const sent = family(after, 'remote_network_protocol_sent_bytes_total', 'counter');
    const received = family(after, 'remote_network_protocol_received_bytes_total', 'counter');
    assert.ok(valueOf(sent, { protocol: 'identity' }) > 0);
    assert.ok(valueOf(received, { protocol: 'identity' }) > 0);

    const knownPeers = await gql(daemon.api.url, '{ knownPeers(first: 1) { totalCount } }');
    const known = family(after, 'remote_network_known_peers', 'gauge');
    assert.equal(valueOf(known, { status: 'verified' }) + valueOf(known, { status: 'unverified' }), knownPeers.data?.knownPeers.totalCount);
    assert.ok(valueOf(known, { status: 'verified' }) >= 1, 'the peer we exchanged with');

    const subscribers = family(after, 'remote_network_events_subscribers', 'gauge');
    assert.ok(valueOf(subscribers, { kind: 'handler' }) > 0);
    family(after, 'remote_network_events_subscriber_overflows_total', 'counter');

    assert.equal(valueOf(family(after, 'remote_network_reachability', 'gauge'), { verdict: daemon.node.reachability.reachability }), 1);
    assert.equal(sumOf(family(after, 'remote_network_reachability', 'gauge')), 1, 'one verdict at a time');

    // The API's counters and the exported ones are one number.
    const stats = await gql(daemon.api.url, '{ holePunchStats { attempts successes failures } dht { bep42Violations } }');
    assert.equal(valueOf(family(after, 'remote_network_holepunch_attempts_started_total', 'counter')), stats.data?.holePunchStats.attempts);
    assert.equal(valueOf(family(after, 'remote_network_dht_bep42_violations_total', 'counter')), stats.data?.dht.bep42Violations);
    assert.equal(valueOf(family(after, 'remote_network_metadata_dht_lookups_total', 'counter')), daemon.node.metadataFetcher.lookupCount);

    for (const [name, type] of [
      ['remote_network_connection_limited_total', 'counter'],
      ['remote_network_holepunch_attempts_total', 'counter'],
      ['remote_network_holepunch_duration_seconds', 'histogram'],
      ['remote_network_dht_inbound_queries_total', 'counter'],
      ['remote_network_dht_inbound_datagrams_dropped_total', 'counter'],
      ['remote_network_dht_operations_total', 'counter'],
      ['remote_network_dht_bep44_duration_seconds', 'histogram'],
      ['remote_network_dht_routing_table_nodes', 'gauge'],
      ['remote_network_metadata_cache_lookups_total', 'counter'],
      ['remote_network_relay_sessions', 'gauge'],
      ['remote_network_relay_circuits', 'gauge'],
      ['remote_network_relay_circuits_opened_total', 'counter'],
      ['remote_network_relay_circuit_bytes_total', 'counter'],
      ['remote_network_events_published_total', 'counter'],
      ['remote_network_process_cpu_seconds_total', 'counter'],
      ['remote_network_nodejs_eventloop_lag_seconds', 'gauge'],
    ] as const) {
      family(after, name, type);
    }
    for (const name of after.families.keys()) assert.match(name, /^remote_network_/, 'every metric is prefixed');
  });

  it('BEP 44 puts and gets are counted and timed', async (t) => {
    const daemon = await startTestDaemon(t);
    const item = await daemon.node.metadataPublisher.publish('test');
    assert.ok(item);
    await daemon.node.metadataFetcher.fetch(daemon.node.identity.publicKey, { fresh: true });
    await daemon.node.metadataFetcher.fetch(daemon.node.identity.publicKey);
    const scraped = await scrape(daemon);
    const operations = family(scraped, 'remote_network_dht_operations_total', 'counter');
    assert.ok(sumOf(operations, { operation: 'put' }) >= 1);
    assert.ok(sumOf(operations, { operation: 'get' }) >= 1);
    const durations = family(scraped, 'remote_network_dht_bep44_duration_seconds', 'histogram');
    const timed = (operation: string) => seriesOf(durations, { operation }).reduce((sum, h) => sum + h.count, 0);
    assert.equal(timed('put'), sumOf(operations, { operation: 'put' }), 'every put timed');
    assert.equal(timed('get'), sumOf(operations, { operation: 'get' }), 'every get timed');
    const cache = family(scraped, 'remote_network_metadata_cache_lookups_total', 'counter');
    assert.equal(valueOf(cache, { result: 'hit' }), 1, 'the second read came from the cache');
  });

  it('asks for the token when one is set, like /graphql', async (t) => {
    const daemon = await startTestDaemon(t, { 'api.token': TOKEN });
    const anonymous = await fetch(metricsUrl(daemon));
    assert.equal(anonymous.status, 401);
    assert.equal(
      ((await anonymous.json()) as { errors: Array<{ extensions: { code: string } }> }).errors[0]?.extensions.code,
      'UNAUTHENTICATED',
    );
    const wrong = await fetch(metricsUrl(daemon), { headers: { authorization: 'Bearer not-the-token-at-all' } });
    assert.equal(wrong.status, 401);
    const scraped = await scrape(daemon, { authorization: `Bearer ${TOKEN}` });
    assert.equal(scraped.status, 200);
    assert.ok(scraped.families.has('remote_network_connections'));
  });

  it('refuses a foreign origin and methods other than GET', async (t) => {
    const daemon = await startTestDaemon(t);
    const foreign = await fetch(metricsUrl(daemon), { headers: { origin: 'https://evil.example' } });
    assert.equal(foreign.status, 403);
    const post = await fetch(metricsUrl(daemon), { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    assert.equal(post.status, 405);
  });

  it('is not served with [metrics] enabled = false, and the API counters still count', async (t) => {
    const daemon = await startTestDaemon(t, { 'metrics.enabled': 'false' });
    const response = await fetch(metricsUrl(daemon));
    assert.equal(response.status, 404);
    await response.body?.cancel();
    assert.ok(daemon.node.metrics instanceof NoopMetrics);
    daemon.node.dht.checkNode({ id: Buffer.alloc(20, 0xff), host: '1.2.3.4' });
    const stats = await gql(daemon.api.url, '{ dht { bep42Violations } }');
    assert.equal(stats.data?.dht.bep42Violations, 1);
  });
});

describe('metrics of a relay', { timeout: 120_000 }, () => {
  const { settings, quicAddress } = usePrivateNetwork();

  it('counts sessions, circuits and relayed bytes at the relay, and the relayed dial at the caller', async (t) => {
    const relay = await startTestDaemon(t, settings({ 'relay.relay_mode': 'true', 'relay.relay_keepalive_interval': '1' }));
    const nat = await startTestNode(
      t,
      settings({ 'node.node_type': 'private', 'peer_discovery.bootstrap_peers': quicAddress(relay.node) }),
    );
    await until([relay.node], () => relay.node.relayServer.list().some((s) => s.peerId === nat.peerId));
    nat.discovery.stop();
    const caller = await startTestDaemon(t, settings({ 'peer_discovery.bootstrap_peers': quicAddress(relay.node) }));
    await until([caller.node], () => caller.node.knownPeers.get(nat.peerId) !== undefined);
    caller.node.holePuncher.stop();
    const exchanged = nat.bus.once('peer.exchanged', (e) => e.payload.peerId === caller.node.peerId);
    const result = await gql(caller.api.url, `mutation { connectPeer(peerId: "${nat.peerId}") { viaRelay } }`);
    assert.equal(result.data?.connectPeer.viaRelay, true, JSON.stringify(result.errors));
    await exchanged;

    const atRelay = await scrape(relay);
    assert.equal(valueOf(family(atRelay, 'remote_network_relay_sessions', 'gauge')), 1);
    assert.ok(valueOf(family(atRelay, 'remote_network_relay_circuits', 'gauge')) >= 1, 'the relayed connection holds a circuit');
    const opened = valueOf(family(atRelay, 'remote_network_relay_circuits_opened_total', 'counter'));
    assert.equal(opened, relay.node.relayServer.list()[0]?.totalCircuits);
    const session = relay.node.relayServer.list()[0];
    assert.ok(session);
    // Every relayed byte goes to or comes from the registered client (the caller has no session).
    assert.equal(valueOf(family(atRelay, 'remote_network_relay_circuit_bytes_total', 'counter')), session.bytesIn + session.bytesOut);
    assert.ok(session.bytesIn + session.bytesOut > 0);
    assert.ok(valueOf(family(atRelay, 'remote_network_protocol_received_bytes_total', 'counter'), { protocol: 'relay_register' }) > 0);

    const atCaller = await scrape(caller);
    assert.equal(
      valueOf(family(atCaller, 'remote_network_connection_dials_total', 'counter'), { path: 'relayed', outcome: 'connected' }),
      1,
    );
    assert.ok(valueOf(family(atCaller, 'remote_network_protocol_sent_bytes_total', 'counter'), { protocol: 'relay_connect' }) > 0);

    // On loopback the punch reaches the "NAT" node directly: one attempt, one success, timed.
    const punched = await gql(caller.api.url, `mutation { holePunch(peerId: "${nat.peerId}") { direct } }`);
    assert.equal(punched.data?.holePunch.direct, true, JSON.stringify(punched.errors));
    const afterPunch = await scrape(caller);
    const stats = await gql(caller.api.url, '{ holePunchStats { attempts successes failures lastDurationMs } }');
    assert.deepEqual(
      {
        attempts: valueOf(family(afterPunch, 'remote_network_holepunch_attempts_started_total', 'counter')),
        successes: valueOf(family(afterPunch, 'remote_network_holepunch_attempts_total', 'counter'), { outcome: 'succeeded' }),
      },
      { attempts: 1, successes: 1 },
    );
    assert.equal(stats.data?.holePunchStats.attempts, 1);
    assert.equal(stats.data?.holePunchStats.successes, 1);
    assert.equal(stats.data?.holePunchStats.failures, 0);
    const [duration] = histogramSeries(family(afterPunch, 'remote_network_holepunch_duration_seconds', 'histogram'));
    assert.equal(duration?.count, 1);
    assert.ok(Math.abs((duration?.sum ?? 0) * 1000 - stats.data?.holePunchStats.lastDurationMs) < 2, 'the same duration');
    // The punch dialled directly (winning or losing the simultaneous-dial tie-break: counted either way).
    const directDials = (scraped: Scrape) => sumOf(family(scraped, 'remote_network_connection_dials_total', 'counter'), { path: 'direct' });
    assert.ok(directDials(afterPunch) > directDials(atCaller));
  });
});

describe('metrics implementations', () => {
  it('NoopMetrics hands out usable handles, records nothing and never runs an observation', () => {
    const metrics: Metrics = new NoopMetrics();
    assert.equal(metrics.exposition, null);
    const counter = metrics.counter({ name: 'remote_network_test_total', help: 'test', labelNames: ['outcome'] });
    counter.inc({ outcome: 'ok' });
    counter.inc({ outcome: 'ok' }, 2);
    assert.equal(counter.value({ outcome: 'ok' }), 3, 'counters still count (the API reads some back)');
    assert.equal(counter.value({ outcome: 'failed' }), 0);
    assert.throws(() => counter.inc({ outcome: 'ok' }, -1), RangeError);
    metrics.gauge({ name: 'remote_network_test', help: 'test' }).set(5);
    const histogram = metrics.histogram({ name: 'remote_network_test_seconds', help: 'test', labelNames: ['outcome'], buckets: [1] });
    histogram.observe({ outcome: 'ok' }, 0.5);
    histogram.startTimer()({ outcome: 'ok' });
    let observed = 0;
    metrics.observedGauge({ name: 'remote_network_observed', help: 'test', observe: () => (observed += 1) });
    metrics.observedCounter({ name: 'remote_network_observed_total', help: 'test', observe: () => (observed += 1) });
    assert.equal(observed, 0, 'an observation costs nothing: it is never called');
    // The same name twice is fine: nothing is registered anywhere.
    metrics.counter({ name: 'remote_network_test_total', help: 'test' }).inc();
  });

  it('PrometheusMetrics keeps one registry per instance and exports what the handles hold', async () => {
    const first = new PrometheusMetrics();
    const second = new PrometheusMetrics();
    const definition = { name: 'remote_network_test_total', help: 'test', labelNames: ['outcome'] } as const;
    const counter = first.counter(definition);
    second.counter(definition).inc({ outcome: 'ok' }, 7);
    counter.inc({ outcome: 'ok' }, 2);
    let calls = 0;
    first.observedGauge({
      name: 'remote_network_test_items',
      help: 'test',
      labelNames: ['kind'],
      observe: (record) => {
        calls += 1;
        record({ kind: 'a' }, 4);
      },
    });
    first.histogram({ name: 'remote_network_test_seconds', help: 'test', buckets: [0.1, 1] }).observe(0.5);
    const families = parsePrometheusText(await first.exposition.text());
    assert.equal(calls, 1, 'observed at scrape time');
    assert.equal(families.get('remote_network_test_total')?.samples[0]?.value, 2, "its own value, not the other registry's");
    assert.equal(families.get('remote_network_test_items')?.samples[0]?.value, 4);
    const seconds = families.get('remote_network_test_seconds');
    assert.ok(seconds);
    const [histogram] = histogramSeries(seconds);
    assert.equal(histogram?.buckets.get(0.1), 0);
    assert.equal(histogram?.buckets.get(1), 1);
    assert.equal(histogram?.count, 1);
    assert.equal(histogram?.sum, 0.5);
    assert.equal(counter.value({ outcome: 'ok' }), 2);
    assert.throws(() => first.counter(definition), /already been registered/, 'a duplicate name in one registry is an error');
  });
});
