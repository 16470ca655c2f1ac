/**
 * KVM_MEMORY_ENCRYPT_REG/UNREG_REGION and memlock accounting on the mock kernel (sev_pin_memory(),
 * sev_mem_enc_register_region()), in both pinning modes (upfront: mainline; demand: seed 001), and ASID
 * allocation (sev_asid_new()).
 */
import test, { type ExecutionContext } from 'ava';
import type { BackendFd } from '../../../../../lib/backend/contract.js';
import { MockHost, type MockHostOptions } from '../../../../../lib/backends/mock/index.js';
import { KVM_SEV } from '../../../../../lib/uapi/constants.js';
import { ioctlStruct, type IoctlStruct } from '../../../../../lib/uapi/ioctl-arg.js';
import * as ioc from '../../../../../lib/uapi/ioctls.js';
import { kvm_enc_region } from '../../../../../lib/uapi/kvm-structs.js';
import { kvm_sev_cmd, kvm_sev_dbg, kvm_sev_launch_start, kvm_sev_launch_update_data } from '../../../../../lib/uapi/sev-structs.js';
import type { GuestMapping } from '../../../../../lib/backend/contract.js';

const MiB = 1n << 20n;

/** A mock host with /dev/kvm, /dev/sev and one VM open; every fd and mapping made through it here goes at teardown. */
function setup(t: ExecutionContext, opts: MockHostOptions = {}) {
  const host = new MockHost(opts);
  const kvm = host.open('/dev/kvm');
  t.teardown(() => kvm.close());
  const sev = host.open('/dev/sev');
  t.teardown(() => sev.close());
  const vm = host.ioctlFd(kvm, ioc.KVM_CREATE_VM, 0);
  t.teardown(() => vm.close());
  const newVm = () => {
    const v = host.ioctlFd(kvm, ioc.KVM_CREATE_VM, 0);
    t.teardown(() => v.close());
    return v;
  };
  const map = (size: number) => {
    const m = host.mmapAnonymous(size);
    t.teardown(() => m.unmap());
    return m;
  };
  const op = (v: BackendFd, id: number, data: IoctlStruct | null = null) =>
    host.ioctl(v, ioc.KVM_MEMORY_ENCRYPT_OP, kvm_sev_cmd.arg({ id, data, sev_fd: sev.fd }));
  const range = (m: GuestMapping, offset: number, length: number) => ({ kind: 'mapping' as const, mapping: m, offset, length });
  const reg = (v: BackendFd, m: GuestMapping, offset: number, length: number) =>
    host.ioctl(v, ioc.KVM_MEMORY_ENCRYPT_REG_REGION, kvm_enc_region.arg({ addr: range(m, offset, length), size: BigInt(length) }));
  const unreg = (v: BackendFd, m: GuestMapping, offset: number, length: number) =>
    host.ioctl(v, ioc.KVM_MEMORY_ENCRYPT_UNREG_REGION, kvm_enc_region.arg({ addr: range(m, offset, length), size: BigInt(length) }));
  const locked = () => host.sev.snapshot().vms.map((v) => v.pagesLocked);
  return { host, kvm, sev, vm, newVm, map, op, reg, unreg, range, locked };
}

test('REG_REGION: ENOTTY before INIT, EINVAL for size 0; npages counts partial pages; overlapping registrations are fine', (t) => {
  const s = setup(t, { memlock: { limit: 64n * MiB } });
  const m = s.map(0x10000);
  t.like(
    t.throws(() => s.reg(s.vm, m, 0, 0x1000)),
    { code: 'ENOTTY', request: 'KVM_MEMORY_ENCRYPT_REG_REGION' },
  );
  s.op(s.vm, KVM_SEV.INIT);
  const zero = ioctlStruct(kvm_enc_region.encode({ size: 0n }));
  t.like(
    t.throws(() => s.host.ioctl(s.vm, ioc.KVM_MEMORY_ENCRYPT_REG_REGION, zero)),
    { code: 'EINVAL' },
  );
  s.reg(s.vm, m, 0x800, 0x1000); // straddles two pages
  t.deepEqual(s.locked(), [2]);
  s.reg(s.vm, m, 0x800, 0x1000); // a duplicate
  s.reg(s.vm, m, 0, 0x10000);
  t.deepEqual(s.locked(), [2 + 2 + 16]);
  // Unregistration needs exactly (addr, size).
  t.like(
    t.throws(() => s.unreg(s.vm, m, 0x800, 0x800)),
    { code: 'EINVAL' },
  );
  t.like(
    t.throws(() => s.unreg(s.vm, m, 0x1000, 0x1000)),
    { code: 'EINVAL' },
  );
  s.unreg(s.vm, m, 0x800, 0x1000);
  s.unreg(s.vm, m, 0x800, 0x1000);
  t.like(
    t.throws(() => s.unreg(s.vm, m, 0x800, 0x1000)),
    { code: 'EINVAL' },
  );
  t.deepEqual(s.locked(), [16]);
  // An unmapped range: a short pin is ENOMEM, not EFAULT.
  const lie = ioctlStruct(kvm_enc_region.encode({ size: 0x1000n }));
  t.like(
    t.throws(() => s.host.ioctl(s.vm, ioc.KVM_MEMORY_ENCRYPT_REG_REGION, lie)),
    { code: 'ENOMEM' },
  );
  // UNREG checks the mirror first, then ENOTTY.
  const other = s.newVm();
  t.like(
    t.throws(() => s.unreg(other, m, 0, 0x1000)),
    { code: 'ENOTTY' },
  );
});

test('upfront pinning: RLIMIT_MEMLOCK without CAP_IPC_LOCK is ENOMEM; CAP_IPC_LOCK lifts it; destroy unpins', (t) => {
  const s = setup(t, { memlock: { limit: 16n * 4096n } });
  const m = s.map(0x40000);
  s.op(s.vm, KVM_SEV.INIT);
  s.reg(s.vm, m, 0, 0x10000);
  t.like(
    t.throws(() => s.reg(s.vm, m, 0x10000, 0x1000)),
    { code: 'ENOMEM' },
  );
  t.deepEqual(s.locked(), [16]);
  // LAUNCH_UPDATE_DATA's own pin counts too while it is held.
  s.op(s.vm, KVM_SEV.LAUNCH_START, kvm_sev_launch_start.arg({ policy: 0 }));
  t.like(
    t.throws(() => s.op(s.vm, KVM_SEV.LAUNCH_UPDATE_DATA, kvm_sev_launch_update_data.arg({ uaddr: s.range(m, 0, 0x1000) }))),
    { code: 'ENOMEM' },
  );
  s.unreg(s.vm, m, 0, 0x10000);
  s.op(s.vm, KVM_SEV.LAUNCH_UPDATE_DATA, kvm_sev_launch_update_data.arg({ uaddr: s.range(m, 0, 0x1000) }));
  t.deepEqual(s.locked(), [0], 'a command pin is released');
  s.reg(s.vm, m, 0, 0x4000);
  s.vm.close();
  t.deepEqual(s.host.sev.snapshot().vms, [], 'destroyed');
  const cap = setup(t, { memlock: { limit: 0n, capIpcLock: true } });
  const m2 = cap.map(0x40000);
  cap.op(cap.vm, KVM_SEV.INIT);
  cap.reg(cap.vm, m2, 0, 0x40000);
  t.deepEqual(cap.locked(), [64]);
});

test('7.2 checks totalram; 6.12 does not', (t) => {
  const big = (kernel: '7.2' | '6.12') => {
    const s = setup(t, { kernel, totalRam: 0x10000n });
    const m = s.map(0x20000);
    s.op(s.vm, KVM_SEV.INIT);
    return () => s.reg(s.vm, m, 0, 0x20000);
  };
  t.like(t.throws(big('7.2')), { code: 'EINVAL' });
  t.notThrows(big('6.12'));
});

test('demand pinning: registration pins and charges nothing (even unmapped ranges); first use pins for good', (t) => {
  const s = setup(t, { pinning: 'demand', memlock: { limit: 4n * 4096n } });
  const m = s.map(0x40000);
  s.op(s.vm, KVM_SEV.INIT);
  s.op(s.vm, KVM_SEV.LAUNCH_START, kvm_sev_launch_start.arg({ policy: 0 }));
  s.reg(s.vm, m, 0, 0x40000); // 64 pages > the 4-page limit: fine, nothing is pinned
  const lie = ioctlStruct(kvm_enc_region.encode({ size: 0x1000n }));
  t.notThrows(() => s.host.ioctl(s.vm, ioc.KVM_MEMORY_ENCRYPT_REG_REGION, lie), 'no pin at registration');
  t.deepEqual(s.locked(), [0]);
  s.op(s.vm, KVM_SEV.LAUNCH_UPDATE_DATA, kvm_sev_launch_update_data.arg({ uaddr: s.range(m, 0, 0x2000) }));
  t.deepEqual(s.locked(), [2], 'used pages stay pinned');
  s.op(s.vm, KVM_SEV.LAUNCH_UPDATE_DATA, kvm_sev_launch_update_data.arg({ uaddr: s.range(m, 0x1000, 0x2000) }));
  t.deepEqual(s.locked(), [3], 'pages already pinned are not charged twice');
  t.like(
    t.throws(() => s.op(s.vm, KVM_SEV.LAUNCH_UPDATE_DATA, kvm_sev_launch_update_data.arg({ uaddr: s.range(m, 0x10000, 0x2000) }))),
    { code: 'ENOMEM' },
  );
  t.deepEqual(s.locked(), [3]);
  s.unreg(s.vm, m, 0, 0x40000);
  t.deepEqual(s.locked(), [0], 'unregistering unpins what was used');
});

test('DBG pins a page of each side while it works (ENOMEM at the limit)', (t) => {
  const s = setup(t, { memlock: { limit: 1n * 4096n } });
  const m = s.map(0x4000);
  s.op(s.vm, KVM_SEV.INIT);
  s.op(s.vm, KVM_SEV.LAUNCH_START, kvm_sev_launch_start.arg({ policy: 0 }));
  t.like(
    t.throws(() => s.op(s.vm, KVM_SEV.DBG_DECRYPT, kvm_sev_dbg.arg({ src_uaddr: s.range(m, 0, 16), dst_uaddr: new Uint8Array(16) }))),
    { code: 'ENOMEM' },
  );
});

test('ASIDs: lowest free of the class; freed ones wait for a flush; exhaustion is EBUSY', (t) => {
  const naples = { processor: 'naples' as const }; // 15 SEV ASIDs, no SEV-ES
  const host = new MockHost(naples);
  const kvm = host.open('/dev/kvm');
  t.teardown(() => kvm.close());
  const vms: BackendFd[] = [];
  t.teardown(() => vms.forEach((v) => v.close()));
  for (let i = 0; i < 15; i++) vms.push(host.ioctlFd(kvm, ioc.KVM_CREATE_VM, 0));
  const init = (v: BackendFd) => host.ioctl(v, ioc.KVM_MEMORY_ENCRYPT_OP, kvm_sev_cmd.arg({ id: KVM_SEV.INIT }));
  vms.forEach(init);
  t.deepEqual(
    host.sev.snapshot().asidsHeld,
    Array.from({ length: 15 }, (_, i) => i + 1),
  );
  const extra = host.ioctlFd(kvm, ioc.KVM_CREATE_VM, 0);
  t.teardown(() => extra.close());
  t.like(
    t.throws(() => init(extra)),
    { code: 'EBUSY' },
  );
  vms[4]!.close();
  vms[2]!.close();
  t.deepEqual(host.sev.snapshot().asidsReclaimable, [3, 5]);
  // Exhausted: flush (DF_FLUSH) recycles both, then the lowest is taken.
  init(extra);
  t.deepEqual(host.sev.snapshot().asidsReclaimable, []);
  t.true(host.sev.snapshot().vms.some((v) => v.asid === 3));
  t.false(
    host.sev.snapshot().vms.some((v) => v.asid === 5),
    'the other recycled ASID is free, not held',
  );
  // SEV-ES uses [1, min_sev_asid - 1].
  const milan = new MockHost();
  const k2 = milan.open('/dev/kvm');
  t.teardown(() => k2.close());
  const es = milan.ioctlFd(k2, ioc.KVM_CREATE_VM, 0);
  t.teardown(() => es.close());
  milan.ioctl(es, ioc.KVM_MEMORY_ENCRYPT_OP, kvm_sev_cmd.arg({ id: KVM_SEV.ES_INIT }));
  const sv = milan.ioctlFd(k2, ioc.KVM_CREATE_VM, 0);
  t.teardown(() => sv.close());
  milan.ioctl(sv, ioc.KVM_MEMORY_ENCRYPT_OP, kvm_sev_cmd.arg({ id: KVM_SEV.INIT }));
  t.deepEqual(milan.sev.snapshot().asidsHeld, [1, 100]);
});

test('a failed platform INIT rolls the ASID back (to the reclaim bitmap) and reports the firmware error', (t) => {
  const host = new MockHost({ faults: { failCommand: { nth: 1, status: 0x13 } }, trace: true });
  const kvm = host.open('/dev/kvm');
  t.teardown(() => kvm.close());
  const vm = host.ioctlFd(kvm, ioc.KVM_CREATE_VM, 2);
  t.teardown(() => vm.close());
  const cmd = kvm_sev_cmd.arg({ id: 22, data: { flags: 0 }, error: 0x99 });
  t.like(
    t.throws(() => host.ioctl(vm, ioc.KVM_MEMORY_ENCRYPT_OP, cmd)),
    { code: 'EIO' },
  );
  t.is(kvm_sev_cmd.decode(cmd.bytes).error, 0x13);
  t.deepEqual(host.sev.snapshot().asidsHeld, []);
  t.deepEqual(host.sev.snapshot().asidsReclaimable, [100]);
  t.deepEqual(host.trace.entries.at(-1)!.firmware, [{ command: 'INIT', status: 0x13 }]);
});
