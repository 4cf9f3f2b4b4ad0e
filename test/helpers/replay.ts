// Runs `sectunnel replay` in-process on temp files and reads its outputs back.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from '../../src/cli/main.js';
import { encodePcap, LINKTYPE_ETHERNET, parseCapture } from '../../src/wire/pcap.js';

export interface ReplayVerdict {
  frame: number;
  verdict: 'accept' | 'drop' | 'discard' | 'pending';
  reason: string | null;
  spi: string | null;
  seq: number | null;
  delivered: string[];
}

export interface ReplayRun {
  status: number;
  verdicts: ReplayVerdict[];
  /** Frames of OUT.pcap. */
  out: Uint8Array[];
  /** The folder of the run's files; removed before replay() returns unless ST_KEEP_REPLAY_FILES=1. */
  dir: string;
}

/** Writes config and input frames, runs replay with `extra` arguments, returns verdicts and OUT.pcap frames. */
export async function replay(config: unknown, frames: Uint8Array[], extra: string[], linkType = LINKTYPE_ETHERNET): Promise<ReplayRun> {
  const dir = mkdtempSync(join(tmpdir(), 'st-replay-'));
  const cfg = join(dir, 'replay.json');
  writeFileSync(cfg, JSON.stringify(config, null, 1));
  const inp = join(dir, 'in.pcap');
  writeFileSync(inp, encodePcap(linkType as 1, frames.map((data, i) => ({ data, tsSec: 1_700_000_000 + i, tsUsec: 0 }))));
  const out = join(dir, 'out.pcap');
  const verdicts = join(dir, 'verdicts.jsonl');
  try {
    const status = await main(['replay', '--config', cfg, '--in', inp, '--out', out, '--verdicts', verdicts, ...extra]);
    if (status !== 0) return { status, verdicts: [], out: [], dir };
    const lines = readFileSync(verdicts, 'utf8').trim().split('\n').filter((l) => l.length > 0);
    const parsed = parseCapture(new Uint8Array(readFileSync(out)));
    return { status, verdicts: lines.map((l) => JSON.parse(l) as ReplayVerdict), out: parsed.records.map((r) => r.data.slice()), dir };
  } finally {
    if (process.env.ST_KEEP_REPLAY_FILES !== '1') rmSync(dir, { recursive: true, force: true });
  }
}
