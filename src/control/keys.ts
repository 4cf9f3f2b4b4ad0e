/**
 * Host identity and pre-shared key files (DESIGN.md "Keys and sessions"):
 * one line of base64 holding 32 octets — an X25519 private key (as `wg genkey`
 * writes it) or a pre-shared key. A secret file must be a regular file that
 * neither its group nor others may read or write (mode 0600 or stricter);
 * anything else is refused with a message naming the file, its mode in octal
 * and the fix.
 *
 * Stages of loading: open (no following into a directory) → fstat on the open
 * descriptor (the file checked is the file read) → mode check → read at most
 * 1 KiB → strict parse (one line, canonical base64, 32 octets).
 * Writing creates the file with mode 0600 from the start (O_EXCL; --force
 * writes a 0600 temporary file and renames it over the old one).
 */
import { randomBytes } from 'node:crypto';
import { constants as fsc } from 'node:fs';
import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { clampX25519PrivateKey, x25519PublicKey } from '../core/noise.js';

/** Octets in a private, public or pre-shared key. */
export const KEY_BYTES = 32;
/** Largest key file read (a key line is 45 octets). */
const MAX_KEY_FILE_BYTES = 1024;

/** Stable codes of KeyFileError. */
export type KeyFileErrorCode =
  /** The file cannot be opened or read (missing, no permission, a directory). */
  | 'KEY_READ'
  /** Not a regular file. */
  | 'KEY_NOT_REGULAR'
  /** Group or others may read or write the secret. */
  | 'KEY_MODE'
  /** The content is not one line of base64 holding 32 octets. */
  | 'KEY_MALFORMED'
  /** The file to write exists and --force was not given. */
  | 'KEY_EXISTS'
  /** The file cannot be written. */
  | 'KEY_WRITE';

/** A key file that cannot be used; the message names the file and what to do. */
export class KeyFileError extends Error {
  constructor(
    readonly code: KeyFileErrorCode,
    readonly file: string,
    message: string,
  ) {
    super(message);
    this.name = 'KeyFileError';
  }
}

/** What a key file holds, for messages. */
export type KeyKind = 'private key' | 'pre-shared key' | 'public key';

/** Base64 text of a 32-octet key (44 characters, as WireGuard writes keys). */
export function encodeKey(key: Uint8Array): string {
  if (key.length !== KEY_BYTES) throw new RangeError(`encodeKey: a key has ${KEY_BYTES} octets, got ${key.length}`);
  return Buffer.from(key).toString('base64');
}

/**
 * Parses key text: one line (a final newline, CRLF included, is allowed) of canonical base64 of
 * exactly 32 octets. Returns the key, or a description of what is wrong.
 */
export function parseKeyText(text: string, kind: KeyKind): { ok: true; key: Uint8Array } | { ok: false; problem: string } {
  let line = text;
  if (line.endsWith('\n')) line = line.slice(0, -1);
  if (line.endsWith('\r')) line = line.slice(0, -1);
  if (line.length === 0) return { ok: false, problem: `empty; expected one line of base64 holding the ${KEY_BYTES}-octet ${kind}` };
  if (/[\r\n]/.test(line)) return { ok: false, problem: `more than one line; expected one line of base64 holding the ${KEY_BYTES}-octet ${kind}` };
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(line)) {
    const bad = [...line].find((c) => !/[A-Za-z0-9+/=]/.test(c));
    const shown = bad === undefined ? 'misplaced "="' : /\s/.test(bad) ? 'white space' : `the character ${JSON.stringify(bad)}`;
    return { ok: false, problem: `not base64 (${shown}); expected ${44} characters of base64 holding the ${KEY_BYTES}-octet ${kind}` };
  }
  const key = new Uint8Array(Buffer.from(line, 'base64'));
  if (key.length !== KEY_BYTES || line.length !== 44) {
    return { ok: false, problem: `${line.length} characters of base64 (${key.length} octets); a ${kind} is ${KEY_BYTES} octets, 44 characters ending in "="` };
  }
  if (Buffer.from(key).toString('base64') !== line) return { ok: false, problem: `not canonical base64 (the last character before "=" carries stray bits); was the ${kind} edited?` };
  return { ok: true, key };
}

/** Describes the group/other permission bits of a secret file, or null if there are none. */
function modeProblem(mode: number, kind: KeyKind): string | null {
  const who: string[] = [];
  const what = new Set<string>();
  if (mode & 0o070) who.push('its group');
  if (mode & 0o007) who.push('others');
  if (who.length === 0) return null;
  if (mode & 0o044) what.add('read');
  if (mode & 0o022) what.add('write');
  if (mode & 0o011 && what.size === 0) what.add('execute');
  const octal = (mode & 0o7777).toString(8).padStart(4, '0');
  return `mode ${octal} lets ${who.join(' and ')} ${[...what].join(' and ')} the ${kind}; chmod 600 it`;
}

/**
 * Reads a secret key file (private or pre-shared key). Throws KeyFileError: KEY_READ,
 * KEY_NOT_REGULAR, KEY_MODE (e.g. "/etc/sectunnel/host.key: mode 0644 lets others read the
 * private key; chmod 600 it") or KEY_MALFORMED (naming what is wrong).
 */
export async function loadSecretKeyFile(path: string, kind: Exclude<KeyKind, 'public key'>): Promise<Uint8Array> {
  let fh;
  try {
    fh = await open(path, fsc.O_RDONLY | fsc.O_NOCTTY | fsc.O_NONBLOCK);
  } catch (e) {
    throw new KeyFileError('KEY_READ', path, `${path}: cannot open the ${kind}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new KeyFileError('KEY_NOT_REGULAR', path, `${path}: not a regular file; the ${kind} must be a file of mode 0600`);
    const problem = modeProblem(st.mode, kind);
    if (problem !== null) throw new KeyFileError('KEY_MODE', path, `${path}: ${problem}`);
    if (st.size > MAX_KEY_FILE_BYTES) throw new KeyFileError('KEY_MALFORMED', path, `${path}: ${st.size} octets; a ${kind} file is one line of 44 characters`);
    const buf = Buffer.alloc(MAX_KEY_FILE_BYTES + 1);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    if (bytesRead > MAX_KEY_FILE_BYTES) throw new KeyFileError('KEY_MALFORMED', path, `${path}: more than ${MAX_KEY_FILE_BYTES} octets; a ${kind} file is one line of 44 characters`);
    const text = buf.subarray(0, bytesRead).toString('latin1');
    buf.fill(0);
    const r = parseKeyText(text, kind);
    if (!r.ok) throw new KeyFileError('KEY_MALFORMED', path, `${path}: ${r.problem}`);
    return r.key;
  } catch (e) {
    if (e instanceof KeyFileError) throw e;
    throw new KeyFileError('KEY_READ', path, `${path}: cannot read the ${kind}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  } finally {
    await fh.close();
  }
}

/** Reads a host's X25519 private key file (see loadSecretKeyFile). */
export function loadPrivateKey(path: string): Promise<Uint8Array> {
  return loadSecretKeyFile(path, 'private key');
}

/** Reads a peer's pre-shared key file (32 octets base64, mode 0600; see loadSecretKeyFile). */
export function loadPresharedKey(path: string): Promise<Uint8Array> {
  return loadSecretKeyFile(path, 'pre-shared key');
}

/** A fresh X25519 private key: 32 random octets, clamped (RFC 7748 §5) as `wg genkey` does. */
export function generatePrivateKey(): Uint8Array {
  return clampX25519PrivateKey(new Uint8Array(randomBytes(KEY_BYTES)));
}

/** A fresh pre-shared key: 32 random octets. */
export function generatePresharedKey(): Uint8Array {
  return new Uint8Array(randomBytes(KEY_BYTES));
}

/** The X25519 public key of a private key. */
export function publicKeyOf(privateKey: Uint8Array): Uint8Array {
  if (privateKey.length !== KEY_BYTES) throw new RangeError(`publicKeyOf: a private key has ${KEY_BYTES} octets, got ${privateKey.length}`);
  return x25519PublicKey(privateKey);
}

/**
 * Writes a secret key file: one base64 line, mode 0600 from the moment it exists. Refuses an
 * existing file (KEY_EXISTS) unless `force`, which writes a 0600 temporary file beside it and
 * renames it over the old one (so the old file's mode never applies to the new key).
 */
export async function writeSecretKeyFile(path: string, key: Uint8Array, o: { force?: boolean; kind?: Exclude<KeyKind, 'public key'> } = {}): Promise<void> {
  const kind = o.kind ?? 'private key';
  const text = encodeKey(key) + '\n';
  const target = o.force ? join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`) : path;
  let fh;
  try {
    fh = await open(target, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST' && !o.force) throw new KeyFileError('KEY_EXISTS', path, `${path}: exists; not overwriting the ${kind} (give --force to replace it)`);
    throw new KeyFileError('KEY_WRITE', path, `${path}: cannot create the ${kind} file: ${code ?? (e as Error).message}`);
  }
  try {
    await fh.chmod(0o600); // whatever the umask did
    await fh.writeFile(text, 'latin1');
    await fh.sync();
  } catch (e) {
    await fh.close().catch(() => {});
    await unlink(target).catch(() => {});
    throw new KeyFileError('KEY_WRITE', path, `${path}: cannot write the ${kind}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  await fh.close();
  if (target !== path) {
    try {
      await rename(target, path);
    } catch (e) {
      await unlink(target).catch(() => {});
      throw new KeyFileError('KEY_WRITE', path, `${path}: cannot replace the ${kind}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  }
}
