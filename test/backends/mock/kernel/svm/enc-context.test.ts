/**
 * Encryption contexts on the mock kernel: MOVE (cap 206) and COPY (cap 197) with every check
 * (sev_vm_move_enc_context_from(), sev_vm_copy_enc_context_from()), dead VMs answering EIO, mirrors accepting only their four
 * commands, and VM destroy (sev_vm_destroy()): DEACTIVATE + DECOMMISSION, a mirror's owner alive until its last mirror.
 */
import test, { type ExecutionContext } from 'ava';
import type { BackendFd } from '../../../../../lib/backend/contract.js';
import { MockHost } from '../../../../../lib/backends/mock/index.js';
import { KVM_SEV } from '../../../../../lib/uapi/constants.js';
import type { IoctlStruct } from '../../../../../lib/uapi/ioctl-arg.js';
import * as ioc from '../../../../../lib/uapi/ioctls.js';
import { kvm_enable_cap, kvm_enc_region, kvm_regs } from '../../../../../lib/uapi/kvm-structs.js';
import {
  kvm_sev_cmd,
  kvm_sev_guest_status,
  kvm_sev_init,
  kvm_sev_launch_measure,
  kvm_sev_launch_start,
} from '../../../../../lib/uapi/sev-structs.js';

/** A mock host with /dev/kvm and /dev/sev open; every fd opened through it here is closed at teardown. */
function setup(t: ExecutionContext) {
  const host = new MockHost({ trace: true });
  const kvm = host.open('/dev/kvm');
  t.teardown(() => kvm.close());
  const sev = host.open('/dev/sev');
  t.teardown(() => sev.close());
  const newVm = (type = 0) => {
    const vm = host.ioctlFd(kvm, ioc.KVM_CREATE_VM, type);
    t.teardown(() => vm.close());
    return vm;
  };
  const newVcpu = (vm: BackendFd, id = 0) => {
    const vcpu = host.ioctlFd(vm, ioc.KVM_CREATE_VCPU, id);
    t.teardown(() => vcpu.close());
    return vcpu;
  };
  const op = (v: BackendFd, id: number, data: IoctlStruct | null = null) =>
    host.ioctl(v, ioc.KVM_MEMORY_ENCRYPT_OP, kvm_sev_cmd.arg({ id, data, sev_fd: sev.fd }));
  const code = (f: () => unknown) =>
    (() => {
      try {
        f();
        return 'ok';
      } catch (e) {
        return (e as { code: string }).code;
      }
    })();
  const cap = (dst: BackendFd, c: number, src: BackendFd) =>
    host.ioctl(dst, ioc.KVM_ENABLE_CAP, kvm_enable_cap.arg({ cap: c, args: [BigInt(src.fd), 0n, 0n, 0n] }));
  const launch = (v: BackendFd, policy = 0) => {
    op(v, KVM_SEV.LAUNCH_START, kvm_sev_launch_start.arg({ policy }));
  };
  const status = (v: BackendFd) => {
    const s = kvm_sev_guest_status.arg({});
    op(v, KVM_SEV.GUEST_STATUS, s);
    return kvm_sev_guest_status.decode(s.bytes);
  };
  return { host, kvm, sev, newVm, newVcpu, op, code, cap, launch, status };
}

test('MOVE: the checks in order, then the context moves and the source is dead (EIO for everything)', (t) => {
  const s = setup(t);
  const src = s.newVm(2);
  const dst = s.newVm(2);
  const other = s.newVm(0);
  t.is(
    s.code(() => s.cap(dst, 206, src)),
    'EINVAL',
    'the source is not SEV yet',
  );
  s.op(src, KVM_SEV.INIT2, kvm_sev_init.arg({}));
  s.launch(src);
  t.is(
    s.code(() => s.cap(dst, 206, s.kvm)),
    'EBADF',
    '/dev/kvm is not a VM fd',
  );
  t.is(
    s.code(() => s.cap(src, 206, src)),
    'EINVAL',
    'dst == src',
  );
  t.is(
    s.code(() => s.cap(other, 206, src)),
    'EINVAL',
    'different VM types',
  );
  const asid = s.host.sev.snapshot().vms.find((v) => v.active)!.asid;
  const handle = s.status(src).handle;
  t.is(s.cap(dst, 206, src), 0);
  t.deepEqual(s.host.sev.snapshot().asidsHeld, [asid]);
  t.is(
    s.code(() => s.op(src, KVM_SEV.GUEST_STATUS, kvm_sev_guest_status.arg({}))),
    'EIO',
  );
  t.is(
    s.code(() => s.host.ioctl(src, ioc.KVM_CHECK_EXTENSION, 1)),
    'EIO',
    'even CHECK_EXTENSION',
  );
  t.is(
    s.code(() => s.host.ioctl(src, ioc.KVM_MEMORY_ENCRYPT_OP)),
    'EIO',
  );
  // MOVE does not carry sev->fd: firmware commands on the destination see fd 0 (EBADF).
  t.is(
    s.code(() => s.status(dst)),
    'EBADF',
  );
  t.is(
    s.code(() => s.cap(dst, 206, src)),
    'EINVAL',
    'dst is an SEV guest now, and the dead source is not',
  );
  t.is(
    s.code(() => s.op(dst, KVM_SEV.INIT)),
    'EINVAL',
    'already active',
  );
  void handle;
});

test('MOVE of an SEV-ES context needs equal vCPU counts and every source VMSA encrypted; the protected state moves', (t) => {
  const s = setup(t);
  const src = s.newVm(3);
  s.op(src, KVM_SEV.INIT2, kvm_sev_init.arg({}));
  const v0 = s.newVcpu(src);
  s.launch(src, 0x4); // policy ES
  const dst = s.newVm(3);
  t.is(
    s.code(() => s.cap(dst, 206, src)),
    'EINVAL',
    'vCPU counts differ',
  );
  const d0 = s.newVcpu(dst);
  t.is(
    s.code(() => s.cap(dst, 206, src)),
    'EINVAL',
    'no LAUNCH_UPDATE_VMSA yet',
  );
  s.op(src, KVM_SEV.LAUNCH_UPDATE_VMSA);
  t.is(
    s.code(() => s.host.ioctl(v0, ioc.KVM_GET_REGS, kvm_regs.arg({}))),
    'EINVAL',
    'protected',
  );
  t.is(
    s.code(() => s.host.ioctl(d0, ioc.KVM_GET_REGS, kvm_regs.arg({}))),
    'ok',
  );
  t.is(s.cap(dst, 206, src), 0);
  t.is(
    s.code(() => s.host.ioctl(d0, ioc.KVM_GET_REGS, kvm_regs.arg({}))),
    'EINVAL',
    'the destination vCPU is protected now',
  );
  t.is(
    s.code(() => s.host.ioctl(v0, ioc.KVM_GET_REGS, kvm_regs.arg({}))),
    'EIO',
    'the source is dead',
  );
});

test('COPY: checks, mirrors accept only LAUNCH_UPDATE_VMSA, GUEST_STATUS and DBG_* (EINVAL first, before unknown ids)', (t) => {
  const s = setup(t);
  const owner = s.newVm(0);
  const mirror = s.newVm(0);
  t.is(
    s.code(() => s.cap(mirror, 197, owner)),
    'EINVAL',
    'the owner is not SEV',
  );
  s.op(owner, KVM_SEV.INIT);
  s.launch(owner);
  const withVcpu = s.newVm(0);
  s.newVcpu(withVcpu);
  t.is(
    s.code(() => s.cap(withVcpu, 197, owner)),
    'EINVAL',
    'the mirror has vCPUs',
  );
  t.is(
    s.code(() => s.cap(mirror, 197, s.sev)),
    'EBADF',
  );
  t.is(s.cap(mirror, 197, owner), 0);
  const chain = s.newVm(0);
  t.is(
    s.code(() => s.cap(chain, 197, mirror)),
    'EINVAL',
    'no mirror of a mirror',
  );
  t.is(
    s.code(() => s.cap(mirror, 197, owner)),
    'EINVAL',
    'already SEV',
  );
  t.is(s.status(mirror).handle, s.status(owner).handle, 'same handle');
  for (const id of [KVM_SEV.INIT, KVM_SEV.LAUNCH_START, KVM_SEV.LAUNCH_FINISH, 99, 10]) {
    const cmd = kvm_sev_cmd.arg({ id, error: 0x5a });
    t.is(
      s.code(() => s.host.ioctl(mirror, ioc.KVM_MEMORY_ENCRYPT_OP, cmd)),
      'EINVAL',
      `id ${id}`,
    );
    t.is(kvm_sev_cmd.decode(cmd.bytes).error, 0x5a);
  }
  t.is(
    s.code(() => s.op(mirror, KVM_SEV.LAUNCH_MEASURE, kvm_sev_launch_measure.arg({}))),
    'EINVAL',
  );
  t.is(
    s.code(() => s.op(mirror, KVM_SEV.LAUNCH_UPDATE_VMSA)),
    'ENOTTY',
    'allowed on mirrors, but this is no SEV-ES guest',
  );
  const m = s.host.mmapAnonymous(0x1000);
  t.teardown(() => m.unmap());
  const region = kvm_enc_region.arg({ addr: { kind: 'mapping', mapping: m, offset: 0, length: 0x1000 }, size: 0x1000n });
  t.is(
    s.code(() => s.host.ioctl(mirror, ioc.KVM_MEMORY_ENCRYPT_REG_REGION, region)),
    'EINVAL',
  );
  t.is(
    s.code(() => s.host.ioctl(mirror, ioc.KVM_MEMORY_ENCRYPT_UNREG_REGION, region)),
    'EINVAL',
  );
  let late: BackendFd | undefined;
  t.teardown(() => late?.close());
  t.is(
    s.code(() => (late = s.host.ioctlFd(mirror, ioc.KVM_CREATE_VCPU, 0))),
    'ok',
    'vCPUs may come after mirroring',
  );
});

test('destroy: DEACTIVATE + DECOMMISSION, ASID to reclaim; the owner stays alive until its last mirror is gone', (t) => {
  const s = setup(t);
  const owner = s.newVm(0);
  s.op(owner, KVM_SEV.INIT);
  s.launch(owner);
  const m1 = s.newVm(0);
  const m2 = s.newVm(0);
  s.cap(m1, 197, owner);
  s.cap(m2, 197, owner);
  s.host.trace.clear();
  owner.close();
  t.is(s.host.sev.snapshot().vms.length, 3, 'the owner is not destroyed');
  t.is(s.status(m1).state, 1, 'the mirror still reaches the context');
  m1.close();
  t.deepEqual(s.host.sev.snapshot().asidsReclaimable, [], 'a mirror does not free the ASID');
  m2.close();
  const fw = s.host.trace.entries.flatMap((e) => e.firmware.map((f) => f.command));
  t.deepEqual(fw.slice(-2), ['DEACTIVATE', 'DECOMMISSION']);
  t.deepEqual(s.host.sev.snapshot().asidsReclaimable, [100]);
  t.deepEqual(s.host.sev.snapshot().vms, []);
  // A VM never launched (handle 0): no firmware at destroy, but the ASID goes to reclaim.
  const fresh = s.newVm(0);
  s.op(fresh, KVM_SEV.INIT);
  s.host.trace.clear();
  fresh.close();
  t.deepEqual(s.host.trace.entries, []);
  t.deepEqual(s.host.sev.snapshot().asidsReclaimable, [100, 101]);
});

test('a vCPU fd keeps its VM alive; the VM goes when the last fd closes', (t) => {
  const s = setup(t);
  const vm = s.newVm(0);
  s.op(vm, KVM_SEV.INIT);
  const vcpu = s.newVcpu(vm);
  vm.close();
  vm.close();
  t.is(s.host.sev.snapshot().vms.length, 1);
  t.is(s.host.ioctl(vcpu, ioc.KVM_GET_REGS, kvm_regs.arg({})), 0);
  vcpu.close();
  t.is(s.host.sev.snapshot().vms.length, 0);
  t.deepEqual(s.host.sev.snapshot().asidsReclaimable, [100]);
});
