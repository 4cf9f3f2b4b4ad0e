/**
 * In-process pipeline throughput: encap (guest frame → sealed ESP packet) and decap (UDP
 * payload → guest frame) packets/s and Gbit/s of guest frame octets, for 64, 512 and
 * 1400-octet frames, through the real EncapPipeline/DecapPipeline with no sockets.
 *
 *   npm run build && npm run bench:pipeline [-- --json] [--alg=aes-gcm-256,chacha20-poly1305|all]
 *     [--time-ms=1000] [--rounds=10] [--gc-packets=1000000] [--no-contrast]
 *
 * Stages:
 *   1. two in-memory hosts A and B (one label, one domain each, one peer, an SA pair) with
 *      one pool per host; A has learned B's guest MAC as remote, so every frame is unicast
 *   2. encap task: frames are loaded into pool buffers before each iteration (the TAP read's
 *      copy, not timed); timed: EncapPipeline.run over the batch, then every buffer of
 *      out.release goes back to the pool (what the daemon does after sendmmsg)
 *   3. decap task: A's sealed packets (sequence numbers 1..batch) are loaded into B's pool
 *      and B's replay window is reset before each iteration (not timed); timed:
 *      DecapPipeline.run with DecapInput.udpPayload, then the release to the pool
 *   4. rows: native crypto at batch 64 (the daemon's shape), batch 1 and the node:crypto
 *      backend for contrast
 *   5. per-packet cost breakdown at 1400 octets, batch 64: the whole pipeline; the pipeline
 *      with the SA's AEAD swapped for a no-op (a bench-only object, never in production
 *      code); the ESP stage alone without the cipher; the AEAD batch call alone over the
 *      same 64 packets in the same slab; the empty N-API batch call; the rest
 *   6. allocation check: --gc-packets packets (1400 octets, batch 64) through each pipeline
 *      in a plain loop, counting V8 garbage collections, heap growth and the octets allocated
 *      (V8's sampling heap profiler); once with sequence numbers from 1, once from 2^31 + 1
 * SPIs are above 2^31 throughout (see SPI_A_TO_B).
 *   7. a table on stdout, or one JSON object with --json
 * Each task gets --time-ms in --rounds rounds, all tasks taking turns in every round; a time is
 * the lowest over the rounds of the median tinybench sample (other work on the machine only ever
 * adds time), and "spread %" is (max − min) / min of the round medians (JSON: also the median).
 */
import { cpus, loadavg } from 'node:os';
import { Session } from 'node:inspector/promises';
import { performance, PerformanceObserver } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Bench } from 'tinybench';
import { PacketPool } from '../src/buf/pool.js';
import type { PacketBuf } from '../src/buf/packet-buf.js';
import { Actions } from '../src/core/actions.js';
import { DecapInput, DecapPipeline } from '../src/core/decap.js';
import { EncapPipeline } from '../src/core/encap.js';
import { espOpenBatch, espSealBatch } from '../src/core/esp.js';
import { FDB_REMOTE } from '../src/core/fdb.js';
import { DomainTable, LabelTable } from '../src/core/labels.js';
import { Policy } from '../src/core/policy.js';
import { InboundSa, OutboundSa } from '../src/core/sa.js';
import { Tables } from '../src/core/tables.js';
import {
  AEAD_ALGORITHMS,
  AeadBatch,
  aeadKeymatBytes,
  backendUnavailableReason,
  type Aead,
  type AeadAlgorithm,
  type AeadBackendName,
} from '../src/crypto/index.js';
import { AEAD_BATCH_AAD_STRIDE } from '../src/crypto/aead.js';

const FRAME_SIZES_BYTES = [64, 512, 1400] as const;
const BREAKDOWN_FRAME_BYTES = 1400;
const BATCH_PACKETS = 64;
const T0_MS = 1_700_000_000_000;
const POOL_PACKETS = 512;
const MAC_A = [0x02, 0, 0, 0, 0x0a, 0x01];
const MAC_B = [0x02, 0, 0, 0, 0x0b, 0x01];
// SPIs at or above 2^31, as half of all random SPIs are: V8 keeps such a number as a heap object
// wherever it crosses a call that is not inlined, the case that shows a per-packet allocation.
const SPI_A_TO_B = 0xc0001001;
const SPI_B_TO_A = 0xc0002001;
/** First sequence number of the allocation check's second case: the low half's top bit set (after 2^31 packets). */
const HIGH_SEQ = 2 ** 31 + 1;
const ESP_PREFIX_BYTES = 16; // SPI, seq, IV
const ICV_BYTES = 16;

type Direction = 'encap' | 'decap';
/** 'noop' is the bench-only AEAD that does nothing (breakdown only). */
type CryptoKind = AeadBackendName | 'noop';

interface Row {
  direction: Direction;
  algorithm: AeadAlgorithm;
  backend: AeadBackendName;
  batch: number;
  frameBytes: number;
  packetsPerSec: number;
  gbitPerSec: number;
  /** Lowest of the round medians (the number the table shows). */
  usPerPacket: number;
  /** Median of the round medians. */
  medianUsPerPacket: number;
  /** Spread of the round medians: (max − min) / min, %. */
  spreadPercent: number;
}

interface Breakdown {
  direction: Direction;
  algorithm: AeadAlgorithm;
  frameBytes: number;
  /** The whole pipeline run + release, native crypto. */
  pipelineUs: number;
  /** The same with a no-op AEAD: everything but the cipher. */
  pipelineNoCryptoUs: number;
  /** espSealBatch/espOpenBatch alone with a no-op AEAD (part of pipelineNoCryptoUs). */
  espStageNoCipherUs: number;
  /** sealBatch/openBatch alone over the same 64 packets (native). */
  aeadBatchUs: number;
  /** An empty sealBatch call (N-API crossing, argument checks), per packet of a 64-batch. */
  napiCallUs: number;
  /** pipelineUs − pipelineNoCryptoUs − aeadBatchUs: what the two parts cost only together (cache, call). */
  restUs: number;
}

interface GcCheck {
  direction: Direction;
  algorithm: AeadAlgorithm;
  frameBytes: number;
  /** The SA's first sequence number: 1, or HIGH_SEQ (the low half at 2^31 and above). */
  firstSeq: number;
  packets: number;
  gcCount: number;
  gcMs: number;
  heapGrowthBytes: number;
  /** Octets allocated per packet, from V8's sampling heap profiler (64-octet interval). */
  allocatedBytesPerPacket: number;
  usPerPacket: number;
}

interface Args {
  json: boolean;
  algorithms: AeadAlgorithm[];
  timeMs: number;
  rounds: number;
  gcPackets: number;
  contrast: boolean;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { json: false, algorithms: ['aes-gcm-256', 'chacha20-poly1305'], timeMs: 1000, rounds: 10, gcPackets: 1_000_000, contrast: true };
  for (const a of argv) {
    const [k, v] = a.split('=', 2) as [string, string | undefined];
    if (k === '--json') args.json = true;
    else if (k === '--no-contrast') args.contrast = false;
    else if (k === '--alg' && v) {
      args.algorithms = v === 'all' ? [...AEAD_ALGORITHMS] : (v.split(',') as AeadAlgorithm[]);
      for (const alg of args.algorithms) if (!AEAD_ALGORITHMS.includes(alg)) throw new Error(`--alg: unknown algorithm ${alg}`);
    } else if (k === '--time-ms' && v) args.timeMs = Number(v);
    else if (k === '--rounds' && v) args.rounds = Number(v);
    else if (k === '--gc-packets' && v) args.gcPackets = Number(v);
    else throw new Error(`unknown argument ${a}; see the comment at the top of bench/pipeline.bench.ts`);
  }
  if (!(args.timeMs > 0)) throw new Error('--time-ms must be a positive number');
  if (!(Number.isInteger(args.rounds) && args.rounds >= 1)) throw new Error('--rounds must be an integer ≥ 1');
  if (!(args.gcPackets >= 0)) throw new Error('--gc-packets must be a number ≥ 0');
  return args;
}

/** Bench-only AEAD that leaves the bytes alone and calls everything authentic. */
class NoopAead implements Aead {
  readonly backend = 'native' as const;
  constructor(readonly algorithm: AeadAlgorithm) {}
  seal(): void {}
  open(): boolean {
    return true;
  }
  sealBatch(): void {}
  openBatch(batch: AeadBatch): number {
    batch.ok.fill(1, 0, batch.count);
    return batch.count;
  }
  destroy(): void {}
}

/** Replaces an SA's AEAD with the no-op one (the field is readonly in TypeScript only). */
function withNoopAead<T extends OutboundSa | InboundSa>(sa: T): T {
  sa.aead.destroy();
  (sa as unknown as { aead: Aead }).aead = new NoopAead(sa.algorithm);
  return sa;
}

function keymat(alg: AeadAlgorithm, seed: number): Uint8Array {
  const k = new Uint8Array(aeadKeymatBytes(alg));
  for (let i = 0; i < k.length; i++) k[i] = (seed * 31 + i * 7) & 0xff;
  return k;
}

interface Host {
  tables: Tables;
  pool: PacketPool;
  encap: EncapPipeline;
  decap: DecapPipeline;
  domainId: number;
  outSa: OutboundSa;
  inSa: InboundSa;
}

/** One host: label `bench` (VLAN 100), one domain owning `mac`, peer 0 (the other host), an SA pair. */
function host(side: 'a' | 'b', alg: AeadAlgorithm, crypto: CryptoKind, firstSeq: number): Host {
  const labels = new LabelTable([{ name: 'bench', vlan: 100 }]);
  const macText = (side === 'a' ? MAC_A : MAC_B).map((x) => x.toString(16).padStart(2, '0')).join(':');
  const domains = new DomainTable([{ name: `guest-${side}`, label: 'bench', macs: [macText] }], labels);
  const tables = new Tables({ labels, domains, policy: new Policy(labels, []), peers: [{ id: 0, name: 'peer', labelIds: [0] }] });
  const backend = crypto === 'noop' ? 'node' : crypto;
  const outSpi = side === 'a' ? SPI_A_TO_B : SPI_B_TO_A;
  const inSpi = side === 'a' ? SPI_B_TO_A : SPI_A_TO_B;
  let outSa = new OutboundSa({ spi: outSpi, algorithm: alg, keymat: keymat(alg, outSpi), backend, labels: ['bench'], nowMs: T0_MS, firstSeq });
  let inSa = new InboundSa({ spi: inSpi, algorithm: alg, keymat: keymat(alg, inSpi), backend, labels: ['bench'], nowMs: T0_MS });
  if (crypto === 'noop') {
    outSa = withNoopAead(outSa);
    inSa = withNoopAead(inSa);
  }
  tables.setOutbound(0, 0, outSa);
  tables.setInbound(inSa, 0);
  const pool = new PacketPool({ packets: POOL_PACKETS });
  return {
    tables,
    pool,
    encap: new EncapPipeline(tables, pool),
    decap: new DecapPipeline(tables),
    domainId: domains.idOf(`guest-${side}`),
    outSa,
    inSa,
  };
}

/** An untagged IPv4 guest frame of frameBytes octets, B's guest ← A's guest. */
function guestFrame(frameBytes: number): Uint8Array {
  const f = new Uint8Array(frameBytes);
  f.set(MAC_B, 0);
  f.set(MAC_A, 6);
  f[12] = 0x08;
  f[13] = 0x00;
  for (let i = 14; i < frameBytes; i++) f[i] = (i * 13 + 5) & 0xff;
  return f;
}

const worlds = new Map<string, { a: Host; b: Host }>();

/**
 * Hosts A and B with A's table knowing B's guest behind the peer (learned, as from B's traffic),
 * one pair per (algorithm, crypto, first sequence number), shared by the tasks that use it: a
 * task takes its buffers from the pool before each iteration and returns them after.
 */
function world(alg: AeadAlgorithm, crypto: CryptoKind, firstSeq = 1): { a: Host; b: Host } {
  const key = `${alg} ${crypto} ${firstSeq}`;
  let w = worlds.get(key);
  if (w === undefined) {
    const a = host('a', alg, crypto, firstSeq);
    const b = host('b', alg, crypto, firstSeq);
    a.tables.fdb.learn(0, Uint8Array.from(MAC_B), 0, FDB_REMOTE, 0, T0_MS);
    w = { a, b };
    worlds.set(key, w);
  }
  return w;
}

function releaseAll(pool: PacketPool, out: Actions): void {
  for (let k = 0; k < out.releaseCount; k++) pool.put(out.release[k]!);
}

/** The ESP packets A's encap makes of `count` frames (sequence numbers continue A's SA). */
function sealedPackets(a: Host, frameBytes: number, count: number): Uint8Array[] {
  const f = guestFrame(frameBytes);
  const bufs: PacketBuf[] = [];
  for (let i = 0; i < count; i++) {
    const b = a.pool.get()!;
    b.load(f);
    bufs.push(b);
  }
  const out = new Actions();
  a.encap.run(bufs, new Int32Array(count).fill(a.domainId), count, T0_MS, out);
  if (out.sendCount !== count) throw new Error(`setup: encap sent ${out.sendCount} of ${count}`);
  const packets = Array.from({ length: count }, (_, k) => out.sendBufs[k]!.view().slice());
  releaseAll(a.pool, out);
  return packets;
}

/** A timed pipeline task: `load` fills the buffers (untimed), `run` is timed. */
interface PipelineTask {
  load(): void;
  run(): void;
}

function encapTask(alg: AeadAlgorithm, crypto: CryptoKind, frameBytes: number, batch: number, firstSeq = 1): PipelineTask {
  const { a } = world(alg, crypto, firstSeq);
  const f = guestFrame(frameBytes);
  const bufs: PacketBuf[] = new Array<PacketBuf>(batch);
  const ids = new Int32Array(batch).fill(a.domainId);
  const out = new Actions();
  const pool = a.pool;
  return {
    load(): void {
      for (let i = 0; i < batch; i++) {
        const b = pool.get()!;
        b.load(f);
        bufs[i] = b;
      }
    },
    run(): void {
      a.encap.run(bufs, ids, batch, T0_MS, out);
      if (out.sendCount !== batch) throw new Error(`encap sent ${out.sendCount} of ${batch}`);
      releaseAll(pool, out);
    },
  };
}

function decapTask(alg: AeadAlgorithm, crypto: CryptoKind, frameBytes: number, batch: number, firstSeq = 1): PipelineTask {
  const { a, b } = world(alg, crypto, firstSeq);
  const packets = sealedPackets(a, frameBytes, batch);
  const bufs: PacketBuf[] = new Array<PacketBuf>(batch);
  const kinds = new Uint8Array(batch).fill(DecapInput.udpPayload);
  const out = new Actions();
  const pool = b.pool;
  const replay = b.inSa.replay;
  return {
    load(): void {
      for (let i = 0; i < batch; i++) {
        const buf = pool.get()!;
        buf.load(packets[i]!);
        bufs[i] = buf;
      }
      replay.reset();
    },
    run(): void {
      b.decap.run(bufs, kinds, batch, T0_MS, out);
      if (out.deliverCount !== batch) throw new Error(`decap delivered ${out.deliverCount} of ${batch}`);
      releaseAll(pool, out);
    },
  };
}

/** The ESP stage alone (espSealBatch / espOpenBatch) with a no-op AEAD, over one batch. */
function espStageTask(direction: Direction, alg: AeadAlgorithm, frameBytes: number): PipelineTask {
  const { a, b } = world(alg, 'noop');
  const packets = sealedPackets(a, frameBytes, BATCH_PACKETS);
  const bufs: PacketBuf[] = new Array<PacketBuf>(BATCH_PACKETS);
  const batch = new AeadBatch(BATCH_PACKETS);
  const results = new Uint8Array(BATCH_PACKETS);
  const pool = direction === 'encap' ? a.pool : b.pool;
  // For seal: the plaintext GRE packet inside each ESP packet (no-op "cipher": still in clear).
  const payloads = packets.map((p) => {
    const padBytes = p[p.length - ICV_BYTES - 2]!;
    return p.subarray(ESP_PREFIX_BYTES, p.length - ICV_BYTES - 2 - padBytes);
  });
  return {
    load(): void {
      for (let i = 0; i < BATCH_PACKETS; i++) {
        const buf = pool.get()!;
        buf.load(direction === 'encap' ? payloads[i]! : packets[i]!);
        bufs[i] = buf;
      }
      b.inSa.replay.reset();
    },
    run(): void {
      const n =
        direction === 'encap'
          ? espSealBatch(a.outSa, bufs, BATCH_PACKETS, batch, results, T0_MS)
          : espOpenBatch(b.inSa, bufs, BATCH_PACKETS, batch, results, T0_MS);
      if (n !== BATCH_PACKETS) throw new Error(`esp stage: ${n} of ${BATCH_PACKETS}`);
      for (let i = 0; i < BATCH_PACKETS; i++) pool.put(bufs[i]!);
    },
  };
}

/** The AEAD batch call alone over 64 packets laid out in a pool slab as the pipeline lays them out. */
function aeadTask(direction: Direction, alg: AeadAlgorithm, frameBytes: number, empty = false): PipelineTask {
  const { a, b } = world(alg, 'native');
  const packets = sealedPackets(a, frameBytes, BATCH_PACKETS);
  const aead = direction === 'encap' ? a.outSa.aead : b.inSa.aead;
  const pool = b.pool;
  const batch = new AeadBatch(BATCH_PACKETS);
  batch.reset(pool.slab);
  const bufs: PacketBuf[] = [];
  for (let i = 0; i < BATCH_PACKETS; i++) {
    const buf = pool.get()!;
    buf.load(packets[i]!);
    bufs.push(buf);
    const p = packets[i]!;
    const at = buf.slabOffset + buf.start;
    const e = batch.push(at + 8, at + ESP_PREFIX_BYTES, p.length - ESP_PREFIX_BYTES - ICV_BYTES, 12);
    // ESN AAD: SPI ‖ seq_hi (0 below 2^32) ‖ seq_lo.
    const aad = batch.aad;
    aad.set(p.subarray(0, 4), e * AEAD_BATCH_AAD_STRIDE);
    aad.set(p.subarray(4, 8), e * AEAD_BATCH_AAD_STRIDE + 8);
  }
  if (empty) batch.count = 0;
  return {
    load(): void {
      if (direction === 'decap') for (let i = 0; i < BATCH_PACKETS; i++) bufs[i]!.load(packets[i]!);
    },
    run(): void {
      if (direction === 'encap') aead.sealBatch(batch);
      else if (aead.openBatch(batch) !== batch.count) throw new Error('openBatch: not authentic');
    },
  };
}

/** Median time in µs of one task iteration. */
function medianUs(bench: Bench, i: number, what: string): number {
  const r = bench.tasks[i]!.result;
  if (!('latency' in r)) throw new Error(`${what}: ${r.state}`);
  return r.latency.p50 * 1000;
}

/** A task's timing: the lowest round median, the median of the round medians, their spread. */
interface Timing {
  us: number;
  medianUs: number;
  spreadPercent: number;
}

/** A task to time, and where its Timing goes once every round has run. */
interface Scheduled {
  name: string;
  task: PipelineTask;
  done(t: Timing): void;
}

/**
 * Times every task in `rounds` rounds of timeMs/rounds each, all tasks taking turns in each
 * round, so that each task is sampled across the whole run: the machine's slow phases (other
 * work on this or a sibling core, lasting seconds) hit one round of each task rather than all
 * rounds of some. A task's time is the lowest of its round medians (other work only ever adds
 * time); its spread is (max − min) / min of the round medians.
 */
function runAll(tasks: Scheduled[], args: Args): void {
  const perRound: number[][] = tasks.map(() => []);
  for (let round = 0; round < args.rounds; round++) {
    const bench = new Bench({ time: args.timeMs / args.rounds, warmupTime: round === 0 ? 100 : 10, throws: true });
    for (const { name, task } of tasks) bench.add(name, () => task.run(), { beforeEach: () => task.load() });
    bench.runSync();
    tasks.forEach((t, i) => perRound[i]!.push(medianUs(bench, i, t.name)));
  }
  tasks.forEach((t, i) => {
    const xs = [...perRound[i]!].sort((x, y) => x - y);
    const m = xs[0]!;
    t.done({ us: m, medianUs: xs[xs.length >> 1]!, spreadPercent: ((xs[xs.length - 1]! - m) / m) * 100 });
  });
}

/** Schedules the table's rows; they are filled in once runAll has run. */
function scheduleRows(args: Args, tasks: Scheduled[]): Row[] {
  const rows: Row[] = [];
  const variants: { backend: AeadBackendName; batch: number }[] = [{ backend: 'native', batch: BATCH_PACKETS }];
  if (args.contrast) variants.push({ backend: 'native', batch: 1 }, { backend: 'node', batch: BATCH_PACKETS });
  for (const algorithm of args.algorithms) {
    for (const direction of ['encap', 'decap'] as const) {
      for (const v of variants) {
        for (const frameBytes of FRAME_SIZES_BYTES) {
          const row: Row = {
            direction,
            algorithm,
            backend: v.backend,
            batch: v.batch,
            frameBytes,
            packetsPerSec: 0,
            gbitPerSec: 0,
            usPerPacket: 0,
            medianUsPerPacket: 0,
            spreadPercent: 0,
          };
          rows.push(row);
          tasks.push({
            name: `${direction} ${algorithm} ${v.backend} batch${v.batch} ${frameBytes}`,
            task: (direction === 'encap' ? encapTask : decapTask)(algorithm, v.backend, frameBytes, v.batch),
            done(t: Timing): void {
              row.usPerPacket = t.us / v.batch;
              row.medianUsPerPacket = t.medianUs / v.batch;
              row.packetsPerSec = 1e6 / row.usPerPacket;
              row.gbitPerSec = (row.packetsPerSec * frameBytes * 8) / 1e9;
              row.spreadPercent = t.spreadPercent;
            },
          });
        }
      }
    }
  }
  return rows;
}

/** Schedules the breakdown's parts; each Breakdown is filled in once runAll has run. */
function scheduleBreakdown(args: Args, tasks: Scheduled[]): Breakdown[] {
  const out: Breakdown[] = [];
  const n = BATCH_PACKETS;
  const fb = BREAKDOWN_FRAME_BYTES;
  for (const algorithm of args.algorithms) {
    for (const direction of ['encap', 'decap'] as const) {
      const make = direction === 'encap' ? encapTask : decapTask;
      const b: Breakdown = {
        direction,
        algorithm,
        frameBytes: fb,
        pipelineUs: 0,
        pipelineNoCryptoUs: 0,
        espStageNoCipherUs: 0,
        aeadBatchUs: 0,
        napiCallUs: 0,
        restUs: 0,
      };
      out.push(b);
      const parts: [keyof Breakdown, PipelineTask][] = [
        ['pipelineUs', make(algorithm, 'native', fb, n)],
        ['pipelineNoCryptoUs', make(algorithm, 'noop', fb, n)],
        ['espStageNoCipherUs', espStageTask(direction, algorithm, fb)],
        ['aeadBatchUs', aeadTask(direction, algorithm, fb)],
        ['napiCallUs', aeadTask(direction, algorithm, fb, true)],
      ];
      for (const [field, task] of parts) {
        tasks.push({
          name: `breakdown ${direction} ${algorithm} ${field}`,
          task,
          done(t: Timing): void {
            (b as unknown as Record<string, number>)[field] = t.us / n;
            b.restUs = b.pipelineUs - b.pipelineNoCryptoUs - b.aeadBatchUs;
          },
        });
      }
    }
  }
  return out;
}

/** A full GC, so that the allocation check starts with an empty young generation. */
function collectGarbage(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

/** Sum of the sampled allocation sizes of a sampling heap profile (≈ octets allocated while sampling). */
function sampledBytes(node: { selfSize: number; children: unknown[] }): number {
  let sum = node.selfSize;
  for (const c of node.children) sum += sampledBytes(c as { selfSize: number; children: unknown[] });
  return sum;
}

/**
 * Runs `packets` packets through each pipeline in a plain loop after a full GC: counts V8
 * garbage collections, the heap growth, and the octets allocated (V8's sampling heap profiler,
 * counting objects that were collected again too).
 */
async function gcCheck(args: Args): Promise<GcCheck[]> {
  const out: GcCheck[] = [];
  if (args.gcPackets === 0) return out;
  const algorithm = args.algorithms[0]!;
  const session = new Session();
  session.connect();
  for (const [direction, firstSeq] of [
    ['encap', 1],
    ['decap', 1],
    ['encap', HIGH_SEQ],
    ['decap', HIGH_SEQ],
  ] as const) {
    const task = (direction === 'encap' ? encapTask : decapTask)(algorithm, 'native', BREAKDOWN_FRAME_BYTES, BATCH_PACKETS, firstSeq);
    const rounds = Math.ceil(args.gcPackets / BATCH_PACKETS);
    for (let i = 0; i < 2000; i++) {
      task.load();
      task.run();
    }
    let gcCount = 0;
    let gcMs = 0;
    // Only collections that start inside the loop count (not the full GCs below, nor any the
    // profiler's start/stop cause).
    let loopFromMs = Infinity;
    let loopToMs = -Infinity;
    const obs = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        if (e.startTime < loopFromMs || e.startTime > loopToMs) continue;
        gcCount++;
        gcMs += e.duration;
      }
    });
    obs.observe({ entryTypes: ['gc'] });
    collectGarbage();
    await new Promise((r) => setTimeout(r, 10));
    collectGarbage();
    await session.post('HeapProfiler.startSampling', {
      samplingInterval: 64,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: true,
    } as object);
    const heapBefore = process.memoryUsage().heapUsed;
    loopFromMs = performance.now();
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < rounds; i++) {
      task.load();
      task.run();
    }
    const t1 = process.hrtime.bigint();
    loopToMs = performance.now();
    const heapAfter = process.memoryUsage().heapUsed;
    const { profile } = await session.post('HeapProfiler.stopSampling');
    await new Promise((r) => setTimeout(r, 50)); // let the observer see the last entries
    obs.disconnect();
    const packets = rounds * BATCH_PACKETS;
    out.push({
      direction,
      algorithm,
      frameBytes: BREAKDOWN_FRAME_BYTES,
      firstSeq,
      packets,
      gcCount,
      gcMs,
      heapGrowthBytes: heapAfter - heapBefore,
      allocatedBytesPerPacket: sampledBytes(profile.head) / packets,
      usPerPacket: Number(t1 - t0) / 1000 / packets,
    });
  }
  session.disconnect();
  return out;
}

function fmt(n: number, digits = 0): string {
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

function printTable(head: string[], body: string[][], leftCols: number): void {
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i < leftCols ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  console.log(line(head));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const b of body) console.log(line(b));
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const why = backendUnavailableReason('native');
  if (why !== null) throw new Error(`the native crypto backend is needed: ${why} (build it with npm run build:native)`);
  const load1 = loadavg()[0]!;
  const tasks: Scheduled[] = [];
  const rows = scheduleRows(args, tasks);
  const breakdown = scheduleBreakdown(args, tasks);
  runAll(tasks, args);
  const gc = await gcCheck(args);
  const env = {
    node: process.version,
    openssl: process.versions.openssl,
    cpu: cpus()[0]?.model ?? 'unknown',
    cpus: cpus().length,
    loadAvgBefore: load1,
    loadAvgAfter: loadavg()[0]!,
    taskTimeMs: args.timeMs,
    rounds: args.rounds,
    note: 'Gbit/s = guest frame octets × 8; time = lowest round median; pipeline = run() + release to the pool, buffers loaded untimed',
  };
  if (args.json) {
    console.log(JSON.stringify({ env, rows, breakdown, gc }));
    return;
  }
  console.log(`sectunnel pipeline bench — Node ${env.node}, OpenSSL ${env.openssl}, ${env.cpu} ×${env.cpus}, load ${fmt(load1, 1)}→${fmt(env.loadAvgAfter, 1)}`);
  console.log(`${env.note}\n`);
  printTable(
    ['direction', 'algorithm', 'backend', 'batch', 'frame B', 'packets/s', 'Gbit/s', 'µs/packet', 'spread %'],
    rows.map((r) => [
      r.direction,
      r.algorithm,
      r.backend,
      String(r.batch),
      String(r.frameBytes),
      fmt(r.packetsPerSec),
      fmt(r.gbitPerSec, 2),
      fmt(r.usPerPacket, 3),
      fmt(r.spreadPercent, 0),
    ]),
    3,
  );
  console.log(`\nper-packet cost at ${BREAKDOWN_FRAME_BYTES} octets, batch ${BATCH_PACKETS}, native (µs/packet):`);
  printTable(
    ['direction', 'algorithm', 'pipeline', 'without crypto', '(of which ESP stage)', 'AEAD batch call', '(of which N-API call)', 'rest'],
    breakdown.map((b) => [
      b.direction,
      b.algorithm,
      fmt(b.pipelineUs, 3),
      fmt(b.pipelineNoCryptoUs, 3),
      fmt(b.espStageNoCipherUs, 3),
      fmt(b.aeadBatchUs, 3),
      fmt(b.napiCallUs, 3),
      fmt(b.restUs, 3),
    ]),
    2,
  );
  if (gc.length > 0) {
    console.log(`\nallocation check (${BREAKDOWN_FRAME_BYTES} octets, batch ${BATCH_PACKETS}, plain loop incl. buffer loads):`);
    printTable(
      ['direction', 'algorithm', 'sequence numbers', 'packets', 'GCs', 'GC ms', 'heap growth B', 'allocated B/packet', 'µs/packet'],
      gc.map((g) => [
        g.direction,
        g.algorithm,
        g.firstSeq === 1 ? 'from 1' : 'from 2^31+1',
        fmt(g.packets),
        String(g.gcCount),
        fmt(g.gcMs, 1),
        fmt(g.heapGrowthBytes),
        fmt(g.allocatedBytesPerPacket, 3),
        fmt(g.usPerPacket, 3),
      ]),
      3,
    );
  }
}

main().catch((e: unknown) => {
  console.error(`pipeline.bench: ${(e as Error).message}`);
  process.exitCode = 2;
});
