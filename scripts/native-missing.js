// Runs when `npm ci` could not build native-fallback/ (no compiler, no headers).
// The install goes on: crypto falls back to node:crypto, UDP to dgram. TAP devices
// need the addon, so `sectunnel run` and `demo` will refuse to start and say why.
console.warn(
  'sectunnel: the native addon in native-fallback/ did not build; ' +
    'using the pure TypeScript fallbacks (slower; no TAP devices). ' +
    'Install python3, make and g++ and run `npm run build:native` to retry.',
);
