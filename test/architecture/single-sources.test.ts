/**
 * Things lib/ has exactly one of: the module that reads the real host's /sys and /proc (the native
 * backend's system view; every other layer asks the backend's `system`), and the argument checks
 * (lib/uapi/args.ts, one argument order: name, then value).
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sourceFiles } from './import-graph.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const sources = sourceFiles(root).map((f) => ({ f, src: readFileSync(join(root, f), 'utf8') }));

test('only the native backend system view reads /sys and /proc', (t) => {
  const read =
    /\b(?:readFileSync|readFile|readdirSync|readdir|statSync|stat|accessSync|access|existsSync|openSync|open)\(\s*[`'"]\/(?:sys|proc)\//;
  t.deepEqual(
    sources.filter(({ src }) => read.test(src)).map(({ f }) => f),
    ['lib/backends/native/host-system-view.ts'],
  );
});

test('the argument checks are defined once, in lib/uapi/args.ts', (t) => {
  const define = /\bfunction (checkInt|checkU8|checkU16|checkU32|checkU64|checkUint|checkBytes|checkBlob|checkRange|checkObject)\b/g;
  const where = sources.flatMap(({ f, src }) => [...src.matchAll(define)].map((m) => `${f}: ${m[1]}`));
  t.deepEqual(
    where.filter((w) => !w.startsWith('lib/uapi/args.ts: ')),
    [],
  );
  t.true(where.length >= 8, where.join(', '));
});
