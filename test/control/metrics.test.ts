// Prometheus text exposition format 0.0.4: golden text for a snapshot, label and
// HELP escaping, registry checks; the HTTP endpoint on loopback (GET /metrics,
// 404 elsewhere, 405 for other methods) and its refusal of other addresses.
import { request } from 'node:http';
import { describe, expect, it } from 'vitest';
import {
  checkMetricFamilies,
  escapeLabelValue,
  formatMetricValue,
  isLoopbackAddress,
  MetricsError,
  MetricsServer,
  METRICS_CONTENT_TYPE,
  renderMetrics,
  type MetricsSnapshot,
} from '../../src/control/metrics.js';

const SNAPSHOT: MetricsSnapshot = {
  drops: [
    { labels: { reason: 'label_mismatch', label: 'red', peer: 'hv2' }, value: 3 },
    { labels: { reason: 'unknown_spi' }, value: 17 },
  ],
  discards: [{ labels: { reason: 'nat_keepalive' }, value: 5 }],
  packets: [
    { labels: { direction: 'tx', label: 'red', peer: 'hv2' }, value: 1000 },
    { labels: { direction: 'rx', label: 'red', peer: 'hv2' }, value: 990 },
  ],
  bytes: [{ labels: { direction: 'tx', label: 'red', peer: 'hv2' }, value: 1_400_000 }],
  saPackets: [{ labels: { spi: '0x00001001', label: 'red', peer: 'hv2', direction: 'in' }, value: 990 }],
  replayDrops: [{ labels: { spi: '0x00001001' }, value: 0 }],
  tapOffloadDrops: [{ labels: { domain: 'web1', reason: 'no_room' }, value: 2 }],
  tapOffloadSegments: [
    { labels: { domain: 'web1', direction: 'tx' }, value: 5400 },
    { labels: { domain: 'web1', direction: 'rx' }, value: 9000 },
  ],
  poolFree: 4000,
  fdbEntries: [{ labels: { label: 'red' }, value: 2 }],
  auditSuppressed: 0,
  info: [{ labels: { version: '0.1.0', crypto_backend: 'native' }, value: 1 }],
};

const GOLDEN = `# HELP sectunnel_drops_total Packets dropped, by reason code, label and peer.
# TYPE sectunnel_drops_total counter
sectunnel_drops_total{reason="label_mismatch",label="red",peer="hv2"} 3
sectunnel_drops_total{reason="unknown_spi"} 17
# HELP sectunnel_discards_total Packets consumed on purpose (keepalives, control messages, dummies), by reason.
# TYPE sectunnel_discards_total counter
sectunnel_discards_total{reason="nat_keepalive"} 5
# HELP sectunnel_packets_total Frames carried, by direction (tx: guest to wire, rx: wire to guest), label and peer.
# TYPE sectunnel_packets_total counter
sectunnel_packets_total{direction="tx",label="red",peer="hv2"} 1000
sectunnel_packets_total{direction="rx",label="red",peer="hv2"} 990
# HELP sectunnel_bytes_total Inner frame octets carried, by direction, label and peer.
# TYPE sectunnel_bytes_total counter
sectunnel_bytes_total{direction="tx",label="red",peer="hv2"} 1400000
# HELP sectunnel_sa_packets_total Packets sealed (out) or opened (in) per SA.
# TYPE sectunnel_sa_packets_total counter
sectunnel_sa_packets_total{spi="0x00001001",label="red",peer="hv2",direction="in"} 990
# HELP sectunnel_replay_drops_total Packets dropped by the anti-replay window, per inbound SA.
# TYPE sectunnel_replay_drops_total counter
sectunnel_replay_drops_total{spi="0x00001001"} 0
# HELP sectunnel_tap_offload_drops_total Super-frames or frames the TAP offloads dropped (malformed vnet header, no room), by domain and reason.
# TYPE sectunnel_tap_offload_drops_total counter
sectunnel_tap_offload_drops_total{domain="web1",reason="no_room"} 2
# HELP sectunnel_tap_offload_segments_total Frames cut out of super-frames read from the TAP (direction tx: guest to wire) or joined into super-frames written to it (rx), by domain.
# TYPE sectunnel_tap_offload_segments_total counter
sectunnel_tap_offload_segments_total{domain="web1",direction="tx"} 5400
sectunnel_tap_offload_segments_total{domain="web1",direction="rx"} 9000
# HELP sectunnel_fragmented_total Encapsulated frames larger than the underlay MTU, sent as outer IP fragments.
# TYPE sectunnel_fragmented_total counter
# HELP sectunnel_pool_free Free packet buffers in the pool.
# TYPE sectunnel_pool_free gauge
sectunnel_pool_free 4000
# HELP sectunnel_fdb_entries Learned MAC addresses, per label.
# TYPE sectunnel_fdb_entries gauge
sectunnel_fdb_entries{label="red"} 2
# HELP sectunnel_audit_written_total Audit records written.
# TYPE sectunnel_audit_written_total counter
# HELP sectunnel_audit_suppressed_total Audit records suppressed by the rate limit (counted, not written).
# TYPE sectunnel_audit_suppressed_total counter
sectunnel_audit_suppressed_total 0
# HELP sectunnel_audit_lost_total Audit records lost: the write queue was full or the write failed.
# TYPE sectunnel_audit_lost_total counter
# HELP sectunnel_info Always 1; the labels describe the running daemon.
# TYPE sectunnel_info gauge
sectunnel_info{version="0.1.0",crypto_backend="native"} 1
`;

describe('renderMetrics', () => {
  it('renders the golden text for a snapshot (HELP, TYPE, labels in family order)', () => {
    expect(renderMetrics(SNAPSHOT)).toBe(GOLDEN);
  });

  it('writes labels in the family\'s order whatever the object order', () => {
    const text = renderMetrics({ saPackets: [{ labels: { direction: 'out', peer: 'p', spi: '0x2', label: 'l' }, value: 1 }] });
    expect(text).toContain('sectunnel_sa_packets_total{spi="0x2",label="l",peer="p",direction="out"} 1\n');
  });

  it('escapes backslash, double quote and line feed in label values, and in HELP', () => {
    expect(escapeLabelValue('a\\b"c\nd')).toBe('a\\\\b\\"c\\nd');
    const families = { x: { name: 'x_total', type: 'counter', help: 'line one\nback\\slash', labels: ['peer'] } } as const;
    const text = renderMetrics({ x: [{ labels: { peer: 'host "b"\\\nc' }, value: 1 }] }, families);
    expect(text).toBe('# HELP x_total line one\\nback\\\\slash\n# TYPE x_total counter\nx_total{peer="host \\"b\\"\\\\\\nc"} 1\n');
  });

  it('writes special values as the format spells them', () => {
    expect([NaN, Infinity, -Infinity, 0, 42, 1.5, 2 ** 53].map(formatMetricValue)).toEqual(['NaN', '+Inf', '-Inf', '0', '42', '1.5', '9007199254740992']);
  });

  it('a registry with a counter not ending in _total, a bad name or a __ label is refused', () => {
    expect(() => checkMetricFamilies({ a: { name: 'sectunnel_drops', type: 'counter', help: '', labels: [] } })).toThrow(/must end in _total/);
    expect(() => checkMetricFamilies({ a: { name: 'bad-name', type: 'gauge', help: '', labels: [] } })).toThrow(/not a Prometheus metric name/);
    expect(() => checkMetricFamilies({ a: { name: 'ok', type: 'gauge', help: '', labels: ['__x'] } })).toThrow(/label name/);
    expect(() =>
      checkMetricFamilies({ a: { name: 'ok', type: 'gauge', help: '', labels: [] }, b: { name: 'ok', type: 'gauge', help: '', labels: [] } }),
    ).toThrow(/used twice/);
  });

  it('tells loopback addresses from others', () => {
    for (const a of ['127.0.0.1', '127.1.2.3', '::1', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1']) expect(isLoopbackAddress(a), a).toBe(true);
    for (const a of ['0.0.0.0', '::', '192.0.2.1', '10.0.0.1', '2001:db8::1', '::ffff:10.0.0.1', 'localhost']) expect(isLoopbackAddress(a), a).toBe(false);
  });
});

function get(url: string, method = 'GET'): Promise<{ status: number; type: string | undefined; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: res.headers['content-type'], body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('MetricsServer', () => {
  it('serves GET /metrics on 127.0.0.1 with the current snapshot; other paths 404, other methods 405', async () => {
    let pool = 10;
    const server = await MetricsServer.listen({ address: '127.0.0.1', port: 0, snapshot: () => ({ poolFree: pool, info: [{ labels: { version: '0.1.0', crypto_backend: 'node' }, value: 1 }] }) });
    try {
      expect(server.port).toBeGreaterThan(0);
      const a = await get(server.url);
      expect(a.status).toBe(200);
      expect(a.type).toBe(METRICS_CONTENT_TYPE);
      expect(a.body).toContain('\nsectunnel_pool_free 10\n');
      expect(a.body).toContain('sectunnel_info{version="0.1.0",crypto_backend="node"} 1\n');
      pool = 7;
      expect((await get(`${server.url}?x=1`)).body).toContain('\nsectunnel_pool_free 7\n');
      const base = `http://127.0.0.1:${server.port}`;
      expect((await get(`${base}/`)).status).toBe(404);
      expect((await get(`${base}/metrics/x`)).status).toBe(404);
      expect((await get(server.url, 'POST')).status).toBe(405);
      const head = await get(server.url, 'HEAD');
      expect(head.status).toBe(200);
      expect(head.body).toBe('');
    } finally {
      await server.close();
    }
  });

  it('serves on [::1] when IPv6 loopback exists', async () => {
    let server: MetricsServer;
    try {
      server = await MetricsServer.listen({ address: '::1', port: 0, snapshot: () => ({ poolFree: 1 }) });
    } catch (e) {
      // A host without IPv6 loopback cannot bind ::1; the error must say so, naming the address.
      expect((e as MetricsError).message).toContain('[::1]:0');
      return;
    }
    try {
      expect(server.url).toBe(`http://[::1]:${server.port}/metrics`);
      expect((await get(server.url)).body).toContain('sectunnel_pool_free 1\n');
    } finally {
      await server.close();
    }
  });

  it('a snapshot that throws gives a 500 and reports the error', async () => {
    const errors: unknown[] = [];
    const server = await MetricsServer.listen({ address: '127.0.0.1', port: 0, snapshot: () => { throw new Error('boom'); }, onError: (e) => errors.push(e) });
    try {
      expect((await get(server.url)).status).toBe(500);
      expect(errors).toHaveLength(1);
    } finally {
      await server.close();
    }
  });

  it('refuses a non-loopback address unless allowed, naming it', async () => {
    for (const address of ['0.0.0.0', '::', '192.0.2.1']) {
      const err = await MetricsServer.listen({ address, port: 9273, snapshot: () => ({}) }).catch((e: unknown) => e);
      expect(err, address).toBeInstanceOf(MetricsError);
      expect((err as MetricsError).code).toBe('METRICS_NOT_LOOPBACK');
      expect((err as Error).message).toContain(address.includes(':') ? `[${address}]:9273` : `${address}:9273`);
    }
    const allowed = await MetricsServer.listen({ address: '0.0.0.0', port: 0, snapshot: () => ({ poolFree: 3 }), allowNonLoopback: true });
    try {
      expect((await get(`http://127.0.0.1:${allowed.port}/metrics`)).body).toContain('sectunnel_pool_free 3\n');
    } finally {
      await allowed.close();
    }
  });

  it('a port in use is an error naming the address', async () => {
    const first = await MetricsServer.listen({ address: '127.0.0.1', port: 0, snapshot: () => ({}) });
    try {
      const err = await MetricsServer.listen({ address: '127.0.0.1', port: first.port, snapshot: () => ({}) }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(MetricsError);
      expect((err as Error).message).toBe(`cannot serve metrics on 127.0.0.1:${first.port}: the address is in use`);
    } finally {
      await first.close();
    }
  });
});
