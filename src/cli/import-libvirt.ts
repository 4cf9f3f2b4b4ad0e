/**
 * `sectunnel import-libvirt NETWORK.xml [DOMAIN.xml …]`: a sectunnel network
 * definition in libvirt style and the domain definitions of this host →
 * this host's daemon config (docs/libvirt.md), printed or written.
 *
 * Stages: arguments → import (control/libvirt.ts: parse, pick this host,
 * read secrets, validate) → serialise (YAML or JSON) → parse the text back
 * through daemonConfigSchema, exactly as `sectunnel run --config` will →
 * write (to a temporary file renamed into place) or print; notes to stderr.
 */
import { rename, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { daemonConfigSchema } from '../control/config.js';
import { DEFAULT_LIBVIRT_SECRETS_DIR, importLibvirt, type PortKind } from '../control/libvirt.js';
import { formatOf, parseConfigText, type ConfigFormat } from '../control/load.js';
import { CliError, EXIT_FAILURE, EXIT_USAGE, parseCommandArgs } from './errors.js';
import { registerSubcommand } from './main.js';

const HELP = `usage: sectunnel import-libvirt NETWORK.xml [DOMAIN.xml …] [--host-name NAME] [--underlay ADDRESS]
                                [--host-key FILE] [--secrets DIR] [--port attach|tap] [--out FILE] [--format yaml|json]

Turns a sectunnel network definition in libvirt style — <network type='tunneled'>
with a <tunnel type='ipsec'>, or <sectunnel type='ipsec'> with <sa> and <sp> — and
the definitions of the domains on this host (virsh dumpxml DOMAIN) into this host's
daemon config for \`sectunnel run --config FILE\`. Each domain interface on the
network becomes a sectunnel domain whose label comes from the domain's
<sectunnel:label> metadata or its SELinux <seclabel>. See docs/libvirt.md.

  --host-name NAME    this host's <peer> in the network (default: the peer with the
                      --underlay address, else the one named like this machine)
  --underlay ADDRESS  this host's underlay address (must be its <peer>'s address)
  --host-key FILE     this host's private key (host.privateKeyFile; \`sectunnel keygen
                      FILE\`); the handshake needs it (default: HOST.key next to
                      NETWORK.xml if that file exists)
  --secrets DIR       where libvirt keeps secret values, UUID.base64
                      (default ${DEFAULT_LIBVIRT_SECRETS_DIR})
  --port KIND         attach (default): a packet socket on libvirt's vnetN, which
                      QEMU holds open; tap: open the TAP device itself
  --out FILE          write the config to FILE (default: print it)
  --format FORMAT     yaml or json (default: by --out's extension, else yaml)
  -h, --help          this text

Exit status: 0 written, 1 cannot write, 2 bad arguments or invalid XML (one line per
problem, naming the file, the element path and the attribute).`;

/** Where the command writes: the config (stdout) and notes (stderr); tests pass their own. */
export interface ImportOutput {
  readonly out: { write(text: string): unknown };
  readonly err: { write(text: string): unknown };
}

/** Runs `sectunnel import-libvirt` with `argv` (after the subcommand name); returns the exit status, throws CliError or ConfigError. */
export async function runImportLibvirt(argv: string[], io: ImportOutput = { out: process.stdout, err: process.stderr }): Promise<number> {
  const { values, positionals } = parseCommandArgs(
    argv,
    {
      'host-name': { type: 'string' },
      underlay: { type: 'string' },
      'host-key': { type: 'string' },
      secrets: { type: 'string' },
      port: { type: 'string' },
      out: { type: 'string' },
      format: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    HELP, true,
  );
  if (values.help) {
    io.out.write(HELP + '\n');
    return 0;
  }
  const [network, ...domains] = positionals;
  if (network === undefined) throw new CliError(`NETWORK.xml is required\n\n${HELP}`, EXIT_USAGE);
  if (values.port !== undefined && values.port !== 'attach' && values.port !== 'tap') {
    throw new CliError(`--port ${JSON.stringify(values.port)}: expected attach or tap`, EXIT_USAGE);
  }
  let format: ConfigFormat;
  if (values.format !== undefined) {
    if (values.format !== 'yaml' && values.format !== 'json') throw new CliError(`--format ${JSON.stringify(values.format)}: expected yaml or json`, EXIT_USAGE);
    format = values.format;
  } else {
    format = (values.out !== undefined ? formatOf(values.out) : undefined) ?? 'yaml';
  }

  const result = await importLibvirt(network, domains, {
    ...(values['host-name'] !== undefined && { hostName: values['host-name'] }),
    ...(values.underlay !== undefined && { underlay: values.underlay }),
    ...(values.secrets !== undefined && { secretsDir: values.secrets }),
    ...(values['host-key'] !== undefined ? { privateKeyFile: resolve(values['host-key']) } : { hostKeyDir: dirname(resolve(network)) }),
    ...(values.port !== undefined && { port: values.port as PortKind }),
  });
  for (const w of result.warnings) io.err.write(`sectunnel import-libvirt: warning: ${w}\n`);

  const sources = [network, ...domains].map((f) => basename(f)).join(', ');
  const text =
    format === 'json'
      ? JSON.stringify(result.file, null, 2) + '\n'
      : `# sectunnel daemon config of host ${result.hostName}, generated by \`sectunnel import-libvirt\` from ${sources}.\n` +
        `# Edit the libvirt XML and import again rather than this file.\n` +
        stringify(result.file, { version: '1.2', lineWidth: 0 });
  // What `sectunnel run --config` will read: the text itself, through the same schema.
  parseConfigText(text, values.out ?? `<generated ${format}>`, daemonConfigSchema, format);

  if (values.out === undefined) {
    io.out.write(text);
    return 0;
  }
  const hasKeys = result.config.peers.some((p) => p.staticSas.length > 0);
  const tmp = join(dirname(values.out), `.${basename(values.out)}.${process.pid}.tmp`);
  try {
    // KEYMATs of static SAs are secrets; otherwise the file names key files only.
    await writeFile(tmp, text, { mode: hasKeys ? 0o600 : 0o644, flag: 'wx' });
    await rename(tmp, values.out);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw new CliError(`cannot write ${values.out}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, EXIT_FAILURE);
  }
  io.err.write(`sectunnel import-libvirt: wrote ${values.out}: host ${result.hostName}, ${result.config.labels.length} labels, ${result.config.domains.length} domains, ${result.config.peers.length} peers\n`);
  return 0;
}

registerSubcommand('import-libvirt', 'libvirt network and domain XML → this host\'s daemon config', (argv) => runImportLibvirt(argv));
