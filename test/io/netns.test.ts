// src/io/netns.ts: worlds in network namespaces are built as described, reach each
// other only where connected, and leave nothing behind — after destroy(), after a
// step that failed midway, after a crash (stale cleanup), and on SIGTERM/exit.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import ts from 'typescript';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import {
  NetnsError,
  World,
  buildStandardTopology,
  guestAddresses,
  guestMac,
  namespacesWithPrefix,
  runCommand,
} from '../../src/io/netns.js';
import { itWith } from '../helpers/tools.js';

const PREFIX = 'st-nstest-';

let world: World | null = null;
afterEach(async () => {
  await world?.destroy();
  world = null;
});

async function pingOk(w: World, ns: string, address: string): Promise<boolean> {
  try {
    await w.exec(ns, 'ping', ['-n', '-q', '-c', '1', '-W', '1', address]);
    return true;
  } catch (err) {
    if (err instanceof NetnsError && err.code === 'NETNS_COMMAND_FAILED') return false;
    throw err;
  }
}

function processAlive(pid: number): boolean {
  // A killed child of ours may linger as a zombie until reaped; count that as dead.
  const stat = `/proc/${pid}/stat`;
  if (!existsSync(stat)) return false;
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(stat, 'utf8'));
  } catch {
    return false;
  }
}

describe('names and addresses', () => {
  it.each(['foo-', 'st-', 'st-bench', 'st-Bench-', 'st-a b-', 'sectunnel-'])('refuses prefix %j', async (prefix) => {
    await expect(World.create(prefix)).rejects.toMatchObject({ code: 'NETNS_BAD_NAME' });
  });

  it('gives guest g of host h the documentation addresses and MAC of the plan', () => {
    expect(guestAddresses(1, 1)).toEqual({ ipv4: '198.51.100.11', ipv6: '2001:db8:100::11' });
    expect(guestAddresses(2, 3)).toEqual({ ipv4: '198.51.100.23', ipv6: '2001:db8:100::23' });
    expect(guestMac(2, 3)).toBe('02:53:54:00:02:03');
  });
});

describe('standard topology', () => {
  itWith(['netns'], 'connects guests across hosts when the two shared bridges are joined by a veth', async () => {
    world = await World.create(PREFIX);
    const topo = await buildStandardTopology(world, { guestsPerHost: 2, guestMtuBytes: 1400 });
    const [a, b] = topo.hosts;
    expect(await namespacesWithPrefix(PREFIX)).toHaveLength(6);

    // Underlay: both families, from host to host.
    await world.waitForPing(a.ns, b.ipv4, 10_000);
    await world.waitForPing(a.ns, b.ipv6, 10_000);

    // Guests have the addresses, MAC and MTU the topology reports.
    const g = a.guests[0]!;
    const show = (await world.ip(g.ns, ['addr', 'show', 'dev', 'eth0'])).stdout;
    expect(show).toContain(`inet ${g.ipv4}/24`);
    expect(show).toContain(`inet6 ${g.ipv6}/64`);
    expect(show).toContain(`link/ether ${g.mac}`);
    expect(show).toMatch(/ mtu 1400 /);
    expect((await world.ip(a.ns, ['link', 'show', 'dev', g.hostDev])).stdout).toContain('master br0');

    // Not connected yet: the guest of host a cannot reach the guest of host b.
    expect(await pingOk(world, g.ns, b.guests[0]!.ipv4)).toBe(false);

    // A plain veth between the bridges (the benchmark's no-tunnel contender).
    await world.addVeth({ ns: a.ns, name: 'nt0' }, { ns: b.ns, name: 'nt0' });
    await world.attachToBridge(a.ns, 'nt0', 'br0');
    await world.attachToBridge(b.ns, 'nt0', 'br0');
    await world.waitForPing(g.ns, b.guests[0]!.ipv4, 10_000);
    await world.waitForPing(g.ns, b.guests[1]!.ipv6, 10_000);
    // A full-MTU packet crosses without fragmentation (DF set).
    await world.exec(g.ns, 'ping', ['-n', '-q', '-c', '1', '-W', '2', '-M', 'do', '-s', String(1400 - 28), b.guests[1]!.ipv4]);

    await world.deleteLink(a.ns, 'nt0');
    expect(await pingOk(world, g.ns, b.guests[0]!.ipv4)).toBe(false);

    await world.destroy();
    expect(await namespacesWithPrefix(PREFIX)).toEqual([]);
  });

  itWith(['netns'], 'keeps guests apart with per-guest bridges: only the joined pair reaches each other', async () => {
    world = await World.create(PREFIX);
    const topo = await buildStandardTopology(world, { guestsPerHost: 2, bridges: 'per-guest' });
    const [a, b] = topo.hosts;
    expect(a.guests.map((g) => g.bridge)).toEqual(['brg1', 'brg2']);
    await world.addVeth({ ns: a.ns, name: 'j1' }, { ns: b.ns, name: 'j1' });
    await world.attachToBridge(a.ns, 'j1', 'brg1');
    await world.attachToBridge(b.ns, 'j1', 'brg1');
    await world.waitForPing(a.guests[0]!.ns, b.guests[0]!.ipv4, 10_000);
    expect(await pingOk(world, a.guests[0]!.ns, b.guests[1]!.ipv4)).toBe(false);
    expect(await pingOk(world, a.guests[1]!.ns, b.guests[0]!.ipv4)).toBe(false);
    expect(await pingOk(world, a.guests[0]!.ns, a.guests[1]!.ipv4)).toBe(false);
  });
});

describe('teardown', () => {
  itWith(['netns'], 'destroy() removes namespaces and stops processes, and is idempotent', async () => {
    world = await World.create(PREFIX);
    const topo = await buildStandardTopology(world);
    const sleeper = world.spawn(topo.hosts[1].ns, 'sleep', ['1000']);
    expect(processAlive(sleeper.pid)).toBe(true);
    await Promise.all([world.destroy(), world.destroy()]);
    await world.destroy();
    expect(await namespacesWithPrefix(PREFIX)).toEqual([]);
    expect(sleeper.running).toBe(false);
    expect(processAlive(sleeper.pid)).toBe(false);
    await expect(world.addNamespace('late')).rejects.toMatchObject({ code: 'NETNS_DESTROYED' });
  });

  itWith(['netns'], 'a build step that fails midway names the command and stderr, and destroy() still removes all', async () => {
    world = await World.create(PREFIX);
    // 70000 octets is beyond any veth MTU: the hosts, the underlay and the first guest
    // namespace exist when the guest veth fails.
    const err = await buildStandardTopology(world, { guestMtuBytes: 70_000, bridges: 'none' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NetnsError);
    expect((err as NetnsError).code).toBe('NETNS_COMMAND_FAILED');
    expect((err as NetnsError).message).toMatch(/`ip -n st-nstest-\S+ link add .*mtu 70000.*` failed \(exit \d+\): \S/);
    expect(await namespacesWithPrefix(PREFIX)).toHaveLength(3);
    expect((await world.ip(`${PREFIX}host-a`, ['link', 'show', 'dev', 'ul0'])).stdout).toContain('ul0');
    await world.destroy();
    expect(await namespacesWithPrefix(PREFIX)).toEqual([]);
  });

  itWith(['netns'], 'an injected failing command leaves the world destroyable', async () => {
    world = await World.create(PREFIX);
    const topo = await buildStandardTopology(world, { guestsPerHost: 1 });
    const err = await world.ip(topo.hosts[0].ns, ['link', 'set', 'dev', 'nosuchdev0', 'up']).catch((e: unknown) => e);
    expect((err as NetnsError).code).toBe('NETNS_COMMAND_FAILED');
    expect((err as NetnsError).message).toContain('nosuchdev0');
    expect((err as NetnsError).stderr).toMatch(/Cannot find device|does not exist/);
    // Commands outside the world's own namespaces are refused.
    await expect(world.ip('st-other-host-a', ['link'])).rejects.toMatchObject({ code: 'NETNS_FOREIGN' });
    await world.destroy();
    expect(await namespacesWithPrefix(PREFIX)).toEqual([]);
  });

  itWith(['netns'], 'World.create removes stale namespaces with its prefix and the processes left inside', async () => {
    const stale = `${PREFIX}stale-host`;
    await runCommand('ip', ['netns', 'add', stale]);
    const orphan = spawn('ip', ['netns', 'exec', stale, 'sleep', '1000'], { stdio: 'ignore' });
    const exited = new Promise<NodeJS.Signals | null>((r) => orphan.once('exit', (_c, s) => r(s)));
    try {
      await new Promise((r) => setTimeout(r, 200)); // let `ip netns exec` exec sleep
      expect(await namespacesWithPrefix(PREFIX)).toEqual([stale]);
      world = await World.create(PREFIX);
      expect(await namespacesWithPrefix(PREFIX)).toEqual([]);
      expect(await exited).toBe('SIGKILL');
    } finally {
      orphan.kill('SIGKILL');
      await runCommand('ip', ['netns', 'del', stale]).catch(() => undefined);
    }
  });
});

describe('teardown when the process ends', () => {
  // A child node process builds a world from netns.ts (transpiled to plain JS) and is
  // then ended by SIGTERM, SIGINT or by exiting without calling destroy().
  const dir = mkdtempSync(join(tmpdir(), 'st-nstest-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  function childScript(): string {
    const src = readFileSync(resolve(__dirname, '../../src/io/netns.ts'), 'utf8');
    const js = ts.transpileModule(src, {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
    }).outputText;
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'netns.mjs'), js);
    const main = `
      import { World, buildStandardTopology } from './netns.mjs';
      const [prefix, how] = process.argv.slice(2);
      const world = await World.create(prefix);
      const topo = await buildStandardTopology(world);
      world.spawn(topo.hosts[0].ns, 'sleep', ['1000']);
      process.stdout.write('ready\\n');
      if (how === 'exit') process.exit(3);
      setInterval(() => {}, 1000);
    `;
    writeFileSync(join(dir, 'main.mjs'), main);
    return join(dir, 'main.mjs');
  }

  for (const how of ['SIGTERM', 'SIGINT', 'exit'] as const) {
    itWith(['netns'], `removes the world on ${how}`, async () => {
      const prefix = `${PREFIX}${how.toLowerCase()}-`;
      const child = spawn(process.execPath, [childScript(), prefix, how], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (out += d.toString()));
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
        child.once('exit', (code, signal) => r({ code, signal })),
      );
      try {
        await new Promise<void>((r, j) => {
          child.stdout.on('data', () => out.includes('ready') && r());
          void exited.then(() => (out.includes('ready') ? r() : j(new Error(`child exited early: ${out}`))));
        });
        if (how !== 'exit') {
          expect(await namespacesWithPrefix(prefix)).toHaveLength(4);
          child.kill(how);
        }
        const { code, signal } = await exited;
        // The world re-raises the signal after teardown, so the default action ends the child.
        if (how === 'exit') expect(code).toBe(3);
        else expect(signal).toBe(how);
        expect(await namespacesWithPrefix(prefix)).toEqual([]);
      } finally {
        child.kill('SIGKILL');
        for (const ns of await namespacesWithPrefix(prefix)) await runCommand('ip', ['netns', 'del', ns]);
      }
    });
  }
});
