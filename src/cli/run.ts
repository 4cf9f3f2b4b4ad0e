/**
 * `sectunnel run --config FILE`: the host daemon in the foreground
 * (cli/daemon/daemon.ts). SIGHUP reloads the config; SIGTERM and SIGINT stop it
 * cleanly, after which the process exits by itself.
 *
 * Exit status: 0 stopped by a signal, 1 could not start (the reason is logged),
 * 2 bad arguments, an invalid config (one line per problem), or static keys
 * without --insecure-static-keys.
 */
import { ConfigError } from '../control/config-errors.js';
import { Logger } from '../control/log.js';
import { Daemon } from './daemon/daemon.js';
import { DaemonError } from './daemon/errors.js';
import { CliError, EXIT_FAILURE, EXIT_USAGE, parseCommandArgs } from './errors.js';
import { registerSubcommand } from './main.js';

/** How long a stop may take before the process exits anyway. */
export const STOP_TIMEOUT_MS = 10_000;

const HELP = `usage: sectunnel run --config FILE [--insecure-static-keys] [--user NAME] [--reset-seq-state]

Runs the sectunnel daemon of this host in the foreground: opens the TAPs and
attachments of the config's domains and the underlay socket, and carries guest
frames between them and the peer hosts as Ethernet-in-GRE-in-ESP, delivering
only to guests of the frame's label. Logs are JSON lines on stderr (config
log.level); audit records of denied frames go to audit.path (default stdout).

  --config FILE           the host's config, JSON or YAML (docs/config.md), or a libvirt
                          network definition FILE.xml (docs/libvirt.md: this host found
                          by its address, its key HOST.key next to it, guests attached
                          at run time)
  --insecure-static-keys  use the static SA keys of peers[].staticSas: for tests and
                          debugging only (fixed keys, no forward secrecy, whoever
                          reads the config can read and forge the traffic); a config
                          with static keys is refused without this flag
  --user NAME             after opening devices and sockets, drop root and run as NAME;
                          NAME must be able to read the config (for reloads) and reach
                          state.dir and audit.path; a reload can then not open new TAPs
  --reset-seq-state       start with an empty sequence-number state (state.dir); only
                          safe if every static key changed since it was written
  -h, --help              this text

Signals: SIGHUP reloads the config (domains, peers, labels, policy; TAPs and SAs
that stay are kept; an invalid config is refused and the running one stays) and
reopens the audit log; SIGTERM or SIGINT stop the daemon.
\`sectunnel status\` shows peers, SAs, domains and counters; Prometheus metrics are
served on metrics.listen when configured.

Exit status: 0 stopped by a signal, 1 could not start, 2 bad arguments or config.`;

/** Output for --help (stdout); tests pass their own. */
export interface RunOutput {
  write(text: string): unknown;
}

/** Runs `sectunnel run` with `argv` (after the subcommand name); resolves with the exit status when the daemon stops. */
export async function runRun(argv: string[], out: RunOutput = process.stdout): Promise<number> {
  const { values } = parseCommandArgs(
    argv,
    {
      config: { type: 'string' },
      'insecure-static-keys': { type: 'boolean' },
      user: { type: 'string' },
      'reset-seq-state': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    HELP,
  );
  if (values.help) {
    out.write(HELP + '\n');
    return 0;
  }
  if (values.config === undefined || values.config === '') throw new CliError(`--config FILE is required\n\n${HELP}`, EXIT_USAGE);
  if (values.user !== undefined && !/^[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?$/.test(values.user)) {
    throw new CliError(`--user ${JSON.stringify(values.user)}: not a user name`, EXIT_USAGE);
  }

  // A SIGHUP during start (the default action would kill the process) is kept for afterwards.
  let hupDuringStart = false;
  const earlyHup = (): void => {
    hupDuringStart = true;
  };
  process.on('SIGHUP', earlyHup);
  let daemon: Daemon;
  try {
    daemon = await Daemon.start({
      configFile: values.config,
      insecureStaticKeys: values['insecure-static-keys'] === true,
      resetSeqState: values['reset-seq-state'] === true,
      ...(values.user !== undefined && { user: values.user }),
    });
  } catch (e) {
    process.off('SIGHUP', earlyHup);
    if (e instanceof ConfigError) throw e; // one line per problem, exit 2 (main.ts)
    if (e instanceof DaemonError && e.code === 'ST_DAEMON_STATIC_KEYS') throw new CliError(e.message, EXIT_USAGE);
    const code = e instanceof Error ? (e as Error & { code?: unknown }).code : undefined;
    if (typeof code === 'string') {
      // A known control-path failure (TAP, socket, state file, …): one log line saying what to fix.
      new Logger().error('sectunnel could not start', { config: values.config, code, error: (e as Error).message });
      return EXIT_FAILURE;
    }
    throw e;
  }

  const onHup = (): void => {
    daemon.reload().catch(() => undefined); // logged by the daemon
  };
  const onStop = (signal: NodeJS.Signals): void => {
    daemon.log.info('stopping', { signal });
    setTimeout(() => {
      daemon.log.error('the daemon did not stop in time; exiting', { timeoutMs: STOP_TIMEOUT_MS });
      process.exit(EXIT_FAILURE);
    }, STOP_TIMEOUT_MS).unref();
    void daemon.stop();
  };
  process.on('SIGHUP', onHup);
  process.off('SIGHUP', earlyHup);
  process.on('SIGTERM', onStop);
  process.on('SIGINT', onStop);
  if (hupDuringStart) onHup();
  try {
    await daemon.stopped;
  } finally {
    process.off('SIGHUP', onHup);
    process.off('SIGTERM', onStop);
    process.off('SIGINT', onStop);
  }
  return 0;
}

registerSubcommand('run', 'the host daemon: carries labeled guest traffic to peer hosts (foreground)', runRun);
