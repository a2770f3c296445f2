import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { startTestDaemon, startTestNode } from './helpers/daemon.ts';
import { gql } from './helpers/graphql.ts';
import { tempDir } from './helpers/temp.ts';

const FETCH = 'mutation F($peer: PeerId!, $service: String!) { fetchData(peerId: $peer, serviceId: $service) { serviceId sha256 size } }';

describe('DATA services by content', () => {
  it('serves a DATA file to an allowed peer, verified into its store; others learn nothing; a changed file is refused', async (t) => {
    const fetcher = await startTestDaemon(t);
    const server = await startTestNode(t);
    const dir = tempDir(t);
    const file = join(dir, 'dataset.bin');
    const content = Buffer.alloc(1_500_000, 7);
    writeFileSync(file, content);
    const open = await server.services.register({ kind: 'DATA', name: 'dataset', path: file });
    await server.services.register({ kind: 'DATA', name: 'secret', path: file, allowedPeers: ['00'.repeat(20)] });
    await fetcher.node.connections.connect({ host: '127.0.0.1', port: server.quicPort }, server.peerId);

    const fetched = await gql(fetcher.api.url, FETCH, { peer: server.peerId, service: 'dataset' });
    assert.equal(fetched.errors, undefined, JSON.stringify(fetched.errors));
    const sha256 = createHash('sha256').update(content).digest('hex');
    assert.deepEqual(fetched.data?.fetchData, { serviceId: open.id, sha256, size: content.length });
    assert.ok(readFileSync(join(fetcher.node.dataDir, 'blobs', sha256)).equals(content));

    // Outside the allow-list: answered as if there were no such service.
    const refused = await gql(fetcher.api.url, FETCH, { peer: server.peerId, service: 'secret' });
    assert.equal(refused.errors?.[0]?.extensions?.code, 'UNKNOWN_SERVICE');

    writeFileSync(file, 'edited');
    const changed = await gql(fetcher.api.url, FETCH, { peer: server.peerId, service: 'dataset' });
    assert.equal(changed.errors?.[0]?.extensions?.code, 'DATA_CHANGED');
  });
});
