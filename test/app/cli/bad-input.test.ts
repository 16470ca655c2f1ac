/**
 * Bad input on the command line: exit status 2 and a message naming the flag or the file, never a
 * library error about an internal parameter; and the cases where input was silently lost or misread.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { openSecret } from '../../../lib/crypto/secret.js';
import { assertUsageError, cliPath, repoRoot, runCli as run } from '../../helpers/cli.js';
import { hwTest, kvmDevice } from '../../helpers/hw.js';

/** A scratch folder for one test, removed at its teardown: `file` writes into it, `missing` names nothing. */
function scratch(t: ExecutionContext) {
  const dir = mkdtempSync(join(tmpdir(), 'kvm-sev-cli-bad-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, data: string | Uint8Array): string => {
    const p = join(dir, name);
    writeFileSync(p, data);
    return p;
  };
  return { dir, file, missing: join(dir, 'does-not-exist') };
}

// An SEV launch measurement test vector (API 0.18, build 15, policy 0, the empty image's digest).
const MEASURE = ['--api', '0.18', '--build', '15', '--policy', '0'];
const TIK = '66320db73158a35a255d051758e95ed4';
const MNONCE = '4fbe0bedbad6c86ae8f68971d103e554';
const DIGEST = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
const V4_MEASURE = '6faab2daae389bcd3405a05d6cafe33c0414f7bedd0bae19ba5f38b7fd1664ea';
const measureArgs = (...over: string[]) => ['measure', ...MEASURE, '--tik', TIK, '--mnonce', MNONCE, '--digest', DIGEST, ...over];

const TEK = Buffer.alloc(16, 1);
const TIK2 = Buffer.alloc(16, 2);
const MEASUREMENT = Buffer.alloc(32, 3);
const LUKS = '736869e5-84f0-4973-92ec-06879ce3da0b';
const secretArgs = (...rest: string[]) => [
  'secret',
  '--tek',
  TEK.toString('hex'),
  '--tik',
  TIK2.toString('hex'),
  '--measurement',
  MEASUREMENT.toString('hex'),
  ...rest,
];

test('measure --build 300, --api 1.999, --policy past 32 bits: the flag is named, exit 2', (t) => {
  assertUsageError(t, run(measureArgs('--build', '300')), /--build/, /0 to 255/, /'300'/);
  assertUsageError(
    t,
    run(['measure', '--api', '1.999', '--build', '15', '--policy', '0', '--tik', TIK, '--mnonce', MNONCE, '--digest', DIGEST]),
    /--api/,
    /1\.999/,
  );
  assertUsageError(
    t,
    run(['measure', '--api', '300.1', '--build', '15', '--policy', '0', '--tik', TIK, '--mnonce', MNONCE, '--digest', DIGEST]),
    /--api/,
  );
  assertUsageError(t, run(measureArgs('--policy', '0x100000000')), /--policy/);
  assertUsageError(t, run(measureArgs('--build', '1e2')), /--build/);
  assertUsageError(t, run(measureArgs('--build', '')), /--build/);
  t.is(run(measureArgs('--build', '0xf')).stdout.trim(), V4_MEASURE, 'hex is still accepted');
});

test('measure --expected MEASURE‖MNONCE: the MNONCE half counts', (t) => {
  const good48 = V4_MEASURE + MNONCE;
  const ok = run(measureArgs('--expected', good48));
  t.is(ok.status, 0, ok.stderr);
  t.regex(ok.stdout, /matches/);
  const otherNonce = V4_MEASURE + '00'.repeat(16);
  assertUsageError(t, run(measureArgs('--expected', otherNonce)), /--expected/, /--mnonce/, /MNONCE/);
  // Without --mnonce the 48-byte LAUNCH_MEASURE output supplies it.
  const noMnonce = ['measure', ...MEASURE, '--tik', TIK, '--digest', DIGEST];
  const fromExpected = run([...noMnonce, '--expected', good48]);
  t.is(fromExpected.status, 0, fromExpected.stderr);
  t.is(fromExpected.stdout.split('\n')[0], V4_MEASURE);
  const wrongMeasure = run([...noMnonce, '--expected', V4_MEASURE.replace(/^6f/, '70') + MNONCE]);
  t.is(wrongMeasure.status, 1);
  t.regex(wrongMeasure.stdout, /does NOT match/);
  assertUsageError(t, run(noMnonce), /--mnonce/);
  assertUsageError(t, run(measureArgs('--expected', 'abcd')), /--expected/, /32 bytes .* or 48 bytes/);
});

test('measure: a missing file is named with its flag, for every file it reads', (t) => {
  const { file, missing } = scratch(t);
  const base = ['measure', ...MEASURE, '--mnonce', MNONCE];
  const fw = file('empty.fd', '');
  assertUsageError(t, run([...base, '--tik-file', missing, '--digest', DIGEST]), /--tik-file/, /does-not-exist/, /no such file/);
  assertUsageError(t, run([...base, '--tik', TIK, '--firmware', missing]), /--firmware/, /does-not-exist/);
  assertUsageError(t, run([...base, '--tik', TIK, '--firmware', fw, '--kernel', missing]), /--kernel/, /does-not-exist/);
  assertUsageError(t, run([...base, '--tik', TIK, '--firmware', fw, '--kernel', fw, '--initrd', missing]), /--initrd/, /does-not-exist/);
  assertUsageError(t, run([...base, '--tik', TIK, '--firmware', fw, '--vmsa', missing]), /--vmsa/, /does-not-exist/);
  assertUsageError(t, run([...base, '--tik', TIK, '--firmware', fw, '--vmsa', fw]), /--vmsa/, /4096 bytes/);
  assertUsageError(t, run([...base, '--tik-file', file('tik7', 'abcdefg'), '--digest', DIGEST]), /--tik-file/, /16 bytes/);
  assertUsageError(t, run([...base, '--tik', TIK, '--digest', DIGEST, '--cmdline', 'x']), /--cmdline/);
});

test('measure, SEV-ES and direct boot: a bad CPU or vCPU count, or a firmware that cannot do what is asked, names the flag', (t) => {
  const { file } = scratch(t);
  const fw = file('plain.fd', Buffer.alloc(4096)); // no OVMF footer table: no hashes table, no SEV-ES reset block
  const kernel = file('vmlinuz', Buffer.alloc(64));
  const base = ['measure', ...MEASURE, '--tik', TIK, '--mnonce', MNONCE, '--firmware', fw];
  assertUsageError(t, run([...base, '--vcpus', '2', '--vcpu-type', 'zen']), /--vcpu-type/, /'zen'/, /EPYC-Milan/);
  assertUsageError(t, run([...base, '--vcpus', '2', '--vcpu-type', 'toString']), /--vcpu-type/);
  assertUsageError(t, run([...base, '--vcpus', '0', '--vcpu-type', 'EPYC']), /--vcpus/, /1 to 512/);
  assertUsageError(t, run([...base, '--vcpus', '600', '--vcpu-type', 'EPYC']), /--vcpus/);
  const fms = ['--vcpu-family', '25', '--vcpu-model', '1', '--vcpu-stepping'];
  assertUsageError(t, run([...base, '--vcpus', '1', ...fms, '16']), /--vcpu-stepping/);
  assertUsageError(t, run([...base, '--vcpus', '1', '--vcpu-sig', '0x100000000']), /--vcpu-sig/);
  assertUsageError(t, run([...base, '--vcpu-type', 'EPYC']), /--vcpu-type goes with --vcpus/);
  assertUsageError(t, run([...base, '--kernel', kernel]), /--kernel/, /plain\.fd/, /no SEV hashes table/);
  assertUsageError(t, run([...base, '--vcpus', '1', '--vcpu-type', 'EPYC']), /--vcpus/, /plain\.fd/, /no SEV-ES reset block/);
});

test('secret --measurement 1234, --entry notaguid=F, a 7-byte --raw file: the flag is named, exit 2', (t) => {
  const { file } = scratch(t);
  const key = file('key', 'hunter2');
  const keys = ['--tek', TEK.toString('hex'), '--tik', TIK2.toString('hex')];
  assertUsageError(t, run(['secret', ...keys, '--measurement', '1234', '--raw', key]), /--measurement/, /32 bytes/, /48 bytes/);
  assertUsageError(t, run(secretArgs('--entry', `notaguid=${key}`)), /--entry/, /notaguid/, /GUID/);
  assertUsageError(t, run(secretArgs('--entry', `${LUKS}=${key}`, '--entry', `${LUKS.toUpperCase()}=${key}`)), /--entry/, /twice/);
  assertUsageError(t, run(secretArgs('--raw', file('raw7', 'abcdefg'))), /--raw/, /raw7/, /7 bytes/, /multiple of 16/);
  assertUsageError(t, run(secretArgs('--entry', `${LUKS}=${file('big', Buffer.alloc(0x5000))}`)), /--entry/, /20480/);
});

test('secret: a missing file is named with its flag, for every file it reads', (t) => {
  const { file, missing } = scratch(t);
  assertUsageError(t, run(secretArgs('--raw', missing)), /--raw/, /does-not-exist/, /no such file/);
  assertUsageError(t, run(secretArgs('--entry', `${LUKS}=${missing}`)), new RegExp(`--entry ${LUKS}`), /does-not-exist/);
  const noKeys = ['secret', '--measurement', MEASUREMENT.toString('hex'), '--raw', file('raw16', Buffer.alloc(16))];
  assertUsageError(t, run([...noKeys, '--tek-file', missing, '--tik', TIK2.toString('hex')]), /--tek-file/, /does-not-exist/);
  assertUsageError(t, run([...noKeys, '--tek', TEK.toString('hex'), '--tik-file', missing]), /--tik-file/, /does-not-exist/);
});

test('secret --out-header without --out-secret loses nothing: refused before writing; both together write both', (t) => {
  const { dir, file, missing } = scratch(t);
  const key = file('key2', 'hunter2');
  const header = join(dir, 'header.bin');
  const sec = join(dir, 'secret.bin');
  assertUsageError(t, run(secretArgs('--entry', `${LUKS}=${key}`, '--out-header', header)), /--out-header/, /--out-secret/);
  t.false(existsSync(header), 'nothing written');
  assertUsageError(t, run(secretArgs('--entry', `${LUKS}=${key}`, '--out-secret', sec)), /--out-header/, /--out-secret/);
  t.false(existsSync(sec));
  const r = run(secretArgs('--entry', `${LUKS}=${key}`, '--out-header', header, '--out-secret', sec));
  t.is(r.status, 0, r.stderr);
  t.regex(r.stdout, /header\.bin/);
  const opened = openSecret({ tek: TEK, tik: TIK2, measurement: MEASUREMENT, header: readFileSync(header), trans: readFileSync(sec) });
  t.true(Buffer.from(opened).includes(Buffer.from('hunter2')));
  assertUsageError(
    t,
    run(secretArgs('--entry', `${LUKS}=${key}`, '--out-header', join(missing, 'h'), '--out-secret', sec)),
    /--out-header/,
    /does-not-exist/,
  );
});

test('certs verify --generation zen, unreadable and malformed certificate files: named, exit 2', (t) => {
  const { dir, file, missing } = scratch(t);
  const out = join(dir, 'mock-certs');
  const e = run(['certs', 'export', '--backend', 'mock', '--out', out]);
  t.is(e.status, 0, e.stderr);
  const f = (n: string) => join(out, `${n}.cert`);
  const chain = ['--pdh', f('pdh'), '--pek', f('pek'), '--oca', f('oca'), '--cek', f('cek')];
  assertUsageError(
    t,
    run(['certs', 'verify', ...chain, '--generation', 'zen']),
    /--generation/,
    /'zen'/,
    /naples, rome, milan, genoa, turin/,
  );
  for (const k of ['pdh', 'pek', 'oca', 'cek']) {
    const args = chain.map((a) => (a === f(k) ? missing : a));
    assertUsageError(t, run(['certs', 'verify', ...args]), new RegExp(`--${k}`), /does-not-exist/, /no such file/);
  }
  const seven = file('seven.cert', 'abcdefg');
  assertUsageError(
    t,
    run(['certs', 'verify', ...chain.map((a) => (a === f('pek') ? seven : a))]),
    /--pek/,
    /seven\.cert/,
    /not an SEV certificate/,
  );
  assertUsageError(t, run(['certs', 'verify', '--bundle', missing]), /--bundle/, /does-not-exist/);
  assertUsageError(t, run(['certs', 'verify', '--bundle', seven]), /--bundle/, /seven\.cert/);
  assertUsageError(t, run(['certs', 'verify', ...chain, '--root-ark', missing, '--root-ask', f('ask')]), /--root-ark/, /does-not-exist/);
  assertUsageError(t, run(['certs', 'verify', ...chain, '--root-ark', f('pek'), '--root-ask', f('ask')]), /--root-ark/, /not an AMD/);
  assertUsageError(t, run(['certs', 'verify', ...chain, '--ask', f('ask')]), /--ark and --ask go together/);
  assertUsageError(t, run(['certs', 'export', '--backend', 'mock', '--out', join(seven, 'sub')]), /--out/, /seven\.cert/);
});

test('trace: a missing file, a file that is not JSON, JSON that is not a trace: named, exit 2', (t) => {
  const { file, missing } = scratch(t);
  assertUsageError(t, run(['trace', missing]), /does-not-exist/, /no such file/);
  assertUsageError(t, run(['trace', file('bytes.bin', Buffer.from([0, 1, 2, 3]))]), /bytes\.bin/, /not a kvm-sev trace/, /not JSON/);
  const obj = run(['trace', file('object.json', '{"a":1}')]);
  assertUsageError(t, obj, /object\.json/, /not a kvm-sev trace/);
  t.notRegex(obj.stdout, /undefined/);
  assertUsageError(t, run(['trace', file('entries.json', '[{"a":1}]')]), /entries\.json/, /entry 0/);
  assertUsageError(t, run(['trace', file('numbers.json', '[1,2]')]), /numbers\.json/, /entry 0 is not an object/);
  const empty = run(['trace', file('empty.json', '[]')]);
  t.is(empty.status, 0, 'an empty trace is a trace');
  t.is(empty.stdout, '');
  const one = run(['trace', file('one.ndjson', '{"seq":1,"fd":3,"fdKind":"kvm","request":"KVM_GET_API_VERSION","result":12}\n')]);
  t.is(one.status, 0, one.stderr);
  t.regex(one.stdout, /KVM_GET_API_VERSION = 12/);
});

test('demo --trace into a directory that does not exist: named, exit 2', (t) => {
  const { missing } = scratch(t);
  assertUsageError(t, run(['demo', '--backend', 'mock', '--trace', join(missing, 'trace.json')]), /--trace/, /does-not-exist/);
});

test('`kvm-sev demo | head -3` prints three lines and stops quietly: no EPIPE stack trace', (t) => {
  const r = spawnSync('bash', ['-c', `set -o pipefail; "${process.execPath}" "${cliPath}" demo --backend mock | head -3`], {
    encoding: 'utf8',
    env: { ...process.env, NO_COLOR: '1' },
    timeout: 120_000,
  });
  t.is(r.stdout.trim().split('\n').length, 3);
  t.regex(r.stdout, /^backend: mock/);
  t.is(r.stderr, '', 'nothing on stderr');
  t.true(r.status === 0 || r.status === 141, `status ${String(r.status)}`);
});

test('a reader that closes at once: exit status 141 (as for SIGPIPE), nothing on stderr', async (t) => {
  const child = spawn(process.execPath, [cliPath, 'demo', '--backend', 'mock'], { env: { ...process.env, NO_COLOR: '1' } });
  t.teardown(() => void child.kill('SIGKILL'));
  child.stdout.destroy(); // the read end goes away before the child writes its first line
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
  t.is(code, 141);
  t.is(stderr, '');
});

test('--version prints the package version; `certs` alone shows its help; doctor --guest-size takes 10T', (t) => {
  const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string };
  const v = run(['--version']);
  t.is(v.status, 0);
  t.is(v.stdout.trim(), `kvm-sev ${pkg.version}`);
  assertUsageError(t, run(['certs']), /export or verify/, /Usage: kvm-sev certs verify/);
  assertUsageError(t, run(['certs', 'frobnicate']), /'frobnicate'/);
  t.not(run(['doctor', '--guest-size', '10T']).status, 2);
});

test('hello --message longer than the guest can hold: named, exit 2, before KVM is touched', (t) => {
  assertUsageError(t, run(['hello', '--message', 'x'.repeat(70_000)]), /--message/, /70000 bytes/, /at most \d+/);
  assertUsageError(t, run(['hello', '--message', `${'é'.repeat(31_000)}`]), /--message/, /62000 bytes in UTF-8/);
});

hwTest(kvmDevice(), 'hello --message prints any text whole: non-Latin-1 characters and a multi-page message', (t) => {
  const text = 'héllo ✓ 日本語 🚀 Ωmega';
  const r = run(['hello', '--message', text]);
  t.is(r.status, 0, r.stderr);
  t.is(r.stdout.split('\n')[0], text);
  const j = run(['hello', '--message', text, '--json']);
  t.is((JSON.parse(j.stdout) as { output: string }).output, `${text}\n`);
  const long = `${'kvm-sev ✓ '.repeat(400)}end`; // 4803 bytes of UTF-8: more than a page of guest memory
  const l = run(['hello', '--message', long, '--json']);
  t.is(l.status, 0, l.stderr);
  t.is((JSON.parse(l.stdout) as { output: string }).output, `${long}\n`);
});
