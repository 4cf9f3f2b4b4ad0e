/**
 * The daemon's structured log: one JSON object per line,
 * `{"time":"<ISO 8601>","level":"info","msg":"…", …fields}`, to stderr or a
 * given stream.
 *
 * Stages of one call: level check (a number compare; nothing else runs when the
 * level is disabled) → merge bound fields and call fields → serialise (Errors,
 * bigints and byte arrays made printable; a value that cannot be serialised
 * never throws, the line says so) → one `write` of the whole line.
 */
import type { LogLevel } from './config.js';

export type { LogLevel } from './config.js';

/** Levels in increasing severity; the index is the numeric level. */
export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const satisfies readonly LogLevel[];

/** Extra key/value pairs of a line. */
export type LogFields = Readonly<Record<string, unknown>>;

/** Where lines go: anything with a `write(text)`, like process.stderr. */
export interface LogStream {
  write(text: string): unknown;
}

export interface LoggerOptions {
  /** Lowest level written; default 'info'. */
  level?: LogLevel;
  /** Default process.stderr. */
  stream?: LogStream;
  /** Fields on every line. */
  fields?: LogFields;
  /** Clock in ms since the epoch, for tests; default Date.now. */
  nowMs?: () => number;
}

/** Keys every line has; fields of the same name are written with a leading "_". */
const RESERVED = new Set(['time', 'level', 'msg']);

/** The numeric rank of a level name (debug 0 … error 3), or -1 for an unknown name. */
export function logLevelRank(level: string): number {
  return (LOG_LEVELS as readonly string[]).indexOf(level);
}

/** State shared by a logger and its children: one level, one stream. */
interface LogRoot {
  minRank: number;
  stream: LogStream;
  nowMs: () => number;
}

/** A JSON-lines logger; `child` binds fields, and every child follows its root's level. */
export class Logger {
  private readonly root: LogRoot;
  private readonly bound: [string, unknown][];

  /** A root logger (`parent` is for `child`). */
  constructor(opts: LoggerOptions = {}, parent?: Logger) {
    if (parent !== undefined) {
      this.root = parent.root;
      this.bound = [...parent.bound, ...fieldEntries(opts.fields)];
      return;
    }
    const rank = logLevelRank(opts.level ?? 'info');
    if (rank < 0) throw new TypeError(`log level ${JSON.stringify(opts.level)} is not one of ${LOG_LEVELS.join(', ')}`);
    this.root = { minRank: rank, stream: opts.stream ?? process.stderr, nowMs: opts.nowMs ?? Date.now };
    this.bound = fieldEntries(opts.fields);
  }

  /** The lowest level written (shared with the children). */
  get level(): LogLevel {
    return LOG_LEVELS[this.root.minRank]!;
  }

  /** Changes the level of this logger, its root and every child (e.g. on reload). */
  set level(level: LogLevel) {
    const rank = logLevelRank(level);
    if (rank < 0) throw new TypeError(`log level ${JSON.stringify(level)} is not one of ${LOG_LEVELS.join(', ')}`);
    this.root.minRank = rank;
  }

  /** True if lines of `level` are written: guard costly field computation with it. */
  enabled(level: LogLevel): boolean {
    return logLevelRank(level) >= this.root.minRank;
  }

  /** A logger writing to the same stream at the same level with `fields` added to every line. */
  child(fields: LogFields): Logger {
    return new Logger({ fields }, this);
  }

  /** Writes a debug line. */
  debug(msg: string, fields?: LogFields): void {
    if (this.root.minRank <= 0) this.write('debug', msg, fields);
  }

  /** Writes an info line. */
  info(msg: string, fields?: LogFields): void {
    if (this.root.minRank <= 1) this.write('info', msg, fields);
  }

  /** Writes a warn line. */
  warn(msg: string, fields?: LogFields): void {
    if (this.root.minRank <= 2) this.write('warn', msg, fields);
  }

  /** Writes an error line. */
  error(msg: string, fields?: LogFields): void {
    this.write('error', msg, fields);
  }

  /** Writes a line of `level` if enabled. */
  log(level: LogLevel, msg: string, fields?: LogFields): void {
    if (this.enabled(level)) this.write(level, msg, fields);
  }

  private write(level: LogLevel, msg: string, fields: LogFields | undefined): void {
    const line: Record<string, unknown> = { time: isoTime(this.root.nowMs()), level, msg: String(msg) };
    for (const [k, v] of this.bound) line[RESERVED.has(k) ? `_${k}` : k] = v;
    if (fields !== undefined) for (const k of Object.keys(fields)) line[RESERVED.has(k) ? `_${k}` : k] = fields[k];
    let text: string;
    try {
      text = JSON.stringify(line, replacer);
    } catch (e) {
      text = JSON.stringify({ time: line.time, level, msg: line.msg, logError: `fields not serialisable: ${(e as Error).message}` });
    }
    try {
      this.root.stream.write(text + '\n');
    } catch {
      // A closed stderr must not take the daemon down; there is nowhere left to report it.
    }
  }
}

/** A root logger (shorthand for `new Logger(opts)`). */
export function createLogger(opts: LoggerOptions = {}): Logger {
  return new Logger(opts);
}

function fieldEntries(fields: LogFields | undefined): [string, unknown][] {
  return fields === undefined ? [] : Object.keys(fields).map((k) => [k, fields[k]]);
}

function isoTime(ms: number): string {
  return new Date(Number.isFinite(ms) && Math.abs(ms) <= 8.64e15 ? ms : 0).toISOString();
}

/**
 * JSON.stringify replacer: Errors as {name, message, code, stack}, bigints as text, byte
 * arrays as their length only (a field holding key material must never reach the log).
 */
function replacer(this: unknown, _key: string, v: unknown): unknown {
  if (typeof v === 'bigint') return v.toString();
  if (v instanceof Error) {
    const out: Record<string, unknown> = { name: v.name, message: v.message };
    const code = (v as { code?: unknown }).code;
    if (code !== undefined) out.code = code;
    if (v.stack !== undefined) out.stack = v.stack;
    return out;
  }
  if (ArrayBuffer.isView(v)) return `<${v.byteLength} bytes>`;
  if (isSerialisedBuffer(v)) return `<${v.data.length} bytes>`;
  return v;
}

/** A Buffer after its own toJSON: {type: 'Buffer', data: number[]}. */
function isSerialisedBuffer(v: unknown): v is { type: 'Buffer'; data: unknown[] } {
  return typeof v === 'object' && v !== null && (v as { type?: unknown }).type === 'Buffer' && Array.isArray((v as { data?: unknown }).data);
}
