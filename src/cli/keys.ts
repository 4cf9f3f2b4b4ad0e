/**
 * `sectunnel keygen` and `sectunnel pubkey`: host identity keys (X25519, base64, one line,
 * as WireGuard's `wg genkey` / `wg pubkey`) and pre-shared keys (`keygen --psk`).
 *
 * Stages: arguments → key (fresh, or read from --key FILE / stdin) → file (mode 0600,
 * never overwritten without --force) or stdout.
 */
import {
  KeyFileError,
  encodeKey,
  generatePresharedKey,
  generatePrivateKey,
  loadPrivateKey,
  parseKeyText,
  publicKeyOf,
  writeSecretKeyFile,
} from '../control/keys.js';
import { CliError, EXIT_FAILURE, EXIT_USAGE, parseCommandArgs } from './errors.js';
import { registerSubcommand } from './main.js';

const KEYGEN_HELP = `usage: sectunnel keygen [--out FILE [--force]] [--psk]

Generates a host's X25519 private key (or, with --psk, a pre-shared key for one
peer pair) as one line of base64.

  --out FILE   write the key to FILE, created with mode 0600; the public key is
               printed (peers list it as this host's publicKey)
  --force      replace FILE if it exists (the new file is 0600 whatever the old was)
  --psk        a pre-shared key (32 random octets) instead of a private key
  -h, --help   this text

Without --out the key is printed on stdout (redirect it into a 0600 file).
The daemon refuses a key file that its group or others may read.
Exit status: 0 written, 1 could not write, 2 bad arguments or the file exists.`;

const PUBKEY_HELP = `usage: sectunnel pubkey [--key FILE]

Prints the X25519 public key of a private key, as one line of base64: the value
peers put in their configuration as this host's publicKey.

  --key FILE   read the private key from FILE (must be mode 0600 or stricter)
  -h, --help   this text

Without --key the private key is read from stdin:  sectunnel pubkey < host.key
Exit status: 0 printed, 1 unreadable key, 2 bad arguments or a malformed key.`;

/** Where the commands read and write; tests pass their own. */
export interface KeysIo {
  stdout: { write(text: string): unknown };
  /** Text of stdin (read only by `pubkey` without --key). */
  readStdin?: () => Promise<string>;
}

async function readAllStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('latin1');
}

function keyError(e: unknown): never {
  if (e instanceof KeyFileError) {
    const usage = e.code === 'KEY_EXISTS' || e.code === 'KEY_MALFORMED' || e.code === 'KEY_MODE';
    throw new CliError(e.message, usage ? EXIT_USAGE : EXIT_FAILURE);
  }
  throw e;
}

/** Runs `sectunnel keygen` with `argv` (after the subcommand name); returns the exit status, throws CliError. */
export async function runKeygen(argv: string[], io: KeysIo = { stdout: process.stdout }): Promise<number> {
  const v = parseCommandArgs(argv, { out: { type: 'string' }, force: { type: 'boolean' }, psk: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } }, KEYGEN_HELP).values;
  if (v.help) {
    io.stdout.write(KEYGEN_HELP + '\n');
    return 0;
  }
  if (v.force && v.out === undefined) throw new CliError('--force needs --out FILE', EXIT_USAGE);
  const key = v.psk ? generatePresharedKey() : generatePrivateKey();
  try {
    if (v.out === undefined) {
      io.stdout.write(encodeKey(key) + '\n');
      return 0;
    }
    try {
      await writeSecretKeyFile(v.out, key, { force: v.force === true, kind: v.psk ? 'pre-shared key' : 'private key' });
    } catch (e) {
      keyError(e);
    }
    io.stdout.write(v.psk ? `wrote a pre-shared key to ${v.out} (mode 0600); give the same file to both peers\n` : `wrote a private key to ${v.out} (mode 0600)\npublic key: ${encodeKey(publicKeyOf(key))}\n`);
    return 0;
  } finally {
    key.fill(0);
  }
}

/** Runs `sectunnel pubkey` with `argv`; returns the exit status, throws CliError. */
export async function runPubkey(argv: string[], io: KeysIo = { stdout: process.stdout }): Promise<number> {
  const v = parseCommandArgs(argv, { key: { type: 'string' }, help: { type: 'boolean', short: 'h' } }, PUBKEY_HELP).values;
  if (v.help) {
    io.stdout.write(PUBKEY_HELP + '\n');
    return 0;
  }
  let key: Uint8Array;
  if (v.key !== undefined) {
    try {
      key = await loadPrivateKey(v.key);
    } catch (e) {
      keyError(e);
    }
  } else {
    const r = parseKeyText(await (io.readStdin ?? readAllStdin)(), 'private key');
    if (!r.ok) throw new CliError(`stdin: ${r.problem}`, EXIT_USAGE);
    key = r.key;
  }
  io.stdout.write(encodeKey(publicKeyOf(key)) + '\n');
  key.fill(0);
  return 0;
}

registerSubcommand('keygen', 'generate a host private key (or --psk a pre-shared key), mode 0600', (argv) => runKeygen(argv));
registerSubcommand('pubkey', 'print the public key of a private key (--key FILE or stdin)', (argv) => runPubkey(argv));
