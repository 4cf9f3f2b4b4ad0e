/** Errors of the daemon's control paths (start, reload), with stable codes. */

/** Stable codes of DaemonError. */
export type DaemonErrorCode =
  /** A guest port (TAP or attachment) cannot be opened. */
  | 'ST_DAEMON_PORT'
  /** The underlay socket cannot be opened. */
  | 'ST_DAEMON_TRANSPORT'
  /** The config needs something the command line did not allow (static keys without --insecure-static-keys). */
  | 'ST_DAEMON_STATIC_KEYS'
  /** A reload changes a setting that only a restart applies. */
  | 'ST_DAEMON_RESTART_NEEDED'
  /** The sequence-number store cannot be read or written. */
  | 'ST_DAEMON_SEQ_STORE'
  /** --user names no user, or the privileges cannot be dropped. */
  | 'ST_DAEMON_USER'
  /** The crypto backend the config asks for is unavailable. */
  | 'ST_DAEMON_CRYPTO'
  /** The host private key or a pre-shared key cannot be read (missing, readable by others, malformed), or the handshake peers are inconsistent. */
  | 'ST_DAEMON_KEYS';

/** A daemon start or reload failure; the message names the config field or the resource. */
export class DaemonError extends Error {
  override readonly name = 'DaemonError';
  constructor(
    readonly code: DaemonErrorCode,
    message: string,
    cause?: unknown,
  ) {
    super(message, cause === undefined ? undefined : { cause });
  }
}
