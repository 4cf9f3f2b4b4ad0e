// Capture files on disk (src/io/pcap-file.ts): reading files made by Wireshark's tools,
// writing files tshark reads back, errors naming the file and the byte offset.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  CaptureFileError,
  PcapFileWriter,
  WRITE_BUFFER_MIN_BYTES,
  readCaptureFile,
  streamCaptureFile,
} from '../../src/io/pcap-file.js';
import { LINKTYPE_ETHERNET, LINKTYPE_RAW, type PcapRecord } from '../../src/wire/pcap.js';
import { hex, rng, randomBytes, toHex } from '../helpers/hex.js';
import { itWith } from '../helpers/tools.js';

const FIXTURES = resolve(__dirname, '..', 'fixtures', 'pcap');
const PUBLISHED_ESP = '/work/shared/conformance/vectors/published_esp.pcap';
const TMP = mkdtempSync(join(tmpdir(), 'st-pcap-file-'));
afterAll(() => rmSync(TMP, { recursive: true, force: true }));

// Ethernet II 02:00:00:00:00:01 → Broadcast, ARP: Who has 192.0.2.2? Tell 192.0.2.1 (42 octets)
const ARP_FRAME = hex(`ffffffffffff 020000000001 0806 0001 0800 06 04 0001
  020000000001 c0000201 000000000000 c0000202`);
// Ethernet II 02:00:00:00:00:01 → 02:00:00:00:00:02, IPv4 192.0.2.1 → 192.0.2.2 UDP 1234 → 5678 Len=0 (42 octets)
const UDP_FRAME = hex(`020000000002 020000000001 0800 4500 001c 0001 0000 4011 f77a c0000201 c0000202
  04d2 162e 0008 0000`);
// IPv4 192.0.2.1 → 192.0.2.2 UDP 1234 → 5678 Len=0 (28 octets)
const IPV4_UDP = hex('4500 001c 0002 0000 4011 f779 c0000201 c0000202 04d2 162e 0008 0000');
// IPv6 2001:db8::1 → 2001:db8::2 UDP 1234 → 5678 Len=0 (48 octets)
const IPV6_UDP = hex(`6000 0000 0008 1140 20010db8000000000000000000000001 20010db8000000000000000000000002
  04d2 162e 0008 0000`);

/** What a user compares between two readings of one capture. */
function summary(r: PcapRecord): object {
  return {
    linkType: r.linkType,
    interfaceId: r.interfaceId,
    time: `${r.tsSec}.${String(r.tsNsec).padStart(9, '0')}`,
    origLen: r.origLen,
    data: toHex(r.data),
  };
}

async function collect(gen: AsyncIterable<PcapRecord>): Promise<PcapRecord[]> {
  const out: PcapRecord[] = [];
  for await (const r of gen) out.push(r);
  return out;
}

/** The CaptureFileError a promise rejects with. */
async function rejection(p: Promise<unknown>): Promise<CaptureFileError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(CaptureFileError);
    return e as CaptureFileError;
  }
  throw new Error('expected a rejection');
}

function tshark(args: string[]): string {
  return execFileSync('tshark', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
}

describe('reading fixtures made by Wireshark tools', () => {
  // tshark decodes: see test/fixtures/pcap/README.md.
  const ETH = (time1: string, time2: string, ifId = 0) => [
    { linkType: 1, interfaceId: ifId, time: time1, origLen: 42, data: toHex(ARP_FRAME) },
    { linkType: 1, interfaceId: ifId, time: time2, origLen: 42, data: toHex(UDP_FRAME) },
  ];
  const RAW = (ifId: number) => [
    { linkType: 101, interfaceId: ifId, time: '1704164647.250000000', origLen: 28, data: toHex(IPV4_UDP) },
    { linkType: 101, interfaceId: ifId, time: '1704164648.500000000', origLen: 48, data: toHex(IPV6_UDP) },
  ];
  const cases: [string, 'pcap' | 'pcapng', object[]][] = [
    ['eth-usec.pcap', 'pcap', ETH('1704164645.123456000', '1704164646.000001000')],
    ['eth-nsec.pcap', 'pcap', ETH('1704164645.123456789', '1704164646.000001789')],
    ['eth-nsec.pcapng', 'pcapng', ETH('1704164645.123456789', '1704164646.000001789')],
    ['raw-usec.pcap', 'pcap', RAW(0)],
    ['merged.pcapng', 'pcapng', [...ETH('1704164645.123456000', '1704164646.000001000'), ...RAW(1)]],
  ];
  for (const [name, format, expected] of cases) {
    it(`readCaptureFile and streamCaptureFile read ${name}`, async () => {
      const path = join(FIXTURES, name);
      const whole = await readCaptureFile(path);
      expect(whole.format).toBe(format);
      expect(whole.records.map(summary)).toEqual(expected);
      expect((await collect(streamCaptureFile(path, { chunkBytes: 7 }))).map(summary)).toEqual(expected);
    });
  }

  itWith(['tshark'], 'agrees with tshark on every fixture (interface, time, length)', async () => {
    for (const [name] of cases) {
      const path = join(FIXTURES, name);
      const ours = (await readCaptureFile(path)).records.map((r) => `${r.tsSec}.${String(r.tsNsec).padStart(9, '0')}\t${r.origLen}\t${r.data.length}`);
      const theirs = tshark(['-r', path, '-T', 'fields', '-e', 'frame.time_epoch', '-e', 'frame.len', '-e', 'frame.cap_len'])
        .trim()
        .split('\n');
      expect(ours, name).toEqual(theirs);
    }
  });
});

describe('published_esp.pcap (conformance vectors)', () => {
  it('has 17 Ethernet/IPv4 records, each IP protocol 50 (ESP)', async () => {
    const f = await readCaptureFile(PUBLISHED_ESP);
    expect(f.format).toBe('pcap');
    expect(f.records).toHaveLength(17);
    for (const r of f.records) {
      expect(r.linkType).toBe(LINKTYPE_ETHERNET);
      expect(toHex(r.data, 12, 2)).toBe('0800'); // EtherType IPv4
      expect(r.data[14]! >> 4).toBe(4); // IP version
      expect(r.data[14 + 9]).toBe(50); // IPv4 protocol: ESP
    }
  });
});

describe('PcapFileWriter', () => {
  it('round trip: write → readCaptureFile, timestamps kept to the microsecond', async () => {
    const path = join(TMP, 'roundtrip.pcap');
    const w = PcapFileWriter.open(path, LINKTYPE_ETHERNET);
    w.write(ARP_FRAME, 1704164645123456789n);
    w.write(UDP_FRAME, 1704164646_000_001_000n, 60);
    w.write(UDP_FRAME.subarray(0, 20), 2_500_000_000); // a number of ns works too
    w.close();
    expect(w.recordCount).toBe(3);
    const f = await readCaptureFile(path);
    expect(f.format).toBe('pcap');
    expect(f.records.map(summary)).toEqual([
      { linkType: 1, interfaceId: 0, time: '1704164645.123456000', origLen: 42, data: toHex(ARP_FRAME) },
      { linkType: 1, interfaceId: 0, time: '1704164646.000001000', origLen: 60, data: toHex(UDP_FRAME) },
      { linkType: 1, interfaceId: 0, time: '2.500000000', origLen: 20, data: toHex(UDP_FRAME.subarray(0, 20)) },
    ]);
    expect(statSync(path).size).toBe(24 + 3 * 16 + 42 + 42 + 20);
  });

  it('buffers writes until the buffer fills or the file is closed', () => {
    const path = join(TMP, 'buffered.pcap');
    const w = PcapFileWriter.open(path, LINKTYPE_RAW, { bufferBytes: WRITE_BUFFER_MIN_BYTES });
    w.write(IPV4_UDP, 0n);
    expect(statSync(path).size).toBe(0); // header and record still in the buffer
    const big = new Uint8Array(60_000);
    const records = Math.ceil(WRITE_BUFFER_MIN_BYTES / (16 + big.length)) + 1;
    for (let i = 0; i < records; i++) w.write(big, BigInt(i) * 1000n);
    const mid = statSync(path).size;
    expect(mid).toBeGreaterThan(0); // the full buffer went out
    expect(mid).toBeLessThan(w.byteCount); // the rest waits for close
    w.close();
    expect(statSync(path).size).toBe(24 + 16 + IPV4_UDP.length + records * (16 + big.length));
    expect(w.byteCount).toBe(statSync(path).size);
  });

  it('refuses writes after close; a second close does nothing', () => {
    const path = join(TMP, 'closed.pcap');
    const w = PcapFileWriter.open(path, LINKTYPE_ETHERNET);
    w.close();
    w.close();
    let err: unknown;
    try {
      w.write(ARP_FRAME, 0n);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CaptureFileError);
    expect((err as CaptureFileError).code).toBe('CAPTURE_FILE_CLOSED');
    expect((err as CaptureFileError).message).toBe(`${path}: write after close`);
  });

  it('rejects bad options with RangeError naming the value', () => {
    expect(() => PcapFileWriter.open(join(TMP, 'x.pcap'), 113 as 1)).toThrow(/linkType .* got 113/);
    expect(() => PcapFileWriter.open(join(TMP, 'x.pcap'), 1, { bufferBytes: 1000 })).toThrow(/bufferBytes .* got 1000/);
  });

  it('names the path when the file cannot be created', () => {
    const path = join(TMP, 'no-such-dir', 'out.pcap');
    let err: unknown;
    try {
      PcapFileWriter.open(path, LINKTYPE_ETHERNET);
    } catch (e) {
      err = e;
    }
    expect((err as CaptureFileError).code).toBe('CAPTURE_FILE_IO');
    expect((err as CaptureFileError).message).toMatch(new RegExp(`^${path}: cannot create: ENOENT`));
  });

  const FRAMES = (() => {
    // Ethernet frames from 02:00:00:00:00:0N of 60, 61, 1514 and 9018 octets (jumbo), payload random.
    const next = rng(7);
    return [60, 61, 1514, 9018].map((len, i) => {
      const f = randomBytes(next, len);
      f.set(hex(`ffffffffffff 02000000000${i + 1} 88b5`)); // EtherType 0x88b5: local experimental
      return f;
    });
  })();

  itWith(['tshark'], 'tshark reads what we write: frame.len and eth.src', () => {
    const path = join(TMP, 'for-tshark.pcap');
    const w = PcapFileWriter.open(path, LINKTYPE_ETHERNET);
    FRAMES.forEach((f, i) => w.write(f, 1_700_000_000_000_000_000n + BigInt(i) * 1_000_123n));
    w.write(FRAMES[0]!, 1_700_000_001_000_000_000n, 1514); // 60 octets kept of 1514
    w.close();
    const out = tshark(['-r', path, '-T', 'fields', '-e', 'frame.len', '-e', 'eth.src', '-e', 'frame.cap_len', '-e', 'frame.time_epoch']);
    expect(out.trim().split('\n')).toEqual([
      '60\t02:00:00:00:00:01\t60\t1700000000.000000000',
      '61\t02:00:00:00:00:02\t61\t1700000000.001000000',
      '1514\t02:00:00:00:00:03\t1514\t1700000000.002000000',
      '9018\t02:00:00:00:00:04\t9018\t1700000000.003000000',
      '1514\t02:00:00:00:00:01\t60\t1700000001.000000000',
    ]);
  });

  itWith(['tshark'], 'tshark reads raw IP (link type 101) as IPv4 and IPv6', () => {
    const path = join(TMP, 'raw-for-tshark.pcap');
    const w = PcapFileWriter.open(path, LINKTYPE_RAW);
    w.write(IPV4_UDP, 0n);
    w.write(IPV6_UDP, 1_000_000n);
    w.close();
    const out = tshark(['-r', path, '-T', 'fields', '-e', 'frame.len', '-e', 'ip.src', '-e', 'ipv6.src', '-e', 'udp.dstport']);
    expect(out.trim().split('\n')).toEqual(['28\t192.0.2.1\t\t5678', '48\t\t2001:db8::1\t5678']);
  });

  itWith(['tshark'], 'reads the pcapng tshark converts our pcap into: same records', async () => {
    const ours = join(TMP, 'ours.pcap');
    const theirs = join(TMP, 'theirs.pcapng');
    const w = PcapFileWriter.open(ours, LINKTYPE_ETHERNET);
    FRAMES.forEach((f, i) => w.write(f, 1_700_000_000_123_456_000n + BigInt(i) * 1_000_000_000n, f.length + i));
    w.close();
    tshark(['-r', ours, '-F', 'pcapng', '-w', theirs]);
    expect(readFileSync(theirs).readUInt32BE(0)).toBe(0x0a0d0d0a); // really a pcapng (SHB first)
    const a = await readCaptureFile(ours);
    const b = await readCaptureFile(theirs);
    expect(b.format).toBe('pcapng');
    expect(b.records.map(summary)).toEqual(a.records.map(summary));
    expect(b.records.map((r) => r.origLen)).toEqual([60, 62, 1516, 9021]);
    expect((await collect(streamCaptureFile(theirs, { chunkBytes: 100 }))).map(summary)).toEqual(a.records.map(summary));
  });
});

describe('errors name the file and the byte offset', () => {
  // A valid two-record pcap of the frames above, then damaged copies of it.
  const GOOD = join(TMP, 'good.pcap');
  const w = PcapFileWriter.open(GOOD, LINKTYPE_ETHERNET);
  w.write(ARP_FRAME, 1_000_000_000n);
  w.write(UDP_FRAME, 2_000_000_000n);
  w.close();
  const good = readFileSync(GOOD); // 24 + (16 + 42) + (16 + 42) = 140 octets; record 2 at 82

  function damaged(name: string, bytes: Uint8Array): string {
    const path = join(TMP, name);
    writeFileSync(path, bytes);
    return path;
  }

  const cases: [string, () => Uint8Array, string, number, string][] = [
    ['truncated-header.pcap', () => good.subarray(0, 20), 'PCAP_TRUNCATED', 0, 'truncated global header'],
    ['truncated-record-header.pcap', () => good.subarray(0, 90), 'PCAP_TRUNCATED', 82, 'truncated record header'],
    ['truncated-record-body.pcap', () => good.subarray(0, 139), 'PCAP_TRUNCATED', 98, 'truncated record body (41 of 42 bytes)'],
    [
      'absurd.pcap',
      () => {
        const b = Buffer.from(good);
        b.writeUInt32LE(1 << 20, 82 + 8);
        return b;
      },
      'PCAP_ABSURD_LENGTH',
      90,
      'absurd captured length 1048576 (limit 262144: snaplen 262144)',
    ],
    ['bad-magic.pcap', () => Buffer.from('not a capture file at all, really'), 'PCAP_BAD_MAGIC', 0, 'not a pcap or pcapng file: magic 0x6e6f7420'],
    [
      'linktype.pcap',
      () => {
        const b = Buffer.from(good);
        b.writeUInt32LE(127, 20); // 802.11 radiotap
        return b;
      },
      'PCAP_UNKNOWN_LINKTYPE',
      20,
      'unknown link type 127',
    ],
  ];
  for (const [name, make, code, offset, detail] of cases) {
    it(`${code}: ${detail}`, async () => {
      const path = damaged(name, make());
      for (const read of [() => readCaptureFile(path), () => collect(streamCaptureFile(path, { chunkBytes: 16 }))]) {
        const e = await rejection(read());
        expect(e.code).toBe(code);
        expect(e.offset).toBe(offset);
        expect(e.path).toBe(path);
        expect(e.message).toBe(`${path}: ${detail} at byte offset ${offset}`);
      }
    });
  }

  it('a missing file is CAPTURE_FILE_IO with the path', async () => {
    const path = join(TMP, 'missing.pcap');
    for (const read of [() => readCaptureFile(path), () => collect(streamCaptureFile(path))]) {
      const e = await rejection(read());
      expect(e.code).toBe('CAPTURE_FILE_IO');
      expect(e.offset).toBeNull();
      expect(e.message).toMatch(new RegExp(`^${path}: cannot (read|open): ENOENT`));
    }
  });

  it('readCaptureFile refuses a file above its size limit; streamCaptureFile reads it', async () => {
    const e = await rejection(readCaptureFile(GOOD, { maxBytes: 139 }));
    expect(e.code).toBe('CAPTURE_FILE_TOO_LARGE');
    expect(e.message).toBe(`${GOOD}: file is 140 bytes, above the 139-byte limit of readCaptureFile (use streamCaptureFile)`);
    expect(await collect(streamCaptureFile(GOOD))).toHaveLength(2);
    expect((await readCaptureFile(GOOD, { maxBytes: 140 })).records).toHaveLength(2);
  });
});

describe('streamCaptureFile memory', () => {
  it('holds one chunk plus at most one record per window, and views stay valid', async () => {
    const path = join(TMP, 'many.pcap');
    const next = rng(11);
    const frames: Uint8Array[] = [];
    const w = PcapFileWriter.open(path, LINKTYPE_ETHERNET);
    for (let i = 0; i < 1000; i++) {
      const f = randomBytes(next, 60 + (next() % 9000));
      frames.push(f);
      w.write(f, BigInt(i) * 1000n);
    }
    w.close();
    const chunkBytes = 4096;
    const maxRecordBytes = 16 + Math.max(...frames.map((f) => f.length));
    const records = await collect(streamCaptureFile(path, { chunkBytes }));
    expect(records).toHaveLength(frames.length);
    for (let i = 0; i < frames.length; i++) {
      const r = records[i]!;
      // A window is one chunk plus room for the largest record, never the file.
      expect(r.data.buffer.byteLength).toBeLessThanOrEqual(chunkBytes + maxRecordBytes);
      expect(Buffer.from(r.data.buffer, r.data.byteOffset, r.data.length).equals(frames[i]!), `record ${i}`).toBe(true); // read after the whole iteration
    }
  });

  it('rejects a bad chunk size with RangeError naming the value', async () => {
    await expect(collect(streamCaptureFile(join(TMP, 'good.pcap'), { chunkBytes: 0 }))).rejects.toThrow(/chunkBytes .* got 0/);
  });
});
