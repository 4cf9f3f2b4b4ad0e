/**
 * `sectunnel hook -- GUEST OPERATION SUB-OPERATION [EXTRA…]`: the libvirt qemu
 * hook (scripts/libvirt-qemu-hook, installed as /etc/libvirt/hooks/qemu, runs
 * it). libvirt passes the domain XML on stdin; the hook reads it against the
 * network definition and asks the running daemon to attach or detach the
 * domain's NICs on that network (control methods `attach`/`detach`).
 *
 * Stages: arguments → deadline (--timeout, whole run) → operation: started,
 * reconnect, attach → read stdin, the network XML, the domain's interfaces and
 * labels (control/libvirt-domain.ts) → `attach` with replace (the domain's whole
 * set) | stopped, release → `detach` (nothing attached is fine) | migrate,
 * restore, prepare, start → nothing (an incoming domain is attached at its
 * `started`) → one log line per run (stderr and --log FILE).
 *
 * Never writes to stdout: for `migrate` and `restore` libvirt reads stdout as a
 * replacement domain XML (empty = unchanged). Exits 0 on every failure unless
 * --strict (then 1, and libvirt refuses to start the domain; for `reconnect`
 * libvirt would kill a running one, so a failed reconnect always exits 0).
 */
import { appendFileSync } from 'node:fs';
import { ConfigError } from '../control/config-errors.js';
import type { AttachNic } from '../control/libvirt-attach.js';
import { readLibvirtDomain } from '../control/libvirt-domain.js';
import { isLibvirtConfig } from '../control/libvirt-host.js';
import { parseLibvirtNetwork } from '../control/libvirt-network.js';
import { networkRef } from '../control/libvirt.js';
import { parseXml, readXmlFile } from '../control/xml.js';
import { callAttach, formatAttachSummary } from './attach.js';
import { controlSocket, timeoutMsOf } from './status.js';
import { CliError, EXIT_USAGE, parseCommandArgs } from './errors.js';
import { registerSubcommand } from './main.js';

/** Default deadline of one hook run: libvirt waits for the hook while it starts or stops a guest. */
export const HOOK_TIMEOUT_MS = 5000;

const HELP = `usage: sectunnel hook (--network FILE | --config FILE.xml) [--socket PATH] [--timeout MS]
                     [--strict] [--log FILE] -- GUEST OPERATION SUB-OPERATION [EXTRA…]

The libvirt qemu hook: scripts/libvirt-qemu-hook (install it as /etc/libvirt/hooks/qemu)
runs this with libvirt's arguments and the domain XML on stdin. On started, reconnect
and attach it attaches the domain's interfaces on the network to the running daemon
(labels from the domain's <sectunnel:label> metadata or <seclabel>, as import-libvirt
reads them); on stopped and release it detaches the domain. Other operations (prepare,
start, migrate, restore) do nothing: an incoming migration is attached at its started.
Nothing is written to stdout (libvirt reads it as a new XML for migrate and restore).

  --network FILE   the sectunnel network definition (docs/libvirt.md)
  --config FILE    the daemon's config: a network XML is also the network; the socket
                   is taken from it
  --socket PATH    the daemon's control socket (default: --config's, else the one in
                   /run/sectunnel)
  --timeout MS     the whole run's deadline (default ${HOOK_TIMEOUT_MS}); then it gives up
  --strict         exit 1 when the domain cannot be attached (libvirt then refuses to
                   start it); default: log the error and exit 0, so a guest still
                   starts when sectunnel is down (without a network for its labeled NICs)
  --log FILE       append each line to FILE as well as stderr
  -h, --help       this text

Exit status: 0 done, or failed without --strict; 1 failed with --strict; 2 bad arguments.`;

/** Where the hook reads and writes; tests pass their own. */
export interface HookIo {
  /** The domain XML (libvirt's stdin). */
  readonly stdin: AsyncIterable<Buffer | string> | string;
  readonly err: { write(text: string): unknown };
  /** Stops reading stdin at the deadline (process.stdin.destroy). */
  readonly abort?: () => void;
}

const ATTACH_OPS = new Set(['started', 'reconnect', 'attach']);
const DETACH_OPS = new Set(['stopped', 'release']);

async function readAll(stdin: HookIo['stdin']): Promise<string> {
  if (typeof stdin === 'string') return stdin;
  const parts: Buffer[] = [];
  for await (const c of stdin) parts.push(typeof c === 'string' ? Buffer.from(c) : c);
  return Buffer.concat(parts).toString('utf8');
}

class Deadline extends Error {}

/** Runs `sectunnel hook` with `argv`; returns the exit status (see HELP), throws CliError for bad arguments. */
export async function runHook(argv: string[], io: HookIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(
    argv,
    {
      network: { type: 'string' },
      config: { type: 'string' },
      socket: { type: 'string' },
      timeout: { type: 'string' },
      strict: { type: 'boolean' },
      log: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    HELP, true,
  );
  if (values.help) {
    io.err.write(HELP + '\n');
    return 0;
  }
  const [guest, op, subop, ...extra] = positionals;
  if (guest === undefined || op === undefined) throw new CliError(`expected GUEST OPERATION SUB-OPERATION (libvirt's arguments)\n\n${HELP}`, EXIT_USAGE);
  const network = values.network ?? (values.config !== undefined && isLibvirtConfig(values.config) ? values.config : undefined);
  if (network === undefined) throw new CliError(`--network FILE (or --config FILE.xml) is required: the interfaces on it are attached\n\n${HELP}`, EXIT_USAGE);
  const timeoutMs = timeoutMsOf(values.timeout, HOOK_TIMEOUT_MS);
  const startedMs = Date.now();
  const log = (level: 'info' | 'error', text: string): void => {
    const line = `${new Date().toISOString()} sectunnel-hook[${process.pid}]: ${level}: qemu ${guest} ${op} ${subop ?? '-'}${extra.length > 0 ? ` ${extra.join(' ')}` : ''}: ${text.replace(/\n/g, '; ')}\n`;
    io.err.write(line);
    if (values.log !== undefined) {
      try {
        appendFileSync(values.log, line, { mode: 0o640 });
      } catch (e) {
        io.err.write(`sectunnel-hook: cannot append to ${values.log}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}\n`);
      }
    }
  };
  const isAttach = ATTACH_OPS.has(op);
  if (!isAttach && !DETACH_OPS.has(op)) {
    if (op === 'migrate') log('info', 'incoming migration: nothing to do now; the domain is attached at its "started"');
    return 0;
  }

  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Deadline(`gave up after ${timeoutMs} ms (--timeout)`)), timeoutMs);
  });
  const work = async (): Promise<string> => {
    const text = await readAll(io.stdin);
    const net = parseLibvirtNetwork(await readXmlFile(network), network);
    const warnings: string[] = [];
    let nics: AttachNic[] | undefined;
    try {
      const dom = readLibvirtDomain(parseXml(text, `<stdin: domain ${guest}>`), `<stdin: domain ${guest}>`, networkRef(net), warnings);
      nics = dom.interfaces.map((i) => ({ interface: i.dev, label: i.label, macs: [i.mac], name: i.name }));
    } catch (e) {
      // A domain that cannot be read is still detached by name.
      if (isAttach || !(e instanceof ConfigError)) throw e;
    }
    if (nics !== undefined && nics.length === 0) return `no interface on network ${net.name}; nothing to do`;
    const remaining = Math.max(1, timeoutMs - (Date.now() - startedMs));
    const socket = await controlSocket({ socket: values.socket, config: values.socket === undefined ? values.config : undefined });
    const reply = isAttach
      ? await callAttach(socket, 'attach', { domain: guest, interfaces: nics!, replace: true }, remaining)
      : await callAttach(socket, 'detach', { domain: guest, missingOk: true }, remaining);
    const labels = isAttach ? ` (${nics!.map((n) => `${n.name}: ${n.interface} ${n.label} ${n.macs.join(',')}`).join('; ')})` : '';
    return formatAttachSummary(reply).trim().replace(/\n/g, '; ') + labels;
  };
  try {
    log('info', await Promise.race([work(), deadline]));
    return 0;
  } catch (e) {
    const why = e instanceof CliError || e instanceof ConfigError || e instanceof Deadline ? e.message : (e as Error).stack ?? String(e);
    const strict = values.strict === true && op !== 'reconnect';
    log('error', `${why}${strict ? '' : ' (exit 0: libvirt goes on; pass --strict to refuse)'}`);
    return strict ? 1 : 0;
  } finally {
    clearTimeout(timer);
    io.abort?.();
  }
}

registerSubcommand('hook', 'the libvirt qemu hook: attach/detach domains as libvirt starts and stops them', async (argv) => {
  const code = await runHook(argv, { stdin: process.stdin, err: process.stderr, abort: () => process.stdin.destroy() });
  // Whatever is still pending (a connection past the deadline) must not hold libvirt up.
  setTimeout(() => process.exit(code), 100).unref();
  return code;
});
