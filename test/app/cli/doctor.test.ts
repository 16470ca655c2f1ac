/**
 * `kvm-sev doctor` reports the real host, from the real host, whatever backend the other commands
 * would pick; what a mock or hybrid would emulate appears only on request, marked on every line.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { release } from 'node:os';
import test from 'ava';
import { assertUsageError, runCli as run } from '../../helpers/cli.js';
import { hwTest, kvmDevice } from '../../helpers/hw.js';

interface Line {
  id: string;
  status: string;
  title: string;
  value: string;
  meaning: string;
  emulated?: boolean;
}
interface Report {
  source: string;
  backend: string;
  lines: Line[];
  kvm: boolean;
  sev: boolean;
  sevEs: boolean;
  snp: boolean;
  sevPlatform: boolean;
  kernel: string;
  cpu: { hypervisor: boolean; svm: boolean; sev: boolean; identity: { vendor: string; family: number } | null };
  kvmFlavour: { kind: string; modules: string[]; underHypervisor: boolean };
  requirements: Record<'kvm' | 'sev' | 'sev-es' | 'snp', { met: boolean; why: string }>;
  required: string[];
  missing: string[];
  ok: boolean;
  emulated?: Omit<Report, 'emulated'> & { note: string; reason: string };
}

const json = (...args: string[]): { status: number | null; rep: Report; stderr: string } => {
  const r = run(['doctor', '--json', ...args]);
  return { status: r.status, rep: JSON.parse(r.stdout) as Report, stderr: r.stderr };
};

/** The host's own facts, read here the way a person would check them. */
const hostFlags = (): Set<string> => {
  const line = readFileSync('/proc/cpuinfo', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('flags'));
  return new Set(line ? line.split(':')[1]!.trim().split(/\s+/) : []);
};
const hostKvmModules = (): string[] => {
  try {
    return readdirSync('/sys/module').filter((m) => m.startsWith('kvm'));
  } catch {
    return [];
  }
};

test('doctor --json: the facts are the host kernel, CPU flags, KVM modules and device nodes', (t) => {
  const { rep } = json();
  t.is(rep.source, 'host');
  t.not(rep.backend, 'mock');
  t.not(rep.backend, 'hybrid');
  t.is(rep.kernel, release());
  const flags = hostFlags();
  t.is(rep.cpu.hypervisor, flags.has('hypervisor'));
  t.is(rep.cpu.svm, flags.has('svm'));
  t.is(rep.cpu.sev, flags.has('sev'));
  t.deepEqual(rep.kvmFlavour.modules.sort(), hostKvmModules().sort());
  const sevLine = rep.lines.find((l) => l.id === 'dev-sev')!;
  if (!existsSync('/dev/sev')) {
    t.is(sevLine.value, 'absent', 'no /dev/sev here, and doctor says so');
    t.false(rep.sevPlatform);
    t.false(rep.requirements.sev.met);
  }
  t.true(rep.lines.every((l) => l.emulated === undefined));
  t.is(rep.emulated, undefined, 'nothing emulated unless asked');
});

test('doctor names which KVM this is: a paravirtualised kvm_pvm, a nested kvm_amd, or kvm_amd on bare metal', (t) => {
  const { rep } = json();
  const mods = hostKvmModules();
  const line = rep.lines.find((l) => l.id === 'kvm-flavour')!;
  if (mods.includes('kvm_pvm')) {
    t.is(rep.kvmFlavour.kind, 'pvm');
    t.regex(line.value, /kvm_pvm/);
    t.regex(line.meaning, /instruction emulator/);
    t.is(line.status, 'warn');
  } else if (mods.includes('kvm_amd')) {
    t.is(rep.kvmFlavour.kind, hostFlags().has('hypervisor') ? 'nested-svm' : 'svm');
  } else t.pass(`this host has ${mods.join(', ') || 'no KVM module'}`);
});

test('doctor --require: exit status 1 exactly when the host lacks it; --json carries the same', (t) => {
  const { rep: plain } = json();
  const failed = plain.lines.some((l) => l.status === 'fail');
  for (const req of ['kvm', 'sev', 'sev-es', 'snp'] as const) {
    const met = plain.requirements[req].met;
    const r = run(['doctor', '--require', req]);
    t.is(r.status, met && !failed ? 0 : 1, `${req}: ${plain.requirements[req].why}`);
    t.regex(r.stdout, new RegExp(`${met ? 'has' : 'LACKS'} ${req} \\(--require\\)`));
    const j = json('--require', req);
    t.deepEqual(j.rep.required, [req]);
    t.deepEqual(j.rep.missing, met ? [] : [req]);
    t.is(j.rep.ok, met && !failed);
    t.is(j.status, j.rep.ok ? 0 : 1);
  }
  const both = json('--require', 'kvm,sev', '--require', 'kvm');
  t.deepEqual(both.rep.required, ['kvm', 'sev']);
});

test('doctor --require sev exits 1 on a host without /dev/sev, even where the hybrid would mock SEV', (t) => {
  if (existsSync('/dev/sev')) return t.pass('this host has /dev/sev');
  const r = run(['doctor', '--require', 'sev']);
  t.is(r.status, 1);
  t.regex(r.stdout, /LACKS sev/);
  t.regex(r.stdout, /this host: KVM (yes|no), SEV no/);
  t.notRegex(r.stdout, /firmware API/, 'no mocked firmware in the host report');
  t.is(run(['doctor', '--require', 'sev', '--backend', 'hybrid']).status, 1, 'emulated SEV does not satisfy --require');
});

hwTest(kvmDevice(), 'doctor --require kvm exits 0 where /dev/kvm works', (t) => {
  const r = run(['doctor', '--require', 'kvm']);
  t.is(r.status, 0, r.stdout + r.stderr);
  t.regex(r.stdout, /has kvm \(--require\)/);
});

test('doctor --backend mock: the host part is unchanged, and every emulated line says so', (t) => {
  const host = json().rep;
  const { rep } = json('--backend', 'mock');
  for (const k of ['kvm', 'sev', 'sevEs', 'snp', 'sevPlatform', 'kernel', 'cpu', 'kvmFlavour', 'requirements'] as const)
    t.deepEqual(rep[k], host[k], k);
  t.deepEqual(
    rep.lines.map((l) => l.id),
    host.lines.map((l) => l.id),
  );
  const emu = rep.emulated!;
  t.is(emu.backend, 'mock');
  t.regex(emu.note, /not this host's/);
  t.true(emu.sev && emu.sevPlatform);
  t.true(emu.lines.length > 0 && emu.lines.every((l) => l.emulated === true));
  t.regex(emu.kernel, /mock/);

  const text = run(['doctor', '--backend', 'mock']).stdout.split('\n');
  const at = text.findIndex((l) => l.startsWith('emulated by the mock backend'));
  t.true(at > 0);
  t.regex(text[at]!, /not this host's/);
  const marked = (l: string) => /^(ok |warn|FAIL|info) /.test(l);
  t.true(text.slice(0, at).filter(marked).length > 0);
  t.true(
    text.slice(0, at).every((l) => !l.includes('[mock]')),
    'no mock tag in the host part',
  );
  const emulatedLines = text.slice(at).filter(marked);
  t.true(emulatedLines.length > 0);
  for (const l of emulatedLines) t.regex(l, /\[mock\]/);
});

test('doctor without the native addon reports the host from /proc, /sys and /dev, and no SEV', (t) => {
  const r = run(['doctor', '--json', '--require', 'kvm'], { KVM_SEV_ADDON: '/nonexistent/kvm_sev.node' });
  const rep = JSON.parse(r.stdout) as Report;
  t.is(r.status, 1);
  t.is(rep.backend, 'none');
  t.false(rep.kvm);
  t.false(rep.sev);
  t.false(rep.sevPlatform);
  t.deepEqual(rep.missing, ['kvm']);
  t.is(rep.kernel, release());
  const kvm = rep.lines.find((l) => l.id === 'kvm')!;
  t.is(kvm.status, 'fail');
  t.regex(kvm.meaning, /native addon/);
});

test('doctor --guest-size takes 10T; bad --require, --guest-size and --processor are usage errors', (t) => {
  const big = json('--guest-size', '10T');
  t.not(big.status, 2, big.stderr);
  t.regex(big.rep.lines.find((l) => l.id === 'memlock')!.meaning, /10240 GiB/);
  assertUsageError(t, run(['doctor', '--require', 'zen']), /--require/, /'zen'/);
  assertUsageError(t, run(['doctor', '--guest-size', '10X']), /--guest-size/);
  assertUsageError(t, run(['doctor', '--processor', 'genoa']), /--processor/, /--backend/);
  assertUsageError(t, run(['doctor', '--backend', 'bogus']), /--backend/);
});
