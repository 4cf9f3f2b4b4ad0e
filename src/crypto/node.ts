/**
 * The node:crypto AEAD backend: one createCipheriv/createDecipheriv per packet
 * (OpenSSL underneath, but a fresh context and key schedule each time, so it
 * costs several µs per packet). It is the fallback when the native addon is
 * absent and the reference the other backends are compared with.
 *
 * AES-GCM per RFC 4106 §§3–4 and ChaCha20-Poly1305 per RFC 7634 §§2–3:
 * nonce = salt (last 4 octets of KEYMAT) ‖ 8-octet IV from the packet, 16-octet ICV.
 * The descriptor checks and errors exported here are shared with noble.ts and native.ts.
 */
import { createCipheriv, createDecipheriv, type CipherGCMTypes } from 'node:crypto';
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
  type AeadBatch,
} from './aead.js';

type NodeCipherName = CipherGCMTypes | 'chacha20-poly1305';

const NODE_CIPHER: Record<AeadAlgorithm, NodeCipherName> = {
  'aes-gcm-128': 'aes-128-gcm',
  'aes-gcm-192': 'aes-192-gcm',
  'aes-gcm-256': 'aes-256-gcm',
  'chacha20-poly1305': 'chacha20-poly1305',
};

const TAG_OPTIONS = { authTagLength: AEAD_ICV_BYTES };

/**
 * Throws unless every entry of the batch has a valid descriptor; used by seal, where a bad
 * descriptor is a caller bug and no entry is sealed.
 */
export function assertBatchDescriptors(batch: AeadBatch): void {
  const { data, desc, count } = batch;
  if (count >>> 0 !== count || count * AEAD_DESC_STRIDE > desc.length || count * AEAD_BATCH_AAD_STRIDE > batch.aad.length) {
    throw new AeadError('ST_AEAD_BAD_DESCRIPTOR', `AeadBatch.count ${count} exceeds the batch capacity ${batch.capacity}`);
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

/** AEAD over node:crypto. Build it through createAead() in index.ts, which checks the KEYMAT length. */
export class NodeAead implements Aead {
  readonly backend = 'node' as const;
  private readonly cipher: NodeCipherName;
  private readonly key: Buffer;
  /** salt ‖ IV; the IV half is rewritten per packet. */
  private readonly nonce = Buffer.alloc(AEAD_SALT_BYTES + AEAD_IV_BYTES);
  private destroyed = false;

  constructor(
    readonly algorithm: AeadAlgorithm,
    keymat: Uint8Array,
  ) {
    const keyBytes = aeadKeyBytes(algorithm);
    this.cipher = NODE_CIPHER[algorithm];
    this.key = Buffer.from(keymat.subarray(0, keyBytes));
    this.nonce.set(keymat.subarray(keyBytes, keyBytes + AEAD_SALT_BYTES), 0);
  }

  private setIv(data: Uint8Array, ivOff: number): void {
    const n = this.nonce;
    for (let i = 0; i < AEAD_IV_BYTES; i++) n[AEAD_SALT_BYTES + i] = data[ivOff + i]!;
  }

  /** Seals data[textOff, textOff+textLen) in place and writes the ICV behind it (RFC 4106 §3, RFC 7634 §2). */
  seal(data: Uint8Array, ivOff: number, textOff: number, textLen: number, aad: Uint8Array): void {
    if (this.destroyed) throw destroyedError(this.backend, this.algorithm);
    if (!aeadSpanOk(data.length, ivOff, textOff, textLen)) throw badSpanError(data.length, ivOff, textOff, textLen);
    this.sealUnchecked(data, ivOff, textOff, textLen, aad);
  }

  private sealUnchecked(data: Uint8Array, ivOff: number, textOff: number, textLen: number, aad: Uint8Array): void {
    this.setIv(data, ivOff);
    const c = createCipheriv(this.cipher as CipherGCMTypes, this.key, this.nonce, TAG_OPTIONS);
    c.setAAD(aad);
    const out = c.update(data.subarray(textOff, textOff + textLen));
    const rest = c.final();
    data.set(out, textOff);
    if (rest.length > 0) data.set(rest, textOff + out.length);
    data.set(c.getAuthTag(), textOff + textLen);
  }

  /** Verifies the ICV and decrypts in place; false (text untouched) if not authentic or out of bounds. */
  open(data: Uint8Array, ivOff: number, textOff: number, textLen: number, aad: Uint8Array): boolean {
    if (this.destroyed) throw destroyedError(this.backend, this.algorithm);
    if (!aeadSpanOk(data.length, ivOff, textOff, textLen)) return false;
    return this.openUnchecked(data, ivOff, textOff, textLen, aad);
  }

  private openUnchecked(data: Uint8Array, ivOff: number, textOff: number, textLen: number, aad: Uint8Array): boolean {
    this.setIv(data, ivOff);
    const icvOff = textOff + textLen;
    const d = createDecipheriv(this.cipher as CipherGCMTypes, this.key, this.nonce, TAG_OPTIONS);
    d.setAAD(aad);
    d.setAuthTag(data.subarray(icvOff, icvOff + AEAD_ICV_BYTES));
    const out = d.update(data.subarray(textOff, icvOff));
    let rest: Buffer;
    try {
      rest = d.final();
    } catch {
      return false;
    }
    data.set(out, textOff);
    if (rest.length > 0) data.set(rest, textOff + out.length);
    return true;
  }

  /** Seals every entry; throws before sealing anything if a descriptor is out of bounds. */
  sealBatch(batch: AeadBatch): void {
    if (this.destroyed) throw destroyedError(this.backend, this.algorithm);
    assertBatchDescriptors(batch);
    const { data, desc, aad } = batch;
    for (let i = 0; i < batch.count; i++) {
      const d = i * AEAD_DESC_STRIDE;
      const a = i * AEAD_BATCH_AAD_STRIDE;
      this.sealUnchecked(data, desc[d]!, desc[d + 1]!, desc[d + 2]!, aad.subarray(a, a + desc[d + 3]!));
    }
  }

  /** Opens every entry; an entry that is out of bounds or not authentic gets ok[i] = 0. */
  openBatch(batch: AeadBatch): number {
    if (this.destroyed) throw destroyedError(this.backend, this.algorithm);
    const { data, desc, aad, ok, count } = batch;
    if (count >>> 0 !== count || count > batch.capacity) {
      throw new AeadError('ST_AEAD_BAD_DESCRIPTOR', `AeadBatch.count ${count} exceeds the batch capacity ${batch.capacity}`);
    }
    let good = 0;
    for (let i = 0; i < count; i++) {
      const d = i * AEAD_DESC_STRIDE;
      const a = i * AEAD_BATCH_AAD_STRIDE;
      const authentic =
        batchEntryOk(data.length, desc, d) &&
        this.openUnchecked(data, desc[d]!, desc[d + 1]!, desc[d + 2]!, aad.subarray(a, a + desc[d + 3]!));
      ok[i] = authentic ? 1 : 0;
      if (authentic) good++;
    }
    return good;
  }

  /** Zeroes the key and salt; later calls throw ST_AEAD_DESTROYED. */
  destroy(): void {
    this.key.fill(0);
    this.nonce.fill(0);
    this.destroyed = true;
  }
}
