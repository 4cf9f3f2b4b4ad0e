// Differential test of the crypto backends: random payloads of 0–9000 octets at random
// buffer offsets (0–7 always among them), random keys, IVs and AAD, from a seeded PRNG.
// Every backend must produce byte-identical sealed buffers, each must open what every
// other sealed, and batch calls must produce the same bytes as single calls.
// Set SECTUNNEL_TEST_SEED=<n> to replay a failure; the seed is in every failure message.
import { describe, expect, it } from 'vitest';
import {
  AEAD_ALGORITHMS,
  AeadBatch,
  aeadKeymatBytes,
  availableBackends,
  createAead,
} from '../../src/crypto/index.js';
import { itWith } from '../helpers/tools.js';

const SEED = Number(process.env.SECTUNNEL_TEST_SEED ?? Math.floor(Math.random() * 2 ** 32)) >>> 0;

/** sfc32: a small seeded PRNG (PractRand-clean), enough to pick test cases. */
function prng(seed: number): { u32(): number; below(n: number): number; bytes(n: number): Uint8Array } {
  let a = 0x9e3779b9,
    b = 0x243f6a88,
    c = 0xb7e15162,
    d = seed >>> 0;
  const u32 = (): number => {
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return t >>> 0;
  };
  for (let i = 0; i < 15; i++) u32();
  return {
    u32,
    below: (n) => u32() % n,
    bytes: (n) => {
      const out = new Uint8Array(n);
      for (let i = 0; i < n; i++) out[i] = u32() & 0xff;
      return out;
    },
  };
}

function toHex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex');
}

/** Payload lengths: the edges around AES and ChaCha blocks, jumbo frames, and random ones. */
function payloadLengths(r: ReturnType<typeof prng>, randomCount: number): number[] {
  const edges = [0, 1, 15, 16, 17, 63, 64, 65, 1400, 8999, 9000];
  return [...edges, ...Array.from({ length: randomCount }, () => r.below(9001))];
}

const backends = availableBackends();
const IV = 8;
const ICV = 16;

describe(`differential over ${backends.join(', ')} (seed ${SEED})`, () => {
  itWith(['native'], 'the native backend takes part', () => {
    expect(backends).toContain('native');
  });
  it('has at least two independent implementations to compare (node:crypto and noble)', () => {
    expect(backends).toEqual(expect.arrayContaining(['node', 'noble']));
  });

  for (const alg of AEAD_ALGORITHMS) {
    it(`${alg}: single seal is byte-identical across backends and every backend opens every other's output`, () => {
      const r = prng(SEED ^ alg.length);
      const lengths = payloadLengths(r, 30);
      lengths.forEach((textLen, n) => {
        const where = `seed ${SEED}, ${alg}, case ${n}, textLen ${textLen}`;
        const keymat = r.bytes(aeadKeymatBytes(alg));
        const off = n < 8 ? n : r.below(64);
        const aad = r.bytes(r.below(3) === 0 ? r.below(48) : 8 + 4 * r.below(2));
        // Layout at off: IV ‖ gap (0–3 octets) ‖ text ‖ ICV ‖ 0–5 spare octets.
        const textOff = off + IV + r.below(4);
        const buf = r.bytes(textOff + textLen + ICV + r.below(6));
        const plaintext = buf.slice(textOff, textOff + textLen);

        const sealed = backends.map((b) => {
          const copy = buf.slice();
          const aead = createAead(alg, keymat, b);
          aead.seal(copy, off, textOff, textLen, aad);
          aead.destroy();
          return copy;
        });
        for (let i = 1; i < backends.length; i++) {
          expect(toHex(sealed[i]!), `${where}: ${backends[i]} vs ${backends[0]}`).toBe(toHex(sealed[0]!));
        }
        for (const [i, by] of backends.entries()) {
          for (const b of backends) {
            const copy = sealed[i]!.slice();
            const aead = createAead(alg, keymat, b);
            expect(aead.open(copy, off, textOff, textLen, aad), `${where}: ${b} opens ${by}'s output`).toBe(true);
            aead.destroy();
            expect(toHex(copy.subarray(textOff, textOff + textLen)), `${where}: ${b} plaintext`).toBe(toHex(plaintext));
          }
        }
      });
    });

    it(`${alg}: sealBatch/openBatch give the same bytes as single calls on every backend`, () => {
      const r = prng(SEED ^ (alg.length << 8));
      const keymat = r.bytes(aeadKeymatBytes(alg));
      // One slab, 64 ESP-shaped entries (SPI ‖ seq ‖ IV ‖ text ‖ ICV) at random spacing.
      const batchSize = 64;
      const entries: { ivOff: number; textOff: number; textLen: number; aad: Uint8Array }[] = [];
      let cursor = r.below(8);
      for (let i = 0; i < batchSize; i++) {
        const textLen = i < 4 ? [0, 1, 16, 9000][i]! : r.below(2) === 0 ? r.below(1500) : r.below(9001);
        const ivOff = cursor + 8;
        entries.push({ ivOff, textOff: ivOff + IV, textLen, aad: r.bytes(r.below(2) === 0 ? 8 : 12) });
        cursor = ivOff + IV + textLen + ICV + r.below(8);
      }
      const slab = r.bytes(cursor + r.below(8));

      const bySingle = slab.slice();
      const ref = createAead(alg, keymat, backends[0]!);
      for (const e of entries) ref.seal(bySingle, e.ivOff, e.textOff, e.textLen, e.aad);
      ref.destroy();

      for (const b of backends) {
        const where = `seed ${SEED}, ${alg}, ${b}`;
        const aead = createAead(alg, keymat, b);
        const batch = new AeadBatch(batchSize);
        const data = slab.slice();
        batch.reset(data);
        for (const e of entries) batch.aad.set(e.aad, 16 * batch.push(e.ivOff, e.textOff, e.textLen, e.aad.length));
        aead.sealBatch(batch);
        expect(toHex(data), `${where}: sealBatch vs single seal`).toBe(toHex(bySingle));

        // Corrupt every 5th entry's ICV; openBatch must flag exactly those and restore the rest.
        const bad = new Set(entries.map((_, i) => i).filter((i) => i % 5 === 2));
        for (const i of bad) data[entries[i]!.textOff + entries[i]!.textLen + r.below(ICV)]! ^= 1 << r.below(8);
        expect(aead.openBatch(batch), `${where}: openBatch count`).toBe(batchSize - bad.size);
        entries.forEach((e, i) => {
          expect(batch.ok[i], `${where}: ok[${i}]`).toBe(bad.has(i) ? 0 : 1);
          if (!bad.has(i)) {
            expect(toHex(data.subarray(e.textOff, e.textOff + e.textLen)), `${where}: entry ${i} plaintext`).toBe(
              toHex(slab.subarray(e.textOff, e.textOff + e.textLen)),
            );
          }
        });
        aead.destroy();
      }
    });
  }
});
