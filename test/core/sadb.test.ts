// The SA database: SPI rules (RFC 4303 §2.1), lookups, key zeroing on remove, SPI allocation.
import { describe, expect, it } from 'vitest';
import { SaDatabase, SadbError, spiUsable } from '../../src/core/sadb.js';
import { InboundSa, OutboundSa } from '../../src/core/sa.js';
import { aeadKeymatBytes } from '../../src/crypto/index.js';

const T0 = 0;

function km(fill = 0x33): Uint8Array {
  return new Uint8Array(aeadKeymatBytes('aes-gcm-128')).fill(fill);
}

function inbound(spi: number, labels: string[] = ['red'], keymat = km()): InboundSa {
  return new InboundSa({ spi, algorithm: 'aes-gcm-128', keymat, backend: 'node', labels, nowMs: T0 });
}

function outbound(spi: number, labels: string[], keymat = km()): OutboundSa {
  return new OutboundSa({ spi, algorithm: 'aes-gcm-128', keymat, backend: 'node', labels, nowMs: T0 });
}

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(SadbError);
    return (e as SadbError).code;
  }
  return 'no error';
}

describe('SaDatabase inbound', () => {
  it('installs, looks up by SPI, and removes with the keys zeroed', () => {
    const db = new SaDatabase();
    const keys = km(0x44);
    const sa = inbound(0x1001, ['red'], keys);
    db.installInbound(sa);
    expect(db.inbound(0x1001)).toBe(sa);
    expect(db.inbound(0x1002)).toBeUndefined();
    expect(db.inboundCount).toBe(1);
    expect(db.removeInbound(0x1001)).toBe(true);
    expect(db.inbound(0x1001)).toBeUndefined();
    expect(keys.every((b) => b === 0)).toBe(true);
    expect(sa.destroyed).toBe(true);
    expect(db.removeInbound(0x1001)).toBe(false);
  });

  it('refuses SPI 0 (draft-mcgrew-gcm-test-01 case 4 uses it) and 1–255, naming the SPI', () => {
    const db = new SaDatabase();
    for (const spi of [0, 1, 200, 255]) {
      expect(codeOf(() => db.installInbound(inbound(spi))), String(spi)).toBe('ST_SADB_BAD_SPI');
    }
    expect(() => db.installInbound(inbound(0))).toThrow(/0x00000000/);
    db.installInbound(inbound(256));
    db.installInbound(inbound(0xffffffff));
    expect(db.inboundCount).toBe(2);
  });

  it('refuses an SPI already installed, and an SA bound to no label', () => {
    const db = new SaDatabase();
    db.installInbound(inbound(0x2000));
    expect(codeOf(() => db.installInbound(inbound(0x2000)))).toBe('ST_SADB_SPI_IN_USE');
    expect(codeOf(() => db.installInbound(inbound(0x2001, [])))).toBe('ST_SADB_NO_LABELS');
  });

  it('spiUsable() follows RFC 4303 §2.1', () => {
    expect([0, 1, 255, 256, 0xffffffff, 2 ** 32, -1, 1.5].map(spiUsable)).toEqual([false, false, false, true, true, false, false, false]);
  });
});

describe('SaDatabase outbound', () => {
  it('looks up by peer and label; one SA may serve several labels', () => {
    const db = new SaDatabase();
    const a = outbound(0x3000, ['red', 'blue']);
    const b = outbound(0x3001, ['red']);
    db.installOutbound('192.0.2.1', a);
    db.installOutbound('192.0.2.2', b);
    expect(db.outbound('192.0.2.1', 'red')).toBe(a);
    expect(db.outbound('192.0.2.1', 'blue')).toBe(a);
    expect(db.outbound('192.0.2.2', 'red')).toBe(b);
    expect(db.outbound('192.0.2.2', 'blue')).toBeUndefined();
    expect(db.outbound('192.0.2.9', 'red')).toBeUndefined();
    expect(db.outboundSas().length).toBe(2);
  });

  it('a rekeyed SA replaces the old one, which is destroyed once no label uses it', () => {
    const db = new SaDatabase();
    const oldKeys = km(0x55);
    const old = outbound(0x4000, ['red', 'blue'], oldKeys);
    db.installOutbound('p', old);
    expect(db.installOutbound('p', outbound(0x4001, ['red']))).toEqual([]); // blue still uses it
    expect(old.destroyed).toBe(false);
    const next = outbound(0x4002, ['blue']);
    expect(db.installOutbound('p', next)).toEqual([old]);
    expect(old.destroyed).toBe(true);
    expect(oldKeys.every((b) => b === 0)).toBe(true);
    expect(db.outbound('p', 'blue')).toBe(next);
  });

  it('removeOutbound takes the SA out of every label and zeroes its keys', () => {
    const db = new SaDatabase();
    const keys = km(0x66);
    const sa = outbound(0x5000, ['red', 'blue'], keys);
    db.installOutbound('p', sa);
    expect(db.removeOutbound(sa)).toBe(true);
    expect(db.outbound('p', 'red')).toBeUndefined();
    expect(db.outbound('p', 'blue')).toBeUndefined();
    expect(keys.every((b) => b === 0)).toBe(true);
    expect(db.removeOutbound(sa)).toBe(false);
    expect(codeOf(() => db.installOutbound('p', outbound(0x5001, [])))).toBe('ST_SADB_NO_LABELS');
  });

  it('clear() destroys everything', () => {
    const db = new SaDatabase();
    const k1 = km(1);
    const k2 = km(2);
    db.installInbound(inbound(0x6000, ['red'], k1));
    db.installOutbound('p', outbound(0x6001, ['red'], k2));
    db.clear();
    expect(db.inboundCount).toBe(0);
    expect(db.outbound('p', 'red')).toBeUndefined();
    expect([...k1, ...k2].every((b) => b === 0)).toBe(true);
  });
});

describe('SaDatabase.allocateSpi', () => {
  /** A random source that replays a script. */
  function scripted(values: number[]): () => number {
    let i = 0;
    return () => values[i++ % values.length]!;
  }

  it('skips 0, 1–255 and SPIs in use or reserved', () => {
    const db = new SaDatabase();
    db.installInbound(inbound(0x1000));
    const spi = db.allocateSpi(scripted([0, 1, 255, 0x1000, 0x1234]));
    expect(spi).toBe(0x1234);
    // 0x1234 is now reserved: the next allocation skips it too.
    expect(db.allocateSpi(scripted([0x1234, 0x1000, 256]))).toBe(256);
    // Installing a reserved SPI is allowed (that is what it was reserved for).
    db.installInbound(inbound(0x1234));
    db.releaseSpi(256);
    expect(db.allocateSpi(scripted([256]))).toBe(256);
  });

  it('gives up with a stable code when the source never yields a usable SPI', () => {
    const db = new SaDatabase();
    expect(codeOf(() => db.allocateSpi(scripted([0, 7])))).toBe('ST_SADB_SPI_EXHAUSTED');
    expect(codeOf(() => db.allocateSpi(() => -1))).toBe('ST_SADB_BAD_RANDOM');
    expect(codeOf(() => db.allocateSpi(() => 2 ** 32))).toBe('ST_SADB_BAD_RANDOM');
  });

  it('with a real random source returns distinct usable SPIs', () => {
    const db = new SaDatabase();
    const rnd = (): number => crypto.getRandomValues(new Uint32Array(1))[0]!;
    const got = new Set<number>();
    for (let i = 0; i < 1000; i++) got.add(db.allocateSpi(rnd));
    expect(got.size).toBe(1000);
    for (const spi of got) expect(spiUsable(spi)).toBe(true);
  });
});
