/** The README's API example is examples/hello-guest.ts, word for word, and it runs as written. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { hwTest, kvmDevice } from '../test/helpers/hw.js';

const root = fileURLToPath(new URL('../..', import.meta.url));

test('the README shows examples/hello-guest.ts exactly', (t) => {
  const readme = readFileSync(`${root}README.md`, 'utf8');
  const example = readFileSync(`${root}examples/hello-guest.ts`, 'utf8').replace("'../lib/index.js'", "'kvm-sev'");
  t.true(readme.includes('```ts\n' + example + '```'), 'README block differs from examples/hello-guest.ts');
});

hwTest(kvmDevice(), 'examples/hello-guest.ts runs and prints what its comment says', (t) => {
  const out = execFileSync(process.execPath, [`${root}dist/examples/hello-guest.js`], { encoding: 'utf8' });
  t.is(out.trim(), '"hi from the guest\\n" hlt 24589n');
});
