import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { startTestDaemon, startTestNode } from './helpers/daemon.ts';
import { gql } from './helpers/graphql.ts';

interface Refusal {
  readonly status: number;
  readonly code: unknown;
  readonly message: string;
}

async function refusal(response: Response): Promise<Refusal> {
  const body = (await response.json()) as { errors?: Array<{ message: string; extensions?: { code?: unknown } }> };
  return { status: response.status, code: body.errors?.[0]?.extensions?.code, message: body.errors?.[0]?.message ?? '' };
}

describe('CSRF prevention', () => {
  it('never runs a mutation sent as a form, multipart, text/plain or GET request; JSON POST still does', async (t) => {
    const daemon = await startTestDaemon(t);
    const peer = await startTestNode(t);
    await daemon.node.connections.connect({ host: '127.0.0.1', port: peer.quicPort }, peer.peerId);
    const connected = () => daemon.node.connections.byPeer(peer.peerId) !== undefined;
    assert.ok(connected());
    const mutation = `mutation { disconnectPeer(peerId: "${peer.peerId}") }`;

    // What an HTML form on any web site can make a browser send, with no Origin header (as some
    // browsers and privacy settings do).
    const multipart = new FormData();
    multipart.set('operations', JSON.stringify({ query: mutation }));
    multipart.set('map', '{}');
    const forged: Array<[string, RequestInit]> = [
      ['form-encoded', { method: 'POST', body: new URLSearchParams({ query: mutation }) }],
      ['multipart', { method: 'POST', body: multipart }],
      ['text/plain', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: JSON.stringify({ query: mutation }) }],
      ['no content type', { method: 'POST', body: new Blob([JSON.stringify({ query: mutation })]) }],
    ];
    for (const [name, init] of forged) {
      const response = await fetch(daemon.api.url, init);
      const refused = await refusal(response);
      assert.equal(refused.status, 415, name);
      assert.equal(refused.code, 'UNSUPPORTED_MEDIA_TYPE', name);
      assert.match(refused.message, /POST bodies must be application\/json, .*\(CSRF\)/, name);
      assert.ok(connected(), `${name}: the mutation did not run`);
    }
    const viaGet = await fetch(`${daemon.api.url}?query=${encodeURIComponent(mutation)}`, {
      headers: { accept: 'application/graphql-response+json' },
    });
    assert.equal(viaGet.status, 405, 'GET never runs a mutation');
    assert.ok(connected(), 'GET: the mutation did not run');

    const json = await gql<{ disconnectPeer: boolean }>(daemon.api.url, mutation);
    assert.equal(json.status, 200);
    assert.equal(json.data?.disconnectPeer, true, 'a JSON POST runs the mutation');
    assert.equal(connected(), false);
  });

  it('refuses queries in simple-request bodies too, and keeps GET queries and GraphQL bodies working', async (t) => {
    const daemon = await startTestDaemon(t);
    const query = '{ node { peerId } }';
    const form = await fetch(daemon.api.url, { method: 'POST', body: new URLSearchParams({ query }) });
    assert.equal((await refusal(form)).code, 'UNSUPPORTED_MEDIA_TYPE');

    const viaGet = await fetch(`${daemon.api.url}?query=${encodeURIComponent(query)}`);
    assert.equal(viaGet.status, 200);
    assert.equal(((await viaGet.json()) as { data: { node: { peerId: string } } }).data.node.peerId, daemon.node.peerId);

    for (const contentType of ['application/graphql', 'application/json; charset=utf-8', 'application/graphql+json']) {
      const body = contentType === 'application/graphql' ? query : JSON.stringify({ query });
      const response = await fetch(daemon.api.url, { method: 'POST', headers: { 'content-type': contentType }, body });
      assert.equal(response.status, 200, contentType);
      assert.equal(((await response.json()) as { data: { node: { peerId: string } } }).data.node.peerId, daemon.node.peerId);
    }
  });
});
