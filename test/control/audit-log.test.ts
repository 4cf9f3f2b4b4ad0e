// The audit sink: JSON lines appended to a file (0640, folder created), bounded
// queue (records beyond the byte bound are counted lost, never buffered), reopen
// after rotation, close flushes, standard output when there is no path.
import { execFileSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, readFileSync, readSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditEvent, Auditor } from '../../src/core/audit.js';
import { Reason } from '../../src/core/reasons.js';
import { AuditLog, AuditLogError, type AuditStream } from '../../src/control/audit-log.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'st-audit-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function lines(path: string): Record<string, unknown>[] {
  const text = readFileSync(path, 'utf8');
  expect(text === '' || text.endsWith('\n')).toBe(true);
  return text === '' ? [] : text.slice(0, -1).split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('AuditLog to a file', () => {
  it('creates the folder and a 0640 file, appends one JSON line per record, counts them', async () => {
    const path = join(dir, 'var', 'log', 'sectunnel', 'audit.jsonl');
    const log = await AuditLog.open({ path });
    expect(log.write({ type: 'drop', reason: 'label_mismatch', n: 1 })).toBe(true);
    log.sink({ type: 'drop', reason: 'policy_denied', n: 2 });
    await log.close();
    expect(lines(path)).toEqual([
      { type: 'drop', reason: 'label_mismatch', n: 1 },
      { type: 'drop', reason: 'policy_denied', n: 2 },
    ]);
    expect(statSync(path).mode & 0o777).toBe(0o640);
    expect(statSync(join(dir, 'var', 'log', 'sectunnel')).mode & 0o007).toBe(0);
    expect(log.stats()).toEqual({ written: 2, lost: 0, writeErrors: 0, queuedBytes: 0 });
  });

  it('appends to an existing file and leaves its mode alone', async () => {
    const path = join(dir, 'audit.jsonl');
    writeFileSync(path, '{"old":true}\n', { mode: 0o600 });
    const log = await AuditLog.open({ path });
    log.write({ new: true });
    await log.close();
    expect(lines(path)).toEqual([{ old: true }, { new: true }]);
    expect(statSync(path).mode & 0o777).toBe(0o600);
  });

  it('is the core Auditor\'s sink: a label drop becomes a line', async () => {
    const path = join(dir, 'audit.jsonl');
    const log = await AuditLog.open({ path });
    const auditor = new Auditor({ sink: log.sink });
    const ev = new AuditEvent();
    ev.reason = Reason.label_mismatch;
    ev.spi = 0x1001;
    ev.vlan = 100;
    auditor.record(Date.UTC(2024, 0, 2, 3, 4, 5), ev);
    await log.close();
    expect(lines(path)).toEqual([
      expect.objectContaining({ type: 'drop', time: '2024-01-02T03:04:05.000Z', reason: 'label_mismatch', spi: '0x00001001', vlan: 100 }),
    ]);
  });

  it('reopen() after rotation writes to a new file at the path; nothing is lost', async () => {
    const path = join(dir, 'audit.jsonl');
    const log = await AuditLog.open({ path });
    for (let i = 0; i < 3; i++) log.write({ i });
    await log.flush();
    renameSync(path, `${path}.1`);
    log.write({ i: 3 }); // still goes to the renamed file or the new one, never lost
    await log.reopen();
    for (let i = 4; i < 6; i++) log.write({ i });
    await log.close();
    const old = lines(`${path}.1`).map((l) => l.i);
    const now = lines(path).map((l) => l.i);
    expect(old.slice(0, 3)).toEqual([0, 1, 2]);
    expect([...old, ...now]).toEqual([0, 1, 2, 3, 4, 5]);
    expect(now).toContain(5);
    expect(statSync(path).mode & 0o777).toBe(0o640);
    expect(log.written).toBe(6);
  });

  it('names the path when it cannot open the file', async () => {
    writeFileSync(join(dir, 'file'), '');
    const path = join(dir, 'file', 'audit.jsonl'); // parent is a file
    const err = await AuditLog.open({ path }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AuditLogError);
    expect((err as AuditLogError).code).toBe('AUDIT_OPEN');
    expect((err as Error).message).toContain(path);
  });

  it('a blocked file (a FIFO nobody reads): records beyond the byte bound are lost, the queue never exceeds it', async () => {
    const fifo = join(dir, 'audit.fifo');
    execFileSync('mkfifo', [fifo]);
    const reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    const maxQueuedBytes = 16 * 1024;
    const log = await AuditLog.open({ path: fifo, maxQueuedBytes });
    const pad = 'x'.repeat(180);
    const total = 20_000; // ~4 MB of records against a 64 KiB pipe and a 16 KiB queue
    let maxSeen = 0;
    for (let i = 0; i < total; i++) {
      log.write({ i, pad });
      maxSeen = Math.max(maxSeen, log.queuedBytes);
      if (i % 500 === 0) await sleep(1); // let the writer run; the pipe fills and blocks it
    }
    expect(maxSeen).toBeLessThanOrEqual(maxQueuedBytes);
    expect(log.lost).toBeGreaterThan(total - (64 * 1024 + maxQueuedBytes) / 100);
    // Now read everything; every record the log accepted arrives, as whole lines.
    const chunks: Buffer[] = [];
    const buf = Buffer.alloc(1 << 16);
    const closed = log.close();
    let done = false;
    void closed.then(() => (done = true));
    for (;;) {
      let n = 0;
      try {
        n = readSync(reader, buf, 0, buf.length, null);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
      }
      if (n > 0) chunks.push(Buffer.from(buf.subarray(0, n)));
      else if (done) break;
      else await sleep(2);
    }
    closeSync(reader);
    const text = Buffer.concat(chunks).toString('utf8');
    const got = text.slice(0, -1).split('\n').map((l) => JSON.parse(l) as { i: number });
    expect(got.length).toBe(log.written);
    expect(log.written + log.lost).toBe(total);
    expect(log.written).toBeGreaterThan(0);
    const ids = got.map((r) => r.i);
    expect(ids).toEqual([...ids].sort((a, b) => a - b)); // in order, none twice
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('records written after close are counted lost', async () => {
    const log = await AuditLog.open({ path: join(dir, 'a.jsonl') });
    await log.close();
    expect(log.write({ late: true })).toBe(false);
    expect(log.lost).toBe(1);
  });
});

describe('AuditLog to a stream (no path)', () => {
  /** A stream whose writes complete only when `release` is called. */
  function heldStream() {
    const pending: { chunk: Uint8Array; cb: (err?: Error | null) => void }[] = [];
    const out: string[] = [];
    const stream: AuditStream = {
      write(chunk, cb) {
        pending.push({ chunk, cb });
        return true;
      },
    };
    const release = (err?: Error) => {
      for (const p of pending.splice(0)) {
        if (!err) out.push(Buffer.from(p.chunk).toString('utf8'));
        p.cb(err ?? null);
      }
    };
    return { stream, out, release, pending };
  }

  it('bounds the bytes held while the stream is slow and counts the rest as lost', async () => {
    const s = heldStream();
    const log = await AuditLog.open({ stream: s.stream, maxQueuedBytes: 1000 });
    const rec = { type: 'drop', reason: 'policy_denied', pad: 'y'.repeat(60) }; // 89 bytes with the newline
    const size = JSON.stringify(rec).length + 1;
    let accepted = 0;
    for (let i = 0; i < 100; i++) if (log.write(rec)) accepted++;
    expect(accepted).toBe(Math.floor(1000 / size));
    expect(log.lost).toBe(100 - accepted);
    expect(log.queuedBytes).toBe(accepted * size);
    expect(log.queuedBytes).toBeLessThanOrEqual(1000);
    // Release until drained: every accepted record comes out once.
    while (s.pending.length > 0) {
      s.release();
      await sleep(0);
    }
    await log.flush();
    expect(s.out.join('').split('\n').filter(Boolean)).toHaveLength(accepted);
    expect(log.written).toBe(accepted);
    expect(log.queuedBytes).toBe(0);
  });

  it('a failing stream: the batch is lost, counted, reported once per run of failures', async () => {
    const s = heldStream();
    const errors: AuditLogError[] = [];
    const log = await AuditLog.open({ stream: s.stream, onError: (e) => errors.push(e) });
    log.write({ a: 1 });
    log.write({ a: 2 });
    s.release(Object.assign(new Error('broken pipe'), { code: 'EPIPE' }));
    await sleep(0);
    s.release(Object.assign(new Error('broken pipe'), { code: 'EPIPE' }));
    await log.flush();
    expect(log.lost).toBe(2);
    expect(log.writeErrors).toBe(2);
    expect(errors).toHaveLength(1);
    expect(errors[0]!.code).toBe('AUDIT_WRITE');
    expect(errors[0]!.message).toContain('EPIPE');
    log.write({ a: 3 });
    s.release();
    await log.flush();
    expect(log.written).toBe(1);
    expect(s.out).toEqual(['{"a":3}\n']);
  });
});
