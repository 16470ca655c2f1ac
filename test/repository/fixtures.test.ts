/**
 * test/fixtures/README.md records the source and SHA-256 of every fixture: each file under
 * test/fixtures/ has a row, each row names a file that is there, and the bytes hash as recorded.
 */
import test from 'ava';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { AMD_GENERATIONS, AMD_ROOTS } from '../../lib/crypto/amd-root-certs.js';
import { SEV_CERTS_DIR } from '../helpers/cert-fixtures.js';

const fixturesDir = join(SEV_CERTS_DIR, '..');

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((e) => {
    const p = join(dir, e);
    return statSync(p).isDirectory() ? filesUnder(p) : [p];
  });
}

/** `path relative to test/fixtures/` → SHA-256, from the README's table rows. */
function recorded(): Map<string, string> {
  const readme = readFileSync(join(fixturesDir, 'README.md'), 'utf8');
  const rows = new Map<string, string>();
  for (const m of readme.matchAll(/^\| `([^`]+)` \| `[^`]+` \| `([0-9a-f]{64})` \|$/gm)) rows.set(m[1]!, m[2]!);
  return rows;
}

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

test('every fixture has a row in test/fixtures/README.md, and hashes as recorded', (t) => {
  const rows = recorded();
  const files = filesUnder(fixturesDir)
    .map((p) => relative(fixturesDir, p))
    .filter((f) => f !== 'README.md')
    .sort();
  t.is(files.length, 18, 'ten AMD root certificates and two platform chains of four');
  t.deepEqual([...rows.keys()].sort(), files);
  for (const f of files) t.is(sha256(readFileSync(join(fixturesDir, f))), rows.get(f) ?? `no row for ${f}`, f);
});

test("the AMD roots built into the library are the fixtures' bytes", (t) => {
  for (const g of AMD_GENERATIONS) {
    for (const k of ['ark', 'ask'] as const) {
      const fixture = readFileSync(join(SEV_CERTS_DIR, 'amd-root', g, `${k}.cert`));
      t.true(Buffer.from(AMD_ROOTS[g][k], 'base64').equals(fixture), `${g}/${k}.cert`);
    }
  }
});
