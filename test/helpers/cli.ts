import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

/** `node --import tsx src/cli/main.ts`: the CLI as an operator runs it, in its own process. */
export const CLI = ['--import', 'tsx', 'src/cli/main.ts'];
/** Flags that keep a started node on 127.0.0.1 with free ports and no DHT routers. */
export const LOCAL_FLAGS = ['--api-port', '0', '--quic-port', '0', '--dht-port', '0', '--listen-host', '127.0.0.1', '--dht-bootstrap', ''];

export interface Finished {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the CLI to its end; `onLine` sees each stdout line as it comes (the node's JSON log). */
export function runCli(
  args: readonly string[],
  options: { readonly env?: NodeJS.ProcessEnv; readonly onLine?: (line: string, child: ChildProcess) => void } = {},
): Promise<Finished> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...CLI, ...args], { env: { ...process.env, ...options.env } });
    let stdout = '';
    let stderr = '';
    createInterface({ input: child.stdout }).on('line', (line) => {
      stdout += `${line}\n`;
      options.onLine?.(line, child);
    });
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
