/**
 * The control socket: a unix-domain stream socket speaking newline-delimited
 * JSON. A request is `{"id": 1, "method": "status", "params": {…}}`; the reply
 * is `{"id": 1, "result": …}` or `{"id": 1, "error": {"code": "…", "message": "…"}}`.
 * Methods are registered by the daemon (`status`, `reload`, …).
 *
 * Stages:
 *   start: folder created 0750 → an existing socket file is probed: a daemon
 *          answering → refuse (the error names the path); nothing listening →
 *          the stale file is removed; not a socket → refuse → listen → chmod 0660;
 *   per connection (at most `maxConnections`, each closed after `idleTimeoutMs`
 *          without traffic): bytes → lines (a line longer than
 *          `maxRequestBytes` gets a `request_too_large` error and the
 *          connection is closed) → one request at a time (reading pauses while
 *          one is handled) → handler → one reply line;
 *   close: stop listening, drop connections, remove the socket file if it is
 *          still ours.
 */
import { chmod, lstat, mkdir, unlink } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';

/** Largest request line accepted (bytes, without the newline). */
export const CONTROL_MAX_REQUEST_BYTES = 64 * 1024;
/** Most simultaneous control connections. */
export const CONTROL_MAX_CONNECTIONS = 16;
/** A connection with no traffic for this long is closed. */
export const CONTROL_IDLE_TIMEOUT_MS = 30_000;
/** Mode of the socket file: owner and group may connect. */
export const CONTROL_SOCKET_MODE = 0o660;
/** Mode of folders created for the socket. */
export const CONTROL_DIR_MODE = 0o750;

/** A request line. `id` is echoed in the reply. */
export interface ControlRequest {
  readonly id: string | number | null;
  readonly method: string;
  readonly params?: unknown;
}

/** Error codes of the protocol itself; method handlers add their own (ControlMethodError). */
export type ControlProtocolErrorCode =
  | 'parse_error'
  | 'invalid_request'
  | 'unknown_method'
  | 'request_too_large'
  | 'too_many_connections'
  | 'internal_error';

/** The error object of a failed reply. */
export interface ControlErrorBody {
  readonly code: string;
  readonly message: string;
}

/** A reply line. */
export type ControlResponse =
  | { readonly id: string | number | null; readonly result: unknown }
  | { readonly id: string | number | null; readonly error: ControlErrorBody };

/** A method handler: gets `params` (unvalidated JSON), returns a JSON-serialisable result. */
export type ControlHandler = (params: unknown) => unknown;

/** Throw from a handler to reply with this code and message (e.g. 'invalid_params', 'reload_failed'). */
export class ControlMethodError extends Error {
  override readonly name = 'ControlMethodError';
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export type ControlServerErrorCode = 'CONTROL_IN_USE' | 'CONTROL_NOT_SOCKET' | 'CONTROL_LISTEN';

/** The control socket cannot be served; the message names the path. */
export class ControlServerError extends Error {
  override readonly name = 'ControlServerError';
  constructor(
    readonly code: ControlServerErrorCode,
    readonly path: string,
    message: string,
  ) {
    super(message);
  }
}

export interface ControlServerOptions {
  /** Socket path (config `control.socket`). */
  path: string;
  maxRequestBytes?: number;
  maxConnections?: number;
  idleTimeoutMs?: number;
  /** Called when a handler throws something other than ControlMethodError (the client gets 'internal_error'). */
  onError?: (err: unknown, method: string) => void;
}

const ID_OK = (v: unknown): v is string | number | null => v === null || typeof v === 'string' || (typeof v === 'number' && Number.isFinite(v));

/** The daemon's control socket: register methods, then `listen()`. */
export class ControlServer {
  readonly path: string;
  readonly maxRequestBytes: number;
  readonly maxConnections: number;
  readonly idleTimeoutMs: number;
  private readonly methods = new Map<string, ControlHandler>();
  private readonly conns = new Set<Socket>();
  private readonly onError: (err: unknown, method: string) => void;
  private server: Server | null = null;
  private identity: { dev: number; ino: number } | null = null;

  constructor(opts: ControlServerOptions) {
    this.path = opts.path;
    this.maxRequestBytes = opts.maxRequestBytes ?? CONTROL_MAX_REQUEST_BYTES;
    this.maxConnections = opts.maxConnections ?? CONTROL_MAX_CONNECTIONS;
    this.idleTimeoutMs = opts.idleTimeoutMs ?? CONTROL_IDLE_TIMEOUT_MS;
    this.onError = opts.onError ?? (() => {});
  }

  /** Adds (or replaces) a method; may be called before or after `listen`. Returns this. */
  register(method: string, handler: ControlHandler): this {
    this.methods.set(method, handler);
    return this;
  }

  /** Removes a method. */
  unregister(method: string): void {
    this.methods.delete(method);
  }

  /** Open connections now. */
  get connectionCount(): number {
    return this.conns.size;
  }

  /** Prepares the path (see the file comment) and listens; throws ControlServerError naming the path. */
  async listen(): Promise<void> {
    if (this.server !== null) throw new Error('ControlServer.listen called twice');
    await prepareSocketPath(this.path);
    const server = createServer({ allowHalfOpen: true }, (sock) => this.accept(sock));
    await new Promise<void>((resolve, reject) => {
      const onError = (e: NodeJS.ErrnoException) => {
        reject(
          e.code === 'EADDRINUSE'
            ? new ControlServerError('CONTROL_IN_USE', this.path, `cannot listen on ${this.path}: another process created it just now; is another sectunnel daemon starting?`)
            : new ControlServerError('CONTROL_LISTEN', this.path, `cannot listen on ${this.path}: ${describeErrno(e)}`),
        );
      };
      server.once('error', onError);
      server.listen({ path: this.path, exclusive: true }, () => {
        server.off('error', onError);
        resolve();
      });
    });
    this.server = server;
    try {
      await chmod(this.path, CONTROL_SOCKET_MODE);
      const st = await lstat(this.path);
      this.identity = { dev: st.dev, ino: st.ino };
    } catch (e) {
      await this.close();
      throw new ControlServerError('CONTROL_LISTEN', this.path, `cannot set the mode of ${this.path}: ${describeErrno(e as NodeJS.ErrnoException)}`);
    }
  }

  /** Stops listening, closes every connection and removes the socket file (if it is still the one this server made). */
  async close(): Promise<void> {
    const server = this.server;
    if (server === null) return;
    this.server = null;
    for (const c of this.conns) c.destroy();
    this.conns.clear();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const id = this.identity;
    this.identity = null;
    if (id === null) return;
    try {
      const st = await lstat(this.path);
      if (st.dev === id.dev && st.ino === id.ino) await unlink(this.path);
    } catch {
      // Already gone.
    }
  }

  private accept(sock: Socket): void {
    if (this.conns.size >= this.maxConnections) {
      sock.on('error', () => {});
      sock.end(line({ id: null, error: { code: 'too_many_connections', message: `the daemon serves at most ${this.maxConnections} control connections at once; try again` } }));
      sock.setTimeout(1000, () => sock.destroy());
      return;
    }
    this.conns.add(sock);
    const chunks: Buffer[] = [];
    let partialBytes = 0;
    const queue: Buffer[] = [];
    let busy = false;
    let ended = false;
    let closing = false;

    const finish = (last?: ControlResponse) => {
      if (closing) return;
      closing = true;
      if (last !== undefined) sock.end(line(last));
      else sock.end();
      sock.setTimeout(1000, () => sock.destroy());
    };

    const next = () => {
      if (closing || busy) return;
      const req = queue.shift();
      if (req === undefined) {
        if (ended) finish();
        else sock.resume();
        return;
      }
      busy = true;
      void this.handle(req).then((reply) => {
        busy = false;
        if (closing || sock.destroyed) return;
        const flushed = sock.write(line(reply));
        if (flushed) next();
        else sock.once('drain', next);
      });
    };

    sock.setTimeout(this.idleTimeoutMs);
    sock.on('timeout', () => {
      if (busy) sock.setTimeout(this.idleTimeoutMs);
      else sock.destroy();
    });
    sock.on('error', () => {});
    sock.on('close', () => this.conns.delete(sock));
    sock.on('end', () => {
      ended = true;
      if (!busy && queue.length === 0) finish();
    });
    sock.on('data', (chunk: Buffer) => {
      if (closing) return;
      let start = 0;
      for (let nl = chunk.indexOf(10, start); nl !== -1; nl = chunk.indexOf(10, start)) {
        const piece = chunk.subarray(start, nl);
        start = nl + 1;
        if (partialBytes + piece.length > this.maxRequestBytes) return finish(tooLarge(this.maxRequestBytes));
        const req = partialBytes === 0 ? Buffer.from(piece) : Buffer.concat([...chunks, piece]);
        chunks.length = 0;
        partialBytes = 0;
        if (req.length > 0 && !(req.length === 1 && req[0] === 13)) queue.push(req);
      }
      const rest = chunk.subarray(start);
      if (rest.length > 0) {
        if (partialBytes + rest.length > this.maxRequestBytes) return finish(tooLarge(this.maxRequestBytes));
        chunks.push(Buffer.from(rest));
        partialBytes += rest.length;
      }
      if (queue.length > 0) {
        sock.pause();
        next();
      }
    });
  }

  /** Parses and runs one request line; never throws. */
  private async handle(bytes: Buffer): Promise<ControlResponse> {
    let req: unknown;
    try {
      req = JSON.parse(bytes.toString('utf8'));
    } catch (e) {
      return { id: null, error: { code: 'parse_error', message: `request is not JSON: ${(e as Error).message}` } };
    }
    if (typeof req !== 'object' || req === null || Array.isArray(req)) {
      return { id: null, error: { code: 'invalid_request', message: 'request must be an object {id, method, params}' } };
    }
    const { id, method, params } = req as Record<string, unknown>;
    const replyId = ID_OK(id) ? id : null;
    if (!ID_OK(id) && id !== undefined) return { id: null, error: { code: 'invalid_request', message: 'id must be a string, a number or null' } };
    if (typeof method !== 'string' || method === '') return { id: replyId, error: { code: 'invalid_request', message: 'method must be a non-empty string' } };
    const handler = this.methods.get(method);
    if (handler === undefined) {
      const known = [...this.methods.keys()].sort().join(', ');
      return { id: replyId, error: { code: 'unknown_method', message: `unknown method ${JSON.stringify(method)}; this daemon knows: ${known || '(none)'}` } };
    }
    let result: unknown;
    try {
      result = await handler(params);
    } catch (e) {
      if (e instanceof ControlMethodError) return { id: replyId, error: { code: e.code, message: e.message } };
      this.onError(e, method);
      return { id: replyId, error: { code: 'internal_error', message: `${method} failed: ${e instanceof Error ? e.message : String(e)}` } };
    }
    const reply = { id: replyId, result: result === undefined ? null : result };
    try {
      JSON.stringify(reply);
    } catch (e) {
      this.onError(e, method);
      return { id: replyId, error: { code: 'internal_error', message: `${method} returned a result that is not JSON: ${(e as Error).message}` } };
    }
    return reply;
  }
}

function line(v: ControlResponse): string {
  return JSON.stringify(v) + '\n';
}

function tooLarge(max: number): ControlResponse {
  return { id: null, error: { code: 'request_too_large', message: `request line longer than ${max} bytes; closing the connection` } };
}

function describeErrno(e: NodeJS.ErrnoException): string {
  if (e.code === 'EACCES' || e.code === 'EPERM') return `permission denied (${e.code})`;
  return `${e.code ?? 'error'}: ${e.message}`;
}

/** Creates the folder; removes a stale socket; refuses if a daemon answers or the path is not a socket. */
async function prepareSocketPath(path: string): Promise<void> {
  try {
    await mkdir(dirname(path), { recursive: true, mode: CONTROL_DIR_MODE });
  } catch (e) {
    throw new ControlServerError('CONTROL_LISTEN', path, `cannot create the folder of ${path}: ${describeErrno(e as NodeJS.ErrnoException)}`);
  }
  let isSocket: boolean;
  try {
    isSocket = (await lstat(path)).isSocket();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new ControlServerError('CONTROL_LISTEN', path, `cannot check ${path}: ${describeErrno(e as NodeJS.ErrnoException)}`);
  }
  if (!isSocket) {
    throw new ControlServerError('CONTROL_NOT_SOCKET', path, `${path} exists and is not a socket; remove it or set control.socket to another path`);
  }
  if (await somethingListens(path)) {
    throw new ControlServerError('CONTROL_IN_USE', path, `another sectunnel daemon is listening on ${path}; stop it, or give this daemon another control.socket`);
  }
  try {
    await unlink(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new ControlServerError('CONTROL_LISTEN', path, `cannot remove the stale socket ${path}: ${describeErrno(e as NodeJS.ErrnoException)}`);
    }
  }
}

/** True if a connect to the socket succeeds (or does not fail within a second: something is there). */
function somethingListens(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = createConnection({ path });
    const done = (alive: boolean) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(alive);
    };
    const timer = setTimeout(() => done(true), 1000);
    sock.once('connect', () => done(true));
    sock.once('error', (e: NodeJS.ErrnoException) => done(!(e.code === 'ECONNREFUSED' || e.code === 'ENOENT')));
  });
}
