/**
 * `sectunnel rekey PEER`: asks the running daemon to start a new handshake with
 * PEER now (make-before-break: traffic keeps flowing on the current SAs until
 * the new ones are installed on both sides).
 *
 * Stages: arguments → socket path (--socket; else --config's control.socket;
 * else the only socket in /run/sectunnel) → control method `rekey {peer}` → one line.
 */
import { callControl, ControlClientError } from '../control/status-client.js';
import { CliError, EXIT_FAILURE, EXIT_USAGE, parseCommandArgs } from './errors.js';
import { registerSubcommand } from './main.js';
import { controlSocket, timeoutMsOf, type StatusOutput } from './status.js';

const HELP = `usage: sectunnel rekey PEER [--socket PATH | --config FILE] [--timeout MS]

Starts a new handshake with PEER now. The current SAs keep carrying traffic
until the new ones are installed on both sides (make-before-break).

  --socket PATH   the daemon's control socket (config control.socket)
  --config FILE   read the socket path from the daemon's config file
  --timeout MS    how long to wait for the reply (default 5000)
  -h, --help      this text

Exit status: 0 started (or one already pending), 1 no daemon or unknown peer, 2 bad arguments.`;

/** Runs `sectunnel rekey` with `argv` (after the subcommand name); returns the exit status, throws CliError. */
export async function runRekey(argv: string[], out: StatusOutput = process.stdout): Promise<number> {
  const { values, positionals } = parseCommandArgs(
    argv,
    { socket: { type: 'string' }, config: { type: 'string' }, timeout: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    HELP,
    true,
  );
  if (values.help) {
    out.write(HELP + '\n');
    return 0;
  }
  if (positionals.length !== 1 || positionals[0] === '') throw new CliError(`expected one PEER name\n\n${HELP}`, EXIT_USAGE);
  const timeoutMs = timeoutMsOf(values.timeout);
  const peer = positionals[0]!;
  const socket = await controlSocket(values);
  let reply: unknown;
  try {
    reply = await callControl(socket, 'rekey', { peer }, { timeoutMs });
  } catch (e) {
    if (e instanceof ControlClientError) throw new CliError(e.message, EXIT_FAILURE);
    throw e;
  }
  const started = typeof reply === 'object' && reply !== null && (reply as { started?: unknown }).started === true;
  out.write(started ? `rekey with ${peer} started\n` : `a handshake with ${peer} is already in progress\n`);
  return 0;
}


registerSubcommand('rekey', 'start a new handshake with a peer now (make-before-break)', (argv) => runRekey(argv));
