/**
 * ESP (RFC 4303) byte layout, no crypto:
 *
 *   SPI (4) | Sequence Number (4) | Payload Data (IV ‖ data) | Padding (0–255)
 *   | Pad Length (1) | Next Header (1) | ICV
 *
 * `EspPacket` views the header (§2.1, §2.2); `EspTrailer` views the decrypted
 * region that ends with the trailer, just in front of the ICV (§2.4–2.6), and
 * checks the default padding 1, 2, 3, … (§2.4).
 */
import { ESP_ALIGN_BYTES, ESP_HEADER_BYTES, ESP_TRAILER_BYTES } from './constants.js';
import { WireError } from './errors.js';

/** Big-endian unsigned 32-bit read. */
function u32(b: Uint8Array, i: number): number {
  return ((b[i]! << 24) | (b[i + 1]! << 16) | (b[i + 2]! << 8) | b[i + 3]!) >>> 0;
}

/** Writes a big-endian 32-bit value. */
function put32(b: Uint8Array, i: number, v: number): void {
  b[i] = v >>> 24;
  b[i + 1] = v >>> 16;
  b[i + 2] = v >>> 8;
  b[i + 3] = v;
}

/** A view over an ESP packet: header, then everything up to and including the ICV. */
export class EspPacket {
  bytes: Uint8Array = new Uint8Array(0);
  off = 0;
  len = 0;

  /** Binds to bytes[off, off + len): 0, or WireError.truncated if the 8-octet header does not fit. */
  bind(bytes: Uint8Array, off: number, len: number): number {
    if (len < ESP_HEADER_BYTES || off < 0 || off + len > bytes.length) return WireError.truncated;
    this.bytes = bytes;
    this.off = off;
    this.len = len;
    return 0;
  }

  /** Security Parameters Index (RFC 4303 §2.1), unsigned. */
  get spi(): number {
    return u32(this.bytes, this.off);
  }
  /** Sequence number: the low 32 bits when ESN is in use (RFC 4303 §2.2). */
  get sequence(): number {
    return u32(this.bytes, this.off + 4);
  }
  /** Absolute offset of the payload (IV first for the AEADs of RFC 4106/7634). */
  get payloadOffset(): number {
    return this.off + ESP_HEADER_BYTES;
  }
  /** Octets after the header: IV, ciphertext, trailer and ICV. */
  get payloadLen(): number {
    return this.len - ESP_HEADER_BYTES;
  }
}

/** ESP header as plain data. */
export interface EspRepr {
  spi: number;
  /** Low 32 bits of the sequence number. */
  sequence: number;
}

/** Parses the ESP header at bytes[off, off + len). */
export function parseEsp(bytes: Uint8Array, off: number, len: number): EspRepr | WireError {
  if (len < ESP_HEADER_BYTES || off < 0 || off + len > bytes.length) return WireError.truncated;
  return { spi: u32(bytes, off), sequence: u32(bytes, off + 4) };
}

/** Octets emitEsp writes: 8. */
export function espBufferLen(_repr: EspRepr): number {
  return ESP_HEADER_BYTES;
}

/** Writes the ESP header at bytes[off]; returns 8. */
export function emitEsp(repr: EspRepr, bytes: Uint8Array, off: number): number {
  return emitEspHeader(bytes, off, repr.spi, repr.sequence);
}

/** Hot-path header emitter: SPI and the low 32 bits of the sequence number at bytes[off]; returns 8. */
export function emitEspHeader(bytes: Uint8Array, off: number, spi: number, sequence: number): number {
  put32(bytes, off, spi);
  put32(bytes, off + 4, sequence);
  return ESP_HEADER_BYTES;
}

/**
 * Padding octets needed so that payload + padding + the 2-octet trailer is a
 * multiple of `alignBytes` (RFC 4303 §2.4; 4 for the AEADs sectunnel uses).
 */
export function espPadLength(payloadLen: number, alignBytes = ESP_ALIGN_BYTES): number {
  const r = (payloadLen + ESP_TRAILER_BYTES) % alignBytes;
  return r === 0 ? 0 : alignBytes - r;
}

/** True if bytes[padOff, padOff + padLen) are 1, 2, 3, … (RFC 4303 §2.4, default padding). */
export function espPaddingValid(bytes: Uint8Array, padOff: number, padLen: number): boolean {
  for (let i = 0; i < padLen; i++) if (bytes[padOff + i] !== i + 1) return false;
  return true;
}

/**
 * A view over the decrypted part of an ESP packet that ends with the trailer:
 * payload ‖ padding ‖ pad length ‖ next header, the ICV excluded.
 */
export class EspTrailer {
  bytes: Uint8Array = new Uint8Array(0);
  off = 0;
  len = 0;
  private pad = 0;

  /**
   * Binds to bytes[off, off + len) (payload through next header). Returns 0, or
   * truncated (fewer than 2 octets), badPadLength (padding reaches past `off`,
   * RFC 4303 §2.5) or badPadding (pad bytes not 1, 2, 3, …).
   */
  bind(bytes: Uint8Array, off: number, len: number): number {
    if (len < ESP_TRAILER_BYTES || off < 0 || off + len > bytes.length) return WireError.truncated;
    const pad = bytes[off + len - 2]!;
    if (pad + ESP_TRAILER_BYTES > len) return WireError.badPadLength;
    if (!espPaddingValid(bytes, off + len - 2 - pad, pad)) return WireError.badPadding;
    this.bytes = bytes;
    this.off = off;
    this.len = len;
    this.pad = pad;
    return 0;
  }

  /** Pad Length field (RFC 4303 §2.5). */
  get padLength(): number {
    return this.pad;
  }
  /** Next Header field (RFC 4303 §2.6): 47 GRE for sectunnel, 59 for a dummy packet. */
  get nextHeader(): number {
    return this.bytes[this.off + this.len - 1]!;
  }
  /** Absolute offset of the payload (the start of the bound range). */
  get payloadOffset(): number {
    return this.off;
  }
  /** Payload length: the bound range less padding and trailer. */
  get payloadLen(): number {
    return this.len - ESP_TRAILER_BYTES - this.pad;
  }
  /** Absolute offset of the padding. */
  get padOffset(): number {
    return this.off + this.payloadLen;
  }
}

/** The ESP trailer as plain data. */
export interface EspTrailerRepr {
  /** Number of padding octets (0–255); the emitter writes 1, 2, 3, …. */
  padLength: number;
  nextHeader: number;
}

const trailerScratch = new EspTrailer();

/** Parses and checks the trailer of the decrypted range bytes[off, off + len) (payload through next header). */
export function parseEspTrailer(bytes: Uint8Array, off: number, len: number): EspTrailerRepr | WireError {
  const err = trailerScratch.bind(bytes, off, len);
  if (err !== 0) return err as WireError;
  return { padLength: trailerScratch.padLength, nextHeader: trailerScratch.nextHeader };
}

/** Octets emitEspTrailer writes: padding + 2. */
export function espTrailerBufferLen(repr: EspTrailerRepr): number {
  return repr.padLength + ESP_TRAILER_BYTES;
}

/** Writes padding 1, 2, 3, …, pad length and next header at bytes[off] (the end of the payload); returns the octets written. */
export function emitEspTrailer(repr: EspTrailerRepr, bytes: Uint8Array, off: number): number {
  return emitEspTrailerFields(bytes, off, repr.padLength, repr.nextHeader);
}

/** Hot-path trailer emitter: padding 1, 2, 3, …, pad length, next header at bytes[off]; returns padLength + 2. */
export function emitEspTrailerFields(bytes: Uint8Array, off: number, padLength: number, nextHeader: number): number {
  const pad = padLength & 0xff;
  for (let i = 0; i < pad; i++) bytes[off + i] = i + 1;
  bytes[off + pad] = pad;
  bytes[off + pad + 1] = nextHeader;
  return pad + ESP_TRAILER_BYTES;
}
