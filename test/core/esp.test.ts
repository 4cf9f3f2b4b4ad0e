// The ESP stage (RFC 4303 §2–3, RFC 4106, RFC 7634) over PacketBufs: round trips at slot
// offsets 0–7, every drop reason from a crafted packet, the published vectors, and batch ==
// single. The whole suite runs over every crypto backend (native needs the addon).
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { PacketPool } from '../../src/buf/pool.js';
import type { PacketBuf } from '../../src/buf/packet-buf.js';
import { ESP_NO_ROOM_REASON, ESP_OK, espOpen, espOpenBatch, espPacketBytes, espSeal, espSealBatch } from '../../src/core/esp.js';
import { REASON_NAMES, Reason } from '../../src/core/reasons.js';
import { InboundSa, OutboundSa } from '../../src/core/sa.js';
import {
  AEAD_ALGORITHMS,
  AeadBatch,
  aeadKeymatBytes,
  createAead,
  type AeadAlgorithm,
  type AeadBackendName,
} from '../../src/crypto/index.js';
import { itWith } from '../helpers/tools.js';

const VECTORS = resolve(dirname(fileURLToPath(import.meta.url)), '../../../shared/conformance/vectors');
const T0 = 5_000;
const GRE = 47;
const TWO_32 = 2 ** 32;

const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const name = (code: number): string => (code === ESP_OK ? 'ok' : (REASON_NAMES[code] ?? String(code)));

/** Deterministic bytes. */
function bytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed * 2654435761 + 1;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

function keymatFor(alg: AeadAlgorithm, seed = 7): Uint8Array {
  return bytes(aeadKeymatBytes(alg), seed);
}

interface SaSpec {
  alg: AeadAlgorithm;
  keymat: Uint8Array;
  esn: boolean;
  spi?: number;
  windowPackets?: number;
  anyNextHeader?: boolean;
}

function inbound(backend: AeadBackendName, s: SaSpec): InboundSa {
  return new InboundSa({
    spi: s.spi ?? 0x00001001,
    algorithm: s.alg,
    keymat: s.keymat.slice(), // the SA owns (and zeroes) what it is given
    backend,
    esn: s.esn,
    labels: ['red'],
    replayWindowPackets: s.windowPackets ?? 64,
    acceptAnyNextHeader: s.anyNextHeader ?? false,
    nowMs: T0,
  });
}

function outbound(backend: AeadBackendName, s: SaSpec, firstSeq = 1): OutboundSa {
  return new OutboundSa({
    spi: s.spi ?? 0x00001001,
    algorithm: s.alg,
    keymat: s.keymat.slice(),
    backend,
    esn: s.esn,
    labels: ['red'],
    firstSeq,
    nowMs: T0,
  });
}

/** ESP plaintext: payload ‖ padding ‖ pad length ‖ next header (RFC 4303 §2). */
function espText(payload: Uint8Array, padding: number[], nextHeader: number, padLenField = padding.length): Uint8Array {
  return Uint8Array.from([...payload, ...padding, padLenField, nextHeader]);
}

/**
 * An ESP packet sealed outside the code under test: SPI ‖ seq_lo ‖ IV(hi‖lo) ‖ ciphertext ‖ ICV,
 * AAD per RFC 4106 §5, any plaintext (so trailers can be wrong on purpose).
 */
function craft(backend: AeadBackendName, s: SaSpec, hi: number, lo: number, text: Uint8Array): Uint8Array {
  const aead = createAead(s.alg, s.keymat, backend);
  const spi = s.spi ?? 0x00001001;
  const pkt = new Uint8Array(16 + text.length + 16);
  const dv = new DataView(pkt.buffer);
  dv.setUint32(0, spi);
  dv.setUint32(4, lo);
  dv.setUint32(8, hi);
  dv.setUint32(12, lo);
  pkt.set(text, 16);
  const aad = new Uint8Array(s.esn ? 12 : 8);
  const av = new DataView(aad.buffer);
  av.setUint32(0, spi);
  if (s.esn) av.setUint32(4, hi);
  av.setUint32(s.esn ? 8 : 4, lo);
  aead.seal(pkt, 8, 16, text.length, aad);
  aead.destroy();
  return pkt;
}

/** A pool whose slots are small enough to make many. */
function pool(packets = 64): PacketPool {
  return new PacketPool({ packets, slotBytes: 2048 });
}

/** Loads a packet into a fresh buffer of `p` at slot offset `off`. */
function loaded(p: PacketPool, pkt: Uint8Array, off = 0): PacketBuf {
  const b = p.get()!;
  expect(b.load(pkt, off)).toBe(true);
  return b;
}

const BACKENDS: AeadBackendName[] = ['node', 'noble', 'native'];

/** `it` for a backend: native needs the addon (skips outside CI, fails in CI). */
function itFor(backend: AeadBackendName): (n: string, fn: () => void) => void {
  return backend === 'native' ? (n, fn) => itWith(['native'], n, fn) : (n, fn) => it(n, fn);
}

for (const backend of BACKENDS) {
  const itB = itFor(backend);

  describe(`${backend}: seal → open round trip`, () => {
    for (const alg of AEAD_ALGORITHMS) {
      for (const esn of [true, false]) {
        itB(`${alg}${esn ? ' ESN' : ''}: payload lengths 0–5, 61, 1400 at slot offsets 0–7`, () => {
          const spec: SaSpec = { alg, keymat: keymatFor(alg), esn };
          const tx = outbound(backend, spec, esn ? TWO_32 - 4 : 1); // with ESN, cross 2^32 on the way
          const rx = inbound(backend, spec);
          const ref = inbound('node', spec); // the reference backend opens the same packets
          const p = pool();
          let n = 0;
          for (const len of [0, 1, 2, 3, 4, 5, 61, 1400]) {
            for (let off = 0; off < 8; off++) {
              const payload = bytes(len, ++n);
              const buf = loaded(p, payload, 16 + off);
              const seq = tx.nextSeq;
              expect(espSeal(tx, buf, GRE, T0)).toBe(ESP_OK);
              expect(buf.start).toBe(off);
              expect(buf.length).toBe(espPacketBytes(len));
              expect((buf.length - 32) % 4).toBe(0);
              const dv = new DataView(buf.bytes.buffer, buf.bytes.byteOffset + buf.start);
              expect(dv.getUint32(0)).toBe(0x1001);
              expect(dv.getUint32(4)).toBe(seq >>> 0);
              expect(dv.getUint32(8) * TWO_32 + dv.getUint32(12)).toBe(seq); // IV = 64-bit seq
              const wire = buf.view().slice();
              p.put(buf);

              for (const [sa, o] of [
                [rx, off],
                [ref, 7 - off],
              ] as const) {
                const r = loaded(p, wire, o);
                expect(name(espOpen(sa, r, T0 + 1)), `len ${len} off ${o}`).toBe('ok');
                expect(toHex(r.view())).toBe(toHex(payload));
                expect(r.start).toBe(o + 16);
                expect(sa.lastNextHeader).toBe(GRE);
                expect(sa.lastSeq).toBe(seq);
                p.put(r);
              }
            }
          }
          expect(rx.packets).toBe(n);
          expect(rx.bytes).toBe(8 * (0 + 1 + 2 + 3 + 4 + 5 + 61 + 1400));
          expect(rx.lastPacketMs).toBe(T0 + 1);
          expect(rx.drops.counts.every((c) => c === 0)).toBe(true);
          expect(tx.packets).toBe(n);
        });
      }
    }

    itB('pads to a 4-octet boundary with 1, 2, 3 (RFC 4303 §2.4)', () => {
      const spec: SaSpec = { alg: 'aes-gcm-128', keymat: keymatFor('aes-gcm-128'), esn: false };
      const p = pool();
      // Decrypt what espSeal wrote with a raw AEAD and look at the trailer.
      for (const [len, pad] of [
        [2, []],
        [1, [1]],
        [0, [1, 2]],
        [3, [1, 2, 3]],
      ] as const) {
        const tx = outbound(backend, spec);
        const buf = loaded(p, bytes(len, len), 16);
        expect(espSeal(tx, buf, GRE, T0)).toBe(ESP_OK);
        const aead = createAead(spec.alg, spec.keymat, backend);
        const textLen = buf.length - 32;
        const ok = aead.open(buf.bytes, buf.start + 8, buf.start + 16, textLen, buf.bytes.slice(buf.start, buf.start + 8));
        expect(ok).toBe(true);
        const text = buf.bytes.subarray(buf.start + 16, buf.start + 16 + textLen);
        expect([...text.subarray(len)]).toEqual([...pad, pad.length, GRE]);
        aead.destroy();
        p.put(buf);
      }
    });

    itB('refuses to seal without room, before taking a sequence number', () => {
      const spec: SaSpec = { alg: 'aes-gcm-256', keymat: keymatFor('aes-gcm-256'), esn: true };
      const tx = outbound(backend, spec);
      const p = pool();
      const buf = loaded(p, bytes(10, 1), 15); // one octet short of headroom
      expect(espSeal(tx, buf, GRE, T0)).toBe(ESP_NO_ROOM_REASON);
      const tail = loaded(p, bytes(10, 1), 2048 - 10 - 17); // short of tailroom: needs 0 pad + 2 + 16
      expect(espSeal(tx, tail, GRE, T0)).toBe(ESP_NO_ROOM_REASON);
      expect(tx.nextSeq).toBe(1);
    });
  });

  describe(`${backend}: every drop reason from a crafted packet`, () => {
    const alg: AeadAlgorithm = 'aes-gcm-256';
    const spec: SaSpec = { alg, keymat: keymatFor(alg, 3), esn: true };
    const good = (seq: number, payload = bytes(20, seq)): Uint8Array =>
      craft(backend, spec, Math.floor(seq / TWO_32), seq >>> 0, espText(payload, [1, 2], GRE));

    /** Opens pkt in a fresh buffer; returns the reason name. */
    function open(sa: InboundSa, pkt: Uint8Array): string {
      const p = pool(1);
      return name(espOpen(sa, loaded(p, pkt, 3), T0));
    }

    itB('truncated: shorter than header + IV + trailer + ICV, or ciphertext not 4-aligned', () => {
      const sa = inbound(backend, spec);
      const pkt = good(1);
      expect(open(sa, pkt.subarray(0, 35))).toBe('truncated'); // 16 + 3 + 16
      expect(open(sa, pkt.subarray(0, 16 + 16 + 1))).toBe('truncated');
      expect(open(sa, new Uint8Array(0))).toBe('truncated');
      // Authentic, but payload + padding + trailer is 6 octets: misaligned (RFC 4303 §2.4).
      const odd = craft(backend, spec, 0, 2, espText(bytes(4, 1), [], GRE));
      expect(open(sa, odd)).toBe('truncated');
      expect(sa.drops.counts[Reason.truncated]).toBe(4);
      expect(open(sa, pkt)).toBe('ok'); // seq 1 was never committed by any of those
    });

    itB('seq_zero: the 64-bit value 0, but a low half of 0 after 2^32 is fine', () => {
      const sa = inbound(backend, spec);
      expect(open(sa, craft(backend, spec, 0, 0, espText(bytes(2, 1), [], GRE)))).toBe('seq_zero');
      expect(sa.drops.counts[Reason.seq_zero]).toBe(1);
      sa.replay.commit(TWO_32 - 3);
      expect(open(sa, good(TWO_32))).toBe('ok');
      expect(sa.lastSeqHi).toBe(1);
      expect(sa.lastSeqLo).toBe(0);
      const plain = inbound(backend, { ...spec, esn: false });
      expect(open(plain, craft(backend, { ...spec, esn: false }, 0, 0, espText(bytes(2, 1), [], GRE)))).toBe('seq_zero');
    });

    itB('replay_duplicate and replay_too_old (without ESN)', () => {
      const plainSpec: SaSpec = { ...spec, esn: false };
      const good = (seq: number): Uint8Array => craft(backend, plainSpec, 0, seq, espText(bytes(20, seq), [1, 2], GRE));
      const sa = inbound(backend, plainSpec); // window 64
      expect(open(sa, good(1))).toBe('ok');
      expect(open(sa, good(1))).toBe('replay_duplicate');
      expect(open(sa, good(100))).toBe('ok');
      expect(open(sa, good(36))).toBe('replay_too_old'); // exactly 64 behind
      expect(open(sa, good(37))).toBe('ok'); // 63 behind
      expect(open(sa, good(37))).toBe('replay_duplicate');
      expect(sa.drops.counts[Reason.replay_duplicate]).toBe(2);
      expect(sa.drops.counts[Reason.replay_too_old]).toBe(1);
    });

    itB('with ESN a number below the window is read as the next epoch (App. A2.1) and fails the ICV', () => {
      const sa = inbound(backend, spec);
      expect(open(sa, good(100))).toBe('ok');
      expect(open(sa, good(100))).toBe('replay_duplicate');
      expect(open(sa, good(37))).toBe('ok'); // 63 behind
      expect(open(sa, good(36))).toBe('icv_mismatch'); // 64 behind: taken for 2^32 + 36
      expect(sa.replay.top).toBe(100);
    });

    itB('icv_mismatch: flipped ciphertext, flipped ICV, wrong key, wrong seq_hi; the window does not move', () => {
      const sa = inbound(backend, spec);
      const flip = (pkt: Uint8Array, at: number): Uint8Array => {
        const c = pkt.slice();
        c[at]! ^= 0x01;
        return c;
      };
      const forged = good(1000);
      expect(open(sa, flip(forged, 20))).toBe('icv_mismatch');
      expect(open(sa, flip(forged, forged.length - 1))).toBe('icv_mismatch');
      expect(open(sa, flip(forged, 9))).toBe('icv_mismatch'); // the IV is part of the nonce
      const other = craft(backend, { ...spec, keymat: keymatFor(alg, 99) }, 0, 1000, espText(bytes(2, 1), [], GRE));
      expect(open(sa, other)).toBe('icv_mismatch');
      // Sender at seq 2^32 + 1000 (hi 1), receiver infers hi 0: the AAD differs (RFC 4106 §5).
      expect(open(sa, good(TWO_32 + 1000))).toBe('icv_mismatch');
      expect(sa.drops.counts[Reason.icv_mismatch]).toBe(5);
      expect(sa.replay.top).toBe(0); // forged numbers moved nothing
      expect(open(sa, good(1))).toBe('ok'); // seq 1 is still in the window
      expect(open(sa, forged)).toBe('ok'); // and the authentic 1000 still gets in
    });

    itB('bad_pad_length: pad length larger than the text', () => {
      const sa = inbound(backend, spec);
      // 6 octets of text before the trailer, pad length field 7.
      expect(open(sa, craft(backend, spec, 0, 1, espText(bytes(6, 1), [], GRE, 7)))).toBe('bad_pad_length');
      expect(open(sa, craft(backend, spec, 0, 2, espText(new Uint8Array(0), [1, 2], GRE, 255)))).toBe('bad_pad_length');
      // Exactly the text length is allowed: an empty payload padded with 6 octets.
      expect(open(sa, craft(backend, spec, 0, 3, espText(new Uint8Array(0), [1, 2, 3, 4, 5, 6], GRE)))).toBe('ok');
      expect(sa.drops.counts[Reason.bad_pad_length]).toBe(2);
      // The ICV verified, so the window moved: the packet cannot be replayed for another verdict.
      expect(open(sa, craft(backend, spec, 0, 1, espText(bytes(6, 1), [], GRE, 7)))).toBe('replay_duplicate');
    });

    itB('bad_padding_content: padding not 1, 2, 3, …', () => {
      const sa = inbound(backend, spec);
      expect(open(sa, craft(backend, spec, 0, 1, espText(bytes(3, 1), [1, 3, 3], GRE)))).toBe('bad_padding_content');
      expect(open(sa, craft(backend, spec, 0, 2, espText(bytes(3, 1), [0, 0, 0], GRE)))).toBe('bad_padding_content');
      // Longer padding than we send is fine when it follows the rule (RFC 4303 §2.4 allows up to 255).
      const long = Array.from({ length: 9 }, (_, i) => i + 1);
      expect(open(sa, craft(backend, spec, 0, 4, espText(bytes(1, 1), long, GRE)))).toBe('ok');
      expect(sa.drops.counts[Reason.bad_padding_content]).toBe(2);
    });

    itB('unexpected_next_header, unless the SA accepts any; 59 is a dummy packet either way', () => {
      const sa = inbound(backend, spec);
      expect(open(sa, craft(backend, spec, 0, 1, espText(bytes(2, 1), [], 4)))).toBe('unexpected_next_header');
      expect(open(sa, craft(backend, spec, 0, 2, espText(bytes(2, 1), [], 59)))).toBe('dummy_packet');
      expect(sa.drops.counts[Reason.unexpected_next_header]).toBe(1);
      expect(sa.drops.counts[Reason.dummy_packet]).toBe(1);
      expect(sa.packets).toBe(0);
      const any = inbound(backend, { ...spec, anyNextHeader: true });
      expect(open(any, craft(backend, spec, 0, 1, espText(bytes(2, 1), [], 4)))).toBe('ok');
      expect(any.lastNextHeader).toBe(4);
      expect(open(any, craft(backend, spec, 0, 2, espText(bytes(2, 1), [], 59)))).toBe('dummy_packet');
    });

    itB('sa_expired: a destroyed SA opens nothing and does not throw', () => {
      const sa = inbound(backend, spec);
      sa.destroy();
      expect(open(sa, good(1))).toBe('sa_expired');
    });
  });

  describe(`${backend}: ESN across 2^32 end to end`, () => {
    itB('packets around the crossing, reordered both ways, open with the right high half', () => {
      const spec: SaSpec = { alg: 'chacha20-poly1305', keymat: keymatFor('chacha20-poly1305'), esn: true };
      const tx = outbound(backend, spec, TWO_32 - 8);
      const rx = inbound(backend, spec);
      rx.replay.commit(TWO_32 - 9); // the receiver has seen everything before
      const p = pool();
      const wire: Uint8Array[] = [];
      for (let i = 0; i < 16; i++) {
        const b = loaded(p, bytes(30, i), 16);
        expect(espSeal(tx, b, GRE, T0)).toBe(ESP_OK);
        wire.push(b.view().slice());
        p.put(b);
      }
      // seqs 2^32 − 8 … 2^32 + 7; arrival order crosses the boundary forwards and back.
      const order = [0, 9, 1, 8, 7, 15, 2, 10, 3, 4, 11, 5, 6, 12, 14, 13];
      for (const i of order) {
        const b = loaded(p, wire[i]!, 0);
        expect(name(espOpen(rx, b, T0)), `packet ${i}`).toBe('ok');
        expect(rx.lastSeq).toBe(TWO_32 - 8 + i);
        expect(toHex(b.view())).toBe(toHex(bytes(30, i)));
        p.put(b);
        const again = loaded(p, wire[i]!, 0);
        expect(name(espOpen(rx, again, T0))).toBe('replay_duplicate');
        p.put(again);
      }
    });
  });

  describe(`${backend}: published vectors through espOpen`, () => {
    interface McGrew {
      id: string;
      algorithm: string;
      key_bits: number;
      spi_hex: string;
      seq_hex: string;
      esn: boolean;
      packet_hex: string;
      derived: { keymat_hex: string; payload_hex: string; next_header: number; seq_hi_hex: string; seq_lo_hex: string };
    }
    const all = JSON.parse(readFileSync(resolve(VECTORS, 'draft-mcgrew-gcm-test-01.json'), 'utf8')).vectors as McGrew[];
    const gcm = all.filter((v) => v.algorithm === 'AES-GCM-ESP');

    it('has the 16 AES-GCM-ESP cases', () => {
      expect(gcm.length).toBe(16);
    });

    for (const v of gcm) {
      itB(`${v.id} (SPI ${v.spi_hex}, seq ${v.seq_hex}${v.esn ? ', ESN' : ''})`, () => {
        const alg = `aes-gcm-${v.key_bits}` as AeadAlgorithm;
        const spec: SaSpec = { alg, keymat: hex(v.derived.keymat_hex), esn: v.esn, spi: parseInt(v.spi_hex, 16), anyNextHeader: true };
        // Case 4 has SPI 0: the sadb refuses to install it (sadb.test.ts); the SA itself opens it.
        const sa = inbound(backend, spec);
        const hi = parseInt(v.derived.seq_hi_hex || '0', 16);
        const lo = parseInt(v.derived.seq_lo_hex, 16);
        // Put the receiver just behind the vector's number, so ESN inference (App. A2.1) must
        // find its high half; for seq_lo 0 that crosses an epoch.
        const prime = (x: InboundSa): void => {
          if (hi === 0 && lo <= 1) return;
          if (lo > 0) x.replay.commitHiLo(hi, lo - 1);
          else x.replay.commitHiLo(hi - 1, 0xffffffff);
        };
        prime(sa);
        const p = pool(3);
        const buf = loaded(p, hex(v.packet_hex), 5);
        expect(name(espOpen(sa, buf, T0))).toBe('ok');
        expect(toHex(buf.view())).toBe(v.derived.payload_hex);
        expect(sa.lastNextHeader).toBe(v.derived.next_header);
        expect(sa.lastSeqHi).toBe(hi);
        expect(sa.lastSeqLo).toBe(lo);
        const again = loaded(p, hex(v.packet_hex), 0);
        expect(name(espOpen(sa, again, T0))).toBe('replay_duplicate');
        // With the next-header check on, the authentic packet is rejected after decryption.
        const strict = inbound(backend, { ...spec, anyNextHeader: false });
        prime(strict);
        expect(name(espOpen(strict, loaded(p, hex(v.packet_hex), 2), T0))).toBe('unexpected_next_header');
      });
    }

    itB('RFC 7634 Appendix A (ChaCha20-Poly1305, next header 4) yields the published IPv4 packet', () => {
      const v = JSON.parse(readFileSync(resolve(VECTORS, 'rfc7634-appendix-a.json'), 'utf8')).vectors[0] as {
        keymat_hex: string;
        spi_hex: string;
        packet_hex: string;
        inner_packet_hex: string;
      };
      const sa = inbound(backend, {
        alg: 'chacha20-poly1305',
        keymat: hex(v.keymat_hex),
        esn: false,
        spi: parseInt(v.spi_hex, 16),
        anyNextHeader: true,
      });
      const p = pool(1);
      const buf = loaded(p, hex(v.packet_hex), 1);
      expect(name(espOpen(sa, buf, T0))).toBe('ok');
      expect(toHex(buf.view())).toBe(v.inner_packet_hex);
      expect(sa.lastNextHeader).toBe(4);
      expect(sa.lastSeq).toBe(5);
    });
  });

  describe(`${backend}: batch == single`, () => {
    itB('espSealBatch writes the same packets and verdicts as espSeal, across chunks, a foreign buffer and a hard limit', () => {
      for (const alg of AEAD_ALGORITHMS) {
        const spec: SaSpec = { alg, keymat: keymatFor(alg, 11), esn: true };
        const mk = (): OutboundSa =>
          new OutboundSa({
            spi: 0x1001,
            algorithm: alg,
            keymat: spec.keymat.slice(),
            backend,
            labels: ['red'],
            firstSeq: TWO_32 - 5,
            limits: { hardPackets: TWO_32 + 12 },
            nowMs: T0,
          });
        const single = mk();
        const batched = mk();
        const pa = pool();
        const pb = pool();
        const foreign = pool(1);
        const n = 21;
        const singleOut: string[] = [];
        const singleRes: number[] = [];
        const bufs: PacketBuf[] = [];
        for (let i = 0; i < n; i++) {
          const payload = bytes(10 + i * 37, i);
          const off = i === 7 ? 10 : 16 + (i % 8); // entry 7 has no headroom
          const a = loaded(pa, payload, off);
          singleRes.push(espSeal(single, a, GRE, T0));
          singleOut.push(toHex(a.view()));
          bufs.push(loaded(i === 4 ? foreign : pb, payload, off));
        }
        const results = new Uint8Array(n);
        const sealed = espSealBatch(batched, bufs, n, new AeadBatch(8), results, T0);
        expect([...results].map(name)).toEqual(singleRes.map(name));
        expect(singleRes.map(name)).toContain('sa_expired');
        expect(sealed).toBe(singleRes.filter((r) => r === ESP_OK).length);
        expect(bufs.map((b) => toHex(b.view()))).toEqual(singleOut);
        expect(batched.nextSeq).toBe(single.nextSeq);
      }
    });

    itB('espOpenBatch gives the same verdicts, payloads and counters as espOpen, packet by packet', () => {
      const seen = new Set<string>();
      for (const alg of AEAD_ALGORITHMS) {
        for (const esn of [true, false]) {
          const spec: SaSpec = { alg, keymat: keymatFor(alg, 13), esn };
          const hl = (seq: number): [number, number] => [Math.floor(seq / TWO_32), seq >>> 0];
          const pkt = (seq: number, text = espText(bytes(24, seq % 1000), [1, 2], GRE)): Uint8Array => craft(backend, spec, ...hl(seq), text);
          const flip = (p: Uint8Array): Uint8Array => {
            const c = p.slice();
            c[c.length - 3]! ^= 0x80;
            return c;
          };
          // With ESN the receiver starts just before an epoch crossing and packet 7 crosses it.
          const B = esn ? TWO_32 - 20 : 1000;
          const M = esn ? TWO_32 + 100 : 1120;
          const arrivals: Uint8Array[] = [
            /*  1 */ pkt(B + 1),
            /*  2 */ pkt(B + 3),
            /*  3 */ pkt(B + 1), // duplicate within the batch
            /*  4 */ pkt(B + 2),
            /*  5 */ flip(pkt(B + 4)), // forged
            /*  6 */ pkt(B + 4), // the real one after the forgery
            /*  7 */ pkt(M), // moves the window past B + 5 …
            /*  8 */ pkt(B + 5), // … fine before the batch: now too old (ESN: read as the next epoch, ICV fails)
            /*  9 */ pkt(B - 100), // too old before the batch; with ESN now read as the next epoch and opened alone
            /* 10 */ pkt(M - 1),
            /* 11 */ pkt(B + 40).subarray(0, 35), // truncated
            /* 12 */ craft(backend, spec, ...hl(M + 1), espText(bytes(2, 1), [], GRE, 3)), // bad pad length
            /* 13 */ craft(backend, spec, ...hl(M + 2), espText(bytes(3, 1), [3, 2, 1], GRE)), // bad padding content
            /* 14 */ craft(backend, spec, ...hl(M + 3), espText(bytes(2, 1), [], 6)), // unexpected next header
            /* 15 */ craft(backend, spec, ...hl(M + 4), espText(bytes(2, 1), [], 59)), // dummy
            /* 16 */ pkt(M + 1), // same number as the bad-pad-length packet, which was committed
            /* 17 */ pkt(M + 5),
            /* 18 */ pkt(M + 5), // duplicate
            /* 19 */ pkt(M + 200),
            /* 20 */ pkt(M + 137), // exactly 63 behind
            /* 21 */ pkt(M + 136), // exactly 64 behind
          ];
          // seq_zero against the window before the batch; with ESN, after packet 1 moved the
          // window, low half 0 means 2^32 (single processing then fails the ICV).
          const zero: Uint8Array[] = [pkt(200), craft(backend, spec, 0, 0, espText(bytes(2, 2), [], GRE)), pkt(199)];

          for (const [label, list, start, cap] of [
            ['capacity 4', arrivals, B, 4],
            ['capacity 64', arrivals, B, 64],
            ['seq_zero', zero, 10, 8],
          ] as const) {
            const what = `${alg}${esn ? ' ESN' : ''} ${label}`;
            const single = inbound(backend, spec);
            const batched = inbound(backend, spec);
            single.replay.commit(start);
            batched.replay.commit(start);
            const pa = pool();
            const pb = pool();
            const foreign = pool(1);
            const sbufs = list.map((p, i) => loaded(pa, p, i % 8));
            const singleRes = sbufs.map((b) => espOpen(single, b, T0));
            const bufs = list.map((p, i) => loaded(i === 2 ? foreign : pb, p, i % 8)); // one buffer from another slab
            const results = new Uint8Array(list.length);
            const accepted = espOpenBatch(batched, bufs, list.length, new AeadBatch(cap), results, T0);
            expect([...results].map(name), what).toEqual(singleRes.map(name));
            expect(accepted, what).toBe(singleRes.filter((r) => r === ESP_OK).length);
            const payloads = (bs: PacketBuf[], rs: ArrayLike<number>): string[] => bs.map((b, i) => (rs[i] === ESP_OK ? toHex(b.view()) : ''));
            expect(payloads(bufs, results), what).toEqual(payloads(sbufs, singleRes));
            expect([...batched.drops.counts], what).toEqual([...single.drops.counts]);
            expect(batched.packets, what).toBe(single.packets);
            expect(batched.bytes, what).toBe(single.bytes);
            expect(batched.replay.top, what).toBe(single.replay.top);
            for (const r of singleRes) seen.add(name(r));
          }
        }
      }
      // The scenarios produce what they claim to cover.
      expect([...seen].sort()).toEqual(
        [
          'ok',
          'truncated',
          'seq_zero',
          'replay_duplicate',
          'replay_too_old',
          'icv_mismatch',
          'bad_pad_length',
          'bad_padding_content',
          'unexpected_next_header',
          'dummy_packet',
        ].sort(),
      );
    });
  });
}
