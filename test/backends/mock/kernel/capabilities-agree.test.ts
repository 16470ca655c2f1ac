/**
 * Every SEV capability the mock advertises agrees across the four places a VMM (or the kernel's own
 * sev_init2_tests) reads it: CPUID 0x8000001F EAX, KVM_CAP_VM_TYPES, KVM_GET_DEVICE_ATTR on
 * /dev/kvm (group KVM_X86_GRP_SEV), and kvm_amd's module parameters (with the CPU flags beside them).
 */
import test from 'ava';
import { Kvm } from '../../../../lib/kvm/kvm.js';
import { MockHost } from '../../../../lib/backends/mock/index.js';
import type { KernelProfile } from '../../../../lib/backends/mock/index.js';
import {
  KVM_X86_GRP_SEV,
  KVM_X86_SEV_ES_VM,
  KVM_X86_SEV_VM,
  KVM_X86_SEV_VMSA_FEATURES,
  KVM_X86_SNP_VM,
} from '../../../../lib/uapi/constants.js';

const KERNELS: KernelProfile[] = ['6.12', '7.2', 'local-migration-2021'];
const PROCESSORS = ['naples', 'rome', 'milan', 'genoa'] as const;
const SEV_OPTIONS = [
  { enabled: false, es: false, snp: false },
  { enabled: true, es: false, snp: false },
  { enabled: true, es: true, snp: false },
  { enabled: true, es: true, snp: true },
];

for (const kernel of KERNELS) {
  test(`kernel ${kernel}: CPUID, VM types, device attributes and kvm_amd parameters agree`, (t) => {
    let cases = 0;
    for (const processor of PROCESSORS) {
      for (const sev of SEV_OPTIONS) {
        if (kernel === 'local-migration-2021' && sev.snp) continue; // refused as an option: no SNP in 2021
        const host = new MockHost({ kernel, processor, sev });
        const kvm = Kvm.open({ backend: host });
        t.teardown(() => kvm.close());
        const at = `${kernel}/${processor}/${JSON.stringify(sev)}`;
        const leaf = kvm.supportedCpuid().find((e) => e.function === 0x8000001f);
        const eax = leaf?.eax ?? 0;
        const cpuid = { sev: (eax & 0x2) !== 0, es: (eax & 0x8) !== 0, snp: (eax & 0x10) !== 0 };
        const param = (n: string) => host.system.kvmAmdParam(n) === 'Y';
        const params = { sev: param('sev'), es: param('sev_es'), snp: param('sev_snp') };
        const flags = host.system.cpuFlags();
        t.deepEqual(params, cpuid, `${at}: kvm_amd parameters vs CPUID`);
        t.deepEqual({ sev: flags.has('sev'), es: flags.has('sev_es'), snp: flags.has('sev_snp') }, cpuid, `${at}: CPU flags vs CPUID`);
        // The selftests' rule: a VM type is offered exactly when its CPUID bit is set (kernels with VM types).
        const types = kvm.supportedVmTypes();
        if (kernel !== 'local-migration-2021') {
          const offered = {
            sev: types.includes(KVM_X86_SEV_VM),
            es: types.includes(KVM_X86_SEV_ES_VM),
            snp: types.includes(KVM_X86_SNP_VM),
          };
          t.deepEqual(offered, cpuid, `${at}: VM_TYPES vs CPUID`);
        } else {
          t.deepEqual(types, [0], `${at}: no VM types before 6.10`);
        }
        // The VMSA features attribute exists where SEV-ES is there to use it (and only on kernels that have it).
        if (kernel !== 'local-migration-2021') {
          const features = kvm.deviceAttr(KVM_X86_GRP_SEV, KVM_X86_SEV_VMSA_FEATURES);
          if (!cpuid.es) t.is(features, 0n, `${at}: VMSA features without SEV-ES`);
        }
        if (processor === 'naples' || processor === 'rome') t.false(cpuid.snp, `${at}: SNP before Milan`);
        // SEV-ES implies SEV; SNP implies SEV-ES.
        t.true(!cpuid.es || cpuid.sev, `${at}: ES without SEV`);
        t.true(!cpuid.snp || cpuid.es, `${at}: SNP without ES`);
        cases++;
      }
    }
    t.true(cases >= 12);
  });
}
