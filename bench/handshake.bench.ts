/**
 * CPU cost of the peer handshake (Noise IKpsk2, core/handshake.ts and core/session.ts) per
 * primitive set: the pure-JS default (@noble/curves, @noble/hashes, @noble/ciphers) and
 * node:crypto's (OpenSSL), which the daemon installs (cli/daemon/handshake.ts). Every row is
 * time the caller's event loop is blocked: nothing here is asynchronous.
 *
 *   npm run build && node dist/bench/handshake.bench.js [--json] [--rounds=N]
 *
 * Stages: 1. per set, warm up, then time each operation `rounds` times and keep the median
 * 2. rows: one X25519, the three handshake steps (initiation; responder: check + answer;
 * initiator: read the response), and a whole rekey between two SessionHosts as each side's
 * event loop sees it (including building the two-label SA pairs)  3. print a table (ms), or
 * one JSON object with --json.
 */
import { randomBytes } from 'node:crypto';
import { cpus } from 'node:os';
import { nodeNoisePrimitives } from '../src/cli/daemon/handshake.js';
import {
  CookieSecret,
  consumeInitiation,
  consumeResponse,
  createIdentity,
  createInitiation,
  createPeerKeys,
  createResponse,
  newReplayState,
  tai64nFromMs,
  type ResponderPeer,
} from '../src/core/handshake.js';
import { NOBLE_NOISE_PRIMITIVES, noiseDh, setNoisePrimitives, x25519PublicKey, type NoisePrimitives } from '../src/core/noise.js';
import { SaDatabase } from '../src/core/sadb.js';
import { SessionHost, type SessionAction } from '../src/core/session.js';

const random = (n: number): Uint8Array => new Uint8Array(randomBytes(n));

interface Args {
  json: boolean;
  rounds: number;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { json: false, rounds: 40 };
  for (const x of argv) {
    if (x === '--json') a.json = true;
    else if (x.startsWith('--rounds=')) a.rounds = Math.max(3, Number(x.slice(9)) | 0);
    else if (x === '-h' || x === '--help') {
      process.stdout.write('usage: node dist/bench/handshake.bench.js [--json] [--rounds=N]\n');
      process.exit(0);
    } else {
      process.stderr.write(`handshake.bench: unknown argument ${x}\n`);
      process.exit(2);
    }
  }
  return a;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
}

/** Runs `setup` untimed and `op` timed, `rounds` times (after 3 warm-up rounds); the median in ms. */
function time<S>(rounds: number, setup: () => S, op: (s: S) => void): number {
  const ms: number[] = [];
  for (let i = 0; i < rounds + 3; i++) {
    const s = setup();
    const t0 = process.hrtime.bigint();
    op(s);
    const t1 = process.hrtime.bigint();
    if (i >= 3) ms.push(Number(t1 - t0) / 1e6);
  }
  return median(ms);
}

type Row = Record<string, number>;

const OFFER = {
  algorithms: ['aes-gcm-256'] as const,
  labels: [
    { name: 'red', spi: 0x1001 },
    { name: 'blue', spi: 0x1002 },
  ],
};

function measure(rounds: number): Row {
  const keyI = random(32);
  const keyR = random(32);
  const idI = createIdentity(keyI);
  const idR = createIdentity(keyR);
  const peerR = createPeerKeys(idR.staticKey.publicKey);
  const peerI = createPeerKeys(idI.staticKey.publicKey);
  const pubR = x25519PublicKey(keyR);
  let clock = 1_700_000_000_000;
  const cookies = new CookieSecret();

  const initiate = () => {
    clock += 1000;
    const r = createInitiation(idI, peerR, { senderIndex: 7, offer: { algorithms: [...OFFER.algorithms], labels: OFFER.labels }, timestamp: tai64nFromMs(clock), nowMs: clock, random });
    if (!r.ok) throw new Error(`createInitiation: ${r.reason}`);
    return r;
  };
  const respond = (msg: Uint8Array) => {
    const rp: ResponderPeer = { keys: peerI, replay: newReplayState() };
    const c = consumeInitiation(idR, msg, { source: '192.0.2.1:4500', underLoad: false, cookieSecret: cookies, lookupPeer: () => rp, nowMs: clock, random });
    if (c.kind !== 'ok') throw new Error(`consumeInitiation: ${c.kind}`);
    const r = createResponse(c.initiation, {
      senderIndex: 9,
      algorithm: 'aes-gcm-256',
      labels: [
        { name: 'red', spi: 0x2001 },
        { name: 'blue', spi: 0x2002 },
      ],
      timestamp: tai64nFromMs(clock),
      nowMs: clock,
      random,
    });
    if (!r.ok) throw new Error(`createResponse: ${r.reason}`);
    return r;
  };

  const row: Row = {};
  row['X25519 (one DH)'] = time(rounds, () => null, () => noiseDh(keyI, pubR));
  row['initiator: initiation (e, es, s, ss)'] = time(rounds, () => null, () => initiate());
  row['responder: check initiation + response (es, ss | e, ee, se, psk)'] = time(rounds, () => initiate().message, (m) => respond(m));
  row['initiator: read response (ee, se, psk) + keys'] = time(
    rounds,
    () => {
      const i = initiate();
      return { i, m: respond(i.message).message };
    },
    ({ i, m }) => {
      const r = consumeResponse(idI, i.pending, m);
      if (!r.ok) throw new Error(`consumeResponse: ${r.reason}`);
    },
  );

  // Two SessionHosts: one on-demand rekey, each host's share of the work (its event loop's time).
  const a = new SessionHost({ staticPrivateKey: keyI, spis: new SaDatabase() });
  const b = new SessionHost({ staticPrivateKey: keyR, spis: new SaDatabase() });
  a.addPeer({ id: 'b', endpoint: 'b:4500', publicKey: idR.staticKey.publicKey, labels: ['red', 'blue'] });
  b.addPeer({ id: 'a', endpoint: 'a:4500', publicKey: idI.staticKey.publicKey, labels: ['red', 'blue'] });
  const sends = (acts: SessionAction[]) => acts.flatMap((x) => (x.type === 'send' ? [x.bytes] : []));
  let rekeyA = 0;
  let rekeyB = 0;
  const sideA: number[] = [];
  const sideB: number[] = [];
  for (let i = 0; i < rounds + 3; i++) {
    clock += 1000;
    let t = process.hrtime.bigint();
    const init = sends(i === 0 ? a.tick(clock, random) : a.rekey('b', clock, random));
    rekeyA = Number(process.hrtime.bigint() - t);
    t = process.hrtime.bigint();
    const resp = sends(b.receive('a:4500', init[0]!, clock, random));
    rekeyB = Number(process.hrtime.bigint() - t);
    t = process.hrtime.bigint();
    const confirm = sends(a.receive('b:4500', resp[0]!, clock, random));
    rekeyA += Number(process.hrtime.bigint() - t);
    t = process.hrtime.bigint();
    b.receive('a:4500', confirm[0]!, clock, random);
    rekeyB += Number(process.hrtime.bigint() - t);
    if (i >= 3) {
      sideA.push(rekeyA / 1e6);
      sideB.push(rekeyB / 1e6);
    }
  }
  row['rekey, initiating host (SessionHost, 2 labels)'] = median(sideA);
  row['rekey, answering host (SessionHost, 2 labels)'] = median(sideB);
  return row;
}

function main(): void {
  const args = parseArgs(process.argv.slice(2));
  const sets: NoisePrimitives[] = [NOBLE_NOISE_PRIMITIVES];
  const node = nodeNoisePrimitives();
  if (node !== null) sets.push(node);
  else process.stderr.write('handshake.bench: node:crypto primitives unavailable or failed their self-test; noble only\n');
  const results: Record<string, Row> = {};
  for (const s of sets) {
    setNoisePrimitives(s);
    results[s.name] = measure(args.rounds);
  }
  setNoisePrimitives(NOBLE_NOISE_PRIMITIVES);
  if (args.json) {
    process.stdout.write(JSON.stringify({ node: process.version, cpu: cpus()[0]?.model ?? '?', rounds: args.rounds, msMedian: results }) + '\n');
    return;
  }
  const names = Object.keys(results);
  const ops = Object.keys(results[names[0]!]!);
  const w = Math.max(...ops.map((o) => o.length));
  const head = `${'operation (median ms)'.padEnd(w)}  ${names.map((n) => n.padStart(9)).join('  ')}${names.length > 1 ? '  speed-up' : ''}`;
  const lines = [`Node ${process.version}, ${cpus()[0]?.model ?? '?'}, ${args.rounds} rounds`, head, '-'.repeat(head.length)];
  for (const op of ops) {
    const v = names.map((n) => results[n]![op]!);
    const speedup = v.length > 1 ? `  ${(v[0]! / v[v.length - 1]!).toFixed(1).padStart(7)}×` : '';
    lines.push(`${op.padEnd(w)}  ${v.map((x) => x.toFixed(3).padStart(9)).join('  ')}${speedup}`);
  }
  process.stdout.write(lines.join('\n') + '\n');
}

main();
