/** `npm run docs` documents every public entry point: typedoc's entry points are package.json's exports. */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../..', import.meta.url));
const json = (f: string) => JSON.parse(readFileSync(join(root, f), 'utf8')) as Record<string, unknown>;

test('every export of package.json (but ./package.json) is a typedoc entry point, and nothing else is', (t) => {
  const exports = json('package.json')['exports'] as Record<string, string | { types: string }>;
  const sources = Object.entries(exports)
    .filter(([k]) => k !== './package.json')
    .map(([, v]) => (typeof v === 'string' ? v : v.types).replace(/^\.\/dist\//, '').replace(/\.d\.ts$/, '.ts'))
    .sort();
  t.true(sources.includes('lib/backends/mock/index.ts') && sources.includes('lib/backends/hybrid/index.ts'));
  t.deepEqual([...(json('typedoc.json')['entryPoints'] as string[])].sort(), sources);
});
