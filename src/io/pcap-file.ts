/**
 * Capture files on disk: read pcap or pcapng (auto-detected) and write pcap, around the
 * pure codec in wire/pcap.ts. Errors name the file and the byte offset:
 * `in.pcap: truncated record header at byte offset 1234`.
 *
 * Memory bound (our choice): `readCaptureFile` loads the whole file and refuses one above
 * `READ_CAPTURE_MAX_BYTES` (256 MiB, or `maxBytes`) with CAPTURE_FILE_TOO_LARGE;
 * `streamCaptureFile` reads any size in chunks and holds at most one chunk plus one
 * record or block (≤ 16 MiB, PCAPNG_MAX_BLOCK_BYTES) at a time.
 *
 * Stages of streamCaptureFile:
 *  1. read a chunk into a window buffer
 *  2. decode items from the window (CaptureDecoder, final = false)
 *  3. when an item is incomplete, move its bytes into a fresh window (big enough for it)
 *     and read on; at EOF decode with final = true so truncation is reported
 *
 * `PcapFileWriter` is synchronous (fs.writeSync of whole buffers): it serves replay and
 * tests, never the daemon's packet path, and a sync writer cannot interleave records.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { open, readFile, stat } from 'node:fs/promises';
import {
  CaptureDecoder,
  type CaptureFormat,
  type PcapErrorCode,
  PcapError,
  type PcapRecord,
  type WritableLinkType,
  PCAP_GLOBAL_HEADER_BYTES,
  PCAP_MAX_CAPLEN_BYTES,
  emitPcapGlobalHeader,
  emitPcapRecord,
  parseCapture,
  pcapRecordBytes,
  timeNsToPcapUsec,
} from '../wire/pcap.js';

/** Largest file readCaptureFile loads whole by default (use streamCaptureFile for more). */
export const READ_CAPTURE_MAX_BYTES = 256 * 1024 * 1024;
/** Bytes streamCaptureFile reads per call. */
export const STREAM_CHUNK_BYTES = 1024 * 1024;
/** Default write buffer of PcapFileWriter. */
export const WRITE_BUFFER_BYTES = 1024 * 1024;
/** Smallest write buffer: the file header and one largest record must fit. */
export const WRITE_BUFFER_MIN_BYTES = PCAP_GLOBAL_HEADER_BYTES + pcapRecordBytes(PCAP_MAX_CAPLEN_BYTES);

export type CaptureFileErrorCode = PcapErrorCode | 'CAPTURE_FILE_TOO_LARGE' | 'CAPTURE_FILE_IO' | 'CAPTURE_FILE_CLOSED';

/** A capture file could not be read or written: stable `code`, the `path`, and the byte offset if known. */
export class CaptureFileError extends Error {
  constructor(
    readonly code: CaptureFileErrorCode,
    readonly path: string,
    readonly offset: number | null,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(`${path}: ${detail}`, options);
    this.name = 'CaptureFileError';
  }

  /** Wraps a decoder error with the file's path. */
  static fromPcap(path: string, e: PcapError): CaptureFileError {
    return new CaptureFileError(e.code, path, e.offset, e.message, { cause: e });
  }
}

function ioError(path: string, offset: number | null, action: string, e: unknown): CaptureFileError {
  const why = e instanceof Error ? e.message : String(e);
  return new CaptureFileError('CAPTURE_FILE_IO', path, offset, `cannot ${action}: ${why}`, { cause: e });
}

/** A whole capture file in memory. */
export interface CaptureFile {
  format: CaptureFormat;
  /** Records; their `data` are views into one buffer holding the file. */
  records: PcapRecord[];
}

/** Reads a whole pcap or pcapng file (format detected from its magic); refuses files above `maxBytes`. */
export async function readCaptureFile(path: string, opts: { maxBytes?: number } = {}): Promise<CaptureFile> {
  const maxBytes = opts.maxBytes ?? READ_CAPTURE_MAX_BYTES;
  let size: number;
  try {
    size = (await stat(path)).size;
  } catch (e) {
    throw ioError(path, null, 'read', e);
  }
  if (size > maxBytes) {
    throw new CaptureFileError(
      'CAPTURE_FILE_TOO_LARGE',
      path,
      null,
      `file is ${size} bytes, above the ${maxBytes}-byte limit of readCaptureFile (use streamCaptureFile)`,
    );
  }
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (e) {
    throw ioError(path, null, 'read', e);
  }
  const parsed = parseCapture(bytes);
  if (parsed.error) throw CaptureFileError.fromPcap(path, parsed.error);
  // No error means the header was read, so the format is known.
  return { format: parsed.format!, records: parsed.records };
}

/**
 * Yields the records of a pcap or pcapng file of any size, reading `chunkBytes` at a time.
 * A record's `data` stays valid after the iteration moves on (windows are never reused).
 */
export async function* streamCaptureFile(
  path: string,
  opts: { chunkBytes?: number } = {},
): AsyncGenerator<PcapRecord, void, undefined> {
  const chunkBytes = opts.chunkBytes ?? STREAM_CHUNK_BYTES;
  if (!Number.isInteger(chunkBytes) || chunkBytes < 1) {
    throw new RangeError(`streamCaptureFile: chunkBytes must be a positive integer, got ${chunkBytes}`);
  }
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    throw ioError(path, null, 'open', e);
  }
  try {
    const decoder = new CaptureDecoder();
    let window = new Uint8Array(chunkBytes);
    let filled = 0; // bytes of window holding file data
    let pos = 0; // next undecoded byte in window
    let base = 0; // file offset of window[0]
    let eof = false;
    let view = window.subarray(0, 0); // window[0, filled): one view per refill, not per step
    for (;;) {
      const s = decoder.step(view, pos, eof, base);
      if (s.kind === 'record') {
        pos = s.next;
        yield s.record;
      } else if (s.kind === 'skip') {
        pos = s.next;
      } else if (s.kind === 'end') {
        return;
      } else if (s.kind === 'error') {
        throw CaptureFileError.fromPcap(path, s.error);
      } else {
        // 'more': start a fresh window with the partial item, big enough for all of it.
        const rest = filled - pos;
        if (pos > 0 || s.need > window.length) {
          const fresh = new Uint8Array(Math.max(chunkBytes, s.need + chunkBytes));
          fresh.set(window.subarray(pos, filled));
          window = fresh;
          base += pos;
          filled = rest;
          pos = 0;
        }
        let n: number;
        try {
          n = (await fh.read(window, filled, window.length - filled, base + filled)).bytesRead;
        } catch (e) {
          throw ioError(path, base + filled, 'read', e);
        }
        if (n === 0) eof = true;
        filled += n;
        view = window.subarray(0, filled);
      }
    }
  } finally {
    await fh.close();
  }
}

/** Writes a classic pcap file (little-endian, microseconds) through a buffer flushed when full and on close. */
export class PcapFileWriter {
  private readonly buf: Uint8Array;
  private used = 0;
  private flushedBytes = 0;
  private fd: number | null;
  /** Records written so far. */
  recordCount = 0;

  private constructor(
    readonly path: string,
    readonly linkType: WritableLinkType,
    fd: number,
    bufferBytes: number,
  ) {
    this.fd = fd;
    this.buf = new Uint8Array(bufferBytes);
    this.used = emitPcapGlobalHeader(this.buf, 0, linkType);
  }

  /** Creates (or truncates) `path` and buffers the file header for `linkType` (1 Ethernet, 101 raw IP). */
  static open(path: string, linkType: WritableLinkType, opts: { bufferBytes?: number } = {}): PcapFileWriter {
    const bufferBytes = opts.bufferBytes ?? WRITE_BUFFER_BYTES;
    if (!Number.isInteger(bufferBytes) || bufferBytes < WRITE_BUFFER_MIN_BYTES) {
      throw new RangeError(`PcapFileWriter: bufferBytes must be an integer >= ${WRITE_BUFFER_MIN_BYTES}, got ${bufferBytes}`);
    }
    if (linkType !== 1 && linkType !== 101) {
      throw new RangeError(`PcapFileWriter: linkType must be 1 (Ethernet) or 101 (raw IP), got ${String(linkType)}`);
    }
    let fd: number;
    try {
      fd = openSync(path, 'w');
    } catch (e) {
      throw ioError(path, null, 'create', e);
    }
    return new PcapFileWriter(path, linkType, fd, bufferBytes);
  }

  /** Bytes of the file so far (flushed and buffered). */
  get byteCount(): number {
    return this.flushedBytes + this.used;
  }

  /** Appends one record; `tsNs` is nanoseconds since the epoch (stored to the microsecond). */
  write(data: Uint8Array, tsNs: bigint | number, origLen: number = data.length): void {
    if (this.fd === null) throw new CaptureFileError('CAPTURE_FILE_CLOSED', this.path, this.byteCount, 'write after close');
    const ns = typeof tsNs === 'bigint' ? tsNs : BigInt(Math.trunc(tsNs));
    const { tsSec, tsUsec } = timeNsToPcapUsec(ns);
    const need = pcapRecordBytes(data.length);
    if (this.used + need > this.buf.length) this.flush();
    this.used = emitPcapRecord(this.buf, this.used, data, tsSec, tsUsec, origLen);
    this.recordCount++;
  }

  /** Writes the buffered bytes to the file. */
  flush(): void {
    if (this.fd === null) throw new CaptureFileError('CAPTURE_FILE_CLOSED', this.path, this.byteCount, 'flush after close');
    let done = 0;
    while (done < this.used) {
      try {
        done += writeSync(this.fd, this.buf, done, this.used - done);
      } catch (e) {
        throw ioError(this.path, this.flushedBytes + done, 'write', e);
      }
    }
    this.flushedBytes += this.used;
    this.used = 0;
  }

  /** Flushes and closes the file; a second close does nothing. */
  close(): void {
    const fd = this.fd;
    if (fd === null) return;
    let flushError: unknown = null;
    try {
      this.flush();
    } catch (e) {
      flushError = e;
    }
    this.fd = null;
    try {
      closeSync(fd);
    } catch (e) {
      if (flushError === null) throw ioError(this.path, this.flushedBytes, 'close', e);
    }
    if (flushError !== null) throw flushError;
  }
}
