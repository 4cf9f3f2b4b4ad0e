// The structured log: one JSON object per line with time, level, msg and fields;
// levels filter; children bind fields and follow the root's level.
import { describe, expect, it } from 'vitest';
import { Logger, logLevelRank } from '../../src/control/log.js';

function capture(level: 'debug' | 'info' | 'warn' | 'error' = 'info', fields?: Record<string, unknown>) {
  const lines: string[] = [];
  const log = new Logger({ level, stream: { write: (t: string) => lines.push(t) }, nowMs: () => Date.UTC(2024, 4, 1, 12, 0, 0, 250), fields });
  return { log, lines, parsed: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

describe('Logger', () => {
  it('writes one JSON line with time, level, msg first, then the fields', () => {
    const { log, lines } = capture();
    log.info('peer up', { peer: 'hv2', spi: '0x00001001', packets: 3 });
    expect(lines).toEqual(['{"time":"2024-05-01T12:00:00.250Z","level":"info","msg":"peer up","peer":"hv2","spi":"0x00001001","packets":3}\n']);
  });

  it('filters by level: info drops debug, error keeps only error', () => {
    const a = capture('info');
    a.log.debug('d');
    a.log.info('i');
    a.log.warn('w');
    a.log.error('e');
    expect(a.parsed().map((l) => l.level)).toEqual(['info', 'warn', 'error']);
    const b = capture('error');
    b.log.debug('d');
    b.log.info('i');
    b.log.warn('w');
    b.log.error('e');
    b.log.log('warn', 'w2');
    expect(b.parsed().map((l) => l.msg)).toEqual(['e']);
    expect(b.log.enabled('warn')).toBe(false);
    expect(b.log.enabled('error')).toBe(true);
  });

  it('does not touch the fields of a disabled level', () => {
    const { log, lines } = capture('warn');
    const fields = new Proxy({}, { ownKeys: () => { throw new Error('fields were read'); } });
    expect(() => log.debug('x', fields)).not.toThrow();
    expect(() => log.info('x', fields)).not.toThrow();
    expect(lines).toEqual([]);
  });

  it('a child binds fields; the call fields come after; the level is shared with the root', () => {
    const { log, parsed } = capture('info', { host: 'hv1' });
    const peerLog = log.child({ peer: 'hv2' });
    const saLog = peerLog.child({ spi: '0x00002001' });
    saLog.info('sealed', { packets: 10 });
    saLog.debug('hidden');
    log.level = 'debug';
    saLog.debug('now shown');
    expect(parsed()).toEqual([
      { time: '2024-05-01T12:00:00.250Z', level: 'info', msg: 'sealed', host: 'hv1', peer: 'hv2', spi: '0x00002001', packets: 10 },
      { time: '2024-05-01T12:00:00.250Z', level: 'debug', msg: 'now shown', host: 'hv1', peer: 'hv2', spi: '0x00002001' },
    ]);
    expect(saLog.level).toBe('debug');
  });

  it('keeps time, level and msg when fields use those names', () => {
    const { log, parsed } = capture();
    log.info('real', { msg: 'fake', level: 'error', time: 'never' });
    expect(parsed()[0]).toEqual({ time: '2024-05-01T12:00:00.250Z', level: 'info', msg: 'real', _msg: 'fake', _level: 'error', _time: 'never' });
  });

  it('prints errors with name, message and code; bigints as text; bytes only by length', () => {
    const { log, parsed } = capture();
    const err = Object.assign(new Error('no such file'), { code: 'ENOENT' });
    log.error('open failed', { err, seq: 2n ** 64n - 1n, keymat: new Uint8Array([1, 2, 3, 4]), buf: Buffer.from('secret') });
    const line = parsed()[0]!;
    expect(line.err).toMatchObject({ name: 'Error', message: 'no such file', code: 'ENOENT' });
    expect(line.seq).toBe('18446744073709551615');
    expect(line.keymat).toBe('<4 bytes>');
    expect(line.buf).toBe('<6 bytes>');
    expect(JSON.stringify(line)).not.toContain('secret');
  });

  it('a field that cannot be serialised still yields a line', () => {
    const { log, parsed } = capture();
    const loop: Record<string, unknown> = {};
    loop.self = loop;
    log.warn('odd', { loop });
    const line = parsed()[0]!;
    expect(line.msg).toBe('odd');
    expect(line.level).toBe('warn');
    expect(String(line.logError)).toContain('not serialisable');
  });

  it('a failing stream does not throw into the caller', () => {
    const log = new Logger({ stream: { write: () => { throw new Error('EPIPE'); } } });
    expect(() => log.error('x')).not.toThrow();
  });

  it('rejects an unknown level', () => {
    expect(() => new Logger({ level: 'verbose' as never })).toThrow(/verbose.*debug, info, warn, error/);
    expect(logLevelRank('warn')).toBe(2);
    expect(logLevelRank('trace')).toBe(-1);
  });
});
