// PacketBuf (src/buf/packet-buf.ts): the live window [start, end) moves inside a fixed slot;
// every move is bounds-checked and a refused move changes nothing. Also the headroom
// reserved by buf/constants.ts against the wire sizes it must hold.
import { describe, expect, it } from 'vitest';
import { DEFAULT_MAX_FRAME_BYTES, DEFAULT_SLOT_BYTES, HEADROOM_BYTES, TAILROOM_BYTES } from '../../src/buf/constants.js';
import { PacketBuf } from '../../src/buf/packet-buf.js';
import {
  ESP_HEADER_BYTES,
  ESP_ICV_BYTES,
  ESP_IV_BYTES,
  ESP_MAX_PAD_BYTES,
  ESP_TRAILER_BYTES,
  ETH_HEADER_BYTES,
  GRE_MAX_BYTES,
  IPV4_HEADER_BYTES,
  IPV6_FRAGMENT_HEADER_BYTES,
  IPV6_HEADER_BYTES,
  UDP_HEADER_BYTES,
  VLAN_TAG_BYTES,
} from '../../src/wire/constants.js';
import { hex, toHex } from '../helpers/hex.js';

const SLOT_BYTES = HEADROOM_BYTES + 64 + 16;

/** A buffer over a fresh slot of SLOT_BYTES octets, as a pool would hand out. */
function fresh(): PacketBuf {
  return new PacketBuf(new Uint8Array(SLOT_BYTES), 0, 0);
}

/** [start, end] of a buffer. */
function window(b: PacketBuf): [number, number] {
  return [b.start, b.end];
}

describe('headroom and tailroom constants', () => {
  it('HEADROOM_BYTES holds the largest outer stack: Ethernet + IPv6 + fragment + UDP + ESP + IV + GRE (all options) + 802.1Q', () => {
    const outer =
      ETH_HEADER_BYTES + // 14, outer Ethernet (pcap output, packet sockets)
      IPV6_HEADER_BYTES + // 40, the larger outer IP header (IPv4 is 20 without options)
      IPV6_FRAGMENT_HEADER_BYTES + // 8
      UDP_HEADER_BYTES + // 8, ESP-in-UDP (RFC 3948)
      ESP_HEADER_BYTES + // 8, SPI + sequence
      ESP_IV_BYTES + // 8
      GRE_MAX_BYTES + // 16, base + checksum + key + sequence
      VLAN_TAG_BYTES; // 4, the label's tag on the inner frame
    expect(IPV6_HEADER_BYTES).toBeGreaterThan(IPV4_HEADER_BYTES);
    expect(HEADROOM_BYTES).toBeGreaterThanOrEqual(outer);
    expect(HEADROOM_BYTES % 8).toBe(0); // payload starts 8-aligned
  });

  it('TAILROOM_BYTES holds the largest ESP padding, the trailer and the ICV', () => {
    expect(TAILROOM_BYTES).toBeGreaterThanOrEqual(ESP_MAX_PAD_BYTES + ESP_TRAILER_BYTES + ESP_ICV_BYTES);
  });

  it('a default slot takes a largest frame and the whole encapsulation in place', () => {
    const b = new PacketBuf(new Uint8Array(DEFAULT_SLOT_BYTES), 0, 0);
    expect(b.load(new Uint8Array(DEFAULT_MAX_FRAME_BYTES))).toBe(true);
    // Send path (DESIGN.md "Data flow" step 4–5), outermost last.
    for (const n of [VLAN_TAG_BYTES, GRE_MAX_BYTES, ESP_IV_BYTES, ESP_HEADER_BYTES, UDP_HEADER_BYTES,
      IPV6_FRAGMENT_HEADER_BYTES, IPV6_HEADER_BYTES, ETH_HEADER_BYTES]) {
      expect(b.prepend(n), `prepend ${n}`).toBeGreaterThanOrEqual(0);
    }
    expect(b.append(ESP_MAX_PAD_BYTES + ESP_TRAILER_BYTES)).toBeGreaterThan(0);
    expect(b.append(ESP_ICV_BYTES)).toBeGreaterThan(0);
  });
});

describe('PacketBuf', () => {
  it('starts empty at the standard headroom', () => {
    const b = fresh();
    expect(window(b)).toEqual([HEADROOM_BYTES, HEADROOM_BYTES]);
    expect(b.length).toBe(0);
    expect(b.headroom).toBe(HEADROOM_BYTES);
    expect(b.tailroom).toBe(SLOT_BYTES - HEADROOM_BYTES);
  });

  it('prepend: exactly the headroom succeeds, one more octet is refused', () => {
    const b = fresh();
    expect(b.prepend(HEADROOM_BYTES - 8)).toBe(8);
    expect(b.prepend(9)).toBe(-1); // one too many
    expect(window(b)).toEqual([8, HEADROOM_BYTES]);
    expect(b.prepend(8)).toBe(0); // exactly enough
    expect(b.headroom).toBe(0);
    expect(b.prepend(1)).toBe(-1);
    expect(b.prepend(0)).toBe(0);
    expect(window(b)).toEqual([0, HEADROOM_BYTES]);
    expect(b.length).toBe(HEADROOM_BYTES);
  });

  it('prepend of more than the whole headroom at once changes nothing', () => {
    const b = fresh();
    expect(b.prepend(HEADROOM_BYTES + 1)).toBe(-1);
    expect(window(b)).toEqual([HEADROOM_BYTES, HEADROOM_BYTES]);
  });

  it('append: exactly the tailroom succeeds and returns the old end, one more is refused', () => {
    const b = fresh();
    const room = b.tailroom;
    expect(b.append(room + 1)).toBe(-1);
    expect(window(b)).toEqual([HEADROOM_BYTES, HEADROOM_BYTES]);
    expect(b.append(room - 2)).toBe(HEADROOM_BYTES);
    expect(b.append(3)).toBe(-1);
    expect(b.append(2)).toBe(SLOT_BYTES - 2);
    expect(b.tailroom).toBe(0);
    expect(b.append(1)).toBe(-1);
    expect(window(b)).toEqual([HEADROOM_BYTES, SLOT_BYTES]);
  });

  it('trimFront and trimBack: exactly the live length succeeds, one more is refused', () => {
    const b = fresh();
    b.load(hex('0102030405'));
    expect(b.trimFront(6)).toBe(false);
    expect(b.trimBack(6)).toBe(false);
    expect(toHex(b.view())).toBe('0102030405');
    expect(b.trimFront(1)).toBe(true);
    expect(b.trimBack(1)).toBe(true);
    expect(toHex(b.view())).toBe('020304');
    expect(b.trimFront(4)).toBe(false);
    expect(b.trimFront(3)).toBe(true); // exactly the rest
    expect(b.length).toBe(0);
    expect(b.trimBack(1)).toBe(false);
    expect(b.trimBack(0)).toBe(true);
    expect(window(b)).toEqual([HEADROOM_BYTES + 4, HEADROOM_BYTES + 4]);
  });

  it('reset empties at the standard headroom or a given offset', () => {
    const b = fresh();
    b.load(hex('aabbcc'));
    b.prepend(4);
    b.reset();
    expect(window(b)).toEqual([HEADROOM_BYTES, HEADROOM_BYTES]);
    b.reset(10);
    expect(window(b)).toEqual([10, 10]);
    expect(b.headroom).toBe(10);
  });

  it('load copies the source to the headroom; the source can change afterwards', () => {
    const b = fresh();
    const src = hex('deadbeef');
    expect(b.load(src)).toBe(true);
    src[0] = 0;
    expect(window(b)).toEqual([HEADROOM_BYTES, HEADROOM_BYTES + 4]);
    expect(toHex(b.view())).toBe('deadbeef');
    expect(toHex(b.bytes, HEADROOM_BYTES, 4)).toBe('deadbeef');
  });

  it('load: exactly filling the slot succeeds, one octet more is refused and changes nothing', () => {
    const b = fresh();
    b.load(hex('0102'), 20);
    const exact = new Uint8Array(SLOT_BYTES - HEADROOM_BYTES).fill(7);
    expect(b.load(exact)).toBe(true);
    expect(window(b)).toEqual([HEADROOM_BYTES, SLOT_BYTES]);
    b.load(hex('0102'), 20);
    const before = b.bytes.slice();
    expect(b.load(new Uint8Array(SLOT_BYTES - HEADROOM_BYTES + 1).fill(9))).toBe(false);
    expect(window(b)).toEqual([20, 22]);
    expect(b.bytes).toEqual(before);
    expect(b.load(hex('aa'), SLOT_BYTES - 1)).toBe(true); // last octet of the slot
    expect(b.load(hex('aa'), SLOT_BYTES)).toBe(false);
  });

  it('view shares memory with the slot', () => {
    const b = fresh();
    b.load(hex('00112233'));
    const v = b.view();
    expect(v.buffer).toBe(b.bytes.buffer);
    v[0] = 0x99;
    expect(b.bytes[HEADROOM_BYTES]).toBe(0x99);
  });

  it('prepended header + payload + appended trailer read back in order', () => {
    const b = fresh();
    b.load(hex('cafe'));
    b.bytes.set(hex('0a0b'), b.prepend(2));
    b.bytes.set(hex('ff'), b.append(1));
    expect(toHex(b.view())).toBe('0a0bcafeff');
  });
});

describe('PacketBuf refuses negative sizes', () => {
  it('prepend/append/trim with n < 0 and load at a negative offset change nothing', () => {
    const b = new PacketBuf(new Uint8Array(512), 0, 0);
    b.load(new Uint8Array(10));
    const [s, e] = [b.start, b.end];
    expect(b.prepend(-5)).toBe(-1);
    expect(b.append(-5)).toBe(-1);
    expect(b.trimFront(-1)).toBe(false);
    expect(b.trimBack(-1)).toBe(false);
    expect(b.load(new Uint8Array(4), -1)).toBe(false);
    expect([b.start, b.end]).toEqual([s, e]);
  });
});
