/**
 * Configuration errors and the schema builders that give every field its
 * operator-facing error text.
 *
 * Every problem becomes one line `FILE: PATH: VALUE is not valid: expected …`
 * (or `FILE: PATH: missing: expected …`, `FILE: PATH: unknown key; did you
 * mean "…"?`), followed by ` (line L, column C)` when the position is known.
 * Syntax errors read `FILE:LINE:COLUMN: …`. Secret values (keymat) are never
 * printed, only their length.
 */
import * as z from 'zod';

/** Stable codes of ConfigError: the file could not be read, could not be parsed, or does not validate. */
export type ConfigErrorCode = 'CONFIG_READ' | 'CONFIG_SYNTAX' | 'CONFIG_INVALID';

/** One problem in a config file. `path` is empty for problems that concern the whole file. */
export interface ConfigProblem {
  /** Field path as the operator writes it: `labels[1].vlan`; "" for the file itself. */
  readonly path: string;
  /** What is wrong, starting with the value found: `5000 is not valid: expected an integer in 1..4094`. */
  readonly message: string;
  /** 1-based line and column in the file, when known. */
  readonly line?: number;
  readonly column?: number;
}

/** A config file that cannot be used; the message has one line per problem. */
export class ConfigError extends Error {
  constructor(
    readonly code: ConfigErrorCode,
    readonly file: string,
    readonly problems: readonly ConfigProblem[],
  ) {
    super(problems.map((p) => formatProblem(file, p)).join('\n'));
    this.name = 'ConfigError';
  }
}

/** Formats one problem as the line ConfigError's message carries. */
export function formatProblem(file: string, p: ConfigProblem): string {
  if (p.path === '') {
    return p.line !== undefined ? `${file}:${p.line}:${p.column ?? 1}: ${p.message}` : `${file}: ${p.message}`;
  }
  const at = p.line !== undefined ? ` (line ${p.line}, column ${p.column ?? 1})` : '';
  return `${file}: ${p.path}: ${p.message}${at}`;
}

/** A segment of a field path: an object key or a list index. */
export type PathSegment = string | number;

const IDENT = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

/** Renders a path as `labels[1].vlan` (odd keys as `["odd key"]`). */
export function formatPath(path: readonly PathSegment[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (IDENT.test(seg)) out += out === '' ? seg : `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out === '' ? '(top level)' : out;
}

/** Keys whose values are secrets: never printed in a message. */
const SECRET_KEYS = new Set(['keymat']);

/** True when the field at `path` holds a secret. */
export function isSecretPath(path: readonly PathSegment[]): boolean {
  const last = path[path.length - 1];
  return typeof last === 'string' && SECRET_KEYS.has(last);
}

const MAX_SHOWN_CHARS = 60;

/** Shows a value found in a config file the way it was written, shortened; secrets show only their size. */
export function formatValue(value: unknown, secret = false): string {
  if (secret) return describeSecret(value);
  if (value === undefined) return 'nothing';
  let text: string;
  try {
    text = JSON.stringify(value, (k, v: unknown) => (SECRET_KEYS.has(k) ? '…' : v instanceof Uint8Array ? `<${v.length} octets>` : v)) ?? String(value);
  } catch {
    text = String(value);
  }
  if (typeof value === 'number' && !Number.isFinite(value)) text = String(value);
  return text.length > MAX_SHOWN_CHARS ? `${text.slice(0, MAX_SHOWN_CHARS - 1)}…` : text;
}

function describeSecret(value: unknown): string {
  if (value instanceof Uint8Array) return `${value.length} octets (${value.length * 2} hex digits)`;
  if (typeof value === 'string') {
    const hex = value.replace(/^0x/i, '');
    return /^[0-9a-fA-F]*$/.test(hex) ? `${hex.length} hex digits` : `a string of ${value.length} characters (not shown)`;
  }
  if (typeof value === 'number') return 'a number (not shown)';
  return value === null ? 'null' : Array.isArray(value) ? 'a list' : `a ${typeof value}`;
}

/** Edit distance counting an insertion, deletion, substitution or swap of two neighbours as one (optimal string alignment), for "did you mean" hints. */
export function editDistance(a: string, b: string): number {
  const rows: number[][] = [];
  for (let i = 0; i <= a.length; i++) {
    const row = (rows[i] = new Array<number>(b.length + 1));
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      if (i === 0) {
        row[j] = j;
        continue;
      }
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(rows[i - 1]![j]! + 1, row[j - 1]! + 1, rows[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, rows[i - 2]![j - 2]! + 1);
      row[j] = d;
    }
  }
  return rows[a.length]![b.length]!;
}

/** The candidate closest to `word` within edit distance 2 and at most half its length (case-insensitive), or undefined. */
export function suggest(word: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  const w = word.toLowerCase();
  // At most 2 edits, and fewer than half the word: "a" suggests nothing.
  let bestDistance = Math.min(2, Math.floor(w.length / 2)) + 1;
  for (const c of candidates) {
    const d = editDistance(w, c.toLowerCase());
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return best;
}

/** ` did you mean "x"?` or "". */
export function didYouMean(word: string, candidates: Iterable<string>): string {
  const s = suggest(word, candidates);
  return s === undefined ? '' : ` did you mean "${s}"?`;
}

/** Marks a custom issue as an unknown key (printed without "is not valid"). */
export const UNKNOWN_KEY = 'unknown-key';

/** A validation problem together with the raw path, so that a loader can find its position. */
export interface DescribedIssue {
  readonly segments: readonly PathSegment[];
  /** The problem is an unknown key: its position is the key's, not the value's. */
  readonly unknownKey: boolean;
  readonly path: string;
  readonly message: string;
}

/** Describes one zod issue as an operator reads it. */
export function describeIssue(iss: z.core.$ZodIssue): DescribedIssue {
  const segments = iss.path.filter((s): s is PathSegment => typeof s !== 'symbol');
  const input = (iss as { input?: unknown }).input;
  const params = (iss as { params?: { kind?: string } }).params;
  const unknownKey = params?.kind === UNKNOWN_KEY;
  let message: string;
  if (unknownKey) message = iss.message;
  else if (input === undefined) message = segments.length === 0 ? `the file is empty: ${iss.message}` : `missing: ${iss.message}`;
  else message = `${formatValue(input, isSecretPath(segments))} is not valid: ${iss.message}`;
  return { segments, unknownKey, path: formatPath(segments), message };
}

// ---------------------------------------------------------------------------
// Schema builders: each sets one "expected …" text on every issue it can raise.

/** True for a plain object (a YAML mapping / JSON object). */
export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}

/**
 * An object whose unknown keys are errors, each with a "did you mean" hint.
 * `what` names the object in the type error: `expected ${what}`. `check` runs
 * cross-field checks on the object as parsed so far, even when some of its
 * fields are invalid (so it must look only at well-formed entries); issue
 * paths are relative to the object.
 */
export function strictObject<S extends z.ZodRawShape>(
  shape: S,
  what: string,
  check?: (value: Record<string, unknown>, ctx: z.core.$RefinementCtx<unknown>) => void,
) {
  const known = Object.keys(shape);
  return z
    .looseObject(shape, { error: `expected ${what}` })
    .superRefine(
      (value, ctx) => {
        if (!isRecord(value)) return;
        for (const key of Object.keys(value)) {
          if (Object.prototype.hasOwnProperty.call(shape, key)) continue;
          const hint = didYouMean(key, known);
          ctx.addIssue({
            code: 'custom',
            path: [key],
            input: value[key],
            params: { kind: UNKNOWN_KEY },
            message: `unknown key${hint === '' ? '' : `;${hint}`} (known keys: ${known.join(', ')})`,
          });
        }
        check?.(value, ctx as z.core.$RefinementCtx<unknown>);
      },
      { when: () => true },
    )
    .transform((v) => v as z.output<z.ZodObject<S>>);
}

/** An integer in min..max. */
export function intIn(min: number, max: number, extra = '') {
  const expected = `expected an integer in ${min}..${max}${extra}`;
  return z.number({ error: expected }).int({ error: expected }).min(min, { error: expected }).max(max, { error: expected });
}

/** One of a fixed list of strings. */
export function oneOf<const T extends readonly [string, ...string[]]>(values: T) {
  const expected = `expected one of ${values.map((v) => JSON.stringify(v)).join(', ')}`;
  return z.enum(values, { error: expected });
}

/** true or false (YAML 1.2: not yes/no/on/off). */
export function bool() {
  return z.boolean({ error: 'expected true or false' });
}

/** A string matching `re`; `expected` completes "expected …". */
export function matching(re: RegExp, expected: string) {
  const msg = `expected ${expected}`;
  return z.string({ error: msg }).regex(re, { error: msg });
}

/** A list of `item`; `what` names it in the type error; `nonEmpty` requires at least one item. */
export function listOf<T extends z.ZodType>(item: T, what: string, nonEmpty = false) {
  const expected = `expected ${nonEmpty ? 'a non-empty' : 'a'} list of ${what}`;
  const base = z.array(item, { error: expected });
  return nonEmpty ? base.min(1, { error: expected }) : base;
}

/**
 * A field checked by a plain function: `parse` returns `{ value }` or an
 * error text "expected …". Missing (undefined) input is passed to `parse` too,
 * so a field without `.optional()`/`.default()` is required.
 */
export function field<T>(parse: (input: unknown) => { value: T } | string) {
  return z.unknown().transform((input, ctx): T => {
    const r = parse(input);
    if (typeof r === 'string') {
      ctx.addIssue({ code: 'custom', input, message: r });
      return z.NEVER;
    }
    return r.value;
  });
}

/** Adds a custom issue at `path` whose message reads `VALUE is not valid: ${message}`. */
export function addProblem(ctx: z.core.$RefinementCtx<unknown>, path: PathSegment[], input: unknown, message: string): void {
  ctx.addIssue({ code: 'custom', path, input, message });
}

/** A file that cannot be read, with the reason in words: `cannot read WHAT: no such file`. */
export function fileReadError(what: string, path: string, err: unknown): ConfigError {
  const code = (err as NodeJS.ErrnoException).code;
  const why =
    code === 'ENOENT'
      ? 'no such file'
      : code === 'EACCES' || code === 'EPERM'
        ? 'permission denied'
        : code === 'EISDIR'
          ? 'is a directory, expected a file'
          : `${code ?? 'error'}: ${(err as Error).message}`;
  return new ConfigError('CONFIG_READ', path, [{ path: '', message: `cannot read ${what}: ${why}` }]);
}
