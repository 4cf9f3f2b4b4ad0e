// cli/daemon/sas.ts: static SAs kept or replaced by identity, outbound counters resumed above
// the sequence store's mark, and the per-batch guard that never lets a counter pass it.
import { afterAll, describe, expect, it } from 'vitest';
import { planStaticSas } from '../../../src/control/build.js';
import { Logger } from '../../../src/control/log.js';
import { SeqStore, SeqStoreError } from '../../../src/control/seq-store.js';
import { SaRegistry } from '../../../src/cli/daemon/sas.js';
import { hostConfig, removeScratch, scratchDir } from './harness.js';

afterAll(removeScratch);

function setup(block = 16, dir = scratchDir('st-sas-')) {
  const lines: Record<string, unknown>[] = [];
  const log = new Logger({ stream: { write: (t: string) => lines.push(JSON.parse(t) as Record<string, unknown>) } });
  const store = SeqStore.open(dir, { blockPackets: block });
  return { dir, store, lines, reg: new SaRegistry(store, undefined, log) };
}

const PLANS = planStaticSas(hostConfig('a'), true);

describe('SaRegistry', () => {
  it('starts a new key at 1 with a block reserved on disk before anything is sealed', () => {
    const { reg, store } = setup();
    const { changes, commit } = reg.prepare(PLANS, 0);
    commit();
    expect(changes).toMatchObject({ created: 4, kept: 0, destroyed: 0 });
    expect(changes.pairs.map((p) => [p.inbound.spi, p.outbound.spi])).toEqual([
      [0x2001, 0x1001],
      [0x2002, 0x1002],
    ]);
    const [red] = reg.outboundEntries();
    expect(red!.sa.nextSeq).toBe(1);
    expect(red!.reserved).toBe(16);
    expect(store.reservedUpTo(red!.key)).toBe(16);
  });

  it('resumes above the reserved mark after a restart, so no sequence number is sent twice', () => {
    const first = setup();
    first.reg.prepare(PLANS, 0).commit();
    const red = first.reg.outboundEntries()[0]!;
    const sent: number[] = [];
    for (let i = 0; i < 20; i++) {
      expect(first.reg.guard(1)).toBe(true);
      sent.push(red.sa.claim(100, 0));
    }
    expect(sent).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    // Crash: nothing saved beyond what the guard reserved.
    const second = setup(16, first.dir);
    second.reg.prepare(PLANS, 0).commit();
    const again = second.reg.outboundEntries()[0]!;
    expect(again.sa.nextSeq).toBe(first.store.reservedUpTo(red.key) + 1);
    expect(again.sa.nextSeq).toBeGreaterThan(Math.max(...sent));
    expect(second.lines.some((l) => l.msg === 'outbound SA resumes above its reserved sequence numbers' && l.firstSeq === again.sa.nextSeq)).toBe(true);
  });

  it('reserves the next block only when a batch could pass the mark', () => {
    const { reg, store } = setup();
    reg.prepare(PLANS, 0).commit();
    const red = reg.outboundEntries()[0]!;
    for (let i = 0; i < 10; i++) red.sa.claim(100, 0);
    const writes = store.writes;
    expect(reg.guard(6)).toBe(true); // 11..16 are reserved already
    expect(store.writes).toBe(writes);
    expect(reg.guard(7)).toBe(true); // 17 is not: reserve 11..26
    expect(store.writes).toBe(writes + 1);
    expect(red.reserved).toBe(26);
  });

  it('refuses the batch when the reservation cannot be written, and logs it once', () => {
    const { reg, store, lines } = setup();
    reg.prepare(PLANS, 0).commit();
    const red = reg.outboundEntries()[0]!;
    for (let i = 0; i < 16; i++) red.sa.claim(100, 0);
    store.reserveAhead = () => {
      throw new SeqStoreError('SEQ_STATE_IO', store.file, 'disk full');
    };
    expect(reg.guard(1)).toBe(false);
    expect(reg.guard(1)).toBe(false);
    expect(lines.filter((l) => l.level === 'error')).toHaveLength(1);
    expect(red.sa.nextSeq).toBe(17);
  });

  it('keeps SAs whose identity is unchanged, replaces a changed one at commit, and undoes on abort', () => {
    const { reg } = setup();
    reg.prepare(PLANS, 0).commit();
    const before = [...reg.outboundEntries()].map((e) => e.sa);
    const same = reg.prepare(planStaticSas(hostConfig('a'), true), 0);
    expect(same.changes).toMatchObject({ created: 0, kept: 4, destroyed: 0 });
    same.commit();
    expect(reg.outboundEntries().map((e) => e.sa)).toEqual(before);

    const changed = planStaticSas(
      hostConfig('a', (c) => (c.peers[0].staticSas[0].out.keymat = Buffer.alloc(36, 0x77).toString('hex'))),
      true,
    );
    const aborted = reg.prepare(changed, 0);
    expect(aborted.changes).toMatchObject({ created: 1, kept: 3, destroyed: 1 });
    aborted.abort();
    expect(aborted.changes.pairs[0]!.outbound.destroyed).toBe(true);
    expect(before[0]!.destroyed).toBe(false);

    const p = reg.prepare(changed, 0);
    p.commit();
    expect(before[0]!.destroyed).toBe(true);
    expect(reg.outboundEntries()[0]!.sa).toBe(p.changes.pairs[0]!.outbound);
    expect(reg.outboundEntries()[1]!.sa).toBe(before[1]);
  });

  it('destroys every SA (keys zeroed) on destroyAll', () => {
    const { reg } = setup();
    reg.prepare(PLANS, 0).commit();
    const all = [...reg.outboundEntries().map((e) => e.sa), ...[...reg.inboundEntries()].map((e) => e.sa)];
    reg.destroyAll();
    expect(all.every((sa) => sa.destroyed)).toBe(true);
    expect(reg.outboundEntries()).toEqual([]);
  });
});
