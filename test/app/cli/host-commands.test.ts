/** The host-facing CLI commands as a user runs them: demo, doctor, status, certs export, trace. */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { hwTest, kvmDevice } from '../../helpers/hw.js';

const root = fileURLToPath(new URL('../../../..', import.meta.url));
const cli = join(root, 'dist/lib/app/cli/main.js');
const run = (...args: string[]) =>
  spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' }, timeout: 120_000 });

interface Report {
  backend: string;
  ok: boolean;
  steps: { step: string; ok: boolean; skipped?: boolean; ms: number; summary: string; detail: Record<string, unknown> }[];
}

const STEPS = ['platform', 'session', 'launch', 'measure', 'secret', 'run', 'host-view'];

test('demo --json on the mock: every step in order, each ok, the run skipped with its reason', (t) => {
  const r = run('demo', '--backend', 'mock', '--json');
  t.is(r.status, 0, r.stderr);
  const rep = JSON.parse(r.stdout) as Report;
  t.is(rep.backend, 'mock');
  t.true(rep.ok);
  t.deepEqual(
    rep.steps.map((s) => s.step),
    STEPS,
  );
  for (const s of rep.steps) {
    t.true(s.ok, `${s.step}: ${s.summary}`);
    t.true(s.ms >= 0);
  }
  t.is(rep.steps[0]!.detail['root'], 'mock');
  t.regex(String(rep.steps[2]!.detail['measurement']), /^[0-9a-f]{64}$/);
  t.true(rep.steps[5]!.skipped);
  t.regex(rep.steps[5]!.summary, /runs no guest code/);
  t.true(rep.steps[6]!.detail['dbgDecryptMatches']);
});

hwTest(kvmDevice(), 'demo --json on the hybrid: the real guest prints the digest of its secret', (t) => {
  const r = run('demo', '--backend', 'hybrid', '--json');
  t.is(r.status, 0, r.stderr + r.stdout);
  const rep = JSON.parse(r.stdout) as Report;
  t.is(rep.backend, 'hybrid');
  t.deepEqual(
    rep.steps.map((s) => [s.step, s.ok, s.skipped ?? false]),
    STEPS.map((s) => [s, true, false]),
  );
  const runStep = rep.steps[5]!;
  t.is(runStep.detail['printed'], `secret digest: ${String(runStep.detail['expected'])}`);
  t.regex(String(rep.steps[6]!.detail['hostView']), /^[0-9a-f]{64}$/);
});

test('demo text output: one line per step with its time; the trace it saves decodes', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kvm-sev-cli-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const tf = join(dir, 'trace.json');
  const r = run('demo', '--backend', 'mock', '--trace', tf);
  t.is(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  t.regex(lines[0]!, /^backend: mock/);
  t.is(lines.filter((l) => /^( ok |skip|FAIL) \d\. /.test(l)).length, 7);
  t.true(lines.every((l, i) => i === 0 || i === lines.length - 1 || / ms /.test(l)));
  const entries = JSON.parse(readFileSync(tf, 'utf8')) as { request: string; command?: string }[];
  t.true(entries.some((e) => e.command === 'LAUNCH_START'));
  const tr = run('trace', tf, '--sev');
  t.is(tr.status, 0, tr.stderr);
  t.regex(tr.stdout, /KVM_MEMORY_ENCRYPT_OP LAUNCH_MEASURE = 0 +fw: LAUNCH_MEASURE/);
  t.regex(tr.stdout, /PDH_CERT_EXPORT EIO \(INVALID_LEN\)/, 'the length query is there, with its firmware status');
  t.is(run('trace').status, 2);
  t.is(run('trace', join(dir, 'missing.json')).status, 2);
});

test('doctor --backend mock --json: what the mock emulates (SEV, SEV-ES, INIT2, memlock for the planned size) is under "emulated"', (t) => {
  const r = run('doctor', '--backend', 'mock', '--guest-size', '2G', '--json');
  const rep = JSON.parse(r.stdout) as {
    ok: boolean;
    lines: { id: string; meaning: string }[];
    emulated: {
      backend: string;
      sev: boolean;
      sevEs: boolean;
      init2: boolean;
      lines: { id: string; status: string; meaning: string; emulated: boolean }[];
    };
  };
  t.is(r.status, rep.ok ? 0 : 1, r.stderr);
  const emu = rep.emulated;
  t.is(emu.backend, 'mock');
  t.true(emu.sev);
  t.true(emu.sevEs);
  t.true(emu.init2);
  const memlock = emu.lines.find((l) => l.id === 'memlock')!;
  t.regex(memlock.meaning, /2 GiB/);
  t.regex(rep.lines.find((l) => l.id === 'memlock')!.meaning, /2 GiB/, "the host's memlock line checks the same size");
  t.true(emu.lines.every((l) => ['ok', 'warn', 'fail', 'info'].includes(l.status) && l.meaning.length > 0 && l.emulated));
  t.is(run('doctor', '--guest-size', 'lots').status, 2);
});

test('status, and certs export then verify against the exported (mock) root', (t) => {
  const s = run('status', '--backend', 'mock', '--json');
  t.is(s.status, 0, s.stderr);
  t.like(JSON.parse(s.stdout), { backend: 'mock', stateName: 'UNINIT' });
  const dir = mkdtempSync(join(tmpdir(), 'kvm-sev-cli-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const e = run('certs', 'export', '--backend', 'mock', '--out', dir);
  t.is(e.status, 0, e.stderr);
  const f = (n: string) => join(dir, `${n}.cert`);
  const v = run(
    'certs',
    'verify',
    '--pdh',
    f('pdh'),
    '--pek',
    f('pek'),
    '--oca',
    f('oca'),
    '--cek',
    f('cek'),
    '--root-ark',
    f('ark'),
    '--root-ask',
    f('ask'),
    '--json',
  );
  t.is(v.status, 0, v.stdout + v.stderr);
  t.true((JSON.parse(v.stdout) as { ok: boolean }).ok);
  const noRoot = run('certs', 'verify', '--pdh', f('pdh'), '--pek', f('pek'), '--oca', f('oca'), '--cek', f('cek'), '--json');
  t.is(noRoot.status, 1, "a mock chain does not verify against AMD's roots alone");
  t.is(run('certs', 'export', '--backend', 'mock').status, 2);
  t.is(run('demo', '--backend', 'bogus').status, 2);
});
