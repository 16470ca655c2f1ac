/** The owner-side CLI commands, run as a user would: exit codes, text and --json output. */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { buildSecret } from '../../../lib/owner/index.js';
import { openSecret } from '../../../lib/crypto/secret.js';
import { SEV_CERTS_DIR } from '../../helpers/cert-fixtures.js';

const root = fileURLToPath(new URL('../../../..', import.meta.url));
const cli = join(root, 'dist/lib/app/cli/main.js');
const fixtures = SEV_CERTS_DIR;
const run = (...args: string[]) =>
  spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });

// The LAUNCH_MEASURE vector of AMD sev-tool (src/tests.cpp: test_calc_measurement); docs/sev-reference.md §10 V4
const V4 = [
  '--api',
  '0.18',
  '--build',
  '15',
  '--policy',
  '0',
  '--mnonce',
  '4fbe0bedbad6c86ae8f68971d103e554',
  '--tik',
  '66320db73158a35a255d051758e95ed4',
  '--digest',
  'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
];
const V4_MEASURE = '6faab2daae389bcd3405a05d6cafe33c0414f7bedd0bae19ba5f38b7fd1664ea';

test('measure reproduces vector V4, compares with --expected, and reports --json', (t) => {
  const r = run('measure', ...V4);
  t.is(r.status, 0);
  t.is(r.stdout.trim(), V4_MEASURE);
  t.is(run('measure', ...V4, '--expected', V4_MEASURE).status, 0);
  const bad = run('measure', ...V4, '--expected', V4_MEASURE.replace(/^6f/, '70'));
  t.is(bad.status, 1);
  t.regex(bad.stdout, /does NOT match/);
  const j = JSON.parse(run('measure', ...V4, '--json').stdout) as { measurement: string; digest: string };
  t.is(j.measurement, V4_MEASURE);
});

test('measure computes the digest from a firmware file (SHA-256 of the image)', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kvm-sev-cli-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'empty.fd'), Buffer.alloc(0));
  const args = V4.filter((_, i) => i < V4.length - 2); // drop --digest
  const r = run('measure', ...args, '--firmware', join(dir, 'empty.fd'));
  t.is(r.stdout.trim(), V4_MEASURE, "SHA-256 of an empty image is V4's digest");
});

test('the kvm-sev bin is executable on its own (npx runs the file through its shebang)', (t) => {
  const r = spawnSync(cli, ['--help'], { encoding: 'utf8' });
  t.is(r.error, undefined, String(r.error));
  t.is(r.status, 0);
  t.regex(r.stdout, /Usage: kvm-sev <command>/);
});

test('usage errors exit 2 with the help text', (t) => {
  const r = run('measure', '--api', '1');
  t.is(r.status, 2);
  t.regex(r.stderr, /MAJOR\.MINOR/);
  t.regex(r.stderr, /Usage: kvm-sev measure/);
  t.is(run('measure', '--bogus').status, 2);
  t.is(run('frobnicate').status, 2);
  t.is(run().status, 2);
  t.is(run('--help').status, 0);
  for (const c of ['hello', 'measure', 'secret']) t.is(run(c, '--help').status, 0, c);
  t.is(run('certs', '--help').status, 0);
});

test('certs verify: the real Rome and Naples chains verify; a swapped PEK does not', (t) => {
  for (const gen of ['rome', 'naples']) {
    const d = join(fixtures, `platform-${gen}`);
    const r = run(
      'certs',
      'verify',
      '--pdh',
      join(d, 'pdh.cert'),
      '--pek',
      join(d, 'pek.cert'),
      '--oca',
      join(d, 'oca.cert'),
      '--cek',
      join(d, 'cek.cert'),
      '--json',
    );
    t.is(r.status, 0, r.stdout + r.stderr);
    t.deepEqual(JSON.parse(r.stdout), { ok: true, generation: gen });
  }
  const d = join(fixtures, 'platform-rome');
  const bad = run(
    'certs',
    'verify',
    '--pdh',
    join(d, 'pdh.cert'),
    '--pek',
    join(fixtures, 'platform-naples/pek.cert'),
    '--oca',
    join(d, 'oca.cert'),
    '--cek',
    join(d, 'cek.cert'),
    '--json',
  );
  t.is(bad.status, 1);
  t.like(JSON.parse(bad.stdout), { ok: false });
});

test('secret builds a packet the firmware side opens, bound to the measurement', (t) => {
  const tek = Buffer.alloc(16, 1);
  const tik = Buffer.alloc(16, 2);
  const measurement = Buffer.alloc(32, 3);
  const dir = mkdtempSync(join(tmpdir(), 'kvm-sev-cli-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'key'), 'hunter2');
  const r = run(
    'secret',
    '--tek',
    tek.toString('hex'),
    '--tik',
    tik.toString('hex'),
    '--measurement',
    measurement.toString('hex'),
    '--entry',
    `736869e5-84f0-4973-92ec-06879ce3da0b=${join(dir, 'key')}`,
    '--json',
  );
  t.is(r.status, 0, r.stderr);
  const j = JSON.parse(r.stdout) as { header: string; secret: string };
  const opened = openSecret({ tek, tik, measurement, header: Buffer.from(j.header, 'base64'), trans: Buffer.from(j.secret, 'base64') });
  t.true(Buffer.from(opened).includes(Buffer.from('hunter2')));
  // The same inputs through the library give a packet of the same shape.
  const lib = buildSecret({
    tek,
    tik,
    measurement: { measure: measurement },
    secret: [{ guid: '736869e5-84f0-4973-92ec-06879ce3da0b', data: Buffer.from('hunter2') }],
  });
  t.is(lib.trans.length, Buffer.from(j.secret, 'base64').length);
});
