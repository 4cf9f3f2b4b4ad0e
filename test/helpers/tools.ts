// Gates for tests that need something outside Node: a program (tshark, scapy), root,
// network namespaces, the native addon. Outside CI a missing one skips the test with the
// reason; with CI=true it fails, so a CI machine that lost a package cannot pass quietly.
import { execFileSync } from 'node:child_process';
import { it } from 'vitest';
import { nativeAddon, nativeLoadError } from '../../src/native.js';

const IN_CI = process.env.CI === 'true';

/** True if `cmd args` runs and exits 0. */
function runs(cmd: string, args: string[]): boolean {
  try {
    execFileSync(cmd, args, { stdio: 'ignore', timeout: 20_000 });
    return true;
  } catch {
    return false;
  }
}

const cache = new Map<string, string | null>();

/** Why the named requirement is missing, or null if present. */
export function missing(req: 'tshark' | 'scapy' | 'root' | 'netns' | 'native' | 'iperf3' | 'openvpn' | 'socat'): string | null {
  if (cache.has(req)) return cache.get(req)!;
  let why: string | null = null;
  switch (req) {
    case 'tshark':
      why = runs('tshark', ['--version']) ? null : 'tshark is not installed (apt-get install tshark)';
      break;
    case 'scapy':
      why = runs('/usr/bin/python3', ['-c', 'import scapy.layers.ipsec'])
        ? null
        : 'scapy is not installed (apt-get install python3-scapy)';
      break;
    case 'root':
      why = process.getuid?.() === 0 ? null : 'needs root';
      break;
    case 'netns':
      why =
        process.getuid?.() !== 0
          ? 'network namespaces need root'
          : runs('ip', ['netns', 'list'])
            ? null
            : 'iproute2 `ip netns` does not work here';
      break;
    case 'native':
      why = nativeAddon() ? null : `native addon not loaded: ${nativeLoadError()}`;
      break;
    case 'iperf3':
    case 'socat':
      why = runs(req, ['-V']) || runs(req, ['--version']) ? null : `${req} is not installed`;
      break;
    case 'openvpn':
      why = runs('sh', ['-c', 'command -v openvpn']) ? null : 'openvpn is not installed';
      break;
  }
  cache.set(req, why);
  return why;
}

/**
 * `it` that runs only when every requirement is present. Outside CI a missing one
 * skips (the reason is in the test name); in CI the test runs and fails with the reason.
 */
export function itWith(reqs: Parameters<typeof missing>[0][], name: string, fn: () => unknown, timeoutMs?: number): void {
  const why = reqs.map(missing).filter((w): w is string => w !== null);
  if (why.length === 0) {
    it(name, fn, timeoutMs);
  } else if (IN_CI) {
    it(name, () => {
      throw new Error(`required in CI: ${why.join('; ')}`);
    });
  } else {
    it.skip(`${name} [skipped: ${why.join('; ')}]`, fn);
  }
}
