/**
 * Loads a config file: read (size-limited) → decode UTF-8 → parse JSON or YAML
 * (by extension; otherwise JSON, then YAML) → validate with a zod schema →
 * typed, normalised data, or a ConfigError with one line per problem.
 *
 * JSON is parsed by a small strict parser here so that syntax errors, duplicate
 * keys and validation problems all carry a line and column; YAML is parsed by
 * `yaml` as YAML 1.2 with the core schema only (no custom tags, no merge keys,
 * duplicate keys are errors).
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { extname } from 'node:path';
import { isAlias, isMap, isScalar, isSeq, parseDocument, type Document, type Node as YamlNode } from 'yaml';
import type * as z from 'zod';
import { ConfigError, describeIssue, fileReadError, formatPath, type ConfigProblem, type PathSegment } from './config-errors.js';

/** Largest config file accepted. */
export const CONFIG_MAX_BYTES = 1 << 20;

/** Deepest nesting of lists and objects accepted in a config file. */
export const CONFIG_MAX_DEPTH = 64;

/** Most YAML alias expansions accepted (guards against "billion laughs"). */
const YAML_MAX_ALIAS_COUNT = 100;

/** Syntax of a config file. */
export type ConfigFormat = 'json' | 'yaml';

/** Parsed data with a way to find where a field was written (a character offset), for messages. */
export interface ParsedConfig {
  readonly data: unknown;
  /** Offset of the value at `segments` (of the key itself when `key`), or of its nearest written ancestor. */
  readonly locate: (segments: readonly PathSegment[], key: boolean) => number | undefined;
  /** 1-based line and column of an offset. */
  readonly position: (offset: number) => { line: number; column: number };
}

/** Reads, parses and validates a config file; rejects with ConfigError. */
export async function loadConfigFile<T>(path: string, schema: z.ZodType<T>): Promise<T> {
  const bytes = await readLimited(path);
  return parseConfigText(decodeUtf8(bytes, path), path, schema);
}

/** Synchronous loadConfigFile, for start-up code that cannot await. */
export function loadConfigFileSync<T>(path: string, schema: z.ZodType<T>): T {
  const bytes = readLimitedSync(path);
  return parseConfigText(decodeUtf8(bytes, path), path, schema);
}

/** Parses config text (format from `file`'s extension unless given) and validates it; throws ConfigError. */
export function parseConfigText<T>(text: string, file: string, schema: z.ZodType<T>, format?: ConfigFormat): T {
  const parsed = parseText(text, file, format ?? formatOf(file));
  return validateConfig(parsed.data, schema, file, parsed);
}

/** Validates already-parsed data (e.g. built in code) against a schema; throws ConfigError naming `source`. */
export function validateConfig<T>(data: unknown, schema: z.ZodType<T>, source: string, parsed?: ParsedConfig): T {
  // zod drops an own "__proto__" key silently; it is never a config key, so say so.
  const protoKeys: PathSegment[][] = [];
  findProtoKeys(data, [], protoKeys);
  if (protoKeys.length > 0) {
    throw new ConfigError(
      'CONFIG_INVALID',
      source,
      protoKeys.map((segments) => {
        const offset = parsed?.locate(segments, true);
        const problem = { path: formatPath(segments), message: 'unknown key; "__proto__" is never a config key' };
        return offset === undefined ? problem : { ...problem, ...parsed!.position(offset) };
      }),
    );
  }
  const result = schema.safeParse(data, { reportInput: true });
  if (result.success) return result.data;
  const seen = new Set<string>();
  const found: { problem: ConfigProblem; offset: number }[] = [];
  for (const iss of result.error.issues) {
    const d = describeIssue(iss);
    const key = `${d.path}\u0000${d.message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const offset = parsed?.locate(d.segments, d.unknownKey);
    found.push(
      offset === undefined
        ? { problem: { path: d.path, message: d.message }, offset: Infinity }
        : { problem: { path: d.path, message: d.message, ...parsed!.position(offset) }, offset },
    );
  }
  // In file order (stable: problems of one place keep the schema's order).
  found.sort((a, b) => (a.offset === b.offset ? 0 : a.offset < b.offset ? -1 : 1));
  throw new ConfigError(
    'CONFIG_INVALID',
    source,
    found.map((f) => f.problem),
  );
}

function findProtoKeys(v: unknown, path: PathSegment[], out: PathSegment[][]): void {
  if (typeof v !== 'object' || v === null || path.length > CONFIG_MAX_DEPTH) return;
  if (Array.isArray(v)) {
    v.forEach((item, i) => findProtoKeys(item, [...path, i], out));
    return;
  }
  for (const key of Object.keys(v)) {
    if (key === '__proto__') out.push([...path, key]);
    else findProtoKeys((v as Record<string, unknown>)[key], [...path, key], out);
  }
}

/** Picks the syntax from the file name: .json → json, .yaml/.yml → yaml, otherwise undefined (JSON, then YAML). */
export function formatOf(file: string): ConfigFormat | undefined {
  const ext = extname(file).toLowerCase();
  if (ext === '.json') return 'json';
  if (ext === '.yaml' || ext === '.yml') return 'yaml';
  return undefined;
}

/** Parses text as JSON or YAML; throws ConfigError CONFIG_SYNTAX. */
export function parseText(text: string, file: string, format: ConfigFormat | undefined): ParsedConfig {
  const position = positionFn(text);
  if (format === 'json') return parseJsonText(text, file, position);
  if (format === 'yaml') return parseYamlText(text, file, position);
  try {
    return parseJsonText(text, file, position);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    return parseYamlText(text, file, position);
  }
}

// ---------------------------------------------------------------------------
// Reading


function tooBig(path: string, size: number | undefined): ConfigError {
  const found = size === undefined ? `more than ${CONFIG_MAX_BYTES} bytes` : `${size} bytes`;
  return new ConfigError('CONFIG_READ', path, [
    { path: '', message: `cannot read config file: it is ${found}; the limit is ${CONFIG_MAX_BYTES} bytes (1 MiB)` },
  ]);
}

async function readLimited(path: string): Promise<Uint8Array> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    throw fileReadError('config file', path, e);
  }
  try {
    const st = await fh.stat();
    if (st.isDirectory()) throw fileReadError('config file', path, Object.assign(new Error('directory'), { code: 'EISDIR' }));
    if (st.isFile() && st.size > CONFIG_MAX_BYTES) throw tooBig(path, st.size);
    // Read at most one byte past the limit: sizes of pipes and /proc files are not known in advance.
    const buf = new Uint8Array(CONFIG_MAX_BYTES + 1);
    let n = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, n, buf.length - n, null);
      if (bytesRead === 0) break;
      n += bytesRead;
      if (n > CONFIG_MAX_BYTES) throw tooBig(path, undefined);
    }
    return buf.subarray(0, n);
  } catch (e) {
    throw e instanceof ConfigError ? e : fileReadError('config file', path, e);
  } finally {
    await fh.close();
  }
}

function readLimitedSync(path: string): Uint8Array {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw fileReadError('config file', path, e);
  }
  try {
    const st = fstatSync(fd);
    if (st.isDirectory()) throw fileReadError('config file', path, Object.assign(new Error('directory'), { code: 'EISDIR' }));
    if (st.isFile() && st.size > CONFIG_MAX_BYTES) throw tooBig(path, st.size);
    const buf = new Uint8Array(CONFIG_MAX_BYTES + 1);
    let n = 0;
    for (;;) {
      const bytesRead = readSync(fd, buf, n, buf.length - n, null);
      if (bytesRead === 0) break;
      n += bytesRead;
      if (n > CONFIG_MAX_BYTES) throw tooBig(path, undefined);
    }
    return buf.subarray(0, n);
  } catch (e) {
    throw e instanceof ConfigError ? e : fileReadError('config file', path, e);
  } finally {
    closeSync(fd);
  }
}

function decodeUtf8(bytes: Uint8Array, file: string): string {
  try {
    // Strips a leading byte order mark.
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new ConfigError('CONFIG_SYNTAX', file, [{ path: '', message: 'syntax error: the file is not UTF-8 text' }]);
  }
}

// ---------------------------------------------------------------------------
// Positions

function positionFn(text: string): (offset: number) => { line: number; column: number } {
  const starts = [0];
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) === 10) starts.push(i + 1);
  return (offset) => {
    let lo = 0;
    let hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (starts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    return { line: lo + 1, column: offset - starts[lo]! + 1 };
  };
}

function syntaxError(file: string, message: string, where?: { line: number; column: number }): ConfigError {
  return new ConfigError('CONFIG_SYNTAX', file, [{ path: '', message: `syntax error: ${message}`, ...where }]);
}

// ---------------------------------------------------------------------------
// YAML

function parseYamlText(text: string, file: string, position: ParsedConfig['position']): ParsedConfig {
  let doc: Document.Parsed;
  try {
    doc = parseDocument(text, {
      version: '1.2',
      schema: 'core',
      customTags: [],
      merge: false,
      uniqueKeys: true,
      strict: true,
      prettyErrors: false,
    });
  } catch (e) {
    throw syntaxError(file, (e as Error).message);
  }
  // Unresolved (custom) tags are warnings in `yaml`; in a config file they are errors.
  const errs = [...doc.errors, ...doc.warnings];
  if (errs.length > 0) {
    throw new ConfigError(
      'CONFIG_SYNTAX',
      file,
      errs.map((e) => ({
        path: '',
        message: `syntax error: ${e.message}${e.code === 'TAG_RESOLVE_FAILED' ? ' (custom tags are not supported)' : ''}`,
        ...position(e.pos[0]),
      })),
    );
  }
  let data: unknown;
  try {
    // An empty document (nothing, or only comments) is undefined, reported as "the file is empty".
    data = doc.contents === null ? undefined : doc.toJS({ maxAliasCount: YAML_MAX_ALIAS_COUNT });
  } catch (e) {
    throw syntaxError(file, (e as Error).message);
  }
  if (depthOf(data, 0) > CONFIG_MAX_DEPTH) throw syntaxError(file, `nested deeper than ${CONFIG_MAX_DEPTH} levels`);
  return { data, position, locate: (segments, key) => locateYaml(doc, segments, key) };
}

function depthOf(v: unknown, depth: number): number {
  if (depth > CONFIG_MAX_DEPTH || typeof v !== 'object' || v === null) return depth;
  let max = depth;
  for (const child of Object.values(v)) max = Math.max(max, depthOf(child, depth + 1));
  return max;
}

function startOf(node: unknown): number | undefined {
  return (node as YamlNode | null)?.range?.[0];
}

// Both locators return undefined when nothing below the top level matches: "line 1, column 1" helps nobody.
function locateYaml(doc: Document.Parsed, segments: readonly PathSegment[], key: boolean): number | undefined {
  let node: unknown = doc.contents;
  let offset = segments.length === 0 ? startOf(node) : undefined;
  for (let i = 0; i < segments.length; i++) {
    const seg = segments[i]!;
    if (isAlias(node)) node = node.resolve(doc);
    if (isMap(node)) {
      const pair = node.items.find((p) => String(isScalar(p.key) ? p.key.value : p.key) === String(seg));
      if (pair === undefined) break;
      if (key && i === segments.length - 1) return startOf(pair.key);
      node = pair.value;
      offset = startOf(node) ?? startOf(pair.key);
    } else if (isSeq(node) && typeof seg === 'number' && seg < node.items.length) {
      node = node.items[seg];
      offset = startOf(node) ?? offset;
    } else {
      break;
    }
  }
  return offset;
}

// ---------------------------------------------------------------------------
// JSON (RFC 8259), strict: no comments, no trailing commas, no duplicate keys.

class JsonSyntax extends Error {
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(message);
  }
}

const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;

function parseJsonText(text: string, file: string, position: ParsedConfig['position']): ParsedConfig {
  const offsets = new Map<string, { value: number; key?: number }>();
  let i = 0;

  const ws = () => {
    for (;;) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) i++;
      else return;
    }
  };
  const shown = (at: number) => (at >= text.length ? 'end of file' : JSON.stringify(text[at]));
  const fail = (expected: string): never => {
    throw new JsonSyntax(`unexpected ${shown(i)}; expected ${expected}`, i);
  };

  const str = (): string => {
    const start = i;
    i++; // opening quote
    for (;;) {
      if (i >= text.length) throw new JsonSyntax('unterminated string', start);
      const c = text.charCodeAt(i);
      if (c === 0x22) break;
      if (c < 0x20) throw new JsonSyntax('control character in string; write it as an escape like \\n', i);
      if (c === 0x5c) {
        const e = text[i + 1];
        if (e === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) throw new JsonSyntax('invalid \\u escape in string', i);
          i += 6;
        } else if (e !== undefined && '"\\/bfnrt'.includes(e)) i += 2;
        else throw new JsonSyntax(`invalid escape \\${e ?? ''} in string`, i);
      } else i++;
    }
    i++; // closing quote
    return JSON.parse(text.slice(start, i)) as string;
  };

  const value = (path: PathSegment[], depth: number, keyOffset?: number): unknown => {
    ws();
    if (depth > CONFIG_MAX_DEPTH) throw new JsonSyntax(`nested deeper than ${CONFIG_MAX_DEPTH} levels`, i);
    offsets.set(JSON.stringify(path), keyOffset === undefined ? { value: i } : { value: i, key: keyOffset });
    const c = text[i];
    if (c === '{') {
      i++;
      const obj: Record<string, unknown> = {};
      const seen = new Set<string>();
      ws();
      if (text[i] === '}') {
        i++;
        return obj;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') fail(text[i] === '}' ? 'another key (no comma after the last member)' : 'a quoted key');
        const keyAt = i;
        const key = str();
        if (seen.has(key)) throw new JsonSyntax(`duplicate key ${JSON.stringify(key)}`, keyAt);
        seen.add(key);
        ws();
        if (text[i] !== ':') fail('":"');
        i++;
        const v = value([...path, key], depth + 1, keyAt);
        // defineProperty: a key "__proto__" stays a plain key.
        Object.defineProperty(obj, key, { value: v, enumerable: true, writable: true, configurable: true });
        ws();
        if (text[i] === ',') i++;
        else if (text[i] === '}') {
          i++;
          return obj;
        } else fail('"," or "}"');
      }
    }
    if (c === '[') {
      i++;
      const arr: unknown[] = [];
      ws();
      if (text[i] === ']') {
        i++;
        return arr;
      }
      for (;;) {
        ws();
        if (text[i] === ']') fail('another value (no comma after the last element)');
        arr.push(value([...path, arr.length], depth + 1));
        ws();
        if (text[i] === ',') i++;
        else if (text[i] === ']') {
          i++;
          return arr;
        } else fail('"," or "]"');
      }
    }
    if (c === '"') return str();
    if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) {
      NUMBER.lastIndex = i;
      const m = NUMBER.exec(text);
      if (m === null) fail('a number');
      i += m![0].length;
      return Number(m![0]);
    }
    for (const [word, v] of [
      ['true', true],
      ['false', false],
      ['null', null],
    ] as const) {
      if (text.startsWith(word, i)) {
        i += word.length;
        return v;
      }
    }
    return fail('a value (object, list, string, number, true, false or null)');
  };

  let data: unknown;
  try {
    data = value([], 0);
    ws();
    if (i < text.length) fail('end of file after the JSON value');
  } catch (e) {
    if (e instanceof JsonSyntax) throw syntaxError(file, e.message, position(e.offset));
    throw e;
  }
  const locate = (segments: readonly PathSegment[], key: boolean): number | undefined => {
    for (let n = segments.length; n >= (segments.length === 0 ? 0 : 1); n--) {
      const at = offsets.get(JSON.stringify(segments.slice(0, n)));
      if (at === undefined) continue;
      return key && n === segments.length && at.key !== undefined ? at.key : at.value;
    }
    return undefined;
  };
  return { data, position, locate };
}
