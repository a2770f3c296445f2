import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { tempDir } from './temp.ts';

const CLI = ['--import', 'tsx', 'src/cli/main.ts'];
const LOCAL_FLAGS = ['--api-port', '0', '--quic-port', '0', '--dht-port', '0', '--listen-host', '127.0.0.1', '--dht-bootstrap', ''];

export interface DaemonProcess {
  readonly child: ChildProcess;
  /** http://127.0.0.1:port/graphql */
  readonly url: string;
  /** Resident set size of the daemon process now (VmRSS), in MiB. */
  rssMiB(): number;
}

/**
 * `remote-network start` as a child process on loopback (its memory is measured apart from the
 * test's clients), killed after the test. Resolves once it logs "node started".
 */
export function startDaemonProcess(
  t: { after(fn: () => unknown): void },
  env: NodeJS.ProcessEnv = {},
  options: { readonly dataDir?: string; readonly quicPort?: number } = {},
): Promise<DaemonProcess> {
  const flags =
    options.quicPort === undefined
      ? LOCAL_FLAGS
      : LOCAL_FLAGS.map((f, i) => (LOCAL_FLAGS[i - 1] === '--quic-port' ? String(options.quicPort) : f));
  const child = spawn(process.execPath, [...CLI, 'start', '--data-dir', options.dataDir ?? tempDir(t), ...flags], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => child.kill('SIGKILL'));
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).on('line', (line) => {
      const entry = JSON.parse(line) as { msg?: string; graphql?: string };
      if (entry.msg === 'node started' && entry.graphql) {
        const pid = child.pid;
        resolve({ child, url: entry.graphql, rssMiB: () => vmRssMiB(pid) });
      }
    });
    child.once('close', (code) => reject(new Error(`daemon exited early with ${code}: ${stderr}`)));
  });
}

function vmRssMiB(pid: number | undefined): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status)?.[1];
  if (kib === undefined) throw new Error(`no VmRSS for process ${pid}`);
  return Number(kib) / 1024;
}
