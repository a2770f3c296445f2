import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import bencode from 'bencode';
import { MAX_BEP44_VALUE_BYTES } from '../src/node/dht/constants.ts';
import { decodeMetadata, encodeMetadataChecked } from '../src/node/metadata/peer-metadata.ts';
import { withRelayCapability } from '../src/node/metadata/self-metadata.ts';
import { serviceCapabilities } from '../src/node/services/service-summary.ts';
import { startTestNode, until } from './helpers/daemon.ts';
import { usePrivateNetwork } from './helpers/network.ts';

/** A 60-character service name, unique by `i`: with its `svc:` prefix the longest entry a reader accepts. */
const longName = (i: number) => `svc-${String(i).padStart(4, '0')}-${'x'.repeat(51)}`;

describe('services summary in the BEP 44 metadata', () => {
  const network = usePrivateNetwork();

  it('publishes 200 services within 1000 bytes: as many as fit, then svc+:N; another node reads it from the DHT', async (t) => {
    const [a, reader] = await Promise.all([startTestNode(t, network.settings()), startTestNode(t, network.settings())]);
    const echo = await a.services.register({ kind: 'STANDALONE', name: 'echo', executable: '/bin/echo' });
    await until([a], () => a.metadataPublisher.current.capabilities.includes('svc:echo'), 10_000);
    // Not advertised: a service with an allow-list.
    await a.services.register({ kind: 'STANDALONE', name: 'hidden', executable: '/bin/echo', allowedPeers: [reader.peerId] });
    for (let i = 0; i < 199; i++)
      await a.services.register({ kind: 'STANDALONE', name: `s${i}-${'y'.repeat(50)}`, executable: '/bin/echo' });
    await until([a], () => a.metadataPublisher.current.capabilities.some((c) => c.startsWith('svc+:')), 10_000);

    const metadata = a.metadataPublisher.current;
    const listed = metadata.capabilities.filter((c) => c.startsWith('svc:'));
    const more = Number(metadata.capabilities.find((c) => c.startsWith('svc+:'))?.slice('svc+:'.length));
    assert.equal(listed.length + more, 200, 'every public service is listed or counted, the allow-listed one is neither');
    assert.ok(listed.length >= 5, `only ${listed.length} listed`);
    assert.ok(!metadata.capabilities.some((c) => c.includes('hidden')));
    const { size } = encodeMetadataChecked(metadata);
    assert.ok(size <= MAX_BEP44_VALUE_BYTES, `${size} bytes`);

    // Published (a new sequence after the changes) and readable by another node, whose reader accepts it.
    const sequence = a.metadataPublisher.currentSequence;
    await until(
      [a],
      () => (a.metadataPublisher.lastPublish?.sequence ?? 0) >= sequence && (a.metadataPublisher.lastPublish?.nodesAccepted ?? 0) > 0,
      30_000,
    );
    const fetched = await reader.metadataFetcher.fetch(a.identity.publicKey, { fresh: true });
    assert.deepEqual(fetched?.metadata.capabilities, metadata.capabilities);

    // Removing services republishes the summary.
    await a.services.remove(echo.id);
    await until([a], () => !a.metadataPublisher.current.capabilities.includes('svc:echo'), 10_000);
  });

  it('stays within the limit with the longest names and every variable field at its longest', () => {
    const services = Array.from({ length: 300 }, (_, i) => ({
      kind: 'STANDALONE' as const,
      id: String(i).padStart(32, '0'),
      name: longName(i),
      description: '',
      allowedPeers: null,
      createdAt: new Date(),
      source: 'api' as const,
      executable: '/bin/echo',
      args: [],
      parameters: [],
      interfaces: { stdin: false, stdout: true, stderr: true, inputs: [], outputs: [] },
      limits: {},
    }));
    const content = {
      publicIp: '255.255.255.255',
      privateIp: '255.255.255.255',
      publicPort: 65535,
      privatePort: 65535,
      nodeType: 'public' as const,
      isRelay: true,
      usingRelay: true,
      connectedRelay: 'f'.repeat(40),
      relaySessionId: 'f'.repeat(16),
      relayAddress: '255.255.255.255:65535',
      protocols: ['remote-network/1'],
      capabilities: ['relay'],
    };
    const capabilities = ['relay', ...serviceCapabilities(content, services)];
    const metadata = { ...content, capabilities, peerId: 'f'.repeat(40), timestamp: 9_999_999_999, version: 1 };
    const { value, size } = encodeMetadataChecked(metadata);
    assert.ok(size <= MAX_BEP44_VALUE_BYTES, `${size} bytes`);
    assert.match(capabilities.at(-1) ?? '', /^svc\+:\d+$/);
    assert.ok(capabilities.length > 3, JSON.stringify(capabilities));
    // What a reader accepts (at most 16 entries of at most 64 characters).
    assert.deepEqual(decodeMetadata(bencode.decode(bencode.encode(value))).capabilities, capabilities);
  });

  it('a reachability verdict sets or clears the relay flag and keeps the services summary', () => {
    assert.deepEqual(withRelayCapability(['svc:echo', 'svc+:3'], true), ['relay', 'svc:echo', 'svc+:3']);
    assert.deepEqual(withRelayCapability(['relay', 'svc:echo'], false), ['svc:echo']);
  });
});
