/**
 * tools/testing/selftests/kvm/x86/sev_init2_tests.c, re-created at the raw ioctl level on the kernels
 * that have KVM_SEV_INIT2 and the KVM_X86_SEV_VMSA_FEATURES attribute (6.10 on: the 6.12 and 7.2
 * profiles; on the 2021 kernel main()'s TEST_REQUIRE skips), on processors with and without SEV-ES
 * and with and without DebugSwap. main()'s CPUID vs KVM_CAP_VM_TYPES agreement, test_vm_types,
 * test_flags and test_features; the SNP VM type is left out (it needs SNP: the hosts here have it off).
 */
import test, { type ExecutionContext } from 'ava';
import {
  KVM_CAP,
  KVM_SEV,
  KVM_X86_GRP_SEV,
  KVM_X86_SEV_ES_VM,
  KVM_X86_SEV_VM,
  KVM_X86_SEV_VMSA_FEATURES,
  KVM_X86_SNP_VM,
} from '../../../../../lib/uapi/constants.js';
import { kvm_sev_init } from '../../../../../lib/uapi/sev-structs.js';
import { SelftestHost } from './selftest-lib.js';

/** SVM_SEV_FEAT_DEBUG_SWAP; KNOWN_FEATURES of the selftest ("right now there's only one"). */
const SVM_SEV_FEAT_DEBUG_SWAP = 1n << 5n;
const KNOWN_FEATURES = SVM_SEV_FEAT_DEBUG_SWAP;
const KVM_X86_SW_PROTECTED_VM = 1;

interface Init {
  vmsa_features?: bigint;
  flags?: number;
}

function init2Suite(t: ExecutionContext, h: SelftestHost) {
  let calls = 0;
  /** __sev_ioctl(): a /dev/sev fd of its own; a successful ioctl must leave error 0. */
  const init2 = (vmType: number, init: Init): string => {
    const vm = h.vmCreateBarebones(vmType);
    const a = vm.sevIoctl(KVM_SEV.INIT2, kvm_sev_init.arg(init), h.openSev());
    if (a.code === 'ok' && a.error !== 0) t.fail(`${KVM_SEV.INIT2} failed: fw error: ${a.error}`);
    vm.close();
    calls++;
    return a.code;
  };
  /** test_init2() */
  const valid = (vmType: number, init: Init) => {
    const code = init2(vmType, init);
    if (code !== 'ok')
      t.fail(
        `KVM_SEV_INIT2 return code is ${code} (expected 0) on VM type ${vmType} with ${JSON.stringify(init, (_, v: unknown) => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v))}`,
      );
  };
  /** test_init2_invalid() */
  const invalid = (vmType: number, init: Init, msg: string) => {
    const code = init2(vmType, init);
    if (code !== 'EINVAL') t.fail(`KVM_SEV_INIT2 should fail, ${msg} (got ${code} on VM type ${vmType})`);
  };
  return { valid, invalid, calls: () => calls };
}

for (const kernel of ['6.12', '7.2'] as const) {
  for (const processor of ['naples', 'rome', 'milan', 'genoa'] as const) {
    test(`${kernel}/${processor}: sev_init2_tests main(), test_vm_types, test_flags, test_features`, (t) => {
      const h = new SelftestHost(t, { kernel, processor });
      const features = h.deviceAttr(KVM_X86_GRP_SEV, KVM_X86_SEV_VMSA_FEATURES);
      t.is(typeof features, 'bigint', 'TEST_REQUIRE(__kvm_has_device_attr(KVM_X86_GRP_SEV, KVM_X86_SEV_VMSA_FEATURES) == 0)');
      const supportedVmsaFeatures = features as bigint;
      const types = h.checkCap(KVM_CAP.VM_TYPES);
      const haveSev = h.cpuHas('SEV');
      t.is(haveSev, !!(types & (1 << KVM_X86_SEV_VM)), 'sev: KVM_CAP_VM_TYPES does not match cpuid');
      t.true(haveSev, 'TEST_REQUIRE(KVM_CAP_VM_TYPES & BIT(KVM_X86_SEV_VM))');
      const haveSevEs = h.cpuHas('SEV_ES');
      t.is(haveSevEs, !!(types & (1 << KVM_X86_SEV_ES_VM)), 'sev-es: KVM_CAP_VM_TYPES does not match cpuid');
      const haveSnp = h.cpuHas('SEV_SNP');
      t.is(haveSnp, !!(types & (1 << KVM_X86_SNP_VM)), 'sev-snp: KVM_CAP_VM_TYPES indicates SNP support, but CPUID does not');
      t.false(haveSnp, 'SNP is off on these hosts');
      t.is(haveSevEs, processor !== 'naples', 'Naples has no SEV-ES');

      const s = init2Suite(t, h);
      // test_vm_types()
      s.valid(KVM_X86_SEV_VM, {});
      if (haveSevEs) s.valid(KVM_X86_SEV_ES_VM, {});
      s.invalid(0, {}, 'VM type is KVM_X86_DEFAULT_VM');
      if (types & (1 << KVM_X86_SW_PROTECTED_VM)) s.invalid(KVM_X86_SW_PROTECTED_VM, {}, 'VM type is KVM_X86_SW_PROTECTED_VM');
      // test_flags()
      for (const vmType of haveSevEs ? [KVM_X86_SEV_VM, KVM_X86_SEV_ES_VM] : [KVM_X86_SEV_VM]) {
        for (let i = 0; i < 32; i++) s.invalid(vmType, { flags: (1 << i) >>> 0 }, 'invalid flag');
      }
      // test_features(): none for SEV, the supported set for SEV-ES.
      const featureRuns: [number, bigint][] = [[KVM_X86_SEV_VM, 0n]];
      if (haveSevEs) featureRuns.push([KVM_X86_SEV_ES_VM, supportedVmsaFeatures]);
      for (const [vmType, supported] of featureRuns) {
        for (let i = 0n; i < 64n; i++) {
          const bit = 1n << i;
          if (!(supported & bit)) s.invalid(vmType, { vmsa_features: bit }, 'unknown feature');
          else if (KNOWN_FEATURES & bit) s.valid(vmType, { vmsa_features: bit });
        }
      }
      t.is(supportedVmsaFeatures, haveSevEs && (processor === 'milan' || processor === 'genoa') ? SVM_SEV_FEAT_DEBUG_SWAP : 0n);
      const expected = (haveSevEs ? 2 : 1) + 1 + (haveSevEs ? 64 : 32) + 64 + (haveSevEs ? 64 : 0);
      t.is(s.calls(), expected, 'every KVM_SEV_INIT2 of the selftest ran');
    });
  }
}

test('local-migration-2021: sev_init2_tests main() skips: no KVM_X86_SEV_VMSA_FEATURES attribute (and no INIT2)', (t) => {
  const h = new SelftestHost(t, { kernel: 'local-migration-2021' });
  t.is(h.deviceAttr(KVM_X86_GRP_SEV, KVM_X86_SEV_VMSA_FEATURES), 'EINVAL');
});
