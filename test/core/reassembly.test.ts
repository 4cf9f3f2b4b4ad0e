import { describe, expect, it } from 'vitest';
import {
  REASM_DONE,
  REASM_FAILED,
  REASM_PENDING,
  ReasmFailure,
  Reassembler,
} from '../../src/core/reassembly.js';

// Addresses: src 192.0.2.1 at 0, dst 192.0.2.2 at 4; IPv6 2001:db8::1 at 8, 2001:db8::2 at 24.
const ADDRS = new Uint8Array([
  192, 0, 2, 1, 192, 0, 2, 2,
  0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
  0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2,
]);

function payload(n: number, seed = 1): Uint8Array {
  const p = new Uint8Array(n);
  for (let i = 0; i < n; i++) p[i] = (i * 31 + seed) & 0xff;
  return p;
}

/** Splits `p` into fragments of `size` octets (a multiple of 8) and returns [offset, more, bytes]. */
function fragments(p: Uint8Array, size: number): [number, boolean, Uint8Array][] {
  const out: [number, boolean, Uint8Array][] = [];
  for (let off = 0; off < p.length; off += size) {
    const end = Math.min(p.length, off + size);
    out.push([off, end < p.length, p.subarray(off, end)]);
  }
  return out;
}

function addV4(r: Reassembler, id: number, [off, more, bytes]: [number, boolean, Uint8Array], now = 0): number {
  return r.add(4, ADDRS, 0, 4, id, 50, off, more, bytes, 0, bytes.length, now);
}

describe('Reassembler', () => {
  it('reassembles an IPv4 datagram from in-order fragments and copies it out exactly', () => {
    const r = new Reassembler();
    const p = payload(3000);
    const fr = fragments(p, 1480);
    expect(addV4(r, 7, fr[0]!)).toBe(REASM_PENDING);
    expect(addV4(r, 7, fr[1]!)).toBe(REASM_PENDING);
    expect(addV4(r, 7, fr[2]!)).toBe(REASM_DONE);
    const slot = r.doneSlot;
    expect(r.doneLength(slot)).toBe(3000);
    expect(r.doneProto(slot)).toBe(50);
    const out = new Uint8Array(3100).fill(0xa5);
    expect(r.copyOut(slot, out, 100)).toBe(3000);
    expect(out.subarray(100, 3100)).toEqual(p);
    expect(out[99]).toBe(0xa5);
    r.release(slot);
    expect(r.inProgress).toBe(0);
  });

  it('reassembles out of order, last fragment first', () => {
    const r = new Reassembler();
    const p = payload(4000, 9);
    const fr = fragments(p, 1000);
    const order = [3, 1, 0, 2];
    const results = order.map((i) => addV4(r, 1, [fr[i]![0], fr[i]![1], fr[i]![2]]));
    expect(results).toEqual([REASM_PENDING, REASM_PENDING, REASM_PENDING, REASM_DONE]);
    const out = new Uint8Array(4000);
    r.copyOut(r.doneSlot, out, 0);
    expect(out).toEqual(p);
  });

  it('keeps datagrams apart by id, addresses, protocol and family', () => {
    const r = new Reassembler();
    const a = payload(16, 1);
    const b = payload(16, 2);
    expect(r.add(4, ADDRS, 0, 4, 5, 50, 0, true, a, 0, 8, 0)).toBe(REASM_PENDING);
    expect(r.add(4, ADDRS, 4, 0, 5, 50, 0, true, b, 0, 8, 0)).toBe(REASM_PENDING); // swapped src/dst
    expect(r.add(4, ADDRS, 0, 4, 5, 17, 0, true, b, 0, 8, 0)).toBe(REASM_PENDING); // other protocol
    expect(r.add(6, ADDRS, 8, 24, 5, 50, 0, true, b, 0, 8, 0)).toBe(REASM_PENDING); // IPv6
    expect(r.inProgress).toBe(4);
    expect(r.add(4, ADDRS, 0, 4, 5, 50, 8, false, a, 8, 8, 0)).toBe(REASM_DONE);
    const out = new Uint8Array(16);
    r.copyOut(r.doneSlot, out, 0);
    expect(out).toEqual(a);
  });

  it('drops the whole datagram on overlapping fragments (RFC 5722)', () => {
    const r = new Reassembler();
    const p = payload(64);
    expect(r.add(4, ADDRS, 0, 4, 2, 50, 0, true, p, 0, 32, 0)).toBe(REASM_PENDING);
    expect(r.add(4, ADDRS, 0, 4, 2, 50, 24, true, p, 24, 16, 0)).toBe(REASM_FAILED);
    expect(r.lastFailure).toBe(ReasmFailure.overlap);
    expect(r.inProgress).toBe(0);
    // A later clean fragment starts a fresh datagram rather than completing a poisoned one.
    expect(r.add(4, ADDRS, 0, 4, 2, 50, 32, false, p, 32, 32, 0)).toBe(REASM_PENDING);
  });

  it('drops exact duplicates as overlaps too', () => {
    const r = new Reassembler();
    const p = payload(16);
    r.add(4, ADDRS, 0, 4, 3, 50, 0, true, p, 0, 8, 0);
    expect(r.add(4, ADDRS, 0, 4, 3, 50, 0, true, p, 0, 8, 0)).toBe(REASM_FAILED);
  });

  it('rejects non-final fragments that are not a multiple of 8 octets, or empty', () => {
    const r = new Reassembler();
    const p = payload(20);
    expect(r.add(4, ADDRS, 0, 4, 4, 50, 0, true, p, 0, 12, 0)).toBe(REASM_FAILED);
    expect(r.lastFailure).toBe(ReasmFailure.badFragment);
    expect(r.add(4, ADDRS, 0, 4, 4, 50, 0, true, p, 0, 0, 0)).toBe(REASM_FAILED);
  });

  it('refuses a datagram longer than maxDatagramBytes and frees its state', () => {
    const r = new Reassembler({ maxDatagramBytes: 1024 });
    const p = payload(1024);
    expect(r.add(4, ADDRS, 0, 4, 9, 50, 0, true, p, 0, 512, 0)).toBe(REASM_PENDING);
    expect(r.add(4, ADDRS, 0, 4, 9, 50, 1000, false, p, 0, 40, 0)).toBe(REASM_FAILED);
    expect(r.lastFailure).toBe(ReasmFailure.tooLong);
    expect(r.inProgress).toBe(0);
  });

  it('bounds fragments per datagram', () => {
    const r = new Reassembler({ maxFragmentsPerDatagram: 4 });
    const p = payload(80);
    for (let i = 0; i < 4; i++) expect(r.add(4, ADDRS, 0, 4, 1, 50, i * 8, true, p, 0, 8, 0)).toBe(REASM_PENDING);
    expect(r.add(4, ADDRS, 0, 4, 1, 50, 32, true, p, 0, 8, 0)).toBe(REASM_FAILED);
    expect(r.lastFailure).toBe(ReasmFailure.tooManyFragments);
  });

  it('bounds datagrams in progress: a flood of first fragments cannot grow memory', () => {
    const r = new Reassembler({ maxDatagrams: 8 });
    const p = payload(8);
    let failed = 0;
    for (let id = 0; id < 10_000; id++) {
      if (r.add(4, ADDRS, 0, 4, id, 50, 0, true, p, 0, 8, 0) === REASM_FAILED) failed++;
    }
    expect(r.inProgress).toBe(8);
    expect(failed).toBe(10_000 - 8);
    expect(r.stats.failuresByCause[ReasmFailure.noSlot]).toBe(10_000 - 8);
  });

  it('expires incomplete datagrams after the timeout (manual clock)', () => {
    const r = new Reassembler({ timeoutMs: 1000 });
    const p = payload(16);
    r.add(4, ADDRS, 0, 4, 1, 50, 0, true, p, 0, 8, 0);
    expect(r.expire(999)).toBe(0);
    expect(r.inProgress).toBe(1);
    expect(r.expire(1000)).toBe(1);
    expect(r.inProgress).toBe(0);
    expect(r.stats.timedOut).toBe(1);
    // The tail arriving late starts a new, never-completed datagram: no stale completion.
    expect(r.add(4, ADDRS, 0, 4, 1, 50, 8, false, p, 8, 8, 1001)).toBe(REASM_PENDING);
  });

  it('rejects two different ends for one datagram', () => {
    const r = new Reassembler();
    const p = payload(64);
    r.add(4, ADDRS, 0, 4, 1, 50, 32, false, p, 0, 16, 0); // ends at 48
    expect(r.add(4, ADDRS, 0, 4, 1, 50, 48, false, p, 0, 8, 0)).toBe(REASM_FAILED);
    expect(r.lastFailure).toBe(ReasmFailure.inconsistentEnd);
  });

  it('copyOut refuses a target that is too small', () => {
    const r = new Reassembler();
    const p = payload(16);
    r.add(4, ADDRS, 0, 4, 1, 50, 0, true, p, 0, 8, 0);
    r.add(4, ADDRS, 0, 4, 1, 50, 8, false, p, 8, 8, 0);
    expect(r.copyOut(r.doneSlot, new Uint8Array(15), 0)).toBe(-1);
  });

  it('survives random fragment garbage without throwing and stays bounded (seeded)', () => {
    let seed = 12345;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    const r = new Reassembler({ maxDatagrams: 16 });
    const buf = payload(2000);
    for (let i = 0; i < 20_000; i++) {
      const off = Math.floor(rnd() * 70_000) & ~7;
      const len = Math.floor(rnd() * 1600);
      const dataOff = Math.floor(rnd() * 400);
      const res = r.add(rnd() < 0.5 ? 4 : 6, ADDRS, 8, 24, Math.floor(rnd() * 32), 50, off, rnd() < 0.7, buf, dataOff, Math.min(len, 2000 - dataOff), i);
      expect([REASM_PENDING, REASM_DONE, REASM_FAILED]).toContain(res);
      if (res === REASM_DONE) r.release(r.doneSlot);
      expect(r.inProgress).toBeLessThanOrEqual(16);
    }
  });
});
