/**
 * The allowlist is enforced per fd kind and, for KVM_ENABLE_CAP, per capability (issue 10, case 5):
 * kvm_enable_cap has no pointer fields the shim knows of, so a capability whose arguments are user
 * addresses (KVM_CAP_HYPERV_ENLIGHTENED_VMCS) or that the shim does not know is refused before the
 * kernel sees it; a request on an fd kind it does not belong to is refused too (the same number may
 * mean another struct there).
 */
import type { ExecutionContext } from 'ava';
import { loadAddon } from '../../../lib/backends/native/addon.js';
import { NativeBackend } from '../../../lib/backends/native/native-backend.js';
import { KVM_CAP } from '../../../lib/uapi/constants.js';
import * as ioc from '../../../lib/uapi/ioctls.js';
import { structs } from '../../../lib/uapi/index.js';
import { hwTest, kvmDevice, nativeAddon } from '../../helpers/hw.js';
import { openVcpuFds } from '../../helpers/vcpu-fds.js';

function code(t: ExecutionContext, f: () => unknown, c: string): void {
  const e = t.throws(f) as (Error & { code?: string }) | undefined;
  t.is(e?.code, c, e?.message);
}

const cap = (n: number, arg0 = 0n) => structs.kvm_enable_cap.arg({ cap: n, flags: 0, args: [arg0, 0n, 0n, 0n] });

hwTest(kvmDevice(), 'case 5: KVM_ENABLE_CAP passes only allowlisted capabilities, each on its own fd kind', (t) => {
  const b = new NativeBackend();
  const { kvm, vm, vcpu } = openVcpuFds(t, b);
  // args[0] is a user address the kernel writes (on Intel): never issued.
  code(t, () => b.ioctl(vcpu, ioc.KVM_ENABLE_CAP, cap(KVM_CAP.HYPERV_ENLIGHTENED_VMCS, 0x1000n)), 'ERR_KVM_SEV_UNKNOWN_CAP');
  code(t, () => b.ioctl(vm, ioc.KVM_ENABLE_CAP, cap(KVM_CAP.SGX_ATTRIBUTE)), 'ERR_KVM_SEV_UNKNOWN_CAP');
  code(t, () => b.ioctl(vm, ioc.KVM_ENABLE_CAP, cap(0xdead)), 'ERR_KVM_SEV_UNKNOWN_CAP');
  // A VM capability on a vCPU fd, and a vCPU capability on a VM fd.
  code(t, () => b.ioctl(vcpu, ioc.KVM_ENABLE_CAP, cap(KVM_CAP.VM_MOVE_ENC_CONTEXT_FROM, BigInt(vm.fd))), 'ERR_INVALID_ARG_VALUE');
  code(t, () => b.ioctl(vm, ioc.KVM_ENABLE_CAP, cap(KVM_CAP.HYPERV_SYNIC)), 'ERR_INVALID_ARG_VALUE');
  // An allowlisted one reaches the kernel (which answers as it likes: only never a refusal of ours).
  try {
    t.is(b.ioctl(vm, ioc.KVM_ENABLE_CAP, cap(KVM_CAP.X86_DISABLE_EXITS, 0n)), 0, 'the kernel enabled it');
  } catch (e) {
    t.regex(String((e as { code?: string }).code), /^E[A-Z]+$/, 'the kernel answered with an errno');
  }
  for (const f of [vcpu, vm, kvm]) f.close();
});

hwTest(kvmDevice(), 'case 5: a request on an fd kind it does not belong to is refused before the kernel sees it', (t) => {
  const b = new NativeBackend();
  const { kvm, vm, vcpu } = openVcpuFds(t, b);
  code(t, () => b.ioctl(vm, ioc.KVM_GET_REGS, structs.kvm_regs.arg({})), 'ERR_INVALID_ARG_VALUE');
  code(t, () => b.ioctl(kvm, ioc.KVM_SET_TSS_ADDR, 0xfffbd000), 'ERR_INVALID_ARG_VALUE');
  code(t, () => b.ioctl(vcpu, ioc.KVM_CHECK_EXTENSION, 1), 'ERR_INVALID_ARG_VALUE');
  code(t, () => b.ioctlFd(vcpu, ioc.KVM_CREATE_VCPU, 1), 'ERR_INVALID_ARG_VALUE');
  code(t, () => b.ioctlFd(vm, ioc.KVM_CREATE_VM, 0), 'ERR_INVALID_ARG_VALUE');
  // The right kinds still work.
  t.is(b.ioctl(kvm, ioc.KVM_CHECK_EXTENSION, 1), b.ioctl(vm, ioc.KVM_CHECK_EXTENSION, 1));
  for (const f of [vcpu, vm, kvm]) f.close();
});

hwTest(nativeAddon(), 'case 5: the capability allowlist names no capability whose arguments are addresses, each with its fd kind', (t) => {
  const caps = loadAddon().describe().enableCaps;
  const byCap = new Map(caps.map((c) => [c.cap, c]));
  t.is(byCap.get(KVM_CAP.VM_MOVE_ENC_CONTEXT_FROM)?.fds, 'vm');
  t.is(byCap.get(KVM_CAP.VM_COPY_ENC_CONTEXT_FROM)?.fds, 'vm');
  t.is(byCap.get(KVM_CAP.HYPERV_SYNIC2)?.fds, 'vcpu');
  t.false(byCap.has(KVM_CAP.HYPERV_ENLIGHTENED_VMCS));
  for (const c of caps) {
    t.is(c.name, `KVM_CAP_${Object.entries(KVM_CAP).find(([, v]) => v === c.cap)?.[0]}`, `${c.cap} is the uapi's`);
    t.true(c.fds === 'vm' || c.fds === 'vcpu');
  }
});
