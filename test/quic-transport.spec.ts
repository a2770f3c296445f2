import 'reflect-metadata';
import assert from 'node:assert/strict';
import { createPrivateKey, randomBytes, randomFillSync, webcrypto } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { setTimeout as delay } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { QUICClient, QUICSocket, errors as quicErrors } from '@matrixai/quic';
import * as x509 from '@peculiar/x509';
import type { HostPort } from '../src/node/base/address.ts';
import { type NodeIdentity, loadOrCreateIdentity } from '../src/node/identity/key-store.ts';
import { createLogger } from '../src/node/base/logger.ts';
import { certificateNeedsRenewal, createNodeCertificate, publicKeyFromCertificate } from '../src/node/quic/certificate.ts';
import { ALPN_PROTOCOL, CERT_RENEW_BEFORE_MS, CERT_VALIDITY_MS } from '../src/node/quic/constants.ts';
import {
  BindError,
  CertificateKeyError,
  DialFailedError,
  DialTimeoutError,
  PeerIdMismatchError,
  TransportNotRunningError,
} from '../src/node/quic/errors.ts';
import { libraryLogger } from '../src/node/quic/library-logger.ts';
import { quicLibraryPatched } from '../src/node/quic/library-patch.ts';
import { checkPeerCertificates, peerFromCertificates } from '../src/node/quic/peer-certificate.ts';
import { CLOSE_REASON_IDLE_TIMEOUT } from '../src/node/quic/quic-connection.ts';
import { CLOSE_REASON_TRANSPORT_STOPPED, QuicTransport, type QuicTransportOptions } from '../src/node/quic/quic-transport.ts';
import type { PeerConnection, PeerStream } from '../src/node/quic/types.ts';
import { tempDir } from './helpers/temp.ts';

type TestContext = { after(fn: () => unknown): void };

const logger = createLogger('silent');

function newIdentity(t: TestContext) {
  return loadOrCreateIdentity(tempDir(t, 'rn-quic-')).identity;
}

interface TestNode {
  readonly transport: QuicTransport;
  readonly identity: NodeIdentity;
  readonly address: HostPort;
}

/** A started transport on 127.0.0.1 with a fresh identity, stopped when the test ends. */
async function startNode(t: TestContext, options: Partial<QuicTransportOptions> = {}): Promise<TestNode> {
  const identity = newIdentity(t);
  const transport = newTransport(identity, options);
  t.after(() => transport.stop());
  await transport.start();
  return { transport, identity, address: { host: '127.0.0.1', port: transport.port } };
}

function newTransport(identity: NodeIdentity, options: Partial<QuicTransportOptions> = {}): QuicTransport {
  return new QuicTransport({ identity, host: '127.0.0.1', port: 0, logger, idleTimeoutMs: 30_000, ...options });
}

/** Resolves with the next inbound connection the transport reports. */
function nextConnection(transport: QuicTransport): Promise<PeerConnection> {
  return new Promise((resolve) => transport.onConnection(resolve));
}

async function readAll(stream: PeerStream): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  const reader = stream.readable.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
  }
  return Buffer.concat(chunks);
}

async function writeAll(stream: PeerStream, data: Uint8Array): Promise<void> {
  const writer = stream.writable.getWriter();
  await writer.write(data);
  await writer.close();
}

/** Echoes every stream the connection receives (until the remote ends its side). */
function echo(connection: PeerConnection): void {
  connection.onStream((stream) => {
    void (async () => {
      const reader = stream.readable.getReader();
      const writer = stream.writable.getWriter();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        await writer.write(value);
      }
      await writer.close();
    })();
  });
}

describe('QUIC transport', () => {
  it('connects two nodes, proves both peer ids and carries a stream both ways', async (t) => {
    const dialer = await startNode(t);
    const listener = await startNode(t);
    const accepted = nextConnection(listener.transport);

    const connection = await dialer.transport.dial(listener.address, { expectedPeerId: listener.identity.peerId });
    const inbound = await accepted;
    echo(inbound);

    assert.equal(connection.remotePeerId, listener.identity.peerId);
    assert.deepEqual(connection.remotePublicKey, listener.identity.publicKey);
    assert.equal(connection.direction, 'outbound');
    assert.deepEqual(connection.remoteAddress, listener.address);
    assert.equal(inbound.remotePeerId, dialer.identity.peerId);
    assert.deepEqual(inbound.remotePublicKey, dialer.identity.publicKey);
    assert.equal(inbound.direction, 'inbound');
    assert.deepEqual(inbound.remoteAddress, dialer.address, 'dials leave from the listening socket');
    assert.notEqual(connection.id, inbound.id);

    const payload = randomBytes(8 * 1024);
    const stream = await connection.openStream();
    const [, echoed] = await Promise.all([writeAll(stream, payload), readAll(stream)]);
    assert.deepEqual(echoed, payload);
    const rtt = connection.rttMs();
    assert.ok(rtt === null || (rtt >= 0 && rtt < 1000), `plausible RTT, got ${rtt}`);
  });

  it('sends what a stream writes in one event-loop turn together (the library patch)', async (t) => {
    assert.ok(quicLibraryPatched(), 'the patches under patches/ are applied (npm install runs patch-package)');
    const dialer = await startNode(t);
    const listener = await startNode(t);
    const accepted = nextConnection(listener.transport);
    const connection = await dialer.transport.dial(listener.address, { expectedPeerId: listener.identity.peerId });
    const chunks: number[] = [];
    const received = new Promise<void>((resolve) => {
      void accepted.then((inbound) =>
        inbound.onStream((stream) => {
          void (async () => {
            const reader = stream.readable.getReader();
            for (;;) {
              const { done, value } = await reader.read();
              if (done) break;
              chunks.push(value.byteLength);
            }
            resolve();
          })();
        }),
      );
    });
    const stream = await connection.openStream();
    const writer = stream.writable.getWriter();
    // Twenty small writes and the end, none awaited: the unpatched library flushed each write
    // as its own packet, and the reader saw twenty chunks.
    const writes = Array.from({ length: 20 }, () => writer.write(Buffer.alloc(10, 1)));
    await Promise.all([...writes, writer.close(), received]);
    assert.equal(
      chunks.reduce((a, b) => a + b, 0),
      200,
    );
    assert.ok(chunks.length <= 2, `20 writes arrived in ${chunks.length} chunks`);
  });

  it('holds inbound streams that arrive before the stream handler is set', async (t) => {
    const dialer = await startNode(t);
    const listener = await startNode(t);
    listener.transport.onConnection((inbound) => {
      void (async () => {
        const pushed = await inbound.openStream();
        await writeAll(pushed, Buffer.from('pushed first'));
      })();
      echo(inbound);
    });
    const connection = await dialer.transport.dial(listener.address);
    // The echo is sent after the pushed stream's data, and loopback keeps the packet order, so by
    // the time it is read the pushed stream has reached the connection with no handler set.
    const probe = await connection.openStream();
    const [, reply] = await Promise.all([writeAll(probe, Buffer.from('ping')), readAll(probe)]);
    assert.equal(reply.toString(), 'ping');

    let delivered: PeerStream | undefined;
    connection.onStream((stream) => {
      delivered = stream;
    });
    assert.ok(delivered, 'the buffered stream is handed over as soon as the handler is set');
    assert.equal((await readAll(delivered)).toString(), 'pushed first');
  });

  it('rejects a dial whose proven peer id differs from the expected one, and keeps no connection', async (t) => {
    const dialer = await startNode(t);
    const listener = await startNode(t);
    const listenerSide: PeerConnection[] = [];
    listener.transport.onConnection((connection) => listenerSide.push(connection));
    const wrongPeerId = 'ab'.repeat(20);

    await assert.rejects(dialer.transport.dial(listener.address, { expectedPeerId: wrongPeerId }), (error: unknown) => {
      assert.ok(error instanceof PeerIdMismatchError, `expected PeerIdMismatchError, got ${String(error)}`);
      assert.equal(error.code, 'PEER_ID_MISMATCH');
      assert.equal(error.expectedPeerId, wrongPeerId);
      assert.equal(error.actualPeerId, listener.identity.peerId);
      assert.ok(error.message.includes(wrongPeerId) && error.message.includes(listener.identity.peerId));
      return true;
    });
    assert.equal(dialer.transport.connections().length, 0);
    // The listener may have seen its side of the handshake complete before the dialer refused
    // it: then it must see that connection closed.
    await Promise.all(listenerSide.map((connection) => connection.closed));
    assert.equal(listener.transport.connections().length, 0);

    // The shared socket is unharmed: the right expectation connects.
    const ok = await dialer.transport.dial(listener.address, { expectedPeerId: listener.identity.peerId });
    assert.equal(ok.remotePeerId, listener.identity.peerId);
  });

  it('refuses a peer whose certificate key is not Ed25519; the listener never reports it', async (t) => {
    const listener = await startNode(t);
    let reported = 0;
    listener.transport.onConnection(() => {
      reported += 1;
    });
    const { keyPem, certPem } = await ecdsaCertificate();
    const socket = new QUICSocket({ logger: libraryLogger(logger) });
    t.after(() => socket.stop({ force: true }));
    await socket.start({ host: '127.0.0.1', port: 0 });

    let alert: number | undefined;
    try {
      const client = await QUICClient.createQUICClient(
        {
          ...listener.address,
          socket,
          crypto: { ops: { randomBytes: async (data) => void randomFillSync(new Uint8Array(data)) } },
          config: {
            key: keyPem,
            cert: certPem,
            verifyPeer: true,
            verifyCallback: async () => undefined,
            applicationProtos: [ALPN_PROTOCOL],
          },
          logger: libraryLogger(logger),
        },
        { timer: 5_000 },
      );
      // This client accepts any server, so its own side of the handshake completes before the
      // listener has checked its certificate; the listener then closes it.
      await client.closedP;
      alert = client.connection.getConnectionError()?.errorCode;
      await client.destroy({ force: true });
    } catch (error) {
      assert.ok(!(error instanceof quicErrors.ErrorQUICClientCreateTimeout), 'refused, not ignored');
    }
    if (alert !== undefined) assert.equal(alert, 0x100 + 43, 'TLS alert unsupported_certificate');
    assert.equal(reported, 0);
    assert.equal(listener.transport.connections().length, 0);
  });

  it('resolves `closed` on both sides when one side closes', async (t) => {
    const dialer = await startNode(t);
    const listener = await startNode(t);
    const accepted = nextConnection(listener.transport);
    const connection = await dialer.transport.dial(listener.address);
    const inbound = await accepted;

    await connection.close('done here');
    assert.equal(await connection.closed, 'done here');
    assert.equal(await inbound.closed, 'remote closed: done here');
    assert.equal(dialer.transport.connections().length, 0);
    assert.equal(listener.transport.connections().length, 0);
    await assert.rejects(connection.openStream(), { code: 'QUIC_CONNECTION_CLOSED' });
  });

  it('closes an idle connection after the idle timeout when keep-alive is off', async (t) => {
    const dialer = await startNode(t, { idleTimeoutMs: 300, keepAliveIntervalMs: 0 });
    const listener = await startNode(t, { idleTimeoutMs: 300, keepAliveIntervalMs: 0 });
    const accepted = nextConnection(listener.transport);
    const connection = await dialer.transport.dial(listener.address);
    const inbound = await accepted;
    assert.equal(await connection.closed, CLOSE_REASON_IDLE_TIMEOUT);
    assert.equal(await inbound.closed, CLOSE_REASON_IDLE_TIMEOUT);
  });

  it('keeps a quiet connection open past the idle timeout with keep-alive pings', async (t) => {
    const dialer = await startNode(t, { idleTimeoutMs: 400 });
    const listener = await startNode(t, { idleTimeoutMs: 400 });
    const accepted = nextConnection(listener.transport);
    const connection = await dialer.transport.dial(listener.address);
    const inbound = await accepted;
    // Elapsed time is what is under test here: three idle timeouts with no application traffic.
    const outcome = await Promise.race([connection.closed, inbound.closed, delay(1_200, 'still open')]);
    assert.equal(outcome, 'still open');
    assert.equal(dialer.transport.connections().length, 1);
  });

  it('stop() closes every connection, is idempotent, and frees the port', async (t) => {
    const listener = await startNode(t);
    const dialerA = await startNode(t);
    const dialerB = await startNode(t);
    const inbound: PeerConnection[] = [];
    // A dialer finishes its handshake half a round trip before the listener reports it.
    const bothAccepted = new Promise<void>((resolve) =>
      listener.transport.onConnection((connection) => {
        if (inbound.push(connection) === 2) resolve();
      }),
    );
    const outbound = await Promise.all([dialerA.transport.dial(listener.address), dialerB.transport.dial(listener.address)]);
    await bothAccepted;

    await Promise.all([listener.transport.stop(), listener.transport.stop()]);
    await listener.transport.stop();
    assert.equal(listener.transport.port, 0);
    assert.equal(listener.transport.connections().length, 0);
    for (const connection of inbound) assert.equal(await connection.closed, CLOSE_REASON_TRANSPORT_STOPPED);
    for (const connection of outbound) {
      assert.equal(await connection.closed, `remote closed: ${CLOSE_REASON_TRANSPORT_STOPPED}`);
    }
    await assert.rejects(listener.transport.dial(dialerA.address), TransportNotRunningError);

    await listener.transport.start();
    assert.notEqual(listener.transport.port, 0, 'a stopped transport starts again');
    await listener.transport.stop();

    const successor = await startNode(t, { port: listener.address.port });
    assert.equal(successor.transport.port, listener.address.port);
    const accepted = nextConnection(successor.transport);
    const connection = await dialerA.transport.dial(listener.address);
    assert.equal(connection.remotePeerId, successor.identity.peerId);
    await accepted;
  });

  it('refuses to start on a port that is taken, with a typed error', async (t) => {
    const node = await startNode(t);
    const second = newTransport(newIdentity(t), { port: node.transport.port });
    await assert.rejects(second.start(), BindError);
    assert.equal(second.running, false);
    await second.stop();
  });

  it('reports IPv4 peers of a dual-stack socket with plain IPv4 addresses', async (t) => {
    const listener = await startNode(t, { host: '::' });
    const dialer = await startNode(t, { host: '::' });
    const accepted = nextConnection(listener.transport);
    const connection = await dialer.transport.dial({ host: '127.0.0.1', port: listener.transport.port });
    assert.deepEqual(connection.remoteAddress, { host: '127.0.0.1', port: listener.transport.port });
    assert.deepEqual((await accepted).remoteAddress, { host: '127.0.0.1', port: dialer.transport.port });
  });

  it('times out a dial to a port where nobody answers', async (t) => {
    const dialer = await startNode(t);
    const silent = createSocket('udp4');
    t.after(() => new Promise<void>((resolve) => silent.close(() => resolve())));
    silent.bind(0, '127.0.0.1');
    await once(silent, 'listening');
    const started = performance.now();
    await assert.rejects(
      dialer.transport.dial({ host: '127.0.0.1', port: silent.address().port }, { timeoutMs: 200 }),
      (error: unknown) => error instanceof DialTimeoutError && error.code === 'QUIC_DIAL_TIMEOUT',
    );
    assert.ok(performance.now() - started < 2_000);
    assert.equal(dialer.transport.connections().length, 0);
  });

  it('refuses to connect to itself', async (t) => {
    const node = await startNode(t);
    node.transport.onConnection(() => assert.fail('a self connection must not be reported'));
    await assert.rejects(node.transport.dial(node.address), DialFailedError);
  });

  it('sends raw UDP from the listening port', async (t) => {
    const node = await startNode(t);
    const receiver = createSocket('udp4');
    t.after(() => new Promise<void>((resolve) => receiver.close(() => resolve())));
    receiver.bind(0, '127.0.0.1');
    await once(receiver, 'listening');
    const received = once(receiver, 'message');
    await node.transport.sendRaw(Buffer.from('punch'), { host: '127.0.0.1', port: receiver.address().port });
    const [message, from] = (await received) as [Buffer, { port: number }];
    assert.equal(message.toString(), 'punch');
    assert.equal(from.port, node.transport.port);
  });
});

describe('QUIC certificate', () => {
  it('is self-signed over the node key and yields the raw Ed25519 key back', async (t) => {
    const identity = newIdentity(t);
    const now = new Date();
    const certificate = await createNodeCertificate(identity, now);
    assert.deepEqual(publicKeyFromCertificate(certificate.der), identity.publicKey);
    assert.deepEqual(publicKeyFromCertificate(certificate.certPem), identity.publicKey);
    assert.ok(certificate.notBefore.getTime() < now.getTime());
    assert.ok(Math.abs(certificate.notAfter.getTime() - (now.getTime() + CERT_VALIDITY_MS)) < 1_000);
    assert.equal(certificateNeedsRenewal(certificate, now), false);
    const nearExpiry = new Date(certificate.notAfter.getTime() - CERT_RENEW_BEFORE_MS + 1_000);
    assert.equal(certificateNeedsRenewal(certificate, nearExpiry), true);
  });

  it('checks a peer certificate once, and its validity period every time', async (t) => {
    const identity = newIdentity(t);
    const certificate = await createNodeCertificate(identity);
    const chain = [new Uint8Array(certificate.der)];
    const first = checkPeerCertificates(chain);
    assert.ok(first.ok);
    assert.equal(first.peer.peerId, identity.peerId);
    const again = checkPeerCertificates(chain);
    assert.ok(again.ok && again.peer.peerId === identity.peerId);
    // The remembered certificate still expires.
    const late = checkPeerCertificates(chain, new Date(certificate.notAfter.getTime() + 1_000));
    assert.equal(late.ok, false);
    assert.match(late.ok ? '' : late.reason, /outside its validity/);
    // Other bytes are checked in full: a flipped signature bit is refused.
    const tampered = new Uint8Array(certificate.der);
    tampered[tampered.length - 1] = (tampered[tampered.length - 1] ?? 0) ^ 1;
    assert.equal(checkPeerCertificates([tampered]).ok, false);
    assert.equal(peerFromCertificates(chain).peerId, identity.peerId);
  });

  it('refuses any other key type clearly', async () => {
    const { certPem } = await ecdsaCertificate();
    assert.throws(
      () => publicKeyFromCertificate(certPem),
      (error: unknown) => {
        assert.ok(error instanceof CertificateKeyError);
        assert.match(error.message, /ec, not ed25519/);
        return true;
      },
    );
    assert.throws(() => publicKeyFromCertificate(new Uint8Array([1, 2, 3])), CertificateKeyError);
  });
});

/** A self-signed ECDSA P-256 certificate: valid TLS, but no Remote Network identity. */
async function ecdsaCertificate(): Promise<{ keyPem: string; certPem: string }> {
  const algorithm = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = await webcrypto.subtle.generateKey(algorithm, true, ['sign', 'verify']);
  const certificate = await x509.X509CertificateGenerator.createSelfSigned(
    { name: 'CN=not-ed25519', keys, signingAlgorithm: algorithm },
    webcrypto as unknown as Crypto,
  );
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const keyPem = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }).export({ format: 'pem', type: 'pkcs8' });
  return { keyPem: keyPem.toString(), certPem: certificate.toString('pem') };
}
