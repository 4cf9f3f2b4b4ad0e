// Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s against the published cacophony test vector
// (test/fixtures/noise/README.md names the source), plus the failure paths — once with
// each primitive set: the pure-JS default (noble) and node:crypto's, which the daemon uses.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hkdf } from '@noble/hashes/hkdf.js';
import { blake2s } from '@noble/hashes/blake2.js';
import {
  CipherState,
  HandshakeState,
  NOBLE_NOISE_PRIMITIVES,
  NOISE_PROTOCOL_NAME,
  SymmetricState,
  keyPairFromPrivate,
  noiseDh,
  noiseHash,
  noiseHkdf,
  noisePrimitives,
  setNoisePrimitives,
  x25519PublicKey,
  type DhCounter,
  type NoisePrimitives,
} from '../../src/core/noise.js';
import { nodeNoisePrimitives } from '../../src/cli/daemon/handshake.js';
import { hex, randomBytes, rng, toHex } from '../helpers/hex.js';

interface Vector {
  protocol_name: string;
  init_prologue: string;
  init_psks: string[];
  init_static: string;
  init_ephemeral: string;
  init_remote_static: string;
  resp_prologue: string;
  resp_psks: string[];
  resp_static: string;
  resp_ephemeral: string;
  handshake_hash: string;
  messages: { payload: string; ciphertext: string }[];
}

const FIXTURE = resolve(__dirname, '..', 'fixtures', 'noise', 'cacophony-IKpsk2_25519_ChaChaPoly_BLAKE2s.json');
const V = JSON.parse(readFileSync(FIXTURE, 'utf8')) as Vector;

function pair(v: Vector, counter?: DhCounter): { ini: HandshakeState; res: HandshakeState } {
  const ini = new HandshakeState({
    initiator: true,
    prologue: hex(v.init_prologue),
    s: keyPairFromPrivate(hex(v.init_static)),
    rs: hex(v.init_remote_static),
    psk: hex(v.init_psks[0]!),
    ephemeralPrivateKey: hex(v.init_ephemeral),
    dhCounter: counter,
  });
  const res = new HandshakeState({
    initiator: false,
    prologue: hex(v.resp_prologue),
    s: keyPairFromPrivate(hex(v.resp_static)),
    ephemeralPrivateKey: hex(v.resp_ephemeral),
    dhCounter: counter,
  });
  return { ini, res };
}

const NODE = nodeNoisePrimitives();

describe('primitive sets', () => {
  it("node:crypto's pass their self-test on this Node (X25519, BLAKE2s, HMAC, ChaCha20-Poly1305)", () => {
    expect(NODE?.name).toBe('node');
  });

  it('the default is noble; setNoisePrimitives returns the previous set', () => {
    expect(noisePrimitives()).toBe(NOBLE_NOISE_PRIMITIVES);
    const prev = setNoisePrimitives(NODE!);
    expect(prev).toBe(NOBLE_NOISE_PRIMITIVES);
    expect(setNoisePrimitives(prev)).toBe(NODE);
  });

  it('interoperate: each message written with one set is read with the other, to the vector', () => {
    const m = V.messages;
    const prev = noisePrimitives();
    try {
      setNoisePrimitives(NOBLE_NOISE_PRIMITIVES);
      const { ini, res } = pair(V);
      const w1 = ini.writeMessage(hex(m[0]!.payload)) as { message: Uint8Array };
      setNoisePrimitives(NODE!);
      const r1 = res.readMessage(w1.message);
      expect(r1.ok && toHex(r1.payload)).toBe(m[0]!.payload);
      res.setPsk(hex(V.resp_psks[0]!));
      const w2 = res.writeMessage(hex(m[1]!.payload)) as { message: Uint8Array };
      expect(toHex(w2.message)).toBe(m[1]!.ciphertext);
      setNoisePrimitives(NOBLE_NOISE_PRIMITIVES);
      const r2 = ini.readMessage(w2.message);
      expect(r2.ok && toHex(r2.payload)).toBe(m[1]!.payload);
      expect(toHex(ini.handshakeHash)).toBe(V.handshake_hash);
    } finally {
      setNoisePrimitives(prev);
    }
  });
});

const SETS: [string, NoisePrimitives][] = [
  ['noble', NOBLE_NOISE_PRIMITIVES],
  ['node', NODE ?? NOBLE_NOISE_PRIMITIVES],
];

describe.each(SETS)('with the %s primitives', (_name, set) => {
  let prev: NoisePrimitives = NOBLE_NOISE_PRIMITIVES;
  beforeAll(() => {
    prev = setNoisePrimitives(set);
  });
  afterAll(() => {
    setNoisePrimitives(prev);
  });

  describe('Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s: cacophony vector', () => {
    it('is the vector for our protocol', () => {
      expect(V.protocol_name).toBe(NOISE_PROTOCOL_NAME);
      expect(toHex(x25519PublicKey(hex(V.resp_static)))).toBe(V.init_remote_static);
    });

    it('reproduces every message, the handshake hash and the transport messages, both ways', () => {
      const { ini, res } = pair(V);
      const m = V.messages;
      // Message 1: initiator writes, responder reads.
      const w1 = ini.writeMessage(hex(m[0]!.payload));
      expect(w1.ok).toBe(true);
      if (!w1.ok) return;
      expect(toHex(w1.message)).toBe(m[0]!.ciphertext);
      const r1 = res.readMessage(hex(m[0]!.ciphertext));
      expect(r1.ok && toHex(r1.payload)).toBe(m[0]!.payload);
      expect(toHex(res.remoteStatic!)).toBe(toHex(x25519PublicKey(hex(V.init_static))));
      // Message 2: the responder learns its psk only now (psk2), as sectunnel does.
      res.setPsk(hex(V.resp_psks[0]!));
      const w2 = res.writeMessage(hex(m[1]!.payload));
      expect(w2.ok && toHex(w2.message)).toBe(m[1]!.ciphertext);
      const r2 = ini.readMessage(hex(m[1]!.ciphertext));
      expect(r2.ok && toHex(r2.payload)).toBe(m[1]!.payload);
      expect(toHex(ini.handshakeHash)).toBe(V.handshake_hash);
      expect(toHex(res.handshakeHash)).toBe(V.handshake_hash);
      // Transport: messages alternate initiator → responder, responder → initiator.
      const [iSend, iRecv] = ini.split();
      const [rRecv, rSend] = res.split();
      for (let i = 2; i < m.length; i++) {
        const fromInitiator = i % 2 === 0;
        const send = fromInitiator ? iSend : rSend;
        const recv = fromInitiator ? rRecv : iRecv;
        const ct = send.encryptWithAd(new Uint8Array(0), hex(m[i]!.payload))!;
        expect(toHex(ct), `transport message ${i}`).toBe(m[i]!.ciphertext);
        const pt = recv.decryptWithAd(new Uint8Array(0), hex(m[i]!.ciphertext));
        expect(pt && toHex(pt)).toBe(m[i]!.payload);
      }
    });

    it('performs exactly the four DHs of each side (es, ss | ee, se) and no more', () => {
      const counter = { dhOperations: 0 };
      const { ini, res } = pair(V, counter);
      const w1 = ini.writeMessage(new Uint8Array(0));
      expect(counter.dhOperations).toBe(2);
      res.readMessage((w1 as { message: Uint8Array }).message);
      expect(counter.dhOperations).toBe(4);
      res.setPsk(hex(V.resp_psks[0]!));
      const w2 = res.writeMessage(new Uint8Array(0));
      expect(counter.dhOperations).toBe(6);
      ini.readMessage((w2 as { message: Uint8Array }).message);
      expect(counter.dhOperations).toBe(8);
    });
  });

  describe('Noise HKDF (§4.3)', () => {
    it('equals RFC 5869 HKDF-BLAKE2s with salt = chaining key and empty info (an independent implementation)', () => {
      const next = rng(7);
      for (let i = 0; i < 20; i++) {
        const ck = randomBytes(next, 32);
        const ikm = randomBytes(next, i * 3);
        const [a, b, c] = noiseHkdf(ck, ikm, 3);
        const ref = hkdf(blake2s, ikm, ck, new Uint8Array(0), 96);
        expect(toHex(a!) + toHex(b!) + toHex(c!)).toBe(toHex(ref));
      }
    });

    it('starts from the state WireGuard publishes: Ci = HASH(name), Hi = HASH(Ci ‖ identifier)', () => {
      // CONSTRUCTION_HASH and IDENTIFIER_HASH of conradludgate/rustyguard rustyguard-crypto/src/prim.rs
      // (37-octet name > HASHLEN, so h = HASH(name) and ck = h; the identifier is WireGuard's prologue).
      const st = new SymmetricState();
      expect(toHex(st.ck)).toBe('60e26daef327efc02ec335e2a025d2d016eb4206f87277f52d38d1988b78cd36');
      expect(toHex(noiseHash(new TextEncoder().encode(NOISE_PROTOCOL_NAME)))).toBe(toHex(st.h));
      st.mixHash(new TextEncoder().encode('WireGuard v1 zx2c4 Jason@zx2c4.com'));
      expect(toHex(st.h)).toBe('2211b361081ac566691243db458ad5322d9c6c662293e8b70ee19c65ba079ef3');
    });
  });

  describe('Noise failure paths return codes', () => {
    function fresh(o: { psk?: string; respStatic?: string; initRs?: string } = {}) {
      const ini = new HandshakeState({
        initiator: true,
        prologue: hex(V.init_prologue),
        s: keyPairFromPrivate(hex(V.init_static)),
        rs: hex(o.initRs ?? V.init_remote_static),
        psk: hex(V.init_psks[0]!),
        ephemeralPrivateKey: hex(V.init_ephemeral),
      });
      const res = new HandshakeState({
        initiator: false,
        prologue: hex(V.resp_prologue),
        s: keyPairFromPrivate(hex(o.respStatic ?? V.resp_static)),
        ephemeralPrivateKey: hex(V.resp_ephemeral),
      });
      return { ini, res, psk: hex(o.psk ?? V.resp_psks[0]!) };
    }

    it('a message 1 for another responder key fails at the encrypted static', () => {
      const { ini, res } = fresh({ respStatic: '11'.repeat(32) });
      const w1 = ini.writeMessage(new Uint8Array(4));
      const r = res.readMessage((w1 as { message: Uint8Array }).message);
      expect(r).toEqual({ ok: false, error: 'decrypt_static' });
    });

    it('a wrong psk fails message 2 at the initiator', () => {
      const { ini, res } = fresh({ psk: '22'.repeat(32) });
      const w1 = ini.writeMessage(new Uint8Array(0));
      expect(res.readMessage((w1 as { message: Uint8Array }).message).ok).toBe(true);
      res.setPsk(hex('22'.repeat(32)));
      const w2 = res.writeMessage(new Uint8Array(0));
      expect(ini.readMessage((w2 as { message: Uint8Array }).message)).toEqual({ ok: false, error: 'decrypt_payload' });
    });

    it('a low-order ephemeral (all zeros) is refused as a DH failure, not a zero key', () => {
      const { res } = fresh();
      const msg = new Uint8Array(32 + 48 + 16);
      expect(res.readMessage(msg)).toEqual({ ok: false, error: 'dh' });
      expect(noiseDh(hex(V.resp_static), new Uint8Array(32))).toBeNull();
    });

    it('short messages and messages out of order are refused', () => {
      const { ini, res } = fresh();
      expect(res.readMessage(new Uint8Array(95))).toEqual({ ok: false, error: 'short' });
      expect(ini.readMessage(new Uint8Array(200))).toEqual({ ok: false, error: 'state' });
      expect(res.writeMessage(new Uint8Array(0))).toEqual({ ok: false, error: 'state' });
    });

    it('every single-bit flip of message 1 or message 2 is detected', () => {
      const { ini, res, psk } = fresh();
      const m1 = (ini.writeMessage(hex('01020304')) as { message: Uint8Array }).message;
      for (let bit = 0; bit < m1.length * 8; bit += 37) {
        const { res: r } = fresh();
        const bad = m1.slice();
        bad[bit >> 3]! ^= 1 << (bit & 7);
        expect(r.readMessage(bad).ok, `bit ${bit}`).toBe(false);
      }
      res.readMessage(m1);
      res.setPsk(psk);
      const m2 = (res.writeMessage(hex('0506')) as { message: Uint8Array }).message;
      for (let bit = 0; bit < m2.length * 8; bit += 23) {
        const { ini: i2, res: r2 } = fresh();
        r2.readMessage((i2.writeMessage(hex('01020304')) as { message: Uint8Array }).message);
        const bad = m2.slice();
        bad[bit >> 3]! ^= 1 << (bit & 7);
        expect(i2.readMessage(bad).ok, `bit ${bit}`).toBe(false);
      }
    });

    it('CipherState without a key passes text through; with a key, a bad tag leaves the nonce', () => {
      const c = new CipherState();
      expect(toHex(c.encryptWithAd(new Uint8Array(0), hex('abcd'))!)).toBe('abcd');
      c.initializeKey(new Uint8Array(32).fill(9));
      const ct = c.encryptWithAd(hex('00'), hex('abcd'))!;
      const d = new CipherState();
      d.initializeKey(new Uint8Array(32).fill(9));
      const bad = ct.slice();
      bad[0]! ^= 1;
      expect(d.decryptWithAd(hex('00'), bad)).toBeNull();
      expect(d.n).toBe(0);
      expect(toHex(d.decryptWithAd(hex('00'), ct)!)).toBe('abcd');
      expect(d.n).toBe(1);
    });
  });
});
