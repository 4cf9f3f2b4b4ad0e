/**
 * Secrets named by a libvirt network definition: `<secret uuid='…'/>` is a
 * libvirt secret, whose value libvirt's secret driver keeps base64-encoded in
 * `SECRETS_DIR/UUID.base64` (next to its definition, `UUID.xml`; the system
 * instance's folder is /etc/libvirt/secrets); `<secret file='/…'/>` is a file
 * of the same format, e.g. what `virsh secret-get-value UUID` prints.
 *
 * Stages: the file's path → read (size-limited) → base64 check → length check
 * for its use (32-octet pre-shared key, or a KEYMAT of the SA's algorithm) →
 * mode check (a warning when group or others may read it). A secret's bytes
 * never appear in a message, only its length.
 */
import { readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { XmlProblems } from './libvirt-walk.js';
import type { SecretRef } from './libvirt-network.js';

/** Where the system libvirtd keeps secret values. */
export const DEFAULT_LIBVIRT_SECRETS_DIR = '/etc/libvirt/secrets';

/** Largest secret file read (base64 text with a newline). */
const SECRET_MAX_BYTES = 4096;

/** A secret found and checked: its absolute path and its bytes (the caller zeroes them when done). */
export interface ResolvedSecret {
  readonly file: string;
  readonly bytes: Uint8Array;
}

/** The absolute path of a secret: SECRETS_DIR/UUID.base64, or the file named. */
export function secretPath(ref: SecretRef, secretsDir: string): string {
  return ref.kind === 'uuid' ? join(resolve(secretsDir), `${ref.uuid}.base64`) : ref.file;
}

/**
 * Reads the secret `ref` and checks it holds `wantBytes` octets (`use` says
 * what for, in messages). Problems go to `p` at the `<secret>`'s attribute;
 * warnings (file mode) to `warnings`. Undefined when it cannot be used.
 */
export function readSecret(ref: SecretRef, secretsDir: string, wantBytes: number, use: string, p: XmlProblems, warnings: string[]): ResolvedSecret | undefined {
  const file = secretPath(ref, secretsDir);
  const where = `${ref.path}/@${ref.kind}`;
  const name = ref.kind === 'uuid' ? `secret ${ref.uuid}: ${file}` : file;
  let text: string;
  let mode: number;
  try {
    const st = statSync(file);
    if (st.isDirectory()) throw Object.assign(new Error('directory'), { code: 'EISDIR' });
    if (st.size > SECRET_MAX_BYTES) {
      p.add(where, `${name} is ${st.size} bytes; a secret file holds base64 text of at most ${SECRET_MAX_BYTES} bytes`, ref.at);
      return undefined;
    }
    mode = st.mode & 0o777;
    text = readFileSync(file, 'latin1');
  } catch (e) {
    p.add(where, `${name}: ${readFailure(e, ref, secretsDir)}`, ref.at);
    return undefined;
  }
  const b64 = text.trim();
  if (b64 === '' || b64.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(b64)) {
    p.add(where, `${name} does not hold base64 text (libvirt's .base64 format, as \`virsh secret-get-value\` prints it)`, ref.at);
    return undefined;
  }
  const bytes = new Uint8Array(Buffer.from(b64, 'base64'));
  if (bytes.length !== wantBytes) {
    p.add(where, `${name} holds ${bytes.length} octets; expected ${wantBytes} (${use})`, ref.at);
    bytes.fill(0);
    return undefined;
  }
  if ((mode & 0o077) !== 0) {
    warnings.push(`${p.file}: ${where}: ${file} may be read by group or others (mode 0${mode.toString(8)}); a key file should be 0600`);
  }
  return { file, bytes };
}

function readFailure(e: unknown, ref: SecretRef, secretsDir: string): string {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') {
    if (ref.kind === 'file') return 'no such file';
    let defined = false;
    try {
      defined = statSync(join(resolve(secretsDir), `${ref.uuid}.xml`)).isFile();
    } catch {
      defined = false;
    }
    return defined
      ? `no such file: the secret is defined but has no value; set one with \`virsh secret-set-value --secret ${ref.uuid} --base64 "$(head -c 32 /dev/urandom | base64)"\``
      : `no such file: libvirt keeps the value of secret UUID in ${resolve(secretsDir)}/UUID.base64 (pass --secrets DIR for another folder, or use <secret file='…'/>)`;
  }
  if (code === 'EACCES' || code === 'EPERM') return "permission denied (libvirt's secrets are readable by root only)";
  if (code === 'EISDIR') return 'is a directory, expected a file';
  return `cannot read it: ${code ?? (e as Error).message}`;
}
