// Independent checkers on sectunnel's own packets (they share no code with ours):
//   tshark decrypts our encap output (AES-GCM without ESN: what tshark 4.0 supports) and
//   decodes GRE → 802.1Q → Ethernet → IPv4 with the values we put in;
//   scapy decrypts our encap output for every algorithm, with and without ESN;
//   our replay accepts what scapy encrypts, and delivers the frame scapy wrapped.
import { describe, expect } from 'vitest';
import type { AeadAlgorithm } from '../../src/crypto/aead.js';
import { emitIpv4 } from '../../src/wire/ipv4.js';
import { replay } from '../helpers/replay.js';
import { scapyDecrypt, scapyEncrypt } from '../helpers/scapy.js';
import { itWith } from '../helpers/tools.js';
import { tsharkDecryptEsp } from '../helpers/tshark-esp.js';
import { keymatFor, toHex, untag } from './craft.js';

const ALGS: AeadAlgorithm[] = ['aes-gcm-128', 'aes-gcm-192', 'aes-gcm-256', 'chacha20-poly1305'];
const A = { v4: '192.0.2.1', v6: '2001:db8::1' };
const B = { v4: '192.0.2.2', v6: '2001:db8::2' };
const SPI = 0x00001001;
const RED = { name: 'red', vlan: 100 }; // default GRE key 100 << 8 = 0x6400

/** A tagged guest frame 02:…:0a:01 → 02:…:0b:01, VLAN 100, carrying IPv4 198.51.100.1 → .2 ICMP echo. */
function guestFrame(n: number, payloadBytes = 56): Uint8Array {
  const ipLen = 20 + 8 + payloadBytes;
  const f = new Uint8Array(18 + ipLen);
  f.set([0x02, 0, 0, 0, 0x0b, 0x01, 0x02, 0, 0, 0, 0x0a, 0x01, 0x81, 0x00, 0x00, 100, 0x08, 0x00]);
  emitIpv4({ src: Uint8Array.of(198, 51, 100, 1), dst: Uint8Array.of(198, 51, 100, 2), protocol: 1, payloadLen: 8 + payloadBytes, ttl: 64, identification: n }, f, 18);
  f.set([8, 0, 0, 0, 0, 1, 0, n & 0xff], 38);
  for (let i = 0; i < payloadBytes; i++) f[46 + i] = (i + n) & 0xff;
  return f;
}

interface Path {
  alg: AeadAlgorithm;
  family: 4 | 6;
  encapsulation: 'udp' | 'esp';
  esn: boolean;
}

function configs(p: Path) {
  const keymat = toHex(keymatFor(p.alg, 7));
  const sa = (direction: 'in' | 'out', peer: string) => ({ spi: '0x00001001', direction, peer, algorithm: p.alg, keymat, esn: p.esn, encapsulation: p.encapsulation, labels: ['red'] });
  const local = (h: typeof A) => ({ ipv4: h.v4, ipv6: h.v6 });
  return {
    a: { local: local(A), replayWindow: 64, labels: [RED], sas: [sa('out', p.family === 4 ? B.v4 : B.v6)] },
    b: { local: local(B), replayWindow: 64, labels: [RED], sas: [sa('in', p.family === 4 ? A.v4 : A.v6)] },
    scapySa: { spi: SPI, algorithm: p.alg, keymat, esn: p.esn, src: p.family === 4 ? A.v4 : A.v6, dst: p.family === 4 ? B.v4 : B.v6, encapsulation: p.encapsulation },
  };
}

const FRAMES = [guestFrame(1), guestFrame(2, 1200), guestFrame(3, 0)];

describe('cross-check: tshark decrypts sectunnel encap output', () => {
  const paths: Path[] = (['aes-gcm-128', 'aes-gcm-256'] as const).flatMap((alg) =>
    ([4, 6] as const).flatMap((family) => (['udp', 'esp'] as const).map((encapsulation) => ({ alg, family, encapsulation, esn: false }))),
  );
  for (const p of paths) {
    itWith(['tshark'], `${p.alg} IPv${p.family} ${p.encapsulation}`, async () => {
      const { a } = configs(p);
      const enc = await replay(a, FRAMES, ['--direction', 'encap']);
      expect(enc.verdicts.map((v) => v.verdict)).toEqual(['accept', 'accept', 'accept']);
      const fam = p.family === 4 ? 'ipv4' : 'ipv6';
      const decoded = await tsharkDecryptEsp(
        [{ family: fam, src: p.family === 4 ? A.v4 : A.v6, dst: p.family === 4 ? B.v4 : B.v6, spi: SPI, algorithm: p.alg, keymat: keymatFor(p.alg, 7), esn: false }],
        enc.out,
        ['esp.spi', 'esp.sequence', 'esp.icv_good', 'esp.protocol', 'gre.key', 'gre.proto', 'vlan.id', 'eth.src', 'eth.dst', 'ip.src', 'ip.dst', 'udp.dstport'],
      );
      expect(decoded.length).toBe(3);
      decoded.forEach((d, i) => {
        expect(d.protocols, `frame ${i + 1}: ${d.protocols.join(':')}`).toEqual(expect.arrayContaining(['esp', 'gre', 'vlan', 'ip', 'icmp']));
        expect(Number(d.outer['esp.spi'])).toBe(SPI);
        expect(Number(d.outer['esp.sequence'])).toBe(i + 1);
        expect(['1', 'True', 'true']).toContain(d.outer['esp.icv_good']);
        expect(Number(d.outer['esp.protocol'])).toBe(47);
        if (p.encapsulation === 'udp') expect(d.outer['udp.dstport']).toBe('4500');
        expect(Number(d.inner['gre.key'])).toBe(100 << 8);
        expect(Number(d.inner['gre.proto'])).toBe(0x6558);
        expect(d.inner['vlan.id']).toBe('100');
        expect(d.inner['eth.src']).toBe('02:00:00:00:0a:01');
        expect(d.inner['eth.dst']).toBe('02:00:00:00:0b:01');
        expect(d.inner['ip.src']).toBe('198.51.100.1');
        expect(d.inner['ip.dst']).toBe('198.51.100.2');
      });
    });
  }
});

const ALL_PATHS: Path[] = ALGS.flatMap((alg) =>
  ([4, 6] as const).flatMap((family) =>
    (['udp', 'esp'] as const).flatMap((encapsulation) => [true, false].map((esn) => ({ alg, family, encapsulation, esn }))),
  ),
);

describe('cross-check: scapy decrypts sectunnel encap output', () => {
  for (const p of ALL_PATHS) {
    itWith(['scapy'], `${p.alg} IPv${p.family} ${p.encapsulation} esn=${p.esn}`, async () => {
      const { a, scapySa } = configs(p);
      const enc = await replay(a, FRAMES, ['--direction', 'encap']);
      const got = await scapyDecrypt(scapySa, enc.out);
      expect(got.map((g) => [g.ok, g.error, g.spi, g.seq, g.vlan, g.greKey, g.nextHeader])).toEqual(
        FRAMES.map((_, i) => [true, null, '0x00001001', BigInt(i + 1), 100, 100 << 8, 47]),
      );
      expect(got.map((g) => toHex(g.inner!))).toEqual(FRAMES.map(toHex));
    });
  }
});

describe('cross-check: sectunnel replay accepts what scapy encrypts', () => {
  for (const p of ALL_PATHS) {
    itWith(['scapy'], `${p.alg} IPv${p.family} ${p.encapsulation} esn=${p.esn}`, async () => {
      const { b, scapySa } = configs(p);
      const outer = await scapyEncrypt(scapySa, FRAMES, { firstSeq: 1 });
      const dec = await replay(b, outer, []);
      expect(dec.verdicts.map((v) => [v.verdict, v.reason, v.spi, v.seq])).toEqual(FRAMES.map((_, i) => ['accept', null, '0x00001001', i + 1]));
      expect(dec.out.map(toHex)).toEqual(FRAMES.map((f) => toHex(untag(f))));
    });
  }
});
