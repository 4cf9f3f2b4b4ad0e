/**
 * The underlay transport of the daemon, per `underlay.transport`:
 *   - `udp`: ESP-in-UDP (RFC 3948) on underlay.address:port, the native batched
 *     socket (recvmmsg/sendmmsg) when the addon is loaded, node:dgram otherwise;
 *     received payloads enter the receive pipeline as DecapInput.udpPayload. The
 *     native socket uses UDP GSO and GRO (io/udp.ts) unless the environment sets
 *     SECTUNNEL_UDP_OFFLOAD=0 (or `gso` / `gro` for one of them): the pipelines
 *     still see one ESP packet per buffer;
 *   - `esp`: raw IP protocol 50 (needs CAP_NET_RAW); received packets are bare
 *     ESP (DecapInput.esp). No offloads (GSO/GRO exist for UDP only).
 * Both send from, and receive into, the daemon's one pool.
 *
 * Outer fragmentation: the raw ESP socket sets IP_MTU_DISCOVER = IP_PMTUDISC_DONT
 * (io/raw-esp.ts), so the kernel fragments packets above the route MTU and never
 * sets DF. So does the native UDP socket (udp.c: IP_PMTUDISC_DONT, IPv6
 * IPV6_DONTFRAG 0); a GSO run whose segments exceed the route MTU is refused by the
 * kernel and sent datagram by datagram (fragmented). The node:dgram socket cannot set
 * the option and keeps Linux's default IP_PMTUDISC_WANT: the sending kernel still
 * fragments a datagram larger than the route MTU, but unfragmented packets carry DF,
 * so a router with a smaller MTU on the path drops one and reports it (ICMP
 * frag-needed); the kernel then fragments later ones to the learnt path MTU. Either way every frame
 * whose outer packet exceeds underlay.mtu is counted (Dataplane.fragmented).
 */
import type { PacketPool } from '../../buf/pool.js';
import type { DaemonConfig } from '../../control/config.js';
import { DecapInput } from '../../core/decap.js';
import { RawEspTransport, type EspTransport } from '../../io/raw-esp.js';
import { UdpTransport } from '../../io/udp.js';
import { DaemonError } from './errors.js';

/**
 * "addr:port", or "[addr]:port" for IPv6: how an underlay endpoint is written wherever one is
 * compared or shown (handshake sources, session endpoints).
 */
export function endpointText(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

/** An open underlay transport and how its packets enter the receive pipeline. */
export interface OpenTransport {
  readonly transport: EspTransport;
  /** 'udp-native', 'udp-dgram' or 'esp-raw'. */
  readonly impl: string;
  /** DecapInput kind of every received packet. */
  readonly inputKind: number;
  /** UDP port bound (0 for raw ESP). */
  readonly port: number;
  /** The UDP socket's GSO/GRO counters; null for raw ESP (no offloads). */
  offloadStats(): Record<string, number> | null;
}

/** Datagrams per receive batch. */
export const TRANSPORT_BATCH_PACKETS = 64;

/** Opens the configured transport on `pool`; throws DaemonError naming underlay.*. */
export async function openTransport(cfg: DaemonConfig, pool: PacketPool): Promise<OpenTransport> {
  const u = cfg.underlay;
  try {
    if (u.transport === 'esp') {
      const t = await RawEspTransport.bind({ address: u.address, family: u.family, pool, batchPackets: TRANSPORT_BATCH_PACKETS });
      return { transport: t, impl: 'esp-raw', inputKind: DecapInput.esp, port: 0, offloadStats: () => null };
    }
    const t = await UdpTransport.bind({ address: u.address, port: u.port, family: u.family, pool, batchPackets: TRANSPORT_BATCH_PACKETS });
    return { transport: t, impl: `udp-${t.impl}`, inputKind: DecapInput.udpPayload, port: t.port, offloadStats: () => ({ ...t.offloadStats() }) };
  } catch (e) {
    const where = u.transport === 'esp' ? `raw ESP on ${u.address}` : `UDP ${u.family === 6 ? `[${u.address}]` : u.address}:${u.port}`;
    throw new DaemonError('ST_DAEMON_TRANSPORT', `underlay: cannot open ${where}: ${(e as Error).message}`, e);
  }
}
