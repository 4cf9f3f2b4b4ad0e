/**
 * The @noble/ciphers AEAD backend (audited pure JavaScript, no OpenSSL). Slow but
 * independent of OpenSSL, so the differential tests compare two implementations.
 * ChaCha20-Poly1305 seals and opens truly in place through noble's output argument;
 * noble's AES-GCM takes no output buffer, so its result is copied back.
 *
 * AES-GCM per RFC 4106 §§3–4 and ChaCha20-Poly1305 per RFC 7634 §§2–3:
 * nonce = salt (last 4 octets of KEYMAT) ‖ 8-octet IV from the packet, 16-octet ICV.
 */
import { gcm } from '@noble/ciphers/aes.js';
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { AEAD_ICV_BYTES, type AeadAlgorithm } from './aead.js';
import { SpanAead, type OpenSpan, type SealSpan } from './batch.js';

/** AEAD over @noble/ciphers. Build it through createAead() in index.ts, which checks the KEYMAT length. */
export class NobleAead extends SpanAead {
  readonly backend = 'noble' as const;
  private readonly chacha: boolean;

  constructor(algorithm: AeadAlgorithm, keymat: Uint8Array) {
    super(algorithm, keymat, (bytes) => new Uint8Array(bytes));
    this.chacha = algorithm === 'chacha20-poly1305';
  }

  protected readonly sealSpan: SealSpan = (data, ivOff, textOff, textLen, aad) => {
    this.setIv(data, ivOff);
    const text = data.subarray(textOff, textOff + textLen);
    if (this.chacha) {
      chacha20poly1305(this.key, this.nonce, aad).encrypt(text, data.subarray(textOff, textOff + textLen + AEAD_ICV_BYTES));
    } else {
      data.set(gcm(this.key, this.nonce, aad).encrypt(text), textOff);
    }
  };

  protected readonly openSpan: OpenSpan = (data, ivOff, textOff, textLen, aad) => {
    this.setIv(data, ivOff);
    const sealed = data.subarray(textOff, textOff + textLen + AEAD_ICV_BYTES);
    try {
      // Both noble ciphers verify the tag before they decrypt (it throws on a bad tag).
      if (this.chacha) {
        chacha20poly1305(this.key, this.nonce, aad).decrypt(sealed, data.subarray(textOff, textOff + textLen));
      } else {
        data.set(gcm(this.key, this.nonce, aad).decrypt(sealed), textOff);
      }
      return true;
    } catch {
      return false;
    }
  };
}
