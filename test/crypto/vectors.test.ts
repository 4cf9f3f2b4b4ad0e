// Published AEAD and ESP test vectors (/work/shared/conformance/vectors, see its README.md)
// through every crypto backend: draft-mcgrew-gcm-test-01 §4 (AES-GCM-ESP, RFC 4106),
// RFC 7634 Appendix A (ChaCha20-Poly1305 ESP), and algorithm-level vectors (GCM spec test
// cases 1–4, RFC 8439 §2.8.2) mapped onto KEYMAT = key ‖ nonce[0:4], IV = nonce[4:12].
// Each vector is placed at buffer offsets 0–7 inside a larger buffer.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AEAD_BACKENDS, createAead, type AeadAlgorithm, type AeadBackendName } from '../../src/crypto/index.js';
import { itWith } from '../helpers/tools.js';

const VECTORS = resolve(__dirname, '../../../shared/conformance/vectors');

function load<T>(name: string): T {
  return JSON.parse(readFileSync(resolve(VECTORS, name), 'utf8')) as T;
}

function hex(s: string): Uint8Array {
  return new Uint8Array(Buffer.from(s, 'hex'));
}

function toHex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex');
}

/** `it` for a backend: the native suite needs the addon (skips outside CI, fails in CI). */
function itFor(backend: AeadBackendName): (name: string, fn: () => void) => void {
  return backend === 'native' ? (name, fn) => itWith(['native'], name, fn) : (name, fn) => it(name, fn);
}

interface McgrewVector {
  id: string;
  algorithm: 'AES-GCM-ESP' | 'AES-GMAC-ESP';
  key_hex: string;
  key_bits: 128 | 192 | 256;
  spi_hex: string;
  seq_hex: string;
  esn: boolean;
  nonce_hex: string;
  plaintext_hex: string;
  aad_hex: string;
  ctext_tag_hex: string | null;
  packet_hex: string;
  derived: { keymat_hex: string; iv_hex: string; ciphertext_hex?: string; tag_hex?: string };
}

interface Rfc7634Vector {
  id: string;
  keymat_hex: string;
  spi_hex: string;
  seq_hex: string;
  iv_hex: string;
  aad_hex: string;
  plaintext_hex: string;
  ciphertext_hex: string;
  tag_hex: string;
  packet_hex: string;
}

interface PrimitiveVector {
  id: string;
  algorithm: string;
  key_hex: string;
  nonce_hex?: string;
  iv_hex?: string;
  aad_hex: string;
  plaintext_hex: string;
  ciphertext_hex?: string;
  ciphertext_prefix_hex?: string;
  ciphertext_hex_computed?: string;
  tag_hex: string;
}

const mcgrew = load<{ vectors: McgrewVector[] }>('draft-mcgrew-gcm-test-01.json').vectors;
const rfc7634 = load<{ vectors: Rfc7634Vector[] }>('rfc7634-appendix-a.json').vectors;
const primitives = load<{ vectors: PrimitiveVector[] }>('aead-primitives.json').vectors;

const OFFSETS = [0, 1, 2, 3, 4, 5, 6, 7];

/** Copies bytes into a 0xa5-filled buffer at offset off, with 5 spare octets behind. */
function placed(bytes: Uint8Array, off: number): Uint8Array {
  const buf = new Uint8Array(off + bytes.length + 5).fill(0xa5);
  buf.set(bytes, off);
  return buf;
}

/** ESP packet layout SPI(4) ‖ seq_lo(4) ‖ IV(8) ‖ text ‖ ICV(16) (RFC 4303 §2, RFC 4106 §3). */
const ESP_IV_OFF = 8;
const ESP_TEXT_OFF = 16;
const ICV = 16;

/** Opens an ESP packet placed at off; returns the plaintext or null. */
function openEsp(backend: AeadBackendName, alg: AeadAlgorithm, keymat: Uint8Array, packet: Uint8Array, aad: Uint8Array, off: number): Uint8Array | null {
  const aead = createAead(alg, keymat, backend);
  const buf = placed(packet, off);
  const textLen = packet.length - ESP_TEXT_OFF - ICV;
  const ok = aead.open(buf, off + ESP_IV_OFF, off + ESP_TEXT_OFF, textLen, aad);
  aead.destroy();
  return ok ? buf.slice(off + ESP_TEXT_OFF, off + ESP_TEXT_OFF + textLen) : null;
}

/** Seals plaintext behind header (SPI ‖ seq_lo ‖ IV) at off; returns the whole packet. */
function sealEsp(backend: AeadBackendName, alg: AeadAlgorithm, keymat: Uint8Array, header: Uint8Array, plaintext: Uint8Array, aad: Uint8Array, off: number): Uint8Array {
  const aead = createAead(alg, keymat, backend);
  const packet = new Uint8Array(header.length + plaintext.length + ICV);
  packet.set(header);
  packet.set(plaintext, header.length);
  const buf = placed(packet, off);
  aead.seal(buf, off + ESP_IV_OFF, off + ESP_TEXT_OFF, plaintext.length, aad);
  aead.destroy();
  expect(toHex(buf.subarray(0, off)), 'bytes before the packet').toBe('a5'.repeat(off));
  expect(toHex(buf.subarray(off + packet.length)), 'bytes after the ICV').toBe('a5'.repeat(5));
  return buf.slice(off, off + packet.length);
}

for (const backend of AEAD_BACKENDS) {
  const itB = itFor(backend);

  describe(`${backend}: draft-mcgrew-gcm-test-01 AES-GCM-ESP`, () => {
    it('has the 16 AES-GCM-ESP cases and 1 GMAC case the README describes', () => {
      expect(mcgrew.filter((v) => v.algorithm === 'AES-GCM-ESP')).toHaveLength(16);
      expect(mcgrew.filter((v) => v.algorithm === 'AES-GMAC-ESP')).toHaveLength(1);
    });
    for (const v of mcgrew) {
      if (v.algorithm === 'AES-GMAC-ESP') {
        it.skip(`${v.id}: AES-GMAC-ESP (RFC 4543) is not an algorithm sectunnel offers`, () => {});
        continue;
      }
      const alg = `aes-gcm-${v.key_bits}` as AeadAlgorithm;
      const salt = hex(v.nonce_hex).subarray(0, 4);
      const keymat = hex(v.key_hex + toHex(salt));
      // AAD = SPI ‖ seq (RFC 4303 §2.2), or SPI ‖ seq_hi ‖ seq_lo with ESN (RFC 4106 §5): seq_hex is printed hi ‖ lo.
      const aad = hex(v.spi_hex + v.seq_hex);
      const packet = hex(v.packet_hex);
      const plaintext = hex(v.plaintext_hex);

      itB(`${v.id} (${alg}${v.esn ? ', ESN' : ''}): AAD, KEYMAT and packet layout match the vector`, () => {
        expect(toHex(keymat)).toBe(v.derived.keymat_hex);
        expect(toHex(aad)).toBe(v.aad_hex);
        expect(aad.length).toBe(v.esn ? 12 : 8);
        expect(toHex(packet.subarray(ESP_IV_OFF, ESP_TEXT_OFF))).toBe(v.derived.iv_hex);
        expect(toHex(packet.subarray(ESP_TEXT_OFF))).toBe(v.ctext_tag_hex);
      });
      itB(`${v.id} (${alg}): open packet_hex in place at offsets 0–7 gives the plaintext`, () => {
        for (const off of OFFSETS) {
          const pt = openEsp(backend, alg, keymat, packet, aad, off);
          expect(pt && toHex(pt), `offset ${off}`).toBe(v.plaintext_hex);
        }
      });
      itB(`${v.id} (${alg}): seal plaintext at offsets 0–7 gives packet_hex`, () => {
        for (const off of OFFSETS) {
          const out = sealEsp(backend, alg, keymat, packet.subarray(0, ESP_TEXT_OFF), plaintext, aad, off);
          expect(toHex(out), `offset ${off}`).toBe(v.packet_hex);
        }
      });
      itB(`${v.id} (${alg}): the packet does not open with the AAD of another sequence number`, () => {
        const wrong = aad.slice();
        wrong[wrong.length - 1]! ^= 1;
        expect(openEsp(backend, alg, keymat, packet, wrong, 0)).toBeNull();
      });
    }
  });

  describe(`${backend}: RFC 7634 Appendix A ChaCha20-Poly1305 ESP`, () => {
    for (const v of rfc7634) {
      const keymat = hex(v.keymat_hex);
      const aad = hex(v.spi_hex + v.seq_hex);
      const packet = hex(v.packet_hex);
      itB(`${v.id}: layout matches the vector`, () => {
        expect(toHex(aad)).toBe(v.aad_hex);
        expect(toHex(packet)).toBe(v.spi_hex + v.seq_hex + v.iv_hex + v.ciphertext_hex + v.tag_hex);
      });
      itB(`${v.id}: open packet_hex in place at offsets 0–7 gives the plaintext`, () => {
        for (const off of OFFSETS) {
          const pt = openEsp(backend, 'chacha20-poly1305', keymat, packet, aad, off);
          expect(pt && toHex(pt), `offset ${off}`).toBe(v.plaintext_hex);
        }
      });
      itB(`${v.id}: seal plaintext at offsets 0–7 gives packet_hex`, () => {
        for (const off of OFFSETS) {
          const out = sealEsp(backend, 'chacha20-poly1305', keymat, packet.subarray(0, ESP_TEXT_OFF), hex(v.plaintext_hex), aad, off);
          expect(toHex(out), `offset ${off}`).toBe(v.packet_hex);
        }
      });
      itB(`${v.id}: a wrong ICV does not open`, () => {
        const bad = packet.slice();
        bad[bad.length - 1]! ^= 0x80;
        expect(openEsp(backend, 'chacha20-poly1305', keymat, bad, aad, 0)).toBeNull();
      });
    }
  });

  describe(`${backend}: GCM spec test cases 1–4 and RFC 8439 §2.8.2 (nonce = salt ‖ IV)`, () => {
    for (const v of primitives) {
      const alg: AeadAlgorithm = v.algorithm === 'AEAD_CHACHA20_POLY1305' ? 'chacha20-poly1305' : (`aes-gcm-${v.key_hex.length * 4}` as AeadAlgorithm);
      const nonce = hex(v.nonce_hex ?? v.iv_hex!);
      const keymat = hex(v.key_hex + toHex(nonce.subarray(0, 4)));
      const iv = nonce.subarray(4, 12);
      const aad = hex(v.aad_hex);
      const plaintext = hex(v.plaintext_hex);
      const expectedCt = v.ciphertext_hex ?? v.ciphertext_hex_computed!;
      // Layout: IV(8) ‖ text ‖ tag, at offset off; the AAD (0 to 20 octets here) is separate.
      itB(`${v.id} (${alg}, ${aad.length}-octet AAD): seal at offsets 0–7 gives ciphertext ‖ tag`, () => {
        for (const off of OFFSETS) {
          const aead = createAead(alg, keymat, backend);
          const buf = placed(new Uint8Array([...iv, ...plaintext, ...new Uint8Array(ICV)]), off);
          aead.seal(buf, off, off + 8, plaintext.length, aad);
          aead.destroy();
          const ct = toHex(buf.subarray(off + 8, off + 8 + plaintext.length));
          expect(ct, `offset ${off}`).toBe(expectedCt);
          if (v.ciphertext_prefix_hex) expect(ct.startsWith(v.ciphertext_prefix_hex)).toBe(true);
          expect(toHex(buf.subarray(off + 8 + plaintext.length, off + 8 + plaintext.length + ICV)), `tag at offset ${off}`).toBe(v.tag_hex);
        }
      });
      itB(`${v.id} (${alg}): open at offsets 0–7 gives the plaintext`, () => {
        for (const off of OFFSETS) {
          const aead = createAead(alg, keymat, backend);
          const buf = placed(new Uint8Array([...iv, ...hex(expectedCt), ...hex(v.tag_hex)]), off);
          expect(aead.open(buf, off, off + 8, plaintext.length, aad), `offset ${off}`).toBe(true);
          aead.destroy();
          expect(toHex(buf.subarray(off + 8, off + 8 + plaintext.length))).toBe(v.plaintext_hex);
        }
      });
    }
  });
}
