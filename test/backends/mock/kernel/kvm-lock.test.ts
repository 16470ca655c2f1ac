/**
 * kvm->lock and migration_in_progress on the mock kernel (arch/x86/kvm/svm/sev.c: sev_mem_enc_ioctl()
 * takes kvm->lock; sev_lock_two_vms() marks both VMs, EBUSY when either is marked, then takes both
 * mutexes): async calls interleave and wait for each other as threads would, a synchronous call waits
 * for the calls ahead of it, and nothing deadlocks.
 */
import test, { type ExecutionContext } from 'ava';
import type { BackendFd } from '../../../../lib/backend/contract.js';
import { MockHost, type MockHostOptions } from '../../../../lib/backends/mock/index.js';
import { KVM_CAP, KVM_SEV } from '../../../../lib/uapi/constants.js';
import type { IoctlStruct } from '../../../../lib/uapi/ioctl-arg.js';
import * as ioc from '../../../../lib/uapi/ioctls.js';
import { kvm_enable_cap } from '../../../../lib/uapi/kvm-structs.js';
import { kvm_sev_cmd, kvm_sev_guest_status, kvm_sev_launch_start, kvm_sev_launch_update_data } from '../../../../lib/uapi/sev-structs.js';

function setup(t: ExecutionContext, options: MockHostOptions = {}) {
  const host = new MockHost(options);
  const kvm = host.open('/dev/kvm');
  t.teardown(() => kvm.close());
  const sev = host.open('/dev/sev');
  t.teardown(() => sev.close());
  // Teardowns run last-registered first: each VM is closed before /dev/sev and /dev/kvm.
  const newVm = () => {
    const vm = host.ioctlFd(kvm, ioc.KVM_CREATE_VM, 0);
    t.teardown(() => vm.close());
    return vm;
  };
  const cmd = (id: number, data: IoctlStruct | null = null) => kvm_sev_cmd.arg({ id, data, sev_fd: sev.fd });
  const op = (vm: BackendFd, id: number, data: IoctlStruct | null = null) => host.ioctl(vm, ioc.KVM_MEMORY_ENCRYPT_OP, cmd(id, data));
  /** An SEV guest in LAUNCH_UPDATE with 64 KiB of memory to encrypt. */
  const launched = () => {
    const vm = newVm();
    op(vm, KVM_SEV.INIT);
    op(vm, KVM_SEV.LAUNCH_START, kvm_sev_launch_start.arg({ policy: 0 }));
    const mem = host.mmapAnonymous(0x10000);
    t.teardown(() => mem.unmap());
    return { vm, mem };
  };
  const capArg = (cap: number, src: BackendFd) => kvm_enable_cap.arg({ cap, args: [BigInt(src.fd), 0n, 0n, 0n] });
  const moveAsync = (dst: BackendFd, src: BackendFd) =>
    host.ioctlAsync(dst, ioc.KVM_ENABLE_CAP, capArg(KVM_CAP.VM_MOVE_ENC_CONTEXT_FROM, src));
  const updateAsync = (vm: BackendFd, mem: ReturnType<MockHost['mmapAnonymous']>) =>
    host.ioctlAsync(
      vm,
      ioc.KVM_MEMORY_ENCRYPT_OP,
      cmd(
        KVM_SEV.LAUNCH_UPDATE_DATA,
        kvm_sev_launch_update_data.arg({ uaddr: { kind: 'mapping', mapping: mem, offset: 0, length: mem.size } }),
      ),
    );
  const status = (vm: BackendFd) => {
    const s = kvm_sev_guest_status.arg({});
    op(vm, KVM_SEV.GUEST_STATUS, s);
    return kvm_sev_guest_status.decode(s.bytes);
  };
  const settled = (p: Promise<number>) =>
    p.then(
      () => 'ok',
      (e: { code: string }) => e.code,
    );
  /** The VM holding the context (MOVE carries no /dev/sev fd, so ask the SEV layer, not the firmware). */
  const holder = () => host.sev.snapshot().vms.filter((v) => v.active && !v.dead);
  return { host, newVm, op, launched, capArg, moveAsync, updateAsync, status, settled, holder };
}

test('two async MOVEs of one source: the second finds it marked by sev_lock_two_vms() and answers EBUSY', async (t) => {
  const s = setup(t);
  const { vm: a } = s.launched();
  const b = s.newVm();
  const c = s.newVm();
  const [first, second] = await Promise.all([s.settled(s.moveAsync(b, a)), s.settled(s.moveAsync(c, a))]);
  t.deepEqual([first, second], ['ok', 'EBUSY']);
  // Once the first has released both VMs, a move from the (now dead) source is no longer busy but invalid.
  t.is(await s.settled(s.moveAsync(c, a)), 'EINVAL');
  t.is(await s.settled(s.moveAsync(c, b)), 'ok');
});

// Timed: serial, so no other test's synchronous sleep shortens the firmware time measured.
test.serial(
  'an async MOVE waits for the kvm->lock a KVM_MEMORY_ENCRYPT_OP holds while the firmware works (no EBUSY), and runs after it',
  async (t) => {
    const s = setup(t, { throttle: { bytesPerSecond: 1 << 20 } }); // 64 KiB: ~63 ms of PSP time
    const { vm: a, mem } = s.launched();
    const b = s.newVm();
    const order: string[] = [];
    const t0 = performance.now();
    const update = s.settled(s.updateAsync(a, mem)).then((r) => order.push(`update ${r}`));
    const move = s.settled(s.moveAsync(b, a)).then((r) => {
      order.push(`move ${r}`);
      return performance.now() - t0;
    });
    const [, moveMs] = await Promise.all([update, move]);
    t.deepEqual(order, ['update ok', 'move ok']);
    t.true(moveMs >= 40, `the move ended ${moveMs.toFixed(1)} ms in, after the firmware's work`);
    t.is(s.holder().length, 1, 'one VM has the context: the destination');
  },
);

test.serial('a synchronous call waits for the calls ahead of it: the firmware time is slept out, a queued MOVE runs first', async (t) => {
  const s = setup(t, { throttle: { bytesPerSecond: 1 << 20 } });
  const { vm: a, mem } = s.launched();
  const b = s.newVm();
  const update = s.settled(s.updateAsync(a, mem)); // holds A's kvm->lock for ~63 ms
  const move = s.settled(s.moveAsync(b, a)); // marks A and B, lets others run, takes B's kvm->lock
  await new Promise((r) => setImmediate(r)); // ... and now waits for A's
  const t0 = performance.now();
  // GUEST_STATUS on A entered before the move (A was not dead yet), then waited for kvm->lock behind
  // the update and the move: by then A has no SEV context, as in the kernel (ENOTTY, not EIO).
  t.like(
    t.throws(() => s.status(a)),
    { code: 'ENOTTY' },
  );
  const slept = performance.now() - t0;
  t.true(slept >= 40, `the synchronous call slept out the update (${slept.toFixed(1)} ms)`);
  t.deepEqual(await Promise.all([update, move]), ['ok', 'ok']);
  // A is dead now: every ioctl answers EIO at once.
  t.like(
    t.throws(() => s.status(a)),
    { code: 'EIO' },
  );
});

test('a synchronous MOVE while an async call holds the source: no deadlock, the move follows it', async (t) => {
  const s = setup(t, { throttle: { bytesPerSecond: 1 << 20 } });
  const { vm: a, mem } = s.launched();
  const b = s.newVm();
  const update = s.settled(s.updateAsync(a, mem));
  s.host.ioctl(b, ioc.KVM_ENABLE_CAP, s.capArg(KVM_CAP.VM_MOVE_ENC_CONTEXT_FROM, a));
  t.is(await update, 'ok');
  t.is(s.holder().length, 1);
  t.like(
    t.throws(() => s.status(a)),
    { code: 'EIO' },
  );
});

test('closing a VM fd while an async call on it is in flight: the call completes, then the VM goes', async (t) => {
  const s = setup(t, { throttle: { bytesPerSecond: 1 << 20 } });
  const { vm: a, mem } = s.launched();
  const asid = s.host.sev.snapshot().vms[0]!.asid;
  const update = s.settled(s.updateAsync(a, mem));
  a.close();
  t.is(s.host.sev.snapshot().vms.length, 1, 'the call holds the VM');
  t.is(await update, 'ok');
  t.deepEqual(s.host.sev.snapshot().vms, []);
  t.deepEqual(s.host.sev.snapshot().asidsReclaimable, [asid]);
});

test('async calls on one VM run in order; on two VMs they interleave', async (t) => {
  const s = setup(t);
  const { vm: a } = s.launched();
  const { vm: b } = s.launched();
  const order: string[] = [];
  const status = (vm: BackendFd, tag: string) => {
    const st = kvm_sev_guest_status.arg({});
    return s.host
      .ioctlAsync(vm, ioc.KVM_MEMORY_ENCRYPT_OP, kvm_sev_cmd.arg({ id: KVM_SEV.GUEST_STATUS, data: st }))
      .then(() => order.push(tag));
  };
  await Promise.all([status(a, 'a1'), status(a, 'a2'), status(b, 'b1'), status(a, 'a3')]);
  t.deepEqual(
    order.filter((x) => x.startsWith('a')),
    ['a1', 'a2', 'a3'],
  );
  t.true(order.indexOf('b1') < order.indexOf('a3'), `b does not wait for a: ${order.join(' ')}`);
});
