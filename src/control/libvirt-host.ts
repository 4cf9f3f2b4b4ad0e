/**
 * The daemon's config source: a config file (JSON/YAML, docs/config.md) or a
 * libvirt network definition (`sectunnel run --config /etc/sectunnel/tvd.xml`,
 * docs/libvirt.md "Running from the network XML").
 *
 * For a network definition: this host is the `<peer>` whose address is one of
 * this machine's addresses (else the one named like os.hostname()); its private
 * key is HOST.key in the XML's folder (`sectunnel keygen --out /etc/sectunnel/HOST.key`);
 * the network has no domains — guests come from runtime attach (the libvirt
 * hook); pre-shared keys are read from /etc/libvirt/secrets; everything else has
 * the config file's defaults.
 */
import { networkInterfaces } from 'node:os';
import { dirname } from 'node:path';
import type { DaemonConfig } from './config.js';
import { loadDaemonConfig } from './config.js';
import { importLibvirt } from './libvirt.js';

/** True if `path` names a libvirt network definition rather than a config file (by its extension). */
export function isLibvirtConfig(path: string): boolean {
  return /\.xml$/i.test(path);
}

/** The addresses of this network namespace's interfaces (RFC 5952 text for IPv6). */
export function localAddresses(): string[] {
  return Object.values(networkInterfaces())
    .flatMap((l) => l ?? [])
    .map((a) => a.address);
}

/** A loaded config and notes about it (libvirt import notes). */
export interface HostConfig {
  readonly cfg: DaemonConfig;
  readonly notes: readonly string[];
}

/** Loads the daemon config from `path` (see the file comment); throws ConfigError. */
export async function loadHostConfig(path: string): Promise<HostConfig> {
  if (!isLibvirtConfig(path)) return { cfg: await loadDaemonConfig(path), notes: [] };
  const r = await importLibvirt(path, [], { localAddresses: localAddresses(), hostKeyDir: dirname(path), requireHostKey: true });
  return { cfg: r.config, notes: r.warnings };
}
