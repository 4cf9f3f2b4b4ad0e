// Sequence-number high-water marks across restarts: a restart resumes above
// every number that may have been sent; the file is replaced atomically (old or
// new, never half); a corrupt file stops the daemon with a message naming it.
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, statSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DEFAULT_SEQ_BLOCK_PACKETS, SEQ_STATE_FILE, SeqStore, SeqStoreError, seqKeyId, seqKeyOf } from '../../src/control/seq-store.js';

let dir: string;
beforeEach(() => {
  dir = join(mkdtempSync(join(tmpdir(), 'st-seq-')), 'state');
});
afterEach(() => {
  rmSync(join(dir, '..'), { recursive: true, force: true });
});

const KEYMAT_A = Uint8Array.from({ length: 36 }, (_, i) => 0x40 + i);
const KEYMAT_B = Uint8Array.from({ length: 36 }, (_, i) => 0x80 + i);
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

describe('SeqStore', () => {
  it('a key never seen starts at 1; after reserving, a new instance on the same folder resumes above the mark', () => {
    const key = seqKeyOf(0x2001, KEYMAT_A);
    const s1 = SeqStore.open(dir);
    expect(s1.resumeFrom(key)).toBe(1);
    expect(s1.reserveAhead(key, 1)).toBe(DEFAULT_SEQ_BLOCK_PACKETS);
    // The daemon sends numbers 1..1000, then dies without another write.
    const s2 = SeqStore.open(dir);
    expect(s2.resumeFrom(key)).toBe(DEFAULT_SEQ_BLOCK_PACKETS + 1);
    expect(s2.resumeFrom(key)).toBeGreaterThan(1000);
    // Same SPI, new key (the operator changed the keymat): starts at 1 again.
    expect(s2.resumeFrom(seqKeyOf(0x2001, KEYMAT_B))).toBe(1);
    expect(statSync(join(dir, SEQ_STATE_FILE)).mode & 0o777).toBe(0o600);
    expect(statSync(dir).mode & 0o077).toBe(0);
  });

  it('drives an SA across three restarts without ever reusing a sequence number', () => {
    const key = seqKeyOf(0x3001, KEYMAT_A);
    const sent: number[] = [];
    const block = 64;
    for (let run = 0; run < 3; run++) {
      const store = SeqStore.open(dir, { blockPackets: block });
      const sa = { nextSeq: store.resumeFrom(key) }; // the OutboundSa's counter (firstSeq = resumeFrom)
      let mark = store.reserveAhead(key, sa.nextSeq);
      for (let i = 0; i < 150; i++) {
        if (store.needsReserve(key, sa.nextSeq)) mark = store.reserveAhead(key, sa.nextSeq);
        expect(sa.nextSeq).toBeLessThanOrEqual(mark);
        sent.push(sa.nextSeq);
        sa.nextSeq++;
      }
      // crash: the store object is dropped without any closing write
    }
    expect(new Set(sent).size).toBe(sent.length);
    expect(sent[0]).toBe(1);
  });

  it('marks never go down and a repeated reserve does not write', () => {
    const key = seqKeyOf(0x1001, KEYMAT_A);
    const s = SeqStore.open(dir);
    s.reserve(key, 5000);
    const writes = s.writes;
    s.reserve(key, 10);
    s.reserve(key, 5000);
    expect(s.writes).toBe(writes);
    expect(SeqStore.open(dir).reservedUpTo(key)).toBe(5000);
  });

  it('needsReserve turns true once fewer than half a block remains', () => {
    const key = seqKeyOf(0x1001, KEYMAT_A);
    const s = SeqStore.open(dir, { blockPackets: 100 });
    expect(s.needsReserve(key, 1)).toBe(true);
    s.reserveAhead(key, 1); // mark 100
    expect(s.needsReserve(key, 50)).toBe(false);
    expect(s.needsReserve(key, 51)).toBe(true);
  });

  it('the file holds a key id, never the key', () => {
    const s = SeqStore.open(dir);
    s.reserve(seqKeyOf(0x1001, KEYMAT_A), 7);
    const text = readFileSync(s.file, 'utf8');
    expect(text).toContain(seqKeyId(KEYMAT_A));
    expect(text).toContain('"0x00001001"');
    expect(text).not.toContain(hex(KEYMAT_A));
    expect(text).not.toContain(hex(KEYMAT_A.subarray(0, 16)));
    expect(seqKeyId(KEYMAT_A)).not.toBe(seqKeyId(KEYMAT_B));
  });

  it('replaces the file atomically: a reader of the old file sees the old state whole, the path the new one', () => {
    const key = seqKeyOf(0x1001, KEYMAT_A);
    const s = SeqStore.open(dir);
    s.reserve(key, 1000);
    const before = readFileSync(s.file, 'utf8');
    const oldIno = statSync(s.file).ino;
    const fd = openSync(s.file, 'r');
    try {
      s.reserve(key, 2000);
      const buf = Buffer.alloc(1 << 16);
      const n = readSync(fd, buf, 0, buf.length, 0);
      expect(buf.subarray(0, n).toString('utf8')).toBe(before); // written elsewhere, not in place
    } finally {
      closeSync(fd);
    }
    expect(statSync(s.file).ino).not.toBe(oldIno);
    expect(SeqStore.open(dir).reservedUpTo(key)).toBe(2000);
    expect(readdirSync(dir)).toEqual([SEQ_STATE_FILE]); // no temp file left
  });

  it('a crash between the temp write and the rename leaves the old valid file; the temp is ignored and removed', () => {
    const key = seqKeyOf(0x1001, KEYMAT_A);
    SeqStore.open(dir).reserve(key, 1000);
    // What a writer killed mid-way leaves: a temp file with part of a newer state.
    const newer = readFileSync(join(dir, SEQ_STATE_FILE), 'utf8').replace('1000', '3000');
    const tmp = join(dir, `${SEQ_STATE_FILE}.99999.tmp`);
    writeFileSync(tmp, newer.slice(0, newer.length / 2));
    const s = SeqStore.open(dir);
    expect(s.resumeFrom(key)).toBe(1001);
    expect(existsSync(tmp)).toBe(false);
  });

  it('a failed write throws, names the file, and leaves the mark where it was', () => {
    const key = seqKeyOf(0x1001, KEYMAT_A);
    const s = SeqStore.open(dir);
    s.reserve(key, 100);
    mkdirSync(`${s.file}.${process.pid}.tmp`); // the temp path cannot be opened as a file
    const err = (() => {
      try {
        s.reserve(key, 200);
      } catch (e) {
        return e;
      }
      return null;
    })() as SeqStoreError;
    expect(err).toBeInstanceOf(SeqStoreError);
    expect(err.code).toBe('SEQ_STATE_IO');
    expect(err.message).toContain(s.file);
    expect(s.reservedUpTo(key)).toBe(100);
    rmSync(`${s.file}.${process.pid}.tmp`, { recursive: true });
    expect(SeqStore.open(dir).reservedUpTo(key)).toBe(100);
  });

  describe('a corrupt file is refused, naming it, and left as it is', () => {
    const cases: [string, (text: string) => string, RegExp][] = [
      ['truncated', (t) => t.slice(0, 40), /not JSON/],
      ['empty', () => '', /not JSON/],
      ['a mark edited by hand', (t) => t.replace('1000', '999999999'), /checksum mismatch/],
      ['another format version', (t) => t.replace('"version": 1', '"version": 7'), /version 7/],
      ['a bad SPI', (t) => t.replace('"0x00001001"', '"4097"'), /entries\[0\]\.spi/],
    ];
    for (const [what, damage, why] of cases) {
      it(what, () => {
        const key = seqKeyOf(0x1001, KEYMAT_A);
        const first = SeqStore.open(dir);
        first.reserve(key, 1000);
        const bad = damage(readFileSync(first.file, 'utf8'));
        writeFileSync(first.file, bad);
        let err: unknown;
        try {
          SeqStore.open(dir);
        } catch (e) {
          err = e;
        }
        expect(err).toBeInstanceOf(SeqStoreError);
        const e = err as SeqStoreError;
        expect(e.code).toBe('SEQ_STATE_CORRUPT');
        expect(e.message).toContain(`refusing to start: the sequence-number state ${first.file} is corrupt`);
        expect(e.message).toMatch(why);
        expect(e.message).toContain('only if every static key (keymat) in the config has been changed');
        expect(e.message).toContain('--reset-seq-state');
        expect(readFileSync(first.file, 'utf8')).toBe(bad);
      });
    }
  });

  it('reset moves a corrupt file aside and starts empty', () => {
    const key = seqKeyOf(0x1001, KEYMAT_A);
    SeqStore.open(dir).reserve(key, 1000);
    writeFileSync(join(dir, SEQ_STATE_FILE), '{oops');
    const s = SeqStore.open(dir, { reset: true });
    expect(s.resumeFrom(key)).toBe(1);
    expect(readdirSync(dir).some((n) => n.startsWith(`${SEQ_STATE_FILE}.reset-`))).toBe(true);
  });

  it('forget drops one mark durably; other marks and file names are independent', () => {
    const a = seqKeyOf(0x1001, KEYMAT_A);
    const b = seqKeyOf(0x1002, KEYMAT_B);
    const s = SeqStore.open(dir);
    s.reserve(a, 10);
    s.reserve(b, 20);
    s.forget(a);
    const again = SeqStore.open(dir);
    expect(again.entries()).toEqual([{ spi: 0x1002, keyId: b.keyId, reservedUpTo: 20 }]);
    const other = SeqStore.open(dir, { fileName: 'seq-hv2.json' });
    expect(other.resumeFrom(b)).toBe(1);
  });

  it('rejects out-of-range numbers and identities', () => {
    const s = SeqStore.open(dir);
    expect(() => s.reserve(seqKeyOf(0x1001, KEYMAT_A), 2 ** 64)).toThrow(/not an integer in 0\.\./);
    expect(() => s.reserve({ spi: 1, keyId: 'not-hex' }, 5)).toThrow(/bad SA identity/);
    expect(() => SeqStore.open(dir, { fileName: '../x' })).toThrow(/plain file name/);
  });
});
