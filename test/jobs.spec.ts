import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { createClient as createWsClient } from 'graphql-ws';
import WebSocket from 'ws';
import type { Daemon } from '../src/daemon.ts';
import type { ServiceInput } from '../src/node/services/definition.ts';
import { MessageChannel } from '../src/node/wire/channel.ts';
import { RemoteRefusedError } from '../src/node/wire/errors.ts';
import { createLogger } from '../src/node/base/logger.ts';
import { RemoteNode } from '../src/node/node.ts';
import { startTestDaemon, startTestNode, subscriptionActive, testConfig, until } from './helpers/daemon.ts';
import { startDaemonProcess } from './helpers/daemon-process.ts';
import { gql } from './helpers/graphql.ts';
import { freeUdpPort, usePrivateNetwork } from './helpers/network.ts';
import { tempDir } from './helpers/temp.ts';

/**
 * Jobs end to end: an orderer runs a job on an executor over real QUIC, through the GraphQL API
 * with a real graphql-ws client, in the real sandbox (bubblewrap + cgroups). Needs root and bwrap
 * (CI has both); elsewhere the suite is skipped with the reason.
 */
const canSandbox = existsSync('/usr/bin/bwrap') && process.getuid?.() === 0;
const skip = !canSandbox && !process.env.CI ? 'needs root and bubblewrap (CI has both)' : false;

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

function shService(name: string, script: string, extra: Partial<ServiceInput> = {}): ServiceInput {
  return {
    kind: 'STANDALONE',
    name,
    executable: '/bin/sh',
    args: ['-c', script, 'sh'],
    interfaces: { stdin: true, stdout: true, stderr: true, inputs: ['in.txt'], outputs: ['out.txt'] },
    ...extra,
  } as ServiceInput;
}

interface StatusItem {
  jobId: string;
  role: string;
  from: string | null;
  to: string;
  reason: string | null;
  message: string | null;
}

/** Collects every status change of the jobs the daemon orders until `count` jobs are final. */
async function watchStatus(daemon: Daemon) {
  const before = daemon.node.bus.listenerCount();
  const client = createWsClient({ url: daemon.api.url.replace(/^http/, 'ws'), webSocketImpl: WebSocket, retryAttempts: 0 });
  const items: StatusItem[] = [];
  const finals = new Map<string, (item: StatusItem) => void>();
  const subscription = client.iterate<{ jobStatusChanged: StatusItem }>({
    query: 'subscription { jobStatusChanged { jobId role from to reason message } }',
  });
  const done = (async () => {
    for await (const { data } of subscription) {
      const item = data?.jobStatusChanged;
      if (!item) continue;
      items.push(item);
      if (['COMPLETED', 'ERRORED', 'CANCELLED'].includes(item.to) && item.role === 'ORDERER') finals.get(item.jobId)?.(item);
    }
  })().catch(() => {
    // the server went away first (the test is over)
  });
  await subscriptionActive(daemon.node, before);
  return {
    items,
    final: (jobId: string) =>
      new Promise<StatusItem>((resolve) => {
        const seen = items.find((i) => i.jobId === jobId && i.role === 'ORDERER' && ['COMPLETED', 'ERRORED', 'CANCELLED'].includes(i.to));
        if (seen) resolve(seen);
        else finals.set(jobId, resolve);
      }),
    close: async () => {
      await client.dispose();
      await done;
    },
  };
}

const RUN_JOB = `mutation Run($peer: PeerId!, $service: String!, $parameters: JSON, $stdin: String, $inputs: [JobInputFile!]) {
  runJob(peerId: $peer, serviceId: $service, parameters: $parameters, stdin: $stdin, inputs: $inputs) { id state role peerId serviceName }
}`;
const JOB = `query Job($id: ID!) { job(id: $id) { id state reason message exitCode truncated outputs { name size sha256 } logs(first: 100) { edges { node { seq stream text } } } } }`;

describe('jobs on remote peers', { timeout: 300_000, skip }, () => {
  const { settings } = usePrivateNetwork();

  async function pair(t: { after(fn: () => unknown): void }, executorSettings: Record<string, string> = {}) {
    const orderer = await startTestDaemon(t);
    const executor = await startTestNode(t, executorSettings);
    await orderer.node.connections.connect({ host: '127.0.0.1', port: executor.quicPort }, executor.peerId);
    return { orderer, executor };
  }

  it('runs a job on a peer through GraphQL: every state change, the logs and the output arrive', async (t) => {
    const { orderer, executor } = await pair(t);
    await executor.services.register(
      shService(
        'greet',
        'read line; echo "hello $1 and $line"; echo warn >&2; cat inputs/in.txt > outputs/out.txt; printf "%s" "$1" >> outputs/out.txt',
        {
          parameters: [{ name: 'who', type: 'string', required: true, pattern: '[a-z ;$()]+' }],
          args: [
            '-c',
            'read line; echo "hello $1 and $line"; echo warn >&2; cat inputs/in.txt > outputs/out.txt; printf "%s" "$1" >> outputs/out.txt',
            'sh',
            '{{who}}',
          ],
        },
      ),
    );
    const watch = await watchStatus(orderer);
    t.after(() => watch.close());
    // An injection attempt stays one argument: the shell prints it, never runs it.
    const who = 'world; $(touch x)';
    const run = await gql(orderer.api.url, RUN_JOB, {
      peer: executor.peerId,
      service: 'greet',
      parameters: { who },
      stdin: 'from stdin\n',
      inputs: [{ name: 'in.txt', text: 'input file; ' }],
    });
    assert.equal(run.errors, undefined, JSON.stringify(run.errors));
    const job = run.data?.runJob;
    assert.equal(job.state, 'READY');
    assert.match(job.id, /^[0-9a-f]{32}$/);
    const final = await watch.final(job.id);
    assert.equal(final.to, 'COMPLETED', JSON.stringify(final));
    const states = watch.items.filter((i) => i.jobId === job.id && i.role === 'ORDERER').map((i) => i.to);
    assert.deepEqual(states, ['IDLE', 'READY', 'RUNNING', 'COMPLETED']);

    const view = await gql(orderer.api.url, JOB, { id: job.id });
    const got = view.data?.job;
    assert.equal(got.exitCode, 0);
    assert.deepEqual(got.outputs, [
      { name: 'out.txt', size: Buffer.byteLength(`input file; ${who}`), sha256: sha256(`input file; ${who}`) },
    ]);
    const text = got.logs.edges.map((e: { node: { stream: string; text: string } }) => `${e.node.stream}:${e.node.text}`).join('');
    assert.match(text, /STDOUT:hello world; \$\(touch x\) and from stdin/);
    assert.match(text, /STDERR:warn/);
    // The executor's record says the same, and names the orderer.
    const executorRow = executor.jobStore.get(job.id, 'executor');
    assert.equal(executorRow?.state, 'COMPLETED');
    assert.equal(executorRow?.peerId, orderer.node.peerId);
  });

  it('replays the logs so far over jobLogs, then streams the rest live, and ends with the job', async (t) => {
    const { orderer, executor } = await pair(t);
    // Prints, then waits for its input file to say go: the subscription starts while it runs.
    await executor.services.register(shService('ticker', 'echo first; for i in 1 2 3; do echo "tick $i"; done; echo last'));
    const run = await gql(orderer.api.url, RUN_JOB, { peer: executor.peerId, service: 'ticker' });
    assert.equal(run.errors, undefined, JSON.stringify(run.errors));
    const client = createWsClient({ url: orderer.api.url.replace(/^http/, 'ws'), webSocketImpl: WebSocket, retryAttempts: 0 });
    t.after(() => client.dispose());
    const chunks: Array<{ seq: number; text: string }> = [];
    for await (const { data } of client.iterate<{ jobLogs: { seq: number; text: string } }>({
      query: `subscription { jobLogs(jobId: "${run.data?.runJob.id}") { seq text } }`,
    })) {
      if (data) chunks.push(data.jobLogs);
    }
    // The subscription ended by itself (the job is final) with every line exactly once, in order.
    const text = chunks.map((c) => c.text).join('');
    assert.equal(text, 'first\ntick 1\ntick 2\ntick 3\nlast\n');
    assert.deepEqual(
      chunks.map((c) => c.seq),
      chunks.map((_, i) => i + 1),
    );
  });

  it('fetches an output too large to travel inline, by hash, verified', async (t) => {
    const { orderer, executor } = await pair(t);
    await executor.services.register(shService('big', 'head -c 300000 /dev/zero | tr "\\0" "x" > outputs/out.txt'));
    const run = await gql(orderer.api.url, RUN_JOB, { peer: executor.peerId, service: 'big' });
    assert.equal(run.errors, undefined, JSON.stringify(run.errors));
    const watch = await watchStatus(orderer);
    t.after(() => watch.close());
    const final = await watch.final(run.data?.runJob.id);
    assert.equal(final.to, 'COMPLETED', JSON.stringify(final));
    const view = await gql(orderer.api.url, JOB, { id: run.data?.runJob.id });
    const expected = sha256('x'.repeat(300_000));
    assert.deepEqual(view.data?.job.outputs, [{ name: 'out.txt', size: 300_000, sha256: expected }]);
    // The orderer holds the verified bytes itself.
    const blob = join(orderer.node.dataDir, 'blobs', expected);
    assert.equal(
      createHash('sha256')
        .update(execFileSync('cat', [blob]))
        .digest('hex'),
      expected,
    );
  });

  it('cancels a job that spawned children: CANCELLED, and no process of it is left', async (t) => {
    const { orderer, executor } = await pair(t);
    const marker = String(4000 + Math.floor(Math.random() * 999));
    await executor.services.register(shService('sleeper', `sleep ${marker} & sleep ${marker} & echo started; wait`));
    const watch = await watchStatus(orderer);
    t.after(() => watch.close());
    const run = await gql(orderer.api.url, RUN_JOB, { peer: executor.peerId, service: 'sleeper' });
    const id: string = run.data?.runJob.id;
    await new Promise<void>((resolve) => {
      const off = executor.bus.on('job.log', (e) => {
        if (e.payload.jobId === id) {
          off();
          resolve();
        }
      });
    });
    assert.ok(processesWith(`sleep ${marker}`) >= 2, 'the children run');
    const cancelled = await gql(orderer.api.url, `mutation { cancelJob(id: "${id}") { state reason message } }`);
    assert.equal(cancelled.errors, undefined, JSON.stringify(cancelled.errors));
    assert.equal(cancelled.data?.cancelJob.state, 'CANCELLED');
    assert.equal(cancelled.data?.cancelJob.reason, 'CANCELLED');
    assert.equal(processesWith(`sleep ${marker}`), 0, 'no process of the job is left');
    assert.equal((await watch.final(id)).to, 'CANCELLED');
  });

  it('refuses with typed codes: unknown service, a peer not allowed, bad parameters, unsafe names, busy', async (t) => {
    const { orderer, executor } = await pair(t, { 'jobs.max_concurrent_jobs': '1' });
    await executor.services.register(shService('private', 'true', { allowedPeers: ['00'.repeat(20)] }));
    await executor.services.register(
      shService('typed', 'echo "$1"', {
        parameters: [{ name: 'count', type: 'integer', required: true }],
        args: ['-c', 'echo "$1"', 'sh', '{{count}}'],
      }),
    );
    await executor.services.register(shService('slow', 'sleep 30'));
    const codeOf = async (variables: Record<string, unknown>) => {
      const answer = await gql(orderer.api.url, RUN_JOB, { peer: executor.peerId, ...variables });
      return answer.errors?.[0]?.extensions?.code;
    };
    assert.equal(await codeOf({ service: 'nope' }), 'UNKNOWN_SERVICE');
    assert.equal(await codeOf({ service: 'private' }), 'SERVICE_NOT_ALLOWED');
    assert.equal(await codeOf({ service: 'typed', parameters: { count: 'ten' } }), 'INVALID_PARAMETERS');
    assert.equal(await codeOf({ service: 'typed', parameters: {} }), 'INVALID_PARAMETERS');
    for (const name of ['../in.txt', '/etc/passwd', 'in\0.txt']) {
      assert.equal(await codeOf({ service: 'typed', parameters: { count: 1 }, inputs: [{ name, text: 'x' }] }), 'UNSAFE_NAME', name);
    }
    const slow = await gql(orderer.api.url, RUN_JOB, { peer: executor.peerId, service: 'slow' });
    assert.equal(slow.errors, undefined, JSON.stringify(slow.errors));
    assert.equal(await codeOf({ service: 'typed', parameters: { count: 1 } }), 'EXECUTOR_BUSY');
    // Refused jobs are kept, ERRORED with the reason, so a dashboard shows what happened.
    const refused = await gql(
      orderer.api.url,
      '{ jobs(state: [ERRORED], role: ORDERER) { totalCount edges { node { reason message } } } }',
    );
    assert.ok(refused.data?.jobs.totalCount >= 5);
    assert.ok(refused.data?.jobs.edges.every((e: { node: { reason: string } }) => e.node.reason === 'REFUSED'));
    await gql(orderer.api.url, `mutation { cancelJob(id: "${slow.data?.runJob.id}") { state } }`);
    assert.equal(
      (await gql(orderer.api.url, `mutation { cancelJob(id: "${'ab'.repeat(16)}") { state } }`)).errors?.[0]?.extensions?.code,
      'JOB_NOT_FOUND',
    );

    // A node that runs no jobs says so, to peers and to its operator.
    const off = await startTestDaemon(t, { 'jobs.enabled': 'false' });
    await off.node.services.register(shService('any', 'true'));
    await orderer.node.connections.connect({ host: '127.0.0.1', port: off.node.quicPort }, off.node.peerId);
    const disabled = await gql(orderer.api.url, RUN_JOB, { peer: off.node.peerId, service: 'any' });
    assert.equal(disabled.errors?.[0]?.extensions?.code, 'JOBS_DISABLED');
    const runner = await gql(off.api.url, '{ jobRunner { enabled sandbox unavailableReason running maxConcurrentJobs } }');
    assert.deepEqual(runner.data?.jobRunner, {
      enabled: false,
      sandbox: null,
      unavailableReason: 'jobs are disabled ([jobs] enabled = false)',
      running: 0,
      maxConcurrentJobs: 4,
    });
    const on = await gql(orderer.api.url, '{ jobRunner { enabled sandbox cgroups unavailableReason } }');
    assert.deepEqual(
      { ...on.data?.jobRunner, cgroups: /^v[12]$/.test(on.data?.jobRunner.cgroups) },
      {
        enabled: true,
        sandbox: 'bubblewrap',
        cgroups: true,
        unavailableReason: null,
      },
    );
  });

  it("does not let a third peer cancel, attach to or fetch another peer's job", async (t) => {
    const { orderer, executor } = await pair(t);
    await executor.services.register(shService('hold', 'echo hi > outputs/out.txt; sleep 30'));
    const run = await gql(orderer.api.url, RUN_JOB, { peer: executor.peerId, service: 'hold' });
    const id: string = run.data?.runJob.id;
    const intruder = await startTestNode(t);
    await intruder.connections.connect({ host: '127.0.0.1', port: executor.quicPort }, executor.peerId);
    for (const message of [
      { type: 'job_cancel', job_id: id },
      { type: 'job_attach', job_id: id, log_after: 0 },
      { type: 'job_output_fetch', job_id: id, sha256: sha256('hi\n') },
    ] as const) {
      const attempt = intruder.connections.withPeerStream(executor.peerId, async (stream) => {
        const channel = new MessageChannel(stream);
        await channel.send(message);
        return channel.receiveAny();
      });
      await assert.rejects(
        attempt,
        (error: unknown) => error instanceof RemoteRefusedError && error.remoteCode === 'JOB_NOT_FOUND',
        message.type,
      );
    }
    assert.equal(executor.jobStore.get(id, 'executor')?.state, 'RUNNING', 'the job runs on');
    const cancelled = await gql(orderer.api.url, `mutation { cancelJob(id: "${id}") { state } }`);
    assert.equal(cancelled.data?.cancelJob.state, 'CANCELLED', 'its orderer can cancel it');
  });

  it('ends jobs at their limits with the reason: OOM, TIMEOUT, OUTPUT_LIMIT, no network', async (t) => {
    const { orderer, executor } = await pair(t);
    await executor.services.register(
      shService('hog', 'x=$(head -c 300000000 /dev/zero | tr "\\0" a); echo survived', { limits: { memoryBytes: 64 * 1024 * 1024 } }),
    );
    await executor.services.register(shService('loop', 'while :; do :; done', { limits: { wallTimeMs: 1000 } }));
    await executor.services.register(shService('chatty', 'yes', { limits: { outputBytes: 4096 } }));
    // Busy for 2 s of wall time under a 10 % CPU quota: bash's `time` reports the CPU it got.
    await executor.services.register(
      shService('throttled', '', {
        executable: '/bin/bash',
        args: ['-c', 'TIMEFORMAT=%U; time (timeout 2 bash -c "while :; do :; done")'],
        limits: { cpuPercent: 10, wallTimeMs: 20_000 },
      }),
    );
    // No network unless the service allows it: the job cannot reach a port the executor serves on loopback.
    await executor.services.register(
      shService('offline', '', { executable: '/bin/bash', args: ['-c', `echo > /dev/tcp/127.0.0.1/${orderer.api.port}`] }),
    );
    const watch = await watchStatus(orderer);
    t.after(() => watch.close());
    const outcome = async (service: string) => {
      const run = await gql(orderer.api.url, RUN_JOB, { peer: executor.peerId, service });
      assert.equal(run.errors, undefined, JSON.stringify(run.errors));
      await watch.final(run.data?.runJob.id);
      return (await gql(orderer.api.url, JOB, { id: run.data?.runJob.id })).data?.job;
    };
    const hog = await outcome('hog');
    assert.deepEqual([hog.state, hog.reason], ['ERRORED', 'OOM'], hog.message);
    const loop = await outcome('loop');
    assert.deepEqual([loop.state, loop.reason], ['ERRORED', 'TIMEOUT'], loop.message);
    const chatty = await outcome('chatty');
    assert.deepEqual([chatty.state, chatty.reason, chatty.truncated], ['ERRORED', 'OUTPUT_LIMIT', true], chatty.message);
    const logged = chatty.logs.edges.reduce((n: number, e: { node: { text: string } }) => n + e.node.text.length, 0);
    assert.equal(logged, 4096, 'exactly the cap is kept');
    const throttled = await outcome('throttled');
    const cpuSeconds = Number.parseFloat(throttled.logs.edges.map((e: { node: { text: string } }) => e.node.text).join(''));
    assert.ok(cpuSeconds < 0.6, `a 10 % quota gave ${cpuSeconds} s of CPU in 2 s`);
    // A stream the service does not declare is not kept.
    await executor.services.register(
      shService('quiet', 'echo kept; echo dropped >&2', {
        interfaces: { stdin: false, stdout: true, stderr: false, inputs: [], outputs: [] },
      }),
    );
    const quiet = await outcome('quiet');
    assert.deepEqual(
      quiet.logs.edges.map((e: { node: { stream: string; text: string } }) => `${e.node.stream}:${e.node.text}`),
      ['STDOUT:kept\n'],
    );
    const offline = await outcome('offline');
    assert.deepEqual([offline.state, offline.reason], ['ERRORED', 'EXITED'], offline.message);
  });

  it('gives an orderer that restarted mid-job the final state when it is back', async (t) => {
    const executor = await startTestNode(t);
    await executor.services.register(shService('later', 'echo started; sleep 2; echo finished > outputs/out.txt'));
    const dataDir = tempDir(t);
    const first = await RemoteNode.start(testConfig(dataDir), { logger: createLogger('silent') });
    await first.connections.connect({ host: '127.0.0.1', port: executor.quicPort }, executor.peerId);
    const job = await first.jobs.run({ peerId: executor.peerId, serviceId: 'later', parameters: {}, stdin: null, inputs: [] });
    assert.ok(['READY', 'RUNNING'].includes(first.jobStore.get(job.id, 'orderer')?.state ?? ''), 'it is left unfinished');
    await first.stop();
    await until([executor], () => executor.jobStore.get(job.id, 'executor')?.state === 'COMPLETED');
    const again = await RemoteNode.start(testConfig(dataDir), { logger: createLogger('silent') });
    t.after(() => again.stop());
    await again.connections.connect({ host: '127.0.0.1', port: executor.quicPort }, executor.peerId);
    await until([again], () => again.jobStore.get(job.id, 'orderer')?.state === 'COMPLETED');
    const row = again.jobStore.get(job.id, 'orderer');
    assert.deepEqual(JSON.parse(row?.outputs ?? '[]'), [{ name: 'out.txt', size: 9, sha256: sha256('finished\n') }]);
    assert.equal(again.jobStore.logs(job.id, 'orderer', 0, 10)[0]?.data.toString(), 'started\n');
  });

  it('runs a job on a NAT peer through a relay', async (t) => {
    const relay = await startTestNode(t, settings({ 'relay.relay_mode': 'true' }));
    const nat = await startTestNode(
      t,
      settings({ 'node.node_type': 'private', 'peer_discovery.bootstrap_peers': `127.0.0.1:${relay.quicPort}` }),
    );
    await until([nat], () => nat.metadataPublisher.lastPublish !== null && nat.metadataPublisher.current.usingRelay);
    nat.discovery.stop();
    // Runs long enough for the connection under it to be upgraded (as a hole punch would) mid-job.
    await nat.services.register(shService('relayed', 'echo before; sleep 3; echo "via relay" > outputs/out.txt; echo after'));
    const orderer = await startTestDaemon(t, settings());
    orderer.node.discovery.stop();
    // The orderer hears of the NAT peer from the relay; the route (through the relay) comes from its DHT metadata.
    await orderer.node.connections.connect({ host: '127.0.0.1', port: relay.quicPort }, relay.peerId);
    await until([orderer.node], () => orderer.node.knownPeers.get(nat.peerId) !== undefined);
    const run = await gql(orderer.api.url, RUN_JOB, { peer: nat.peerId, service: 'relayed' });
    assert.equal(run.errors, undefined, JSON.stringify(run.errors));
    assert.equal(orderer.node.connections.byPeer(nat.peerId)?.viaRelay, true, 'the job went through the relay');
    const id: string = run.data?.runJob.id;
    const watch = await watchStatus(orderer);
    t.after(() => watch.close());
    await until([orderer.node], () => (orderer.node.jobStore.get(id, 'orderer')?.logSeq ?? 0) > 0);
    // A direct connection replaces the relayed one (what a hole punch does): the job's stream breaks
    // and the orderer re-attaches over the direct connection, missing nothing and repeating nothing.
    await orderer.node.connections.connect({ host: '127.0.0.1', port: nat.quicPort }, nat.peerId);
    assert.equal(orderer.node.connections.byPeer(nat.peerId)?.viaRelay, false);
    const final = await watch.final(id);
    assert.equal(final.to, 'COMPLETED', JSON.stringify(final));
    assert.ok((nat.protocols.stats.find((p) => p.protocol === 'job_attach')?.served ?? 0) >= 1, 'the orderer re-attached');
    const view = await gql(orderer.api.url, JOB, { id });
    assert.equal(view.data?.job.outputs[0].sha256, sha256('via relay\n'));
    const text = view.data?.job.logs.edges.map((e: { node: { text: string } }) => e.node.text).join('');
    assert.equal(text, 'before\nafter\n');
  });

  it('reports ERRORED (executor restarted) to the orderer when the executor is killed mid-job and comes back', async (t) => {
    const dataDir = tempDir(t);
    const servicesDir = join(dataDir, 'services');
    mkdirSync(servicesDir, { recursive: true });
    writeFileSync(join(servicesDir, 'wait.json'), JSON.stringify(shService('wait', 'echo started; sleep 61')));
    const quicPort = await freeUdpPort();
    const first = await startDaemonProcess(t, {}, { dataDir, quicPort });
    const orderer = await startTestDaemon(t);
    const executorPeer = (await gql(first.url, '{ node { peerId } }')).data?.node.peerId as string;
    await orderer.node.connections.connect({ host: '127.0.0.1', port: quicPort }, executorPeer);
    const run = await gql(orderer.api.url, RUN_JOB, { peer: executorPeer, service: 'wait' });
    assert.equal(run.errors, undefined, JSON.stringify(run.errors));
    const id: string = run.data?.runJob.id;
    await until([orderer.node], () => orderer.node.jobStore.get(id, 'orderer')?.state === 'RUNNING');
    first.child.kill('SIGKILL');
    await new Promise((resolve) => first.child.once('close', resolve));
    await startDaemonProcess(t, {}, { dataDir, quicPort });
    // QUIC notices a peer that died without a word only at its idle timeout (a minute); the test
    // drops that connection at once. The re-attach that follows is the orderer's own.
    await orderer.node.connections.disconnect(executorPeer);
    await orderer.node.connections.connect({ host: '127.0.0.1', port: quicPort }, executorPeer);
    await until([orderer.node], () => orderer.node.jobStore.get(id, 'orderer')?.state === 'ERRORED', 60_000);
    const view = await gql(orderer.api.url, JOB, { id });
    assert.equal(view.data?.job.reason, 'EXECUTOR_RESTARTED');
    assert.equal(processesWith('sleep 61'), 0, 'the killed executor left no job process behind');
  });
});

/** Processes whose command line contains `text` (from /proc, as ps would). */
function processesWith(text: string): number {
  const out = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' });
  return out.split('\n').filter((line) => line.includes(text) && !line.includes('ps -eo')).length;
}
