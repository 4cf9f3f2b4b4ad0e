/**
 * The host daemon behind `sectunnel run`: one process per host joining the
 * guest ports (TAPs, attachments) to the underlay through the core pipelines.
 *
 * Start:
 *   1. config (ConfigError → exit 2) → static keys allowed? → KEYMATs distinct
 *   2. logger, crypto backend, MTU arithmetic
 *   3. pool → audit log + auditor → sequence store → tables + SAs
 *   4. transport (peers registered by id) → handshakes (host key, pre-shared keys,
 *      SessionHost; with `underlay.transport: esp` a UDP socket on underlay.port for
 *      the handshake only) → guest ports → control socket → metrics
 *   5. privileges dropped (--user) → reading starts → handshake timer → 1 s housekeeping timer
 * Every step that opened something is undone if a later one fails.
 *
 * Reload (SIGHUP or the control method `reload`), one at a time:
 *   1. new config (invalid → refused, logged with every problem; the old one stays)
 *   2. settings only a restart applies (host name, underlay, pool, control socket,
 *      state folder, metrics address, crypto backend) must be unchanged → else refused
 *   3. new tables; SAs with an unchanged identity kept, others created; ports whose
 *      kind and interface name stay are kept (a failed one is reopened if its device
 *      is back, else kept failed), others opened — any other failure undoes what
 *      this reload opened and refuses it
 *   4. commit between two batches: counters carried over by name, handshake SA
 *      routes put into the new tables, tables and pipelines swapped, transport
 *      peers re-registered, session peers added/removed/updated (sessions that
 *      stay are kept), ports that left closed, SAs that left destroyed. The FDB starts empty (it relearns on the next frame).
 *
 * Runtime attach/detach (control methods `attach`, `detach`; control/libvirt-attach.ts):
 * guest NICs added on top of the config file as an overlay. Each change is applied
 * through the reload path with the file config as last loaded (so kept ports, SAs and
 * sessions stay), one at a time with reloads, then written to state.dir
 * (attachments-HOST.json). A reload re-reads the file and keeps the overlay; entries
 * the new file contradicts (label gone, interface or MAC now the file's) are dropped
 * and logged. At start the kept overlay is attached again, except entries whose
 * interface is gone (the guest stopped while the daemon was down).
 *
 * Housekeeping (1 s, unref'd): FDB aging, audit summaries, reassembly expiry, SA
 * limits, sequence-number top-up, reopening ports whose device came back.
 *
 * Stop (SIGTERM/SIGINT): timer, ports, transport, control socket, metrics, audit log
 * (flushed), SAs (keys zeroed); the process then exits by itself.
 */
import { PacketPool } from '../../buf/pool.js';
import { AuditLog, type AuditLogError } from '../../control/audit-log.js';
import { buildTables, checkKeymats, installSaPair, mtuPlan, planStaticSas, staticSaPaths, type MtuPlan, type StaticSaPlan } from '../../control/build.js';
import { ConfigError } from '../../control/config-errors.js';
import type { DaemonConfig } from '../../control/config.js';
import {
  AttachError,
  attachmentsFile,
  fitAttachments,
  mergeAttachments,
  parseAttachRequest,
  parseDetachRequest,
  planAttach,
  planDetach,
  readAttachments,
  writeAttachments,
  type Attachment,
  type AttachPlan,
} from '../../control/libvirt-attach.js';
import { loadHostConfig } from '../../control/libvirt-host.js';
import { Logger, type LogStream } from '../../control/log.js';
import { MetricsServer } from '../../control/metrics.js';
import { SeqStore } from '../../control/seq-store.js';
import { ControlMethodError, ControlServer } from '../../control/status-server.js';
import { Auditor } from '../../core/audit.js';
import type { Tables } from '../../core/tables.js';
import type { AeadBackendName } from '../../crypto/aead.js';
import { backendUnavailableReason, selectedBackend } from '../../crypto/index.js';
import type { EspTransport } from '../../io/raw-esp.js';
import { Dataplane } from './dataplane.js';
import { DaemonError } from './errors.js';
import { applyMtu, interfaceExists, openPort, PortHandle, portSpecOf, samePort } from './ports.js';
import { dropPrivileges } from './privileges.js';
import { labelSummary, metricsSnapshot, SECTUNNEL_VERSION, statusReport, type DaemonView } from './report.js';
import { SaRegistry } from './sas.js';
import { endpointText, openTransport, type OpenTransport } from './transport.js';
import { noisePrimitives } from '../../core/noise.js';
import { Handshakes, loadPsks } from './handshake.js';
import { UdpTransport } from '../../io/udp.js';
import { NON_ESP_MARKER_BYTES } from '../../wire/constants.js';

/** Pool buffers each guest port and the transport hold in their receive rings (the io layer's default batch). */
export const RX_RING_PACKETS = 64;

/** A failed guest port is tried again at most this often. */
export const PORT_RETRY_MS = 2000;

/** Housekeeping period: FDB aging, audit summaries, reassembly expiry, SA limits, sequence top-up, port reopening. */
export const HOUSEKEEPING_INTERVAL_MS = 1000;

export interface DaemonOptions {
  configFile: string;
  /** Allow the config's static SAs (`--insecure-static-keys`). */
  insecureStaticKeys: boolean;
  /** Drop to this user after opening devices and sockets (`--user`). */
  user?: string;
  /** Start with an empty sequence state (`--reset-seq-state`). */
  resetSeqState?: boolean;
  /** Where log lines go (default stderr). */
  logStream?: LogStream;
}

/** What a reload changed. */
export interface ReloadSummary {
  domains: { added: string[]; removed: string[]; kept: string[] };
  peers: { added: string[]; removed: string[] };
  labels: { added: string[]; removed: string[] };
  sas: { created: number; kept: number; destroyed: number };
}

/** What an attach or detach did: the overlay change and the reload summary. */
export interface AttachSummary {
  attached: string[];
  detached: string[];
  unchanged: string[];
  /** The reload that applied it; null when nothing changed. */
  reload: ReloadSummary | null;
  /** Set when the change is live but could not be written to state.dir. */
  notPersisted?: string;
}

/** Refuses static SAs unless allowed; the message says why they are refused. */
function checkStaticKeys(cfg: DaemonConfig, file: string, allowed: boolean): void {
  const paths = staticSaPaths(cfg);
  if (paths.length === 0 || allowed) return;
  const shown = paths.length > 3 ? `${paths.slice(0, 3).join(', ')}, …` : paths.join(', ');
  throw new DaemonError(
    'ST_DAEMON_STATIC_KEYS',
    `${file}: ${shown}: static SA keys are refused without --insecure-static-keys. ` +
      'Static keys are for tests and debugging: they never change, give no forward secrecy, and anyone with the config file can read or forge the traffic. ' +
      'Configure host.privateKeyFile and peers[].publicKey for the key-exchange handshake instead; to run with static keys anyway, pass --insecure-static-keys.',
  );
}

/** Without static keys, peers with a public key need the host's private key. */
function checkHandshakeKeys(cfg: DaemonConfig, file: string, staticKeys: boolean): void {
  if (staticKeys || cfg.host.privateKeyFile !== undefined) return;
  const i = cfg.peers.findIndex((p) => p.publicKey !== undefined);
  if (i < 0) return;
  throw new DaemonError(
    'ST_DAEMON_KEYS',
    `${file}: peers[${i}].publicKey is set but host.privateKeyFile is not: the handshake needs this host's private key (create one with \`sectunnel keygen FILE\`)`,
  );
}

/** The backend SAs use: the config's choice, or the process default for 'auto'. */
function chooseBackend(cfg: DaemonConfig): { name: AeadBackendName; reason: string } {
  if (cfg.crypto.backend === 'auto') {
    try {
      const c = selectedBackend();
      return { name: c.backend, reason: c.reason };
    } catch (e) {
      throw new DaemonError('ST_DAEMON_CRYPTO', `crypto: ${(e as Error).message}`, e);
    }
  }
  const why = backendUnavailableReason(cfg.crypto.backend);
  if (why !== null) throw new DaemonError('ST_DAEMON_CRYPTO', `crypto.backend: "${cfg.crypto.backend}" is not available here: ${why}`);
  return { name: cfg.crypto.backend, reason: 'crypto.backend in the config' };
}

/** Settings a reload cannot change, as `field: old → new` lines. */
function restartOnlyChanges(a: DaemonConfig, b: DaemonConfig): string[] {
  const out: string[] = [];
  const cmp = (field: string, x: unknown, y: unknown) => {
    const sx = JSON.stringify(x);
    const sy = JSON.stringify(y);
    if (sx !== sy) out.push(`${field}: ${sx ?? 'absent'} → ${sy ?? 'absent'}`);
  };
  cmp('underlay', a.underlay, b.underlay);
  cmp('pool', a.pool, b.pool);
  cmp('control.socket', a.control.socket, b.control.socket);
  cmp('state.dir', a.state.dir, b.state.dir);
  cmp('metrics.listen', a.metrics.listen, b.metrics.listen);
  cmp('crypto.backend', a.crypto.backend, b.crypto.backend);
  cmp('host.name', a.host.name, b.host.name);
  cmp('host.privateKeyFile', a.host.privateKeyFile, b.host.privateKeyFile);
  cmp('handshake', a.handshake, b.handshake);
  return out;
}

function diffNames(before: readonly string[], after: readonly string[]): { added: string[]; removed: string[] } {
  const a = new Set(before);
  const b = new Set(after);
  return { added: after.filter((n) => !a.has(n)), removed: before.filter((n) => !b.has(n)) };
}

export class Daemon implements DaemonView {
  /** The running config: the file's (fileCfg) plus the runtime attachments. */
  cfg: DaemonConfig;
  /** The config file (or network XML) as last loaded. */
  fileCfg: DaemonConfig;
  /** Runtime attachments (the overlay), in attach order. */
  attachments: readonly Attachment[] = [];
  tables: Tables;
  mtu: MtuPlan;
  auditLog: AuditLog;
  auditor: Auditor;
  readonly ports = new Map<string, PortHandle>();
  readonly startedAtMs = Date.now();
  readonly configFile: string;
  readonly staticKeys: boolean;
  readonly backend: AeadBackendName;
  readonly transportImpl: string;
  readonly log: Logger;
  readonly pool: PacketPool;
  readonly dataplane: Dataplane;
  readonly sas: SaRegistry;
  /** The peer handshake; null with --insecure-static-keys or without host.privateKeyFile. */
  handshakes: Handshakes | null = null;
  /** With raw ESP: the UDP socket that carries the handshake. */
  private controlUdp: UdpTransport | null = null;
  /** Resolves when stop() has finished. */
  readonly stopped: Promise<void>;
  /** Reloads done, and refused. */
  reloads = 0;
  reloadsRefused = 0;
  private readonly transport: OpenTransport;
  /** The underlay socket's GSO/GRO counters (DaemonView), null for raw ESP. */
  underlayOffload(): Record<string, number> | null {
    return this.transport.offloadStats();
  }
  /** Where outbound sequence marks are kept. */
  readonly seqStore: SeqStore;
  private control: ControlServer | null = null;
  private metrics: MetricsServer | null = null;
  private timer: ReturnType<typeof setInterval> | null = null;
  private reloading: Promise<unknown> = Promise.resolve();
  private stopping: Promise<void> | null = null;
  private resolveStopped!: () => void;

  private constructor(p: {
    cfg: DaemonConfig;
    fileCfg: DaemonConfig;
    attachments: readonly Attachment[];
    o: DaemonOptions;
    log: Logger;
    backend: AeadBackendName;
    mtu: MtuPlan;
    pool: PacketPool;
    auditLog: AuditLog;
    auditor: Auditor;
    seqStore: SeqStore;
    sas: SaRegistry;
    tables: Tables;
    transport: OpenTransport;
  }) {
    this.cfg = p.cfg;
    this.fileCfg = p.fileCfg;
    this.attachments = p.attachments;
    this.configFile = p.o.configFile;
    this.staticKeys = p.o.insecureStaticKeys;
    this.log = p.log;
    this.backend = p.backend;
    this.mtu = p.mtu;
    this.pool = p.pool;
    this.auditLog = p.auditLog;
    this.auditor = p.auditor;
    this.seqStore = p.seqStore;
    this.sas = p.sas;
    this.tables = p.tables;
    this.transport = p.transport;
    this.transportImpl = p.transport.impl;
    this.dataplane = new Dataplane({
      pool: p.pool,
      tables: p.tables,
      udpPort: p.cfg.underlay.port,
      underlayMtu: p.mtu.underlayMtu,
      outerHeaderBytes: p.mtu.outerHeaderBytes,
      beforeSend: (n) => this.sas.guard(n),
    });
    this.stopped = new Promise((resolve) => (this.resolveStopped = resolve));
  }

  /** Starts the daemon (see the file comment); throws ConfigError, DaemonError, or the failing component's error. */
  static async start(o: DaemonOptions): Promise<Daemon> {
    const { cfg: fileCfg, notes } = await loadHostConfig(o.configFile);
    const kept = keptAttachments(fileCfg);
    const cfg = mergeAttachments(fileCfg, kept.ok);
    checkStaticKeys(cfg, o.configFile, o.insecureStaticKeys);
    const plans = planStaticSas(cfg, o.insecureStaticKeys);
    checkKeymats(o.configFile, plans);
    checkHandshakeKeys(cfg, o.configFile, o.insecureStaticKeys);
    const psks = o.insecureStaticKeys ? new Map<string, Uint8Array>() : await loadPsks(cfg);
    const log = new Logger({ level: cfg.log.level, fields: { host: cfg.host.name }, ...(o.logStream !== undefined && { stream: o.logStream }) });
    const backend = chooseBackend(cfg);
    const mtu = mtuPlan(cfg);
    for (const n of notes) log.warn('config note', { config: o.configFile, note: n });
    for (const m of kept.problems) log.error('runtime attachment not restored', m);
    if (kept.rewrite) saveAttachments(log, fileCfg, kept.ok);
    const undo: (() => unknown)[] = [];
    try {
      const pool = new PacketPool({ packets: cfg.pool.packets, slotBytes: cfg.pool.slotBytes });
      const auditLog = await AuditLog.open({ ...(cfg.audit.path !== undefined && { path: cfg.audit.path }), onError: (e) => auditError(log, e) });
      undo.push(() => auditLog.close());
      const auditor = new Auditor({ sink: auditLog.sink, ratePerSec: cfg.audit.ratePerSecond, burst: cfg.audit.burst });
      let seqStore: SeqStore;
      try {
        seqStore = SeqStore.open(cfg.state.dir, { reset: o.resetSeqState === true });
      } catch (e) {
        throw new DaemonError('ST_DAEMON_SEQ_STORE', `state.dir: ${(e as Error).message}`, e);
      }
      const sas = new SaRegistry(seqStore, cfg.crypto.backend === 'auto' ? undefined : backend.name, log);
      undo.push(() => sas.destroyAll());
      const tables = buildTables(cfg, { auditor, staticSas: o.insecureStaticKeys });
      // The audit log the handshake writes to follows reloads that open a new one.
      const ref: { d: Daemon | null } = { d: null };
      const handshakes =
        o.insecureStaticKeys || cfg.host.privateKeyFile === undefined
          ? null
          : await Handshakes.create({ cfg, psks, backend: cfg.crypto.backend === 'auto' ? undefined : backend.name, tables, pool, log, auditLog: () => ref.d?.auditLog ?? auditLog });
      if (handshakes !== null) undo.push(() => handshakes.stop());
      const { changes, commit } = sas.prepare(plans, Date.now());
      commit();
      for (const pair of changes.pairs) installSaPair(tables, pair.plan, pair.inbound, pair.outbound);
      auditor.names = auditNames(tables);

      const transport = await openTransport(cfg, pool);
      undo.push(() => transport.transport.close());
      registerPeers(transport.transport, cfg, 0);

      const d = new Daemon({ cfg, fileCfg, attachments: kept.ok, o, log, backend: backend.name, mtu, pool, auditLog, auditor, seqStore, sas, tables, transport });
      d.handshakes = handshakes;
      ref.d = d;
      if (handshakes !== null) {
        if (cfg.underlay.transport === 'esp') {
          try {
            d.controlUdp = await UdpTransport.bind({ address: cfg.underlay.address, port: cfg.underlay.port, family: cfg.underlay.family, pool, batchPackets: 16 });
          } catch (e) {
            throw new DaemonError('ST_DAEMON_TRANSPORT', `underlay: cannot open UDP ${cfg.underlay.address}:${cfg.underlay.port} for the handshake: ${(e as Error).message}`, e);
          }
          undo.push(() => d.controlUdp?.close());
          registerPeers(d.controlUdp, cfg, 0);
        }
      }
      undo.push(() => d.closePorts([...d.ports.values()]));
      const portOf: (PortHandle | null)[] = [];
      cfg.domains.forEach((dom, i) => {
        const spec = portSpecOf(dom);
        const h = new PortHandle(spec, openPort(spec, pool, `domains[${i}]`), tables.domains.idOf(dom.name), `domains[${i}]`);
        d.ports.set(dom.name, h);
        portOf[h.domainId] = h;
      });
      d.dataplane.swap(tables, portOf);

      d.control = new ControlServer({ path: cfg.control.socket, onError: (e, method) => log.error('control method failed', { method, error: e }) });
      d.control.register('status', () => statusReport(d, Date.now()));
      d.control.register('rekey', (params: unknown) => {
        const peer = typeof params === 'object' && params !== null ? (params as { peer?: unknown }).peer : undefined;
        if (typeof peer !== 'string') throw new ControlMethodError('bad_params', 'rekey: expected {"peer": NAME}');
        if (d.handshakes === null) throw new ControlMethodError('no_handshake', 'rekey: this daemon runs without the handshake (--insecure-static-keys or no host.privateKeyFile)');
        try {
          return d.handshakes.rekey(peer);
        } catch (e) {
          throw new ControlMethodError('unknown_peer', `rekey: ${(e as Error).message}`);
        }
      });
      d.control.register('attach', async (params: unknown) => {
        try {
          return await d.attach(params);
        } catch (e) {
          throw controlError(e);
        }
      });
      d.control.register('detach', async (params: unknown) => {
        try {
          return await d.detach(params);
        } catch (e) {
          throw controlError(e);
        }
      });
      d.control.register('reload', async () => {
        try {
          return await d.reload();
        } catch (e) {
          throw new ControlMethodError('reload_failed', (e as Error).message);
        }
      });
      await d.control.listen();
      undo.push(() => d.control?.close());
      if (cfg.metrics.listen !== undefined) {
        d.metrics = await MetricsServer.listen({
          address: cfg.metrics.listen.address,
          port: cfg.metrics.listen.port,
          snapshot: () => metricsSnapshot(d),
          onError: (e) => log.error('metrics snapshot failed', { error: e }),
        });
        undo.push(() => d.metrics?.close());
      }
      if (o.user !== undefined) {
        dropPrivileges(o.user, [cfg.state.dir, seqStore.file, cfg.control.socket, ...(cfg.audit.path !== undefined ? [cfg.audit.path] : [])]);
      }

      // Reading starts last: nothing arrives before every table and port is in place.
      d.dataplane.attachTransport(transport.transport, transport.inputKind);
      transport.transport.onError((errno) => log.error('underlay socket stopped receiving', { errno }));
      if (handshakes !== null) {
        d.dataplane.onUnknownSpi = (peerIndex) => handshakes.unknownSpi(peerIndex);
        if (d.controlUdp !== null) {
          const cu = d.controlUdp;
          cu.onPackets((bufs, count, meta) => {
            for (let i = 0; i < count; i++) {
              const b = bufs[i]!;
              const len = b.end - b.start;
              if (len >= NON_ESP_MARKER_BYTES && b.bytes[b.start] === 0 && b.bytes[b.start + 1] === 0 && b.bytes[b.start + 2] === 0 && b.bytes[b.start + 3] === 0) {
                handshakes.receive(b.bytes.slice(b.start, b.end), endpointText(meta.address(i), meta.port(i)));
              }
              pool.put(b);
            }
          });
          cu.onError((errno) => log.error('handshake UDP socket stopped receiving', { errno }));
          handshakes.start(cu);
        } else {
          d.dataplane.onControl = (payload, source) => handshakes.receive(payload, source);
          handshakes.start(transport.transport);
        }
      }
      for (const h of d.ports.values()) d.startPort(h);
      d.timer = setInterval(() => d.housekeeping(), HOUSEKEEPING_INTERVAL_MS);
      d.timer.unref();

      log.info('sectunnel started', {
        version: SECTUNNEL_VERSION,
        pid: process.pid,
        config: o.configFile,
        crypto: { algorithm: cfg.crypto.algorithm, backend: backend.name, why: backend.reason },
        transport: transport.impl,
        underlay: { address: cfg.underlay.address, port: transport.port, family: cfg.underlay.family },
        mtu: { underlayMtu: mtu.underlayMtu, overheadBytes: mtu.overheadBytes, guestMtu: mtu.guestMtu, parts: mtu.parts },
        labels: labelSummary(cfg),
        ...(kept.ok.length > 0 && { attached: kept.ok.map((a) => `${a.name}(${a.domain} ${a.interface})`) }),
        domains: cfg.domains.map((dom) => `${dom.name}(${dom.label}, ${dom.tap !== undefined ? `tap ${dom.tap.name}` : `attach ${dom.attach.interface}`})`),
        peers: cfg.peers.map((p) => `${p.name}(${p.address})`),
        keys: o.insecureStaticKeys ? 'static (--insecure-static-keys)' : handshakes !== null ? 'handshake' : 'none',
        ...(handshakes !== null && { noise: noisePrimitives().name }),
        sas: changes.pairs.length,
        control: cfg.control.socket,
        ...(d.metrics !== null && { metrics: d.metrics.url }),
        ...(o.user !== undefined && { user: o.user }),
      });
      d.warnAboutKeys(plans);
      d.warnAboutMtu();
      d.warnAboutPool();
      return d;
    } catch (e) {
      for (const u of undo.reverse()) {
        try {
          await u();
        } catch {
          // Undoing a half-made start: the first error is the one to report.
        }
      }
      throw e;
    }
  }

  /** Reloads the config file (see the file comment); throws (and logs) when the reload is refused. */
  reload(): Promise<ReloadSummary> {
    return this.serially(() => this.reloadNow());
  }

  /** Runs `fn` after every reload, attach and detach before it. */
  private serially<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.reloading.then(fn);
    this.reloading = next.catch(() => undefined);
    return next;
  }

  /** Control method `attach` (params: control/libvirt-attach.ts AttachRequest); throws AttachError. */
  attach(params: unknown): Promise<AttachSummary> {
    const req = parseAttachRequest(params);
    return this.serially(() => this.changeAttachments('attach', planAttach(req, this.fileCfg, this.attachments, new Date().toISOString()), req.domain));
  }

  /** Control method `detach` (params: DetachRequest); throws AttachError. */
  detach(params: unknown): Promise<AttachSummary> {
    const req = parseDetachRequest(params);
    return this.serially(async () => this.changeAttachments('detach', planDetach(req, this.attachments), req.domain));
  }

  private async changeAttachments(what: 'attach' | 'detach', plan: AttachPlan, domain: string): Promise<AttachSummary> {
    if (this.stopping !== null) throw new AttachError('attach_failed', 'the daemon is stopping');
    const summary: AttachSummary = {
      attached: plan.added.map((a) => a.name),
      detached: plan.removed.map((a) => a.name),
      unchanged: plan.unchanged.map((a) => a.name),
      reload: null,
    };
    if (plan.added.length === 0 && plan.removed.length === 0) {
      this.log.info(`${what}: nothing to change`, { domain, unchanged: summary.unchanged });
      return summary;
    }
    try {
      summary.reload = await this.applyConfig(mergeAttachments(this.fileCfg, plan.next));
    } catch (e) {
      this.log.error(`${what} refused; the running config stays`, { domain, error: (e as Error).message });
      throw new AttachError('attach_failed', `${what} ${domain}: ${(e as Error).message}`);
    }
    this.attachments = plan.next;
    const detail = (a: Attachment) => ({ name: a.name, interface: a.interface, label: a.label, macs: a.macs });
    this.log.info(what === 'attach' ? 'domain attached' : 'domain detached', { domain, added: plan.added.map(detail), removed: plan.removed.map(detail), kept: summary.reload.domains.kept });
    const notSaved = saveAttachments(this.log, this.fileCfg, plan.next, ': the change is live but a restarted daemon will not know it');
    if (notSaved !== null) summary.notPersisted = notSaved;
    return summary;
  }

  private async reloadNow(): Promise<ReloadSummary> {
    if (this.stopping !== null) throw new DaemonError('ST_DAEMON_RESTART_NEEDED', 'the daemon is stopping');
    this.log.info('reloading', { config: this.configFile });
    try {
      const { cfg: fileCfg, notes } = await loadHostConfig(this.configFile);
      for (const n of notes) this.log.warn('config note', { config: this.configFile, note: n });
      const fit = fitAttachments(fileCfg, this.attachments);
      const summary = await this.applyConfig(mergeAttachments(fileCfg, fit.ok));
      this.fileCfg = fileCfg;
      if (fit.dropped.length > 0) {
        for (const x of fit.dropped) this.log.error('runtime attachment detached: the reloaded config contradicts it', { name: x.attachment.name, domain: x.attachment.domain, interface: x.attachment.interface, why: x.why });
        this.attachments = fit.ok;
        saveAttachments(this.log, fileCfg, fit.ok);
      }
      this.reloads++;
      this.log.info('config reloaded', { ...summary });
      return summary;
    } catch (e) {
      this.reloadsRefused++;
      if (e instanceof ConfigError) {
        this.log.error('reload refused: invalid config; the running config stays', {
          config: this.configFile,
          code: e.code,
          problems: e.message.split('\n'),
        });
      } else {
        this.log.error('reload refused; the running config stays', { config: this.configFile, error: (e as Error).message });
      }
      throw e;
    }
  }

  private async applyConfig(cfg: DaemonConfig): Promise<ReloadSummary> {
    const old = this.cfg;
    const restart = restartOnlyChanges(old, cfg);
    if (restart.length > 0) {
      throw new DaemonError('ST_DAEMON_RESTART_NEEDED', `${this.configFile}: only a restart applies these changes: ${restart.join('; ')}`);
    }
    checkStaticKeys(cfg, this.configFile, this.staticKeys);
    const plans = planStaticSas(cfg, this.staticKeys);
    checkKeymats(this.configFile, plans);
    checkHandshakeKeys(cfg, this.configFile, this.staticKeys);
    const psks = this.handshakes !== null ? await loadPsks(cfg) : new Map<string, Uint8Array>();

    // Audit: a new file or new limits need a new log or auditor; the old ones go at commit.
    let auditLog = this.auditLog;
    let auditor = this.auditor;
    const undo: (() => unknown)[] = [];
    if (cfg.audit.path !== old.audit.path) {
      auditLog = await AuditLog.open({ ...(cfg.audit.path !== undefined && { path: cfg.audit.path }), onError: (e) => auditError(this.log, e) });
      undo.push(() => auditLog.close());
    }
    if (auditLog !== this.auditLog || cfg.audit.ratePerSecond !== old.audit.ratePerSecond || cfg.audit.burst !== old.audit.burst) {
      auditor = new Auditor({ sink: auditLog.sink, ratePerSec: cfg.audit.ratePerSecond, burst: cfg.audit.burst });
    }

    const nowMs = Date.now();
    let tables: Tables;
    let prepared: ReturnType<SaRegistry['prepare']>;
    const opened: PortHandle[] = [];
    const keep = new Map<string, PortHandle>();
    try {
      tables = buildTables(cfg, { auditor, staticSas: this.staticKeys });
      prepared = this.sas.prepare(plans, nowMs);
      undo.push(() => prepared.abort());
      for (const [i, dom] of cfg.domains.entries()) {
        const spec = portSpecOf(dom);
        const path = `domains[${i}]`;
        const have = [...this.ports.values()].find((h) => samePort(h.spec, spec) && !keep.has(h.spec.name));
        if (have !== undefined && have.failedErrno === 0) {
          keep.set(spec.name, have);
          continue;
        }
        let port;
        try {
          port = openPort(spec, this.pool, path);
        } catch (e) {
          // A port whose device is gone (a stopped VM) does not block the reload: it stays failed and is retried.
          if (have === undefined) throw e;
          keep.set(spec.name, have);
          continue;
        }
        const h = new PortHandle(spec, port, -1, path);
        opened.push(h);
        keep.set(spec.name, h);
      }
    } catch (e) {
      this.closePorts(opened);
      for (const u of undo.reverse()) await u();
      throw e;
    }

    // Commit: nothing below fails for a reason the config could cause.
    for (const pair of prepared.changes.pairs) installSaPair(tables, pair.plan, pair.inbound, pair.outbound);
    carryCounters(this.tables, tables);
    prepared.commit();
    const portOf: (PortHandle | null)[] = new Array<PortHandle | null>(tables.domains.size).fill(null);
    const byDomain = new Map<string, PortHandle>();
    for (const [i, dom] of cfg.domains.entries()) {
      const spec = portSpecOf(dom);
      const h = keep.get(spec.name)!;
      const mtuError = applyMtu(h, spec);
      if (mtuError !== null) this.log.warn('cannot set the TAP MTU', { domain: dom.name, tap: spec.name, mtu: spec.mtu, error: mtuError });
      h.spec = spec;
      h.path = `domains[${i}]`;
      h.domainId = tables.domains.idOf(dom.name);
      portOf[h.domainId] = h;
      byDomain.set(dom.name, h);
    }
    const leaving = [...this.ports.values()].filter((h) => ![...byDomain.values()].includes(h));
    for (const h of leaving) h.domainId = -1;
    this.handshakes?.setTables(tables);
    this.dataplane.swap(tables, portOf);
    registerPeers(this.transport.transport, cfg, old.peers.length);
    if (this.controlUdp !== null) registerPeers(this.controlUdp, cfg, old.peers.length);
    this.tables = tables;
    this.handshakes?.reconfigure(cfg, psks);
    auditor.names = auditNames(tables);
    this.closePorts(leaving);
    this.ports.clear();
    for (const [name, h] of byDomain) this.ports.set(name, h);
    for (const h of opened) this.startPort(h);
    if (auditor !== this.auditor) {
      auditor.limiter.suppressedTotal += this.auditor.limiter.suppressedTotal;
      this.auditor.flush(nowMs);
    }
    if (auditLog !== this.auditLog) {
      auditLog.written += this.auditLog.written;
      auditLog.lost += this.auditLog.lost;
      void this.auditLog.close();
    } else {
      // SIGHUP is also the log-rotation signal: reopen the audit file.
      await this.auditLog.reopen().catch((e: unknown) => this.log.warn('cannot reopen the audit log', { error: e }));
    }
    this.auditLog = auditLog;
    this.auditor = auditor;
    this.tables = tables;
    this.log.level = cfg.log.level;
    const mtu = mtuPlan(cfg);
    if (mtu.guestMtu !== this.mtu.guestMtu) this.log.info('guest MTU changed', { overheadBytes: mtu.overheadBytes, guestMtu: mtu.guestMtu });
    this.mtu = mtu;
    this.cfg = cfg;
    this.warnAboutMtu();
    this.warnAboutPool();

    const oldDomains = old.domains.map((x) => x.name);
    const newDomains = cfg.domains.map((x) => x.name);
    const d = diffNames(oldDomains, newDomains);
    return {
      domains: { ...d, kept: newDomains.filter((n) => oldDomains.includes(n)) },
      peers: diffNames(
        old.peers.map((p) => p.name),
        cfg.peers.map((p) => p.name),
      ),
      labels: diffNames(
        old.labels.map((l) => l.name),
        cfg.labels.map((l) => l.name),
      ),
      sas: { created: prepared.changes.created, kept: prepared.changes.kept, destroyed: prepared.changes.destroyed },
    };
  }

  /** Stops the daemon (see the file comment). Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= this.stopNow();
    return this.stopping;
  }

  private async stopNow(): Promise<void> {
    await this.reloading;
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.closePorts([...this.ports.values()]);
    this.ports.clear();
    this.handshakes?.stop();
    this.transport.transport.close();
    this.controlUdp?.close();
    const steps: Promise<unknown>[] = [];
    if (this.control !== null) steps.push(this.control.close());
    if (this.metrics !== null) steps.push(this.metrics.close());
    await Promise.allSettled(steps);
    this.auditor.flush(Date.now());
    await this.auditLog.close().catch(() => undefined);
    this.sas.destroyAll();
    this.log.info('sectunnel stopped', { reloads: this.reloads, reasons: nonZero(this.tables.counters.toJSON()) });
    this.resolveStopped();
  }

  private startPort(h: PortHandle): void {
    this.dataplane.attachPort(h);
    h.port.onError((errno) => {
      h.failedErrno = errno;
      h.retryAtMs = Date.now();
      h.retryLogged = false;
      this.log.error('guest port stopped: its device went away or failed; it is reopened when the interface is back', {
        domain: this.tables.domains.get(h.domainId)?.name ?? null,
        interface: h.spec.name,
        errno,
      });
    });
  }

  /** Housekeeping: reopens failed ports whose interface exists again (every PORT_RETRY_MS at most). */
  private reopenFailedPorts(nowMs: number): void {
    for (const [name, h] of this.ports) {
      if (h.failedErrno === 0 || nowMs - h.retryAtMs < PORT_RETRY_MS || h.domainId < 0) continue;
      h.retryAtMs = nowMs;
      if (!h.spec.create && !interfaceExists(h.spec.name)) continue;
      let port;
      try {
        port = openPort(h.spec, this.pool, h.path);
      } catch (e) {
        if (!h.retryLogged) this.log.warn('cannot reopen a guest port yet; retrying', { domain: name, interface: h.spec.name, error: (e as Error).message });
        h.retryLogged = true;
        continue;
      }
      const fresh = new PortHandle(h.spec, port, h.domainId, h.path);
      this.closePorts([h]);
      this.ports.set(name, fresh);
      this.dataplane.setPort(fresh.domainId, fresh);
      this.startPort(fresh);
      this.log.info('guest port reopened', { domain: name, interface: h.spec.name });
    }
  }

  private closePorts(handles: readonly PortHandle[]): void {
    for (const h of handles) {
      h.domainId = -1;
      try {
        h.port.close();
      } catch (e) {
        this.log.warn('closing a guest port failed', { interface: h.spec.name, error: e });
      }
    }
  }

  /** The 1 s timer: FDB aging, audit summaries, reassembly expiry, SA limits, sequence top-up. */
  private housekeeping(): void {
    const nowMs = Date.now();
    this.tables.fdb.sweep(nowMs);
    this.auditor.flush(nowMs);
    this.dataplane.reassembler.expire(nowMs);
    this.reopenFailedPorts(nowMs);
    for (const e of this.sas.tick(nowMs)) {
      const sa = e.sa;
      if (sa.expired) this.log.error('outbound SA expired: it seals nothing more (static keys are never rekeyed; configure new ones)', { peer: e.peer, spi: sa.spi, limit: sa.expiredReason });
      else this.log.warn('outbound SA reached a soft limit and needs a rekey', { peer: e.peer, spi: sa.spi, limit: sa.rekeyReason });
    }
    this.sas.topUp();
  }

  private warnAboutKeys(plans: readonly StaticSaPlan[]): void {
    if (this.staticKeys) {
      this.log.warn('running with static SA keys from the config (--insecure-static-keys): for tests and debugging only', { pairs: plans.length });
    }
    for (const p of this.cfg.peers) {
      if (this.staticKeys ? p.staticSas.length === 0 : p.publicKey === undefined) {
        this.log.warn(
          this.staticKeys
            ? 'peer has no static SAs: nothing is sent to or accepted from it'
            : 'peer has no publicKey: no handshake, so nothing is sent to or accepted from it',
          { peer: p.name },
        );
      }
    }
  }

  /** Each port and the transport keep a receive ring of pool buffers; warn when they hold most of the pool. */
  private warnAboutPool(): void {
    const rings = (this.ports.size + 1) * RX_RING_PACKETS;
    if (rings > this.pool.capacity / 2) {
      this.log.warn('pool.packets is small for the number of ports: their receive rings hold most of the pool, so bursts will be dropped (pool_exhausted)', {
        poolPackets: this.pool.capacity,
        ports: this.ports.size,
        ringPackets: rings,
        suggested: rings * 4,
      });
    }
  }

  private warnAboutMtu(): void {
    for (const d of this.cfg.domains) {
      if (d.tap?.mtu !== undefined && d.tap.mtu > this.mtu.guestMtu) {
        this.log.warn('TAP MTU is above the guest MTU: larger frames are sent as fragmented outer packets (counted as fragmented)', {
          domain: d.name,
          tapMtu: d.tap.mtu,
          guestMtu: this.mtu.guestMtu,
        });
      }
    }
  }
}

/** The kept overlay that still fits the config and whose interfaces exist, and what was left out (as log fields). */
function keptAttachments(fileCfg: DaemonConfig): { ok: Attachment[]; problems: Record<string, unknown>[]; rewrite: boolean } {
  const problems: Record<string, unknown>[] = [];
  let list: Attachment[];
  try {
    list = readAttachments(attachmentsFile(fileCfg));
  } catch (e) {
    // Left as it is for the operator to look at; the first attach replaces it.
    return { ok: [], problems: [{ file: attachmentsFile(fileCfg), error: (e as Error).message }], rewrite: false };
  }
  const fit = fitAttachments(fileCfg, list);
  for (const x of fit.dropped) problems.push({ name: x.attachment.name, domain: x.attachment.domain, interface: x.attachment.interface, why: x.why });
  const ok = fit.ok.filter((a) => {
    if (interfaceExists(a.interface)) return true;
    problems.push({ name: a.name, domain: a.domain, interface: a.interface, why: `interface "${a.interface}" does not exist (the guest stopped while the daemon was down)` });
    return false;
  });
  return { ok, problems, rewrite: problems.length > 0 };
}

/** Writes the overlay file (state.dir); a failure is logged (`consequence` appended) and its message returned, else null. */
function saveAttachments(log: Logger, fileCfg: DaemonConfig, list: readonly Attachment[], consequence = ''): string | null {
  try {
    writeAttachments(attachmentsFile(fileCfg), fileCfg.state.dir, list);
    return null;
  } catch (e) {
    const error = (e as Error).message;
    log.error(`cannot write the runtime attachments${consequence}`, { error });
    return error;
  }
}

/** An attach/detach failure as the control error the client sees. */
function controlError(e: unknown): ControlMethodError {
  if (e instanceof AttachError) return new ControlMethodError(e.code, e.message);
  return new ControlMethodError('attach_failed', (e as Error).message);
}

/** Registers every peer of `cfg` with the transport under its id; forgets ids beyond them up to `before`. */
function registerPeers(t: EspTransport, cfg: DaemonConfig, before: number): void {
  cfg.peers.forEach((p, id) => t.setPeer(id, p.address, p.port));
  for (let id = cfg.peers.length; id < before; id++) t.clearPeer(id);
}

function auditNames(t: Tables): Auditor['names'] {
  return { labels: t.labels, domains: t.domains, peerNames: t.peers.map((p) => p.name) };
}

/** Copies reason counters, and traffic counters by peer/label/domain name, from the old tables to the new. */
function carryCounters(from: Tables, to: Tables): void {
  to.counters.counts.set(from.counters.counts);
  const fl = from.labels;
  const tl = to.labels;
  for (const p of from.peers) {
    const q = to.peers.find((x) => x.name === p.name);
    if (q === undefined) continue;
    for (const l of fl.labels) {
      const m = tl.idOf(l.name);
      if (m < 0) continue;
      const i = p.id * fl.size + l.id;
      const j = q.id * tl.size + m;
      to.traffic.txPackets[j] = from.traffic.txPackets[i]!;
      to.traffic.txBytes[j] = from.traffic.txBytes[i]!;
      to.traffic.rxPackets[j] = from.traffic.rxPackets[i]!;
      to.traffic.rxBytes[j] = from.traffic.rxBytes[i]!;
    }
  }
  for (const d of from.domains.domains) {
    const e = to.domains.idOf(d.name);
    if (e < 0) continue;
    to.traffic.domainIn[e] = from.traffic.domainIn[d.id]!;
    to.traffic.domainOut[e] = from.traffic.domainOut[d.id]!;
  }
}

function nonZero(counts: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(counts).filter(([, v]) => v !== 0));
}

function auditError(log: Logger, e: AuditLogError): void {
  log.error('audit log', { code: e.code, path: e.path, error: e.message });
}
