// The published ESP vectors (../shared/conformance/vectors) through `sectunnel replay`.
// Their plaintexts carry next header 1 or 4, not GRE: a receiver enforcing next header 47
// authenticates them and then refuses them with unexpected_next_header — which is what
// proves the ICV verified (a wrong key or AAD gives icv_mismatch instead). The ESN vectors
// sit at sequence numbers a fresh replay window cannot infer; they are opened at the ESP
// layer by test/core/esp.test.ts and test/crypto/vectors.test.ts.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseCapture } from '../../src/wire/pcap.js';
import { replay } from '../helpers/replay.js';

const VECTORS = resolve(__dirname, '../../../shared/conformance/vectors');

interface PublishedSa {
  spi: string;
  dst: string;
  algorithm: string;
  keymat_hex: string;
  esn: boolean;
  vector_id: string;
}

const sas = JSON.parse(readFileSync(resolve(VECTORS, 'published_sa.json'), 'utf8')) as PublishedSa[];
const records = parseCapture(new Uint8Array(readFileSync(resolve(VECTORS, 'published_esp.pcap')))).records;

/** The record sent to `dst` (each vector has its own destination 192.0.2.(100+n)). */
function recordTo(dst: string): Uint8Array {
  const last = Number(dst.split('.')[3]);
  const r = records.find((rec) => rec.data[14 + 19] === last);
  if (!r) throw new Error(`no record to ${dst}`);
  return r.data.slice();
}

function config(v: PublishedSa) {
  return {
    local: { ipv4: v.dst },
    replayWindow: 64,
    labels: [{ name: 'any', vlan: 1 }],
    sas: [{ spi: v.spi, direction: 'in', peer: '192.0.2.1', algorithm: v.algorithm.toLowerCase(), keymat: v.keymat_hex, esn: v.esn, encapsulation: 'esp', labels: ['any'] }],
  };
}

describe('conformance: published ESP vectors through replay', () => {
  const usable = sas.filter((v) => !v.esn && Number(v.spi) >= 256);
  it('has the non-ESN vectors to run (4 AES-GCM + RFC 7634)', () => {
    expect(usable.map((v) => v.vector_id).sort()).toEqual(
      ['mcgrew-gcm-test-01-case02', 'mcgrew-gcm-test-01-case03', 'mcgrew-gcm-test-01-case07', 'mcgrew-gcm-test-01-case12', 'rfc7634-appendix-a'].sort(),
    );
  });

  it.each(usable)('$vector_id authenticates, then is refused for next header ≠ 47', async (v) => {
    const r = await replay(config(v), [recordTo(v.dst)], []);
    expect(r.status).toBe(0);
    expect(r.verdicts.map((x) => [x.verdict, x.reason, x.spi])).toEqual([['drop', 'unexpected_next_header', `0x${v.spi.slice(2).padStart(8, '0')}`]]);
  });

  it.each(usable)('$vector_id under a wrong key is icv_mismatch', async (v) => {
    const bad = config(v);
    const k = bad.sas[0]!.keymat;
    bad.sas[0]!.keymat = (k[0] === '0' ? '1' : '0') + k.slice(1);
    const r = await replay(bad, [recordTo(v.dst)], []);
    expect(r.verdicts.map((x) => [x.verdict, x.reason])).toEqual([['drop', 'icv_mismatch']]);
  });

  it('the SPI 0 vector (case 4) is never accepted: unknown_spi', async () => {
    const v = sas.find((s) => Number(s.spi) === 0)!;
    const other = sas.find((s) => s.vector_id === 'mcgrew-gcm-test-01-case02')!;
    const r = await replay(config(other), [recordTo(v.dst)], []);
    expect(r.verdicts.map((x) => [x.verdict, x.reason])).toEqual([['drop', 'unknown_spi']]);
  });
});
