/**
 * AEAD throughput per backend: seal and open of ESP-shaped packets
 * (SPI ‖ seq ‖ IV ‖ payload ‖ ICV, 12-octet ESN AAD) in place, for 64, 512, 1400
 * and 9000-octet payloads, one packet per call and batches of 64 per call.
 *
 *   npm run build && npm run bench:crypto [-- --json] [--alg=aes-gcm-256|...|all]
 *     [--backends=native,node,noble] [--time-ms=250]
 *
 * Stages: 1. build one slab per (size, mode) with packets sealed once  2. time seal
 * (in place, the same IV each time: throughput only, never do this with real traffic)
 * 3. time open (each iteration first restores the sealed bytes with one memcpy per
 * packet, included in the time)  4. print a table, or one JSON object with --json.
 */
import { cpus } from 'node:os';
import { Bench } from 'tinybench';
import {
  AEAD_ALGORITHMS,
  AEAD_BACKENDS,
  AeadBatch,
  aeadKeymatBytes,
  availableBackends,
  backendUnavailableReason,
  createAead,
  selectedBackend,
  type Aead,
  type AeadAlgorithm,
  type AeadBackendName,
} from '../src/crypto/index.js';

const PAYLOAD_SIZES_BYTES = [64, 512, 1400, 9000] as const;
const BATCH_PACKETS = 64;
const HEADER_BYTES = 16; // SPI(4) ‖ seq(4) ‖ IV(8)
const ICV_BYTES = 16;
const AAD_BYTES = 12; // SPI ‖ seq_hi ‖ seq_lo (ESN)

type Op = 'seal' | 'open';
type Mode = 'single' | `batch${typeof BATCH_PACKETS}`;

interface Row {
  algorithm: AeadAlgorithm;
  backend: AeadBackendName;
  op: Op;
  mode: Mode;
  payloadBytes: number;
  packetsPerSec: number;
  megabytesPerSec: number;
  nsPerPacket: number;
  rmePercent: number;
}

interface Args {
  json: boolean;
  algorithms: AeadAlgorithm[];
  backends: AeadBackendName[];
  timeMs: number;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { json: false, algorithms: ['aes-gcm-256'], backends: availableBackends(), timeMs: 250 };
  for (const a of argv) {
    const [k, v] = a.split('=', 2) as [string, string | undefined];
    if (k === '--json') args.json = true;
    else if (k === '--alg' && v) {
      args.algorithms = v === 'all' ? [...AEAD_ALGORITHMS] : (v.split(',') as AeadAlgorithm[]);
      for (const alg of args.algorithms) if (!AEAD_ALGORITHMS.includes(alg)) throw new Error(`--alg: unknown algorithm ${alg}`);
    } else if (k === '--backends' && v) {
      args.backends = v.split(',') as AeadBackendName[];
      for (const b of args.backends) {
        if (!AEAD_BACKENDS.includes(b)) throw new Error(`--backends: unknown backend ${b}`);
        const why = backendUnavailableReason(b);
        if (why !== null) throw new Error(`--backends: ${b} is unavailable: ${why}`);
      }
    } else if (k === '--time-ms' && v) args.timeMs = Number(v);
    else throw new Error(`unknown argument ${a}; see the comment at the top of bench/crypto.bench.ts`);
  }
  return args;
}

/** A slab of `count` ESP-shaped packets of payloadBytes each, sealed, plus a batch describing them. */
function makeSlab(aead: Aead, payloadBytes: number, count: number): { slab: Uint8Array; sealed: Uint8Array; batch: AeadBatch } {
  const stride = (HEADER_BYTES + payloadBytes + ICV_BYTES + 7) & ~7;
  const slab = new Uint8Array(stride * count);
  for (let i = 0; i < slab.length; i++) slab[i] = (i * 131 + 7) & 0xff;
  const batch = new AeadBatch(count);
  batch.reset(slab);
  for (let p = 0; p < count; p++) {
    const at = p * stride;
    const i = batch.push(at + 8, at + HEADER_BYTES, payloadBytes, AAD_BYTES);
    batch.aad.set(slab.subarray(at, at + AAD_BYTES), i * 16);
  }
  aead.sealBatch(batch);
  return { slab, sealed: slab.slice(), batch };
}

async function measure(args: Args): Promise<Row[]> {
  const rows: Row[] = [];
  for (const algorithm of args.algorithms) {
    const keymat = new Uint8Array(aeadKeymatBytes(algorithm)).map((_, i) => i * 7 + 1);
    for (const backend of args.backends) {
      for (const payloadBytes of PAYLOAD_SIZES_BYTES) {
        const aead = createAead(algorithm, keymat, backend);
        const single = makeSlab(aead, payloadBytes, 1);
        const many = makeSlab(aead, payloadBytes, BATCH_PACKETS);
        const aad1 = single.batch.aad.subarray(0, AAD_BYTES);
        const ivOff = 8;
        const len = payloadBytes;
        const bench = new Bench({ time: args.timeMs, warmupTime: Math.min(100, args.timeMs), throws: true });
        const tasks: [Op, Mode, number, () => void][] = [
          ['seal', 'single', 1, () => aead.seal(single.slab, ivOff, HEADER_BYTES, len, aad1)],
          [
            'open',
            'single',
            1,
            () => {
              single.slab.set(single.sealed);
              if (!aead.open(single.slab, ivOff, HEADER_BYTES, len, aad1)) throw new Error('open failed');
            },
          ],
          ['seal', `batch${BATCH_PACKETS}`, BATCH_PACKETS, () => aead.sealBatch(many.batch)],
          [
            'open',
            `batch${BATCH_PACKETS}`,
            BATCH_PACKETS,
            () => {
              many.slab.set(many.sealed);
              if (aead.openBatch(many.batch) !== BATCH_PACKETS) throw new Error('openBatch failed');
            },
          ],
        ];
        for (const [op, mode, , fn] of tasks) bench.add(`${op} ${mode}`, fn);
        await bench.run();
        // Seal leaves the slabs sealed under the same IVs, so open stays valid after it.
        tasks.forEach(([op, mode, packets], t) => {
          const r = bench.tasks[t]!.result;
          if (!('latency' in r)) throw new Error(`${backend} ${op} ${mode} ${payloadBytes}: ${r.state}`);
          const packetsPerSec = (1000 / r.latency.mean) * packets;
          rows.push({
            algorithm,
            backend,
            op,
            mode,
            payloadBytes,
            packetsPerSec,
            megabytesPerSec: (packetsPerSec * payloadBytes) / 1e6,
            nsPerPacket: 1e9 / packetsPerSec,
            rmePercent: r.latency.rme,
          });
        });
        aead.destroy();
      }
    }
  }
  return rows;
}

/** native batch vs node single and node batch, at 1400 octets, per algorithm and op. */
function ratios(rows: Row[]): { algorithm: AeadAlgorithm; op: Op; nativeBatchVsNodeSingle: number; nativeBatchVsNodeBatch: number }[] {
  const find = (alg: AeadAlgorithm, b: AeadBackendName, op: Op, mode: Mode): Row | undefined =>
    rows.find((r) => r.algorithm === alg && r.backend === b && r.op === op && r.mode === mode && r.payloadBytes === 1400);
  const out = [];
  for (const alg of new Set(rows.map((r) => r.algorithm))) {
    for (const op of ['seal', 'open'] as const) {
      const nb = find(alg, 'native', op, `batch${BATCH_PACKETS}`);
      const ns = find(alg, 'node', op, 'single');
      const nodeBatch = find(alg, 'node', op, `batch${BATCH_PACKETS}`);
      if (nb && ns && nodeBatch) {
        out.push({
          algorithm: alg,
          op,
          nativeBatchVsNodeSingle: nb.packetsPerSec / ns.packetsPerSec,
          nativeBatchVsNodeBatch: nb.packetsPerSec / nodeBatch.packetsPerSec,
        });
      }
    }
  }
  return out;
}

function fmt(n: number, digits = 0): string {
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

function printTable(rows: Row[]): void {
  const head = ['algorithm', 'backend', 'op', 'mode', 'payload B', 'packets/s', 'MB/s', 'ns/packet', '±%'];
  const body = rows.map((r) => [
    r.algorithm,
    r.backend,
    r.op,
    r.mode,
    String(r.payloadBytes),
    fmt(r.packetsPerSec),
    fmt(r.megabytesPerSec, 1),
    fmt(r.nsPerPacket),
    fmt(r.rmePercent, 1),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i < 4 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  console.log(line(head));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const b of body) console.log(line(b));
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const rows = await measure(args);
  const r = ratios(rows);
  const env = {
    node: process.version,
    openssl: process.versions.openssl,
    cpu: cpus()[0]?.model ?? 'unknown',
    cpus: cpus().length,
    defaultBackend: selectedBackend(),
    batchPackets: BATCH_PACKETS,
    taskTimeMs: args.timeMs,
    note: 'MB = 10^6 payload octets; open includes restoring the sealed bytes (one memcpy per packet)',
  };
  if (args.json) {
    console.log(JSON.stringify({ env, rows, ratiosAt1400: r }));
    return;
  }
  console.log(`sectunnel crypto bench — Node ${env.node}, OpenSSL ${env.openssl}, ${env.cpu} ×${env.cpus}`);
  console.log(`default backend: ${env.defaultBackend.backend} (${env.defaultBackend.reason}); ${env.note}\n`);
  printTable(rows);
  if (r.length > 0) {
    console.log(`\nnative batch${BATCH_PACKETS} vs node at 1400 octets (target ≥ 5× node):`);
    for (const x of r) {
      console.log(
        `  ${x.algorithm} ${x.op}: ${fmt(x.nativeBatchVsNodeSingle, 1)}× node single, ${fmt(x.nativeBatchVsNodeBatch, 1)}× node batch${BATCH_PACKETS}`,
      );
    }
  }
}

main().catch((e: unknown) => {
  console.error(`crypto.bench: ${(e as Error).message}`);
  process.exitCode = 2;
});
