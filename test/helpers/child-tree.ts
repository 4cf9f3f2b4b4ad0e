// A child process of an I/O test (one that must run outside vitest, e.g. inside a network
// namespace) imports our modules as plain JavaScript: this transpiles them into a temporary
// tree, and runChild runs one. Shared by test/io/{tap,attach,raw-esp,udp-offload}.test.ts.
import { spawn } from 'node:child_process';
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

/**
 * Runs `argv` (e.g. node and a script of the tree, or `ip netns exec NS node …`) with `env`
 * added, and resolves with its exit code and output once it exits. A guard kills it after 30 s
 * so that a hanging child fails the test instead of hanging it (not a timing assertion).
 */
export async function runChild(argv: readonly string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(argv[0]!, argv.slice(1), { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const guard = setTimeout(() => child.kill('SIGKILL'), 30_000);
  const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  clearTimeout(guard);
  return { code, stdout, stderr };
}
