/**
 * Exits with nothing to answer, on the mock kernel: a triple fault is KVM_EXIT_SHUTDOWN (the
 * KVM_REQ_TRIPLE_FAULT path of arch/x86/kvm/x86.c: vcpu_enter_guest(), also reached through
 * KVM_SET_VCPU_EVENTS with KVM_CAP_X86_TRIPLE_FAULT_EVENT), and an SEV-ES guest's GHCB MSR
 * termination request is KVM_EXIT_SYSTEM_EVENT with KVM_SYSTEM_EVENT_SEV_TERM
 * (arch/x86/kvm/svm/sev.c: sev_handle_vmgexit_msr_protocol()). hw-test/vmm-features.test.ts checks
 * the same answers on the real KVM where the host has them.
 */
import test, { type ExecutionContext } from 'ava';
import { Kvm } from '../../../../lib/kvm/kvm.js';
import { MockHost } from '../../../../lib/backends/mock/index.js';
import { SevGuestCommands, SevPlatform } from '../../../../lib/sev/index.js';
import { KVM_CAP, KVM_SYSTEM_EVENT, KVM_X86_SEV_ES_VM, SEV_POLICY } from '../../../../lib/uapi/constants.js';

function setup(t: ExecutionContext, host = new MockHost()) {
  const kvm = Kvm.open({ backend: host });
  t.teardown(() => kvm.close());
  const vm = kvm.createVm();
  t.teardown(() => vm.close());
  vm.addMemory({ guestPhysAddr: 0n, size: 0x10000 });
  const vcpu = vm.createVcpu(0);
  return { host, kvm, vm, vcpu };
}

const code = (f: () => unknown) => {
  try {
    f();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return 'no error';
};

test('a triple fault exits with KVM_EXIT_SHUTDOWN, registers as they were; what the guest did before it happened', async (t) => {
  const { host, vm, vcpu } = setup(t);
  vcpu.setRegs({ rip: 0x1234n, rax: 7n });
  host.queueGuestOps(vcpu.fd, [{ op: 'store', gpa: 0x100n, bytes: Uint8Array.of(0xaa) }, { op: 'triple_fault' }]);
  t.deepEqual(await vcpu.run(), { reason: 'shutdown' });
  t.like(vcpu.getRegs(), { rip: 0x1234n, rax: 7n });
  t.is(vm.memory[0]!.read(0x100n, 1)[0], 0xaa);
  // The request was consumed: the next KVM_RUN needs the guest again (no op queued: the mock has no CPU).
  t.throws(() => vcpu.runSync(), { code: 'ERR_KVM_SEV_MOCK_NO_EXECUTION' });
});

test('KVM_CAP_X86_TRIPLE_FAULT_EVENT: KVM_SET_VCPU_EVENTS makes a triple fault pending, KVM_RUN turns it into SHUTDOWN', async (t) => {
  const { kvm, vm, vcpu } = setup(t);
  t.is(kvm.checkExtension(KVM_CAP.X86_TRIPLE_FAULT_EVENT), 1);
  t.is(kvm.checkExtension(KVM_CAP.SYSTEM_EVENT_DATA), 1);
  t.is(vcpu.getVcpuEvents().flags & 0x20, 0, 'no KVM_VCPUEVENT_VALID_TRIPLE_FAULT before the capability');
  t.is(
    code(() => vcpu.setVcpuEvents({ flags: 0x20, triple_fault: { pending: 1 } })),
    'EINVAL',
  );
  vm.enableCap(KVM_CAP.X86_TRIPLE_FAULT_EVENT, [1n]);
  t.is(vcpu.getVcpuEvents().flags & 0x20, 0x20);
  vcpu.setVcpuEvents({ triple_fault: { pending: 1 } });
  t.is(vcpu.getVcpuEvents().triple_fault.pending, 1);
  t.deepEqual(await vcpu.run(), { reason: 'shutdown' });
  t.is(vcpu.getVcpuEvents().triple_fault.pending, 0, 'consumed by the exit');
  // Clearing it with the same flag cancels it.
  vcpu.setVcpuEvents({ triple_fault: { pending: 1 } });
  vcpu.setVcpuEvents({ triple_fault: { pending: 0 } });
  t.throws(() => vcpu.runSync(), { code: 'ERR_KVM_SEV_MOCK_NO_EXECUTION' });
});

test('the 2021 kernel has neither KVM_CAP_X86_TRIPLE_FAULT_EVENT nor KVM_CAP_SYSTEM_EVENT_DATA', (t) => {
  const { kvm, vm } = setup(t, new MockHost({ kernel: 'local-migration-2021' }));
  t.is(kvm.checkExtension(KVM_CAP.X86_TRIPLE_FAULT_EVENT), 0);
  t.is(kvm.checkExtension(KVM_CAP.SYSTEM_EVENT_DATA), 0);
  t.is(
    code(() => vm.enableCap(KVM_CAP.X86_TRIPLE_FAULT_EVENT, [1n])),
    'EINVAL',
  );
});

/** An SEV-ES guest launched and finished on the mock, with its vCPU ready for KVM_RUN. */
async function sevEsGuest(t: ExecutionContext) {
  const host = new MockHost();
  const kvm = Kvm.open({ backend: host });
  t.teardown(() => kvm.close());
  const vm = kvm.createVm(KVM_X86_SEV_ES_VM);
  t.teardown(() => vm.close());
  const sev = SevPlatform.open(host);
  t.teardown(() => sev.close());
  const cmds = new SevGuestCommands(vm, sev);
  await cmds.init2();
  vm.addMemory({ guestPhysAddr: 0n, size: 0x10000 });
  const vcpu = vm.createVcpu(0);
  await cmds.launchStart({ policy: SEV_POLICY.ES });
  await cmds.launchUpdateVmsa();
  await cmds.launchMeasure();
  await cmds.launchFinish();
  return { host, vm, vcpu };
}

test("an SEV-ES guest's GHCB MSR termination request exits with KVM_EXIT_SYSTEM_EVENT (SEV_TERM, the MSR in data[0])", async (t) => {
  const { host, vcpu } = await sevEsGuest(t);
  // GHCB_MSR_TERM_REQ (0x100), reason set 1 (GHCBData[15:12]), reason code 3 (GHCBData[23:16]).
  const term = 0x100n | (1n << 12n) | (3n << 16n);
  host.queueGuestOps(vcpu.fd, [
    { op: 'vmgexit', ghcbMsr: 0xfffn }, // a request KVM does not know: the MSR stays, the guest goes on
    { op: 'vmgexit', ghcbMsr: term },
  ]);
  const exit = await vcpu.run();
  t.deepEqual(exit, {
    reason: 'system_event',
    type: KVM_SYSTEM_EVENT.SEV_TERM,
    typeName: 'SEV_TERM',
    data: [term],
    flags: term,
    sevTerm: { reasonSet: 1, reasonCode: 3 },
  });
});

test('VMGEXIT: only an SEV-ES guest has it; the mock models the GHCB MSR protocol, not a GHCB page', async (t) => {
  const plain = setup(t);
  plain.host.queueGuestOps(plain.vcpu.fd, [{ op: 'vmgexit', ghcbMsr: 0x100n }]);
  t.throws(() => plain.vcpu.runSync(), { code: 'ERR_KVM_SEV_MOCK_GUEST_OP' });
  const { host, vcpu } = await sevEsGuest(t);
  host.queueGuestOps(vcpu.fd, [{ op: 'vmgexit', ghcbMsr: 0x5000n }]);
  t.throws(() => vcpu.runSync(), { code: 'ERR_KVM_SEV_MOCK_GUEST_OP', message: /GHCB page/ });
});
