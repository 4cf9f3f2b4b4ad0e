/**
 * The audit sink: JSON lines appended to `audit.path` (or standard output when
 * no path is configured), written asynchronously behind a byte-bounded queue.
 *
 * Stages of one record:
 *   1. `write(record)` (the core Auditor's `sink`): serialise to one line;
 *      if the queue (lines waiting + the batch being written) would pass
 *      `maxQueuedBytes`, count the record as lost and return — a slow or
 *      stuck disk never makes the daemon buffer without limit or block;
 *   2. a drain (started by the first queued line): join every queued line
 *      into one buffer and write it (file: fs.write on the fd, looping over
 *      short writes; stdout: stream.write with its callback);
 *   3. on completion: count the lines as written (or, on a write error, as
 *      lost and report the error once per failure run), then drain again.
 *
 * `reopen()` (on SIGHUP, after logrotate renamed the file) waits for the batch
 * in flight, then opens the path afresh; `close()` drains everything first.
 */
import { close as closeFd, fchmod, mkdir, open as openFd, write as writeFd } from 'node:fs';
import { dirname } from 'node:path';
import type { AuditRecord, AuditSummaryRecord } from '../core/audit.js';

/** Default bound of the queue: lines waiting plus the batch being written. */
export const DEFAULT_AUDIT_QUEUE_BYTES = 1 << 20;
/** Mode of a new audit file (before the umask): owner writes, group reads. */
export const AUDIT_FILE_MODE = 0o640;
/** Mode of folders created for the audit file. */
export const AUDIT_DIR_MODE = 0o750;

export type AuditLogErrorCode = 'AUDIT_OPEN' | 'AUDIT_WRITE' | 'AUDIT_OPTION';

/** An audit file that cannot be opened or written; the message names the path. */
export class AuditLogError extends Error {
  override readonly name = 'AuditLogError';
  constructor(
    readonly code: AuditLogErrorCode,
    readonly path: string,
    message: string,
    cause?: unknown,
  ) {
    super(message, cause === undefined ? undefined : { cause });
  }
}

/** Something lines can be written to when there is no path: process.stdout by default. */
export interface AuditStream {
  write(chunk: Uint8Array, cb: (err?: Error | null) => void): unknown;
}

export interface AuditLogOptions {
  /** Absolute path of the file; absent: `stream`. */
  path?: string;
  /** Where lines go when there is no path; default process.stdout. */
  stream?: AuditStream;
  /** Bound of the queue in bytes (default 1 MiB); records beyond it are lost (counted). */
  maxQueuedBytes?: number;
  /** Called on a write error (once per run of failures) and on a failed reopen; the log keeps going. */
  onError?: (err: AuditLogError) => void;
}

/** Anything the sink writes: the core's records, or another JSON-serialisable object. */
export type AuditLine = AuditRecord | AuditSummaryRecord | Readonly<Record<string, unknown>>;

interface Target {
  /** Writes all of `buf`; `done` once it is written or failed. */
  write(buf: Uint8Array, done: (err: Error | null) => void): void;
  close(done: () => void): void;
}

/** A bounded, asynchronous JSON-lines audit log. */
export class AuditLog {
  /** Records written (their write completed). */
  written = 0;
  /** Records not written: queue full, write failed, or written after close. */
  lost = 0;
  /** Write errors seen (each may lose a batch of records). */
  writeErrors = 0;
  /** Bytes queued or being written now (never above maxQueuedBytes). */
  queuedBytes = 0;
  readonly path: string | null;
  readonly maxQueuedBytes: number;
  /** Pass this as the core Auditor's `sink`. */
  readonly sink: (record: AuditLine) => void;

  private target: Target;
  private readonly onError: (err: AuditLogError) => void;
  private queue: Buffer[] = [];
  private inFlight = false;
  private closed = false;
  private failing = false;
  private idleWaiters: (() => void)[] = [];

  private constructor(path: string | null, target: Target, opts: AuditLogOptions) {
    this.path = path;
    this.target = target;
    this.maxQueuedBytes = opts.maxQueuedBytes ?? DEFAULT_AUDIT_QUEUE_BYTES;
    this.onError = opts.onError ?? (() => {});
    this.sink = (record) => {
      this.write(record);
    };
  }

  /** Opens the file (creating it 0640 and its folder 0750) or takes the stream; throws AuditLogError naming the path. */
  static async open(opts: AuditLogOptions = {}): Promise<AuditLog> {
    const max = opts.maxQueuedBytes ?? DEFAULT_AUDIT_QUEUE_BYTES;
    if (!Number.isInteger(max) || max < 1) {
      throw new AuditLogError('AUDIT_OPTION', opts.path ?? '-', `audit maxQueuedBytes: ${String(max)} is not an integer >= 1`);
    }
    if (opts.path === undefined) return new AuditLog(null, streamTarget(opts.stream ?? process.stdout), opts);
    return new AuditLog(opts.path, await openFileTarget(opts.path), opts);
  }

  /**
   * Queues one record as a JSON line. Returns false (and counts it lost) if the queue is full
   * or the log is closed. Never throws, never blocks.
   */
  write(record: AuditLine): boolean {
    if (this.closed) {
      this.lost++;
      return false;
    }
    let text: string;
    try {
      text = JSON.stringify(record) + '\n';
    } catch {
      this.lost++;
      return false;
    }
    // Cheap pre-check before encoding: UTF-8 is at least one byte per UTF-16 unit.
    if (this.queuedBytes + text.length > this.maxQueuedBytes) {
      this.lost++;
      return false;
    }
    const line = Buffer.from(text, 'utf8');
    if (this.queuedBytes + line.length > this.maxQueuedBytes) {
      this.lost++;
      return false;
    }
    this.queue.push(line);
    this.queuedBytes += line.length;
    if (!this.inFlight) this.drain();
    return true;
  }

  /** Resolves once every record queued before the call has been written (or lost to an error). */
  flush(): Promise<void> {
    if (!this.inFlight && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Reopens the path (log rotation: call on SIGHUP after the file was renamed). Waits for the
   * batch in flight; queued records go to the new file. A failure keeps the old file and throws.
   */
  async reopen(): Promise<void> {
    if (this.path === null || this.closed) return;
    await this.flush();
    const next = await openFileTarget(this.path);
    const old = this.target;
    this.target = next;
    await new Promise<void>((resolve) => old.close(resolve));
  }

  /** Writes everything queued, then closes the file; later records are counted lost. */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.flush();
    this.closed = true;
    await new Promise<void>((resolve) => this.target.close(resolve));
  }

  /** Counters for status and metrics. */
  stats(): { written: number; lost: number; writeErrors: number; queuedBytes: number } {
    return { written: this.written, lost: this.lost, writeErrors: this.writeErrors, queuedBytes: this.queuedBytes };
  }

  private drain(): void {
    if (this.queue.length === 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
      return;
    }
    const lines = this.queue;
    this.queue = [];
    const batch = lines.length === 1 ? lines[0]! : Buffer.concat(lines);
    this.inFlight = true;
    this.target.write(batch, (err) => {
      this.inFlight = false;
      this.queuedBytes -= batch.length;
      if (err === null) {
        this.written += lines.length;
        this.failing = false;
      } else {
        this.lost += lines.length;
        this.writeErrors++;
        if (!this.failing) {
          this.failing = true;
          const code = (err as NodeJS.ErrnoException).code ?? 'error';
          this.onError(new AuditLogError('AUDIT_WRITE', this.path ?? '-', `cannot write audit log ${this.path ?? 'to standard output'}: ${code}: ${err.message}; ${lines.length} record(s) lost`, err));
        }
      }
      this.drain();
    });
  }
}

function streamTarget(stream: AuditStream): Target {
  return {
    write(buf, done) {
      let called = false;
      const once = (err?: Error | null) => {
        if (called) return;
        called = true;
        done(err ?? null);
      };
      try {
        stream.write(buf, once);
      } catch (e) {
        once(e as Error);
      }
    },
    close(done) {
      done(); // standard output belongs to the process
    },
  };
}

function openError(path: string, what: string, err: unknown): AuditLogError {
  const code = (err as NodeJS.ErrnoException).code ?? 'error';
  const why = code === 'EACCES' || code === 'EPERM' ? 'permission denied' : code === 'EISDIR' ? 'is a directory, expected a file' : `${code}: ${(err as Error).message}`;
  return new AuditLogError('AUDIT_OPEN', path, `cannot ${what} audit log ${path}: ${why}`, err);
}

async function openFileTarget(path: string): Promise<Target> {
  try {
    await new Promise<void>((resolve, reject) => mkdir(dirname(path), { recursive: true, mode: AUDIT_DIR_MODE }, (e) => (e ? reject(e) : resolve())));
  } catch (e) {
    throw openError(path, 'create the folder of', e);
  }
  const openWith = (flags: string) =>
    new Promise<number>((resolve, reject) => openFd(path, flags, AUDIT_FILE_MODE, (e, n) => (e ? reject(e) : resolve(n))));
  let fd: number;
  let created = true;
  try {
    // Exclusive create first, so a new file gets 0640 set explicitly; an existing file keeps its mode.
    fd = await openWith('ax');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw openError(path, 'open', e);
    created = false;
    try {
      fd = await openWith('a');
    } catch (e2) {
      throw openError(path, 'open', e2);
    }
  }
  if (created) {
    // The umask may have taken bits away; a failure here only leaves the file stricter.
    await new Promise<void>((resolve) => fchmod(fd, AUDIT_FILE_MODE, () => resolve()));
  }
  return {
    write(buf, done) {
      const loop = (off: number) => {
        writeFd(fd, buf, off, buf.length - off, null, (err, n) => {
          if (err) return done(err);
          if (n === 0) return done(Object.assign(new Error('write returned 0 bytes'), { code: 'EIO' }));
          if (off + n < buf.length) return loop(off + n);
          done(null);
        });
      };
      loop(0);
    },
    close(done) {
      closeFd(fd, () => done());
    },
  };
}
