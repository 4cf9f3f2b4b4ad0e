/**
 * The node:crypto AEAD backend: one createCipheriv/createDecipheriv per packet
 * (OpenSSL underneath, but a fresh context and key schedule each time, so it
 * costs several µs per packet). It is the fallback when the native addon is
 * absent and the reference the other backends are compared with.
 *
 * AES-GCM per RFC 4106 §§3–4 and ChaCha20-Poly1305 per RFC 7634 §§2–3:
 * nonce = salt (last 4 octets of KEYMAT) ‖ 8-octet IV from the packet, 16-octet ICV.
 * The descriptor checks and errors of batch.ts are re-exported here, where native.ts imports them.
 */
import { createCipheriv, createDecipheriv, type CipherGCMTypes } from 'node:crypto';
import { AEAD_ICV_BYTES, type AeadAlgorithm } from './aead.js';
import { SpanAead, type OpenSpan, type SealSpan } from './batch.js';

export { assertBatchDescriptors, badSpanError, batchEntryOk, destroyedError } from './batch.js';

type NodeCipherName = CipherGCMTypes | 'chacha20-poly1305';

const NODE_CIPHER: Record<AeadAlgorithm, NodeCipherName> = {
  'aes-gcm-128': 'aes-128-gcm',
  'aes-gcm-192': 'aes-192-gcm',
  'aes-gcm-256': 'aes-256-gcm',
  'chacha20-poly1305': 'chacha20-poly1305',
};

const TAG_OPTIONS = { authTagLength: AEAD_ICV_BYTES };

/** AEAD over node:crypto. Build it through createAead() in index.ts, which checks the KEYMAT length. */
export class NodeAead extends SpanAead {
  readonly backend = 'node' as const;
  private readonly cipher: NodeCipherName;

  constructor(algorithm: AeadAlgorithm, keymat: Uint8Array) {
    super(algorithm, keymat, (bytes) => Buffer.alloc(bytes));
    this.cipher = NODE_CIPHER[algorithm];
  }

  protected readonly sealSpan: SealSpan = (data, ivOff, textOff, textLen, aad) => {
    this.setIv(data, ivOff);
    const c = createCipheriv(this.cipher as CipherGCMTypes, this.key, this.nonce, TAG_OPTIONS);
    c.setAAD(aad);
    const out = c.update(data.subarray(textOff, textOff + textLen));
    const rest = c.final();
    data.set(out, textOff);
    if (rest.length > 0) data.set(rest, textOff + out.length);
    data.set(c.getAuthTag(), textOff + textLen);
  };

  protected readonly openSpan: OpenSpan = (data, ivOff, textOff, textLen, aad) => {
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
  };
}
