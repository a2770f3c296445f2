import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '../src/node/base/logger.ts';
import { newJobId } from '../src/node/jobs/job-id.ts';
import { type JobSandbox, createSandbox } from '../src/node/jobs/sandbox/sandbox.ts';
import { prepareWorkspace, removeWorkspace } from '../src/node/jobs/workspace.ts';
import { type Figure, ms, percentile } from './report.ts';

const RUNS = 30;
const WARM_UP = 3;
const OVERHEAD_TARGET_MS = 100;
const LIMITS = {
  memoryBytes: 64 * 1024 * 1024,
  pids: 32,
  cpuPercent: 100,
  wallTimeMs: 10_000,
  outputBytes: 64 * 1024,
  outputFileBytes: 1024 * 1024,
  network: false,
};

/** A plain spawn of /bin/true until its exit: the baseline the sandbox's cost is measured against. */
function plainSpawn(): Promise<number> {
  const start = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/true', [], { stdio: 'ignore' });
    child.once('error', reject);
    child.once('close', () => resolve(performance.now() - start));
  });
}

/** One sandboxed /bin/true job from start to done (cgroup made, bwrap run, cgroup removed); the workspace is made before. */
async function sandboxedTrue(sandbox: JobSandbox, root: string): Promise<number> {
  const jobId = newJobId();
  const workspace = await prepareWorkspace(root, jobId, [], sandbox.jobUser);
  const start = performance.now();
  const job = sandbox.start({ jobId, executable: '/bin/true', args: [], workspace, stdin: null, env: {}, limits: LIMITS }, () => undefined);
  const result = await job.done;
  const elapsed = performance.now() - start;
  await removeWorkspace(root, jobId);
  if (result.reason !== 'EXITED' || result.exitCode !== 0) throw new Error(`sandboxed /bin/true ended ${result.reason} ${result.exitCode}`);
  return elapsed;
}

/** Sandbox start-up cost: a trivial job start → done, next to a plain spawn measured in the same run. */
export async function benchSandbox(): Promise<Figure[]> {
  let sandbox: JobSandbox;
  try {
    sandbox = await createSandbox({ mode: 'bubblewrap', uid: 65534, gid: 65534, graceMs: 1000 }, createLogger('silent'));
  } catch (error) {
    return [{ name: 'sandboxed /bin/true start → done', value: `skipped: ${error instanceof Error ? error.message : String(error)}` }];
  }
  const root = mkdtempSync(join(tmpdir(), 'rn-bench-sandbox-'));
  try {
    const sandboxed: number[] = [];
    const plain: number[] = [];
    // Interleaved, so both see the same machine load.
    for (let i = 0; i < WARM_UP + RUNS; i++) {
      const s = await sandboxedTrue(sandbox, root);
      const p = await plainSpawn();
      if (i >= WARM_UP) {
        sandboxed.push(s);
        plain.push(p);
      }
    }
    const [s50, s99, p50, p99] = [percentile(sandboxed, 50), percentile(sandboxed, 99), percentile(plain, 50), percentile(plain, 99)];
    const overhead = s50 - p50;
    return [
      {
        name: `sandboxed /bin/true start → done p50 (${sandbox.kind}, cgroup ${sandbox.cgroups ?? 'none'}, ${RUNS} runs)`,
        value: ms(s50),
        baseline: `p99 ${ms(s99)}`,
      },
      { name: 'plain spawn(/bin/true) → exit p50', value: ms(p50), baseline: `p99 ${ms(p99)}` },
      {
        name: 'sandbox overhead p50 (sandboxed − plain)',
        value: ms(overhead),
        target: `≤ ${OVERHEAD_TARGET_MS} ms`,
        met: overhead <= OVERHEAD_TARGET_MS,
      },
    ];
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}
