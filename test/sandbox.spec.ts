import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { newJobId } from '../src/node/jobs/job-id.ts';
import { InvalidJobSpecError, SandboxUnavailableError } from '../src/node/jobs/sandbox/errors.ts';
import type { JobLimits } from '../src/node/jobs/sandbox/limits.ts';
import { type JobSandbox, type RunningJob, type SandboxResult, createSandbox } from '../src/node/jobs/sandbox/sandbox.ts';
import { findTool } from '../src/node/jobs/sandbox/tools.ts';
import { UnsafeNameError, checkRemoteName, collectOutputs, prepareWorkspace, removeWorkspace } from '../src/node/jobs/workspace.ts';
import { captureLogs } from './helpers/log-capture.ts';
import { tempDir } from './helpers/temp.ts';

// CI runs as root with bubblewrap installed (.ci/run): there a missing sandbox is a failure, not a skip.
const sandboxMissing =
  process.getuid?.() !== 0 ? 'needs root (cgroups, job uid 65534)' : findTool('bwrap') === null ? 'needs bubblewrap' : null;
const skip = sandboxMissing !== null && !process.env.CI ? sandboxMissing : false;

const LIMITS: JobLimits = {
  memoryBytes: 256 * 1024 * 1024,
  pids: 64,
  cpuPercent: 100,
  wallTimeMs: 20_000,
  outputBytes: 1024 * 1024,
  outputFileBytes: 1024 * 1024,
  network: false,
};
const GRACE_MS = 500;
const SILENT = captureLogs('silent').logger;

interface Ran {
  result: SandboxResult;
  stdout: string;
  stderr: string;
  workspace: string;
  outputBytes: number;
}

type TestContext = { after(fn: () => unknown): void };

async function bubblewrap(): Promise<JobSandbox> {
  return createSandbox({ mode: 'bubblewrap', uid: 65534, gid: 65534, graceMs: GRACE_MS }, SILENT);
}

/** Starts `/bin/sh -c script` in a fresh workspace; `started` sees the running job (for cancel). */
function startShell(
  t: TestContext,
  sandbox: JobSandbox,
  script: string,
  options: {
    limits?: Partial<JobLimits>;
    inputs?: Array<{ name: string; data: Buffer }>;
    stdin?: Buffer;
    onStdout?: (text: string) => void;
  } = {},
) {
  const root = tempDir(t, 'rn-sandbox-');
  const jobId = newJobId();
  const chunks = { stdout: [] as Buffer[], stderr: [] as Buffer[] };
  return (async () => {
    const workspace = await prepareWorkspace(root, jobId, options.inputs ?? [], sandbox.jobUser);
    const job = sandbox.start(
      {
        jobId,
        executable: '/bin/sh',
        args: ['-c', script],
        workspace,
        stdin: options.stdin ?? null,
        env: { PATH: '/usr/bin:/bin' },
        limits: { ...LIMITS, ...options.limits },
      },
      (stream, chunk) => {
        chunks[stream].push(chunk);
        if (stream === 'stdout') options.onStdout?.(Buffer.concat(chunks.stdout).toString());
      },
    );
    const ran = job.done.then((result): Ran => ({
      result,
      stdout: Buffer.concat(chunks.stdout).toString(),
      stderr: Buffer.concat(chunks.stderr).toString(),
      workspace,
      outputBytes: Buffer.concat([...chunks.stdout, ...chunks.stderr]).length,
    }));
    return { job, ran, root, jobId };
  })();
}

async function runShell(t: TestContext, sandbox: JobSandbox, script: string, options: Parameters<typeof startShell>[3] = {}): Promise<Ran> {
  return (await startShell(t, sandbox, script, options)).ran;
}

/** The cgroup.procs file listing every process of a running job. */
function procsFileOf(job: RunningJob): string {
  assert.ok(job.cgroupDir !== null, 'a bubblewrap job has a cgroup');
  return join(job.cgroupDir, 'cgroup.procs');
}

function readProcs(file: string): number[] {
  return existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean).map(Number) : [];
}

function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

function waitForText(): { onStdout: (text: string) => void; seen: (needle: string) => Promise<void> } {
  let text = '';
  const waiters: Array<() => void> = [];
  return {
    onStdout: (all) => {
      text = all;
      for (const wake of waiters.splice(0)) wake();
    },
    seen: async (needle) => {
      while (!text.includes(needle)) await new Promise<void>((resolve) => waiters.push(resolve));
    },
  };
}

describe('job sandbox (bubblewrap + cgroups)', { skip, timeout: 120_000 }, () => {
  it('runs a job as uid 65534 with its inputs and stdin, and collects its declared output by SHA-256', async (t) => {
    const sandbox = await bubblewrap();
    assert.equal(sandbox.kind, 'bubblewrap');
    assert.ok(sandbox.cgroups === 'v1' || sandbox.cgroups === 'v2');
    const ran = await runShell(
      t,
      sandbox,
      'id -u; id -g; pwd; cat inputs/data.txt; cat > outputs/result.txt; echo tail >> outputs/result.txt; echo undeclared > outputs/other',
      {
        inputs: [{ name: 'data.txt', data: Buffer.from('input-bytes\n') }],
        stdin: Buffer.from('from-stdin\n'),
      },
    );
    assert.equal(ran.result.reason, 'EXITED');
    assert.equal(ran.result.exitCode, 0);
    assert.equal(ran.stdout, '65534\n65534\n/job\ninput-bytes\n');
    assert.equal(ran.result.stdoutBytes, Buffer.byteLength(ran.stdout));
    const collected = await collectOutputs(ran.workspace, ['result.txt', 'absent.txt'], 1024);
    const expected = Buffer.from('from-stdin\ntail\n');
    assert.deepEqual(
      collected.outputs.map(({ name, size, sha256 }) => ({ name, size, sha256 })),
      [{ name: 'result.txt', size: expected.length, sha256: createHash('sha256').update(expected).digest('hex') }],
    );
    assert.deepEqual(collected.missing, ['absent.txt']);
    assert.deepEqual(collected.refused, []);
  });

  it('ends a memory hog over 64 MiB with reason OOM', async (t) => {
    const ran = await runShell(t, await bubblewrap(), 'x=$(head -c 300000000 /dev/zero | tr "\\0" a); echo survived', {
      limits: { memoryBytes: 64 * 1024 * 1024 },
    });
    assert.equal(ran.result.reason, 'OOM');
    assert.doesNotMatch(ran.stdout, /survived/);
  });

  it('holds a fork bomb at the pids limit; it ends at its wall time and the host can still fork', async (t) => {
    const pids = 16;
    // The bomb starts in a subshell (a shell that cannot fork exits); the first shell spins without forking, until the wall time.
    const started = await startShell(t, await bubblewrap(), '(b() { b | b & }; b); while :; do :; done', {
      limits: { pids, wallTimeMs: 1500 },
    });
    const procs = procsFileOf(started.job);
    const events = join(dirname(procs), 'pids.events');
    // The kernel's own high-water mark (newer kernels): the churning bomb is too fast to sample reliably.
    const peakFile = join(dirname(procs), 'pids.peak');
    let most = 0;
    let peak: number | null = null;
    let refused = 0;
    let done = false;
    void started.ran.then(() => (done = true));
    // Sampling the job's cgroup while it runs (a measurement, not a synchronisation), bounded by the wall time.
    for (let i = 0; i < 100_000 && !done; i++) {
      most = Math.max(most, readProcs(procs).length);
      refused = Math.max(refused, existsSync(events) ? Number(/max (\d+)/.exec(readFileSync(events, 'utf8'))?.[1] ?? 0) : 0);
      if (existsSync(peakFile)) peak = Math.max(peak ?? 0, Number(readFileSync(peakFile, 'utf8')));
      await new Promise((resolve) => setImmediate(resolve));
    }
    const ran = await started.ran;
    assert.equal(ran.result.reason, 'TIMEOUT', JSON.stringify({ ...ran.result, stderr: ran.stderr.slice(-300) }));
    assert.ok(refused > 0, 'the pids limit refused forks');
    assert.ok(most <= pids, `never more than ${pids} processes (saw ${most})`);
    if (peak !== null) assert.equal(peak, pids, 'the bomb reached the limit and never passed it (pids.peak)');
    assert.deepEqual(readProcs(procs), []);
    assert.equal(spawnSync('/bin/true').status, 0, 'the host still forks');
  });

  it('kills an endless loop at its wall time with reason TIMEOUT', async (t) => {
    const wallTimeMs = 1000;
    const ran = await runShell(t, await bubblewrap(), 'while :; do :; done', { limits: { wallTimeMs } });
    assert.equal(ran.result.reason, 'TIMEOUT');
    assert.ok(ran.result.durationMs >= wallTimeMs, `ran ${ran.result.durationMs} ms`);
    assert.ok(ran.result.durationMs < wallTimeMs + GRACE_MS + 1500, `stopped in about the wall time (${ran.result.durationMs} ms)`);
  });

  it('stops a job whose output passes the cap: OUTPUT_LIMIT, truncated, exactly the cap captured', async (t) => {
    const outputBytes = 10_000;
    const ran = await runShell(t, await bubblewrap(), 'head -c 100000 /dev/zero; echo more >&2; sleep 100', { limits: { outputBytes } });
    assert.equal(ran.result.reason, 'OUTPUT_LIMIT');
    assert.equal(ran.result.truncated, true);
    assert.equal(ran.outputBytes, outputBytes);
    assert.equal(ran.result.stdoutBytes + ran.result.stderrBytes, outputBytes);
  });

  it('refuses writes outside the workspace; nothing appears on the host', async (t) => {
    const marker = `rn-escape-${newJobId()}`;
    const hostTmp = join('/tmp', marker);
    const targets = [`/usr/${marker}`, `/etc/${marker}`, `/job/../${marker}`, `/${marker}`];
    const script = [
      ...targets.map((target) => `if echo x > ${target}; then echo WROTE ${target}; else echo REFUSED ${target}; fi`),
      `echo x > ${hostTmp} && echo TMP`,
    ].join('\n');
    const ran = await runShell(t, await bubblewrap(), script);
    for (const target of targets) assert.match(ran.stdout, new RegExp(`REFUSED ${target.replace(/[.]/g, '\\.')}`));
    // The job's /tmp is its own tmpfs: the write works inside and never reaches the host's /tmp.
    assert.match(ran.stdout, /TMP/);
    for (const path of [`/usr/${marker}`, `/etc/${marker}`, `/${marker}`, hostTmp, join(ran.workspace, '..', marker)]) {
      assert.equal(existsSync(path), false, `${path} on the host`);
    }
  });

  it('gives a job no network unless its limits allow it', async (t) => {
    const server = createServer((socket) => socket.end('hello\n'));
    let connections = 0;
    server.on('connection', () => connections++);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.after(() => server.close());
    const port = (server.address() as { port: number }).port;
    const script = `exec 3<>/dev/tcp/127.0.0.1/${port} && head -n 1 <&3`;
    const sandbox = await bubblewrap();
    const closed = await runShell(t, sandbox, `exec /bin/bash -c '${script}'`, { limits: { network: false } });
    assert.notEqual(closed.result.exitCode, 0);
    assert.equal(connections, 0);
    const open = await runShell(t, sandbox, `exec /bin/bash -c '${script}'`, { limits: { network: true } });
    assert.equal(open.result.exitCode, 0, open.stderr);
    assert.equal(open.stdout, 'hello\n');
    assert.equal(connections, 1);
  });

  it('cancel stops a job and its children: reason CANCELLED, the cgroup is gone, no process is left', async (t) => {
    const text = waitForText();
    const started = await startShell(t, await bubblewrap(), 'sleep 100 & sleep 100 & echo started; wait', { onStdout: text.onStdout });
    await text.seen('started');
    const procs = procsFileOf(started.job);
    const pids = readProcs(procs);
    assert.ok(pids.length >= 3, `the job and its children are in the cgroup (${pids.length})`);
    const result = await started.job.cancel();
    assert.equal(result.reason, 'CANCELLED');
    assert.equal(existsSync(procs), false, 'the cgroup is removed');
    // bubblewrap's monitor exits as soon as its init reports the job's status, so that init may be
    // left for PID 1 to reap: dead (a zombie), not running.
    for (const pid of pids) assert.ok(!isRunning(pid), `process ${pid} is gone`);
    assert.deepEqual(await started.ran.then((ran) => ran.result), result);
  });

  it('close removes the cgroup directories of the sandbox; a job started after it still runs', async (t) => {
    const sandbox = await bubblewrap();
    const first = await startShell(t, sandbox, 'true');
    const ownerDir = dirname(dirname(procsFileOf(first.job)));
    await first.ran;
    await sandbox.close();
    assert.equal(existsSync(ownerDir), false);
    assert.equal((await runShell(t, sandbox, 'echo again')).stdout, 'again\n');
  });

  it('kills and removes the job cgroups a stopped node left behind when a sandbox is created', { timeout: 20_000 }, async () => {
    const { logger, lines } = captureLogs('info');
    await bubblewrap(); // makes remote-network/ in each hierarchy
    const stale = join('/sys/fs/cgroup/pids/remote-network', '999999999-1');
    const jobDir = join(stale, newJobId());
    mkdirSync(jobDir, { recursive: true });
    const orphan = spawn('/bin/sleep', ['100'], { stdio: 'ignore' });
    const exited = new Promise((resolve) => orphan.once('exit', (_code, signal) => resolve(signal)));
    writeFileSync(join(jobDir, 'cgroup.procs'), String(orphan.pid));
    await createSandbox({ mode: 'auto', uid: 65534, gid: 65534, graceMs: GRACE_MS }, logger);
    assert.equal(await exited, 'SIGKILL');
    assert.equal(existsSync(stale), false);
    assert.ok(lines.some((line) => typeof line.cgroups === 'number' && line.cgroups >= 1 && /left by a node/.test(line.msg)));
  });

  it('refuses a bad spec with INVALID_JOB_SPEC before starting anything', async (t) => {
    const sandbox = await bubblewrap();
    const workspace = await prepareWorkspace(tempDir(t), newJobId(), [], sandbox.jobUser);
    const spec = { jobId: newJobId(), executable: '/bin/true', args: [], workspace, stdin: null, env: {}, limits: LIMITS };
    const noop = () => undefined;
    for (const bad of [
      { jobId: '../../etc' },
      { executable: 'true' },
      { args: ['a\0b'] },
      { env: { 'A=B': 'x' } },
      { workspace: '/nonexistent/workspace' },
      { limits: { ...LIMITS, memoryBytes: 0 } },
      { limits: { ...LIMITS, cpuPercent: 1e9 } },
    ]) {
      assert.throws(
        () => sandbox.start({ ...spec, ...bad }, noop),
        (error) => error instanceof InvalidJobSpecError && error.code === 'INVALID_JOB_SPEC',
        JSON.stringify(bad),
      );
    }
    const running = sandbox.start({ ...spec, executable: '/bin/sleep', args: ['100'] }, noop);
    assert.throws(
      () => sandbox.start(spec, noop),
      (error) => error instanceof InvalidJobSpecError && /already running/.test(error.message),
    );
    // Cancelled at once, before its first process could join the cgroup: it must not run on.
    const cancelled = await running.cancel();
    assert.equal(cancelled.reason, 'CANCELLED');
    assert.ok(cancelled.durationMs < 50_000, `a job cancelled at its start ran ${cancelled.durationMs} ms of its 100 s`);
  });
});

describe('job sandbox modes', () => {
  it("mode 'none' runs a job without bubblewrap, in its own process group, and logs that it is unsandboxed", async (t) => {
    const { logger, lines } = captureLogs('info');
    const sandbox = await createSandbox({ mode: 'none', uid: 65534, gid: 65534, graceMs: GRACE_MS }, logger);
    assert.equal(sandbox.kind, 'none');
    assert.equal(sandbox.cgroups, null);
    assert.ok(lines.some((line) => line.level === 40 && /WITHOUT a sandbox/.test(line.msg)));
    const ran = await runShell(t, sandbox, 'pwd; ps -o pgid= -p $$ | tr -d " "; echo $$');
    assert.equal(ran.result.reason, 'EXITED');
    const [cwd, pgid, pid] = ran.stdout.trim().split('\n');
    assert.equal(cwd, ran.workspace);
    assert.equal(pgid, pid, 'the job leads its own process group');
    const timed = await runShell(t, sandbox, 'sleep 100 & sleep 100 & wait', { limits: { wallTimeMs: 300 } });
    assert.equal(timed.result.reason, 'TIMEOUT');
  });

  it("mode 'bubblewrap' without bwrap throws SANDBOX_UNAVAILABLE, naming what is missing and the opt-out", async () => {
    await assert.rejects(
      createSandbox({ mode: 'bubblewrap', uid: 65534, gid: 65534, graceMs: GRACE_MS, bwrapPath: '/nonexistent/bwrap' }, SILENT),
      (error) =>
        error instanceof SandboxUnavailableError &&
        error.code === 'SANDBOX_UNAVAILABLE' &&
        error.message.includes('/nonexistent/bwrap') &&
        error.message.includes('sandbox = none'),
    );
  });

  it('without a usable cgroup hierarchy throws SANDBOX_UNAVAILABLE saying so', { skip }, async (t) => {
    const cgroupRoot = tempDir(t); // an empty directory: neither a cgroup2 mount nor v1 hierarchies
    await assert.rejects(
      createSandbox({ mode: 'auto', uid: 65534, gid: 65534, graceMs: GRACE_MS, cgroupRoot }, SILENT),
      (error) =>
        error instanceof SandboxUnavailableError &&
        error.message.includes(`no cgroup v2 at ${cgroupRoot}`) &&
        error.message.includes('sandbox = none'),
    );
  });

  it('refuses root as the job user', async () => {
    await assert.rejects(createSandbox({ mode: 'none', uid: 0, gid: 0, graceMs: GRACE_MS }, SILENT), InvalidJobSpecError);
  });
});

describe('workspace names and outputs', () => {
  it('checkRemoteName refuses .., a/b, absolute paths, NUL, control characters, empty and over-long names', () => {
    for (const bad of ['..', '.', 'a/b', '/etc/passwd', 'a\0b', '', 'a\nb', 'a\\b', 'x'.repeat(256)]) {
      assert.throws(
        () => checkRemoteName(bad, 'input'),
        (error) => error instanceof UnsafeNameError && error.code === 'UNSAFE_NAME',
        JSON.stringify(bad),
      );
    }
    for (const good of ['data.txt', 'a..b', '.hidden', 'é'.repeat(127)]) assert.equal(checkRemoteName(good, 'input'), good);
  });

  it('prepareWorkspace refuses unsafe and duplicate input names and a reused job id', async (t) => {
    const root = tempDir(t);
    const owner = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
    await assert.rejects(prepareWorkspace(root, newJobId(), [{ name: '../x', data: Buffer.alloc(1) }], owner), UnsafeNameError);
    const twice = [
      { name: 'a', data: Buffer.alloc(1) },
      { name: 'a', data: Buffer.alloc(1) },
    ];
    await assert.rejects(prepareWorkspace(root, newJobId(), twice, owner), UnsafeNameError);
    await assert.rejects(prepareWorkspace(root, 'not-a-job-id', [], owner), InvalidJobSpecError);
    const jobId = newJobId();
    await prepareWorkspace(root, jobId, [], owner);
    await assert.rejects(prepareWorkspace(root, jobId, [], owner), { code: 'EEXIST' });
    await removeWorkspace(root, jobId);
    assert.equal(existsSync(join(root, jobId)), false);
  });

  it('collectOutputs refuses a symlink to /etc/passwd and a file over the cap, and ignores undeclared files', async (t) => {
    const root = tempDir(t);
    const owner = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
    const workspace = await prepareWorkspace(root, newJobId(), [], owner);
    const outputs = join(workspace, 'outputs');
    symlinkSync('/etc/passwd', join(outputs, 'link'));
    writeFileSync(join(outputs, 'big'), Buffer.alloc(101));
    writeFileSync(join(outputs, 'ok'), 'fine');
    writeFileSync(join(outputs, 'undeclared'), 'ignored');
    mkdirSync(join(outputs, 'dir'));
    const collected = await collectOutputs(workspace, ['link', 'big', 'ok', 'dir', '../../etc/passwd', 'ok'], 100);
    assert.deepEqual(
      collected.outputs.map((o) => o.name),
      ['ok'],
    );
    assert.deepEqual(
      collected.refused.map((r) => r.name),
      ['link', 'big', 'dir', '../../etc/passwd'],
    );
    assert.match(collected.refused[0]?.reason ?? '', /symlink/);
    assert.match(collected.refused[1]?.reason ?? '', /cap/);
  });

  it('collectOutputs refuses every output when outputs/ itself is a symlink', async (t) => {
    const root = tempDir(t);
    const owner = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
    const workspace = await prepareWorkspace(root, newJobId(), [], owner);
    spawnSync('/bin/rmdir', [join(workspace, 'outputs')]);
    symlinkSync('/etc', join(workspace, 'outputs'));
    const collected = await collectOutputs(workspace, ['passwd'], 1 << 20);
    assert.deepEqual(collected.outputs, []);
    assert.deepEqual(
      collected.refused.map((r) => r.name),
      ['passwd'],
    );
  });
});
