/**
 * The demo's namespaces and processes, and their teardown.
 *
 * Life of a DemoWorld:
 *   1. `removeStale()` removes namespaces a crashed earlier run left with the
 *      prefix (killing the daemons still inside them);
 *   2. namespaces are recorded as they are made; links live inside them and go
 *      with them; daemons run detached (own process group, output to a log
 *      file) so that `--keep` can leave them running after the demo exits;
 *   3. `teardown()` (idempotent): daemons get SIGTERM (SIGKILL after a grace
 *      period), anything left in a namespace is killed, namespaces are deleted;
 *      `teardownSync()` does the same from a process 'exit' handler.
 *
 * Why not io/netns.ts's World: a World destroys itself in its own 'exit'
 * handler, and `--keep` needs the world to outlive the process. The commands,
 * stale-namespace sweep and NsProcess of netns.ts are reused.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import {
  checkPrefix,
  listNamespaces,
  NetnsError,
  NsProcess,
  removeStaleNamespaces,
  runCommand,
  runCommandSync,
  type CommandResult,
  type ProcessExit,
} from '../../io/netns.js';
import type { DemoPlan } from './plan.js';

/** Output of a command run to completion, whatever its exit status. */
export interface ExecResult {
  /** Exit code, or null if killed by a signal or it could not start. */
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

/** How long a daemon has after SIGTERM before SIGKILL. */
export const DAEMON_STOP_GRACE_MS = 5000;

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function alive(pid: number): boolean {
  try {
    // A zombie still answers kill(0); /proc tells.
    process.kill(pid, 0);
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) Z/.test(stat);
  } catch {
    return false;
  }
}

/** A daemon started in a host namespace: detached, its stdout and stderr appended to `logFile`. */
export class Daemon {
  readonly pid: number;
  /** Resolves when the process has exited. */
  readonly exited: Promise<ProcessExit>;
  private exit: ProcessExit | null = null;

  constructor(
    readonly host: string,
    readonly ns: string,
    readonly argv: readonly string[],
    readonly logFile: string,
    private readonly child: ChildProcess,
  ) {
    if (child.pid === undefined) throw new NetnsError('NETNS_COMMAND_FAILED', `\`${argv.join(' ')}\` could not start in ${ns}`, argv);
    this.pid = child.pid;
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exit = { code, signal };
        resolve(this.exit);
      });
    });
  }

  /** True while the process has not exited. */
  get running(): boolean {
    return this.exit === null && alive(this.pid);
  }

  /** How it ended, or null while running. */
  get exitStatus(): ProcessExit | null {
    return this.exit;
  }

  /** The last `chars` characters of its log. */
  logTail(chars = 2000): string {
    try {
      return readFileSync(this.logFile, 'utf8').slice(-chars).trim();
    } catch {
      return '';
    }
  }

  /** Sends `signal` to its process group. */
  signal(signal: NodeJS.Signals): void {
    for (const target of [-this.pid, this.pid]) {
      try {
        process.kill(target, signal);
        return;
      } catch {
        // no such group: try the pid, then give up (already gone)
      }
    }
  }

  /** Lets the demo exit while the daemon runs on (`--keep`). */
  detach(): void {
    this.child.unref();
  }

  /** SIGTERM, then SIGKILL after `graceMs`; says which ended it. */
  async stop(graceMs = DAEMON_STOP_GRACE_MS): Promise<DaemonStop> {
    if (this.exit !== null) return { host: this.host, pid: this.pid, how: 'had exited', ...this.exit };
    let how: DaemonStop['how'] = 'SIGTERM';
    this.signal('SIGTERM');
    const timer = setTimeout(() => {
      how = 'SIGKILL';
      this.signal('SIGKILL');
    }, graceMs);
    try {
      const exit = await this.exited;
      return { host: this.host, pid: this.pid, how, ...exit };
    } finally {
      clearTimeout(timer);
    }
  }

  /** stop() for an 'exit' handler: SIGTERM, a short synchronous wait, then SIGKILL. */
  stopSync(graceMs = 2000): void {
    if (!this.running) return;
    this.signal('SIGTERM');
    const deadline = Date.now() + graceMs;
    while (this.running && Date.now() < deadline) sleepSync(50);
    if (this.running) this.signal('SIGKILL');
  }
}

/** How a daemon was stopped. */
export interface DaemonStop extends ProcessExit {
  host: string;
  pid: number;
  /** `SIGTERM`: stopped cleanly; `SIGKILL`: did not stop within the grace period; `had exited` before teardown. */
  how: 'SIGTERM' | 'SIGKILL' | 'had exited';
}

/** What teardown() did. */
export interface TeardownReport {
  daemons: DaemonStop[];
  /** Namespaces deleted. */
  namespaces: string[];
  /** Namespaces of the world still present afterwards (should be none). */
  left: string[];
  problems: string[];
}

/** The demo's namespaces and daemons. */
export class DemoWorld {
  private readonly namespaces: string[] = [];
  readonly daemons: Daemon[] = [];
  private readonly helpers: NsProcess[] = [];
  private tearing: Promise<TeardownReport> | null = null;
  private kept = false;
  /** Namespace creations under way: teardown waits for them, so none appears after it. */
  private readonly creating = new Set<Promise<unknown>>();

  /** An empty world whose namespaces all start with `prefix` (`st-…-`). */
  constructor(readonly prefix: string) {
    checkPrefix(prefix);
  }

  /** Removes namespaces a crashed earlier run left with the prefix (killing what runs inside); returns their names. */
  async removeStale(): Promise<string[]> {
    this.checkOpen('remove stale namespaces');
    const p = removeStaleNamespaces(this.prefix);
    return this.track(p);
  }

  private async track<T>(p: Promise<T>): Promise<T> {
    this.creating.add(p);
    try {
      return await p;
    } finally {
      this.creating.delete(p);
    }
  }

  /** True once teardown() began or keep() was called. */
  get closed(): boolean {
    return this.tearing !== null || this.kept;
  }

  /** The namespaces made so far, oldest first. */
  namespaceNames(): string[] {
    return [...this.namespaces];
  }

  private checkOpen(what: string): void {
    if (this.closed) throw new NetnsError('NETNS_DESTROYED', `cannot ${what}: the demo world is being torn down`);
  }

  private checkOwn(ns: string): void {
    if (!this.namespaces.includes(ns)) throw new NetnsError('NETNS_FOREIGN', `namespace '${ns}' was not created by the demo`);
  }

  /** Creates namespace `ns` (which must start with the prefix) with loopback up. */
  async addNamespace(ns: string): Promise<void> {
    if (!ns.startsWith(this.prefix)) throw new NetnsError('NETNS_BAD_NAME', `namespace '${ns}' does not start with '${this.prefix}'`);
    this.checkOpen(`create namespace ${ns}`);
    this.namespaces.push(ns);
    await this.track(runCommand('ip', ['netns', 'add', ns]));
    await this.ip(ns, ['link', 'set', 'lo', 'up']);
  }

  /** Runs `ip -n ns ARGS`; rejects with NetnsError naming the command. */
  async ip(ns: string, args: readonly string[]): Promise<CommandResult> {
    this.checkOwn(ns);
    this.checkOpen(`run ip in ${ns}`);
    return runCommand('ip', ['-n', ns, ...args]);
  }

  /** Sets a sysctl inside `ns`. */
  async sysctl(ns: string, key: string, value: string): Promise<void> {
    if (!/^[a-z0-9_.-]+$/i.test(key)) throw new NetnsError('NETNS_BAD_NAME', `sysctl key '${key}' is not allowed`);
    this.checkOwn(ns);
    this.checkOpen(`set ${key} in ${ns}`);
    await runCommand('ip', ['netns', 'exec', ns, 'sysctl', '-q', '-w', `${key}=${value}`]);
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

  /** Runs `cmd args` in `ns` to completion; resolves whatever the exit status (ping's 1 is an answer here). */
  exec(ns: string, cmd: string, args: readonly string[], timeoutMs = 30_000): Promise<ExecResult> {
    this.checkOwn(ns);
    this.checkOpen(`run ${cmd} in ${ns}`);
    return new Promise((resolve) => {
      execFile('ip', ['netns', 'exec', ns, cmd, ...args], { timeout: timeoutMs, maxBuffer: 16 << 20, encoding: 'utf8' }, (error, stdout, stderr) => {
        if (!error) return resolve({ code: 0, signal: null, stdout, stderr });
        const e = error as NodeJS.ErrnoException & { code?: unknown; signal?: string | null };
        resolve({
          code: typeof e.code === 'number' ? e.code : null,
          signal: e.signal ?? null,
          stdout,
          stderr: stderr || (typeof e.code === 'number' ? '' : e.message),
        });
      });
    });
  }

  /** Starts a helper (an iperf3 server) in `ns`; it is killed with the namespace at teardown. */
  spawnHelper(ns: string, cmd: string, args: readonly string[]): NsProcess {
    this.checkOwn(ns);
    this.checkOpen(`start ${cmd} in ${ns}`);
    const argv = ['ip', 'netns', 'exec', ns, cmd, ...args];
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    child.on('error', () => undefined);
    const p = new NsProcess(ns, [cmd, ...args], child);
    this.helpers.push(p);
    return p;
  }

  /** Starts a daemon `argv` in host namespace `ns`, detached, output appended to `logFile`. */
  spawnDaemon(host: string, ns: string, argv: readonly string[], logFile: string): Daemon {
    this.checkOwn(ns);
    this.checkOpen(`start the daemon of ${host}`);
    const fd = openSync(logFile, 'a', 0o600);
    let child: ChildProcess;
    try {
      child = spawn('ip', ['netns', 'exec', ns, ...argv], { stdio: ['ignore', fd, fd], detached: true });
    } finally {
      closeSync(fd);
    }
    child.on('error', () => undefined);
    const d = new Daemon(host, ns, argv, logFile, child);
    this.daemons.push(d);
    return d;
  }

  /** Leaves everything running (`--keep`): teardown becomes a no-op and the daemons no longer hold the demo open. */
  keep(): void {
    this.kept = true;
    for (const d of this.daemons) d.detach();
  }

  /** Stops the daemons (SIGTERM), kills what is left in the namespaces, deletes them. Idempotent. */
  teardown(): Promise<TeardownReport> {
    if (this.kept) return Promise.resolve({ daemons: [], namespaces: [], left: this.namespaceNames(), problems: [] });
    this.tearing ??= this.doTeardown();
    return this.tearing;
  }

  private async doTeardown(): Promise<TeardownReport> {
    const problems: string[] = [];
    await Promise.allSettled([...this.creating]);
    const daemons = await Promise.all(this.daemons.map((d) => d.stop()));
    await Promise.all(this.helpers.map((h) => h.stop(1000)));
    const deleted: string[] = [];
    for (const ns of [...this.namespaces].reverse()) {
      try {
        if (this.deleteNamespaceSync(ns)) deleted.push(ns);
      } catch (err) {
        problems.push(`namespace ${ns}: ${(err as Error).message}`);
      }
    }
    let left: string[] = [];
    try {
      const listed = new Set(await listNamespaces());
      left = this.namespaces.filter((ns) => listed.has(ns));
    } catch (err) {
      problems.push(`ip netns list: ${(err as Error).message}`);
    }
    return { daemons, namespaces: deleted, left, problems };
  }

  /** teardown() for a process 'exit' handler (synchronous). */
  teardownSync(): void {
    if (this.kept || this.tearing !== null) return;
    this.tearing = Promise.resolve({ daemons: [], namespaces: [], left: [], problems: [] });
    for (const d of this.daemons) d.stopSync();
    for (const h of this.helpers) h.signal('SIGKILL');
    for (const ns of [...this.namespaces].reverse()) {
      try {
        this.deleteNamespaceSync(ns);
      } catch (err) {
        process.stderr.write(`sectunnel demo: could not delete namespace ${ns}: ${(err as Error).message}\n`);
      }
    }
  }

  /** Kills what runs in `ns` and deletes it; false if it was already gone. */
  private deleteNamespaceSync(ns: string): boolean {
    let pids: number[] = [];
    try {
      pids = runCommandSync('ip', ['netns', 'pids', ns])
        .stdout.split(/\s+/)
        .filter((s) => /^\d+$/.test(s))
        .map(Number)
        .filter((pid) => pid !== process.pid);
    } catch {
      return false; // no such namespace
    }
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
    try {
      runCommandSync('ip', ['netns', 'del', ns]);
      return true;
    } catch (err) {
      if (/No such file|does not exist|Invalid argument/i.test((err as NetnsError).stderr ?? '')) return false;
      throw err;
    }
  }
}

// ---------------------------------------------------------------------------------
// Building the plan's world

/**
 * Builds the namespaces of `plan`: two hosts joined by veth `ul0` (IPv4, the
 * underlay MTU) and an empty namespace per guest. IPv6 is off everywhere (the
 * demo is IPv4), so TAPs and guests send no router solicitations or MLD of
 * their own and the counters show only the demo's traffic.
 */
export async function buildHosts(world: DemoWorld, plan: DemoPlan): Promise<void> {
  const [a, b] = plan.hosts;
  for (const h of plan.hosts) {
    await world.addNamespace(h.ns);
    await world.sysctl(h.ns, 'net.ipv6.conf.all.disable_ipv6', '1');
    await world.sysctl(h.ns, 'net.ipv6.conf.default.disable_ipv6', '1');
  }
  const mtu = String(plan.underlayMtuBytes);
  await world.ip(a.ns, ['link', 'add', a.underlayDev, 'mtu', mtu, 'type', 'veth', 'peer', 'name', b.underlayDev, 'mtu', mtu, 'netns', b.ns]);
  for (const h of plan.hosts) {
    await world.ip(h.ns, ['addr', 'add', `${h.ipv4}/24`, 'dev', h.underlayDev]);
    await world.ip(h.ns, ['link', 'set', 'dev', h.underlayDev, 'up']);
  }
  for (const h of plan.hosts) {
    for (const g of h.guests) {
      await world.addNamespace(g.ns);
      await world.sysctl(g.ns, 'net.ipv6.conf.all.disable_ipv6', '1');
      await world.sysctl(g.ns, 'net.ipv6.conf.default.disable_ipv6', '1');
    }
  }
}

/**
 * Gives each guest its NIC: the TAP its host's daemon created in the host
 * namespace is moved into the guest namespace (`ip link set TAP netns GUEST`;
 * the daemon keeps its file descriptor, which stays bound to the device, so
 * frames flow as before), then gets the guest's MAC, address and MTU and is
 * set up. Moving works for TAPs (they are not namespace-local devices), so no
 * bridge or veth is needed between TAP and guest.
 */
export async function attachGuests(world: DemoWorld, plan: DemoPlan, guestMtuBytes: number, timeoutMs: number): Promise<void> {
  for (const h of plan.hosts) {
    for (const g of h.guests) {
      const deadline = Date.now() + timeoutMs;
      while (!(await world.hasLink(h.ns, g.tap))) {
        if (Date.now() > deadline) throw new NetnsError('NETNS_TIMEOUT', `the daemon of ${h.name} did not create TAP ${g.tap} within ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 50));
      }
      await world.ip(h.ns, ['link', 'set', 'dev', g.tap, 'netns', g.ns]);
      await world.ip(g.ns, ['link', 'set', 'dev', g.tap, 'address', g.mac, 'mtu', String(guestMtuBytes)]);
      await world.ip(g.ns, ['addr', 'add', `${g.ipv4}/${g.ipv4PrefixBits}`, 'dev', g.tap]);
      await world.ip(g.ns, ['link', 'set', 'dev', g.tap, 'up']);
    }
  }
}
