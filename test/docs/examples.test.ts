/**
 * The examples in the README and in lib/'s doc comments are programs, and the suite keeps them so:
 * every ```ts block is compiled against the public entry points (`kvm-sev`, `kvm-sev/mock`, … resolve
 * through package.json's exports to dist/, as for a user of the package), and run where it can run:
 * a block that opens the real /dev/kvm (NativeBackend, HybridBackend) where /dev/kvm works, every
 * other one everywhere. A README block marked ```ts example=PATH is that file of examples/, word for
 * word but for its imports of the package, and runs in that example's own test.
 */
import test, { type ExecutionContext } from 'ava';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { kvmDevice } from '../helpers/hw.js';

const root = fileURLToPath(new URL('../../..', import.meta.url));

interface Block {
  /** Where it is: 'README.md:120' or 'lib/kvm/vcpu.ts:42' (the line of its opening fence). */
  where: string;
  code: string;
  /** examples/… file it shows, for `example=` blocks. */
  example?: string;
  file: string;
}

function fences(text: string, where: (line: number) => string): Block[] {
  const out: Block[] = [];
  const re = /^```ts([^\n]*)\n([\s\S]*?)^```/gm;
  for (let m; (m = re.exec(text));) {
    const line = text.slice(0, m.index).split('\n').length;
    const example = /example=(\S+)/.exec(m[1]!)?.[1];
    out.push({ where: where(line), code: m[2]!, file: '', ...(example ? { example } : {}) });
  }
  return out;
}

/** ```ts blocks inside the /** … *\/ comments of a source file, with the comment's ` * ` stripped. */
function docBlocks(path: string): Block[] {
  const src = readFileSync(join(root, path), 'utf8');
  const out: Block[] = [];
  const re = /\/\*\*[\s\S]*?\*\//g;
  for (let m; (m = re.exec(src));) {
    const start = src.slice(0, m.index).split('\n').length;
    const body = m[0]
      .replace(/^\/\*\*/, '')
      .replace(/\*\/$/, '')
      .split('\n')
      .map((l) => l.replace(/^\s*\* ?/, ''))
      .join('\n');
    out.push(...fences(body, (line) => `${path}:${start + line - 1}`));
  }
  return out;
}

function tsFiles(dir: string): string[] {
  return readdirSync(join(root, dir)).flatMap((n) => {
    const p = `${dir}/${n}`;
    return statSync(join(root, p)).isDirectory() ? tsFiles(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/** An examples/ file as the README shows it: its imports of lib/ are imports of the package. */
function asPublished(src: string): string {
  return src
    .replace(/'(\.\.\/)+lib\/index\.js'/g, "'kvm-sev'")
    .replace(/'(\.\.\/)+lib\/backends\/(mock|hybrid)\/index\.js'/g, "'kvm-sev/$2'")
    .replace(/'(\.\.\/)+lib\/(uapi|owner)\/index\.js'/g, "'kvm-sev/$2'");
}

const readme = fences(readFileSync(join(root, 'README.md'), 'utf8'), (line) => `README.md:${line}`);
const fromDocs = tsFiles('lib').flatMap(docBlocks);
const blocks = [...readme, ...fromDocs];
const dir = mkdtempSync(join(root, 'dist', '.doc-examples-'));
blocks.forEach((b, i) => {
  b.file = join(dir, `${String(i).padStart(2, '0')}-${b.where.replace(/[^a-z0-9]+/gi, '-')}.ts`);
  writeFileSync(b.file, b.code);
});
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

/** Type-checks and emits every block at once, as part of no project but the package's own settings. */
let compiled: Promise<Map<string, string[]>> | undefined;
function compileAll(): Promise<Map<string, string[]>> {
  compiled ??= Promise.resolve().then(() => {
    const cfg = ts.getParsedCommandLineOfConfigFile(
      join(root, 'tsconfig.json'),
      {},
      { ...ts.sys, onUnRecoverableConfigFileDiagnostic: () => {} },
    );
    if (!cfg) throw new Error('cannot read tsconfig.json');
    const options: ts.CompilerOptions = {
      ...cfg.options,
      rootDir: dir,
      outDir: dir,
      declaration: false,
      sourceMap: false,
      incremental: false,
      noEmit: false,
      noUnusedLocals: false, // an example may name a value only to show it
    };
    delete options.tsBuildInfoFile;
    const program = ts.createProgram(
      blocks.map((b) => b.file),
      options,
    );
    const emitted = program.emit();
    const errors = new Map<string, string[]>();
    for (const d of [...ts.getPreEmitDiagnostics(program), ...emitted.diagnostics]) {
      const f = d.file?.fileName ?? '';
      const at = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line + 1 : 0;
      const list = errors.get(f) ?? [];
      list.push(`line ${at} of the block: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`);
      errors.set(f, list);
    }
    return errors;
  });
  return compiled;
}

function run(t: ExecutionContext, js: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [js],
      { cwd: root, timeout: 60_000, env: { ...process.env, NO_COLOR: '1' } },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
    t.teardown(() => child.exitCode === null && child.kill('SIGKILL'));
  });
}

// A couple of node processes at a time: the machine may be small and shared.
let running = 0;
const waiting: (() => void)[] = [];
async function slot<T>(f: () => Promise<T>): Promise<T> {
  if (running >= 2) await new Promise<void>((r) => waiting.push(r));
  running++;
  try {
    return await f();
  } finally {
    running--;
    waiting.shift()?.();
  }
}

const kvm = kvmDevice();
const needsKvm = (code: string) => /\bNativeBackend\b|\bHybridBackend\b|'kvm-sev\/hybrid'/.test(code);

test('the README and the doc comments have examples, among them those of Kvm, Vm, Vcpu, GuestMemory, openHost and HybridBackend', (t) => {
  t.true(readme.length >= 4, 'README blocks');
  const documented = (file: string, decl: RegExp) => {
    const src = readFileSync(join(root, file), 'utf8');
    const at = src.search(decl);
    const before = src.slice(0, at);
    const comment = before.slice(before.lastIndexOf('/**'));
    return at > 0 && /^\/\*\*[\s\S]*\*\/\s*$/.test(comment) && comment.includes('```ts');
  };
  t.true(documented('lib/kvm/kvm.ts', /^export class Kvm\b/m), 'Kvm');
  t.true(documented('lib/kvm/vm.ts', /^export class Vm\b/m), 'Vm');
  t.true(documented('lib/kvm/vcpu.ts', /^export class Vcpu\b/m), 'Vcpu');
  t.true(documented('lib/kvm/guest-memory.ts', /^export class GuestMemory\b/m), 'GuestMemory');
  t.true(documented('lib/app/open-host.ts', /^export async function openHost\b/m), 'openHost');
  t.true(documented('lib/backends/hybrid/hybrid-backend.ts', /^export class HybridBackend\b/m), 'HybridBackend');
});

for (const b of blocks) {
  const title = `${b.where}${b.example ? ` (${b.example})` : ''}`;
  if (b.example) {
    test(`${title}: compiles, and is the example file word for word`, async (t) => {
      t.is(b.code, asPublished(readFileSync(join(root, b.example!), 'utf8')), `README differs from ${b.example}`);
      t.deepEqual((await compileAll()).get(b.file) ?? [], []);
    });
    continue;
  }
  if (needsKvm(b.code) && !kvm.ok) {
    test(`${title}: compiles`, async (t) => t.deepEqual((await compileAll()).get(b.file) ?? [], []));
    test.todo(`${title}: runs — pending: ${kvm.reason}`);
    continue;
  }
  test(`${title}: compiles and runs`, async (t) => {
    t.deepEqual((await compileAll()).get(b.file) ?? [], [], `${b.where} does not compile`);
    const r = await slot(() => run(t, b.file.replace(/\.ts$/, '.js')));
    t.log(`${relative(root, b.file)}: ${r.stdout.trim()}`);
    t.is(r.code, 0, `${b.where} failed:\n${r.stderr}`);
  });
}
