/**
 * The repository stands on its own: no tracked file points outside it. A fresh clone with nothing
 * beside it must build, test and read the same as a working copy, so no file may name a sibling
 * `shared` folder, nor the private notes the project was once written from (their facts are in
 * docs/sev-reference.md, with public sources).
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../../', import.meta.url));

// Built at run time so that this file does not name what it forbids.
const NOTES = [
  ['kernel', 'sev', 'uapi'],
  ['sev', 'firmware'],
  ['sev', 'migration'],
].map((parts) => `${parts.join('-')}.md`);
const FORBIDDEN = ['..' + '/shared', 'shared' + '/fixtures', 'shared' + '/reference', ...NOTES];

/** Not scanned: npm's lock file lists registry URLs and package names, not references of ours. */
const EXEMPT = new Set(['package-lock.json']);

/** `file:line: needle` for every forbidden reference in `text`. */
function references(file: string, text: string): string[] {
  const found: string[] = [];
  text.split('\n').forEach((line, i) => {
    for (const needle of FORBIDDEN) if (line.includes(needle)) found.push(`${file}:${i + 1}: ${needle}`);
  });
  return found;
}

/** Tracked files, and new ones git would track (not ignored), so a file is caught before its commit. */
function trackedFiles(): string[] {
  const out = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: root, encoding: 'utf8' });
  return out.split('\0').filter((f) => f !== '');
}

test('the check sees each forbidden reference (a path into the sibling shared folder, a note by name)', (t) => {
  t.is(FORBIDDEN.length, 6);
  for (const needle of FORBIDDEN) t.deepEqual(references('x.ts', `ok\n// see ${needle} §1\n`), [`x.ts:2: ${needle}`]);
  t.deepEqual(references('x.ts', 'shared memory; sev-firmware status; docs/sev-reference.md'), []);
});

test('no tracked file refers to the sibling shared folder or to the private reference notes', (t) => {
  const files = trackedFiles().filter((f) => !EXEMPT.has(f));
  t.true(files.includes('package.json') && files.includes('test/repository/standalone.test.ts'), 'git ls-files lists the repository');
  const found: string[] = [];
  for (const f of files) {
    const p = join(root, f);
    if (!existsSync(p) || !statSync(p).isFile()) continue; // deleted in the working tree, or a submodule
    found.push(...references(f, readFileSync(p, 'latin1')));
  }
  t.deepEqual(found, [], 'cite public sources (kernel file and function, AMD pub. 55766 section) or docs/sev-reference.md');
});
