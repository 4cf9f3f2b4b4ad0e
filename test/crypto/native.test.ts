// The addon's AEAD functions called directly, past the TypeScript wrapper's checks
// (native-fallback/src/aead.c): every descriptor is bounds-checked in C, bad arguments
// throw a JS error with a stable code, and nothing outside data is read or written.
import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';
import { describe, expect } from 'vitest';
import { nativeAeadFunctions, type NativeAeadFunctions } from '../../src/crypto/native.js';
import { itWith } from '../helpers/tools.js';

function fns(): NativeAeadFunctions {
  const f = nativeAeadFunctions();
  if (f === null) throw new Error('native AEAD functions missing');
  return f;
}

/** The addon file src/native.ts loads. */
function addonPath(): string {
  return process.env.SECTUNNEL_NATIVE_PATH ?? resolve(__dirname, '../../native-fallback/build/Release/sectunnel_native.node');
}

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    return String((e as { code?: unknown }).code);
  }
  return 'no error';
}

function toHex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex');
}

describe('native addon AEAD functions', () => {
  itWith(['native'], 'aeadCreate refuses unknown algorithms, wrong KEYMAT lengths and non-Uint8Array KEYMAT', () => {
    const f = fns();
    expect(codeOf(() => f.aeadCreate('aes-cbc-128' as never, new Uint8Array(20)))).toBe('ST_AEAD_BAD_ALGORITHM');
    expect(codeOf(() => f.aeadCreate('aes-gcm-128', new Uint8Array(16)))).toBe('ST_AEAD_BAD_KEYMAT');
    expect(codeOf(() => f.aeadCreate('chacha20-poly1305', new Uint8Array(37)))).toBe('ST_AEAD_BAD_KEYMAT');
    expect(codeOf(() => f.aeadCreate('aes-gcm-256', new Uint16Array(18) as never))).toBe('ST_AEAD_BAD_ARGUMENT');
    expect(codeOf(() => f.aeadCreate('aes-gcm-256', new Uint8Array(36)))).toBe('no error');
  });

  itWith(['native'], 'aeadSeal/aeadOpen check every span in C', () => {
    const f = fns();
    const h = f.aeadCreate('aes-gcm-256', new Uint8Array(36).fill(1));
    // data is a window into a larger buffer: reading or writing past its end would hit the guard octets.
    const backing = new Uint8Array(96).fill(0x5a);
    const data = backing.subarray(16, 80);
    const aad = new Uint8Array(8);
    const spans: [number, number, number][] = [
      [0, 8, 41],
      [57, 8, 0],
      [-1, 8, 8],
      [0, -1, 8],
      [0, 8, -1],
      [0, 0x7ffffff0, 0x7ffffff0],
      [0x7fffffff, 8, 8],
    ];
    for (const [ivOff, textOff, textLen] of spans) {
      expect(codeOf(() => f.aeadSeal(h, data, ivOff, textOff, textLen, aad)), `seal ${ivOff},${textOff},${textLen}`).toBe('ST_AEAD_BAD_DESCRIPTOR');
      expect(f.aeadOpen(h, data, ivOff, textOff, textLen, aad), `open ${ivOff},${textOff},${textLen}`).toBe(false);
    }
    expect(toHex(backing)).toBe('5a'.repeat(96));
    f.aeadSeal(h, data, 0, 8, 40, aad);
    expect(toHex(backing.subarray(0, 16)) + toHex(backing.subarray(80))).toBe('5a'.repeat(32));
    expect(f.aeadOpen(h, data, 0, 8, 40, aad)).toBe(true);
    f.aeadDestroy(h);
  });

  itWith(['native'], 'batch calls check count against desc, aad and ok, and each entry against data', () => {
    const f = fns();
    const h = f.aeadCreate('chacha20-poly1305', new Uint8Array(36).fill(2));
    const data = new Uint8Array(200);
    const desc = new Int32Array([0, 8, 50, 8, 100, 108, 80, 8]); // entry 1 ends at 204 > 200
    const aad = new Uint8Array(32);
    const ok = new Uint8Array(2);
    expect(codeOf(() => f.aeadSealBatch(h, data, desc, aad, 2))).toBe('ST_AEAD_BAD_DESCRIPTOR');
    expect(toHex(data), 'nothing sealed').toBe('00'.repeat(200));
    expect(codeOf(() => f.aeadSealBatch(h, data, desc, aad, 3))).toBe('ST_AEAD_BAD_DESCRIPTOR'); // desc holds 2
    expect(codeOf(() => f.aeadSealBatch(h, data, desc, new Uint8Array(16), 2))).toBe('ST_AEAD_BAD_DESCRIPTOR'); // aad holds 1
    expect(codeOf(() => f.aeadOpenBatch(h, data, desc, aad, 2, new Uint8Array(1)))).toBe('ST_AEAD_BAD_DESCRIPTOR'); // ok holds 1
    expect(codeOf(() => f.aeadSealBatch(h, data, desc, aad, -1))).toBe('ST_AEAD_BAD_DESCRIPTOR');
    expect(codeOf(() => f.aeadSealBatch(h, data, new Float64Array(8) as never, aad, 1))).toBe('ST_AEAD_BAD_ARGUMENT');
    expect(codeOf(() => f.aeadSealBatch(h, data, desc, aad, '1' as never))).toBe('ST_AEAD_BAD_ARGUMENT');

    f.aeadSealBatch(h, data, desc, aad, 1);
    desc[3] = 17; // AAD past its 16-octet slot
    expect(f.aeadOpenBatch(h, data, desc, aad, 2, ok)).toBe(0);
    expect([...ok]).toEqual([0, 0]);
    desc[3] = 8;
    expect(f.aeadOpenBatch(h, data, desc, aad, 2, ok)).toBe(1);
    expect([...ok]).toEqual([1, 0]);
    f.aeadDestroy(h);
  });

  itWith(['native'], 'refuses handles that are not its own, and destroyed handles', () => {
    const f = fns();
    const data = new Uint8Array(64);
    const aad = new Uint8Array(8);
    expect(codeOf(() => f.aeadSeal({} as never, data, 0, 8, 8, aad))).toBe('ST_AEAD_BAD_HANDLE');
    expect(codeOf(() => f.aeadOpen(null as never, data, 0, 8, 8, aad))).toBe('ST_AEAD_BAD_HANDLE');
    expect(codeOf(() => f.aeadDestroy(1 as never))).toBe('ST_AEAD_BAD_HANDLE');
    const h = f.aeadCreate('aes-gcm-128', new Uint8Array(20));
    f.aeadDestroy(h);
    f.aeadDestroy(h);
    expect(codeOf(() => f.aeadSeal(h, data, 0, 8, 8, aad))).toBe('ST_AEAD_DESTROYED');
    expect(codeOf(() => f.aeadOpenBatch(h, data, new Int32Array(4), new Uint8Array(16), 1, new Uint8Array(1)))).toBe('ST_AEAD_DESTROYED');
  });

  itWith(['native'], 'handles that are never destroyed are freed by their finalizer (200k leaked handles: RSS grows < 64 MB)', () => {
    // Each handle holds two keyed OpenSSL contexts (~2 KB); without the finalizer 200k of them
    // grow RSS by ~450 MB. Run in a child with --expose-gc so the collector can be forced.
    const script = `
      import { createRequire } from 'node:module';
      const f = createRequire(import.meta.url)(process.argv[1]);
      const data = new Uint8Array(64);
      const round = async (n) => {
        for (let i = 0; i < n; i++) {
          const h = f.aeadCreate('aes-gcm-256', new Uint8Array(36));
          f.aeadSeal(h, data, 0, 8, 8, data.subarray(0, 8));
        }
        globalThis.gc(); await new Promise(setImmediate); globalThis.gc();
      };
      await round(20000);
      const base = process.memoryUsage().rss;
      for (let r = 0; r < 10; r++) await round(20000);
      console.log(JSON.stringify({ grewMB: (process.memoryUsage().rss - base) / 2 ** 20 }));`;
    const out = execFileSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script, addonPath()], { encoding: 'utf8' });
    const { grewMB } = JSON.parse(out) as { grewMB: number };
    expect(grewMB).toBeLessThan(64);
  });
});
