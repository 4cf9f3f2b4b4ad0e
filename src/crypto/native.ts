/**
 * The native AEAD backend: native-fallback/src/aead.c holds one OpenSSL cipher
 * context per direction, keyed once, and seals or opens a packet, or a whole
 * batch, in place in one call. The fastest backend; chosen by default when the
 * addon is built.
 *
 * AES-GCM per RFC 4106 §§3–4 and ChaCha20-Poly1305 per RFC 7634 §§2–3:
 * nonce = salt (last 4 octets of KEYMAT) ‖ 8-octet IV from the packet, 16-octet ICV.
 */
import { nativeAddon, nativeLoadError } from '../native.js';
import { AeadError, aeadSpanOk, type Aead, type AeadAlgorithm, type AeadBatch } from './aead.js';
import { badSpanError, destroyedError } from './node.js';

/** An opaque handle from aeadCreate (a napi external with a finalizer that frees the contexts). */
type NativeHandle = { readonly __brand: 'sectunnel-aead' };

/** The AEAD functions of the addon (see the comment at the top of aead.c). */
export interface NativeAeadFunctions {
  aeadCreate(algorithm: AeadAlgorithm, keymat: Uint8Array): NativeHandle;
  aeadSeal(h: NativeHandle, data: Uint8Array, ivOff: number, textOff: number, textLen: number, aad: Uint8Array): void;
  aeadOpen(h: NativeHandle, data: Uint8Array, ivOff: number, textOff: number, textLen: number, aad: Uint8Array): boolean;
  aeadSealBatch(h: NativeHandle, data: Uint8Array, desc: Int32Array, aad: Uint8Array, count: number): void;
  aeadOpenBatch(h: NativeHandle, data: Uint8Array, desc: Int32Array, aad: Uint8Array, count: number, ok: Uint8Array): number;
  aeadDestroy(h: NativeHandle): void;
}

const FUNCTIONS = ['aeadCreate', 'aeadSeal', 'aeadOpen', 'aeadSealBatch', 'aeadOpenBatch', 'aeadDestroy'] as const;

let fns: NativeAeadFunctions | null | undefined;
let why: string | null = null;

/** The addon's AEAD functions, or null (see nativeAeadUnavailableReason()). */
export function nativeAeadFunctions(): NativeAeadFunctions | null {
  if (fns !== undefined) return fns;
  const addon = nativeAddon();
  if (addon === null) {
    why = `native addon not loaded: ${nativeLoadError()}`;
    fns = null;
  } else {
    const absent = FUNCTIONS.filter((f) => typeof addon[f] !== 'function');
    if (absent.length > 0) {
      why = `native addon lacks ${absent.join(', ')} (built without src/aead.c?)`;
      fns = null;
    } else {
      fns = addon as unknown as NativeAeadFunctions;
    }
  }
  return fns;
}

/** Why the native backend cannot be used, or null if it can. */
export function nativeAeadUnavailableReason(): string | null {
  nativeAeadFunctions();
  return why;
}

/** Turns an addon error with an ST_AEAD_ code into an AeadError; anything else is rethrown as is. */
function rethrow(e: unknown): never {
  const code = (e as { code?: unknown }).code;
  if (code === 'ST_AEAD_BAD_DESCRIPTOR' || code === 'ST_AEAD_DESTROYED') throw new AeadError(code, (e as Error).message);
  throw e;
}

/** AEAD over the addon's OpenSSL contexts. Build it through createAead() in index.ts. */
export class NativeAead implements Aead {
  readonly backend = 'native' as const;
  private readonly fn: NativeAeadFunctions;
  private readonly handle: NativeHandle;
  private destroyed = false;

  constructor(
    readonly algorithm: AeadAlgorithm,
    keymat: Uint8Array,
  ) {
    const f = nativeAeadFunctions();
    if (f === null) throw new AeadError('ST_AEAD_BACKEND_UNAVAILABLE', `crypto backend native is unavailable: ${why}`);
    this.fn = f;
    this.handle = f.aeadCreate(algorithm, keymat);
  }

  /** Seals data[textOff, textOff+textLen) in place and writes the ICV behind it (RFC 4106 §3, RFC 7634 §2). */
  seal(data: Uint8Array, ivOff: number, textOff: number, textLen: number, aad: Uint8Array): void {
    if (this.destroyed) throw destroyedError(this.backend, this.algorithm);
    if (!aeadSpanOk(data.length, ivOff, textOff, textLen)) throw badSpanError(data.length, ivOff, textOff, textLen);
    this.fn.aeadSeal(this.handle, data, ivOff, textOff, textLen, aad);
  }

  /** Verifies the ICV and decrypts in place; false if not authentic (text then unspecified) or out of bounds. */
  open(data: Uint8Array, ivOff: number, textOff: number, textLen: number, aad: Uint8Array): boolean {
    if (this.destroyed) throw destroyedError(this.backend, this.algorithm);
    if (!aeadSpanOk(data.length, ivOff, textOff, textLen)) return false;
    return this.fn.aeadOpen(this.handle, data, ivOff, textOff, textLen, aad);
  }

  /** Seals every entry in one addon call; throws before sealing anything if a descriptor is out of bounds. */
  sealBatch(batch: AeadBatch): void {
    if (this.destroyed) throw destroyedError(this.backend, this.algorithm);
    try {
      this.fn.aeadSealBatch(this.handle, batch.data, batch.desc, batch.aad, batch.count);
    } catch (e) {
      rethrow(e);
    }
  }

  /** Opens every entry in one addon call; an entry that is out of bounds or not authentic gets ok[i] = 0. */
  openBatch(batch: AeadBatch): number {
    if (this.destroyed) throw destroyedError(this.backend, this.algorithm);
    try {
      return this.fn.aeadOpenBatch(this.handle, batch.data, batch.desc, batch.aad, batch.count, batch.ok);
    } catch (e) {
      rethrow(e);
    }
  }

  /** Frees both OpenSSL contexts (their key schedules are cleansed) and the salt; later calls throw ST_AEAD_DESTROYED. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.fn.aeadDestroy(this.handle);
  }
}
