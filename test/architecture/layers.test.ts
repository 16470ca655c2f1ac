/**
 * The layer order of lib/ (docs/architecture.md), enforced: every import points down, or sideways
 * within its own layer; no folder imports a folder that imports it back; the backends meet each
 * other only where allowed (the hybrid reaches the mock only through its seam module).
 */
import test from 'ava';
import { fileURLToPath } from 'node:url';
import { dirname } from 'node:path';
import { cycles, importEdges, sourceFiles } from './import-graph.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const files = sourceFiles(root);
const edges = importEdges(root, files);

/** Bottom first. A file's layer is the first prefix that matches. */
const LAYERS: readonly [string, number][] = [
  ['lib/uapi/', 0],
  ['lib/crypto/', 1],
  ['lib/backend/', 2],
  ['lib/backends/', 3],
  ['lib/kvm/', 4],
  ['lib/sev/', 5],
  ['lib/migration/', 6],
  ['lib/owner/', 7],
  ['lib/app/', 8],
  ['lib/index.ts', 9],
];
const layerOf = (f: string): number => {
  const l = LAYERS.find(([p]) => f.startsWith(p));
  if (!l) throw new Error(`${f} is in no layer: add it to LAYERS and docs/architecture.md`);
  return l[1];
};
const backendOf = (f: string): string | undefined => /^lib\/backends\/([^/]+)\//.exec(f)?.[1];

test('every file of lib/ belongs to a layer, and every import resolves to a file', (t) => {
  for (const f of files) t.notThrows(() => layerOf(f), f);
  const known = new Set(files);
  t.deepEqual(
    edges.filter((e) => !known.has(e.to)).map((e) => `${e.from} → ${e.spec}`),
    [],
  );
});

test('imports point down the layers (or stay within one)', (t) => {
  const up = edges.filter((e) => layerOf(e.to) > layerOf(e.from)).map((e) => `${e.from} → ${e.to}`);
  t.deepEqual(up, []);
});

test('backends: native and mock stand alone; the hybrid reaches the mock only through its seam', (t) => {
  const bad: string[] = [];
  for (const e of edges) {
    const a = backendOf(e.from);
    const b = backendOf(e.to);
    if (!a || !b || a === b) continue;
    if (a === 'hybrid' && b === 'native') continue;
    if (a === 'hybrid' && b === 'mock' && e.to === 'lib/backends/mock/seam.ts') continue;
    bad.push(`${e.from} → ${e.to}`);
  }
  t.deepEqual(bad, []);
});

test('only the app and the root entry import a backend implementation; the layers above take one as an argument', (t) => {
  const bad = edges
    .filter((e) => e.to.startsWith('lib/backends/') && !e.from.startsWith('lib/backends/'))
    .filter((e) => !e.from.startsWith('lib/app/') && e.from !== 'lib/index.ts')
    .map((e) => `${e.from} → ${e.to}`);
  t.deepEqual(bad, []);
});

test('the root entry loads no mock, hybrid, owner or demo module up front', (t) => {
  const bad = edges
    .filter((e) => e.from === 'lib/index.ts' && !e.dynamic)
    .filter((e) => /^lib\/(backends\/(mock|hybrid)|owner|app\/(demo|cli))\//.test(e.to))
    .map((e) => e.to);
  t.deepEqual(bad, []);
});

test('no folder cycles', (t) => {
  const folders = new Map<string, Set<string>>();
  for (const e of edges) {
    const a = dirname(e.from);
    const b = dirname(e.to);
    if (a === b) continue;
    let s = folders.get(a);
    if (!s) folders.set(a, (s = new Set()));
    s.add(b);
  }
  t.deepEqual(
    cycles(folders.keys(), (f) => folders.get(f) ?? []),
    [],
  );
});
