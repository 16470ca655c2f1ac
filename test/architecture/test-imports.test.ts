/**
 * The two test trees meet only in the shared helpers: hw-test/ (hardware tests) imports nothing from
 * test/ but test/helpers/, test/ imports nothing from hw-test/, and the shared helpers import no test.
 */
import test from 'ava';
import { fileURLToPath } from 'node:url';
import { importEdges, sourceFiles } from './import-graph.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const edges = importEdges(root, [...sourceFiles(root, 'test'), ...sourceFiles(root, 'hw-test')]);
const show = (e: { from: string; to: string }) => `${e.from} → ${e.to}`;

test('hw-test/ imports from test/ only through the shared helpers (test/helpers/)', (t) => {
  const hw = edges.filter((e) => e.from.startsWith('hw-test/'));
  t.true(
    hw.some((e) => e.to.startsWith('test/helpers/')),
    'the hardware tests do use the shared helpers',
  );
  t.deepEqual(hw.filter((e) => e.to.startsWith('test/') && !e.to.startsWith('test/helpers/')).map(show), []);
});

test('test/ imports nothing from hw-test/; the shared helpers import only lib/, node and each other', (t) => {
  t.deepEqual(edges.filter((e) => e.from.startsWith('test/') && e.to.startsWith('hw-test/')).map(show), []);
  t.deepEqual(edges.filter((e) => e.from.startsWith('test/helpers/') && !/^(lib|test\/helpers)\//.test(e.to)).map(show), []);
});
