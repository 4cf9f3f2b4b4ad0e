/**
 * Loads the native addon (native-fallback/, built by `npm ci`) once. Callers
 * describe the functions they use with their own interface and fall back to
 * their TypeScript twin when `nativeAddon()` returns null.
 * SECTUNNEL_NATIVE=0 disables the addon (to test the fallbacks);
 * SECTUNNEL_NATIVE_PATH=/path/to/sectunnel_native.node loads another build.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { join, dirname } from 'node:path';

let loaded: Record<string, unknown> | null | undefined;
let loadError: string | null = null;

function repoRoot(): string {
  // src/native.ts and dist/src/native.js: walk up to the folder holding native-fallback/.
  const here = dirname(fileURLToPath(import.meta.url));
  return here.endsWith(join('dist', 'src')) ? join(here, '..', '..') : join(here, '..');
}

/** The addon's exports, or null if it is not built or disabled. */
export function nativeAddon(): Record<string, unknown> | null {
  if (loaded !== undefined) return loaded;
  if (process.env.SECTUNNEL_NATIVE === '0') {
    loadError = 'disabled by SECTUNNEL_NATIVE=0';
    loaded = null;
    return loaded;
  }
  const path =
    process.env.SECTUNNEL_NATIVE_PATH ?? join(repoRoot(), 'native-fallback', 'build', 'Release', 'sectunnel_native.node');
  try {
    loaded = createRequire(import.meta.url)(path) as Record<string, unknown>;
  } catch (e) {
    loadError = `${path}: ${(e as Error).message}`;
    loaded = null;
  }
  return loaded;
}

/** Why the addon is not loaded, or null if it is. */
export function nativeLoadError(): string | null {
  nativeAddon();
  return loadError;
}
