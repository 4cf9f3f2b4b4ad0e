/**
 * Builds keyed AEADs for SAs. The backend is chosen once, at load:
 * 1. SECTUNNEL_CRYPTO=native|node|noble, if set (an unknown value, or native when the
 *    addon is missing, is an error naming the variable and its value);
 * 2. otherwise native, if the addon loads and exports the AEAD functions;
 * 3. otherwise node (node:crypto).
 * noble (@noble/ciphers, pure JS) is never chosen automatically; it exists for tests
 * and for platforms where neither OpenSSL route works.
 */
import { AEAD_ALGORITHMS, AEAD_BACKENDS, AeadError, aeadKeymatBytes, aeadKeyBytes } from './aead.js';
import type { Aead, AeadAlgorithm, AeadBackendName } from './aead.js';
import { NodeAead } from './node.js';
import { NobleAead } from './noble.js';
import { NativeAead, nativeAeadUnavailableReason } from './native.js';

export { AeadBatch, AeadError, AEAD_ALGORITHMS, AEAD_BACKENDS, aeadKeymatBytes } from './aead.js';
export type { Aead, AeadAlgorithm, AeadBackendName } from './aead.js';

/** The environment variable that overrides the backend choice. */
export const CRYPTO_ENV = 'SECTUNNEL_CRYPTO';

/** Which backend createAead() uses by default, and why (for the daemon's log line). */
export interface BackendChoice {
  readonly backend: AeadBackendName;
  readonly reason: string;
}

/** Why each backend cannot be used, or null if it can. */
function unavailable(name: AeadBackendName): string | null {
  switch (name) {
    case 'node':
      return null;
    case 'noble':
      return null;
    case 'native':
      return nativeAeadUnavailableReason();
  }
}

function choose(env: string | undefined): BackendChoice | AeadError {
  if (env !== undefined && env !== '') {
    if (!(AEAD_BACKENDS as readonly string[]).includes(env)) {
      return new AeadError('ST_AEAD_BAD_BACKEND', `${CRYPTO_ENV}=${env} is not a crypto backend; use one of ${AEAD_BACKENDS.join(', ')}`);
    }
    const name = env as AeadBackendName;
    const why = unavailable(name);
    if (why !== null) return new AeadError('ST_AEAD_BACKEND_UNAVAILABLE', `${CRYPTO_ENV}=${env} but ${why}`);
    return { backend: name, reason: `${CRYPTO_ENV}=${env}` };
  }
  const nativeWhy = unavailable('native');
  if (nativeWhy === null) return { backend: 'native', reason: 'native addon loaded (OpenSSL contexts per SA)' };
  return { backend: 'node', reason: `node:crypto fallback: ${nativeWhy}` };
}

const choice = choose(process.env[CRYPTO_ENV]);

/** The default backend and the reason it was chosen; throws the AeadError if SECTUNNEL_CRYPTO is unusable. */
export function selectedBackend(): BackendChoice {
  if (choice instanceof AeadError) throw choice;
  return choice;
}

/** Backends that can be used in this process (tests run their suite over each). */
export function availableBackends(): AeadBackendName[] {
  return AEAD_BACKENDS.filter((b) => unavailable(b) === null);
}

/** Why a backend cannot be used here, or null if it can. */
export function backendUnavailableReason(name: AeadBackendName): string | null {
  return unavailable(name);
}

/**
 * A keyed AEAD for one SA. keymat is key ‖ 4-octet salt (RFC 4106 §8.1, RFC 7634 §4) and is
 * copied, so the caller may zero its own copy. backend defaults to selectedBackend().
 */
export function createAead(algorithm: AeadAlgorithm, keymat: Uint8Array, backend?: AeadBackendName): Aead {
  if (!(AEAD_ALGORITHMS as readonly string[]).includes(algorithm)) {
    throw new AeadError('ST_AEAD_BAD_ALGORITHM', `AEAD algorithm "${String(algorithm)}" is not one of ${AEAD_ALGORITHMS.join(', ')}`);
  }
  const expected = aeadKeymatBytes(algorithm);
  if (!(keymat instanceof Uint8Array) || keymat.length !== expected) {
    const actual = keymat instanceof Uint8Array ? `${keymat.length} octets` : typeof keymat;
    throw new AeadError(
      'ST_AEAD_BAD_KEYMAT',
      `${algorithm} KEYMAT must be ${expected} octets (${aeadKeyBytes(algorithm)}-octet key ‖ 4-octet salt), got ${actual}`,
    );
  }
  const name = backend ?? selectedBackend().backend;
  if (!(AEAD_BACKENDS as readonly string[]).includes(name)) {
    throw new AeadError('ST_AEAD_BAD_BACKEND', `crypto backend "${String(name)}" is not one of ${AEAD_BACKENDS.join(', ')}`);
  }
  const why = unavailable(name);
  if (why !== null) throw new AeadError('ST_AEAD_BACKEND_UNAVAILABLE', `crypto backend ${name} is unavailable: ${why}`);
  switch (name) {
    case 'node':
      return new NodeAead(algorithm, keymat);
    case 'noble':
      return new NobleAead(algorithm, keymat);
    case 'native':
      return new NativeAead(algorithm, keymat);
  }
}
