// The anti-replay window (RFC 4303 §3.4.3, RFC 6479 bitmap) and ESN inference (App. A2.1).
// Table tests in the manner of wireguard-go's device/replay_test.go: every step is numbered,
// and a failure names the step.
import { describe, expect, it } from 'vitest';
import { Reason } from '../../src/core/reasons.js';
import {
  REPLAY_WINDOW_DEFAULT_PACKETS,
  ReplayWindow,
  checkReplayWindowPackets,
} from '../../src/core/replay-window.js';

const OK = 0;
const DUP = Reason.replay_duplicate;
const OLD = Reason.replay_too_old;
const NAME: Record<number, string> = { [OK]: 'ok', [DUP]: 'replay_duplicate', [OLD]: 'replay_too_old' };
const TWO_32 = 2 ** 32;

/**
 * One step: the sequence number, the verdict check() must give, and whether the ICV then
 * verifies ('forged': it does not, so nothing is committed). An authentic packet that passes
 * check() is committed, as the ESP stage does.
 */
type Step = [seq: number, want: number, icv?: 'forged'];

function run(w: ReplayWindow, steps: Step[]): void {
  steps.forEach(([seq, want, icv], i) => {
    const got = w.check(seq);
    expect(NAME[got] ?? got, `step ${i + 1}: check(${seq}) with top ${w.top}`).toBe(NAME[want]);
    if (got === OK && icv !== 'forged') w.commit(seq);
  });
}

/** The table, for a window of W packets. */
function table(W: number): Step[] {
  return [
    /*  1 */ [1, OK],
    /*  2 */ [1, DUP],
    /*  3 */ [2, OK],
    /*  4 */ [4, OK], // a gap at 3
    /*  5 */ [3, OK], // fills the gap
    /*  6 */ [3, DUP],
    /*  7 */ [W, OK], // the window now covers 1..W
    /*  8 */ [1, DUP], // exactly W − 1 behind, seen
    /*  9 */ [5, OK], // inside, never seen
    /* 10 */ [W + 1, OK], // top W + 1: seq 1 is exactly W behind
    /* 11 */ [1, OLD],
    /* 12 */ [2, DUP], // exactly W − 1 behind, seen
    /* 13 */ [6, OK], // W − 5 behind, never seen
    /* 14 */ [6, DUP],
    /* 15 */ [W - 1, OK],
    /* 16 */ [W - 1, DUP],
    /* 17 */ [10 * W, OK], // a big jump: the whole bitmap is stale
    /* 18 */ [W + 1, OLD],
    /* 19 */ [9 * W, OLD], // exactly W behind
    /* 20 */ [9 * W + 1, OK], // exactly W − 1 behind, never seen (its word was cleared)
    /* 21 */ [9 * W + 1, DUP],
    /* 22 */ [10 * W, DUP],
    /* 23 */ [10 * W - 1, OK],
    /* 24 */ [10 * W + 5, OK, 'forged'], // passes the quick check, fails the ICV: no commit
    /* 25 */ [9 * W + 2, OK], // still W − 2 behind: the forged number did not move the window
    /* 26 */ [10 * W + 5, OK], // the authentic packet with that number still gets in
    /* 27 */ [10 * W + 5, DUP],
    /* 28 */ [10 * W + 4, OK], // just behind the top
    /* 29 */ [10 * W + 3, OK],
    /* 30 */ [10 * W + 6, OK], // in order again
    /* 31 */ [10 * W + 7, OK],
    /* 32 */ [10 * W + 7, DUP],
    /* 33 */ [11 * W + 6, OK], // a jump of exactly W
    /* 34 */ [10 * W + 6, OLD], // exactly W behind
    /* 35 */ [10 * W + 7, DUP], // W − 1 behind, seen before the jump: the bit survived
    /* 36 */ [10 * W + 8, OK],
    /* 37 */ [11 * W + 6 + 31, OK], // to the end of a 32-bit word …
    /* 38 */ [11 * W + 6 + 32, OK], // … and into the next one
    /* 39 */ [11 * W + 6 + 33, OK],
    /* 40 */ [11 * W + 6 + 32, DUP],
    /* 41 */ [11 * W + 6 + 31, DUP],
    /* 42 */ [2 ** 53 - 1, OK], // the largest number the number form takes exactly
    /* 43 */ [2 ** 53 - 2, OK],
    /* 44 */ [2 ** 53 - 1, DUP],
    /* 45 */ [2 ** 53 - W, OK], // exactly W − 1 behind
    /* 46 */ [2 ** 53 - 1 - W, OLD], // exactly W behind
  ];
}

describe('ReplayWindow table', () => {
  for (const W of [64, 4096, 65536]) {
    it(`window of ${W} packets`, () => {
      const w = new ReplayWindow(W);
      expect(w.windowPackets).toBe(W);
      run(w, table(W));
    });
  }

  it('defaults to 4096 packets', () => {
    expect(new ReplayWindow().windowPackets).toBe(REPLAY_WINDOW_DEFAULT_PACKETS);
    expect(REPLAY_WINDOW_DEFAULT_PACKETS).toBe(4096);
  });

  it('accepts sizes that are multiples of 32 but not powers of two', () => {
    const w = new ReplayWindow(96);
    run(w, [
      /* 1 */ [200, OK],
      /* 2 */ [105, OK], // 95 behind
      /* 3 */ [104, OLD], // 96 behind
      /* 4 */ [105, DUP],
    ]);
  });

  it('refuses sizes outside 64..65536 or not a multiple of 32, naming the value', () => {
    for (const bad of [0, 32, 63, 65, 100, 4097, 65568, 131072, 64.5, Number.NaN]) {
      expect(() => new ReplayWindow(bad), String(bad)).toThrow(RangeError);
      expect(() => checkReplayWindowPackets(bad), String(bad)).toThrow(String(bad));
    }
    for (const good of [64, 96, 4096, 65536]) expect(checkReplayWindowPackets(good)).toBe(good);
  });

  it('check() changes nothing', () => {
    const w = new ReplayWindow(64);
    w.commit(100);
    for (let i = 0; i < 3; i++) {
      expect(w.check(1000)).toBe(OK);
      expect(w.check(50)).toBe(OK);
      expect(w.check(100)).toBe(DUP);
    }
    expect(w.top).toBe(100);
  });

  it('commit() of a number already too old is ignored', () => {
    const w = new ReplayWindow(64);
    w.commit(1000);
    // Older than the window; some of them share bitmap positions with numbers inside it.
    for (let s = 1000 - 64 - 512; s <= 1000 - 64; s++) w.commit(s);
    expect(w.top).toBe(1000);
    for (let s = 1000 - 63; s < 1000; s++) expect(w.check(s), `seq ${s}`).toBe(OK);
  });

  it('runs over many ring cycles in order: everything new once, then duplicate', () => {
    const w = new ReplayWindow(64);
    for (let s = 1; s <= 10_000; s++) {
      expect(w.check(s), `seq ${s}`).toBe(OK);
      w.commit(s);
      expect(w.check(s), `seq ${s} again`).toBe(DUP);
    }
    for (let s = 10_000 - 63; s <= 10_000; s++) expect(w.check(s)).toBe(DUP);
    expect(w.check(10_000 - 64)).toBe(OLD);
  });

  it('agrees with a naive model over random reordering, jumps and forgeries', () => {
    // A seeded xorshift, so a failure reproduces.
    let x = 0x9e3779b9;
    const rnd = (n: number): number => {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      return (x >>> 0) % n;
    };
    for (const W of [64, 96, 4096]) {
      const w = new ReplayWindow(W);
      const seen = new Set<number>();
      let top = 0;
      let next = 1;
      for (let i = 0; i < 20_000; i++) {
        const r = rnd(100);
        const seq =
          r < 60 ? next++ : r < 85 ? Math.max(1, top - rnd(W + 8)) : r < 95 ? (next += rnd(3 * W)) : Math.max(1, top + 1 + rnd(2 * W));
        const want = seq > top ? OK : top - seq >= W ? OLD : seen.has(seq) ? DUP : OK;
        expect(w.check(seq), `W ${W} step ${i} seq ${seq} top ${top}`).toBe(want);
        const forged = rnd(10) === 0;
        if (want === OK && !forged) {
          w.commit(seq);
          seen.add(seq);
          if (seq > top) top = seq;
        }
      }
    }
  });
});

describe('ReplayWindow over the full 64-bit space (hi/lo form)', () => {
  it('crosses the 2^32 boundary in the number form and the hi/lo form alike', () => {
    const w = new ReplayWindow(64);
    run(w, [
      /* 1 */ [TWO_32 - 2, OK],
      /* 2 */ [TWO_32, OK], // low half 0: a new epoch, not seq 0
      /* 3 */ [TWO_32 - 1, OK],
      /* 4 */ [TWO_32 + 1, OK],
      /* 5 */ [TWO_32 - 2, DUP],
      /* 6 */ [TWO_32 + 1 - 64, OLD],
    ]);
    expect(w.topHi).toBe(1);
    expect(w.topLo).toBe(1);
    expect(w.checkHiLo(0, 0xffffffff)).toBe(DUP);
    expect(w.checkHiLo(1, 0)).toBe(DUP);
    expect(w.checkHiLo(0, 0xffffffff - 61)).toBe(OK); // 2^32 − 62: exactly W − 1 behind 2^32 + 1
    expect(w.checkHiLo(0, 0xffffffff - 62)).toBe(OLD); // exactly W behind
  });

  it('works at the very top, 2^64 − 1', () => {
    const w = new ReplayWindow(64);
    w.commitHiLo(0xffffffff, 0xfffffffe);
    expect(w.checkHiLo(0xffffffff, 0xffffffff)).toBe(OK);
    w.commitHiLo(0xffffffff, 0xffffffff);
    expect(w.checkHiLo(0xffffffff, 0xffffffff)).toBe(DUP);
    expect(w.checkHiLo(0xffffffff, 0xfffffffe)).toBe(DUP);
    expect(w.checkHiLo(0xffffffff, 0xffffffff - 63)).toBe(OK);
    expect(w.checkHiLo(0xffffffff, 0xffffffff - 64)).toBe(OLD);
    expect(w.checkHiLo(0, 1)).toBe(OLD);
  });
});

describe('ESN high-half inference (RFC 4303 App. A2.1)', () => {
  // [top, received low half, inferred high half]
  type Case = [top: number, lo: number, wantHi: number];
  const W = 64;
  const cases: Case[] = [
    /*  1 */ [0, 1, 0], // fresh SA
    /*  2 */ [0, 0xffffffff, 0], // no epoch below 0: far ahead in epoch 0
    /*  3 */ [5, 3, 0], // case B (window spans epochs −1/0), in the window
    /*  4 */ [5, 100, 0],
    /*  5 */ [TWO_32 - 16, 5, 1], // case A: low half below the window → next epoch (forward across 2^32)
    /*  6 */ [TWO_32 - 16, 0, 1], // low half 0 after the crossing is seq 2^32, legitimate
    /*  7 */ [TWO_32 - 16, 0xffffffff - 15 - 63, 0], // bottom of the window
    /*  8 */ [TWO_32 - 16, 0xffffffff - 15 - 64, 1], // just below it: next epoch
    /*  9 */ [TWO_32 - 16, 0xfffffff8, 0], // ahead, same epoch
    /* 10 */ [TWO_32 + 10, 0xfffffff0, 0], // case B: late packet from before the crossing (backward)
    /* 11 */ [TWO_32 + 10, 5, 1], // in the window, current epoch
    /* 12 */ [TWO_32 + 10, 100, 1], // ahead, current epoch
    /* 13 */ [TWO_32 + 10, 0xffffffff - 52, 0], // the oldest number in the window: 2^32 + 10 − 63
    /* 14 */ [TWO_32 + 10, 0xffffffff - 53, 1], // one older: read as far ahead, not as too old
    /* 15 */ [2 * TWO_32 + 62, 0xffffffff, 1], // Tl = W − 2: still case B
    /* 16 */ [2 * TWO_32 + 63, 0xffffffff, 2], // Tl = W − 1: case A, the window fits in epoch 2
    /* 17 */ [2 * TWO_32 + 63, 0, 2],
  ];
  cases.forEach(([top, lo, wantHi], i) => {
    it(`case ${i + 1}: top ${top} (hi ${Math.floor(top / TWO_32)}), lo 0x${lo.toString(16)} → hi ${wantHi}`, () => {
      const w = new ReplayWindow(W);
      if (top > 0) w.commit(top);
      expect(w.inferHi(lo)).toBe(wantHi);
    });
  });

  it('stays in epoch 2^32 − 1 at the top of the space (no wrap to 0)', () => {
    const w = new ReplayWindow(W);
    w.commitHiLo(0xffffffff, 0xfffffff0);
    expect(w.inferHi(1)).toBe(0xffffffff);
    expect(w.checkHiLo(0xffffffff, 1)).toBe(OLD);
  });

  it('follows a stream across 2^32 with reordering in both directions', () => {
    const w = new ReplayWindow(W);
    w.commit(TWO_32 - 20);
    // Arrival order straddles the boundary both ways.
    const arrivals = [TWO_32 - 19, TWO_32 + 2, TWO_32 - 1, TWO_32, TWO_32 - 18, TWO_32 + 1, TWO_32 + 3, TWO_32 - 2];
    arrivals.forEach((seq, i) => {
      const lo = seq >>> 0;
      const hi = w.inferHi(lo);
      expect(hi * TWO_32 + lo, `arrival ${i + 1}`).toBe(seq);
      expect(w.checkHiLo(hi, lo), `arrival ${i + 1}`).toBe(OK);
      w.commitHiLo(hi, lo);
      expect(w.checkHiLo(hi, lo)).toBe(DUP);
    });
    expect(w.top).toBe(TWO_32 + 3);
  });
});
