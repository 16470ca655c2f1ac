/**
 * Kvm / Vm / Vcpu state calls on the real /dev/kvm: each set is read back as the kernel stored it.
 */
import { Kvm } from '../lib/kvm/kvm.js';
import { NativeBackend } from '../lib/backends/native/native-backend.js';
import { KVM_CAP, KVM_X86_DEFAULT_VM } from '../lib/uapi/constants.js';
import { hwTest, kvmDevice } from '../test/helpers/hw.js';

const req = kvmDevice();
const MSR_IA32_SYSENTER_CS = 0x174;
const MSR_IA32_TSC = 0x10;

hwTest(req, 'Kvm: API version, extensions, VM types, mmap size, CPUID, MSR list', (t) => {
  using kvm = Kvm.open({ backend: new NativeBackend() });
  t.is(kvm.apiVersion(), 12);
  t.is(kvm.checkExtension(KVM_CAP.USER_MEMORY), 1);
  t.true(kvm.supportedVmTypes().includes(KVM_X86_DEFAULT_VM));
  t.true(kvm.vcpuMmapSize() >= 4096);
  const cpuid = kvm.supportedCpuid();
  t.true(
    cpuid.some((e) => e.function === 0),
    'leaf 0',
  );
  t.true(cpuid.length > 10);
  const msrs = kvm.msrIndexList();
  t.true(msrs.includes(MSR_IA32_SYSENTER_CS));
});

hwTest(req, 'Vcpu: regs, sregs, fpu, xcrs, msrs, lapic, events, mp state, debugregs round-trip', (t) => {
  using kvm = Kvm.open({ backend: new NativeBackend() });
  using vm = kvm.createVm();
  vm.createIrqchip(); // the local APIC lives in the kernel
  const vcpu = vm.createVcpu(0);
  vcpu.setCpuid2(kvm.supportedCpuid());

  const regs = vcpu.getRegs();
  t.is(regs.rip, 0xfff0n, 'reset RIP');
  vcpu.setRegs({ ...regs, rax: 0x1122_3344_5566_7788n, r15: 0xffff_ffff_ffff_fff0n, rip: 0x1000n, rflags: 2n });
  const r2 = vcpu.getRegs();
  t.is(r2.rax, 0x1122_3344_5566_7788n);
  t.is(r2.r15, 0xffff_ffff_ffff_fff0n, 'u64 beyond 2^53 survives');

  const s = vcpu.getSregs();
  t.is(s.cs.base, 0xffff0000n, 'reset CS base');
  s.ds.base = 0x12340n;
  s.ds.selector = 0x1234;
  vcpu.setSregs(s);
  t.is(vcpu.getSregs().ds.base, 0x12340n);

  const fpu = vcpu.getFpu();
  fpu.fcw = 0x27f;
  fpu.xmm[3] = new Uint8Array(16).fill(0xa5);
  vcpu.setFpu(fpu);
  const fpu2 = vcpu.getFpu();
  t.is(fpu2.fcw, 0x27f);
  t.deepEqual([...fpu2.xmm[3]!], new Array(16).fill(0xa5));

  const xsave = vcpu.getXsave();
  t.is(xsave.byteLength, 4096);
  vcpu.setXsave(xsave);

  const xcrs = vcpu.getXcrs();
  t.true(xcrs.nr_xcrs >= 1);
  vcpu.setXcrs(xcrs);

  t.is(vcpu.setMsrs([{ index: MSR_IA32_SYSENTER_CS, data: 0x10n }]), 1);
  const got = vcpu.getMsrs([MSR_IA32_SYSENTER_CS, MSR_IA32_TSC]);
  t.is(got.length, 2);
  t.is(got[0]!.data, 0x10n);

  const lapic = vcpu.getLapic();
  t.is(lapic.byteLength, 1024);
  vcpu.setLapic(lapic);

  const ev = vcpu.getVcpuEvents();
  vcpu.setVcpuEvents(ev);
  t.is(vcpu.getMpState().mp_state, 0, 'KVM_MP_STATE_RUNNABLE for the BSP');
  vcpu.setMpState({ mp_state: 3 }); // KVM_MP_STATE_HALTED
  t.is(vcpu.getMpState().mp_state, 3);

  const dr = vcpu.getDebugregs();
  t.is(dr.dr7, 0x400n, 'DR7 reset value');
  vcpu.setDebugregs({ ...dr, db: [0x1000n, 0n, 0n, 0n] });
  t.is(vcpu.getDebugregs().db[0], 0x1000n);
  t.true(vcpu.tscKhz() > 0);
});
