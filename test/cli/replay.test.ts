// `sectunnel replay` both ways through the CLI: host A encapsulates guest frames into
// outer packets, host B decapsulates them; for every algorithm, IPv4 and IPv6, raw ESP
// and UDP 4500, with and without ESN.
import { describe, expect, it } from 'vitest';
import { aeadKeymatBytes, type AeadAlgorithm } from '../../src/crypto/aead.js';
import { replay } from '../helpers/replay.js';

const ALGS: AeadAlgorithm[] = ['aes-gcm-128', 'aes-gcm-192', 'aes-gcm-256', 'chacha20-poly1305'];
const LABELS = [
  { name: 'red', vlan: 100 },
  { name: 'blue', vlan: 200, greKey: 0xb10e },
  { name: 'plain', vlan: 300, greKey: null },
];

function keymat(alg: AeadAlgorithm, seed: number): string {
  return Array.from({ length: aeadKeymatBytes(alg) }, (_, i) => ((seed * 17 + i * 5) & 0xff).toString(16).padStart(2, '0')).join('');
}

interface Opts {
  alg: AeadAlgorithm;
  family: 4 | 6;
  encapsulation: 'udp' | 'esp';
  esn: boolean;
}

function configs(o: Opts) {
  const [a, b] = o.family === 4 ? ['192.0.2.1', '192.0.2.2'] : ['2001:db8::1', '2001:db8::2'];
  const sas = (direction: 'in' | 'out', peer: string) =>
    LABELS.map((l, i) => ({
      spi: `0x0000100${i + 1}`,
      direction,
      peer,
      algorithm: o.alg,
      keymat: keymat(o.alg, i + 1),
      esn: o.esn,
      encapsulation: o.encapsulation,
      labels: [l.name],
    }));
  return {
    a: { local: { ipv4: '192.0.2.1', ipv6: '2001:db8::1' }, replayWindow: 64, labels: LABELS, sas: sas('out', b) },
    b: { local: { ipv4: '192.0.2.2', ipv6: '2001:db8::2' }, replayWindow: 64, labels: LABELS, sas: sas('in', a) },
  };
}

function frame(vid: number | null, n: number, payloadBytes: number): Uint8Array {
  const tag = vid === null ? [] : [0x81, 0x00, (vid >> 8) & 0x0f, vid & 0xff];
  const hdr = [0x02, 0, 0, 0, 0x0b, n & 0xff, 0x02, 0, 0, 0, 0x0a, n & 0xff, ...tag, 0x08, 0x00];
  const f = new Uint8Array(hdr.length + payloadBytes);
  f.set(hdr);
  for (let i = 0; i < payloadBytes; i++) f[hdr.length + i] = (i + n * 7) & 0xff;
  return f;
}

function untag(f: Uint8Array): Uint8Array {
  return Uint8Array.from([...f.subarray(0, 12), ...f.subarray(16)]);
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

const MATRIX: Opts[] = ALGS.flatMap((alg) =>
  ([4, 6] as const).flatMap((family) =>
    (['udp', 'esp'] as const).flatMap((encapsulation) => [true, false].map((esn) => ({ alg, family, encapsulation, esn }))),
  ),
);

describe('replay encap → decap', () => {
  it.each(MATRIX)('$alg IPv$family $encapsulation esn=$esn', async (o) => {
    const { a, b } = configs(o);
    const trunk = [frame(100, 1, 60), frame(200, 2, 1400), frame(300, 3, 0), frame(100, 4, 1)];
    const enc = await replay(a, trunk, ['--direction', 'encap']);
    expect(enc.status).toBe(0);
    expect(enc.verdicts.map((v) => [v.verdict, v.reason, v.spi, v.seq])).toEqual([
      ['accept', null, '0x00001001', 1],
      ['accept', null, '0x00001002', 1],
      ['accept', null, '0x00001003', 1],
      ['accept', null, '0x00001001', 2],
    ]);
    expect(enc.out.length).toBe(4);
    // Outer headers: Ethernet type, IP protocol (17 or 50), UDP port 4500.
    for (const p of enc.out) {
      const ipOff = 14;
      if (o.family === 4) {
        expect((p[12]! << 8) | p[13]!).toBe(0x0800);
        expect(p[ipOff + 9]).toBe(o.encapsulation === 'udp' ? 17 : 50);
      } else {
        expect((p[12]! << 8) | p[13]!).toBe(0x86dd);
        expect(p[ipOff + 6]).toBe(o.encapsulation === 'udp' ? 17 : 50);
      }
      if (o.encapsulation === 'udp') {
        const u = ipOff + (o.family === 4 ? 20 : 40);
        expect((p[u + 2]! << 8) | p[u + 3]!).toBe(4500);
      }
    }
    expect(enc.verdicts.map((v) => v.delivered[0])).toEqual(enc.out.map(hex));

    const dec = await replay(b, enc.out, []);
    expect(dec.status).toBe(0);
    expect(dec.verdicts.map((v) => [v.verdict, v.reason, v.spi, v.seq])).toEqual([
      ['accept', null, '0x00001001', 1],
      ['accept', null, '0x00001002', 1],
      ['accept', null, '0x00001003', 1],
      ['accept', null, '0x00001001', 2],
    ]);
    expect(dec.out.map(hex)).toEqual(trunk.map((f) => hex(untag(f))));
    expect(dec.verdicts.map((v) => v.delivered)).toEqual(trunk.map((f) => [hex(untag(f))]));

    const kept = await replay(b, enc.out, ['--keep-tag']);
    expect(kept.out.map(hex)).toEqual(trunk.map(hex));
  });

  it('untagged input takes --label; the same frames decapsulate to that label', async () => {
    const { a, b } = configs({ alg: 'aes-gcm-256', family: 4, encapsulation: 'udp', esn: true });
    const plain = [frame(null, 1, 100), frame(null, 2, 200)];
    const enc = await replay(a, plain, ['--direction', 'encap', '--label', 'blue']);
    expect(enc.verdicts.map((v) => v.spi)).toEqual(['0x00001002', '0x00001002']);
    const dec = await replay(b, enc.out, ['--keep-tag']);
    // Delivered with blue's tag (VID 200) inserted.
    expect(dec.out.map((f) => ((f[14]! << 8) | f[15]!) & 0xfff)).toEqual([200, 200]);
  });

  it('replayed packets are duplicates the second time (replay window per SA)', async () => {
    const { a, b } = configs({ alg: 'aes-gcm-128', family: 4, encapsulation: 'esp', esn: false });
    const enc = await replay(a, [frame(100, 1, 10)], ['--direction', 'encap']);
    const dec = await replay(b, [enc.out[0]!, enc.out[0]!], []);
    expect(dec.verdicts.map((v) => [v.verdict, v.reason])).toEqual([
      ['accept', null],
      ['drop', 'replay_duplicate'],
    ]);
  });

  it('refuses bad arguments and configs with exit status 2', async () => {
    const { a } = configs({ alg: 'aes-gcm-128', family: 4, encapsulation: 'esp', esn: false });
    expect((await replay(a, [], ['--direction', 'sideways'])).status).toBe(2);
    expect((await replay(a, [], ['--direction', 'encap', '--label', 'green'])).status).toBe(2);
    expect((await replay({ ...a, labels: [{ name: 'red', vlan: 5000 }] }, [], [])).status).toBe(2);
  });
});
