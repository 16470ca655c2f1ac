/**
 * Backend.ioctlBatch, one suite for every backend (native, mock, hybrid): each call is issued as
 * ioctl() would (same results, same write-back), in order; the first that is refused or fails stops
 * the batch and throws its own error, with `index`, and the calls before it took effect.
 */
import type { ExecutionContext } from 'ava';
import * as ioc from '../../lib/uapi/ioctls.js';
import { KVM_CAP } from '../../lib/uapi/constants.js';
import { kvm_regs } from '../../lib/uapi/kvm-structs.js';
import { hwTest } from '../helpers/hw.js';
import { openVcpuFds } from '../helpers/vcpu-fds.js';
import type { BackendTarget } from './boundary.js';

function setup(t: ExecutionContext, target: BackendTarget) {
  const b = target.make();
  const { kvm, vm, vcpu } = openVcpuFds(t, b);
  const regs = () => {
    const a = kvm_regs.arg({});
    b.ioctl(vcpu, ioc.KVM_GET_REGS, a);
    return kvm_regs.decode(a.bytes);
  };
  return { b, kvm, vm, vcpu, regs };
}

function failure(t: ExecutionContext, f: () => unknown): Error & { code?: string; index?: number } {
  const e = t.throws(f) as (Error & { code?: string; index?: number }) | undefined;
  if (!e) throw new Error('no error');
  return e;
}

export function batchSuite(target: BackendTarget): void {
  hwTest(target.req, `${target.name}: ioctlBatch issues each call as ioctl() does, on several fds, with write-back`, (t) => {
    const { b, kvm, vcpu, regs } = setup(t, target);
    const single = b.ioctl(kvm, ioc.KVM_CHECK_EXTENSION, KVM_CAP.USER_MEMORY);
    const set = kvm_regs.arg({ ...regs(), rip: 0x1234n, rax: 0x55n });
    const get = kvm_regs.arg({});
    const r = b.ioctlBatch([
      { fd: kvm, request: ioc.KVM_CHECK_EXTENSION, arg: KVM_CAP.USER_MEMORY },
      { fd: vcpu, request: ioc.KVM_SET_REGS, arg: set },
      { fd: vcpu, request: ioc.KVM_GET_REGS, arg: get },
      { fd: kvm, request: ioc.KVM_CHECK_EXTENSION, arg: KVM_CAP.USER_MEMORY },
    ]);
    t.deepEqual(r, [single, 0, 0, single]);
    const back = kvm_regs.decode(get.bytes);
    t.is(back.rip, 0x1234n);
    t.is(back.rax, 0x55n);
    t.deepEqual(b.ioctlBatch([]), []);
  });

  hwTest(target.req, `${target.name}: the first refused or failing call stops ioctlBatch; its error says which`, (t) => {
    const { b, kvm, vm, vcpu, regs } = setup(t, target);
    const base = regs();
    const set = (rip: bigint) => ({ fd: vcpu, request: ioc.KVM_SET_REGS, arg: kvm_regs.arg({ ...base, rip }) });
    // Refused before the kernel: a request outside the allowlist.
    let e = failure(t, () => b.ioctlBatch([set(0x1000n), { fd: vcpu, request: 0xdead, arg: 0 }, set(0x2000n)]));
    t.is(e.code, 'ERR_KVM_SEV_UNKNOWN_IOCTL');
    t.is(e.index, 1);
    t.is(regs().rip, 0x1000n, 'the call before it took effect, the one after it was not issued');
    // Refused: an ioctl that returns an fd.
    e = failure(t, () => b.ioctlBatch([set(0x3000n), set(0x3100n), { fd: vm, request: ioc.KVM_CREATE_VCPU, arg: 1 }]));
    t.is(e.code, 'ERR_KVM_SEV_RETURNS_FD');
    t.is(e.index, 2);
    t.is(regs().rip, 0x3100n);
    // Failed in the kernel: a vCPU ioctl on the VM fd's kind is refused; a closed fd answers EBADF.
    const other = b.ioctlFd(vm, ioc.KVM_CREATE_VCPU, 1);
    t.teardown(() => other.close());
    other.close();
    e = failure(t, () => b.ioctlBatch([set(0x4000n), { fd: other, request: ioc.KVM_GET_REGS, arg: kvm_regs.arg({}) }, set(0x5000n)]));
    t.is(e.code, 'EBADF');
    t.is(e.index, 1);
    t.is(regs().rip, 0x4000n);
    t.is(b.ioctl(kvm, ioc.KVM_CHECK_EXTENSION, KVM_CAP.USER_MEMORY) > 0, true);
  });

  hwTest(target.req, `${target.name}: a burst of one request on one fd: each call with its own argument and checks`, (t) => {
    const { b, kvm } = setup(t, target);
    const caps = [KVM_CAP.USER_MEMORY, KVM_CAP.NR_VCPUS, KVM_CAP.MAX_VCPUS, 0xfffff, KVM_CAP.NR_VCPUS];
    const single = caps.map((c) => b.ioctl(kvm, ioc.KVM_CHECK_EXTENSION, c));
    t.deepEqual(b.ioctlBatch(caps.map((c) => ({ fd: kvm, request: ioc.KVM_CHECK_EXTENSION, arg: c }))), single);
    const e = failure(t, () =>
      b.ioctlBatch([...caps.slice(0, 2), -1, 3].map((c) => ({ fd: kvm, request: ioc.KVM_CHECK_EXTENSION, arg: c }))),
    );
    t.is(e.code, 'ERR_OUT_OF_RANGE');
    t.is(e.index, 2);
  });

  hwTest(target.req, `${target.name}: ioctlBatch refuses what is not a list of calls with typed errors`, (t) => {
    const { b, kvm } = setup(t, target);
    t.is(failure(t, () => b.ioctlBatch('calls' as never)).code, 'ERR_INVALID_ARG_TYPE');
    const e = failure(t, () => b.ioctlBatch([{ fd: kvm, request: ioc.KVM_CHECK_EXTENSION, arg: 0 }, 7 as never]));
    t.is(e.code, 'ERR_INVALID_ARG_TYPE');
    t.is(e.index, 1);
    const f = failure(t, () => b.ioctlBatch([{ fd: {} as never, request: ioc.KVM_CHECK_EXTENSION }]));
    t.is(f.code, 'ERR_INVALID_ARG_TYPE');
    t.is(f.index, 0);
  });
}
