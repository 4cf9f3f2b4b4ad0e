// SA state: sequence counter, lifetimes with a manual clock, key zeroing (RFC 4303 §3.3.3,
// RFC 4301 §4.4.2.1). Time is a number the test advances; nothing here reads a clock.
import { describe, expect, it } from 'vitest';
import { PacketPool } from '../../src/buf/pool.js';
import { ESP_OK, espSeal } from '../../src/core/esp.js';
import { Reason } from '../../src/core/reasons.js';
import { InboundSa, OutboundSa, SEQ_MAX_32, SEQ_MAX_ESN, type OutboundSaOptions } from '../../src/core/sa.js';
import { aeadKeymatBytes, type AeadAlgorithm } from '../../src/crypto/index.js';

const T0 = 1_000_000;

function keymat(alg: AeadAlgorithm = 'aes-gcm-256', fill = 0x42): Uint8Array {
  return new Uint8Array(aeadKeymatBytes(alg)).fill(fill);
}

function outbound(extra: Partial<OutboundSaOptions> = {}): OutboundSa {
  return new OutboundSa({ spi: 0x1001, algorithm: 'aes-gcm-256', keymat: keymat(), backend: 'node', labels: ['red'], nowMs: T0, ...extra });
}

describe('OutboundSa sequence counter', () => {
  it('starts at 1 and counts up', () => {
    const sa = outbound();
    expect(sa.claim(100, T0)).toBe(1);
    expect(sa.claim(100, T0)).toBe(2);
    expect(sa.claim(100, T0)).toBe(3);
    expect(sa.packets).toBe(3);
    expect(sa.bytes).toBe(300);
  });

  it('without ESN stops at 2^32 − 1 and never wraps to 0', () => {
    const sa = outbound({ esn: false, firstSeq: SEQ_MAX_32 - 1 });
    expect(sa.claim(10, T0)).toBe(SEQ_MAX_32 - 1);
    expect(sa.claim(10, T0)).toBe(SEQ_MAX_32);
    expect(sa.claim(10, T0)).toBe(0);
    expect(sa.expired).toBe(true);
    expect(sa.expiredReason).toBe('packets');
    expect(sa.claim(10, T0)).toBe(0); // stays refused
    expect(sa.nextSeq).toBe(SEQ_MAX_32 + 1);
    expect(sa.packets).toBe(2);
  });

  it('with ESN crosses 2^32 (low half 0 is sent) and stops at 2^53 − 1', () => {
    const sa = outbound({ firstSeq: SEQ_MAX_32 });
    expect(sa.claim(1, T0)).toBe(2 ** 32 - 1);
    expect(sa.claim(1, T0)).toBe(2 ** 32);
    const top = outbound({ firstSeq: SEQ_MAX_ESN });
    expect(top.claim(1, T0)).toBe(SEQ_MAX_ESN);
    expect(top.claim(1, T0)).toBe(0);
    expect(top.expired).toBe(true);
  });

  it('refuses a hard packet limit the counter cannot reach without wrapping', () => {
    expect(() => outbound({ esn: false, limits: { hardPackets: 2 ** 32 } })).toThrow(/hardPackets.*4294967296/);
    expect(() => outbound({ limits: { hardPackets: 2 ** 53 } })).toThrow(RangeError);
    expect(() => outbound({ esn: false, firstSeq: 2 ** 32 })).toThrow(/firstSeq/);
    expect(() => outbound({ firstSeq: 0 })).toThrow(/firstSeq.*got 0/);
    expect(outbound({ esn: false }).hardPackets).toBe(SEQ_MAX_32);
    expect(outbound().hardPackets).toBe(SEQ_MAX_ESN);
  });

  it('espSeal returns sa_expired at the end of the 32-bit counter, without throwing', () => {
    const pool = new PacketPool({ packets: 2 });
    const sa = outbound({ esn: false, firstSeq: SEQ_MAX_32 });
    const buf = pool.get()!;
    buf.load(new Uint8Array(40));
    expect(espSeal(sa, buf, 47, T0)).toBe(ESP_OK);
    const seqLo = buf.bytes.subarray(buf.start + 4, buf.start + 8);
    expect([...seqLo]).toEqual([0xff, 0xff, 0xff, 0xff]);
    const next = pool.get()!;
    next.load(new Uint8Array(40));
    expect(espSeal(sa, next, 47, T0)).toBe(Reason.sa_expired);
    expect(next.length).toBe(40); // untouched
  });
});

describe('OutboundSa lifetimes (manual clock)', () => {
  it('packets: soft raises rekeyDue, hard refuses', () => {
    const sa = outbound({ limits: { softPackets: 3, hardPackets: 5 } });
    expect(sa.claim(1, T0)).toBe(1);
    expect(sa.claim(1, T0)).toBe(2);
    expect(sa.rekeyDue).toBe(false);
    expect(sa.claim(1, T0)).toBe(3);
    expect(sa.rekeyDue).toBe(true);
    expect(sa.rekeyReason).toBe('packets');
    expect(sa.expired).toBe(false);
    expect(sa.claim(1, T0)).toBe(4);
    expect(sa.claim(1, T0)).toBe(5);
    expect(sa.remainingPackets).toBe(0);
    expect(sa.claim(1, T0)).toBe(0);
    expect(sa.expired).toBe(true);
    expect(sa.expiredReason).toBe('packets');
  });

  it('bytes: soft at the limit, hard refuses a packet that would cross it', () => {
    const sa = outbound({ limits: { softBytes: 1000, hardBytes: 1500 } });
    expect(sa.claim(600, T0)).toBe(1);
    expect(sa.rekeyDue).toBe(false);
    expect(sa.claim(400, T0)).toBe(2);
    expect(sa.rekeyDue).toBe(true);
    expect(sa.rekeyReason).toBe('bytes');
    expect(sa.claim(500, T0)).toBe(3); // exactly 1500
    expect(sa.claim(1, T0)).toBe(0);
    expect(sa.expiredReason).toBe('bytes');
    expect(sa.bytes).toBe(1500);
  });

  it('age: soft and hard, on traffic and on tick() for an idle SA', () => {
    const sa = outbound({ limits: { softAgeMs: 60_000, hardAgeMs: 90_000 } });
    expect(sa.claim(1, T0 + 59_999)).toBe(1);
    expect(sa.rekeyDue).toBe(false);
    expect(sa.claim(1, T0 + 60_000)).toBe(2);
    expect(sa.rekeyDue).toBe(true);
    expect(sa.rekeyReason).toBe('age');
    expect(sa.claim(1, T0 + 89_999)).toBe(3);
    expect(sa.claim(1, T0 + 90_000)).toBe(0);
    expect(sa.expiredReason).toBe('age');

    const idle = outbound({ limits: { softAgeMs: 60_000, hardAgeMs: 90_000 } });
    idle.tick(T0 + 30_000);
    expect(idle.rekeyDue).toBe(false);
    idle.tick(T0 + 60_000);
    expect(idle.rekeyDue).toBe(true);
    expect(idle.expired).toBe(false);
    idle.tick(T0 + 90_000);
    expect(idle.expired).toBe(true);
    expect(idle.claim(1, T0 + 90_001)).toBe(0);
  });

  it('a hard limit also raises rekeyDue if no soft limit did', () => {
    const sa = outbound({ limits: { hardPackets: 1, softPackets: 10 } });
    expect(sa.claim(1, T0)).toBe(1);
    expect(sa.rekeyDue).toBe(false);
    expect(sa.claim(1, T0)).toBe(0);
    expect(sa.rekeyDue).toBe(true);
  });

  it('soft packet limit defaults to 7/8 of the hard one', () => {
    const sa = outbound({ esn: false });
    expect(sa.softPackets).toBe(Math.floor(SEQ_MAX_32 / 8) * 7);
    expect(sa.softPackets).toBeLessThan(sa.hardPackets);
  });

  it('rejects negative or NaN limits, naming the limit and the value', () => {
    expect(() => outbound({ limits: { softBytes: -1 } })).toThrow(/softBytes.*-1/);
    expect(() => outbound({ limits: { hardAgeMs: Number.NaN } })).toThrow(/hardAgeMs.*NaN/);
  });
});

describe('SA keys', () => {
  it('destroy() zeroes the KEYMAT the SA was given and the AEAD refuses afterwards', () => {
    for (const backend of ['node', 'noble'] as const) {
      const km = keymat('chacha20-poly1305', 0x5a);
      const sa = new OutboundSa({ spi: 0x2000, algorithm: 'chacha20-poly1305', keymat: km, backend, nowMs: T0 });
      expect(km.every((b) => b === 0x5a)).toBe(true); // still in use
      sa.destroy();
      expect(km.every((b) => b === 0), backend).toBe(true);
      expect(sa.destroyed).toBe(true);
      expect(sa.expired).toBe(true);
      expect(sa.claim(1, T0)).toBe(0);
      expect(() => sa.aead.seal(new Uint8Array(64), 0, 8, 16, new Uint8Array(8))).toThrow(/destroy/);
      sa.destroy(); // idempotent
    }
  });

  it('destroy() of an inbound SA zeroes its KEYMAT and the node backend key', () => {
    const km = keymat('aes-gcm-128', 0x77);
    const sa = new InboundSa({ spi: 0x3000, algorithm: 'aes-gcm-128', keymat: km, backend: 'node', labels: ['red'], nowMs: T0 });
    const inner = (sa.aead as unknown as { key: Uint8Array }).key;
    expect(inner.some((b) => b !== 0)).toBe(true);
    sa.destroy();
    expect(km.every((b) => b === 0)).toBe(true);
    expect(inner.every((b) => b === 0)).toBe(true);
  });

  it('bad limits and window sizes are refused, naming the value', () => {
    const km = keymat();
    expect(() => outbound({ keymat: km, limits: { softPackets: -5 } })).toThrow(RangeError);
    expect(() => new InboundSa({ spi: 1, algorithm: 'aes-gcm-256', keymat: km, nowMs: T0, replayWindowPackets: 100 })).toThrow(/100/);
  });
});

describe('InboundSa', () => {
  it('stores its labels, ESN flag, window and creation time', () => {
    const sa = new InboundSa({
      spi: 0x4000,
      algorithm: 'aes-gcm-256',
      keymat: keymat(),
      backend: 'node',
      labels: ['red', 'blue'],
      replayWindowPackets: 64,
      nowMs: T0,
    });
    expect([...sa.labels].sort()).toEqual(['blue', 'red']);
    expect(sa.esn).toBe(true);
    expect(sa.replay.windowPackets).toBe(64);
    expect(sa.createdMs).toBe(T0);
    expect(sa.packets).toBe(0);
    expect(sa.drops.counts.every((n) => n === 0)).toBe(true);
  });

  it('infers the high half only with ESN', () => {
    const esn = new InboundSa({ spi: 0x4001, algorithm: 'aes-gcm-128', keymat: keymat('aes-gcm-128'), backend: 'node', nowMs: T0 });
    const plain = new InboundSa({ spi: 0x4002, algorithm: 'aes-gcm-128', keymat: keymat('aes-gcm-128'), backend: 'node', esn: false, nowMs: T0 });
    esn.replay.commit(2 ** 32 - 10);
    plain.replay.commit(2 ** 32 - 10);
    expect(esn.inferSeqHi(3)).toBe(1);
    expect(plain.inferSeqHi(3)).toBe(0);
  });

  it('the AAD is SPI ‖ seq_lo, or SPI ‖ seq_hi ‖ seq_lo with ESN (RFC 4106 §5)', () => {
    const esn = new InboundSa({ spi: 0x01020304, algorithm: 'aes-gcm-128', keymat: keymat('aes-gcm-128'), backend: 'node', nowMs: T0 });
    expect(Buffer.from(esn.aadFor(0x0a0b0c0d, 0x11223344)).toString('hex')).toBe('010203040a0b0c0d11223344');
    const plain = new InboundSa({ spi: 0x01020304, algorithm: 'aes-gcm-128', keymat: keymat('aes-gcm-128'), backend: 'node', esn: false, nowMs: T0 });
    expect(Buffer.from(plain.aadFor(0, 5)).toString('hex')).toBe('0102030400000005');
  });
});
