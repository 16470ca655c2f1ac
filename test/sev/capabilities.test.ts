/**
 * The capability probe: which KVM a host runs (from its modules and CPU flags), and what
 * `checkRequirement` concludes, on fixed system views and on the mock.
 */
import test from 'ava';
import type { CpuInfo, DeviceAccess, SystemView } from '../../lib/backend/system-view.js';
import { MockHost } from '../../lib/backends/mock/mock-host.js';
import { checkRequirement, probeCapabilities, type CapabilityReport } from '../../lib/sev/capabilities.js';

function view(o: { modules: string[]; flags: string[]; cpu?: CpuInfo; params?: Record<string, string> }): SystemView {
  const absent = (path: string): DeviceAccess => ({ path, exists: false, readable: false, writable: false });
  return {
    kvmAmdParam: (n) => o.params?.[n],
    kvmModules: () => o.modules,
    memlockLimit: () => 8n << 20n,
    capIpcLock: () => false,
    device: (p) => (p === '/dev/kvm' ? { path: p, exists: true, readable: true, writable: true, mode: 'crw-rw----' } : absent(p)),
    cpuFlags: () => new Set(o.flags),
    cpuInfo: () => o.cpu ?? { vendor: 'AuthenticAMD', family: 25, model: 1, stepping: 1, modelName: 'AMD EPYC 7763' },
    kernelRelease: () => '6.12.0-test',
  };
}

const probe = (v: SystemView): Promise<CapabilityReport> => probeCapabilities({ system: v, unavailable: 'no addon in this test' });
const line = (r: CapabilityReport, id: string) => r.lines.find((l) => l.id === id)!;

test('kvm_pvm inside a VM: a paravirtualised KVM whose instruction emulator limits guests, with no SEV', async (t) => {
  const r = await probe(view({ modules: ['kvm', 'kvm_pvm'], flags: ['fpu', 'sse2', 'hypervisor'] }));
  t.deepEqual(r.kvmFlavour, { kind: 'pvm', modules: ['kvm', 'kvm_pvm'], underHypervisor: true });
  const l = line(r, 'kvm-flavour');
  t.is(l.status, 'warn');
  t.regex(l.value, /kvm_pvm.*inside a VM/);
  t.regex(l.meaning, /instruction emulator/);
  t.regex(l.meaning, /no svm or vmx flag/);
  t.regex(line(r, 'host').meaning, /virtual machine/);
  t.regex(line(r, 'kvm_amd').action!, /svm CPU flag/);
  t.is(line(r, 'cpu-flags').value, 'svm no, sev no, sev_es no, sev_snp no');
});

test('kvm_amd under a hypervisor is nested SVM; on bare metal plain SVM; kvm_intel has no SEV', async (t) => {
  const nested = await probe(view({ modules: ['kvm', 'kvm_amd'], flags: ['svm', 'hypervisor'], params: { sev: 'N' } }));
  t.is(nested.kvmFlavour.kind, 'nested-svm');
  t.regex(line(nested, 'kvm-flavour').meaning, /nested hypervisor/);
  const bare = await probe(view({ modules: ['kvm', 'kvm_amd'], flags: ['svm', 'sev', 'sev_es'], params: { sev: 'Y', sev_es: 'Y' } }));
  t.is(bare.kvmFlavour.kind, 'svm');
  t.is(line(bare, 'kvm-flavour').status, 'ok');
  t.is(line(bare, 'cpu-flags').status, 'ok');
  t.is(line(bare, 'kvm_amd.sev').value, 'Y');
  const intel = await probe(
    view({
      modules: ['kvm', 'kvm_intel'],
      flags: ['vmx'],
      cpu: { vendor: 'GenuineIntel', family: 6, model: 143, stepping: 8, modelName: 'Xeon' },
    }),
  );
  t.is(intel.kvmFlavour.kind, 'vmx');
  t.regex(line(intel, 'cpu-flags').meaning, /Not an AMD processor/);
  const none = await probe(view({ modules: [], flags: ['svm'] }));
  t.is(none.kvmFlavour.kind, 'none');
  t.regex(line(none, 'kvm-flavour').action!, /modprobe kvm_amd/);
});

test('without a backend nothing needs KVM is claimed: kvm, sev and every requirement are unmet, and say why', async (t) => {
  const r = await probe(view({ modules: ['kvm', 'kvm_amd'], flags: ['svm', 'sev'], params: { sev: 'Y' } }));
  t.is(r.backend, 'none');
  t.false(r.kvm);
  t.is(r.cpuid, null);
  t.is(line(r, 'kvm').status, 'fail');
  t.is(line(r, 'kvm').action, 'no addon in this test');
  for (const q of ['kvm', 'sev', 'sev-es', 'snp'] as const) {
    const c = checkRequirement(r, q);
    t.false(c.met, q);
    t.regex(c.why, /no usable KVM/);
  }
});

test('checkRequirement on the mock: what each profile offers, and why not', async (t) => {
  const milan = await probeCapabilities(new MockHost());
  t.is(milan.backend, 'mock');
  t.true(checkRequirement(milan, 'kvm').met);
  t.true(checkRequirement(milan, 'sev').met);
  t.true(checkRequirement(milan, 'sev-es').met);
  t.false(checkRequirement(milan, 'snp').met);
  t.true(checkRequirement(await probeCapabilities(new MockHost({ sev: { snp: true } })), 'snp').met);
  const naples = await probeCapabilities(new MockHost({ processor: 'naples' }));
  t.true(checkRequirement(naples, 'sev').met);
  t.regex(checkRequirement(naples, 'sev-es').why, /no SEV-ES/);
  const off = await probeCapabilities(new MockHost({ sev: { enabled: false } }));
  t.true(checkRequirement(off, 'kvm').met);
  t.regex(checkRequirement(off, 'sev').why, /ENOTTY/);
  t.false(checkRequirement(off, 'sev-es').met);
});

test('the mock system view names itself: its kernel and CPU are marked as the mock, with the CPUID signature of its profile', (t) => {
  const genoa = new MockHost({ processor: 'genoa' }).system;
  t.regex(genoa.kernelRelease(), /mock/);
  t.like(genoa.cpuInfo(), { vendor: 'AuthenticAMD', family: 25, model: 17, stepping: 1 });
  t.regex(genoa.cpuInfo().modelName, /kvm-sev mock, genoa/);
  t.like(new MockHost({ processor: 'rome' }).system.cpuInfo(), { family: 23, model: 49, stepping: 0 });
});
