// cli/daemon/dataplane.ts over fake ports and a fake wire (test/cli/daemon/harness.ts):
// batches go port → encap → wire → decap → port, deliveries are grouped per domain,
// every buffer returns to the pool, and the sequence guard and outer-MTU counter act.
import { afterAll, describe, expect, it } from 'vitest';
import { Reason } from '../../../src/core/reasons.js';
import { connect, frame, hostConfig, MAC, memHost, removeScratch } from './harness.js';

afterAll(removeScratch);

describe('Dataplane', () => {
  it('carries a red frame to the red guest of the peer byte for byte, and floods it to the local red guest', () => {
    const a = memHost(hostConfig('a'));
    const b = memHost(hostConfig('b'));
    connect(a, b);
    const f = frame(MAC.bRed, MAC.aRed, 1000);
    a.ports.get('a-red')!.inject([f]);
    expect(a.ports.get('a-red2')!.written).toEqual([f]);
    expect(a.ports.get('a-blue')!.written).toEqual([]);
    expect(a.wire.sent).toHaveLength(1);
    expect(b.ports.get('b-red')!.written).toEqual([f]);
    expect(b.ports.get('b-blue')!.written).toEqual([]);
    expect(a.pool.available).toBe(a.pool.capacity);
    expect(b.pool.available).toBe(b.pool.capacity);
    expect(a.tables.traffic.domainIn[a.tables.domains.idOf('a-red')]).toBe(1);
    expect(b.tables.traffic.domainOut[b.tables.domains.idOf('b-red')]).toBe(1);
  });

  it('writes each destination domain once per batch, in order', () => {
    const a = memHost(hostConfig('a'));
    const b = memHost(hostConfig('b'));
    connect(a, b);
    const frames = [1, 2, 3].map((s) => frame('ff:ff:ff:ff:ff:ff', MAC.aRed, 100, s));
    a.ports.get('a-red')!.inject(frames);
    expect(a.ports.get('a-red2')!.batches).toEqual([3]);
    expect(a.ports.get('a-red2')!.written).toEqual(frames);
    expect(a.wire.sent).toHaveLength(3);
    expect(b.ports.get('b-red')!.written).toEqual(frames);
    expect(a.pool.available).toBe(a.pool.capacity);
  });

  it('keeps labels apart: a blue guest never gets a red frame, and the denial is counted', () => {
    const a = memHost(hostConfig('a'));
    const b = memHost(hostConfig('b'));
    connect(a, b);
    a.ports.get('a-red')!.inject([frame(MAC.bBlue, MAC.aRed)]);
    expect(b.ports.get('b-blue')!.written).toEqual([]);
    expect(b.tables.counters.counts[Reason.policy_denied]).toBe(1);
    a.ports.get('a-red')!.inject([frame(MAC.aBlue, MAC.aRed)]);
    expect(a.ports.get('a-blue')!.written).toEqual([]);
    expect(a.tables.counters.counts[Reason.policy_denied]).toBe(1);
    expect(b.pool.available).toBe(b.pool.capacity);
  });

  it('counts every encapsulated packet above the underlay MTU as fragmented', () => {
    const a = memHost(hostConfig('a'));
    a.wire.cut = true;
    // 1514-octet frame: ESP packet 8 + 8 + pad(8 + 4 + 1514 + 2) + 16 = 1560, + IPv4/UDP 28 > 1500.
    a.ports.get('a-red')!.inject([frame(MAC.bRed, MAC.aRed, 1500), frame(MAC.bRed, MAC.aRed, 1400), frame(MAC.bRed, MAC.aRed, 100)]);
    expect(a.wire.sent.map((p) => p.length)).toEqual([1560, 1460, 160]);
    expect(a.dp.fragmented).toBe(1);
  });

  it('drops a batch the sequence guard refuses, returns its buffers and counts sa_expired', () => {
    const a = memHost(hostConfig('a'), { beforeSend: () => false });
    a.wire.cut = true;
    a.ports.get('a-red')!.inject([frame(MAC.bRed, MAC.aRed), frame(MAC.bRed, MAC.aRed)]);
    expect(a.wire.sent).toEqual([]);
    expect(a.ports.get('a-red2')!.written).toEqual([]);
    expect(a.dp.guardDrops).toBe(2);
    expect(a.tables.counters.counts[Reason.sa_expired]).toBe(2);
    expect(a.pool.available).toBe(a.pool.capacity);
  });

  it('returns the frames of a port that is being closed (domain id -1) to the pool untouched', () => {
    const a = memHost(hostConfig('a'));
    a.wire.cut = true;
    a.handles.get('a-red')!.domainId = -1;
    a.ports.get('a-red')!.inject([frame(MAC.bRed, MAC.aRed)]);
    expect(a.wire.sent).toEqual([]);
    expect(a.pool.available).toBe(a.pool.capacity);
  });

  it('asks the guard before each batch for as many numbers as the batch has frames', () => {
    const asked: number[] = [];
    const a = memHost(hostConfig('a'), {
      beforeSend: (n) => {
        asked.push(n);
        return true;
      },
    });
    a.wire.cut = true;
    a.ports.get('a-red')!.inject(Array.from({ length: 5 }, () => frame(MAC.bRed, MAC.aRed)));
    expect(asked).toEqual([5]);
  });
});
