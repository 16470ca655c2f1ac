/**
 * The native addon's own entry points refuse foreign objects and bad arguments with typed errors:
 * what only the native backend has (the backend-level rules are in test/conformance/).
 */
import type { ExecutionContext } from 'ava';
import { loadAddon } from '../../../lib/backends/native/addon.js';
import { NativeBackend } from '../../../lib/backends/native/native-backend.js';
import * as ioc from '../../../lib/uapi/ioctls.js';
import { hwTest, kvmDevice } from '../../helpers/hw.js';

const req = kvmDevice();

function code(t: ExecutionContext, f: () => unknown, c: string, name?: string): void {
  const e = t.throws(f) as (Error & { code?: string }) | undefined;
  t.is(e?.code, c, e?.message);
  if (name) t.is(e?.name, name);
}

function setup(t: ExecutionContext) {
  const b = new NativeBackend();
  const kvm = b.open('/dev/kvm');
  t.teardown(() => kvm.close());
  return { b, kvm, close: () => kvm.close() };
}

hwTest(req, 'wrong argument types are TypeErrors with ERR_INVALID_ARG_TYPE', (t) => {
  const { b, kvm, close } = setup(t);
  const a = loadAddon();
  code(t, () => b.ioctl({} as never, ioc.KVM_GET_API_VERSION), 'ERR_INVALID_ARG_TYPE', 'TypeError');
  code(t, () => b.ioctl({ fd: kvm.fd } as never, ioc.KVM_GET_API_VERSION), 'ERR_INVALID_ARG_TYPE');
  code(t, () => a.ioctl({} as never, ioc.KVM_GET_API_VERSION), 'ERR_INVALID_ARG_TYPE', 'TypeError');
  code(t, () => a.ioctl(null as never, ioc.KVM_GET_API_VERSION), 'ERR_INVALID_ARG_TYPE');
  code(t, () => a.ioctl(12345, ioc.KVM_GET_API_VERSION), 'EBADF'); // not one of our fds
  code(t, () => b.ioctl(kvm, '44544' as never), 'ERR_INVALID_ARG_TYPE');
  code(t, () => b.ioctl(kvm, -1), 'ERR_OUT_OF_RANGE', 'RangeError');
  code(t, () => b.ioctl(kvm, 2 ** 32), 'ERR_OUT_OF_RANGE');
  code(t, () => b.ioctl(kvm, ioc.KVM_GET_API_VERSION, 'x' as never), 'ERR_INVALID_ARG_TYPE');
  code(t, () => b.ioctl(kvm, ioc.KVM_CHECK_EXTENSION, {} as never), 'ERR_INVALID_ARG_TYPE');
  code(t, () => a.open('/etc/passwd', true), 'ERR_INVALID_ARG_VALUE');
  code(t, () => b.mmapAnonymous(4095), 'ERR_OUT_OF_RANGE');
  code(t, () => b.mmapAnonymous(0), 'ERR_OUT_OF_RANGE');
  code(t, () => b.mmapAnonymous(-4096), 'ERR_OUT_OF_RANGE');
  // Native classes cannot be constructed or called on foreign objects.
  const FdHandle = (a as unknown as { FdHandle: new (...x: unknown[]) => unknown }).FdHandle;
  code(t, () => new FdHandle(), 'ERR_ILLEGAL_CONSTRUCTOR');
  code(t, () => new a.VcpuRunner({} as never, 12288), 'ERR_INVALID_ARG_TYPE');
  code(t, () => new a.VcpuRunner(kvm, 12288), 'ERR_INVALID_ARG_VALUE');
  t.throws(() => (FdHandle.prototype as { close(): void }).close.call({}));
  close();
});

hwTest(
  req,
  'what the review found: foreign getters, a busy vCPU, a second runner, mappings and run areas beyond the file, local ids',
  async (t) => {
    const a = loadAddon();
    const b = new NativeBackend();
    const kvm = b.open('/dev/kvm');
    t.teardown(() => kvm.close());
    const m = b.mmapAnonymous(4096);
    t.teardown(() => m.unmap());
    const proto = (o: object, k: string): ((this: unknown) => unknown) =>
      // eslint-disable-next-line @typescript-eslint/unbound-method -- called with a foreign `this` on purpose
      Object.getOwnPropertyDescriptor(Object.getPrototypeOf(o), k)!.get!;
    code(t, () => proto(m, 'buffer').call(kvm), 'ERR_INVALID_THIS');
    code(t, () => proto(kvm, 'path').call(m), 'ERR_INVALID_THIS');
    // A memfd maps only within its size (beyond it, a touch would be SIGBUS).
    const memfd = b.memfdCreate('review', 4096);
    t.teardown(() => memfd.close());
    code(t, () => b.mmapShared(memfd, 0x100000), 'ERR_OUT_OF_RANGE');
    code(t, () => b.mmapShared(memfd, 4096, 4096), 'ERR_OUT_OF_RANGE');
    // The run area is exactly what KVM maps.
    const vm = b.ioctlFd(kvm, ioc.KVM_CREATE_VM, 0);
    t.teardown(() => vm.close());
    const vcpu = b.ioctlFd(vm, ioc.KVM_CREATE_VCPU, 0);
    t.teardown(() => vcpu.close());
    const size = b.ioctl(kvm, ioc.KVM_GET_VCPU_MMAP_SIZE);
    code(t, () => b.createRunner(vcpu, 1 << 24), 'ERR_OUT_OF_RANGE');
    const r = b.createRunner(vcpu, size);
    t.teardown(() => r.close()); // before the vCPU fd: it kicks and joins the vCPU thread
    code(t, () => b.createRunner(vcpu, size), 'ERR_KVM_SEV_VCPU_BUSY');
    // While the guest runs (here: spins), KVM holds the vCPU: other ioctls are refused, not blocked.
    const mem = b.mmapAnonymous(0x10000);
    t.teardown(() => {
      // The VM goes first (its vCPU holds it too): the mapping backs one of its memory slots.
      for (const f of [r, vcpu, vm]) f.close();
      mem.unmap();
    });
    new Uint8Array(mem.buffer).set([0xeb, 0xfe], 0x1000);
    const { ioctlStruct } = await import('../../../lib/uapi/ioctl-arg.js');
    const { structs } = await import('../../../lib/uapi/index.js');
    b.ioctl(
      vm,
      ioc.KVM_SET_USER_MEMORY_REGION,
      structs.kvm_userspace_memory_region.arg({
        slot: 0,
        memory_size: 0x10000n,
        userspace_addr: { kind: 'mapping', mapping: mem, offset: 0, length: 0x10000 },
      }),
    );
    const sregs = structs.kvm_sregs.arg({});
    b.ioctl(vcpu, ioc.KVM_GET_SREGS, sregs);
    const s = structs.kvm_sregs.decode(sregs.bytes);
    s.cs.base = 0n;
    s.cs.selector = 0;
    b.ioctl(vcpu, ioc.KVM_SET_SREGS, structs.kvm_sregs.arg(s));
    b.ioctl(vcpu, ioc.KVM_SET_REGS, structs.kvm_regs.arg({ rip: 0x1000n, rflags: 2n }));
    const running = r.run();
    await new Promise((res) => setTimeout(res, 100)); // past the inline wait: on the vCPU thread now
    code(t, () => b.ioctl(vcpu, ioc.KVM_GET_REGS, ioctlStruct(new Uint8Array(144))), 'ERR_KVM_SEV_VCPU_BUSY');
    r.kick();
    t.is(await running, -4);
    t.notThrows(() => b.ioctl(vcpu, ioc.KVM_GET_REGS, ioctlStruct(new Uint8Array(144))));
    r.close();
    // Local-migration ids may only take over 22 and unassigned ids, never LAUNCH_MEASURE & co.
    code(t, () => a.setSevCommandIds(vm.fd, 6, 7), 'ERR_OUT_OF_RANGE');
    code(t, () => a.setSevCommandIds(vm.fd, 22, 22), 'ERR_OUT_OF_RANGE');
    code(t, () => a.setSevCommandIds(vm.fd, 22, 0), 'ERR_OUT_OF_RANGE');
    code(t, () => a.setSevCommandIds(vm.fd, 22, 101), 'ERR_OUT_OF_RANGE');
    // …and they belong to a VM fd: not the system fd, not a vCPU.
    code(t, () => a.setSevCommandIds(kvm.fd, 22, 23), 'ERR_INVALID_ARG_VALUE');
    code(t, () => a.setSevCommandIds(vcpu.fd, 22, 23), 'ERR_INVALID_ARG_VALUE');
    t.deepEqual(a.sevCommandIds(vm.fd), [0, 0], 'a refused table leaves the upstream one');
    for (const f of [vcpu, vm, memfd, kvm]) f.close();
    m.unmap();
    mem.unmap();
  },
);
