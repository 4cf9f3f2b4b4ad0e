/**
 * Implementation constants of the buffer layer, derived from the wire sizes.
 */
import {
  ESP_HEADER_BYTES,
  ESP_ICV_BYTES,
  ESP_IV_BYTES,
  ESP_MAX_PAD_BYTES,
  ESP_TRAILER_BYTES,
  ETH_HEADER_BYTES,
  GRE_MAX_BYTES,
  IPV6_FRAGMENT_HEADER_BYTES,
  IPV6_HEADER_BYTES,
  UDP_HEADER_BYTES,
  VLAN_TAG_BYTES,
} from '../wire/constants.js';

/** Rounds n up to a multiple of 8 so that the payload starts aligned. */
function align8(n: number): number {
  return (n + 7) & ~7;
}

/**
 * Bytes reserved in front of a guest frame so that the whole outer stack is
 * prepended in place: outer Ethernet (pcap output and packet sockets) + IPv6 with a
 * fragment header + UDP + ESP header + IV + the largest GRE header + one 802.1Q tag.
 */
export const HEADROOM_BYTES = align8(
  ETH_HEADER_BYTES +
    IPV6_HEADER_BYTES +
    IPV6_FRAGMENT_HEADER_BYTES +
    UDP_HEADER_BYTES +
    ESP_HEADER_BYTES +
    ESP_IV_BYTES +
    GRE_MAX_BYTES +
    VLAN_TAG_BYTES,
);

/** Bytes reserved behind a frame for ESP padding, the trailer and the ICV. */
export const TAILROOM_BYTES = align8(ESP_MAX_PAD_BYTES + ESP_TRAILER_BYTES + ESP_ICV_BYTES);

/** Largest guest frame a slot holds by default: a 9000-octet jumbo frame + Ethernet + one tag. */
export const DEFAULT_MAX_FRAME_BYTES = 9000 + ETH_HEADER_BYTES + VLAN_TAG_BYTES;

/** Default slot size of a pool: headroom + largest frame + tailroom. */
export const DEFAULT_SLOT_BYTES = align8(HEADROOM_BYTES + DEFAULT_MAX_FRAME_BYTES + TAILROOM_BYTES);

/** Default number of slots in a pool. */
export const DEFAULT_POOL_PACKETS = 2048;
