/**
 * What the namespace benchmarks (e2e.ts, soak.ts) share: a world of network
 * namespaces plus a scratch folder that are removed at the end of the run, also on
 * Ctrl-C and SIGTERM; and one iperf3 test between two guests with both sides' JSON.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NetnsError, World, type Guest } from '../src/io/netns.js';

/** A benchmark's world and scratch folder; `close()` removes both (once). */
export interface BenchRun {
  world: World;
  tmpDir: string;
  close(): Promise<void>;
}

/**
 * Creates the world `prefix` (namespaces `<prefix>…`) and a scratch folder, and arranges for
 * both to be removed by close(), on SIGINT/SIGTERM (then the process exits 130/143) and at exit.
 */
export async function openBenchRun(bench: string, prefix: string, log: (m: string) => void): Promise<BenchRun> {
  const tmpDir = mkdtempSync(join(tmpdir(), prefix));
  const world = await World.create(prefix);
  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    try {
      await world.destroy();
    } finally {
      rmSync(tmpDir, { recursive: true, force: true });
    }
  };
  const onSignal = (sig: NodeJS.Signals): void => {
    log(`\n${bench}: ${sig}, cleaning up`);
    void close().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('exit', () => rmSync(tmpDir, { recursive: true, force: true }));
  return { world, tmpDir, close };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Resolves when a TCP socket listens on `port` in `ns`, or throws after 10 s. */
async function waitForListen(world: World, ns: string, port: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const { stdout } = await world.exec(ns, 'ss', ['-Hltn', `sport = :${port}`]);
    if (stdout.trim().length > 0) return;
    if (Date.now() > deadline) throw new NetnsError('NETNS_TIMEOUT', `iperf3 server did not listen on ${port}`);
    await sleep(50);
  }
}

/**
 * One iperf3 test from `client` to `server` for `seconds` (extra client arguments, e.g. UDP);
 * both sides report JSON (the server's may be null if it did not finish in time).
 */
export async function runIperf(world: World, client: Guest, server: Guest, port: number, seconds: number, clientArgs: string[]): Promise<{ client: any; server: any }> {
  const srv = world.spawn(server.ns, 'iperf3', ['-s', '-1', '-J', '-p', String(port), '-B', server.ipv4]);
  try {
    // iperf3 -J prints nothing until the end; wait until its port listens instead.
    await waitForListen(world, server.ns, port);
    const { stdout } = await world.exec(
      client.ns,
      'iperf3',
      ['-c', server.ipv4, '-p', String(port), '-t', String(seconds), '-J', '--connect-timeout', '5000', ...clientArgs],
      { timeoutMs: seconds * 1000 + 60_000 },
    );
    const exit = await Promise.race([srv.exited, sleep(10_000).then(() => null)]);
    const clientJson = JSON.parse(stdout);
    let serverJson: unknown = null;
    if (exit) {
      try {
        serverJson = JSON.parse(srv.output().slice(srv.output().indexOf('{')));
      } catch {
        serverJson = null;
      }
    }
    if (clientJson.error) throw new Error(`iperf3 client: ${clientJson.error}`);
    return { client: clientJson, server: serverJson };
  } finally {
    await srv.stop();
  }
}
