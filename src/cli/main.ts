/**
 * The `sectunnel` command: parses the subcommand and hands over to its module.
 * Exit status: 0 done, 1 runtime failure, 2 bad arguments or configuration.
 */
import { ConfigError } from '../control/config-errors.js';
import { CliError, EXIT_USAGE } from './errors.js';

interface Subcommand {
  summary: string;
  run: (argv: string[]) => Promise<number>;
}

const SUBCOMMANDS: Record<string, Subcommand> = {};

/** Registers a subcommand (each cli/<name>.ts calls this at import). */
export function registerSubcommand(name: string, summary: string, run: Subcommand['run']): void {
  SUBCOMMANDS[name] = { summary, run };
}

/** The top-level help text. */
export function usage(): string {
  const names = Object.keys(SUBCOMMANDS).sort();
  const width = Math.max(8, ...names.map((n) => n.length));
  const lines = names.map((n) => `  ${n.padEnd(width)}  ${SUBCOMMANDS[n]!.summary}`);
  return [
    'sectunnel: labeled tunnels between hypervisor hosts.',
    'Guest frames are tagged with their domain\'s label and VLAN and carried as',
    'Ethernet-in-GRE-in-ESP (AES-GCM or ChaCha20-Poly1305) to the peer host, which',
    'delivers them only to guests of the same label.',
    '',
    'usage: sectunnel <command> [options]      sectunnel <command> --help',
    '',
    'commands:',
    ...lines,
    '',
    'Environment: SECTUNNEL_CRYPTO=native|node|noble picks the AEAD backend;',
    'SECTUNNEL_NATIVE=0 disables the native addon.',
  ].join('\n');
}

async function loadSubcommands(): Promise<void> {
  await import('./commands.js');
}

/** Runs the CLI with the given arguments and returns the exit status. */
export async function main(argv: string[]): Promise<number> {
  await loadSubcommands();
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    process.stdout.write(usage() + '\n');
    return cmd === undefined ? EXIT_USAGE : 0;
  }
  if (cmd === '--version') {
    process.stdout.write('sectunnel 0.1.0\n');
    return 0;
  }
  const sub = SUBCOMMANDS[cmd];
  if (!sub) {
    process.stderr.write(`sectunnel: unknown command '${cmd}'\n\n${usage()}\n`);
    return EXIT_USAGE;
  }
  try {
    return await sub.run(rest);
  } catch (e) {
    if (e instanceof CliError) {
      process.stderr.write(`sectunnel ${cmd}: ${e.message}\n`);
      return e.exitCode;
    }
    if (e instanceof ConfigError) {
      // One line per problem, each naming the file, the field, the value and what was expected.
      process.stderr.write(`${e.message}\n`);
      return EXIT_USAGE;
    }
    throw e;
  }
}
