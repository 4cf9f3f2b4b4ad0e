/**
 * `--user NAME`: after the devices and sockets are open, the daemon gives up
 * root: the files it must still write (sequence state, control socket, audit
 * log) are handed to the user, then supplementary groups, gid and uid are set
 * (in that order: setuid last, once nothing else needs root).
 *
 * What no longer works afterwards: a reload that opens a new TAP or attachment
 * (needs CAP_NET_ADMIN / CAP_NET_RAW; refused, the old config stays), and
 * removing the control socket at exit if its folder is root's.
 */
import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, readFileSync } from 'node:fs';
import { DaemonError } from './errors.js';

/** uid and primary gid of a user: /etc/passwd first, then `id` (NSS users). Null if unknown. */
export function lookupUser(name: string): { uid: number; gid: number } | null {
  try {
    for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
      const f = line.split(':');
      if (f[0] === name && f.length >= 4) return { uid: Number(f[2]), gid: Number(f[3]) };
    }
  } catch {
    // No /etc/passwd: ask id.
  }
  try {
    const uid = Number(execFileSync('id', ['-u', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
    const gid = Number(execFileSync('id', ['-g', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
    return Number.isInteger(uid) && Number.isInteger(gid) ? { uid, gid } : null;
  } catch {
    return null;
  }
}

/** Hands `paths` (those that exist) to the user, then switches to it; throws DaemonError. */
export function dropPrivileges(user: string, paths: readonly string[]): { uid: number; gid: number } {
  if (typeof process.setuid !== 'function' || typeof process.getuid !== 'function') {
    throw new DaemonError('ST_DAEMON_USER', `--user ${user}: changing user is not supported on ${process.platform}`);
  }
  if (process.getuid() !== 0) throw new DaemonError('ST_DAEMON_USER', `--user ${user}: only root can change user (running as uid ${process.getuid()})`);
  const pw = lookupUser(user);
  if (pw === null) throw new DaemonError('ST_DAEMON_USER', `--user ${user}: no such user`);
  try {
    for (const p of paths) if (existsSync(p)) chownSync(p, pw.uid, pw.gid);
    const initgroups = (process as { initgroups?: (user: string, extraGroup: number) => void }).initgroups;
    if (initgroups !== undefined) initgroups(user, pw.gid);
    else process.setgroups!([pw.gid]);
    process.setgid!(pw.gid);
    process.setuid(pw.uid);
  } catch (e) {
    throw new DaemonError('ST_DAEMON_USER', `--user ${user}: cannot switch to uid ${pw.uid} gid ${pw.gid}: ${(e as Error).message}`, e);
  }
  if (process.getuid() !== pw.uid || process.getgid!() !== pw.gid) {
    throw new DaemonError('ST_DAEMON_USER', `--user ${user}: still uid ${process.getuid()} gid ${process.getgid!()} after switching`);
  }
  return pw;
}
