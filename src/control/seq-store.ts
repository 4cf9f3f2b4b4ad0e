/**
 * Outbound sequence-number high-water marks kept across restarts, so that a
 * restarted daemon never sends a sequence number — the AEAD nonce's IV, DESIGN.md
 * "Wire format" — twice under the same key (RFC 4106 §3.1, RFC 7634 §2: nonce
 * reuse under one key breaks AES-GCM and ChaCha20-Poly1305).
 *
 * The daemon reserves numbers in blocks ahead of use: before the counter of an
 * SA passes its mark, `reserveAhead` moves the mark a block further and makes
 * it durable. After a crash the SA resumes at mark + 1; the numbers reserved
 * and not used are skipped, never reused.
 *
 * An SA is identified by its SPI and a key id: a SHA-256 of the KEYMAT under a
 * domain-separation prefix (the key itself is never written). A new key (the
 * operator changed the config) has a new id and starts at 1.
 *
 * Stages of `reserve`: build the whole file text with the new mark → write it
 * to FILE.<pid>.tmp → fsync → rename over FILE → fsync the folder → only then
 * update the mark in memory. A crash at any point leaves either the old or the
 * new file, both valid. `open` reads and verifies the file (shape, ranges,
 * SHA-256 of the entries) and refuses a corrupt one rather than guess.
 */
import { createHash } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { SEQ_MAX_ESN } from '../core/sa.js';

/** Default file name in `state.dir`. */
export const SEQ_STATE_FILE = 'seq-state.json';
/** Numbers reserved per write by `reserveAhead`: 2^20, about one write per 1.5 GB at 1400-byte frames. */
export const DEFAULT_SEQ_BLOCK_PACKETS = 2 ** 20;
/** Mode of the state file and of the folder when created: owner only. */
export const SEQ_STATE_FILE_MODE = 0o600;
export const SEQ_STATE_DIR_MODE = 0o700;

const FORMAT = 'sectunnel-seq-state';
const VERSION = 1;
const KEY_ID_PREFIX = 'sectunnel seq-store key id v1\0';
const KEY_ID = /^[0-9a-f]{32}$/;
const SPI_TEXT = /^0x[0-9a-f]{8}$/;

/** Which outbound SA a mark belongs to. */
export interface SeqKey {
  readonly spi: number;
  /** 32 hex digits: `seqKeyId(keymat)`. */
  readonly keyId: string;
}

/** The key id of KEYMAT: the first 16 octets of SHA-256(prefix ‖ keymat), as hex. Reveals nothing usable about the key. */
export function seqKeyId(keymat: Uint8Array): string {
  return createHash('sha256').update(KEY_ID_PREFIX).update(keymat).digest('hex').slice(0, 32);
}

/** The SeqKey of an outbound SA. */
export function seqKeyOf(spi: number, keymat: Uint8Array): SeqKey {
  return { spi, keyId: seqKeyId(keymat) };
}

export type SeqStoreErrorCode = 'SEQ_STATE_CORRUPT' | 'SEQ_STATE_IO' | 'SEQ_STATE_RANGE';

/** The state file cannot be read, trusted or written; the message names the file and what to do. */
export class SeqStoreError extends Error {
  override readonly name = 'SeqStoreError';
  constructor(
    readonly code: SeqStoreErrorCode,
    readonly file: string,
    message: string,
  ) {
    super(message);
  }
}

export interface SeqStoreOptions {
  /** File name in the folder; default `seq-state.json`. Daemons sharing a state.dir need different names. */
  fileName?: string;
  /** Numbers per `reserveAhead`; default 2^20. */
  blockPackets?: number;
  /**
   * Start empty: a present file (even a corrupt one) is renamed FILE.reset-<time> and
   * ignored. Only safe when every key has changed since it was written (`--reset-seq-state`).
   */
  reset?: boolean;
}

interface Entry {
  spi: number;
  keyId: string;
  reservedUpTo: number;
}

function mapKey(k: SeqKey): string {
  return `${k.spi}/${k.keyId}`;
}

function spiText(spi: number): string {
  return `0x${spi.toString(16).padStart(8, '0')}`;
}

function errnoText(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  return err.code === 'EACCES' || err.code === 'EPERM' ? `permission denied (${err.code})` : `${err.code ?? 'error'}: ${err.message}`;
}

/** Durable per-SA sequence-number marks in one file of `state.dir`. Every method is synchronous. */
export class SeqStore {
  readonly dir: string;
  readonly file: string;
  readonly blockPackets: number;
  /** Durable writes done (for metrics/tests). */
  writes = 0;
  private readonly marks = new Map<string, Entry>();
  private readonly tmp: string;

  private constructor(dir: string, fileName: string, blockPackets: number) {
    this.dir = dir;
    this.file = join(dir, fileName);
    this.tmp = `${this.file}.${process.pid}.tmp`;
    this.blockPackets = blockPackets;
  }

  /**
   * Opens (creating the folder 0700 if needed) and verifies the state; a missing file is an
   * empty state. Throws SeqStoreError: SEQ_STATE_CORRUPT (refuse to start), SEQ_STATE_IO.
   */
  static open(dir: string, opts: SeqStoreOptions = {}): SeqStore {
    const fileName = opts.fileName ?? SEQ_STATE_FILE;
    const block = opts.blockPackets ?? DEFAULT_SEQ_BLOCK_PACKETS;
    if (fileName === '' || fileName.includes('/') || fileName === '.' || fileName === '..') {
      throw new SeqStoreError('SEQ_STATE_RANGE', join(dir, fileName), `sequence state file name ${JSON.stringify(fileName)} must be a plain file name`);
    }
    if (!Number.isSafeInteger(block) || block < 1) {
      throw new SeqStoreError('SEQ_STATE_RANGE', join(dir, fileName), `blockPackets ${String(block)} is not an integer >= 1`);
    }
    const store = new SeqStore(dir, fileName, block);
    try {
      const created = mkdirSync(dir, { recursive: true, mode: SEQ_STATE_DIR_MODE });
      // New folders are entries of their parents: make them durable too, or a crash could take the file with them.
      if (created !== undefined) {
        for (let d = dir; ; d = dirname(d)) {
          fsyncPath(dirname(d));
          if (d === created || dirname(d) === d) break;
        }
      }
    } catch (e) {
      throw new SeqStoreError('SEQ_STATE_IO', store.file, `cannot create the state folder ${dir}: ${errnoText(e)}`);
    }
    store.removeStaleTemps(fileName);
    let text: string | null;
    try {
      text = readFileSync(store.file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new SeqStoreError('SEQ_STATE_IO', store.file, `cannot read the sequence-number state ${store.file}: ${errnoText(e)}; refusing to start without it`);
      }
      text = null;
    }
    if (text !== null && opts.reset) {
      const aside = `${store.file}.reset-${new Date().toISOString().replace(/[:.]/g, '-')}`;
      try {
        renameSync(store.file, aside);
        store.syncDir();
      } catch (e) {
        throw new SeqStoreError('SEQ_STATE_IO', store.file, `cannot move ${store.file} aside for the reset: ${errnoText(e)}`);
      }
      text = null;
    }
    if (text !== null) for (const e of parseState(text, store.file)) store.marks.set(mapKey(e), e);
    return store;
  }

  /** The highest number reserved for the SA (0 if none). */
  reservedUpTo(key: SeqKey): number {
    return this.marks.get(mapKey(key))?.reservedUpTo ?? 0;
  }

  /** The first sequence number the SA may send after a (re)start: reserved mark + 1 (1 for a key never seen). */
  resumeFrom(key: SeqKey): number {
    return this.reservedUpTo(key) + 1;
  }

  /**
   * Makes `uptoSeq` the SA's durable mark (no write if the mark is already at or above it:
   * marks never go down). Synchronous and fsync'd; throws SeqStoreError if it cannot be made
   * durable, in which case the SA must not send past its old mark.
   */
  reserve(key: SeqKey, uptoSeq: number): void {
    if (!Number.isSafeInteger(key.spi) || key.spi < 0 || key.spi > 0xffffffff || !KEY_ID.test(key.keyId)) {
      throw new SeqStoreError('SEQ_STATE_RANGE', this.file, `bad SA identity spi=${String(key.spi)} keyId=${JSON.stringify(key.keyId)}`);
    }
    if (!Number.isSafeInteger(uptoSeq) || uptoSeq < 0 || uptoSeq > SEQ_MAX_ESN) {
      throw new SeqStoreError('SEQ_STATE_RANGE', this.file, `sequence number ${String(uptoSeq)} for SPI ${spiText(key.spi)} is not an integer in 0..${SEQ_MAX_ESN}`);
    }
    if (uptoSeq <= this.reservedUpTo(key)) return;
    const next = new Map(this.marks);
    next.set(mapKey(key), { spi: key.spi, keyId: key.keyId, reservedUpTo: uptoSeq });
    this.persist([...next.values()]);
    this.marks.set(mapKey(key), { spi: key.spi, keyId: key.keyId, reservedUpTo: uptoSeq });
  }

  /**
   * Reserves a block ahead of `nextSeq` (the next number the SA will send): the mark becomes
   * nextSeq − 1 + blockPackets (at most SEQ_MAX_ESN). Returns the new mark.
   */
  reserveAhead(key: SeqKey, nextSeq: number): number {
    const upto = Math.min(SEQ_MAX_ESN, nextSeq - 1 + this.blockPackets);
    this.reserve(key, upto);
    return this.reservedUpTo(key);
  }

  /** True when fewer than half a block of reserved numbers remain before `nextSeq` catches up: time to `reserveAhead`. */
  needsReserve(key: SeqKey, nextSeq: number): boolean {
    return this.reservedUpTo(key) - nextSeq < this.blockPackets / 2;
  }

  /**
   * Drops the mark of a key that will never be used again (a handshake key after its SA is
   * destroyed). Never call it for a static key: if the key came back it would restart at 1.
   */
  forget(key: SeqKey): void {
    if (!this.marks.has(mapKey(key))) return;
    const next = new Map(this.marks);
    next.delete(mapKey(key));
    this.persist([...next.values()]);
    this.marks.delete(mapKey(key));
  }

  /** Every mark, sorted by SPI then key id. */
  entries(): { spi: number; keyId: string; reservedUpTo: number }[] {
    return sortEntries([...this.marks.values()]).map((e) => ({ ...e }));
  }

  /** Writes the whole state to a temp file, fsyncs it, renames it over the file, fsyncs the folder. */
  private persist(entries: Entry[]): void {
    const text = serialiseState(entries);
    let fd: number | null = null;
    try {
      fd = openSync(this.tmp, 'w', SEQ_STATE_FILE_MODE);
      const bytes = Buffer.from(text, 'utf8');
      let off = 0;
      while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
      fsyncSync(fd);
      closeSync(fd);
      fd = null;
      renameSync(this.tmp, this.file);
      this.syncDir();
      this.writes++;
    } catch (e) {
      if (fd !== null) {
        try {
          closeSync(fd);
        } catch {
          // Already failing; the first error is the one to report.
        }
      }
      try {
        unlinkSync(this.tmp);
      } catch {
        // Not there (or renamed already).
      }
      throw new SeqStoreError('SEQ_STATE_IO', this.file, `cannot save the sequence-number state ${this.file}: ${errnoText(e)}`);
    }
  }

  private syncDir(): void {
    fsyncPath(this.dir);
  }

  /** Temp files a crashed writer left behind: never read, only removed (the rename never happened). */
  private removeStaleTemps(fileName: string): void {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch {
      return;
    }
    const re = new RegExp(`^${fileName.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.[0-9]+\\.tmp$`);
    for (const n of names) {
      if (!re.test(n)) continue;
      try {
        unlinkSync(join(this.dir, n));
      } catch {
        // Another process's, or gone: harmless either way.
      }
    }
  }
}

/** fsync of a folder (or file) by path. */
function fsyncPath(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function sortEntries(entries: Entry[]): Entry[] {
  return entries.sort((a, b) => a.spi - b.spi || (a.keyId < b.keyId ? -1 : a.keyId > b.keyId ? 1 : 0));
}

/** The entries as the file stores them (and as the checksum covers them). */
function canonicalEntries(entries: Entry[]): string {
  return JSON.stringify(sortEntries([...entries]).map((e) => ({ spi: spiText(e.spi), keyId: e.keyId, reservedUpTo: e.reservedUpTo })));
}

function serialiseState(entries: Entry[]): string {
  const canon = canonicalEntries(entries);
  const sha256 = createHash('sha256').update(canon).digest('hex');
  const shown = JSON.parse(canon) as unknown[];
  return JSON.stringify({ format: FORMAT, version: VERSION, entries: shown, sha256 }, null, 1) + '\n';
}

function corrupt(file: string, detail: string): SeqStoreError {
  return new SeqStoreError(
    'SEQ_STATE_CORRUPT',
    file,
    `refusing to start: the sequence-number state ${file} is corrupt (${detail}). ` +
      'Starting without it could reuse sequence numbers (AEAD nonces) under unchanged keys. ' +
      'Restore the file from a backup; or, only if every static key (keymat) in the config has been changed since it was written, ' +
      'start once with --reset-seq-state.',
  );
}

function parseState(text: string, file: string): Entry[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw corrupt(file, `not JSON: ${(e as Error).message}`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw corrupt(file, 'not a JSON object');
  const d = doc as Record<string, unknown>;
  if (d.format !== FORMAT) throw corrupt(file, `format is ${JSON.stringify(d.format)}, expected ${JSON.stringify(FORMAT)}`);
  if (d.version !== VERSION) throw corrupt(file, `version ${JSON.stringify(d.version)} is not ${VERSION} (written by another sectunnel version?)`);
  if (!Array.isArray(d.entries)) throw corrupt(file, 'entries is not a list');
  const out: Entry[] = [];
  const seen = new Set<string>();
  d.entries.forEach((raw: unknown, i: number) => {
    const at = `entries[${i}]`;
    if (typeof raw !== 'object' || raw === null) throw corrupt(file, `${at} is not an object`);
    const r = raw as Record<string, unknown>;
    if (typeof r.spi !== 'string' || !SPI_TEXT.test(r.spi)) throw corrupt(file, `${at}.spi ${JSON.stringify(r.spi)} is not "0x" and 8 hex digits`);
    if (typeof r.keyId !== 'string' || !KEY_ID.test(r.keyId)) throw corrupt(file, `${at}.keyId is not 32 hex digits`);
    const upto = r.reservedUpTo;
    if (typeof upto !== 'number' || !Number.isSafeInteger(upto) || upto < 0 || upto > SEQ_MAX_ESN) {
      throw corrupt(file, `${at}.reservedUpTo ${JSON.stringify(upto)} is not an integer in 0..${SEQ_MAX_ESN}`);
    }
    const e: Entry = { spi: parseInt(r.spi.slice(2), 16), keyId: r.keyId, reservedUpTo: upto };
    if (seen.has(mapKey(e))) throw corrupt(file, `${at} repeats SPI ${r.spi} with the same key id`);
    seen.add(mapKey(e));
    out.push(e);
  });
  const sha256 = createHash('sha256').update(canonicalEntries(out)).digest('hex');
  if (d.sha256 !== sha256) throw corrupt(file, 'checksum mismatch: the entries were changed or damaged after they were written');
  return out;
}
