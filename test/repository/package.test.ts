/**
 * What `npm pack` would publish: the licence, and source maps that resolve. A map whose source is
 * not in the package sends a debugger or a stack-trace tool to a file the user does not have.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../../', import.meta.url));

interface PackResult {
  files: { path: string }[];
}

interface SourceMap {
  sourceRoot?: string;
  sources: (string | null)[];
  sourcesContent?: (string | null)[];
}

/** The file list of `npm pack --dry-run --json` (scripts skipped: ava has just built dist/). */
function packedFiles(): string[] {
  // Under `npm test`, npm_execpath is the npm that runs us; run the same one.
  const npmCli = process.env.npm_execpath;
  const [cmd, pre] = npmCli?.endsWith('.js') ? [process.execPath, [npmCli]] : ['npm', []];
  const out = execFileSync(cmd, [...pre, 'pack', '--dry-run', '--json', '--ignore-scripts'], {
    cwd: root,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const [result] = JSON.parse(out) as PackResult[];
  if (!result) throw new Error('npm pack --dry-run --json printed no package');
  return result.files.map((f) => f.path.split('\\').join('/'));
}

const readMap = (mapPath: string): SourceMap => JSON.parse(readFileSync(join(root, mapPath), 'utf8')) as SourceMap;

/** `map → source` for every source of a packed .map that is neither packed nor inlined. */
function unresolvedSources(files: string[], read = readMap): string[] {
  const packed = new Set(files);
  const missing: string[] = [];
  for (const mapPath of files.filter((f) => f.endsWith('.map'))) {
    const map = read(mapPath);
    map.sources.forEach((src, i) => {
      if (src === null || typeof map.sourcesContent?.[i] === 'string') return;
      const target = posix.normalize(posix.join(posix.dirname(mapPath), map.sourceRoot ?? '', src));
      if (!packed.has(target)) missing.push(`${mapPath} → ${target}`);
    });
  }
  return missing;
}

let packedOnce: string[] | undefined;
const packed = (): string[] => (packedOnce ??= packedFiles());

test('the package ships the licence package.json names', (t) => {
  const files = packed();
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { license: string };
  t.is(pkg.license, 'Apache-2.0');
  t.true(files.includes('LICENSE'));
  t.regex(readFileSync(join(root, 'LICENSE'), 'utf8'), /Apache License\s+Version 2\.0, January 2004[\s\S]*END OF TERMS AND CONDITIONS/);
});

test('every source map in the package points at a source the package ships', (t) => {
  const files = packed();
  const maps = files.filter((f) => f.endsWith('.map'));
  t.true(maps.length > 0 && maps.includes('dist/lib/index.js.map'), `npm pack lists ${files.length} files, ${maps.length} maps`);
  t.deepEqual(
    unresolvedSources(files),
    [],
    'ship the sources in package.json "files", or leave the maps out (a stale dist/? rm -rf dist && npm run build)',
  );
});

test('the check catches a map whose source is not packed, and accepts a source the map inlines', (t) => {
  const files = ['dist/lib/a/b.js', 'dist/lib/a/b.js.map', 'lib/a/b.ts', 'dist/lib/c.js.map'];
  const maps: Record<string, SourceMap> = {
    'dist/lib/a/b.js.map': { sourceRoot: '', sources: ['../../../lib/a/b.ts'] },
    'dist/lib/c.js.map': { sources: ['../../lib/c.ts', '../../lib/d.ts'], sourcesContent: [null, 'export {};'] },
  };
  const read = (p: string): SourceMap => maps[p]!;
  t.deepEqual(unresolvedSources(files, read), ['dist/lib/c.js.map → lib/c.ts']);
  t.deepEqual(unresolvedSources([...files, 'lib/c.ts'], read), []);
  t.deepEqual(
    unresolvedSources(
      files.filter((f) => f !== 'lib/a/b.ts'),
      read,
    ),
    ['dist/lib/a/b.js.map → lib/a/b.ts', 'dist/lib/c.js.map → lib/c.ts'],
  );
});
