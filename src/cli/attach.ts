/**
 * `sectunnel attach` and `sectunnel detach`: add a guest NIC to the running
 * daemon, or remove one, without a restart and without touching other domains
 * (control methods `attach`/`detach`, src/control/libvirt-attach.ts).
 *
 * Stages: arguments (checked here: names, MACs, VLAN; exit 2) → socket (--socket;
 * else --config's control.socket; else the only socket in /run/sectunnel) → the
 * control method (the daemon checks the label and conflicts; exit 2) → one line
 * per change.
 */
import { AttachError, checkDomainName, checkInterfaceName, checkMac, type AttachNic } from '../control/libvirt-attach.js';
import { callControl, ControlClientError } from '../control/status-client.js';
import type { AttachSummary } from './daemon/daemon.js';
import { CliError, EXIT_FAILURE, EXIT_USAGE, parseCommandArgs } from './errors.js';
import { registerSubcommand } from './main.js';
import { controlSocket, timeoutMsOf, type StatusOutput } from './status.js';

const SOCKET_HELP = `  --socket PATH         the daemon's control socket (config control.socket)
  --config FILE         read the socket path from the daemon's config (or network XML)
  --timeout MS          how long to wait for the daemon (default 5000)
  -h, --help            this text`;

const ATTACH_HELP = `usage: sectunnel attach --domain NAME --interface DEV (--label LABEL | --vlan VID) --mac MAC [--mac MAC …]
                       [--name NAME] [--socket PATH | --config FILE] [--timeout MS]

Attaches a guest NIC to the running daemon: frames from DEV (libvirt's vnetN, reached
with a packet socket) with a source MAC of the guest get LABEL, and frames of LABEL are
delivered to it. Other domains, SAs and sessions are not disturbed. The attachment
survives reloads (SIGHUP) and daemon restarts (kept in state.dir) until detached.
Attaching the same NIC again with the same values changes nothing.

  --domain NAME         the libvirt domain (what \`sectunnel detach\` names)
  --interface DEV       the host-side interface of the NIC (vnetN)
  --label LABEL         the NIC's label (a name of the config's labels)
  --vlan VID            or the label by its VLAN (refused if two labels share it)
  --mac MAC             a MAC address the guest sends from (repeat for several)
  --name NAME           the sectunnel domain name (default: the libvirt name, or
                        NAME.DEV when the domain already has one)
${SOCKET_HELP}

Exit status: 0 attached (or already so), 1 no daemon or the interface cannot be opened,
2 bad arguments, unknown label, or DEV/MAC/name already used by another domain.`;

const DETACH_HELP = `usage: sectunnel detach --domain NAME [--interface DEV] [--missing-ok]
                       [--socket PATH | --config FILE] [--timeout MS]

Detaches the runtime-attached NICs of a libvirt domain (all of them, or only DEV) from
the running daemon: their packet sockets are closed and their MACs forgotten. Other
domains are not disturbed. Domains of the config file are removed by editing it and
reloading, not with detach.

  --domain NAME         the libvirt domain
  --interface DEV       only this NIC
  --missing-ok          nothing attached is not an error (exit 0)
${SOCKET_HELP}

Exit status: 0 detached, 1 no daemon, 2 bad arguments or nothing attached by that name.`;

const SOCKET_OPTIONS = {
  socket: { type: 'string' },
  config: { type: 'string' },
  timeout: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

function usage(message: string, help: string): CliError {
  return new CliError(`${message}\n\n${help}`, EXIT_USAGE);
}

/** A local check failure as "--flag value: why" (exit 2). */
function flagError(e: unknown, flag: string): CliError {
  if (e instanceof AttachError) return new CliError(`--${flag} ${e.message.replace(/^[^:]*: /, '')}`, EXIT_USAGE);
  throw e;
}

/** Remote codes that are the caller's mistake (exit 2); others are failures (exit 1). */
const USAGE_CODES = new Set(['bad_params', 'unknown_label', 'conflict', 'not_attached']);

/** Calls an attach/detach method; maps errors to CliError with the daemon's message. */
export async function callAttach(socket: string, method: 'attach' | 'detach', params: unknown, timeoutMs: number): Promise<AttachSummary> {
  try {
    return (await callControl(socket, method, params, { timeoutMs })) as AttachSummary;
  } catch (e) {
    if (e instanceof ControlClientError) {
      const code = e.remote?.code;
      if (code !== undefined) throw new CliError(`sectunnel ${method}: ${e.remote!.message}`, USAGE_CODES.has(code) ? EXIT_USAGE : EXIT_FAILURE);
      throw new CliError(e.message, EXIT_FAILURE);
    }
    throw e;
  }
}

/** One line per change of an attach/detach reply. */
export function formatAttachSummary(s: AttachSummary): string {
  const lines = [
    ...s.attached.map((n) => `attached ${n}`),
    ...s.detached.map((n) => `detached ${n}`),
    ...s.unchanged.map((n) => `${n} is already attached so; nothing changed`),
  ];
  if (lines.length === 0) lines.push('nothing to detach');
  if (s.reload !== null && s.reload.domains.kept.length > 0) lines.push(`undisturbed: ${s.reload.domains.kept.join(', ')}`);
  if (s.notPersisted !== undefined) lines.push(`warning: ${s.notPersisted}`);
  return lines.join('\n') + '\n';
}

/** Runs `sectunnel attach` with `argv` (after the subcommand name); returns the exit status, throws CliError. */
export async function runAttach(argv: string[], out: StatusOutput = process.stdout): Promise<number> {
  const { values } = parseCommandArgs(
    argv,
    {
      domain: { type: 'string' },
      interface: { type: 'string' },
      label: { type: 'string' },
      vlan: { type: 'string' },
      mac: { type: 'string', multiple: true },
      name: { type: 'string' },
      ...SOCKET_OPTIONS,
    },
    ATTACH_HELP,
  );
  if (values.help) {
    out.write(ATTACH_HELP + '\n');
    return 0;
  }
  for (const f of ['domain', 'interface', 'mac'] as const) if (values[f] === undefined) throw usage(`--${f} is required`, ATTACH_HELP);
  if (values.label === undefined && values.vlan === undefined) throw usage('--label LABEL (or --vlan VID) is required: there is no default label', ATTACH_HELP);
  let nic: AttachNic;
  let domain: string;
  try {
    domain = checkDomainName(values.domain, 'domain');
  } catch (e) {
    throw flagError(e, 'domain');
  }
  try {
    checkInterfaceName(values.interface, 'interface');
  } catch (e) {
    throw flagError(e, 'interface');
  }
  const macs = values.mac!.map((m) => {
    try {
      return checkMac(m, 'mac');
    } catch (e) {
      throw flagError(e, 'mac');
    }
  });
  let vlan: number | undefined;
  if (values.vlan !== undefined) {
    vlan = Number(values.vlan);
    if (!/^[0-9]+$/.test(values.vlan) || vlan < 1 || vlan > 4094) throw new CliError(`--vlan ${JSON.stringify(values.vlan)} is not valid: expected a VLAN id in 1..4094`, EXIT_USAGE);
  }
  nic = {
    interface: values.interface!,
    ...(values.label !== undefined && { label: values.label }),
    ...(vlan !== undefined && { vlan }),
    macs,
    ...(values.name !== undefined && { name: values.name }),
  };
  const timeoutMs = timeoutMsOf(values.timeout);
  const socket = await controlSocket(values);
  const reply = await callAttach(socket, 'attach', { domain, interfaces: [nic] }, timeoutMs);
  out.write(formatAttachSummary(reply));
  return 0;
}

/** Runs `sectunnel detach` with `argv`; returns the exit status, throws CliError. */
export async function runDetach(argv: string[], out: StatusOutput = process.stdout): Promise<number> {
  const { values } = parseCommandArgs(
    argv,
    { domain: { type: 'string' }, interface: { type: 'string' }, 'missing-ok': { type: 'boolean' }, ...SOCKET_OPTIONS },
    DETACH_HELP,
  );
  if (values.help) {
    out.write(DETACH_HELP + '\n');
    return 0;
  }
  if (values.domain === undefined) throw usage('--domain is required', DETACH_HELP);
  let domain: string;
  try {
    domain = checkDomainName(values.domain, 'domain');
    if (values.interface !== undefined) checkInterfaceName(values.interface, 'interface');
  } catch (e) {
    throw flagError(e, values.interface !== undefined && (e as Error).message.startsWith('interface') ? 'interface' : 'domain');
  }
  const timeoutMs = timeoutMsOf(values.timeout);
  const socket = await controlSocket(values);
  const reply = await callAttach(
    socket,
    'detach',
    { domain, ...(values.interface !== undefined && { interface: values.interface }), ...(values['missing-ok'] === true && { missingOk: true }) },
    timeoutMs,
  );
  out.write(formatAttachSummary(reply));
  return 0;
}

registerSubcommand('attach', 'attach a guest NIC (libvirt vnetN) to the running daemon with a label', (argv) => runAttach(argv));
registerSubcommand('detach', 'detach a runtime-attached domain from the running daemon', (argv) => runDetach(argv));
