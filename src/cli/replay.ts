/**
 * `sectunnel replay`: the pipeline offline over pcap files (DESIGN.md "pcap replay").
 *   decap: outer packets (Ethernet, raw IP or Linux SLL; IPv4/IPv6; raw ESP or UDP 4500;
 *          fragments reassembled) → the receive pipeline → delivered inner frames
 *   encap: guest frames (label from their 802.1Q tag, or --label for untagged ones) →
 *          the send pipeline with the outbound SA of the label → outer packets
 * Writes OUT.pcap (Ethernet) and one JSON verdict line per input packet.
 * Exit status: 0 when the run completed, whatever the verdicts; 2 for bad arguments or config.
 */
import { createWriteStream } from 'node:fs';
import { parseArgs } from 'node:util';
import { PacketPool } from '../buf/pool.js';
import { Actions, VERDICT_PENDING } from '../core/actions.js';
import { DecapInput, DecapPipeline } from '../core/decap.js';
import { EncapPipeline } from '../core/encap.js';
import { prependOuter } from '../core/outer.js';
import { isDiscard, OK, REASON_NAMES } from '../core/reasons.js';
import { loadReplayConfig } from '../control/replay-config.js';
import { buildReplayTables } from '../control/replay-tables.js';
import { CaptureFileError, PcapFileWriter, readCaptureFile } from '../io/pcap-file.js';
import { LINKTYPE_ETHERNET, LINKTYPE_IPV4, LINKTYPE_LINUX_SLL, LINKTYPE_RAW, type PcapRecord } from '../wire/pcap.js';
import { ETH_HEADER_BYTES, ETHERTYPE_VLAN } from '../wire/constants.js';
import { fillIpv4Checksum } from '../wire/ipv4.js';
import { CliError, EXIT_FAILURE, EXIT_OK } from './errors.js';
import { registerSubcommand } from './main.js';

const LINKTYPE_IPV6 = 229;
const LINUX_SLL_HEADER_BYTES = 16;
/** Packets handed to a pipeline run at once. */
const REPLAY_BATCH = 64;

const HELP = `usage: sectunnel replay --config REPLAY.json --in IN.pcap --verdicts OUT.jsonl
                        [--out OUT.pcap] [--direction decap|encap] [--label NAME] [--keep-tag]

Runs sectunnel's packet pipeline offline over a capture file (pcap or pcapng).

  --config FILE     REPLAY.json: local addresses, labels, static SAs, optional domains
                    and policy (docs/config.md, "REPLAY.json")
  --in FILE         input capture. decap: outer packets (Ethernet, raw IP or Linux SLL
                    link type; IPv4/IPv6; raw ESP or UDP 4500; fragments reassembled).
                    encap: guest frames; a frame's 802.1Q tag names its label (as on a
                    trunk port), an untagged frame takes --label
  --out FILE        output pcap (Ethernet): decap writes delivered inner frames, encap
                    the outer packets (from the config's local address to the SA's peer)
  --verdicts FILE   one JSON line per input packet:
                    {"frame", "verdict": accept|drop|discard|pending, "reason", "spi",
                     "seq", "delivered": [hex frames written to guests / OUT.pcap]}
  --direction D     decap (default) or encap
  --label NAME      encap: the label of untagged input frames
  --keep-tag        decap: keep the 802.1Q tag on delivered frames (as inside GRE)

Exit status: 0 when the run completed, whatever the verdicts; 2 for bad arguments or
config; 1 when a file cannot be read or written.`;

interface Verdict {
  frame: number;
  verdict: 'accept' | 'drop' | 'discard' | 'pending';
  reason: string | null;
  spi: string | null;
  seq: number | null;
  delivered: string[];
}

function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}

function verdictOf(code: number): Pick<Verdict, 'verdict' | 'reason'> {
  if (code === OK) return { verdict: 'accept', reason: null };
  if (code === VERDICT_PENDING) return { verdict: 'pending', reason: null };
  return { verdict: isDiscard(code) ? 'discard' : 'drop', reason: REASON_NAMES[code] ?? `code_${code}` };
}

/** The decap input kind and start offset of a record, or null for an unusable link type. */
function decapInput(r: PcapRecord): { kind: number; skip: number } | null {
  switch (r.linkType) {
    case LINKTYPE_ETHERNET:
      return { kind: DecapInput.ethernet, skip: 0 };
    case LINKTYPE_RAW:
    case LINKTYPE_IPV4:
    case LINKTYPE_IPV6:
      return { kind: DecapInput.ip, skip: 0 };
    case LINKTYPE_LINUX_SLL:
      return { kind: DecapInput.ip, skip: LINUX_SLL_HEADER_BYTES };
    default:
      return null;
  }
}

async function run(argv: string[]): Promise<number> {
  let args;
  try {
    args = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        config: { type: 'string' },
        in: { type: 'string' },
        out: { type: 'string' },
        verdicts: { type: 'string' },
        direction: { type: 'string', default: 'decap' },
        label: { type: 'string' },
        'keep-tag': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }).values;
  } catch (e) {
    throw new CliError(`${(e as Error).message}\n\n${HELP}`);
  }
  if (args.help) {
    process.stdout.write(HELP + '\n');
    return EXIT_OK;
  }
  for (const need of ['config', 'in', 'verdicts'] as const) {
    if (args[need] === undefined) throw new CliError(`--${need} is required\n\n${HELP}`);
  }
  const direction = args.direction;
  if (direction !== 'decap' && direction !== 'encap') {
    throw new CliError(`--direction: "${direction}" is not valid: expected decap or encap`);
  }
  if (direction === 'decap' && args.label !== undefined) throw new CliError('--label applies only to --direction encap');
  if (direction === 'encap' && args['keep-tag']) throw new CliError('--keep-tag applies only to --direction decap');

  const configPath = args.config!;
  const cfg = await loadReplayConfig(configPath);
  const nowMs = Date.now();
  const rt = buildReplayTables(cfg, configPath, nowMs);
  let untaggedLabel = -1;
  if (args.label !== undefined) {
    untaggedLabel = rt.tables.labels.idOf(args.label);
    if (untaggedLabel < 0) {
      throw new CliError(`--label: "${args.label}" is not a label of ${configPath}: expected one of ${rt.tables.labels.labels.map((l) => l.name).join(', ')}`);
    }
  }

  let capture;
  try {
    capture = await readCaptureFile(args.in!);
  } catch (e) {
    if (e instanceof CaptureFileError) {
      process.stderr.write(`sectunnel replay: ${e.message}\n`);
      return EXIT_FAILURE;
    }
    throw e;
  }

  const pool = new PacketPool({ packets: REPLAY_BATCH * 8 });
  const writer = args.out !== undefined ? PcapFileWriter.open(args.out, LINKTYPE_ETHERNET) : null;
  const verdicts = createWriteStream(args.verdicts!);
  const out = new Actions();
  const decap = new DecapPipeline(rt.tables, { keepTag: args['keep-tag'], deliverToLabel: cfg.domains.length === 0, maxBatch: REPLAY_BATCH });
  const encap = new EncapPipeline(rt.tables, pool, REPLAY_BATCH);
  const records = capture.records;
  let ipId = 1;

  for (let first = 0; first < records.length; first += REPLAY_BATCH) {
    const n = Math.min(REPLAY_BATCH, records.length - first);
    const bufs = [];
    const kinds: number[] = [];
    const labelIds: number[] = [];
    const early: (number | null)[] = [];
    for (let k = 0; k < n; k++) {
      const r = records[first + k]!;
      const buf = pool.get()!;
      if (direction === 'decap') {
        const inp = decapInput(r);
        const data = inp === null ? r.data : r.data.subarray(Math.min(inp.skip, r.data.length));
        early.push(inp === null ? -1 : null);
        kinds.push(inp?.kind ?? DecapInput.ip);
        if (!buf.load(data)) early[k] = -2;
      } else {
        early.push(r.linkType === LINKTYPE_ETHERNET ? null : -1);
        if (!buf.load(r.data)) early[k] = -2;
        labelIds.push(trunkLabel(r.data, untaggedLabel, rt.labelOfVlan));
      }
      bufs.push(buf);
    }
    if (direction === 'decap') decap.run(bufs, kinds, n, nowMs, out);
    else encap.runTrunk(bufs, labelIds, rt.peerOfLabel, n, nowMs, out);

    const lines: Verdict[] = [];
    for (let k = 0; k < n; k++) {
      let code = out.verdict[k]!;
      if (early[k] === -1) code = REASON_NAMES.indexOf('not_esp');
      if (early[k] === -2) code = REASON_NAMES.indexOf('truncated');
      lines.push({
        frame: first + k + 1,
        ...verdictOf(code),
        spi: out.spi[k]! >= 0 ? `0x${out.spi[k]!.toString(16).padStart(8, '0')}` : null,
        seq: out.seq[k]! >= 0 ? out.seq[k]! : null,
        delivered: [],
      });
    }
    // Outputs in input order (the pipeline groups sends per SA for the batched seal).
    const outputs: Uint8Array[][] = Array.from({ length: n }, () => []);
    if (direction === 'decap') {
      for (let d = 0; d < out.deliverCount; d++) {
        const k = out.deliverFrom[d]!;
        if (early[k] === null) outputs[k]!.push(out.deliverBufs[d]!.view());
      }
    } else {
      for (let s = 0; s < out.sendCount; s++) {
        const k = out.sendFrom[s]!;
        if (early[k] !== null) continue;
        const buf = out.sendBufs[s]!;
        if (prependOuter(buf, rt.outer[out.sendPeer[s]!]!, 0) !== OK) {
          lines[k] = { ...lines[k]!, ...verdictOf(REASON_NAMES.indexOf('buffer_no_room')) };
          continue;
        }
        outputs[k]!.push(buf.view());
      }
    }
    for (let k = 0; k < n; k++) {
      for (const frame of outputs[k]!) {
        if (direction === 'encap') setIpv4Id(frame, ipId++);
        lines[k]!.delivered.push(hex(frame));
        writer?.write(frame, recordNs(records[first + k]!));
      }
    }
    for (const l of lines) verdicts.write(JSON.stringify(l) + '\n');
    for (let r = 0; r < out.releaseCount; r++) pool.put(out.release[r]!);
  }
  writer?.close();
  await new Promise<void>((resolve, reject) => verdicts.end((e?: Error | null) => (e ? reject(e) : resolve())));
  for (const sa of rt.sas) sa.destroy();
  return EXIT_OK;
}

/** The label of a trunk frame: its 802.1Q VID's label, or `untagged` for an untagged frame. */
function trunkLabel(frame: Uint8Array, untagged: number, labelOfVlan: Int32Array): number {
  if (frame.length < ETH_HEADER_BYTES) return -1;
  const type = (frame[12]! << 8) | frame[13]!;
  if (type !== ETHERTYPE_VLAN) return untagged;
  if (frame.length < ETH_HEADER_BYTES + 4) return -1;
  const vid = ((frame[14]! << 8) | frame[15]!) & 0xfff;
  const id = labelOfVlan[vid]!;
  return id >= 0 ? id : -1;
}

/** Sets the identification of an outer IPv4 header (Ethernet at 0) and fixes its checksum. */
function setIpv4Id(frame: Uint8Array, id: number): void {
  if (frame.length < ETH_HEADER_BYTES + 20 || frame[12] !== 0x08 || frame[13] !== 0x00) return;
  frame[ETH_HEADER_BYTES + 4] = (id >>> 8) & 0xff;
  frame[ETH_HEADER_BYTES + 5] = id & 0xff;
  fillIpv4Checksum(frame, ETH_HEADER_BYTES);
}

function recordNs(r: PcapRecord): bigint {
  return BigInt(r.tsSec) * 1_000_000_000n + BigInt(r.tsNsec);
}

registerSubcommand('replay', 'run the pipeline offline over pcap files (conformance interface)', run);
