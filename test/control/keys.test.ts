// Key files: keygen/pubkey through the CLI module functions, file modes, refusing a key file
// others may read, malformed files named with what is wrong, pre-shared keys.
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runKeygen, runPubkey } from '../../src/cli/keys.js';
import { CliError } from '../../src/cli/errors.js';
import { KeyFileError, loadPresharedKey, loadPrivateKey, parseKeyText, publicKeyOf, writeSecretKeyFile } from '../../src/control/keys.js';

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'st-keys-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function capture(stdin?: string) {
  let text = '';
  return {
    io: { stdout: { write: (t: string) => (text += t) }, readStdin: async () => stdin ?? '' },
    get text() {
      return text;
    },
  };
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a rejection');
}

// RFC 7748 §6.1: Alice's private and public key.
const ALICE_PRIV = Buffer.from('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a', 'hex').toString('base64');
const ALICE_PUB = Buffer.from('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a', 'hex').toString('base64');

describe('sectunnel keygen / pubkey', () => {
  it('keygen --out writes one base64 line with mode 0600 and prints the public key; pubkey --key agrees', async () => {
    const file = join(dir, 'host.key');
    const out = capture();
    expect(await runKeygen(['--out', file], out.io)).toBe(0);
    const st = await stat(file);
    expect(st.mode & 0o777).toBe(0o600);
    const text = await readFile(file, 'latin1');
    expect(text).toMatch(/^[A-Za-z0-9+/]{43}=\n$/);
    const printed = /public key: (\S+)/.exec(out.text)![1]!;
    const pub = capture();
    expect(await runPubkey(['--key', file], pub.io)).toBe(0);
    expect(pub.text).toBe(printed + '\n');
    // Clamped as wg genkey does (RFC 7748 §5).
    const key = Buffer.from(text.trim(), 'base64');
    expect(key[0]! & 7).toBe(0);
    expect(key[31]! & 0xc0).toBe(0x40);
  });

  it('pubkey reads stdin; RFC 7748 §6.1 Alice', async () => {
    const out = capture(ALICE_PRIV + '\n');
    expect(await runPubkey([], out.io)).toBe(0);
    expect(out.text).toBe(ALICE_PUB + '\n');
    const bad = capture('not a key\n');
    const e = await rejection(runPubkey([], bad.io));
    expect(e).toBeInstanceOf(CliError);
    expect(e.message).toMatch(/^stdin: not base64 \(white space\)/);
    expect((e as CliError).exitCode).toBe(2);
  });

  it('keygen without --out prints a key; two keys differ', async () => {
    const a = capture();
    const b = capture();
    await runKeygen([], a.io);
    await runKeygen([], b.io);
    expect(a.text).toMatch(/^[A-Za-z0-9+/]{43}=\n$/);
    expect(a.text).not.toBe(b.text);
  });

  it('refuses to overwrite unless --force; --force leaves mode 0600 even over a 0644 file', async () => {
    const file = join(dir, 'exists.key');
    await writeFile(file, 'old\n', { mode: 0o644 });
    await chmod(file, 0o644);
    const e = await rejection(runKeygen(['--out', file], capture().io));
    expect(e).toBeInstanceOf(CliError);
    expect(e.message).toBe(`${file}: exists; not overwriting the private key (give --force to replace it)`);
    expect(await readFile(file, 'latin1')).toBe('old\n');
    expect(await runKeygen(['--out', file, '--force'], capture().io)).toBe(0);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(parseKeyText(await readFile(file, 'latin1'), 'private key').ok).toBe(true);
  });

  it('keygen --psk writes a pre-shared key that loadPresharedKey reads', async () => {
    const file = join(dir, 'peer.psk');
    const out = capture();
    expect(await runKeygen(['--psk', '--out', file], out.io)).toBe(0);
    expect(out.text).toMatch(/pre-shared key/);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect((await loadPresharedKey(file)).length).toBe(32);
  });

  it('bad arguments are usage errors', async () => {
    await expect(runKeygen(['--bogus'], capture().io)).rejects.toBeInstanceOf(CliError);
    await expect(runKeygen(['--force'], capture().io)).rejects.toThrow('--force needs --out FILE');
    await expect(runPubkey(['extra'], capture().io)).rejects.toBeInstanceOf(CliError);
  });
});

describe('loadPrivateKey', () => {
  async function keyFile(name: string, content: string, mode = 0o600): Promise<string> {
    const file = join(dir, name);
    await writeFile(file, content);
    await chmod(file, mode);
    return file;
  }

  it('refuses a key others may read, naming the file and its mode in octal', async () => {
    const file = await keyFile('world.key', ALICE_PRIV + '\n', 0o644);
    const e = await rejection(loadPrivateKey(file));
    expect(e).toBeInstanceOf(KeyFileError);
    expect((e as KeyFileError).code).toBe('KEY_MODE');
    expect(e.message).toBe(`${file}: mode 0644 lets its group and others read the private key; chmod 600 it`);
  });

  it('refuses group-readable, group-writable and other-writable keys', async () => {
    for (const [mode, text] of [
      [0o640, 'mode 0640 lets its group read the private key'],
      [0o620, 'mode 0620 lets its group write the private key'],
      [0o602, 'mode 0602 lets others write the private key'],
      [0o604, 'mode 0604 lets others read the private key'],
    ] as const) {
      const file = await keyFile(`m${mode.toString(8)}.key`, ALICE_PRIV + '\n', mode);
      const e = await rejection(loadPrivateKey(file));
      expect(e.message).toBe(`${file}: ${text}; chmod 600 it`);
    }
  });

  it('accepts 0600 and 0400', async () => {
    for (const mode of [0o600, 0o400]) {
      const file = await keyFile(`ok${mode.toString(8)}.key`, ALICE_PRIV + '\n', mode);
      expect(Buffer.from(publicKeyOf(await loadPrivateKey(file))).toString('base64')).toBe(ALICE_PUB);
    }
  });

  it('malformed files: the error names the file and what is wrong', async () => {
    const cases: [string, RegExp][] = [
      ['', /: empty; expected one line of base64 holding the 32-octet private key$/],
      [ALICE_PRIV + '\n' + ALICE_PRIV + '\n', /: more than one line/],
      [ALICE_PRIV.slice(0, 40) + '\n', /: 40 characters of base64 \(30 octets\); a private key is 32 octets, 44 characters ending in "="$/],
      [ALICE_PRIV.replace('d', '!') + '\n', /: not base64 \(the character "!"\)/],
      [' ' + ALICE_PRIV + '\n', /: not base64 \(white space\)/],
      [Buffer.alloc(33, 1).toString('base64') + '\n', /: 44 characters of base64 \(33 octets\)/],
      [ALICE_PRIV.slice(0, 42) + 'B=\n', /not canonical base64/],
      ['x'.repeat(2000), /: 2000 octets; a private key file is one line of 44 characters$/],
    ];
    for (const [i, [content, re]] of cases.entries()) {
      const file = await keyFile(`bad${i}.key`, content);
      const e = await rejection(loadPrivateKey(file));
      expect(e, `case ${i}`).toBeInstanceOf(KeyFileError);
      expect((e as KeyFileError).code).toBe('KEY_MALFORMED');
      expect(e.message.startsWith(`${file}: `)).toBe(true);
      expect(e.message, `case ${i}`).toMatch(re);
    }
    // A final CRLF is accepted (a key pasted on another system).
    expect((await loadPrivateKey(await keyFile('crlf.key', ALICE_PRIV + '\r\n'))).length).toBe(32);
  });

  it('a missing file or a directory', async () => {
    const missing = join(dir, 'nope.key');
    const e = await rejection(loadPrivateKey(missing));
    expect((e as KeyFileError).code).toBe('KEY_READ');
    expect(e.message).toBe(`${missing}: cannot open the private key: ENOENT`);
    const sub = join(dir, 'adir');
    await mkdir(sub, { mode: 0o700 });
    const d = await rejection(loadPrivateKey(sub));
    expect((d as KeyFileError).code).toBe('KEY_NOT_REGULAR');
    expect(d.message).toBe(`${sub}: not a regular file; the private key must be a file of mode 0600`);
  });

  it('pre-shared keys follow the same rules', async () => {
    const file = await keyFile('open.psk', Buffer.alloc(32, 5).toString('base64') + '\n', 0o644);
    await expect(loadPresharedKey(file)).rejects.toThrow(`${file}: mode 0644 lets its group and others read the pre-shared key; chmod 600 it`);
    await chmod(file, 0o600);
    expect(Buffer.from(await loadPresharedKey(file)).equals(Buffer.alloc(32, 5))).toBe(true);
  });

  it('writeSecretKeyFile creates with 0600 even under a permissive umask', async () => {
    const old = process.umask(0o000);
    try {
      const file = join(dir, 'umask.key');
      await writeSecretKeyFile(file, new Uint8Array(32).fill(1));
      expect((await stat(file)).mode & 0o777).toBe(0o600);
    } finally {
      process.umask(old);
    }
  });
});
