/**
 * Guest ports of the daemon: the TAP (created, or opened by name) or the
 * AF_PACKET attachment (io/attach.ts) of each domain, all on the daemon's one
 * packet pool.
 *
 * A port outlives reloads as long as a domain keeps its kind and interface name
 * (`samePort`) and the port has not failed; its `domainId` is then updated to the
 * domain's id in the new tables, so flows through it are never interrupted.
 * A port whose device went away (a VM stopped and libvirt deleted its vnetN)
 * reports it once through onError; the daemon marks it failed and reopens it
 * when the interface is back (housekeeping) or on the next reload.
 *
 * TAPs that sectunnel creates use TAP offloads (io/tap.ts `offload`: TCP super-frames
 * segmented on read, coalesced on write) unless the spec says otherwise or the
 * environment has SECTUNNEL_TAP_OFFLOAD=0 (for before/after benchmarks).
 */
import { existsSync } from 'node:fs';
import type { PacketPool } from '../../buf/pool.js';
import type { DaemonDomainConfig } from '../../control/config.js';
import { AttachPort, type GuestPort } from '../../io/attach.js';
import { TapDevice, tapOffloadSupported } from '../../io/tap.js';
import { DaemonError } from './errors.js';

export type { GuestPort };

/** How a domain reaches its guest. */
export interface PortSpec {
  readonly kind: 'tap' | 'attach';
  /** TAP or interface name. */
  readonly name: string;
  /** TAP only: sectunnel creates it (and it disappears when the daemon closes it). */
  readonly create: boolean;
  /** TAP only: MTU to set, if configured. */
  readonly mtu?: number;
  /** TAP only: TAP offloads (default: tapOffloadDefault(create)). */
  readonly offload?: boolean;
}

/**
 * Whether a TAP uses offloads when its spec does not say: TAPs sectunnel creates do, unless
 * SECTUNNEL_TAP_OFFLOAD=0 or the native addon predates them.
 */
export function tapOffloadDefault(create: boolean, env: NodeJS.ProcessEnv = process.env): boolean {
  return create && env.SECTUNNEL_TAP_OFFLOAD !== '0' && tapOffloadSupported();
}

/** The port spec of a configured domain. */
export function portSpecOf(d: DaemonDomainConfig): PortSpec {
  if (d.tap !== undefined) {
    const t = d.tap;
    return { kind: 'tap', name: t.name, create: t.create, ...(t.mtu !== undefined && { mtu: t.mtu }), ...(t.offload !== undefined && { offload: t.offload }) };
  }
  return { kind: 'attach', name: d.attach.interface, create: false };
}

/**
 * True if a port opened for `a` serves `b` too: same kind, interface and configured TAP
 * offloads (`tap.offload` is applied when the TAP is opened, so changing it reopens the port).
 * An MTU change is applied in place; `create` only matters when a TAP is opened, so flipping
 * it keeps the port (and the offloads it was opened with).
 */
export function samePort(a: PortSpec, b: PortSpec): boolean {
  return a.kind === b.kind && a.name === b.name && (a.offload ?? null) === (b.offload ?? null);
}

/** A guest port and the domain it serves now; `domainId` -1 while it is being closed. */
export class PortHandle {
  domainId: number;
  /** The errno that ended the port (its device went away), or 0 while it works. */
  failedErrno = 0;
  /** When the daemon last tried to reopen a failed port (ms), and whether that failure was logged. */
  retryAtMs = 0;
  retryLogged = false;
  constructor(
    /** The spec it was opened with (its MTU updated when a reload changes it). */
    public spec: PortSpec,
    readonly port: GuestPort,
    domainId: number,
    /** Config path of the domain, for messages (`domains[2]`). */
    public path: string,
  ) {
    this.domainId = domainId;
  }
}

/** True if `name` is an interface of this network namespace. */
export function interfaceExists(name: string): boolean {
  return existsSync(`/sys/class/net/${name}`);
}

/** True if `name` is a TUN/TAP device of this network namespace. */
function isTunTap(name: string): boolean {
  return existsSync(`/sys/class/net/${name}/tun_flags`);
}

/**
 * Opens the port of a domain on `pool`; throws DaemonError naming the config field.
 * `create: false` TAPs must exist (libvirt's vnetN); `create: true` ones are made
 * non-persistent, so they vanish when the daemon closes them.
 */
export function openPort(spec: PortSpec, pool: PacketPool, path: string): GuestPort {
  const field = spec.kind === 'tap' ? `${path}.tap.name` : `${path}.attach.interface`;
  try {
    if (spec.kind === 'attach') {
      if (!interfaceExists(spec.name)) throw new DaemonError('ST_DAEMON_PORT', `${field}: interface "${spec.name}" does not exist in this network namespace`);
      return AttachPort.open({ device: spec.name, pool });
    }
    if (!spec.create) {
      if (!interfaceExists(spec.name)) {
        throw new DaemonError(
          'ST_DAEMON_PORT',
          `${field}: TAP "${spec.name}" does not exist (tap.create is false: sectunnel attaches to a TAP another program made; set create: true to have sectunnel make it)`,
        );
      }
      if (!isTunTap(spec.name)) {
        throw new DaemonError('ST_DAEMON_PORT', `${field}: "${spec.name}" exists but is not a TAP device; use attach: {interface: ${spec.name}} for other interfaces`);
      }
    }
    return TapDevice.open({
      name: spec.name,
      pool,
      up: true,
      ...(spec.create && { persistent: false }),
      ...(spec.mtu !== undefined && { mtuBytes: spec.mtu }),
      offload: spec.offload ?? tapOffloadDefault(spec.create),
    });
  } catch (e) {
    if (e instanceof DaemonError) throw e;
    throw new DaemonError('ST_DAEMON_PORT', `${field}: cannot open ${spec.kind === 'tap' ? 'TAP' : 'interface'} "${spec.name}": ${(e as Error).message}`, e);
  }
}

/** Applies a changed TAP MTU to a kept port (best effort: returns the error text, or null). */
export function applyMtu(h: PortHandle, spec: PortSpec): string | null {
  if (spec.kind !== 'tap' || spec.mtu === undefined || spec.mtu === h.spec.mtu) return null;
  try {
    (h.port as TapDevice).setLink({ mtuBytes: spec.mtu });
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}
