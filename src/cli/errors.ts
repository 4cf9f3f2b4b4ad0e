/** Errors the CLI reports to the operator with a stable exit status. */
import { parseArgs, type ParseArgsConfig } from 'node:util';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** An error shown as one line on stderr, exiting with `exitCode` (2 = bad arguments or config). */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = EXIT_USAGE,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/**
 * node:util parseArgs in strict mode for a subcommand: an unknown option, a missing value or a
 * positional where none is allowed becomes a CliError (exit 2) followed by the command's help.
 */
export function parseCommandArgs<O extends NonNullable<ParseArgsConfig['options']>>(argv: string[], options: O, help: string, allowPositionals = false) {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals });
  } catch (e) {
    throw new CliError(`${(e as Error).message}\n\n${help}`, EXIT_USAGE);
  }
}
