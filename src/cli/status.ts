/**
 * `sectunnel status`: asks the running daemon for its `status` report over the
 * control socket and prints it as tables (or, with --json, as it came).
 *
 * Stages: arguments → socket path (--socket; else --config's control.socket;
 * else the only socket in /run/sectunnel) → `status` request → tables.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { loadHostConfig } from '../control/libvirt-host.js';
import { callControl, ControlClientError } from '../control/status-client.js';
import { tapOffloadDrops, type StatusReport } from '../control/status-report.js';
import { DISCARD_REASONS, DROP_REASONS } from '../core/reasons.js';
import { CliError, EXIT_FAILURE, EXIT_USAGE, parseCommandArgs } from './errors.js';
import { registerSubcommand } from './main.js';

/** Where daemons put their sockets by default (config.ts defaultControlSocket). */
export const DEFAULT_SOCKET_DIR = '/run/sectunnel';

const HELP = `usage: sectunnel status [--socket PATH | --config FILE] [--json] [--timeout MS]

Shows what the running daemon is doing: its peers, SAs (SPI, direction, labels,
peer, age, packets, bytes, replay drops), labels, domains (guest interfaces),
drop counters by reason (non-zero only), the packet pool and the largest guest
MTU that avoids fragmenting the underlay.

  --socket PATH   the daemon's control socket (config control.socket)
  --config FILE   read the socket path from the daemon's config file (or its network XML)
  --json          print the report as JSON, as the daemon sent it
  --timeout MS    how long to wait for the reply (default 5000)
  -h, --help      this text

Without --socket or --config, the one socket in ${DEFAULT_SOCKET_DIR} is used.
Exit status: 0 printed, 1 no daemon or no reply, 2 bad arguments.`;

/** Output of the command (stdout); tests pass their own. */
export interface StatusOutput {
  write(text: string): unknown;
}

/** Runs `sectunnel status` with `argv` (after the subcommand name); returns the exit status, throws CliError. */
export async function runStatus(argv: string[], out: StatusOutput = process.stdout): Promise<number> {
  const { values } = parseCommandArgs(
    argv,
    {
      socket: { type: 'string' },
      config: { type: 'string' },
      json: { type: 'boolean' },
      timeout: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    HELP,
  );
  if (values.help) {
    out.write(HELP + '\n');
    return 0;
  }
  const timeoutMs = timeoutMsOf(values.timeout);
  const socket = await controlSocket(values);
  let report: unknown;
  try {
    report = await callControl(socket, 'status', undefined, { timeoutMs });
  } catch (e) {
    if (e instanceof ControlClientError) throw new CliError(e.message, EXIT_FAILURE);
    throw e;
  }
  if (values.json) {
    out.write(JSON.stringify(report, null, 2) + '\n');
    return 0;
  }
  if (typeof report !== 'object' || report === null || Array.isArray(report)) {
    throw new CliError(`the daemon on ${socket} sent a status reply that is not a report object`, EXIT_FAILURE);
  }
  out.write(formatStatus(report as Partial<StatusReport>));
  return 0;
}

/**
 * The daemon's control socket from --socket / --config: --socket, else the config's
 * control.socket (a config file or network XML), else the one in /run/sectunnel.
 * Both flags at once is a usage error.
 */
export async function controlSocket(values: { socket?: string | undefined; config?: string | undefined }): Promise<string> {
  if (values.socket !== undefined && values.config !== undefined) throw new CliError('give --socket or --config, not both', EXIT_USAGE);
  return values.socket ?? (values.config !== undefined ? (await loadHostConfig(values.config)).cfg.control.socket : await findSocket());
}

/** Default wait for a control reply (--timeout). */
export const CONTROL_TIMEOUT_DEFAULT_MS = 5000;

/** The value of --timeout MS (absent: `defaultMs`); anything but an integer in 1..600000 is a usage error. */
export function timeoutMsOf(value: string | undefined, defaultMs = CONTROL_TIMEOUT_DEFAULT_MS): number {
  if (value === undefined) return defaultMs;
  const ms = Number(value);
  if (!/^[0-9]+$/.test(value) || ms < 1 || ms > 600_000) throw new CliError(`--timeout ${value}: expected milliseconds, an integer in 1..600000`, EXIT_USAGE);
  return ms;
}

/** The one socket in /run/sectunnel, or a CliError telling the operator to name it. */
async function findSocket(dir = DEFAULT_SOCKET_DIR): Promise<string> {
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => n.endsWith('.sock')).sort();
  } catch {
    names = [];
  }
  if (names.length === 1) return join(dir, names[0]!);
  if (names.length === 0) {
    throw new CliError(`no control socket in ${dir}: no daemon listening; is \`sectunnel run\` running? (or pass --socket PATH or --config FILE)`, EXIT_FAILURE);
  }
  throw new CliError(`several control sockets in ${dir} (${names.join(', ')}); pick one with --socket PATH or --config FILE`, EXIT_USAGE);
}

// ---------------------------------------------------------------------------
// Printing

/** Text safe for a terminal: control characters shown as "?". */
function clean(v: unknown): string {
  if (v === undefined || v === null || v === '') return '-';
  // eslint-disable-next-line no-control-regex
  return String(v).replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
}

function num(v: unknown): string {
  return typeof v === 'number' && Number.isFinite(v) ? String(v) : '-';
}

function list(v: unknown): string {
  return Array.isArray(v) ? (v.length === 0 ? '-' : v.map(clean).join(',')) : clean(v);
}

/** "45s", "3m12s", "2h05m", "3d04h" from milliseconds. */
export function formatAge(ms: unknown): string {
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) return '-';
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h${String(m % 60).padStart(2, '0')}m`;
  return `${Math.floor(h / 24)}d${String(h % 24).padStart(2, '0')}h`;
}

type Align = 'l' | 'r';

/** A text table: header row, then rows; columns padded to their widest cell. */
export function formatTable(headers: readonly string[], rows: readonly (readonly string[])[], align: readonly Align[] = []): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const fmt = (cells: readonly string[]) =>
    cells
      .map((c, i) => (align[i] === 'r' ? c.padStart(widths[i]!) : i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [fmt(headers), ...rows.map(fmt)].join('\n') + '\n';
}

function section(title: string, body: string): string {
  return `\n${title}\n${body}`;
}

function ago(timeIso: unknown, nowIso: unknown): string {
  if (timeIso === null) return 'never';
  if (typeof timeIso !== 'string') return '-';
  const t = Date.parse(timeIso);
  const now = typeof nowIso === 'string' ? Date.parse(nowIso) : NaN;
  return Number.isNaN(t) || Number.isNaN(now) ? clean(timeIso) : `${clean(timeIso)} (${formatAge(now - t)} ago)`;
}

/** "reason n, reason m" of the non-zero counts, or "none". */
function reasonList(v: unknown): string {
  if (typeof v !== 'object' || v === null) return '-';
  const parts = Object.entries(v as Record<string, unknown>)
    .filter(([, n]) => typeof n === 'number' && n > 0)
    .map(([k, n]) => `${clean(k)} ${num(n)}`);
  return parts.length === 0 ? 'none' : parts.join(', ');
}

/** "TIME (in 5m 3s)" for a time after the report's. */
function inFrom(timeIso: unknown, nowIso: unknown): string {
  if (typeof timeIso !== 'string') return '-';
  const t = Date.parse(timeIso);
  const now = typeof nowIso === 'string' ? Date.parse(nowIso) : NaN;
  return Number.isNaN(t) || Number.isNaN(now) ? clean(timeIso) : `${clean(timeIso)} (in ${formatAge(Math.max(0, t - now))})`;
}

/** Renders a status report as the tables `sectunnel status` prints; sections absent from the report are left out. */
export function formatStatus(r: Partial<StatusReport>): string {
  let out = '';
  const head = [`sectunnel ${clean(r.version)} on host ${clean(r.host)}`];
  if (r.pid !== undefined) head.push(`pid ${num(r.pid)}`);
  if (typeof r.startedAt === 'string' && typeof r.time === 'string') head.push(`up ${formatAge(Date.parse(r.time) - Date.parse(r.startedAt))}`);
  out += head.join(', ') + '\n';
  if (r.configFile !== undefined) out += `config: ${clean(r.configFile)}\n`;
  if (r.crypto !== undefined) out += `crypto: ${clean(r.crypto.algorithm)} (${clean(r.crypto.backend)} backend)\n`;
  if (r.underlay !== undefined) {
    const u = r.underlay;
    const addr = typeof u.address === 'string' && u.address.includes(':') ? `[${clean(u.address)}]` : clean(u.address);
    out += `underlay: ${addr}:${num(u.port)} ${u.transport === 'esp' ? 'raw ESP' : 'ESP-in-UDP'}\n`;
    const o = u.offload;
    if (o !== undefined) {
      out +=
        `underlay offloads: GSO ${o.gso ? 'on' : 'off'} (${num(o.gsoSends)} sends carrying ${num(o.gsoSegments)} packets, ${num(o.gsoFallbacks)} refused), ` +
        `GRO ${o.gro ? 'on' : 'off'} (${num(o.groDatagrams)} datagrams split into ${num(o.groSegments)})\n`;
    }
  }
  if (r.mtu !== undefined) {
    out += `MTU: underlay ${num(r.mtu.underlayMtu)}, overhead ${num(r.mtu.overheadBytes)} bytes: guest MTU ${num(r.mtu.guestMtu)} avoids fragmentation\n`;
  }
  if (r.fragmented !== undefined) out += `fragmented frames: ${num(r.fragmented)}\n`;
  if (r.pool !== undefined) out += `pool: ${num(r.pool.free)} of ${num(r.pool.total)} buffers free\n`;

  if (Array.isArray(r.peers)) {
    const rows = r.peers.map((p) => [
      clean(p.name),
      p.port !== undefined ? (String(p.address).includes(':') ? `[${clean(p.address)}]:${num(p.port)}` : `${clean(p.address)}:${num(p.port)}`) : clean(p.address),
      list(p.labels),
      clean(p.state),
      p.lastHandshake === undefined ? '-' : ago(p.lastHandshake, r.time),
    ]);
    out += section('PEERS', rows.length === 0 ? '(none)\n' : formatTable(['NAME', 'ADDRESS', 'LABELS', 'STATE', 'LAST HANDSHAKE'], rows));
    const sessions = r.peers.filter((p) => p.sessionAgeMs !== undefined || p.handshakeFailures !== undefined);
    if (sessions.length > 0) {
      const srows = sessions.map((p) => [
        clean(p.name),
        p.sessionAgeMs === null || p.sessionAgeMs === undefined ? '-' : formatAge(p.sessionAgeMs),
        p.nextRekey === null || p.nextRekey === undefined ? '-' : inFrom(p.nextRekey, r.time),
        Array.isArray(p.negotiatedLabels) && p.negotiatedLabels.length > 0 ? list(p.negotiatedLabels) : '-',
        clean(p.algorithm ?? '-'),
        reasonList(p.handshakeFailures),
        reasonList(p.rekeys),
      ]);
      out += section(
        'SESSIONS',
        formatTable(['PEER', 'SESSION AGE', 'NEXT REKEY', 'NEGOTIATED LABELS', 'ALGORITHM', 'HANDSHAKE FAILURES', 'HANDSHAKES STARTED'], srows, ['l', 'r', 'l', 'l', 'l', 'l', 'l']),
      );
    }
  }
  if (r.handshake !== undefined && r.handshake !== null && typeof r.handshake === 'object') {
    out += `\nhandshakes: ${num(r.handshake.completed)} completed; failures: ${reasonList(r.handshake.failures)}\n`;
  }
  if (Array.isArray(r.sas)) {
    const rows = r.sas.map((s) => [
      clean(s.spi),
      clean(s.direction),
      list(s.labels),
      clean(s.peer),
      clean(s.algorithm),
      formatAge(s.ageMs),
      num(s.packets),
      num(s.bytes),
      s.direction === 'in' ? num(s.replayDrops) : '-',
      clean(s.state),
    ]);
    out += section(
      'SAS',
      rows.length === 0 ? '(none)\n' : formatTable(['SPI', 'DIR', 'LABELS', 'PEER', 'ALGORITHM', 'AGE', 'PACKETS', 'BYTES', 'REPLAY DROPS', 'STATE'], rows, ['l', 'l', 'l', 'l', 'l', 'r', 'r', 'r', 'r', 'l']),
    );
  }
  if (Array.isArray(r.labels)) {
    const rows = r.labels.map((l) => [
      clean(l.name),
      num(l.vlan),
      l.greKey === null ? 'none' : typeof l.greKey === 'number' ? `0x${l.greKey.toString(16).padStart(8, '0')}` : '-',
      clean(l.context),
      l.fdbEntries === undefined ? '-' : num(l.fdbEntries),
    ]);
    out += section('LABELS', rows.length === 0 ? '(none)\n' : formatTable(['NAME', 'VLAN', 'GRE KEY', 'CONTEXT', 'MACS LEARNED'], rows, ['l', 'r', 'l', 'l', 'r']));
  }
  if (Array.isArray(r.domains)) {
    const rows = r.domains.map((d) => [
      clean(d.name),
      clean(d.label),
      d.kind === 'attach' ? `${clean(d.interface)} (attached)` : clean(d.interface),
      list(d.macs),
      num(d.framesFromGuest),
      num(d.framesToGuest),
    ]);
    out += section(
      'DOMAINS',
      rows.length === 0 ? '(none)\n' : formatTable(['NAME', 'LABEL', 'INTERFACE', 'MACS', 'FROM GUEST', 'TO GUEST'], rows, ['l', 'l', 'l', 'l', 'r', 'r']),
    );
  }
  const offloaded = Array.isArray(r.domains) ? r.domains.filter((d) => d.offload !== undefined) : [];
  if (offloaded.length > 0) {
    const rows = offloaded.map((d) => {
      const o = d.offload!;
      const drops = tapOffloadDrops(o)
        .filter(([, n]) => n !== 0)
        .map(([reason, n]) => `${reason} ${n}`);
      return [clean(d.name), `${num(o.gsoFrames)} → ${num(o.gsoSegments)}`, `${num(o.groSegments)} → ${num(o.groFrames)}`, num(o.csumCompleted), drops.length === 0 ? 'none' : drops.join(', ')];
    });
    out += section('TAP OFFLOADS', formatTable(['DOMAIN', 'SUPER-FRAMES READ → FRAMES', 'FRAMES → SUPER-FRAMES WRITTEN', 'CHECKSUMS COMPLETED', 'DROPS'], rows, ['l', 'r', 'r', 'r', 'l']));
  }
  if (Array.isArray(r.attachments) && r.attachments.length > 0) {
    const rows = r.attachments.map((a) => [clean(a.name), clean(a.domain), clean(a.interface), clean(a.label), ago(a.attachedAt, r.time)]);
    out += section('ATTACHED AT RUN TIME', formatTable(['NAME', 'LIBVIRT DOMAIN', 'INTERFACE', 'LABEL', 'SINCE'], rows));
  }
  if (r.reasons !== undefined && r.reasons !== null && typeof r.reasons === 'object') {
    const counts = r.reasons as Record<string, unknown>;
    const nonZero = (names: readonly string[]) => names.filter((n) => typeof counts[n] === 'number' && counts[n] !== 0).map((n) => [n, num(counts[n])]);
    const drops = nonZero(DROP_REASONS);
    const known = new Set<string>([...DROP_REASONS, ...DISCARD_REASONS]);
    // Reasons a newer daemon knows and this client does not are still drops to show.
    for (const n of Object.keys(counts).sort()) if (!known.has(n) && typeof counts[n] === 'number' && counts[n] !== 0) drops.push([clean(n), num(counts[n])]);
    const total = drops.reduce((sum, [, v]) => sum + Number(v), 0);
    out += section('DROPS', drops.length === 0 ? 'none\n' : formatTable(['REASON', 'PACKETS'], [...drops, ['total', String(total)]], ['l', 'r']));
    const discards = nonZero(DISCARD_REASONS);
    if (discards.length > 0) out += section('DISCARDS (not errors)', formatTable(['REASON', 'PACKETS'], discards, ['l', 'r']));
  }
  if (r.audit !== undefined) {
    const a = r.audit;
    out += `\naudit: ${num(a.written)} written, ${num(a.suppressed)} suppressed by the rate limit, ${num(a.lost)} lost (${a.path === null ? 'standard output' : clean(a.path)})\n`;
  }
  return out;
}

registerSubcommand('status', 'show peers, SAs, labels, domains and drop counters of the running daemon', (argv) => runStatus(argv));
