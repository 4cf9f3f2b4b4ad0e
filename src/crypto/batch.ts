/**
 * What the JavaScript backends (node.ts, noble.ts) share around their
 * per-packet seal and open: the AeadBatch descriptor checks, the errors of the
 * Aead contract, the loops that run a batch one entry at a time, and
 * `SpanAead`, their common base (key and salt‖IV nonce, the guards of every
 * Aead method, destroy); a backend supplies only sealSpan and openSpan.
 *
 * sealEach: 1. check every descriptor (throw before sealing anything),
 *           2. seal entry i over data with its AAD aad[16i, 16i+aadLen).
 * openEach: 1. check the count, 2. per entry: descriptor in bounds and
 *           authentic -> ok[i] = 1, else ok[i] = 0 (never throws per entry).
 */
import {
  AEAD_BATCH_AAD_STRIDE,
  AEAD_DESC_STRIDE,
  AEAD_ICV_BYTES,
  AEAD_IV_BYTES,
  AEAD_SALT_BYTES,
  AeadError,
  aeadKeyBytes,
  aeadSpanOk,
  type Aead,
  type AeadAlgorithm,
  type AeadBackendName,
  type AeadBatch,
} from './aead.js';

/** A backend's in-place seal of one packet whose span is already checked. */
export type SealSpan = (data: Uint8Array, ivOff: number, textOff: number, textLen: number, aad: Uint8Array) => void;
/** A backend's in-place open of one packet whose span is already checked; false if not authentic. */
export type OpenSpan = (data: Uint8Array, ivOff: number, textOff: number, textLen: number, aad: Uint8Array) => boolean;

/** The error a batch whose count is not a whole number within its capacity gets. */
function badCountError(batch: AeadBatch): AeadError {
  return new AeadError('ST_AEAD_BAD_DESCRIPTOR', `AeadBatch.count ${batch.count} exceeds the batch capacity ${batch.capacity}`);
}

/**
 * Throws unless every entry of the batch has a valid descriptor; used by seal, where a bad
 * descriptor is a caller bug and no entry is sealed.
 */
export function assertBatchDescriptors(batch: AeadBatch): void {
  const { data, desc, count } = batch;
  if (count >>> 0 !== count || count * AEAD_DESC_STRIDE > desc.length || count * AEAD_BATCH_AAD_STRIDE > batch.aad.length) {
    throw badCountError(batch);
  }
  for (let i = 0; i < count; i++) {
    const d = i * AEAD_DESC_STRIDE;
    if (!batchEntryOk(data.length, desc, d)) {
      throw new AeadError(
        'ST_AEAD_BAD_DESCRIPTOR',
        `AeadBatch entry ${i} (ivOff ${desc[d]}, textOff ${desc[d + 1]}, textLen ${desc[d + 2]}, aadLen ${desc[d + 3]}) ` +
          `does not fit in data of ${data.length} octets`,
      );
    }
  }
}

/** True if the batch entry at desc[d..d+4) lies inside data and its AAD fits in a 16-octet slot. */
export function batchEntryOk(dataLen: number, desc: Int32Array, d: number): boolean {
  const aadLen = desc[d + 3]!;
  return aadLen >= 0 && aadLen <= AEAD_BATCH_AAD_STRIDE && aeadSpanOk(dataLen, desc[d]!, desc[d + 1]!, desc[d + 2]!);
}

/** The error seal throws for an out-of-bounds span. */
export function badSpanError(dataLen: number, ivOff: number, textOff: number, textLen: number): AeadError {
  return new AeadError(
    'ST_AEAD_BAD_DESCRIPTOR',
    `seal span (ivOff ${ivOff}, textOff ${textOff}, textLen ${textLen} + ${AEAD_ICV_BYTES}-octet ICV) does not fit in data of ${dataLen} octets`,
  );
}

/** The error every method throws after destroy(). */
export function destroyedError(backend: string, algorithm: AeadAlgorithm): AeadError {
  return new AeadError('ST_AEAD_DESTROYED', `${backend} ${algorithm} Aead used after destroy()`);
}

/** Seals every entry with `seal`; throws AeadError(ST_AEAD_BAD_DESCRIPTOR) before sealing anything if a descriptor is out of bounds. */
export function sealEach(batch: AeadBatch, seal: SealSpan): void {
  assertBatchDescriptors(batch);
  const { data, desc, aad } = batch;
  for (let i = 0; i < batch.count; i++) {
    const d = i * AEAD_DESC_STRIDE;
    const a = i * AEAD_BATCH_AAD_STRIDE;
    seal(data, desc[d]!, desc[d + 1]!, desc[d + 2]!, aad.subarray(a, a + desc[d + 3]!));
  }
}

/** Opens every entry with `open`, sets ok[i] (0: out of bounds or not authentic) and returns how many were authentic. */
export function openEach(batch: AeadBatch, open: OpenSpan): number {
  const { data, desc, aad, ok, count } = batch;
  if (count >>> 0 !== count || count > batch.capacity) throw badCountError(batch);
  let good = 0;
  for (let i = 0; i < count; i++) {
    const d = i * AEAD_DESC_STRIDE;
    const a = i * AEAD_BATCH_AAD_STRIDE;
    const authentic = batchEntryOk(data.length, desc, d) && open(data, desc[d]!, desc[d + 1]!, desc[d + 2]!, aad.subarray(a, a + desc[d + 3]!));
    ok[i] = authentic ? 1 : 0;
    if (authentic) good++;
  }
  return good;
}

/**
 * Base of the JavaScript backends: holds the key and the nonce (salt from the KEYMAT's last
 * 4 octets ‖ the packet's 8-octet IV, RFC 4106 §4, RFC 7634 §2), checks spans and the
 * destroyed state, runs batches entry by entry; subclasses seal and open one checked span.
 */
export abstract class SpanAead implements Aead {
  abstract readonly backend: AeadBackendName;
  protected readonly key: Uint8Array;
  /** salt ‖ IV; the IV half is rewritten per packet by setIv. */
  protected readonly nonce: Uint8Array;
  private destroyed = false;
  protected abstract readonly sealSpan: SealSpan;
  protected abstract readonly openSpan: OpenSpan;

  constructor(
    readonly algorithm: AeadAlgorithm,
    keymat: Uint8Array,
    /** Makes the key and nonce buffers (node:crypto wants Buffers, noble plain Uint8Arrays). */
    alloc: (bytes: number) => Uint8Array,
  ) {
    const keyBytes = aeadKeyBytes(algorithm);
    this.key = alloc(keyBytes);
    this.key.set(keymat.subarray(0, keyBytes));
    this.nonce = alloc(AEAD_SALT_BYTES + AEAD_IV_BYTES);
    this.nonce.set(keymat.subarray(keyBytes, keyBytes + AEAD_SALT_BYTES), 0);
  }

  /** Copies the packet's IV at data[ivOff, ivOff+8) into the nonce. */
  protected setIv(data: Uint8Array, ivOff: number): void {
    const n = this.nonce;
    for (let i = 0; i < AEAD_IV_BYTES; i++) n[AEAD_SALT_BYTES + i] = data[ivOff + i]!;
  }

  /** Seals data[textOff, textOff+textLen) in place and writes the ICV behind it (RFC 4106 §3, RFC 7634 §2). */
  seal(data: Uint8Array, ivOff: number, textOff: number, textLen: number, aad: Uint8Array): void {
    if (this.destroyed) throw destroyedError(this.backend, this.algorithm);
    if (!aeadSpanOk(data.length, ivOff, textOff, textLen)) throw badSpanError(data.length, ivOff, textOff, textLen);
    this.sealSpan(data, ivOff, textOff, textLen, aad);
  }

  /** Verifies the ICV and decrypts in place; false (text untouched) if not authentic or out of bounds. */
  open(data: Uint8Array, ivOff: number, textOff: number, textLen: number, aad: Uint8Array): boolean {
    if (this.destroyed) throw destroyedError(this.backend, this.algorithm);
    if (!aeadSpanOk(data.length, ivOff, textOff, textLen)) return false;
    return this.openSpan(data, ivOff, textOff, textLen, aad);
  }

  /** Seals every entry; throws before sealing anything if a descriptor is out of bounds. */
  sealBatch(batch: AeadBatch): void {
    if (this.destroyed) throw destroyedError(this.backend, this.algorithm);
    sealEach(batch, this.sealSpan);
  }

  /** Opens every entry; an entry that is out of bounds or not authentic gets ok[i] = 0. */
  openBatch(batch: AeadBatch): number {
    if (this.destroyed) throw destroyedError(this.backend, this.algorithm);
    return openEach(batch, this.openSpan);
  }

  /** Zeroes the key and salt; later calls throw ST_AEAD_DESTROYED. */
  destroy(): void {
    this.key.fill(0);
    this.nonce.fill(0);
    this.destroyed = true;
  }
}
