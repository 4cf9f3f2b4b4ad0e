// The Aead contract (src/crypto/aead.ts), one suite run over every backend:
// tampering anywhere in an ESP packet (SPI, sequence, ESN high half, IV, ciphertext, ICV)
// fails to open; out-of-bounds descriptors are rejected without touching data; a destroyed
// Aead refuses to work; wrong KEYMAT lengths are refused with the algorithm and lengths named.
import { describe, expect, it } from 'vitest';
import {
  AEAD_ALGORITHMS,
  AEAD_BACKENDS,
  AeadBatch,
  AeadError,
  aeadKeymatBytes,
  createAead,
  type AeadAlgorithm,
  type AeadBackendName,
} from '../../src/crypto/index.js';
import { itWith } from '../helpers/tools.js';

/** `it` for a backend: the native suite needs the addon (skips outside CI, fails in CI). */
function itFor(backend: AeadBackendName): (name: string, fn: () => void) => void {
  return backend === 'native' ? (name, fn) => itWith(['native'], name, fn) : (name, fn) => it(name, fn);
}

/** Deterministic filler bytes (this suite needs no randomness). */
function pattern(n: number, mul: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * mul + 7) & 0xff;
  return out;
}

function toHex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex');
}

function expectAeadError(fn: () => unknown, code: string, ...fragments: string[]): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught, 'expected an AeadError').toBeInstanceOf(AeadError);
  expect((caught as AeadError).code).toBe(code);
  for (const f of fragments) expect((caught as AeadError).message).toContain(f);
}

// ESP-shaped layout (RFC 4303 §2): SPI(4) ‖ seq_lo(4) ‖ IV(8) ‖ ciphertext ‖ ICV(16);
// AAD = SPI ‖ seq_lo, or SPI ‖ seq_hi ‖ seq_lo with ESN (RFC 4106 §5, RFC 7634 §3).
const SPI_OFF = 0;
const SEQ_OFF = 4;
const IV_OFF = 8;
const TEXT_OFF = 16;
const ICV = 16;

function espAad(packet: Uint8Array, seqHi: Uint8Array | null): Uint8Array {
  const spi = packet.subarray(SPI_OFF, SPI_OFF + 4);
  const seqLo = packet.subarray(SEQ_OFF, SEQ_OFF + 4);
  return seqHi ? new Uint8Array([...spi, ...seqHi, ...seqLo]) : new Uint8Array([...spi, ...seqLo]);
}

for (const backend of AEAD_BACKENDS) {
  const itB = itFor(backend);

  describe(`${backend} backend`, () => {
    for (const alg of AEAD_ALGORITHMS) {
      const keymat = pattern(aeadKeymatBytes(alg), 13);

      for (const esn of [false, true]) {
        itB(`${alg}${esn ? ' with ESN' : ''}: flipping any bit of SPI, seq${esn ? ', seq_hi' : ''}, IV, ciphertext or ICV fails to open`, () => {
          const textLen = 37;
          const packet = pattern(TEXT_OFF + textLen + ICV, 31);
          packet.set([0x00, 0x00, 0x10, 0x01], SPI_OFF);
          const seqHi = esn ? new Uint8Array([0, 0, 0, 1]) : null;
          const aead = createAead(alg, keymat, backend);
          aead.seal(packet, IV_OFF, TEXT_OFF, textLen, espAad(packet, seqHi));

          const intact = packet.slice();
          expect(aead.open(intact, IV_OFF, TEXT_OFF, textLen, espAad(intact, seqHi))).toBe(true);
          expect(toHex(intact.subarray(TEXT_OFF, TEXT_OFF + textLen))).toBe(toHex(pattern(TEXT_OFF + textLen + ICV, 31).subarray(TEXT_OFF, TEXT_OFF + textLen)));

          for (let bit = 0; bit < packet.length * 8; bit++) {
            const bad = packet.slice();
            bad[bit >> 3]! ^= 1 << (bit & 7);
            expect(aead.open(bad, IV_OFF, TEXT_OFF, textLen, espAad(bad, seqHi)), `packet bit ${bit}`).toBe(false);
          }
          if (seqHi) {
            for (let bit = 0; bit < 32; bit++) {
              const hi = seqHi.slice();
              hi[bit >> 3]! ^= 1 << (bit & 7);
              expect(aead.open(packet.slice(), IV_OFF, TEXT_OFF, textLen, espAad(packet, hi)), `seq_hi bit ${bit}`).toBe(false);
            }
          }
          aead.destroy();
        });
      }

      itB(`${alg}: a packet sealed under another key or salt does not open`, () => {
        const textLen = 100;
        const packet = pattern(TEXT_OFF + textLen + ICV, 3);
        createAead(alg, keymat, backend).seal(packet, IV_OFF, TEXT_OFF, textLen, packet.subarray(0, 8));
        for (const at of [0, keymat.length - 1]) {
          const other = keymat.slice();
          other[at]! ^= 0x40;
          expect(createAead(alg, other, backend).open(packet.slice(), IV_OFF, TEXT_OFF, textLen, packet.subarray(0, 8)), `KEYMAT octet ${at}`).toBe(false);
        }
      });

      itB(`${alg}: seal with an out-of-bounds span throws ST_AEAD_BAD_DESCRIPTOR and writes nothing`, () => {
        const aead = createAead(alg, keymat, backend);
        const data = pattern(64, 5);
        const before = toHex(data);
        const aad = new Uint8Array(8);
        const spans: [number, number, number][] = [
          [0, 8, 41], // ICV would end at 65
          [57, 8, 0], // IV would end at 65
          [-1, 8, 8],
          [0, -8, 8],
          [0, 8, -1],
          [0, 8.5, 8],
          [0, 8, Number.NaN],
          [0, 0x7ffffff0, 0x7ffffff0], // overflows 32 bits
        ];
        for (const [ivOff, textOff, textLen] of spans) {
          expectAeadError(() => aead.seal(data, ivOff, textOff, textLen, aad), 'ST_AEAD_BAD_DESCRIPTOR', `data of 64 octets`);
          expect(aead.open(data, ivOff, textOff, textLen, aad), `open ${ivOff},${textOff},${textLen}`).toBe(false);
        }
        expect(toHex(data)).toBe(before);
        aead.seal(data, 0, 8, 40, aad); // exactly fits: the ICV ends at 64
        expect(aead.open(data, 0, 8, 40, aad)).toBe(true);
        expect(toHex(data.subarray(0, 48))).toBe(before.slice(0, 96));
      });

      itB(`${alg}: sealBatch rejects a bad descriptor before sealing any entry; openBatch fails only that entry`, () => {
        const aead = createAead(alg, keymat, backend);
        const data = pattern(400, 9);
        const batch = new AeadBatch(4);
        batch.reset(data);
        batch.push(0, 8, 50, 8); // good
        batch.push(100, 108, 300, 8); // ICV ends at 424 > 400
        batch.push(200, 208, 20, 17); // AAD longer than its 16-octet slot
        batch.push(300, 308, 70, 12); // good
        const before = toHex(data);
        expectAeadError(() => aead.sealBatch(batch), 'ST_AEAD_BAD_DESCRIPTOR', 'entry 1');
        expect(toHex(data), 'no entry sealed').toBe(before);

        // Seal the good entries on their own, then open the whole batch.
        const good = new AeadBatch(4);
        good.reset(data);
        good.push(0, 8, 50, 8);
        good.push(300, 308, 70, 12);
        aead.sealBatch(good);
        batch.ok.fill(7);
        expect(aead.openBatch(batch)).toBe(2);
        expect([...batch.ok]).toEqual([1, 0, 0, 1]);
        // Everything but the two ICVs (58–74 and 378–394) is back as it was.
        const icvsAsBefore = pattern(400, 9);
        icvsAsBefore.set(data.subarray(58, 74), 58);
        icvsAsBefore.set(data.subarray(378, 394), 378);
        expect(toHex(data)).toBe(toHex(icvsAsBefore));

        batch.count = 5; // more than the capacity
        expectAeadError(() => aead.sealBatch(batch), 'ST_AEAD_BAD_DESCRIPTOR', 'count 5');
        expectAeadError(() => aead.openBatch(batch), 'ST_AEAD_BAD_DESCRIPTOR', 'count 5');
      });

      itB(`${alg}: an empty batch does nothing`, () => {
        const aead = createAead(alg, keymat, backend);
        const batch = new AeadBatch(8);
        batch.reset(new Uint8Array(0));
        aead.sealBatch(batch);
        expect(aead.openBatch(batch)).toBe(0);
      });

      itB(`${alg}: after destroy() every method throws ST_AEAD_DESTROYED; destroy() twice is harmless`, () => {
        const aead = createAead(alg, keymat, backend);
        const data = new Uint8Array(64);
        const batch = new AeadBatch(1);
        batch.reset(data);
        batch.push(0, 8, 8, 8);
        aead.destroy();
        aead.destroy();
        expectAeadError(() => aead.seal(data, 0, 8, 8, new Uint8Array(8)), 'ST_AEAD_DESTROYED', alg);
        expectAeadError(() => aead.open(data, 0, 8, 8, new Uint8Array(8)), 'ST_AEAD_DESTROYED', alg);
        expectAeadError(() => aead.sealBatch(batch), 'ST_AEAD_DESTROYED');
        expectAeadError(() => aead.openBatch(batch), 'ST_AEAD_DESTROYED');
      });

      itB(`${alg}: KEYMAT of the wrong length is refused, naming the algorithm and both lengths`, () => {
        const want = aeadKeymatBytes(alg);
        for (const len of [0, want - 4, want - 1, want + 1]) {
          expectAeadError(() => createAead(alg, new Uint8Array(len), backend), 'ST_AEAD_BAD_KEYMAT', alg, `${want} octets`, `got ${len} octets`);
        }
      });

      itB(`${alg}: reports its algorithm and backend`, () => {
        const aead = createAead(alg, keymat, backend);
        expect([aead.algorithm, aead.backend]).toEqual([alg, backend]);
      });
    }

    itB('does not depend on the caller keeping its KEYMAT: zeroing it after createAead changes nothing', () => {
      const alg: AeadAlgorithm = 'aes-gcm-256';
      const keymat = pattern(36, 11);
      const ref = pattern(16 + 40 + ICV, 2);
      createAead(alg, keymat.slice(), backend).seal(ref, 8, 16, 40, ref.subarray(0, 8));
      const aead = createAead(alg, keymat, backend);
      keymat.fill(0);
      const data = pattern(16 + 40 + ICV, 2);
      aead.seal(data, 8, 16, 40, data.subarray(0, 8));
      expect(toHex(data)).toBe(toHex(ref));
    });
  });
}
