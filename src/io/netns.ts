/**
 * Test worlds in Linux network namespaces, built with iproute2 (`ip`) through
 * `execFile` (argument vectors, never shell strings). Used by `sectunnel demo`,
 * the integration tests and `bench/e2e.ts`.
 *
 * Life of a World:
 *   1. `World.create(prefix)` removes namespaces left with the same prefix by a
 *      crashed earlier run (killing the processes still inside them), and
 *      registers the process 'exit'/SIGINT/SIGTERM handlers.
 *   2. Building: every namespace, link and process the world creates is recorded.
 *      Addresses, MTUs and link state live on those links and need no record.
 *   3. `destroy()` (idempotent; also run by the handlers) undoes the records in
 *      reverse order: processes stopped, links deleted, namespaces deleted. It
 *      goes on past failures and fails only if a namespace of the world is left.
 *
 * Every namespace name is `prefix + short`; the prefix must start with `st-`.
 * Commands run only in namespaces this world created.
 *
 * `buildStandardTopology()` builds the world of DESIGN.md's demo and of issue 8's
 * benchmark: two hosts joined by a veth underlay, guests on each host.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';

// ---------------------------------------------------------------------------------
// Errors and commands

/** Stable codes of `NetnsError`. */
export type NetnsErrorCode =
  | 'NETNS_BAD_NAME' // a prefix, namespace or interface name that is not allowed
  | 'NETNS_FOREIGN' // a namespace this world did not create
  | 'NETNS_COMMAND_FAILED' // a command exited non-zero or could not start
  | 'NETNS_TIMEOUT' // a wait (link, output, reachability) ran out
  | 'NETNS_DESTROYED' // the world is being or has been destroyed
  | 'NETNS_TEARDOWN_FAILED'; // destroy() could not remove every namespace

/** A failed world operation; for commands the message names the command line and its stderr. */
export class NetnsError extends Error {
  constructor(
    readonly code: NetnsErrorCode,
    message: string,
    /** The argument vector that failed (program first), if a command failed. */
    readonly command: readonly string[] | null = null,
    /** The command's standard error, trimmed. */
    readonly stderr: string = '',
  ) {
    super(message);
    this.name = 'NetnsError';
  }
}

/** Output of a command that exited 0. */
export interface CommandResult {
  stdout: string;
  stderr: string;
}

const DEFAULT_COMMAND_TIMEOUT_MS = 30_000;
const MAX_OUTPUT_BYTES = 16 * 1024 * 1024;

function quoteArgv(argv: readonly string[]): string {
  return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

function commandError(argv: readonly string[], exit: string, stderr: string, stdout = ''): NetnsError {
  const err = stderr.trim();
  // Some programs (iperf3 -J) report errors on stdout: show its tail when stderr is empty.
  const shown = err || stdout.trim().slice(-500);
  return new NetnsError(
    'NETNS_COMMAND_FAILED',
    `\`${quoteArgv(argv)}\` failed (${exit})${shown ? `: ${shown}` : ''}`,
    argv,
    err,
  );
}

/** Runs `cmd args` without a shell; rejects with a NetnsError naming the command and its stderr. */
export function runCommand(
  cmd: string,
  args: readonly string[],
  opts: { timeoutMs?: number } = {},
): Promise<CommandResult> {
  const argv = [cmd, ...args];
  return new Promise((resolve, reject) => {
    execFile(
      cmd,
      args,
      { timeout: opts.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS, maxBuffer: MAX_OUTPUT_BYTES, encoding: 'utf8' },
      (error, stdout, stderr) => {
        if (!error) return resolve({ stdout, stderr });
        const e = error as NodeJS.ErrnoException & { code?: unknown; signal?: string | null; killed?: boolean };
        const exit =
          typeof e.code === 'number'
            ? `exit ${e.code}`
            : e.killed || e.signal
              ? `killed by ${e.signal ?? 'timeout'}`
              : `could not start: ${e.message}`;
        reject(commandError(argv, exit, stderr, stdout));
      },
    );
  });
}

/** Synchronous twin of `runCommand`, for the process 'exit' handler. */
export function runCommandSync(cmd: string, args: readonly string[], opts: { timeoutMs?: number } = {}): CommandResult {
  try {
    const stdout = execFileSync(cmd, args, {
      timeout: opts.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS,
      maxBuffer: MAX_OUTPUT_BYTES,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return { stdout, stderr: '' };
  } catch (error) {
    const e = error as { status?: number | null; signal?: string | null; stderr?: string; stdout?: string; message?: string };
    const exit = typeof e.status === 'number' ? `exit ${e.status}` : e.signal ? `killed by ${e.signal}` : `could not start: ${e.message}`;
    throw commandError([cmd, ...args], exit, e.stderr ?? '', e.stdout ?? '');
  }
}

// ---------------------------------------------------------------------------------
// Names

/** A namespace prefix: `st-`, one or more lowercase words joined by `-`, ending in `-` (e.g. `st-bench-`). */
export const NETNS_PREFIX_PATTERN = /^st-[a-z0-9]+(?:-[a-z0-9]+)*-$/;
const SHORT_NAME_PATTERN = /^[a-z0-9][a-z0-9-]{0,39}$/;
/** Linux interface names: at most 15 octets (IFNAMSIZ - 1). */
const IFNAME_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$/;

/** Throws NETNS_BAD_NAME unless `prefix` matches NETNS_PREFIX_PATTERN. */
export function checkPrefix(prefix: string): void {
  if (!NETNS_PREFIX_PATTERN.test(prefix)) {
    throw new NetnsError(
      'NETNS_BAD_NAME',
      `namespace prefix '${prefix}' is not allowed: it must match ${NETNS_PREFIX_PATTERN} (start with 'st-', end with '-')`,
    );
  }
}

function checkIfname(name: string): void {
  if (!IFNAME_PATTERN.test(name)) {
    throw new NetnsError('NETNS_BAD_NAME', `interface name '${name}' is not allowed: 1-15 of [A-Za-z0-9_.-]`);
  }
}

/** Names of all network namespaces `ip netns list` shows. */
export async function listNamespaces(): Promise<string[]> {
  const { stdout } = await runCommand('ip', ['netns', 'list']);
  return parseNetnsList(stdout);
}

function listNamespacesSync(): string[] {
  return parseNetnsList(runCommandSync('ip', ['netns', 'list']).stdout);
}

function parseNetnsList(stdout: string): string[] {
  // Lines look like "st-bench-host-a (id: 3)" or just "st-bench-host-a".
  return stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((n) => n.length > 0);
}

/** Names of the namespaces that start with `prefix` (which must be a valid prefix). */
export async function namespacesWithPrefix(prefix: string): Promise<string[]> {
  checkPrefix(prefix);
  return (await listNamespaces()).filter((n) => n.startsWith(prefix));
}

function pidsIn(ns: string): number[] {
  try {
    return runCommandSync('ip', ['netns', 'pids', ns])
      .stdout.split(/\s+/)
      .filter((s) => /^\d+$/.test(s))
      .map(Number)
      .filter((pid) => pid !== process.pid);
  } catch {
    return [];
  }
}

/** SIGKILLs the processes inside `ns` (so its interfaces go with it) and deletes it. */
function killAndDeleteSync(ns: string): void {
  for (const pid of pidsIn(ns)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  try {
    runCommandSync('ip', ['netns', 'del', ns]);
  } catch (err) {
    if (!/No such file|Invalid argument|does not exist/i.test((err as NetnsError).stderr ?? '')) throw err;
  }
}

/**
 * Removes every namespace whose name starts with `prefix`, first killing the
 * processes left inside (a crashed earlier run's iperf3, tunnel daemons).
 * Returns the names removed. Note: a prefix also matches longer prefixes that
 * start with it (`st-bench-` matches `st-bench-x-…`).
 */
export async function removeStaleNamespaces(prefix: string): Promise<string[]> {
  const stale = await namespacesWithPrefix(prefix);
  for (const ns of stale) killAndDeleteSync(ns);
  return stale;
}

// ---------------------------------------------------------------------------------
// Processes inside namespaces

const OUTPUT_TAIL_CHARS = 64 * 1024;

/** How a process ended. */
export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/**
 * A process started in a namespace with `ip netns exec` (which execs the command,
 * so `pid` is the command's own pid, usable for /proc/PID/stat). It runs in its own
 * process group; stdout and stderr are always drained and their tail kept.
 */
export class NsProcess {
  readonly pid: number;
  /** Resolves when the process has exited. */
  readonly exited: Promise<ProcessExit>;
  private tail = '';
  private exit: ProcessExit | null = null;
  private readonly watchers = new Set<() => void>();

  constructor(
    readonly ns: string,
    readonly argv: readonly string[],
    readonly child: ChildProcess,
  ) {
    if (child.pid === undefined) {
      throw new NetnsError('NETNS_COMMAND_FAILED', `\`${quoteArgv(argv)}\` could not start in ${ns}`, argv);
    }
    this.pid = child.pid;
    const onData = (chunk: Buffer): void => {
      this.tail = (this.tail + chunk.toString('utf8')).slice(-OUTPUT_TAIL_CHARS);
      for (const w of this.watchers) w();
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exit = { code, signal };
        for (const w of this.watchers) w();
        resolve(this.exit);
      });
    });
  }

  /** True while the process has not exited. */
  get running(): boolean {
    return this.exit === null;
  }

  /** The last 64 KiB of combined stdout and stderr. */
  output(): string {
    return this.tail;
  }

  /** Waits until the output matches `pattern`; rejects if the process exits first or after `timeoutMs`. */
  waitForOutput(pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const m = this.tail.match(pattern);
        if (m) return done(() => resolve(m));
        if (this.exit) {
          done(() =>
            reject(
              new NetnsError(
                'NETNS_COMMAND_FAILED',
                `\`${quoteArgv(this.argv)}\` in ${this.ns} exited (code ${this.exit!.code}, signal ${this.exit!.signal}) before printing ${pattern}; output: ${this.tail.slice(-2000).trim()}`,
                this.argv,
                this.tail.slice(-2000).trim(),
              ),
            ),
          );
        }
      };
      const timer = setTimeout(
        () =>
          done(() =>
            reject(
              new NetnsError(
                'NETNS_TIMEOUT',
                `\`${quoteArgv(this.argv)}\` in ${this.ns} did not print ${pattern} within ${timeoutMs} ms; output: ${this.tail.slice(-2000).trim()}`,
                this.argv,
              ),
            ),
          ),
        timeoutMs,
      );
      const done = (f: () => void): void => {
        clearTimeout(timer);
        this.watchers.delete(check);
        f();
      };
      this.watchers.add(check);
      check();
    });
  }

  /** Sends `signal` to the process group; no-op if it has exited. */
  signal(signal: NodeJS.Signals): void {
    if (!this.running) return;
    try {
      process.kill(-this.pid, signal);
    } catch {
      try {
        process.kill(this.pid, signal);
      } catch {
        // already gone
      }
    }
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process has exited. */
  async stop(graceMs = 3000): Promise<ProcessExit> {
    if (!this.running) return this.exit!;
    this.signal('SIGTERM');
    const timer = setTimeout(() => this.signal('SIGKILL'), graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }
}

// ---------------------------------------------------------------------------------
// The world

interface Step {
  kind: 'netns' | 'link' | 'process';
  what: string;
  /** `ns/ifname` of the links the step created (both ends of a veth). */
  links?: string[];
  undo: () => Promise<void>;
  undoSync: () => void;
}

/** One end of a veth pair: the namespace, the interface name, optional MAC and MTU. */
export interface VethEnd {
  ns: string;
  name: string;
  mac?: string;
  mtuBytes?: number;
}

/** Options of `World.spawn`. */
export interface SpawnOptions {
  /** Extra environment variables. */
  env?: Record<string, string>;
  cwd?: string;
}

const liveWorlds = new Set<World>();
let handlersInstalled = false;

function onProcessExit(): void {
  for (const w of [...liveWorlds]) {
    try {
      w.destroySync();
    } catch (err) {
      process.stderr.write(`netns: teardown at exit failed: ${(err as Error).message}\n`);
    }
  }
}

function onSignal(signal: NodeJS.Signals): void {
  const worlds = [...liveWorlds];
  void Promise.allSettled(worlds.map((w) => w.destroy())).then((results) => {
    for (const r of results) {
      if (r.status === 'rejected') process.stderr.write(`netns: teardown on ${signal} failed: ${(r.reason as Error).message}\n`);
    }
    uninstallHandlers();
    // Only re-raise when nobody else listens: then the default action (exit) applies.
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
  });
}

function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', onProcessExit);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

function uninstallHandlers(): void {
  if (!handlersInstalled) return;
  handlersInstalled = false;
  process.off('exit', onProcessExit);
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
}

function isGoneError(err: unknown): boolean {
  const stderr = err instanceof NetnsError ? err.stderr : '';
  return /Cannot find device|No such file|does not exist|Invalid argument|Cannot open network namespace/i.test(stderr);
}

/**
 * A set of namespaces, links and processes built for a test, demo or benchmark,
 * all torn down by `destroy()`. Create with `World.create(prefix)`.
 */
export class World {
  private readonly steps: Step[] = [];
  /** Every namespace this world created or began creating (for the final sweep). */
  private readonly namespaces = new Set<string>();
  private destroying: Promise<void> | null = null;

  private constructor(readonly prefix: string) {}

  /**
   * Removes stale namespaces with `prefix`, then returns an empty world that
   * will be destroyed on process exit, SIGINT or SIGTERM if not destroyed before.
   */
  static async create(prefix: string): Promise<World> {
    checkPrefix(prefix);
    for (const w of liveWorlds) {
      if (w.prefix.startsWith(prefix) || prefix.startsWith(w.prefix)) {
        throw new NetnsError('NETNS_BAD_NAME', `prefix '${prefix}' overlaps the live world '${w.prefix}' in this process`);
      }
    }
    const world = new World(prefix);
    liveWorlds.add(world);
    installHandlers();
    try {
      await removeStaleNamespaces(prefix);
    } catch (err) {
      liveWorlds.delete(world);
      if (liveWorlds.size === 0) uninstallHandlers();
      throw err;
    }
    return world;
  }

  /** True once `destroy()` has begun. */
  get destroyed(): boolean {
    return this.destroying !== null;
  }

  /** The namespaces this world created, oldest first. */
  namespaceNames(): string[] {
    return [...this.namespaces];
  }

  /** The full namespace name for `short` (`prefix + short`). */
  nsName(short: string): string {
    if (!SHORT_NAME_PATTERN.test(short)) {
      throw new NetnsError('NETNS_BAD_NAME', `namespace name '${short}' is not allowed: [a-z0-9-], at most 40`);
    }
    return this.prefix + short;
  }

  private checkOpen(what: string): void {
    if (this.destroying) throw new NetnsError('NETNS_DESTROYED', `cannot ${what}: world '${this.prefix}' is destroyed`);
  }

  private checkOwn(ns: string): void {
    if (!this.namespaces.has(ns)) {
      throw new NetnsError('NETNS_FOREIGN', `namespace '${ns}' was not created by world '${this.prefix}'`);
    }
  }

  /**
   * Runs a creating command and records its undo; if destroy() began while the
   * command ran, undoes it at once and throws NETNS_DESTROYED.
   */
  private async create(step: Omit<Step, 'undo' | 'undoSync'> & { undoArgv: string[] }, argv: string[]): Promise<void> {
    this.checkOpen(step.what);
    await runCommand(argv[0]!, argv.slice(1));
    const [cmd, ...args] = step.undoArgv as [string, ...string[]];
    const rec: Step = {
      kind: step.kind,
      what: step.what,
      ...(step.links ? { links: step.links } : {}),
      undo: async () => {
        try {
          await runCommand(cmd, args);
        } catch (err) {
          if (!isGoneError(err)) throw err;
        }
      },
      undoSync: () => {
        try {
          runCommandSync(cmd, args);
        } catch (err) {
          if (!isGoneError(err)) throw err;
        }
      },
    };
    if (this.destroying) {
      await rec.undo().catch(() => undefined);
      throw new NetnsError('NETNS_DESTROYED', `${step.what}: world '${this.prefix}' was destroyed meanwhile`);
    }
    this.steps.push(rec);
  }

  /** Creates namespace `prefix + short` with its loopback up; returns the full name. */
  async addNamespace(short: string): Promise<string> {
    const ns = this.nsName(short);
    this.checkOpen(`create namespace ${ns}`);
    this.namespaces.add(ns);
    await this.create({ kind: 'netns', what: `namespace ${ns}`, undoArgv: ['ip', 'netns', 'del', ns] }, ['ip', 'netns', 'add', ns]);
    await this.ip(ns, ['link', 'set', 'lo', 'up']);
    return ns;
  }

  /** Creates a veth pair between `a.ns` and `b.ns` (which may be the same) with optional MACs and MTUs. */
  async addVeth(a: VethEnd, b: VethEnd): Promise<void> {
    this.checkOwn(a.ns);
    this.checkOwn(b.ns);
    checkIfname(a.name);
    checkIfname(b.name);
    const end = (e: VethEnd): string[] => [
      ...(e.mac ? ['address', e.mac] : []),
      ...(e.mtuBytes !== undefined ? ['mtu', String(e.mtuBytes)] : []),
    ];
    await this.create(
      {
        kind: 'link',
        what: `veth ${a.ns}/${a.name} <-> ${b.ns}/${b.name}`,
        links: [`${a.ns}/${a.name}`, `${b.ns}/${b.name}`],
        undoArgv: ['ip', '-n', a.ns, 'link', 'del', a.name],
      },
      ['ip', '-n', a.ns, 'link', 'add', a.name, ...end(a), 'type', 'veth', 'peer', 'name', b.name, ...end(b), 'netns', b.ns],
    );
  }

  /** Creates a bridge `name` in `ns` (STP off, no forwarding delay). */
  async addBridge(ns: string, name: string, opts: { mtuBytes?: number } = {}): Promise<void> {
    this.checkOwn(ns);
    checkIfname(name);
    await this.create(
      { kind: 'link', what: `bridge ${ns}/${name}`, links: [`${ns}/${name}`], undoArgv: ['ip', '-n', ns, 'link', 'del', name] },
      [
        'ip', '-n', ns, 'link', 'add', name,
        ...(opts.mtuBytes !== undefined ? ['mtu', String(opts.mtuBytes)] : []),
        'type', 'bridge', 'stp_state', '0', 'forward_delay', '0',
      ],
    );
  }

  /** Deletes a link this world created (and its record), or any link in one of its namespaces. */
  async deleteLink(ns: string, name: string): Promise<void> {
    this.checkOwn(ns);
    checkIfname(name);
    await this.ip(ns, ['link', 'del', name]);
    const i = this.steps.findIndex((s) => s.links?.includes(`${ns}/${name}`));
    if (i >= 0) this.steps.splice(i, 1);
  }

  /** Enslaves `dev` to `bridge` in `ns`. */
  async setMaster(ns: string, dev: string, bridge: string): Promise<void> {
    await this.ip(ns, ['link', 'set', 'dev', dev, 'master', bridge]);
  }

  /** Puts `dev` on `bridge` and sets it up (the step after a tunnel created its TAP). */
  async attachToBridge(ns: string, dev: string, bridge: string): Promise<void> {
    await this.setMaster(ns, dev, bridge);
    await this.linkUp(ns, dev);
  }

  /** Adds an address (`198.51.100.11/24`, `2001:db8::1/64`) to `dev`; IPv6 ones with `nodad`. */
  async addAddress(ns: string, dev: string, cidr: string): Promise<void> {
    const v6 = cidr.includes(':');
    await this.ip(ns, ['addr', 'add', cidr, 'dev', dev, ...(v6 ? ['nodad'] : [])]);
  }

  /** Sets the MTU of `dev`. */
  async setMtu(ns: string, dev: string, mtuBytes: number): Promise<void> {
    await this.ip(ns, ['link', 'set', 'dev', dev, 'mtu', String(mtuBytes)]);
  }

  /** Sets `dev` up. */
  async linkUp(ns: string, dev: string): Promise<void> {
    await this.ip(ns, ['link', 'set', 'dev', dev, 'up']);
  }

  /** Sets a sysctl inside `ns` (`net.ipv6.conf.br0.disable_ipv6`, `1`). */
  async sysctl(ns: string, key: string, value: string): Promise<void> {
    if (!/^[a-z0-9_.-]+$/i.test(key)) throw new NetnsError('NETNS_BAD_NAME', `sysctl key '${key}' is not allowed`);
    await this.exec(ns, 'sysctl', ['-q', '-w', `${key}=${value}`]);
  }

  /** Runs `ip -n ns ARGS` (not recorded: for changes that live on recorded links). */
  async ip(ns: string, args: readonly string[]): Promise<CommandResult> {
    this.checkOwn(ns);
    this.checkOpen(`run ip in ${ns}`);
    return runCommand('ip', ['-n', ns, ...args]);
  }

  /** True if link `dev` exists in `ns`. */
  async hasLink(ns: string, dev: string): Promise<boolean> {
    try {
      await this.ip(ns, ['link', 'show', 'dev', dev]);
      return true;
    } catch (err) {
      if (err instanceof NetnsError && err.code === 'NETNS_COMMAND_FAILED') return false;
      throw err;
    }
  }

  /** Waits until link `dev` exists in `ns` (a TAP a tunnel process creates). */
  async waitForLink(ns: string, dev: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (await this.hasLink(ns, dev)) return;
      if (Date.now() > deadline) {
        throw new NetnsError('NETNS_TIMEOUT', `link ${dev} did not appear in ${ns} within ${timeoutMs} ms`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Runs `cmd args` inside `ns` to completion (`ip netns exec`). */
  async exec(ns: string, cmd: string, args: readonly string[], opts: { timeoutMs?: number } = {}): Promise<CommandResult> {
    this.checkOwn(ns);
    this.checkOpen(`run ${cmd} in ${ns}`);
    return runCommand('ip', ['netns', 'exec', ns, cmd, ...args], opts);
  }

  /** Starts `cmd args` inside `ns`; the process is recorded and stopped by destroy(). */
  spawn(ns: string, cmd: string, args: readonly string[], opts: SpawnOptions = {}): NsProcess {
    this.checkOwn(ns);
    this.checkOpen(`start ${cmd} in ${ns}`);
    const argv = ['ip', 'netns', 'exec', ns, cmd, ...args];
    const child = spawn(argv[0]!, argv.slice(1), {
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true, // own process group: destroy() stops it and its children together
      env: { ...process.env, ...opts.env },
      ...(opts.cwd ? { cwd: opts.cwd } : {}),
    });
    child.on('error', () => undefined); // a failed start shows as no pid (below) or through `exited`
    const proc = new NsProcess(ns, [cmd, ...args], child);
    this.steps.push({
      kind: 'process',
      what: `process ${proc.pid} ${quoteArgv([cmd, ...args])} in ${ns}`,
      undo: async () => {
        await proc.stop();
      },
      undoSync: () => proc.signal('SIGKILL'),
    });
    return proc;
  }

  /** Resolves when `ns` reaches `address` with ping (one echo per try), or throws after `timeoutMs`. */
  async waitForPing(ns: string, address: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    for (;;) {
      try {
        await this.exec(ns, 'ping', ['-n', '-q', '-c', '1', '-W', '1', address], { timeoutMs: 5000 });
        return;
      } catch (err) {
        if (!(err instanceof NetnsError) || err.code !== 'NETNS_COMMAND_FAILED') throw err;
        last = err.message;
      }
      if (Date.now() > deadline) {
        throw new NetnsError('NETNS_TIMEOUT', `${address} not reachable from ${ns} within ${timeoutMs} ms; last: ${last}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /**
   * Tears down everything in reverse order of creation: processes stopped,
   * links deleted, namespaces deleted (after killing anything left inside).
   * Idempotent; concurrent calls share one teardown. Rejects with
   * NETNS_TEARDOWN_FAILED only if a namespace of this world still exists.
   */
  destroy(): Promise<void> {
    this.destroying ??= this.teardown();
    return this.destroying;
  }

  private async teardown(): Promise<void> {
    const problems: string[] = [];
    while (this.steps.length > 0) {
      const step = this.steps.pop()!;
      try {
        await step.undo();
      } catch (err) {
        problems.push(`${step.what}: ${(err as Error).message}`);
      }
    }
    this.finish(problems);
  }

  /** Synchronous destroy() for the process 'exit' handler: processes get SIGKILL. */
  destroySync(): void {
    if (this.destroying && !liveWorlds.has(this)) return;
    this.destroying ??= Promise.resolve();
    const problems: string[] = [];
    while (this.steps.length > 0) {
      const step = this.steps.pop()!;
      try {
        step.undoSync();
      } catch (err) {
        problems.push(`${step.what}: ${(err as Error).message}`);
      }
    }
    this.finish(problems);
  }

  /** Final sweep: any namespace of this world still listed is emptied and deleted. */
  private finish(problems: string[]): void {
    liveWorlds.delete(this);
    if (liveWorlds.size === 0) uninstallHandlers();
    let left: string[] = [];
    try {
      const listed = new Set(listNamespacesSync());
      for (const ns of this.namespaces) {
        if (listed.has(ns)) {
          try {
            killAndDeleteSync(ns);
          } catch (err) {
            problems.push(`namespace ${ns}: ${(err as Error).message}`);
          }
        }
      }
      const after = new Set(listNamespacesSync());
      left = [...this.namespaces].filter((ns) => after.has(ns));
    } catch (err) {
      problems.push(`ip netns list: ${(err as Error).message}`);
      left = [...this.namespaces];
    }
    if (left.length > 0) {
      throw new NetnsError(
        'NETNS_TEARDOWN_FAILED',
        `world '${this.prefix}' left namespaces ${left.join(', ')}: ${problems.join('; ')}`,
      );
    }
  }
}

// ---------------------------------------------------------------------------------
// The standard topology

/**
 * How the host ends of the guests' veths are bridged in each host:
 * `shared` — one bridge `br0` with all guests (one TAP per host, as OpenVPN/socat);
 * `per-guest` — bridge `brg<i>` per guest (a TAP per domain, as sectunnel);
 * `none` — host ends only set up (for packet-socket attach).
 */
export type BridgeMode = 'shared' | 'per-guest' | 'none';

/** Options of `buildStandardTopology`. */
export interface TopologyOptions {
  /** Guests per host, 1-9 (default 1). */
  guestsPerHost?: number;
  /** MTU of the guests' veths and bridges (default 1400). */
  guestMtuBytes?: number;
  /** MTU of the underlay veth (default 1500). */
  underlayMtuBytes?: number;
  /** Bridging of guest host ends (default `shared`). */
  bridges?: BridgeMode;
  /** Guest addresses; default `guestAddresses()`. */
  guestAddressing?: (hostIndex: number, guestIndex: number) => { ipv4: string; ipv6: string };
}

/** A guest: a namespace with `eth0`, whose veth peer `vg<i>` is in its host. */
export interface Guest {
  ns: string;
  hostIndex: number;
  /** 1-based index on its host. */
  index: number;
  dev: 'eth0';
  mac: string;
  /** Address without prefix length, e.g. `198.51.100.11`. */
  ipv4: string;
  ipv6: string;
  /** Prefix lengths of the guest subnets. */
  ipv4PrefixBits: number;
  ipv6PrefixBits: number;
  /** The guest veth's peer in the host namespace. */
  hostDev: string;
  /** The bridge that holds `hostDev`, or null for `bridges: 'none'`. */
  bridge: string | null;
}

/** A host: a namespace with underlay `ul0` and the host ends of its guests. */
export interface Host {
  ns: string;
  /** 1 or 2. */
  index: number;
  underlayDev: 'ul0';
  /** Underlay addresses without prefix length (192.0.2.<index>, 2001:db8::<index>). */
  ipv4: string;
  ipv6: string;
  guests: Guest[];
  /** `br0` for `bridges: 'shared'`, else null. */
  bridge: string | null;
}

/** What `buildStandardTopology` built. */
export interface Topology {
  hosts: [Host, Host];
  guestMtuBytes: number;
  underlayMtuBytes: number;
  bridges: BridgeMode;
}

/** Underlay prefix lengths (192.0.2.0/24, RFC 5737; 2001:db8::/64, RFC 3849). */
export const UNDERLAY_IPV4_PREFIX_BITS = 24;
export const UNDERLAY_IPV6_PREFIX_BITS = 64;
/** Guest subnets (198.51.100.0/24, RFC 5737; 2001:db8:100::/64, RFC 3849). */
export const GUEST_IPV4_PREFIX_BITS = 24;
export const GUEST_IPV6_PREFIX_BITS = 64;

/** Default guest addresses: guest g of host h is 198.51.100.<10h+g> and 2001:db8:100::<10h+g>. */
export function guestAddresses(hostIndex: number, guestIndex: number): { ipv4: string; ipv6: string } {
  const n = hostIndex * 10 + guestIndex;
  return { ipv4: `198.51.100.${n}`, ipv6: `2001:db8:100::${n}` };
}

/** Guest g of host h has MAC 02:53:54:00:0h:0g (locally administered; 0x53 0x54 = "ST"). */
export function guestMac(hostIndex: number, guestIndex: number): string {
  const hex = (n: number): string => n.toString(16).padStart(2, '0');
  return `02:53:54:00:${hex(hostIndex)}:${hex(guestIndex)}`;
}

/**
 * Builds two hosts `host-a`, `host-b` joined by veth `ul0` (underlay 192.0.2.1/.2,
 * 2001:db8::1/::2) and on each host N guests `guest-a1`… with `eth0` (MAC
 * `guestMac()`, addresses `guestAddresses()`), their host ends `vg1`… bridged per
 * `bridges`. IPv6 is disabled on bridges and bridge ports in the hosts, and by
 * default for interfaces created later there (TAPs), so they emit no traffic of
 * their own. On failure the caller's `world.destroy()` removes what was built.
 */
export async function buildStandardTopology(world: World, opts: TopologyOptions = {}): Promise<Topology> {
  const guestsPerHost = opts.guestsPerHost ?? 1;
  const guestMtuBytes = opts.guestMtuBytes ?? 1400;
  const underlayMtuBytes = opts.underlayMtuBytes ?? 1500;
  const bridges = opts.bridges ?? 'shared';
  const addressing = opts.guestAddressing ?? guestAddresses;
  if (!Number.isInteger(guestsPerHost) || guestsPerHost < 1 || guestsPerHost > 9) {
    throw new NetnsError('NETNS_BAD_NAME', `guestsPerHost ${guestsPerHost} is not allowed: 1-9`);
  }

  const hosts: Host[] = [];
  for (const [index, letter] of [
    [1, 'a'],
    [2, 'b'],
  ] as const) {
    const ns = await world.addNamespace(`host-${letter}`);
    hosts.push({ ns, index, underlayDev: 'ul0', ipv4: `192.0.2.${index}`, ipv6: `2001:db8::${index}`, guests: [], bridge: null });
  }
  const [ha, hb] = hosts as [Host, Host];
  await world.addVeth({ ns: ha.ns, name: 'ul0', mtuBytes: underlayMtuBytes }, { ns: hb.ns, name: 'ul0', mtuBytes: underlayMtuBytes });
  for (const h of hosts) {
    await world.addAddress(h.ns, 'ul0', `${h.ipv4}/${UNDERLAY_IPV4_PREFIX_BITS}`);
    await world.addAddress(h.ns, 'ul0', `${h.ipv6}/${UNDERLAY_IPV6_PREFIX_BITS}`);
    await world.linkUp(h.ns, 'ul0');
    await world.sysctl(h.ns, 'net.ipv6.conf.default.disable_ipv6', '1');
    if (bridges === 'shared') {
      h.bridge = 'br0';
      await world.addBridge(h.ns, 'br0', { mtuBytes: guestMtuBytes });
      await world.sysctl(h.ns, 'net.ipv6.conf.br0.disable_ipv6', '1');
      await world.linkUp(h.ns, 'br0');
    }
  }

  for (const h of hosts) {
    const letter = h.index === 1 ? 'a' : 'b';
    for (let g = 1; g <= guestsPerHost; g++) {
      const ns = await world.addNamespace(`guest-${letter}${g}`);
      const { ipv4, ipv6 } = addressing(h.index, g);
      const hostDev = `vg${g}`;
      const guest: Guest = {
        ns, hostIndex: h.index, index: g, dev: 'eth0', mac: guestMac(h.index, g), ipv4, ipv6,
        ipv4PrefixBits: GUEST_IPV4_PREFIX_BITS, ipv6PrefixBits: GUEST_IPV6_PREFIX_BITS, hostDev, bridge: null,
      };
      await world.addVeth(
        { ns, name: 'eth0', mac: guest.mac, mtuBytes: guestMtuBytes },
        { ns: h.ns, name: hostDev, mtuBytes: guestMtuBytes },
      );
      await world.addAddress(ns, 'eth0', `${ipv4}/${GUEST_IPV4_PREFIX_BITS}`);
      await world.addAddress(ns, 'eth0', `${ipv6}/${GUEST_IPV6_PREFIX_BITS}`);
      await world.linkUp(ns, 'eth0');
      await world.sysctl(h.ns, `net.ipv6.conf.${hostDev}.disable_ipv6`, '1');
      if (bridges === 'shared') {
        guest.bridge = 'br0';
      } else if (bridges === 'per-guest') {
        guest.bridge = `brg${g}`;
        await world.addBridge(h.ns, guest.bridge, { mtuBytes: guestMtuBytes });
        await world.sysctl(h.ns, `net.ipv6.conf.${guest.bridge}.disable_ipv6`, '1');
        await world.linkUp(h.ns, guest.bridge);
      }
      if (guest.bridge) await world.setMaster(h.ns, hostDev, guest.bridge);
      await world.linkUp(h.ns, hostDev);
      h.guests.push(guest);
    }
  }
  return { hosts: [ha, hb], guestMtuBytes, underlayMtuBytes, bridges };
}
