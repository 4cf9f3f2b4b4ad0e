// A child process of an I/O test (one that must run outside vitest, e.g. inside a network
// namespace) imports our modules as plain JavaScript: this transpiles them into a temporary
// tree. Shared by test/io/{tap,attach,raw-esp,udp-offload}.test.ts.
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import ts from 'typescript';

const ROOT = resolve(__dirname, '..', '..');

/**
 * Transpiles src/native.ts, src/wire/constants.ts and every module of src/buf and src/io into a
 * fresh folder `<tmp>/<prefix>XXXXXX` (ES modules, package.json type module), writes the `extra`
 * files (name → text, e.g. the child script) beside them, and returns the folder. The caller
 * removes it.
 */
export function ioChildTree(prefix: string, extra: Record<string, string> = {}): string {
  const out = mkdtempSync(join(tmpdir(), prefix));
  const files = [
    'src/native.ts',
    'src/wire/constants.ts',
    ...['src/buf', 'src/io'].flatMap((d) => readdirSync(join(ROOT, d)).filter((f) => f.endsWith('.ts')).map((f) => `${d}/${f}`)),
  ];
  for (const rel of files) {
    const js = ts.transpileModule(readFileSync(join(ROOT, rel), 'utf8'), {
      compilerOptions: { module: ts.ModuleKind.ES2022, target: ts.ScriptTarget.ES2022 },
    }).outputText;
    const dest = join(out, rel.replace(/\.ts$/, '.js'));
    mkdirSync(dirname(dest), { recursive: true });
    writeFileSync(dest, js);
  }
  writeFileSync(join(out, 'package.json'), '{"type":"module"}');
  for (const [name, text] of Object.entries(extra)) writeFileSync(join(out, name), text);
  return out;
}
