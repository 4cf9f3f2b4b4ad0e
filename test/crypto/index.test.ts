// Backend selection (src/crypto/index.ts): native when the addon has the AEAD functions,
// else node; SECTUNNEL_CRYPTO overrides, and a bad or unavailable choice is an error that
// names the variable and its value. createAead validates the algorithm and KEYMAT.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { AeadError } from '../../src/crypto/aead.js';
import { itWith } from '../helpers/tools.js';

type IndexModule = typeof import('../../src/crypto/index.js');

const saved = { crypto: process.env.SECTUNNEL_CRYPTO, native: process.env.SECTUNNEL_NATIVE };

/** Loads a fresh copy of the crypto index (and the addon loader) under the given environment. */
async function loadWith(env: { SECTUNNEL_CRYPTO?: string; SECTUNNEL_NATIVE?: string }): Promise<IndexModule> {
  for (const k of ['SECTUNNEL_CRYPTO', 'SECTUNNEL_NATIVE'] as const) {
    if (env[k] === undefined) delete process.env[k];
    else process.env[k] = env[k];
  }
  vi.resetModules();
  return import('../../src/crypto/index.js');
}

afterEach(() => {
  for (const [k, v] of [
    ['SECTUNNEL_CRYPTO', saved.crypto],
    ['SECTUNNEL_NATIVE', saved.native],
  ] as const) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  vi.resetModules();
});

function caught(fn: () => unknown): AeadError {
  try {
    fn();
  } catch (e) {
    // A fresh module copy has its own AeadError class; compare by name and code.
    expect((e as Error).name).toBe('AeadError');
    return e as AeadError;
  }
  throw new Error('expected an AeadError');
}

describe('backend selection', () => {
  itWith(['native'], 'chooses native when the addon is built, and says so', async () => {
    const m = await loadWith({});
    expect(m.selectedBackend().backend).toBe('native');
    expect(m.selectedBackend().reason).toContain('native addon');
    expect(m.createAead('aes-gcm-256', new Uint8Array(36)).backend).toBe('native');
    expect(m.availableBackends()).toEqual(['native', 'node', 'noble']);
  });

  it('falls back to node with the reason when the addon is disabled', async () => {
    const m = await loadWith({ SECTUNNEL_NATIVE: '0' });
    expect(m.selectedBackend()).toEqual({ backend: 'node', reason: expect.stringContaining('SECTUNNEL_NATIVE=0') });
    expect(m.availableBackends()).toEqual(['node', 'noble']);
    expect(m.createAead('chacha20-poly1305', new Uint8Array(36)).backend).toBe('node');
  });

  it('SECTUNNEL_CRYPTO=noble and =node override the default', async () => {
    for (const name of ['noble', 'node'] as const) {
      const m = await loadWith({ SECTUNNEL_CRYPTO: name });
      expect(m.selectedBackend()).toEqual({ backend: name, reason: `SECTUNNEL_CRYPTO=${name}` });
      expect(m.createAead('aes-gcm-128', new Uint8Array(20)).backend).toBe(name);
    }
  });

  itWith(['native'], 'SECTUNNEL_CRYPTO=native selects native', async () => {
    const m = await loadWith({ SECTUNNEL_CRYPTO: 'native' });
    expect(m.selectedBackend()).toEqual({ backend: 'native', reason: 'SECTUNNEL_CRYPTO=native' });
  });

  it('SECTUNNEL_CRYPTO with an unknown value is an error naming the variable and value', async () => {
    const m = await loadWith({ SECTUNNEL_CRYPTO: 'openssl' });
    const e = caught(() => m.selectedBackend());
    expect(e.code).toBe('ST_AEAD_BAD_BACKEND');
    expect(e.message).toContain('SECTUNNEL_CRYPTO=openssl');
    expect(caught(() => m.createAead('aes-gcm-256', new Uint8Array(36))).message).toContain('SECTUNNEL_CRYPTO=openssl');
    // An explicit backend still works.
    expect(m.createAead('aes-gcm-256', new Uint8Array(36), 'node').backend).toBe('node');
  });

  it('SECTUNNEL_CRYPTO=native without the addon is an error naming the variable, value and cause', async () => {
    const m = await loadWith({ SECTUNNEL_CRYPTO: 'native', SECTUNNEL_NATIVE: '0' });
    const e = caught(() => m.selectedBackend());
    expect(e.code).toBe('ST_AEAD_BACKEND_UNAVAILABLE');
    expect(e.message).toContain('SECTUNNEL_CRYPTO=native');
    expect(e.message).toContain('SECTUNNEL_NATIVE=0');
    expect(caught(() => m.createAead('aes-gcm-256', new Uint8Array(36), 'native')).code).toBe('ST_AEAD_BACKEND_UNAVAILABLE');
  });
});

describe('createAead validation', () => {
  it('refuses an unknown algorithm, naming it and the supported ones', async () => {
    const m = await loadWith({ SECTUNNEL_CRYPTO: 'node' });
    const e = caught(() => m.createAead('aes-cbc-128' as never, new Uint8Array(20)));
    expect(e.code).toBe('ST_AEAD_BAD_ALGORITHM');
    expect(e.message).toContain('aes-cbc-128');
    expect(e.message).toContain('chacha20-poly1305');
  });

  it('refuses an unknown backend name', async () => {
    const m = await loadWith({ SECTUNNEL_CRYPTO: 'node' });
    const e = caught(() => m.createAead('aes-gcm-128', new Uint8Array(20), 'libsodium' as never));
    expect(e.code).toBe('ST_AEAD_BAD_BACKEND');
    expect(e.message).toContain('libsodium');
  });

  it('refuses KEYMAT of the wrong length or type, naming algorithm, expected and actual length', async () => {
    const m = await loadWith({ SECTUNNEL_CRYPTO: 'node' });
    const cases: [string, number][] = [
      ['aes-gcm-128', 20],
      ['aes-gcm-192', 28],
      ['aes-gcm-256', 36],
      ['chacha20-poly1305', 36],
    ];
    for (const [alg, want] of cases) {
      // A bare key (without the salt) is the likeliest mistake.
      const e = caught(() => m.createAead(alg as never, new Uint8Array(want - 4)));
      expect(e.code).toBe('ST_AEAD_BAD_KEYMAT');
      expect(e.message).toBe(`${alg} KEYMAT must be ${want} octets (${want - 4}-octet key ‖ 4-octet salt), got ${want - 4} octets`);
    }
    expect(caught(() => m.createAead('aes-gcm-256', 'ab'.repeat(36) as never)).message).toContain('got string');
  });

  it('AeadError carries a stable code', () => {
    const e = new AeadError('ST_AEAD_BAD_KEYMAT', 'x');
    expect([e.name, e.code, e instanceof Error]).toEqual(['AeadError', 'ST_AEAD_BAD_KEYMAT', true]);
  });
});
