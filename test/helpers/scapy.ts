// TypeScript side of the scapy ESP peer (test/conformance/tools/scapy_peer.py): an ESP
// implementation that shares no code with sectunnel, driven through pcap files in a
// private temp folder. scapyEncrypt seals inner tagged frames into outer packets;
// scapyDecrypt opens outer packets and checks the trailer, GRE and 802.1Q tag.
// Gate the tests that use it with itWith(['scapy'], …) from ./tools.ts.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AeadAlgorithm } from '../../src/crypto/aead.js';
import { readCaptureFile } from '../../src/io/pcap-file.js';
import { LINKTYPE_ETHERNET, encodePcap } from '../../src/wire/pcap.js';

/** The interpreter scapy is installed for (Debian's python3-scapy). */
export const SCAPY_PYTHON = '/usr/bin/python3';
/** The peer script. */
export const SCAPY_PEER_PATH = fileURLToPath(new URL('../conformance/tools/scapy_peer.py', import.meta.url));
/** Upper bound on one run of the peer (it starts in about half a second). */
const RUN_TIMEOUT_MS = 120_000;

/** One SA as the peer's SA.json takes it. */
export interface ScapySa {
  /** 32-bit SPI: a number or "0x…" text. */
  spi: number | string;
  algorithm: AeadAlgorithm;
  /** key ‖ 4-octet salt, as bytes or hex. */
  keymat: Uint8Array | string;
  esn: boolean;
  /** Outer source and destination (the sender's and the receiver's host addresses). */
  src: string;
  dst: string;
  encapsulation: 'udp' | 'esp';
  /** GRE key; null for a keyless label; undefined (left out) for sectunnel's default, VLAN id << 8. */
  greKey?: number | null;
}

export interface ScapyEncryptOptions {
  /** Sequence number of the first packet (default 1; up to 2^64 − 1 with ESN). The IV is the 64-bit number. */
  firstSeq?: number | bigint;
  /** ESP next header to send instead of 47, for negative tests. */
  nextHeader?: number;
  /** Outer Ethernet addresses (defaults 02:00:00:00:00:01 → 02:00:00:00:00:02). */
  ethSrc?: string;
  ethDst?: string;
}

export interface ScapyDecryptOptions {
  /** The first sequence number expected: ESN inference (RFC 4303 App. A2) starts from it minus 1. Default 1. */
  firstSeq?: number | bigint;
  /** Window W of the ESN inference (default 4096). */
  esnWindow?: number;
}

/** The peer's verdict on one outer packet. */
export interface ScapyVerdict {
  /** 1-based packet number. */
  frame: number;
  /** True if it authenticated and every check passed. */
  ok: boolean;
  /** "0x%08x", or null if the packet had no ESP header. */
  spi: string | null;
  /** Full sequence number (64-bit with ESN: the inferred high half ‖ the wire's low half). */
  seq: bigint | null;
  seqHi: number | null;
  seqLo: number | null;
  greKey: number | null;
  vlan: number | null;
  nextHeader: number | null;
  padLen: number | null;
  /**
   * Null, or why the packet failed: sectunnel's drop reason where one fits (truncated,
   * unknown_spi, icv_mismatch, bad_pad_length, bad_padding_content, unexpected_next_header,
   * dummy_packet, gre_malformed, gre_checksum, gre_unknown_key, inner_untagged,
   * inner_malformed, udp_zero_checksum_v6, not_esp, nat_keepalive, non_esp_marker) or a
   * checker's own (wrong_address, wrong_encapsulation, udp_bad_length, udp_bad_checksum,
   * ip_bad_checksum, fragment, checker_error).
   */
  error: string | null;
  /** Human-readable detail of the error. */
  detail: string | null;
  /** The inner frame with its 802.1Q tag, for an ok packet. */
  inner: Uint8Array | null;
}

/** The peer exited non-zero: `exitCode` 2 is bad input (message on stderr). */
export class ScapyPeerError extends Error {
  readonly code = 'SCAPY_PEER_FAILED';
  constructor(
    readonly exitCode: number | null,
    readonly stderr: string,
    args: readonly string[],
  ) {
    super(`scapy_peer ${args[0] ?? ''} exited ${exitCode ?? 'by a signal'}: ${stderr.trim() || '(no message)'}`);
    this.name = 'ScapyPeerError';
  }
}

/** Result of one run of the peer. */
export interface ScapyRun {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Runs `python3 scapy_peer.py ARGS`; resolves with the exit code (never rejects for a non-zero exit). */
export function runScapyPeer(args: readonly string[]): Promise<ScapyRun> {
  return new Promise((resolvePromise, reject) => {
    execFile(
      SCAPY_PYTHON,
      [SCAPY_PEER_PATH, ...args],
      { timeout: RUN_TIMEOUT_MS, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' },
      (err, stdout, stderr) => {
        if (err && typeof err.code !== 'number') {
          reject(new Error(`cannot run ${SCAPY_PYTHON} ${SCAPY_PEER_PATH}: ${err.message}`, { cause: err }));
          return;
        }
        resolvePromise({ exitCode: err ? (err.code as number) : 0, stdout, stderr });
      },
    );
  });
}

/** SA.json text of an SA (greKey left out when undefined, so the peer uses the default). */
export function scapySaJson(sa: ScapySa): Record<string, unknown> {
  const keymat = typeof sa.keymat === 'string' ? sa.keymat : Buffer.from(sa.keymat).toString('hex');
  const spi = typeof sa.spi === 'string' ? sa.spi : `0x${sa.spi.toString(16).padStart(8, '0')}`;
  const out: Record<string, unknown> = {
    spi,
    algorithm: sa.algorithm,
    keymat,
    esn: sa.esn,
    src: sa.src,
    dst: sa.dst,
    encapsulation: sa.encapsulation,
  };
  if (sa.greKey !== undefined) out.greKey = sa.greKey;
  return out;
}

async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'st-scapy-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function runOrThrow(args: string[]): Promise<void> {
  const r = await runScapyPeer(args);
  if (r.exitCode !== 0) throw new ScapyPeerError(r.exitCode, r.stderr, args);
}

async function readFrames(path: string): Promise<Uint8Array[]> {
  const file = await readCaptureFile(path);
  return file.records.map((r) => {
    if (r.linkType !== LINKTYPE_ETHERNET) throw new Error(`${path}: link type ${r.linkType}, expected Ethernet`);
    return r.data.slice();
  });
}

/**
 * Seals each inner Ethernet frame (with its 802.1Q tag) with scapy as sectunnel's wire
 * format says: outer IP | [UDP 4500] | ESP | GRE | frame. Returns the outer Ethernet frames.
 */
export async function scapyEncrypt(
  sa: ScapySa,
  innerFrames: readonly Uint8Array[],
  opts: ScapyEncryptOptions = {},
): Promise<Uint8Array[]> {
  return withTempDir(async (dir) => {
    const saPath = join(dir, 'sa.json');
    const inPath = join(dir, 'inner.pcap');
    const outPath = join(dir, 'outer.pcap');
    await writeFile(saPath, JSON.stringify(scapySaJson(sa)));
    await writeFile(inPath, encodePcap(LINKTYPE_ETHERNET, innerFrames.map((data) => ({ data }))));
    const args = ['encrypt', '--sa', saPath, '--in', inPath, '--out', outPath];
    if (opts.firstSeq !== undefined) args.push('--first-seq', String(opts.firstSeq));
    if (opts.nextHeader !== undefined) args.push('--next-header', String(opts.nextHeader));
    if (opts.ethSrc !== undefined) args.push('--eth-src', opts.ethSrc);
    if (opts.ethDst !== undefined) args.push('--eth-dst', opts.ethDst);
    await runOrThrow(args);
    const outer = await readFrames(outPath);
    if (outer.length !== innerFrames.length) {
      throw new Error(`scapy_peer encrypt wrote ${outer.length} packets for ${innerFrames.length} frames`);
    }
    return outer;
  });
}

interface RawVerdict {
  frame: number;
  ok: boolean;
  spi: string | null;
  seq: number | null;
  seq_hi: number | null;
  seq_lo: number | null;
  gre_key: number | null;
  vlan: number | null;
  next_header: number | null;
  pad_len: number | null;
  error: string | null;
  detail: string | null;
  inner: string | null;
}

function toVerdict(v: RawVerdict): ScapyVerdict {
  let seq: bigint | null = null;
  if (v.seq_lo !== null) seq = (BigInt(v.seq_hi ?? 0) << 32n) | BigInt(v.seq_lo);
  return {
    frame: v.frame,
    ok: v.ok,
    spi: v.spi,
    seq,
    seqHi: v.seq_hi,
    seqLo: v.seq_lo,
    greKey: v.gre_key,
    vlan: v.vlan,
    nextHeader: v.next_header,
    padLen: v.pad_len,
    error: v.error,
    detail: v.detail,
    inner: v.inner === null ? null : new Uint8Array(Buffer.from(v.inner, 'hex')),
  };
}

/**
 * Opens outer Ethernet frames with scapy under one SA or several (chosen by SPI, then
 * addresses) and checks them; one verdict per packet, in order.
 */
export async function scapyDecrypt(
  sas: ScapySa | readonly ScapySa[],
  outerPackets: readonly Uint8Array[],
  opts: ScapyDecryptOptions = {},
): Promise<ScapyVerdict[]> {
  return withTempDir(async (dir) => {
    const saPath = join(dir, 'sa.json');
    const inPath = join(dir, 'outer.pcap');
    const outPath = join(dir, 'inner.pcap');
    const verdictPath = join(dir, 'verdicts.jsonl');
    const list = Array.isArray(sas) ? (sas as readonly ScapySa[]) : [sas as ScapySa];
    await writeFile(saPath, JSON.stringify(list.map(scapySaJson)));
    await writeFile(inPath, encodePcap(LINKTYPE_ETHERNET, outerPackets.map((data) => ({ data }))));
    const args = ['decrypt', '--sa', saPath, '--in', inPath, '--out', outPath, '--verdicts', verdictPath];
    if (opts.firstSeq !== undefined) args.push('--first-seq', String(opts.firstSeq));
    if (opts.esnWindow !== undefined) args.push('--esn-window', String(opts.esnWindow));
    await runOrThrow(args);
    const text = await readFile(verdictPath, 'utf8');
    const verdicts = text
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => toVerdict(JSON.parse(l) as RawVerdict));
    if (verdicts.length !== outerPackets.length) {
      throw new Error(`scapy_peer decrypt wrote ${verdicts.length} verdicts for ${outerPackets.length} packets`);
    }
    // The pcap holds the inner frames of the ok packets, in order: the same bytes as the verdicts.
    const inner = await readFrames(outPath);
    const okInner = verdicts.filter((v) => v.ok).map((v) => v.inner!);
    if (inner.length !== okInner.length || inner.some((f, i) => Buffer.compare(f, okInner[i]!) !== 0)) {
      throw new Error('scapy_peer decrypt: the inner pcap disagrees with the verdicts');
    }
    return verdicts;
  });
}
