/**
 * NAT lab: real NAT on one Linux machine, built from network namespaces and nftables, for tests of
 * NAT traversal that must not trust a simulation.
 *
 *   root namespace (the test process)
 *     │  one "mgmt" veth per host, each on its own /30 of 100.64.0.0/10: only that /30 is routed,
 *     │  so the host's default route (its internet path) is untouched
 *     ▼
 *   public host ─veth─ [wan: bridge, 198.51.100.0/24] ─veth─ router ─veth─ private host 10.<i>.0.2
 *                                                          (nftables: masquerade, input drop)
 *
 * Every name carries a per-run prefix (`rn<6 hex>`), so concurrent runs never collide; everything is
 * removed in `t.after`, and a detached janitor (nat-lab-janitor.ts) removes it if the test process
 * dies first. Needs root, `ip` (iproute2) and `nft` (nftables): see natLabSupport().
 */
import assert from 'node:assert/strict';
import { type ChildProcessByStdio, type ChildProcessWithoutNullStreams, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { type Client, createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { type GraphQLResponse, gql } from './graphql.ts';

export interface TestContextLike {
  after(fn: () => unknown): void;
}

export type NatType = 'cone' | 'symmetric';

/** Anything with a network namespace commands can run in (a host or a router). */
export interface LabNamespace {
  readonly netns: string;
}

export interface LabRouter extends LabNamespace {
  readonly nat: NatType;
  /** Its address on the wan: what the internet sees of the hosts behind it. */
  readonly wanAddress: string;
  readonly lanAddress: string;
}

export interface LabHost extends LabNamespace {
  readonly name: string;
  /** Its own IP (wan address for a public host, 10.<i>.0.2 for a private one). */
  readonly address: string;
  /** Its IP as the internet sees it: its own for a public host, its router's wan IP otherwise. */
  readonly publicAddress: string;
  /** Its end of the management link, reachable from the test process. */
  readonly mgmtAddress: string;
  /** The NAT in front of it; null for a public host. */
  readonly router: LabRouter | null;
}

export interface PrivateHostOptions {
  readonly nat: NatType;
  /** One-way delay added on the router's wan interface (netem: see natLabSupport().netem). */
  readonly wanDelayMs?: number;
}

export interface ExecOptions {
  readonly input?: string;
  readonly timeoutMs?: number;
  readonly env?: NodeJS.ProcessEnv;
}

export interface ExecResult {
  readonly stdout: string;
  readonly stderr: string;
}

export interface SpawnOptions {
  readonly env?: NodeJS.ProcessEnv;
}

export interface WaitOptions {
  readonly timeoutMs?: number;
  /** What is awaited, for the error message. */
  readonly what?: string;
  /** Stops waiting (rejects with the signal's reason) and removes the listeners. */
  readonly signal?: AbortSignal;
}

/** A process running inside a lab namespace (killed before the lab is removed). */
export interface LabProcess {
  readonly command: readonly string[];
  /** The exit code, or null when a signal ended it. */
  readonly exited: Promise<number | null>;
  /** stdout and stderr so far, interleaved as received. */
  output(): string;
  /** The first stdout line, printed already or yet to come, that `match` accepts. */
  waitForLine(match: (line: string) => boolean, options?: WaitOptions): Promise<string>;
  /** Writes to its stdin (ignored once it has exited). */
  write(text: string): void;
  kill(signal?: NodeJS.Signals): void;
  /** SIGTERM, SIGKILL after `timeoutMs`; the exit status (128 + signal number when a signal ended it). */
  stop(timeoutMs?: number): Promise<number>;
}

export interface NatLab {
  /** Prefix of every namespace (`<prefix>-…`) and root-namespace interface (`<prefix>m<n>`). */
  readonly prefix: string;
  readonly wanNetns: string;
  addPublicHost(name: string): Promise<LabHost>;
  addPrivateHost(name: string, options: PrivateHostOptions): Promise<LabHost>;
  /** Runs a command to completion in a namespace; rejects with LabCommandError unless it exits 0. */
  exec(target: LabNamespace, command: readonly string[], options?: ExecOptions): Promise<ExecResult>;
  /**
   * Puts a stateful firewall in front of a public host (nftables in its namespace): new inbound UDP
   * on its wan link is dropped, flows it opened keep working, as if it had moved behind a NAT router.
   */
  blockUnsolicited(host: LabHost): Promise<void>;
  /** Takes that firewall away again. */
  allowUnsolicited(host: LabHost): Promise<void>;
  /** Starts a long-running command in a namespace (cwd = repository root). */
  spawn(target: LabNamespace, command: readonly string[], options?: SpawnOptions): LabProcess;
  /** A fresh directory, removed with the lab (after its processes are gone). */
  tempDir(label?: string): string;
  /** Kills the lab's processes and removes its namespaces, links and directories (idempotent). */
  destroy(): Promise<void>;
}

export class NatLabError extends Error {
  override name = 'NatLabError';
}

/** The machine cannot build (this part of) the lab; the message says what is missing. */
export class NatLabUnsupportedError extends NatLabError {
  override name = 'NatLabUnsupportedError';
}

export class LabCommandError extends NatLabError {
  override name = 'LabCommandError';
  constructor(
    readonly command: readonly string[],
    readonly code: number | null,
    readonly stdout: string,
    readonly stderr: string,
    readonly timedOut: boolean,
  ) {
    super(`${command.join(' ')} ${timedOut ? 'timed out' : `exited with ${code}`}` + (stderr.trim() ? `: ${stderr.trim()}` : ''));
  }
}

export class LabTimeoutError extends NatLabError {
  override name = 'LabTimeoutError';
}

/** A lab process ended while something was still waiting for it. */
export class LabProcessExitedError extends NatLabError {
  override name = 'LabProcessExitedError';
  constructor(
    message: string,
    readonly code: number | null,
    readonly output: string,
  ) {
    super(message);
  }
}

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const JANITOR = fileURLToPath(new URL('./nat-lab-janitor.ts', import.meta.url));
/** Documentation addresses (RFC 5737): they exist only inside the lab. */
const WAN_NET = '198.51.100';
const WAN_IF = 'wan0';
const LAN_IF = 'lan0';
const MGMT_IF = 'mgmt0';
/** Each lab takes one /24 of 100.64.0.0/10 for its management links: 64 /30s. */
const MAX_HOSTS = 64;
const HOST_NAME = /^[a-z][a-z0-9-]{0,19}$/;
const COMMAND_TIMEOUT_MS = 20_000;

// ---------------------------------------------------------------------------------------------
// Support probe

export type NatLabSupport = { readonly ok: true; readonly netem: boolean } | { readonly ok: false; readonly reason: string };

let support: NatLabSupport | undefined;

/**
 * Whether this machine can build a lab: root, `ip netns add`, nf_tables in the kernel. `netem` says
 * whether `wanDelayMs` works (some kernels are built without sch_netem). Probed once, synchronously.
 */
export function natLabSupport(): NatLabSupport {
  support ??= probeSupport();
  return support;
}

function probeSupport(): NatLabSupport {
  if (process.platform !== 'linux') return { ok: false, reason: 'network namespaces need Linux' };
  if (process.getuid?.() !== 0) return { ok: false, reason: 'needs root (ip netns, nftables)' };
  if (!succeeds('ip', ['-V'])) return { ok: false, reason: '`ip` is missing (apt-get install iproute2)' };
  if (!succeeds('nft', ['--version'])) return { ok: false, reason: '`nft` is missing (apt-get install nftables)' };
  // Not a lab prefix ("p" is not hex): the probe can never be mistaken for, or touch, a lab.
  const probe = `rnprobe${process.pid}${randomBytes(2).toString('hex')}`;
  try {
    execFileSync('ip', ['netns', 'add', probe], { stdio: 'pipe' });
  } catch (error) {
    return { ok: false, reason: `\`ip netns add\` fails: ${stderrOf(error)}` };
  }
  try {
    if (!succeeds('ip', ['netns', 'exec', probe, 'nft', 'list', 'ruleset'])) {
      return { ok: false, reason: 'nftables does not work inside a network namespace (kernel without nf_tables?)' };
    }
    execFileSync('ip', ['-n', probe, 'link', 'set', 'lo', 'up'], { stdio: 'pipe' });
    const netem = succeeds('ip', ['netns', 'exec', probe, 'tc', 'qdisc', 'add', 'dev', 'lo', 'root', 'netem', 'delay', '1ms']);
    return { ok: true, netem };
  } finally {
    succeeds('ip', ['netns', 'del', probe]);
  }
}

/** Checked before a host is built, so that an unsupported delay fails without half a host. */
function assertNetem(): void {
  const check = natLabSupport();
  if (check.ok && !check.netem) {
    throw new NatLabUnsupportedError('wanDelayMs needs the netem qdisc, which this kernel lacks (CONFIG_NET_SCH_NETEM)');
  }
}

function succeeds(file: string, args: string[]): boolean {
  try {
    execFileSync(file, args, { stdio: 'pipe', timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

function stderrOf(error: unknown): string {
  const stderr = (error as { stderr?: Buffer | string }).stderr;
  return stderr ? String(stderr).trim() : String(error);
}

/** Namespaces, root-namespace interfaces and directories that still carry `prefix` (none once a lab is gone). */
export function labResidue(prefix: string): string[] {
  const namespaces = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .map((line) => line.split(' ')[0] ?? '')
    .filter((name) => name.startsWith(`${prefix}-`));
  const links = execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' })
    .split('\n')
    .map((line) => (line.split(': ')[1] ?? '').split('@')[0] ?? '')
    .filter((name) => name.startsWith(`${prefix}m`));
  const directories = readdirSync(tmpdir())
    .filter((name) => name.startsWith(`${prefix}-`))
    .map((name) => join(tmpdir(), name));
  return [...namespaces, ...links, ...directories];
}

// ---------------------------------------------------------------------------------------------
// Commands and processes

/** Runs a command to completion (not in a shell); rejects with LabCommandError unless it exits 0. */
function run(command: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
  const [file = '', ...args] = command;
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { cwd: REPO_ROOT, env: options.env ?? process.env, stdio: 'pipe' });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.stdin.on('error', () => {}); // a command that ignores its input may exit before reading it
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, options.timeoutMs ?? COMMAND_TIMEOUT_MS);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(new LabCommandError(command, null, stdout, `${stderr}${error.message}`, false));
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve({ stdout, stderr });
      else reject(new LabCommandError(command, code, stdout, stderr, timedOut));
    });
    child.stdin.end(options.input ?? '');
  });
}

/** Keeps the newest output only: a chatty process must not grow the test's memory without bound. */
const MAX_OUTPUT_CHARS = process.env.NAT_LAB_LOGS ? 256 * 1024 * 1024 : 4 * 1024 * 1024;
const MAX_LINES = 50_000;

class NamespacedProcess implements LabProcess {
  readonly exited: Promise<number | null>;
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly events = new EventEmitter();
  private readonly lines: string[] = [];
  private captured = '';
  private status: { code: number | null; signal: NodeJS.Signals | null } | undefined;

  constructor(
    readonly command: readonly string[],
    netns: string,
    env: NodeJS.ProcessEnv,
  ) {
    this.child = spawn('ip', ['netns', 'exec', netns, ...command], { cwd: REPO_ROOT, env, stdio: 'pipe' });
    this.child.stdout.setEncoding('utf8').on('data', (chunk: string) => this.capture(chunk));
    this.child.stderr.setEncoding('utf8').on('data', (chunk: string) => this.capture(chunk));
    this.child.stdin.on('error', () => {}); // writing after the exit: reported through `exited`
    createInterface({ input: this.child.stdout }).on('line', (line) => {
      this.lines.push(line);
      if (this.lines.length > MAX_LINES) this.lines.splice(0, MAX_LINES / 2);
      this.events.emit('line', line);
    });
    this.exited = new Promise((resolve) => {
      const settle = (code: number | null, signal: NodeJS.Signals | null) => {
        this.status ??= { code, signal };
        this.events.emit('exit');
        resolve(this.status.code);
      };
      this.child.on('close', settle);
      this.child.on('error', (error) => {
        this.capture(`\n[spawn failed: ${error.message}]\n`);
        settle(null, null);
      });
    });
  }

  output(): string {
    return this.captured;
  }

  waitForLine(match: (line: string) => boolean, options: WaitOptions = {}): Promise<string> {
    const what = options.what ?? 'the expected output line';
    const timeoutMs = options.timeoutMs ?? 30_000;
    return new Promise((resolve, reject) => {
      const found = this.lines.find(match);
      if (found !== undefined) return resolve(found);
      if (this.status) return reject(this.exitedError(what));
      const finish = (settle: () => void) => {
        clearTimeout(timer);
        this.events.off('line', onLine).off('exit', onExit);
        settle();
      };
      const onLine = (line: string) => {
        if (match(line)) finish(() => resolve(line));
      };
      const onExit = () => finish(() => reject(this.exitedError(what)));
      const timer = setTimeout(
        () => finish(() => reject(new LabTimeoutError(`${this.label()}: no ${what} within ${timeoutMs} ms\n${this.tail()}`))),
        timeoutMs,
      );
      this.events.on('line', onLine).on('exit', onExit);
    });
  }

  write(text: string): void {
    if (!this.status) this.child.stdin.write(text);
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (!this.status) this.child.kill(signal);
  }

  async stop(timeoutMs = 10_000): Promise<number> {
    this.kill('SIGTERM');
    const timer = setTimeout(() => this.kill('SIGKILL'), timeoutMs);
    await this.exited;
    clearTimeout(timer);
    const { code, signal } = this.status ?? { code: null, signal: null };
    return code ?? 128 + (signal ? constants.signals[signal] : 0);
  }

  private capture(chunk: string): void {
    this.captured += chunk;
    if (this.captured.length > MAX_OUTPUT_CHARS) this.captured = this.captured.slice(-MAX_OUTPUT_CHARS / 2);
  }

  private label(): string {
    return this.command.slice(0, 4).join(' ');
  }

  private tail(): string {
    return this.captured.slice(-4000);
  }

  private exitedError(what: string): LabProcessExitedError {
    const code = this.status?.code ?? null;
    const how = code === null ? `signal ${this.status?.signal ?? '?'}` : `code ${code}`;
    return new LabProcessExitedError(`${this.label()} exited (${how}) before ${what}\n${this.tail()}`, code, this.captured);
  }
}

// ---------------------------------------------------------------------------------------------
// The janitor (see nat-lab-janitor.ts)

class Janitor {
  private readonly child: ChildProcessByStdio<Writable, null, null>;

  constructor() {
    // Detached (its own session): the terminal's Ctrl-C, or the test runner killing this process,
    // must not take it down too. stdout/stderr ignored: `node --test` waits for open pipes.
    this.child = spawn(process.execPath, ['--import', 'tsx', JANITOR], {
      cwd: REPO_ROOT,
      detached: true,
      stdio: ['pipe', 'ignore', 'ignore'],
    });
    this.child.on('error', () => {}); // best effort: the lab's own t.after cleanup still runs
    this.child.stdin.on('error', () => {});
    this.child.unref();
  }

  /** Call before creating the resource, so that a crash right after leaves nothing unannounced. */
  announce(kind: 'ns' | 'link' | 'dir', name: string): void {
    this.child.stdin.write(`${kind} ${name}\n`);
  }

  /** Everything is gone: the janitor may exit without work. */
  release(): void {
    this.child.stdin.end('done\n');
  }

  /** Cleanup failed here: closing stdin without "done" makes the janitor retry it. */
  abandon(): void {
    this.child.stdin.end();
  }
}

// ---------------------------------------------------------------------------------------------
// The lab

/**
 * Builds an empty lab (the wan bridge) whose namespaces, links and processes are all removed in
 * `t.after`, also when building it fails halfway.
 */
export async function createNatLab(t: TestContextLike): Promise<NatLab> {
  const check = natLabSupport();
  if (!check.ok) throw new NatLabUnsupportedError(`the NAT lab cannot run here: ${check.reason}`);
  const prefix = await freshPrefix();
  const lab = new Lab(prefix, await freeMgmtNet(), new Janitor());
  t.after(() => lab.destroy());
  await lab.init();
  return lab;
}

async function freshPrefix(): Promise<string> {
  const existing = (await run(['ip', 'netns', 'list'])).stdout;
  for (;;) {
    const prefix = `rn${randomBytes(3).toString('hex')}`;
    if (!existing.includes(`${prefix}-`)) return prefix;
  }
}

/**
 * A /24 of 100.64.0.0/10 (shared address space, never on the internet) that no address or route of
 * the root namespace uses yet. Random, so that concurrent labs (two test runs) pick different ones.
 */
async function freeMgmtNet(): Promise<string> {
  const inUse = (await run(['ip', '-4', '-o', 'route', 'show', 'table', 'all'])).stdout;
  for (let attempt = 0; attempt < 100; attempt++) {
    const [a = 0, b = 0] = randomBytes(2);
    const net = `100.${64 + (a % 64)}.${b}`;
    if (!inUse.includes(`${net}.`)) return net;
  }
  throw new NatLabError('no free /24 in 100.64.0.0/10 for the management links');
}

interface MgmtLink {
  readonly rootIf: string;
  readonly rootAddress: string;
  readonly hostAddress: string;
}

class Lab implements NatLab {
  readonly wanNetns: string;
  private readonly namespaces: string[] = [];
  private readonly rootLinks: string[] = [];
  private readonly directories: string[] = [];
  private readonly processes = new Set<LabProcess>();
  private readonly hostNames = new Set<string>();
  private hostCount = 0;
  private wanCount = 0;
  private lanCount = 0;
  private destroying: Promise<void> | undefined;

  constructor(
    readonly prefix: string,
    private readonly mgmtNet: string,
    private readonly janitor: Janitor,
  ) {
    this.wanNetns = `${prefix}-wan`;
  }

  async init(): Promise<void> {
    await this.addNamespace(this.wanNetns);
    await this.ipBatch(this.wanNetns, ['link add br0 type bridge', 'link set br0 up']);
  }

  async addPublicHost(name: string): Promise<LabHost> {
    this.claimName(name);
    const netns = `${this.prefix}-${name}`;
    const address = this.nextWanAddress();
    const mgmt = this.nextMgmtLink();
    await this.addNamespace(netns);
    await this.joinWan(netns, address);
    await this.linkMgmt(netns, mgmt);
    return { name, netns, address, publicAddress: address, mgmtAddress: mgmt.hostAddress, router: null };
  }

  async addPrivateHost(name: string, options: PrivateHostOptions): Promise<LabHost> {
    this.claimName(name);
    if (options.wanDelayMs) assertNetem();
    const netns = `${this.prefix}-${name}`;
    const lan = this.nextLan();
    const router: LabRouter = {
      netns: `${this.prefix}-${name}-nat`,
      nat: options.nat,
      wanAddress: this.nextWanAddress(),
      lanAddress: `${lan}.1`,
    };
    const address = `${lan}.2`;
    const mgmt = this.nextMgmtLink();
    await this.addNamespace(router.netns);
    await this.addNamespace(netns);
    await this.joinWan(router.netns, router.wanAddress);
    await this.buildRouter(router, netns, options.wanDelayMs);
    await this.ipBatch(netns, [
      `addr add ${address}/24 dev ${LAN_IF}`,
      `link set ${LAN_IF} up`,
      // The internet path: a node binding 0.0.0.0 here reaches the wan only through the router.
      `route add default via ${router.lanAddress}`,
    ]);
    await this.linkMgmt(netns, mgmt);
    return { name, netns, address, publicAddress: router.wanAddress, mgmtAddress: mgmt.hostAddress, router };
  }

  async blockUnsolicited(host: LabHost): Promise<void> {
    const rules = [
      'table inet rnfirewall {',
      '  chain input {',
      '    type filter hook input priority 0; policy accept;',
      `    iifname "${WAN_IF}" meta l4proto udp ct state new drop`,
      '  }',
      '}',
    ].join('\n');
    await this.exec(host, ['nft', '-f', '-'], { input: rules });
  }

  async allowUnsolicited(host: LabHost): Promise<void> {
    await this.exec(host, ['nft', 'delete', 'table', 'inet', 'rnfirewall']);
  }

  exec(target: LabNamespace, command: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
    this.assertOpen();
    return run(['ip', 'netns', 'exec', target.netns, ...command], options);
  }

  spawn(target: LabNamespace, command: readonly string[], options: SpawnOptions = {}): LabProcess {
    this.assertOpen();
    const child = new NamespacedProcess(command, target.netns, options.env ?? process.env);
    this.processes.add(child);
    void child.exited.then(() => this.processes.delete(child));
    return child;
  }

  tempDir(label = 'tmp'): string {
    this.assertOpen();
    const dir = mkdtempSync(join(tmpdir(), `${this.prefix}-${label}-`));
    this.janitor.announce('dir', dir);
    this.directories.push(dir);
    return dir;
  }

  destroy(): Promise<void> {
    this.destroying ??= this.tearDown();
    return this.destroying;
  }

  private async tearDown(): Promise<void> {
    const problems: string[] = [];
    // Processes first: a namespace with a process inside outlives `ip netns del` (only unmounted).
    await this.killProcesses();
    await Promise.all(this.namespaces.map((ns) => this.killInside(ns)));
    // Root ends next: deleting one removes its peer at once, where namespace teardown is asynchronous.
    await Promise.all(
      this.rootLinks.map((link) =>
        run(['ip', 'link', 'del', link]).catch((error: unknown) => {
          if (!String(error).includes('Cannot find device')) problems.push(String(error));
        }),
      ),
    );
    await Promise.all(this.namespaces.map((ns) => run(['ip', 'netns', 'del', ns]).catch((error: unknown) => problems.push(String(error)))));
    for (const dir of this.directories) rmSync(dir, { recursive: true, force: true });
    const residue = labResidue(this.prefix);
    if (residue.length > 0) problems.push(`left behind: ${residue.join(', ')}`);
    if (problems.length > 0) {
      this.janitor.abandon();
      throw new NatLabError(`NAT lab ${this.prefix} was not removed cleanly:\n${problems.join('\n')}`);
    }
    this.janitor.release();
  }

  private async killProcesses(): Promise<void> {
    const running = [...this.processes];
    for (const child of running) child.kill('SIGKILL');
    await Promise.all(running.map((child) => child.exited));
  }

  /** Anything the lab did not start itself but that runs in its namespace (a command's children). */
  private async killInside(ns: string): Promise<void> {
    const { stdout } = await run(['ip', 'netns', 'pids', ns]).catch(() => ({ stdout: '' }));
    for (const pid of stdout.split(/\s+/).filter(Boolean).map(Number)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
  }

  private assertOpen(): void {
    if (this.destroying) throw new NatLabError(`NAT lab ${this.prefix} has been destroyed`);
  }

  private claimName(name: string): void {
    this.assertOpen();
    if (!HOST_NAME.test(name)) throw new NatLabError(`host name ${JSON.stringify(name)}: expected ${HOST_NAME}`);
    // "wan" and "<name>-nat" are the lab's own namespaces.
    if (name === 'wan' || name.endsWith('-nat')) throw new NatLabError(`host name ${name} is reserved`);
    if (this.hostNames.has(name)) throw new NatLabError(`host name ${name} is taken`);
    this.hostNames.add(name);
  }

  // Allocations are synchronous, so hosts may be added concurrently.

  private nextWanAddress(): string {
    if (this.wanCount >= 253) throw new NatLabError('the wan is full (253 addresses)');
    return `${WAN_NET}.${++this.wanCount}`;
  }

  private nextLan(): string {
    if (this.lanCount >= 254) throw new NatLabError('no more private LANs (254)');
    return `10.${++this.lanCount}.0`;
  }

  private nextMgmtLink(): MgmtLink {
    if (this.hostCount >= MAX_HOSTS) throw new NatLabError(`a lab holds at most ${MAX_HOSTS} hosts`);
    const slot = this.hostCount++;
    return {
      // ≤ 15 characters (the kernel's limit), unique per run like the prefix.
      rootIf: `${this.prefix}m${slot}`,
      rootAddress: `${this.mgmtNet}.${slot * 4 + 1}`,
      hostAddress: `${this.mgmtNet}.${slot * 4 + 2}`,
    };
  }

  private async addNamespace(netns: string): Promise<void> {
    this.janitor.announce('ns', netns);
    await run(['ip', 'netns', 'add', netns]);
    this.namespaces.push(netns);
    await this.ipBatch(netns, ['link set lo up']);
  }

  /** A veth from `netns` (its `wan0`) to a port of the wan bridge. */
  private async joinWan(netns: string, address: string): Promise<void> {
    const port = `p${address.split('.').at(-1)}`;
    await this.ipBatch(netns, [
      `link add ${WAN_IF} type veth peer name ${port} netns ${this.wanNetns}`,
      `addr add ${address}/24 dev ${WAN_IF}`,
      `link set ${WAN_IF} up`,
    ]);
    await this.ipBatch(this.wanNetns, [`link set ${port} master br0`, `link set ${port} up`]);
  }

  private async buildRouter(router: LabRouter, lanNetns: string, wanDelayMs: number | undefined): Promise<void> {
    await this.ipBatch(router.netns, [
      `link add ${LAN_IF} type veth peer name ${LAN_IF} netns ${lanNetns}`,
      `addr add ${router.lanAddress}/24 dev ${LAN_IF}`,
      `link set ${LAN_IF} up`,
    ]);
    // sh rather than sysctl(8): procps is missing from slim images; /proc/sys/net is per namespace.
    await this.exec(router, ['sh', '-c', 'echo 1 > /proc/sys/net/ipv4/ip_forward && nft -f -'], {
      input: routerRuleset(router.nat),
    });
    if (wanDelayMs) await this.delayWan(router, wanDelayMs);
  }

  private async delayWan(router: LabRouter, delayMs: number): Promise<void> {
    await this.exec(router, ['tc', 'qdisc', 'add', 'dev', WAN_IF, 'root', 'netem', 'delay', `${delayMs}ms`]);
  }

  /** A veth from the root namespace to `netns` carrying only its own /30 (no default route). */
  private async linkMgmt(netns: string, link: MgmtLink): Promise<void> {
    // Recorded first: destroy() tolerates a link that was never created.
    this.janitor.announce('link', link.rootIf);
    this.rootLinks.push(link.rootIf);
    await run(['ip', '-batch', '-'], {
      input: [
        `link add ${link.rootIf} type veth peer name ${MGMT_IF} netns ${netns}`,
        `addr add ${link.rootAddress}/30 dev ${link.rootIf}`,
        `link set ${link.rootIf} up`,
      ].join('\n'),
    });
    await this.ipBatch(netns, [`addr add ${link.hostAddress}/30 dev ${MGMT_IF}`, `link set ${MGMT_IF} up`]);
  }

  private async ipBatch(netns: string, commands: readonly string[]): Promise<void> {
    await run(['ip', '-n', netns, '-batch', '-'], { input: `${commands.join('\n')}\n` });
  }
}

/**
 * A home router. `masquerade` keeps the host's source port when it is free (endpoint-independent
 * mapping: a cone NAT); `masquerade random` picks a fresh port per destination (a symmetric NAT).
 * The input drop matters for hole punching, not only for realism: a peer's punch packet that
 * reaches the router before its own host has sent anything would otherwise leave a conntrack entry
 * behind, and the host's later outbound packet would get a different port (the mapping is stolen)
 * even behind a cone NAT. Dropped packets leave no entry. The forward chain keeps the wan out of
 * the LAN as a real router does.
 */
function routerRuleset(nat: NatType): string {
  return `
table ip nat {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "${WAN_IF}" masquerade${nat === 'symmetric' ? ' random' : ''}
  }
}
table ip filter {
  chain input {
    type filter hook input priority filter; policy drop;
    ct state established,related accept
    iifname "${LAN_IF}" accept
    iifname "lo" accept
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname "${LAN_IF}" oifname "${WAN_IF}" accept
  }
}
`;
}

// ---------------------------------------------------------------------------------------------
// Remote Network nodes inside the lab

export interface LabNode {
  readonly host: LabHost;
  readonly peerId: string;
  /** http://<mgmtAddress>:<port>/graphql */
  readonly apiUrl: string;
  readonly token: string;
  /** host.address:quicPort (behind NAT, the LAN address: the router's mapping is not known here). */
  readonly quicAddress: string;
  readonly dhtAddress: string;
  readonly process: LabProcess;
  readonly exited: Promise<number | null>;
  /** GraphQL over HTTP with the node's token. */
  query<T = unknown>(query: string, variables?: Record<string, unknown>): Promise<GraphQLResponse<T>>;
  /** SIGTERM, SIGKILL after `timeoutMs`; the exit status (0 = clean stop). */
  stop(timeoutMs?: number): Promise<number>;
  kill(signal?: NodeJS.Signals): void;
  output(): string;
}

export interface StartLabNodeOptions {
  /** How long to wait for the "node started" log line. */
  readonly startTimeoutMs?: number;
}

const NODE_STARTED = 'node started';

/**
 * Starts `remote-network start` inside `host` with its configuration given as environment
 * variables (`REMOTE_NETWORK_<SECTION>_<KEY>`): lab defaults (fixed ports: each host has its own
 * namespace; no DHT bootstrap; API on the management link with a random token, which an API off
 * loopback requires), overridden by `settings` ({ 'section.key': value }). Resolves once the node
 * logs "node started"; stopped after the test, and killed before the lab is removed in any case.
 */
export async function startLabNode(
  t: TestContextLike,
  lab: NatLab,
  host: LabHost,
  settings: Readonly<Record<string, string>> = {},
  options: StartLabNodeOptions = {},
): Promise<LabNode> {
  const config: Record<string, string> = {
    // Removed with the lab, after its processes: never under a node still writing to it.
    'node.data_dir': settings['node.data_dir'] ?? lab.tempDir(`node-${host.name}`),
    'node.listen_host': '0.0.0.0',
    // NAT_LAB_LOGS=<dir>: debug logs of every lab node, written there when the node stops.
    'node.log_level': process.env.NAT_LAB_LOGS ? 'debug' : 'info',
    'quic.quic_port': '30906',
    'dht.dht_port': '6881',
    'dht.bootstrap_nodes': '',
    'api.host': host.mgmtAddress,
    'api.port': '8080',
    'api.token': randomBytes(16).toString('hex'),
    ...settings,
  };
  const quicPort = fixedPort(config, 'quic.quic_port');
  const dhtPort = fixedPort(config, 'dht.dht_port');
  const child = lab.spawn(host, [process.execPath, '--import', 'tsx', 'src/cli/main.ts', 'start'], {
    env: nodeEnvironment(config),
  });
  t.after(async () => {
    await child.stop();
    const logDir = process.env.NAT_LAB_LOGS;
    if (logDir) {
      mkdirSync(logDir, { recursive: true });
      writeFileSync(join(logDir, `${host.name}-${Date.now()}.log`), child.output());
    }
  });
  const line = await child.waitForLine((l) => startedLine(l) !== undefined, {
    timeoutMs: options.startTimeoutMs ?? 60_000,
    what: `"${NODE_STARTED}" log line`,
  });
  const { peerId, graphql } = startedLine(line) ?? { peerId: '', graphql: '' };
  const token = config['api.token'] ?? '';
  return {
    host,
    peerId,
    apiUrl: graphql,
    token,
    quicAddress: `${host.address}:${quicPort}`,
    dhtAddress: `${host.address}:${dhtPort}`,
    process: child,
    exited: child.exited,
    query: (query, variables = {}) => gql(graphql, query, variables, { authorization: `Bearer ${token}` }),
    stop: (timeoutMs) => child.stop(timeoutMs),
    kill: (signal) => child.kill(signal),
    output: () => child.output(),
  };
}

function fixedPort(config: Record<string, string>, key: string): number {
  const port = Number(config[key]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new NatLabError(`${key} = ${config[key]}: a lab node needs a fixed port (every host has its own namespace)`);
  }
  return port;
}

/** The test's environment without its own REMOTE_NETWORK_* settings, plus `config` as variables. */
function nodeEnvironment(config: Readonly<Record<string, string>>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith('REMOTE_NETWORK_')) env[name] = value;
  }
  for (const [setting, value] of Object.entries(config)) {
    const match = /^([a-z_]+)\.([a-z_]+)$/.exec(setting);
    if (!match) throw new NatLabError(`setting ${JSON.stringify(setting)}: expected "section.key"`);
    env[`REMOTE_NETWORK_${match[1]?.toUpperCase()}_${match[2]?.toUpperCase()}`] = value;
  }
  return env;
}

function startedLine(line: string): { peerId: string; graphql: string } | undefined {
  const entry = parseJsonLine(line);
  if (typeof entry !== 'object' || entry === null) return undefined;
  const { msg, peerId, graphql } = entry as Record<string, unknown>;
  return msg === NODE_STARTED && typeof peerId === 'string' && typeof graphql === 'string' ? { peerId, graphql } : undefined;
}

/** A JSON line's value, or undefined when the line is not JSON. */
export function parseJsonLine(line: string): unknown {
  try {
    return JSON.parse(line) as unknown;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Event subscriptions against a lab node

export interface LabEvent {
  readonly type: string;
  readonly seq: number;
  readonly at: string;
  readonly payload: unknown;
}

export interface LabEventStream {
  /** Every event received so far, oldest first. */
  readonly received: readonly LabEvent[];
  /** The first event since the stream opened (received already or yet to come) that `match` accepts. */
  waitFor(match: (event: LabEvent) => boolean, options?: WaitOptions): Promise<LabEvent>;
  close(): Promise<void>;
}

const EVENTS_SUBSCRIPTION = 'subscription($types: [String!]) { events(types: $types) { type seq at payload } }';

/**
 * Subscribes to the node's `events(types:)` over graphql-ws and resolves once the subscription is
 * live on the server, so that whatever the test does next is seen. Closed after the test.
 */
export async function openEventStream(t: TestContextLike, node: LabNode, types: readonly string[] = []): Promise<LabEventStream> {
  const client = createClient({
    url: node.apiUrl.replace(/^http/, 'ws'),
    webSocketImpl: WebSocket,
    connectionParams: { token: node.token },
    retryAttempts: 0,
  });
  const stream = new EventStream(client);
  t.after(() => stream.close());
  stream.start(types.length > 0 ? [...types] : null);
  await stream.whenLive();
  return stream;
}

class EventStream implements LabEventStream {
  readonly received: LabEvent[] = [];
  private readonly events = new EventEmitter();
  private failure: Error | undefined;
  private unsubscribe: (() => void) | undefined;

  constructor(private readonly client: Client) {}

  start(types: string[] | null): void {
    this.unsubscribe = this.client.subscribe<{ events: LabEvent }>(
      { query: EVENTS_SUBSCRIPTION, variables: { types } },
      {
        next: (result) => {
          if (result.errors?.length) return this.fail(new NatLabError(`events subscription: ${result.errors[0]?.message}`));
          if (!result.data) return;
          this.received.push(result.data.events);
          this.events.emit('event', result.data.events);
        },
        error: (error: unknown) =>
          this.fail(error instanceof Error ? error : new NatLabError(`events subscription: ${closeReason(error)}`)),
        complete: () => this.fail(new NatLabError('events subscription ended')),
      },
    );
  }

  /**
   * graphql-transport-ws never acknowledges a subscription, so this proves it live instead: the
   * subscribe message goes first on the socket, and setting it up on the server takes no I/O (only
   * promise jobs). The second of two sequential queries is read by the server in a later event-loop
   * turn than the subscribe message, when those jobs have all run.
   */
  async whenLive(): Promise<void> {
    for (let i = 0; i < 2; i++) {
      const result = await this.client.iterate({ query: '{ __typename }' }).next();
      if (this.failure) throw this.failure;
      if (result.done) throw new NatLabError('the GraphQL WebSocket closed while opening the events stream');
    }
  }

  waitFor(match: (event: LabEvent) => boolean, options: WaitOptions = {}): Promise<LabEvent> {
    const what = options.what ?? 'matching event';
    const timeoutMs = options.timeoutMs ?? 30_000;
    return new Promise((resolve, reject) => {
      const found = this.received.find(match);
      if (found) return resolve(found);
      if (this.failure) return reject(this.failure);
      if (options.signal?.aborted) return reject(options.signal.reason as Error);
      const finish = (settle: () => void) => {
        clearTimeout(timer);
        this.events.off('event', onEvent).off('failure', onFailure);
        options.signal?.removeEventListener('abort', onAbort);
        settle();
      };
      const onAbort = () => finish(() => reject(options.signal?.reason as Error));
      const onEvent = (event: LabEvent) => {
        if (match(event)) finish(() => resolve(event));
      };
      const onFailure = (error: Error) => finish(() => reject(error));
      const timer = setTimeout(() => {
        const seen = this.received.map((e) => e.type).join(', ') || 'none';
        finish(() => reject(new LabTimeoutError(`no ${what} within ${timeoutMs} ms (events seen: ${seen})`)));
      }, timeoutMs);
      this.events.on('event', onEvent).on('failure', onFailure);
      options.signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  async close(): Promise<void> {
    this.unsubscribe?.();
    await this.client.dispose();
  }

  private fail(error: Error): void {
    this.failure ??= error;
    this.events.emit('failure', this.failure);
  }
}

function closeReason(value: unknown): string {
  if (typeof value === 'object' && value !== null && 'code' in value && 'reason' in value) {
    return `socket closed (${String(value.code)} ${String(value.reason)})`;
  }
  return String(value);
}

/**
 * Resolves once `check` holds, re-checking after each new event of `streams` (no polling sleeps).
 * Events that arrive while `check` runs are not missed: the wait starts after the last one seen.
 */
export async function eventually(
  check: () => Promise<boolean>,
  streams: LabEventStream | readonly LabEventStream[],
  what: string,
  timeoutMs = 30_000,
): Promise<void> {
  const all: readonly LabEventStream[] = Array.isArray(streams) ? streams : [streams as LabEventStream];
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const seen = all.map((events) => events.received.at(-1)?.seq ?? -1);
    if (await check()) return;
    const left = deadline - Date.now();
    if (left <= 0) assert.fail(`${what}: not within ${timeoutMs} ms`);
    // The next event on any of the nodes may have changed the answer. The streams that did not
    // answer stop waiting: their listeners would pile up until the deadline.
    const waits = new AbortController();
    try {
      await Promise.any(
        all.map((events, i) => events.waitFor((e: LabEvent) => e.seq > (seen[i] ?? -1), { timeoutMs: left, what, signal: waits.signal })),
      );
    } catch {
      if (!(await check())) assert.fail(`${what}: not within ${timeoutMs} ms`);
      return;
    } finally {
      waits.abort(new Error('another stream answered'));
    }
  }
}

/**
 * Cleanups for a lab built in a suite's before(): node:test's after() called inside before() would
 * bind to the hook itself and run as soon as the hook ends. `runAll` runs every cleanup, the last
 * registered first (nodes before the lab they run in), also when one of them fails: a cleanup left
 * out would leave namespaces and processes behind and the test process waiting on them.
 */
export function suiteCleanups(): { readonly suite: TestContextLike; readonly runAll: () => Promise<void> } {
  const cleanups: Array<() => unknown> = [];
  return {
    suite: { after: (cleanup) => void cleanups.push(cleanup) },
    runAll: async () => {
      const failures: unknown[] = [];
      for (const cleanup of cleanups.splice(0).reverse()) {
        try {
          await cleanup();
        } catch (error) {
          failures.push(error);
        }
      }
      if (failures.length > 0) throw new AggregateError(failures, `${failures.length} lab cleanup(s) failed`);
    },
  };
}

/**
 * A lab suite's `skip` option: the reason where this machine cannot build a lab, except under CI,
 * which installs what the lab needs (.ci/run): there an unusable lab is a failure, not a skip.
 */
export function labSkip(support: NatLabSupport): string | false {
  return !support.ok && !process.env.CI ? `NAT lab unavailable: ${support.reason}` : false;
}

/** An event's payload, read field by field (the events stream carries them as JSON). */
export const payloadOf = (event: { payload: unknown }) => event.payload as Record<string, unknown>;
