/**
 * The client side of the control socket (status-server.ts): connect, send one
 * request line, wait for the reply line with a timeout, close.
 *
 * Stages: connect (ENOENT / ECONNREFUSED → "no daemon listening", EACCES →
 * "permission denied") → write `{"id":1,"method":…,"params":…}\n` → read up
 * to the first newline (at most `maxResponseBytes`) → check the id and the
 * shape → result, or ControlClientError carrying the daemon's error code.
 */
import { createConnection } from 'node:net';
import type { ControlErrorBody } from './status-server.js';

/** Default wait for the reply. */
export const CONTROL_CLIENT_TIMEOUT_MS = 5000;
/** Largest reply accepted (a status report of hundreds of SAs is well below). */
export const CONTROL_MAX_RESPONSE_BYTES = 16 << 20;

export type ControlClientErrorCode =
  /** No socket file, or nobody listening on it. */
  | 'CONTROL_NO_DAEMON'
  | 'CONTROL_PERMISSION'
  | 'CONTROL_CONNECT'
  | 'CONTROL_TIMEOUT'
  /** The reply was not a reply (bad JSON, wrong id, too large, connection closed before it). */
  | 'CONTROL_PROTOCOL'
  /** The daemon answered with an error; `remote` holds its code and message. */
  | 'CONTROL_REMOTE';

/** A failed control request; the message names the socket and says what to do. */
export class ControlClientError extends Error {
  override readonly name = 'ControlClientError';
  constructor(
    readonly code: ControlClientErrorCode,
    readonly path: string,
    message: string,
    readonly remote?: ControlErrorBody,
  ) {
    super(message);
  }
}

export interface ControlCallOptions {
  /** Default 5000 ms. */
  timeoutMs?: number;
  /** Default 16 MiB. */
  maxResponseBytes?: number;
}

function connectError(path: string, e: NodeJS.ErrnoException): ControlClientError {
  const code = e.code ?? 'error';
  if (code === 'ENOENT' || code === 'ECONNREFUSED') {
    return new ControlClientError('CONTROL_NO_DAEMON', path, `cannot connect to ${path}: no daemon listening (${code}); is \`sectunnel run\` running?`);
  }
  if (code === 'EACCES' || code === 'EPERM') {
    return new ControlClientError('CONTROL_PERMISSION', path, `cannot connect to ${path}: permission denied (${code}); run as root or as a member of the socket's group`);
  }
  if (code === 'ENOTSOCK' || code === 'ENOTDIR') {
    return new ControlClientError('CONTROL_CONNECT', path, `cannot connect to ${path}: not a socket (${code}); check --socket or control.socket`);
  }
  return new ControlClientError('CONTROL_CONNECT', path, `cannot connect to ${path}: ${code}: ${e.message}`);
}

/** Sends one request to the daemon at `path` and resolves with its result; rejects with ControlClientError. */
export function callControl(path: string, method: string, params?: unknown, opts: ControlCallOptions = {}): Promise<unknown> {
  const timeoutMs = opts.timeoutMs ?? CONTROL_CLIENT_TIMEOUT_MS;
  const maxBytes = opts.maxResponseBytes ?? CONTROL_MAX_RESPONSE_BYTES;
  const id = 1;
  return new Promise((resolve, reject) => {
    const sock = createConnection({ path });
    const chunks: Buffer[] = [];
    let bytes = 0;
    let connected = false;
    let settled = false;
    const settle = (err: ControlClientError | null, value?: unknown) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      if (err !== null) reject(err);
      else resolve(value);
    };
    const timer = setTimeout(() => {
      settle(new ControlClientError('CONTROL_TIMEOUT', path, `no reply from the daemon on ${path} within ${timeoutMs} ms (method ${method})`));
    }, timeoutMs);
    sock.once('connect', () => {
      connected = true;
      sock.write(JSON.stringify(params === undefined ? { id, method } : { id, method, params }) + '\n');
    });
    sock.on('error', (e: NodeJS.ErrnoException) => {
      settle(connected ? new ControlClientError('CONTROL_PROTOCOL', path, `connection to ${path} failed: ${e.code ?? 'error'}: ${e.message}`) : connectError(path, e));
    });
    sock.on('close', () => {
      settle(new ControlClientError('CONTROL_PROTOCOL', path, `the daemon on ${path} closed the connection without a reply`));
    });
    sock.on('data', (chunk: Buffer) => {
      const nl = chunk.indexOf(10);
      const part = nl === -1 ? chunk : chunk.subarray(0, nl);
      bytes += part.length;
      if (bytes > maxBytes) {
        settle(new ControlClientError('CONTROL_PROTOCOL', path, `reply from ${path} is larger than ${maxBytes} bytes`));
        return;
      }
      chunks.push(part);
      if (nl === -1) return;
      settle(...parseReply(path, Buffer.concat(chunks).toString('utf8'), id));
    });
  });
}

function parseReply(path: string, text: string, id: number): [ControlClientError | null, unknown?] {
  let reply: unknown;
  try {
    reply = JSON.parse(text);
  } catch {
    return [new ControlClientError('CONTROL_PROTOCOL', path, `reply from ${path} is not JSON`)];
  }
  if (typeof reply !== 'object' || reply === null) return [new ControlClientError('CONTROL_PROTOCOL', path, `reply from ${path} is not an object`)];
  const r = reply as { id?: unknown; result?: unknown; error?: unknown };
  if (r.error !== undefined) {
    const e = r.error as Partial<ControlErrorBody> | null;
    const body: ControlErrorBody = { code: String(e?.code ?? 'unknown'), message: String(e?.message ?? '') };
    return [new ControlClientError('CONTROL_REMOTE', path, `the daemon on ${path} answered: ${body.message} (${body.code})`, body)];
  }
  if (r.id !== id) return [new ControlClientError('CONTROL_PROTOCOL', path, `reply from ${path} has id ${JSON.stringify(r.id)}, expected ${id}`)];
  if (!('result' in r)) return [new ControlClientError('CONTROL_PROTOCOL', path, `reply from ${path} has neither result nor error`)];
  return [null, r.result];
}
