/**
 * Prometheus metrics: the text exposition format 0.0.4, rendered from a
 * snapshot the daemon supplies, and a small node:http server for it.
 *
 * Stages of one scrape: GET /metrics → `snapshot()` (the daemon reads its
 * counters; plain numbers) → `renderMetrics`: for every family of the
 * registry, `# HELP` and `# TYPE` lines, then one line per sample with its
 * labels in the family's order, values escaped per the format → response.
 *
 * Adding a metric is one line in METRIC_FAMILIES (name, type, help, label
 * names); the snapshot type follows from it.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { BlockList, isIP } from 'node:net';

export type MetricType = 'counter' | 'gauge';

/** One family: its full name (counters end in `_total`), type, help text and label names in output order. */
export interface MetricFamilyDef {
  readonly name: string;
  readonly type: MetricType;
  readonly help: string;
  readonly labels: readonly string[];
}

/** The families sectunnel exports; the key is the snapshot field. */
export const METRIC_FAMILIES = {
  drops: { name: 'sectunnel_drops_total', type: 'counter', help: 'Packets dropped, by reason code, label and peer.', labels: ['reason', 'label', 'peer'] },
  discards: { name: 'sectunnel_discards_total', type: 'counter', help: 'Packets consumed on purpose (keepalives, control messages, dummies), by reason.', labels: ['reason'] },
  packets: { name: 'sectunnel_packets_total', type: 'counter', help: 'Frames carried, by direction (tx: guest to wire, rx: wire to guest), label and peer.', labels: ['direction', 'label', 'peer'] },
  bytes: { name: 'sectunnel_bytes_total', type: 'counter', help: 'Inner frame octets carried, by direction, label and peer.', labels: ['direction', 'label', 'peer'] },
  saPackets: { name: 'sectunnel_sa_packets_total', type: 'counter', help: 'Packets sealed (out) or opened (in) per SA.', labels: ['spi', 'label', 'peer', 'direction'] },
  replayDrops: { name: 'sectunnel_replay_drops_total', type: 'counter', help: 'Packets dropped by the anti-replay window, per inbound SA.', labels: ['spi'] },
  tapOffloadDrops: { name: 'sectunnel_tap_offload_drops_total', type: 'counter', help: 'Super-frames or frames the TAP offloads dropped (malformed vnet header, no room), by domain and reason.', labels: ['domain', 'reason'] },
  tapOffloadSegments: { name: 'sectunnel_tap_offload_segments_total', type: 'counter', help: 'Frames cut out of super-frames read from the TAP (direction tx: guest to wire) or joined into super-frames written to it (rx), by domain.', labels: ['domain', 'direction'] },
  fragmented: { name: 'sectunnel_fragmented_total', type: 'counter', help: 'Encapsulated frames larger than the underlay MTU, sent as outer IP fragments.', labels: [] },
  poolFree: { name: 'sectunnel_pool_free', type: 'gauge', help: 'Free packet buffers in the pool.', labels: [] },
  fdbEntries: { name: 'sectunnel_fdb_entries', type: 'gauge', help: 'Learned MAC addresses, per label.', labels: ['label'] },
  auditWritten: { name: 'sectunnel_audit_written_total', type: 'counter', help: 'Audit records written.', labels: [] },
  auditSuppressed: { name: 'sectunnel_audit_suppressed_total', type: 'counter', help: 'Audit records suppressed by the rate limit (counted, not written).', labels: [] },
  auditLost: { name: 'sectunnel_audit_lost_total', type: 'counter', help: 'Audit records lost: the write queue was full or the write failed.', labels: [] },
  info: { name: 'sectunnel_info', type: 'gauge', help: 'Always 1; the labels describe the running daemon.', labels: ['version', 'crypto_backend'] },
} as const satisfies Record<string, MetricFamilyDef>;

export type MetricFamilies = typeof METRIC_FAMILIES;

/** A label value; numbers are written in decimal. Absent (undefined) labels are left out. */
export type LabelValue = string | number | undefined;

/** One sample of a family with label names L. */
export interface MetricSample<L extends string = string> {
  readonly labels?: { readonly [K in L]?: LabelValue };
  readonly value: number;
}

/** What the daemon's snapshot function returns: for each family, its samples (a bare number for an unlabelled one). */
export type MetricsSnapshot<F extends Record<string, MetricFamilyDef> = MetricFamilies> = {
  readonly [K in keyof F]?: number | readonly MetricSample<F[K]['labels'][number]>[];
};

/** The Content-Type of the text format. */
export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** Checks a registry: valid names, counters ending in `_total`, no `__` label names, no duplicates; throws TypeError. */
export function checkMetricFamilies(families: Record<string, MetricFamilyDef>): void {
  const names = new Set<string>();
  for (const [key, f] of Object.entries(families)) {
    if (!METRIC_NAME.test(f.name)) throw new TypeError(`metric ${key}: name ${JSON.stringify(f.name)} is not a Prometheus metric name`);
    if (f.type === 'counter' && !f.name.endsWith('_total')) throw new TypeError(`metric ${key}: counter ${f.name} must end in _total`);
    if (names.has(f.name)) throw new TypeError(`metric ${key}: name ${f.name} is used twice`);
    names.add(f.name);
    for (const l of f.labels) {
      if (!LABEL_NAME.test(l) || l.startsWith('__')) throw new TypeError(`metric ${key}: label name ${JSON.stringify(l)} is not valid`);
    }
  }
}

checkMetricFamilies(METRIC_FAMILIES);

/** Escapes a label value: backslash, double quote and line feed (exposition format 0.0.4). */
export function escapeLabelValue(v: string): string {
  return v.replace(/[\\"\n]/g, (c) => (c === '\\' ? '\\\\' : c === '"' ? '\\"' : '\\n'));
}

/** Escapes HELP text: backslash and line feed. */
export function escapeHelp(v: string): string {
  return v.replace(/[\\\n]/g, (c) => (c === '\\' ? '\\\\' : '\\n'));
}

/** A sample value as the format writes it: integers plainly, `NaN`, `+Inf`, `-Inf`. */
export function formatMetricValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

/** Renders a snapshot as Prometheus text (every family of the registry gets HELP and TYPE, even without samples). */
export function renderMetrics<F extends Record<string, MetricFamilyDef>>(snapshot: MetricsSnapshot<F>, families: F = METRIC_FAMILIES as unknown as F): string {
  let out = '';
  for (const key of Object.keys(families)) {
    const f = families[key]!;
    out += `# HELP ${f.name} ${escapeHelp(f.help)}\n# TYPE ${f.name} ${f.type}\n`;
    const samples = (snapshot as Record<string, number | readonly MetricSample[] | undefined>)[key];
    if (samples === undefined) continue;
    if (typeof samples === 'number') {
      out += `${f.name} ${formatMetricValue(samples)}\n`;
      continue;
    }
    for (const s of samples) {
      let labels = '';
      if (s.labels !== undefined) {
        for (const name of f.labels) {
          const v = s.labels[name];
          if (v === undefined) continue;
          labels += `${labels === '' ? '' : ','}${name}="${escapeLabelValue(String(v))}"`;
        }
      }
      out += labels === '' ? `${f.name} ${formatMetricValue(s.value)}\n` : `${f.name}{${labels}} ${formatMetricValue(s.value)}\n`;
    }
  }
  return out;
}

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/** True for 127.0.0.0/8, ::1 and IPv4-mapped 127.x.y.z (any spelling). */
export function isLoopbackAddress(address: string): boolean {
  const family = isIP(address);
  return family !== 0 && LOOPBACK.check(address, family === 4 ? 'ipv4' : 'ipv6');
}

export type MetricsErrorCode = 'METRICS_NOT_LOOPBACK' | 'METRICS_LISTEN';

/** The metrics endpoint cannot start; the message names the address. */
export class MetricsError extends Error {
  override readonly name = 'MetricsError';
  constructor(
    readonly code: MetricsErrorCode,
    readonly address: string,
    message: string,
  ) {
    super(message);
  }
}

export interface MetricsServerOptions<F extends Record<string, MetricFamilyDef> = MetricFamilies> {
  /** IP address to bind (config `metrics.listen.address`). */
  address: string;
  /** Port (config `metrics.listen.port`); 0 picks a free one (tests). */
  port: number;
  /** Called on every scrape. */
  snapshot: () => MetricsSnapshot<F>;
  families?: F;
  /** Allow a non-loopback address (the metrics then reach the network unauthenticated). Default false. */
  allowNonLoopback?: boolean;
  /** Called when `snapshot` throws (the scrape gets a 500). */
  onError?: (err: unknown) => void;
  /** Most simultaneous connections; default 16. */
  maxConnections?: number;
}

/** "[::1]:9273" or "127.0.0.1:9273". */
function hostPort(address: string, port: number): string {
  return isIP(address) === 6 ? `[${address}]:${port}` : `${address}:${port}`;
}

/** The HTTP endpoint: GET/HEAD /metrics, 404 elsewhere, 405 for other methods on /metrics. */
export class MetricsServer {
  private constructor(
    private readonly server: Server,
    /** The bound address and port (the real port when 0 was asked). */
    readonly address: string,
    readonly port: number,
  ) {}

  /** `http://ADDRESS:PORT/metrics`. */
  get url(): string {
    return `http://${hostPort(this.address, this.port)}/metrics`;
  }

  /** Binds and serves; throws MetricsError for a non-loopback address (unless allowed) or a failed bind. */
  static async listen<F extends Record<string, MetricFamilyDef> = MetricFamilies>(opts: MetricsServerOptions<F>): Promise<MetricsServer> {
    const where = hostPort(opts.address, opts.port);
    if (isIP(opts.address) === 0) {
      throw new MetricsError('METRICS_LISTEN', opts.address, `metrics listen address ${JSON.stringify(opts.address)} is not an IP address`);
    }
    if (!opts.allowNonLoopback && !isLoopbackAddress(opts.address)) {
      throw new MetricsError(
        'METRICS_NOT_LOOPBACK',
        opts.address,
        `refusing to serve metrics on ${where}: not a loopback address (metrics are unauthenticated); use 127.0.0.1 or [::1], or allow it explicitly`,
      );
    }
    const families = opts.families ?? (METRIC_FAMILIES as unknown as F);
    const server = createServer((req, res) => handle(req, res, opts.snapshot, families, opts.onError));
    server.maxConnections = opts.maxConnections ?? 16;
    server.requestTimeout = 10_000;
    server.headersTimeout = 5_000;
    server.keepAliveTimeout = 5_000;
    server.maxHeadersCount = 64;
    await new Promise<void>((resolve, reject) => {
      const onError = (e: NodeJS.ErrnoException) => {
        const why = e.code === 'EADDRINUSE' ? 'the address is in use' : e.code === 'EADDRNOTAVAIL' ? 'no interface has this address' : e.code === 'EACCES' ? 'permission denied' : `${e.code ?? 'error'}: ${e.message}`;
        reject(new MetricsError('METRICS_LISTEN', opts.address, `cannot serve metrics on ${where}: ${why}`));
      };
      server.once('error', onError);
      server.listen({ host: opts.address, port: opts.port, exclusive: true }, () => {
        server.off('error', onError);
        resolve();
      });
    });
    const bound = server.address();
    const port = typeof bound === 'object' && bound !== null ? bound.port : opts.port;
    return new MetricsServer(server, opts.address, port);
  }

  /** Stops listening and closes every connection. */
  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}

function handle<F extends Record<string, MetricFamilyDef>>(
  req: IncomingMessage,
  res: ServerResponse,
  snapshot: () => MetricsSnapshot<F>,
  families: F,
  onError: ((err: unknown) => void) | undefined,
): void {
  const path = (req.url ?? '/').split('?', 1)[0];
  if (path !== '/metrics') {
    reply(res, 404, 'not found; metrics are at /metrics\n');
    return;
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('Allow', 'GET, HEAD');
    reply(res, 405, 'method not allowed\n');
    return;
  }
  let body: string;
  try {
    body = renderMetrics(snapshot(), families);
  } catch (e) {
    onError?.(e);
    reply(res, 500, 'metrics snapshot failed\n');
    return;
  }
  res.writeHead(200, { 'Content-Type': METRICS_CONTENT_TYPE, 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' });
  res.end(req.method === 'HEAD' ? undefined : body);
}

function reply(res: ServerResponse, status: number, text: string): void {
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}
