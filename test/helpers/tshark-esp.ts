// tshark as an independent ESP decryptor: writes an `esp_sa` table into a private
// WIRESHARK_CONFIG_DIR (the format of /work/shared/conformance/README.md), runs tshark 4.0
// with ESP decryption and ICV checking on, and returns the requested fields per packet,
// split into the outer stack (up to and including ESP) and the decrypted inside.
//
// tshark 4.0 decrypts AES-GCM with a 16-octet ICV (RFC 4106) only: no ChaCha20-Poly1305, no
// ESN (its AAD is always SPI ‖ 32-bit seq). An SA that asks for either is refused with
// TsharkEspError TSHARK_ESP_UNSUPPORTED, so a test cannot silently ask for the impossible.
// ESP-in-UDP needs nothing: tshark dissects UDP port 4500 as `udpencap` → ESP by default.
// Gate the tests that use it with itWith(['tshark'], …) from ./tools.ts.
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AeadAlgorithm } from '../../src/crypto/aead.js';
import { LINKTYPE_ETHERNET, encodePcap } from '../../src/wire/pcap.js';

/** Wireshark's name of AES-GCM with a 16-octet ICV; it covers 128-, 192- and 256-bit keys. */
export const WIRESHARK_AES_GCM_16 = 'AES-GCM with 16 octet ICV [RFC4106]';
const RUN_TIMEOUT_MS = 120_000;
const KEYMAT_BYTES: Partial<Record<AeadAlgorithm, number>> = { 'aes-gcm-128': 20, 'aes-gcm-192': 28, 'aes-gcm-256': 36 };

/** One SA for tshark's esp_sa table. */
export interface TsharkEspSa {
  family: 'ipv4' | 'ipv6';
  /** Outer addresses, or "*" for any. */
  src: string;
  dst: string;
  /** 32-bit SPI: a number or "0x…" text. */
  spi: number | string;
  algorithm: AeadAlgorithm;
  /** key ‖ 4-octet salt, as bytes or hex. */
  keymat: Uint8Array | string;
  /** Whether the SA uses extended sequence numbers (tshark 4.0 cannot; see `TsharkEspOptions.esn`). */
  esn: boolean;
}

export interface TsharkEspOptions {
  /**
   * What to do with an ESN SA: 'refuse' (default) throws TSHARK_ESP_UNSUPPORTED;
   * 'as-32-bit' puts it in the table anyway, for a test that shows tshark 4.0 then
   * reports the packets as ICV bad.
   */
  esn?: 'refuse' | 'as-32-bit';
  /** Extra `-o name:value` preferences. */
  prefs?: readonly string[];
  /** UDP ports besides 4500 (which tshark decodes as ESP-in-UDP by default) to decode as `udpencap`. */
  udpEncapPorts?: readonly number[];
}

/** tshark's decode of one packet. */
export interface TsharkEspPacket {
  /** 1-based frame number. */
  frame: number;
  /** frame.protocols split on ':' (e.g. eth, ethertype, ip, udp, udpencap, esp, gre, eth, …). */
  protocols: string[];
  /** Every requested field: all occurrences, in packet order (absent when none). */
  fields: Record<string, string[]>;
  /** Fields of the outer stack (protocols before ESP, and ESP itself): their occurrence there. */
  outer: Record<string, string>;
  /** Fields of the decrypted payload (protocols after ESP): their first occurrence there. */
  inner: Record<string, string>;
}

export type TsharkEspErrorCode = 'TSHARK_ESP_UNSUPPORTED' | 'TSHARK_ESP_BAD_ARGUMENT' | 'TSHARK_ESP_FAILED';

/** The helper was asked for something tshark cannot do, was given a bad argument, or tshark failed. */
export class TsharkEspError extends Error {
  constructor(
    readonly code: TsharkEspErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'TsharkEspError';
  }
}

function spiText(spi: number | string, i: number): string {
  const v = typeof spi === 'string' ? Number(spi) : spi;
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) {
    throw new TsharkEspError('TSHARK_ESP_BAD_ARGUMENT', `sas[${i}].spi must be a 32-bit number, got ${JSON.stringify(spi)}`);
  }
  return `0x${v.toString(16).padStart(8, '0')}`;
}

function addressText(addr: string, family: 'ipv4' | 'ipv6', field: string, i: number): string {
  if (addr === '*') return addr;
  const want = family === 'ipv4' ? 4 : 6;
  if (isIP(addr) !== want) {
    throw new TsharkEspError('TSHARK_ESP_BAD_ARGUMENT', `sas[${i}].${field} must be an ${family} address or "*", got ${JSON.stringify(addr)}`);
  }
  return addr;
}

/** The esp_sa line of one SA (8 quoted fields; authentication NULL, as AES-GCM requires). */
export function espSaLine(sa: TsharkEspSa, i = 0, opts: TsharkEspOptions = {}): string {
  const expected = KEYMAT_BYTES[sa.algorithm];
  if (expected === undefined) {
    throw new TsharkEspError(
      'TSHARK_ESP_UNSUPPORTED',
      `sas[${i}]: tshark 4.0 cannot decrypt ${sa.algorithm}; it has AES-GCM (RFC 4106) only — check ChaCha20-Poly1305 with the scapy peer`,
    );
  }
  if (sa.esn && (opts.esn ?? 'refuse') === 'refuse') {
    throw new TsharkEspError(
      'TSHARK_ESP_UNSUPPORTED',
      `sas[${i}]: tshark 4.0 has no extended sequence numbers (its AAD is SPI ‖ 32-bit seq); use an SA with esn false, or the scapy peer`,
    );
  }
  if (sa.family !== 'ipv4' && sa.family !== 'ipv6') {
    throw new TsharkEspError('TSHARK_ESP_BAD_ARGUMENT', `sas[${i}].family must be "ipv4" or "ipv6", got ${JSON.stringify(sa.family)}`);
  }
  const keyHex = typeof sa.keymat === 'string' ? sa.keymat.replace(/^0x/i, '') : Buffer.from(sa.keymat).toString('hex');
  if (!/^[0-9a-fA-F]*$/.test(keyHex) || keyHex.length !== expected * 2) {
    throw new TsharkEspError(
      'TSHARK_ESP_BAD_ARGUMENT',
      `sas[${i}].keymat must be ${expected} octets of hex for ${sa.algorithm} (key ‖ 4-octet salt), got ${keyHex.length / 2}`,
    );
  }
  const family = sa.family === 'ipv4' ? 'IPv4' : 'IPv6';
  const src = addressText(sa.src, sa.family, 'src', i);
  const dst = addressText(sa.dst, sa.family, 'dst', i);
  const fieldsOut = [family, src, dst, spiText(sa.spi, i), WIRESHARK_AES_GCM_16, `0x${keyHex.toLowerCase()}`, 'NULL', ''];
  return fieldsOut.map((f) => `"${f}"`).join(',');
}

function runTshark(args: string[], configDir: string): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    execFile(
      'tshark',
      args,
      {
        timeout: RUN_TIMEOUT_MS,
        maxBuffer: 256 * 1024 * 1024,
        encoding: 'utf8',
        env: { ...process.env, WIRESHARK_CONFIG_DIR: configDir },
      },
      (err, stdout, stderr) => {
        if (err) {
          // tshark warns "Running as user root…" on stderr; only a failure's stderr matters.
          const why = stderr
            .split('\n')
            .filter((l) => l.trim() !== '' && !l.startsWith('Running as user'))
            .join('; ');
          reject(new TsharkEspError('TSHARK_ESP_FAILED', `tshark ${args.join(' ')} failed: ${why || err.message}`));
          return;
        }
        resolvePromise(stdout);
      },
    );
  });
}

interface TsharkJsonPacket {
  _source: { layers: Record<string, string[]> };
}

/** The protocol a field belongs to: the part of its name before the first '.'. */
function protocolOf(field: string): string {
  const dot = field.indexOf('.');
  return dot < 0 ? field : field.slice(0, dot);
}

function splitOuterInner(
  protocols: string[],
  fields: Record<string, string[]>,
  requested: readonly string[],
): { outer: Record<string, string>; inner: Record<string, string> } {
  const espAt = protocols.indexOf('esp');
  const outerProtocols = espAt < 0 ? protocols : protocols.slice(0, espAt + 1);
  const outer: Record<string, string> = {};
  const inner: Record<string, string> = {};
  for (const name of requested) {
    const values = fields[name];
    if (values === undefined) continue;
    const proto = protocolOf(name);
    if (proto === 'frame') {
      outer[name] = values[0]!;
      continue;
    }
    // Each header of a protocol contributes one occurrence of a field such as ip.src, so
    // the occurrences up to the outer count belong to the outer stack.
    const outerCount = outerProtocols.filter((p) => p === proto).length;
    if (outerCount > 0 && values.length > 0) outer[name] = values[Math.min(outerCount, values.length) - 1]!;
    if (espAt >= 0 && values.length > outerCount) inner[name] = values[outerCount]!;
  }
  return { outer, inner };
}

/**
 * Decodes outer Ethernet frames (or a capture file: `{ path }`) with tshark, decrypting ESP
 * with the given SAs, and returns `fields` for each packet. Fields that occur once per
 * header (ip.src, eth.dst, udp.dstport, gre.key, vlan.id, esp.icv_good…) are split into
 * `outer` and `inner`; fields with several values per header (ip.addr) are only in `fields`.
 */
export async function tsharkDecryptEsp(
  sas: readonly TsharkEspSa[],
  packets: readonly Uint8Array[] | { path: string },
  fields: readonly string[],
  opts: TsharkEspOptions = {},
): Promise<TsharkEspPacket[]> {
  const table = sas.map((sa, i) => espSaLine(sa, i, opts));
  for (const f of fields) {
    if (!/^[A-Za-z0-9_.-]+$/.test(f)) throw new TsharkEspError('TSHARK_ESP_BAD_ARGUMENT', `not a tshark field name: ${JSON.stringify(f)}`);
  }
  const dir = await mkdtemp(join(tmpdir(), 'st-tshark-'));
  try {
    await writeFile(join(dir, 'esp_sa'), table.map((l) => `${l}\n`).join(''));
    let input: string;
    if ('path' in packets) {
      input = packets.path;
    } else {
      input = join(dir, 'in.pcap');
      await writeFile(input, encodePcap(LINKTYPE_ETHERNET, packets.map((data) => ({ data }))));
    }
    const all = ['frame.number', 'frame.protocols', ...fields.filter((f) => f !== 'frame.number' && f !== 'frame.protocols')];
    const args = [
      '-n',
      '-o',
      'esp.enable_encryption_decode:TRUE',
      '-o',
      'esp.enable_authentication_check:TRUE',
      ...(opts.prefs ?? []).flatMap((p) => ['-o', p]),
      ...(opts.udpEncapPorts ?? []).flatMap((port) => {
        if (!Number.isInteger(port) || port < 1 || port > 65535) {
          throw new TsharkEspError('TSHARK_ESP_BAD_ARGUMENT', `udpEncapPorts: ${port} is not a UDP port`);
        }
        return ['-d', `udp.port==${port},udpencap`];
      }),
      '-r',
      input,
      '-T',
      'json',
      ...all.flatMap((f) => ['-e', f]),
    ];
    const stdout = await runTshark(args, dir);
    let parsed: TsharkJsonPacket[];
    try {
      parsed = JSON.parse(stdout) as TsharkJsonPacket[];
    } catch (e) {
      throw new TsharkEspError('TSHARK_ESP_FAILED', `tshark printed something that is not JSON: ${(e as Error).message}`);
    }
    return parsed.map((p) => {
      const layers = p._source.layers;
      const protocols = (layers['frame.protocols']?.[0] ?? '').split(':').filter((s) => s !== '');
      const got: Record<string, string[]> = {};
      for (const f of fields) if (layers[f] !== undefined) got[f] = layers[f]!;
      return { frame: Number(layers['frame.number']?.[0]), protocols, fields: got, ...splitOuterInner(protocols, got, fields) };
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
