import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { ToolEvent } from './fixtures/nat/udp-tool.ts';
import {
  type LabHost,
  type LabProcess,
  type NatLab,
  createNatLab,
  labResidue,
  labSkip,
  natLabSupport,
  openEventStream,
  parseJsonLine,
  startLabNode,
  suiteCleanups,
} from './helpers/nat-lab.ts';

const UDP_TOOL = fileURLToPath(new URL('./fixtures/nat/udp-tool.ts', import.meta.url));
const SERVER_PORT = 3478;

const support = natLabSupport();
const skip = labSkip(support);

type EventOf<K extends ToolEvent['event']> = Extract<ToolEvent, { event: K }>;

function isEvent<K extends ToolEvent['event']>(value: unknown, kind: K): value is EventOf<K> {
  return typeof value === 'object' && value !== null && (value as { event?: unknown }).event === kind;
}

function udpTool(args: readonly string[]): string[] {
  return [process.execPath, '--import', 'tsx', UDP_TOOL, ...args];
}

/** The first `kind` event a running tool prints. */
async function toolEvent<K extends ToolEvent['event']>(tool: LabProcess, kind: K): Promise<EventOf<K>> {
  const line = await tool.waitForLine((l) => isEvent(parseJsonLine(l), kind), { what: `${kind} event` });
  return parseJsonLine(line) as EventOf<K>;
}

/** Runs a tool to completion and returns its last event, which must be `kind`. */
async function runTool<K extends ToolEvent['event']>(lab: NatLab, host: LabHost, kind: K, args: string[]): Promise<EventOf<K>> {
  const { stdout } = await lab.exec(host, udpTool(args));
  const last = parseJsonLine(stdout.trim().split('\n').at(-1) ?? '');
  assert.ok(isEvent(last, kind), `${args[0]} on ${host.name} ended with ${stdout.trim() || 'nothing'}, not ${kind}`);
  return last;
}

const hostOf = (address: string) => address.slice(0, address.lastIndexOf(':'));
const portOf = (address: string) => Number(address.slice(address.lastIndexOf(':') + 1));

describe('NAT lab (network namespaces + nftables)', { skip, timeout: 60_000 }, () => {
  let lab: NatLab;
  let pub: LabHost;
  let coneA: LabHost;
  let coneB: LabHost;
  let symA: LabHost;
  let symB: LabHost;
  let serverAddress: string;
  const cleanups = suiteCleanups();
  after(() => cleanups.runAll());

  before(async () => {
    if (!support.ok) assert.fail(`CI is set, so the NAT lab must work here, but: ${support.reason}`);
    lab = await createNatLab(cleanups.suite);
    [pub, coneA, coneB, symA, symB] = await Promise.all([
      lab.addPublicHost('pub'),
      lab.addPrivateHost('cone-a', { nat: 'cone' }),
      lab.addPrivateHost('cone-b', { nat: 'cone' }),
      lab.addPrivateHost('sym-a', { nat: 'symmetric' }),
      lab.addPrivateHost('sym-b', { nat: 'symmetric' }),
    ]);
    const server = lab.spawn(pub, udpTool(['server', '--port', String(SERVER_PORT), '--ms', '60000']));
    await toolEvent(server, 'ready');
    serverAddress = `${pub.address}:${SERVER_PORT}`;
  });

  it('translates a private host to its router wan address, and the reply comes back', async () => {
    await Promise.all(
      [coneA, symA].map(async (host) => {
        const { address } = await runTool(lab, host, 'observed', ['probe', '--to', serverAddress, '--ms', '5000']);
        assert.equal(hostOf(address), host.publicAddress, `${host.name} is seen as its router`);
        assert.notEqual(host.publicAddress, host.address);
      }),
    );
  });

  it('drops unsolicited packets at the router, yet delivers replies on the port once the host opened it', async () => {
    const port = 41000;
    await Promise.all(
      [coneB, symB].map(async (host) => {
        const listener = lab.spawn(host, udpTool(['listen', '--port', String(port), '--to', serverAddress, '--ms', '10000']));
        await toolEvent(listener, 'ready');
        const sent = await runTool(lab, pub, 'sent', ['send', '--to', `${host.publicAddress}:${port}`, '--count', '5']);
        assert.equal(sent.count, 5);
        // The server's answer takes the same wan → router → LAN path: had the unsolicited packets
        // been let through, they would have arrived before it.
        listener.write('go\n');
        const heard = await toolEvent(listener, 'heard');
        assert.equal(heard.unsolicited, 0, `${host.name}: nothing unsolicited got through its router`);
        assert.equal(hostOf(heard.observed), host.publicAddress);
        if (host.router?.nat === 'cone') assert.equal(portOf(heard.observed), port, 'a cone NAT keeps the port');
      }),
    );
  });

  it('punches a plain-UDP hole between two cone NATs, and fails between two symmetric NATs', async () => {
    // --ms: the punching window after the server paired the two (a cone pair needs a few ms here).
    const punchPair = (session: string, pair: [LabHost, LabHost], ms: number) =>
      Promise.all(
        pair.map((host) =>
          runTool(lab, host, 'punched', [
            'punch',
            '--to',
            serverAddress,
            '--port',
            '40000',
            '--id',
            host.name,
            '--session',
            session,
            '--ms',
            String(ms),
          ]),
        ),
      );
    const [cone, symmetric] = await Promise.all([punchPair('cone', [coneA, coneB], 5000), punchPair('symmetric', [symA, symB], 1000)]);

    for (const side of cone) {
      assert.ok(side.heardPeer && side.peerHeardUs, `cone: ${JSON.stringify(side)}`);
      assert.equal(portOf(side.you), 40000, 'the server saw the cone host keep its port');
    }
    for (const side of symmetric) {
      assert.ok(side.peer !== '', `symmetric: the server paired the hosts: ${JSON.stringify(side)}`);
      assert.equal(side.heardPeer, false, `symmetric: ${JSON.stringify(side)}`);
    }
  });

  it('runs real nodes: the API answers over the management link, and a NATed node reaches a public one through its router', async (t) => {
    const [publicNode, natNode] = await Promise.all([
      startLabNode(t, lab, pub, { 'node.node_type': 'public' }),
      startLabNode(t, lab, coneA, { 'node.node_type': 'private' }),
    ]);
    assert.match(publicNode.apiUrl, new RegExp(`^http://${pub.mgmtAddress.replaceAll('.', '\\.')}:8080/graphql$`));
    const { data } = await publicNode.query<{ node: { peerId: string } }>('{ node { peerId } }');
    assert.equal(data?.node.peerId, publicNode.peerId);

    const exchanges = await openEventStream(t, publicNode, ['peer.exchanged']);
    const connect = await natNode.query<{ connectPeer: { state: string } }>(
      'mutation($address: String!, $peerId: PeerId!) { connectPeer(address: $address, peerId: $peerId) { state } }',
      { address: publicNode.quicAddress, peerId: publicNode.peerId },
    );
    assert.equal(connect.errors, undefined, JSON.stringify(connect.errors));
    const exchanged = await exchanges.waitFor((e) => (e.payload as { peerId?: string }).peerId === natNode.peerId, {
      what: 'peer.exchanged from the NATed node',
    });
    const { remoteAddress } = exchanged.payload as { remoteAddress: string };
    assert.equal(hostOf(remoteAddress), coneA.publicAddress, 'the public node sees the router, not 10.x');

    assert.deepEqual(await Promise.all([publicNode.stop(), natNode.stop()]), [0, 0], 'both stop cleanly on SIGTERM');
  });

  it('leaves no namespace, link, directory or process behind', async () => {
    await lab.destroy();
    assert.deepEqual(labResidue(lab.prefix), []);
  });
});
