/**
 * The README's first lines are the commands a new user types; .ci/run runs exactly those, and the
 * demo among them runs the checkout's own CLI at once (not `npx kvm-sev`, which in the checkout
 * reinstalls it into npx's cache and recompiles the addon before printing anything).
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { packageRoot } from '../../lib/backends/native/addon.js';

const root = packageRoot();
const readme = readFileSync(join(root, 'README.md'), 'utf8');
const ci = readFileSync(join(root, '.ci', 'run'), 'utf8');

/** The README's first code block, which must open the README right under its title. */
function readmeFirstBlock(): string[] {
  const lines = readme.split('\n');
  if (!lines[0]?.startsWith('# ') || lines[1] !== '' || lines[2] !== '```sh') {
    throw new Error('README.md does not open with its title and then a ```sh block');
  }
  const end = lines.indexOf('```', 3);
  if (end < 0) throw new Error('the README’s first block is not closed');
  return lines.slice(3, end);
}

/** A shell line without its trailing comment. */
function command(line: string): string {
  return line.replace(/(^|\s+)#.*$/, '').trim();
}

/** The entries of .ci/run's readme_commands=( … ) array, one single-quoted command a line. */
function ciCommands(): string[] {
  const m = /^readme_commands=\(\n([\s\S]*?)\n\)$/m.exec(ci);
  if (!m) throw new Error('.ci/run has no readme_commands=( … ) array');
  return m[1]!.split('\n').map((l) => {
    const q = /^\s*'([^']*)'\s*$/.exec(l);
    if (!q) throw new Error(`.ci/run: not a single-quoted command: ${l}`);
    return q[1]!;
  });
}

test("the README's first command block is exactly what .ci/run runs", (t) => {
  const readmeCommands = readmeFirstBlock().map(command).filter(Boolean);
  t.true(readmeCommands.length > 0);
  t.deepEqual(ciCommands(), readmeCommands);
  // …and .ci/run runs each entry, in order, failing on any failure within a line.
  t.regex(ci, /^for cmd in "\$\{readme_commands\[@\]\}"; do$/m);
  t.regex(ci, /^ {2}bash -euo pipefail -c "\$cmd" 2>&1 \| tee -a "\$log"$/m);
  t.regex(ci, /^set -euo pipefail$/m);
});

test("the README's first command runs the demo through `npm run demo`, which is the package's own bin", (t) => {
  const first = command(readmeFirstBlock()[0] ?? '');
  t.regex(first, /(^|&& )npm run demo($| )/);
  t.notRegex(readmeFirstBlock().join('\n'), /npx/);
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
    bin: Record<string, string>;
    scripts: Record<string, string>;
  };
  const bin = pkg.bin['kvm-sev']!.replace(/^\.\//, '');
  t.is(pkg.scripts['demo'], `node ${bin} demo`);
});

test('`npm run demo` runs the built CLI in place, offline, and its first line names the backend', async (t) => {
  const { stdout } = await promisify(execFile)('npm', ['run', '--silent', 'demo', '--', '--backend', 'mock'], {
    cwd: root,
    env: { ...process.env, npm_config_offline: 'true', npm_config_update_notifier: 'false' },
    timeout: 60_000,
  });
  const lines = stdout.split('\n');
  t.is(lines[0], 'backend: mock (asked for the mock)');
  t.true(lines.includes('attested launch complete'), stdout);
});
