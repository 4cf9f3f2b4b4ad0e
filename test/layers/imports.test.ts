// DESIGN.md "Architecture": each layer imports only the layers below it, and the
// pure layers (wire, buf, core) import no node: I/O module at all.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, dirname, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const SRC = resolve(__dirname, '..', '..', 'src');

const ALLOWED: Record<string, string[]> = {
  wire: ['wire'],
  buf: ['buf', 'wire'],
  crypto: ['crypto', 'buf', 'wire', 'native.ts'],
  core: ['core', 'crypto', 'buf', 'wire'],
  control: ['control', 'core', 'crypto', 'buf', 'wire', 'native.ts'],
  io: ['io', 'buf', 'wire', 'native.ts'],
  cli: ['cli', 'control', 'io', 'core', 'crypto', 'buf', 'wire', 'native.ts'],
};
const PURE = new Set(['wire', 'buf', 'core']);

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? walk(p) : p.endsWith('.ts') ? [p] : [];
  });
}

function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const re = /(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)|^\s*import\s+['"]([^'"]+)['"]/g;
  const out: string[] = [];
  for (let m = re.exec(text); m; m = re.exec(text)) out.push((m[1] ?? m[2] ?? m[3])!);
  return out;
}

describe('layering', () => {
  const files = walk(SRC);
  it('finds the source tree', () => {
    expect(files.length).toBeGreaterThan(5);
  });
  for (const file of files) {
    const rel = relative(SRC, file);
    const layer = rel.split('/')[0]!;
    if (!(layer in ALLOWED)) continue;
    it(`${rel} imports only allowed layers`, () => {
      for (const spec of importsOf(file)) {
        if (spec.startsWith('.')) {
          const target = relative(SRC, resolve(dirname(file), spec)).replace(/\.js$/, '.ts');
          const top = target.split('/')[0]!;
          expect(ALLOWED[layer], `${rel} imports ${spec}`).toContain(top);
        } else if (PURE.has(layer)) {
          expect(spec.startsWith('node:') || /^(fs|net|dgram|child_process|os|http|https|worker_threads|path|url|module)$/.test(spec), `${rel} (pure layer ${layer}) imports ${spec}`).toBe(false);
        }
      }
    });
  }
});
