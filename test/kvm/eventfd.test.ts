/**
 * Owned eventfds on the mock and the native backend alike: write adds, read takes the count (or 1 in
 * semaphore mode) and never blocks, wait() settles on the event loop once the count is non-zero,
 * one wait at a time, close() cancels a wait (ABORT_ERR); the shim and the mock marshaller check the
 * bitmaps the kernel reads or writes (bit-counted lengths, memory-slot-sized dirty bitmaps).
 */
import type { ExecutionContext } from 'ava';
import type { Backend } from '../../lib/backend/contract.js';
import { MockHost } from '../../lib/backends/mock/index.js';
import { NativeBackend } from '../../lib/backends/native/native-backend.js';
import { Kvm } from '../../lib/kvm/kvm.js';
import { EventFd } from '../../lib/kvm/eventfd.js';
import * as ioc from '../../lib/uapi/ioctls.js';
import { kvm_clear_dirty_log, kvm_dirty_log, msrFilterArg } from '../../lib/uapi/vmm-structs.js';
import { KVM_MEM } from '../../lib/uapi/constants.js';
import { hwTest, kvmDevice, nativeAddon } from '../helpers/hw.js';

const backends: [string, () => Backend, ReturnType<typeof nativeAddon>][] = [
  ['mock', () => new MockHost(), { ok: true, reason: '' }],
  ['native', () => new NativeBackend(), nativeAddon()],
];

const codeOf = async (p: Promise<unknown>) =>
  p.then(
    () => 'resolved',
    (e: { code?: string }) => e.code,
  );

for (const [name, make, req] of backends) {
  hwTest(req, `${name}: eventfd counter semantics, wait() on the event loop, one wait at a time, close() cancels`, async (t) => {
    const b = make();
    using e = EventFd.create(b);
    t.is(e.fd.kind, 'eventfd');
    t.is(e.read(), 0n, 'never blocks');
    e.signal();
    e.signal(4n);
    t.is(e.read(), 5n);
    t.is(e.read(), 0n);
    const w = e.wait();
    t.is(await codeOf(e.wait()), 'ERR_KVM_SEV_EVENTFD_BUSY');
    setTimeout(() => e.signal(3n), 10);
    t.is(await w, 3n);
    e.signal();
    t.is(await e.wait(), 1n, 'a count already there resolves at once');
    using s = EventFd.create(b, { semaphore: true, initval: 2 });
    t.deepEqual([s.read(), s.read(), s.read()], [1n, 1n, 0n]);
    const pending = e.wait();
    e.close();
    t.is(await codeOf(pending), 'ABORT_ERR');
    t.throws(() => b.eventfdWrite(e.fd, 1n), { code: 'EBADF' });
    t.throws(() => b.eventfdWrite(s.fd, 0n), { code: 'ERR_OUT_OF_RANGE' });
  });
}

function vmOn(t: ExecutionContext, backend: Backend) {
  const kvm = Kvm.open({ backend });
  t.teardown(() => kvm.close());
  const vm = kvm.createVm();
  t.teardown(() => vm.close());
  return vm;
}

for (const [name, make, req] of [backends[0]!, ['native', () => new NativeBackend(), kvmDevice()] as const]) {
  hwTest(req, `${name}: the kernel's view of a bitmap is checked before the call (dirty log by slot size, bits rounded to longs)`, (t) => {
    const vm = vmOn(t, make());
    vm.addMemory({ guestPhysAddr: 0n, size: 0x80000, slot: 1, flags: KVM_MEM.LOG_DIRTY_PAGES }); // 128 pages: 16 bytes
    const b = vm.backend;
    t.throws(() => b.ioctl(vm.fd, ioc.KVM_GET_DIRTY_LOG, kvm_dirty_log.arg({ slot: 1, dirty_bitmap: new Uint8Array(8) })), {
      code: 'ERR_OUT_OF_RANGE',
    });
    t.throws(() => b.ioctl(vm.fd, ioc.KVM_GET_DIRTY_LOG, kvm_dirty_log.arg({ slot: 7, dirty_bitmap: new Uint8Array(16) })), {
      code: 'ERR_INVALID_ARG_VALUE',
    });
    t.is(vm.getDirtyLog(1).byteLength, 16);
    // 65 pages need two longs: 8 bytes are refused before the kernel reads past them.
    t.throws(() => kvm_clear_dirty_log.arg({ slot: 1, num_pages: 65, first_page: 0, dirty_bitmap: new Uint8Array(8) }), {
      code: 'ERR_OUT_OF_RANGE',
    });
    const raw = kvm_clear_dirty_log.arg({ slot: 1, num_pages: 64, first_page: 0, dirty_bitmap: new Uint8Array(8) });
    new DataView(raw.bytes.buffer).setUint32(4, 65, true); // num_pages behind the codec's back
    t.throws(() => b.ioctl(vm.fd, ioc.KVM_CLEAR_DIRTY_LOG, raw), { code: 'ERR_OUT_OF_RANGE' });
    const f = msrFilterArg(0, [{ flags: 1, base: 0x4b564d08, nmsrs: 1 }]);
    new DataView(f.bytes.buffer).setUint32(8 + 4, 200, true); // ranges[0].nmsrs = 200 bits, bitmap of 8 bytes
    t.throws(() => b.ioctl(vm.fd, ioc.KVM_X86_SET_MSR_FILTER, f), { code: 'ERR_OUT_OF_RANGE' });
  });
}
