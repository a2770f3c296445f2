import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RemoteNode } from '../src/node/node.ts';
import { startBenchNode } from './bench-node.ts';
import { type Figure, ms, percentile } from './report.ts';

const ROUND_TRIPS = 40;
const WARM_UP = 5;
const THROUGHPUT_JOBS = 40;
const CONCURRENCY = 4;

/** Resolves when the orderer records the job final (the bus, no polling). */
function finished(orderer: RemoteNode, jobId: () => string | undefined): Promise<string> {
  return new Promise((resolve) => {
    const off = orderer.bus.on('job.status.changed', (e) => {
      if (e.payload.role !== 'orderer' || e.payload.jobId !== jobId()) return;
      if (e.payload.to === 'COMPLETED' || e.payload.to === 'ERRORED' || e.payload.to === 'CANCELLED') {
        off();
        resolve(e.payload.to);
      }
    });
  });
}

async function roundTrip(orderer: RemoteNode, executor: RemoteNode): Promise<number> {
  // The job's id is known only once runJob returns; its final state may be announced right after.
  const ordered: { id?: string } = {};
  const done = finished(orderer, () => ordered.id);
  const start = performance.now();
  const job = await orderer.jobs.run({ peerId: executor.peerId, serviceId: 'true', parameters: {}, stdin: null, inputs: [] });
  ordered.id = job.id;
  const state = await done;
  if (state !== 'COMPLETED') throw new Error(`bench job ended ${state}: ${orderer.jobs.get(job.id)?.message ?? ''}`);
  return performance.now() - start;
}

/**
 * A job's round trip on loopback: runJob of a trivial service (`/bin/true`) on another node until
 * the orderer records COMPLETED, sandbox included; then jobs per second with the executor's
 * concurrency limit filled. The sandbox's own start-up cost, next to a plain spawn, is in the
 * sandbox section.
 */
export async function benchJobs(): Promise<Figure[]> {
  const dir = mkdtempSync(join(tmpdir(), 'rn-bench-jobs-'));
  const executor = await startBenchNode(join(dir, 'executor'), { 'jobs.max_concurrent_jobs': String(CONCURRENCY) });
  const orderer = await startBenchNode(join(dir, 'orderer'));
  try {
    if (executor.jobExecutor.status.unavailableReason !== null) {
      return [{ name: 'job round trip', value: `skipped: ${executor.jobExecutor.status.unavailableReason}` }];
    }
    await executor.services.register({ kind: 'STANDALONE', name: 'true', executable: '/bin/true' });
    await orderer.connections.connect({ host: '127.0.0.1', port: executor.quicPort }, executor.peerId);
    for (let i = 0; i < WARM_UP; i++) await roundTrip(orderer, executor);
    const samples: number[] = [];
    for (let i = 0; i < ROUND_TRIPS; i++) samples.push(await roundTrip(orderer, executor));
    const p50 = percentile(samples, 50);
    const p99 = percentile(samples, 99);

    const start = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < THROUGHPUT_JOBS) {
          next += 1;
          await roundTrip(orderer, executor);
        }
      }),
    );
    const perSecond = THROUGHPUT_JOBS / ((performance.now() - start) / 1000);
    return [
      { name: 'job round trip p50 (runJob → COMPLETED, sandbox included)', value: ms(p50), target: '≤ 150 ms', met: p50 <= 150 },
      { name: 'job round trip p99', value: ms(p99) },
      {
        name: `jobs per second (${CONCURRENCY} at once, the executor's max_concurrent_jobs)`,
        value: perSecond.toFixed(1),
        baseline: `one at a time: ${(1000 / p50).toFixed(1)}/s`,
      },
    ];
  } finally {
    await orderer.stop();
    await executor.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
