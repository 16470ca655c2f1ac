/**
 * The mock refuses bad input exactly as the native boundary does (test/native-boundary.test.ts's
 * cases): the same error classes and codes, before the kernel model sees anything, and nothing
 * written outside the buffers given.
 */
import test, { type ExecutionContext } from 'ava';
import { MockHost } from '../lib/mock/index.js';
import { ioctlStruct } from '../lib/uapi/ioctl-arg.js';
import { structs } from '../lib/uapi/index.js';
import * as ioc from '../lib/uapi/ioctls.js';

function setup() {
  const b = new MockHost();
  const kvm = b.open('/dev/kvm');
  const vm = b.ioctlFd(kvm, ioc.KVM_CREATE_VM, 0);
  const vcpu = b.ioctlFd(vm, ioc.KVM_CREATE_VCPU, 0);
  const close = () => [vcpu, vm, kvm].forEach((f) => f.close());
  return { b, kvm, vm, vcpu, close };
}

function code(t: ExecutionContext, f: () => unknown, c: string, name?: string): void {
  const e = t.throws(f) as (Error & { code?: string }) | undefined;
  t.is(e?.code, c, e?.message);
  if (name) t.is(e?.name, name);
}

function vmOp(b: MockHost, vm: ReturnType<MockHost['open']>, id: number, data: ReturnType<typeof ioctlStruct>) {
  return b.ioctl(vm, ioc.KVM_MEMORY_ENCRYPT_OP, ioctlStruct(structs.kvm_sev_cmd.encode({ id }), [{ offset: 8, target: data }]));
}

test('wrong argument types are TypeErrors with ERR_INVALID_ARG_TYPE; ranges RangeErrors', (t) => {
  const { b, kvm, close } = setup();
  code(t, () => b.ioctl({} as never, ioc.KVM_GET_API_VERSION), 'ERR_INVALID_ARG_TYPE', 'TypeError');
  code(t, () => b.ioctl({ fd: kvm.fd } as never, ioc.KVM_GET_API_VERSION), 'ERR_INVALID_ARG_TYPE');
  code(t, () => new MockHost().ioctl(kvm, ioc.KVM_GET_API_VERSION), 'ERR_INVALID_ARG_TYPE', 'TypeError');
  code(t, () => b.ioctl(kvm, '44544' as never), 'ERR_INVALID_ARG_TYPE');
  code(t, () => b.ioctl(kvm, -1), 'ERR_OUT_OF_RANGE', 'RangeError');
  code(t, () => b.ioctl(kvm, 2 ** 32), 'ERR_OUT_OF_RANGE');
  code(t, () => b.ioctl(kvm, ioc.KVM_GET_API_VERSION, 'x' as never), 'ERR_INVALID_ARG_TYPE');
  code(t, () => b.ioctl(kvm, ioc.KVM_CHECK_EXTENSION, {} as never), 'ERR_INVALID_ARG_TYPE');
  code(t, () => b.ioctl(kvm, ioc.KVM_CHECK_EXTENSION, -1), 'ERR_OUT_OF_RANGE');
  code(t, () => b.open('/etc/passwd' as never), 'ERR_INVALID_ARG_VALUE');
  code(t, () => b.open('/dev/kvm', null as never), 'ERR_INVALID_ARG_TYPE');
  code(t, () => b.mmapAnonymous(4095), 'ERR_OUT_OF_RANGE');
  code(t, () => b.mmapAnonymous(0), 'ERR_OUT_OF_RANGE');
  code(t, () => b.mmapAnonymous(-4096), 'ERR_OUT_OF_RANGE');
  code(t, () => b.createRunner({} as never, 12288), 'ERR_INVALID_ARG_TYPE');
  code(t, () => b.createRunner(kvm, 12288), 'ERR_INVALID_ARG_VALUE');
  close();
});

test('only allowlisted requests pass; KVM_RUN only through the runner; fd-returning ones only through ioctlFd', (t) => {
  const { b, kvm, vm, vcpu, close } = setup();
  code(t, () => b.ioctl(kvm, 0xae99), 'ERR_KVM_SEV_UNKNOWN_IOCTL');
  code(t, () => b.ioctl(kvm, 0x5401), 'ERR_KVM_SEV_UNKNOWN_IOCTL');
  code(t, () => b.ioctl(vcpu, ioc.KVM_RUN), 'ERR_KVM_SEV_USE_RUNNER');
  code(t, () => b.ioctl(kvm, ioc.KVM_CREATE_VM, 0), 'ERR_KVM_SEV_RETURNS_FD');
  code(t, () => b.ioctlFd(vm, ioc.KVM_CHECK_EXTENSION, 1), 'ERR_KVM_SEV_RETURNS_FD');
  const [s1, s2] = b.socketPair();
  code(t, () => b.ioctl(s1, ioc.KVM_GET_API_VERSION), 'ERR_INVALID_ARG_VALUE');
  s1.close();
  s2.close();
  // Routed to the wrong fd kind, a request gets the kernel's default answer.
  code(t, () => b.ioctl(vm, ioc.KVM_GET_REGS, structs.kvm_regs.arg({})), 'ENOTTY');
  code(t, () => b.ioctl(vcpu, ioc.KVM_CHECK_EXTENSION, 1), 'EINVAL');
  code(t, () => b.ioctl(kvm, ioc.KVM_GET_REGS, structs.kvm_regs.arg({})), 'EINVAL');
  close();
});

test('closed fds answer EBADF, and close() is idempotent; fd numbers start at 3 and are reused lowest first', async (t) => {
  const { b, kvm, close } = setup();
  t.is(kvm.fd, 3);
  close();
  close();
  t.true(kvm.closed);
  t.is(kvm.kind, 'closed');
  t.is(kvm.fd, -1);
  code(t, () => b.ioctl(kvm, ioc.KVM_GET_API_VERSION), 'EBADF');
  const e = await t.throwsAsync(b.ioctlAsync(kvm, ioc.KVM_GET_API_VERSION));
  t.like(e, { code: 'EBADF', errno: -9, syscall: 'ioctl' });
  t.is(b.open('/dev/kvm').fd, 3);
  t.is(b.openFds, 1);
});

test('short structs, raw pointers, bad fix-ups and lengths beyond a buffer are refused', (t) => {
  const { b, vm, vcpu, close } = setup();
  const regs = new Uint8Array(100).fill(0xaa);
  code(t, () => b.ioctl(vcpu, ioc.KVM_GET_REGS, ioctlStruct(regs)), 'ERR_OUT_OF_RANGE');
  t.true(regs.every((x) => x === 0xaa), 'nothing written');
  code(t, () => b.ioctl(vcpu, ioc.KVM_GET_REGS, { kind: 'struct', bytes: new Uint16Array(72), fixups: [] } as never), 'ERR_INVALID_ARG_TYPE');
  const cmd = structs.kvm_sev_cmd.encode({ id: 6 });
  new DataView(cmd.buffer).setBigUint64(8, 0x7fff_0000_0000n, true);
  code(t, () => b.ioctl(vm, ioc.KVM_MEMORY_ENCRYPT_OP, ioctlStruct(cmd)), 'ERR_INVALID_ARG_VALUE');
  code(t, () => b.ioctl(vm, ioc.KVM_MEMORY_ENCRYPT_OP, ioctlStruct(structs.kvm_sev_cmd.encode({ id: 6 }), [{ offset: 16, target: new Uint8Array(16) }])), 'ERR_INVALID_ARG_VALUE');
  const measure = structs.kvm_sev_launch_measure.arg({ uaddr: new Uint8Array(48) });
  code(t, () => b.ioctl(vm, ioc.KVM_MEMORY_ENCRYPT_OP, ioctlStruct(structs.kvm_sev_cmd.encode({ id: 6 }), [{ offset: 8, target: measure }, { offset: 8, target: measure }])), 'ERR_INVALID_ARG_VALUE');
  const lie = ioctlStruct(structs.kvm_sev_launch_measure.encode({ len: 4096 }), [{ offset: 0, target: new Uint8Array(48) }]);
  code(t, () => vmOp(b, vm, 6, lie), 'ERR_OUT_OF_RANGE');
  code(t, () => vmOp(b, vm, 2, ioctlStruct(new Uint8Array(8))), 'ERR_OUT_OF_RANGE');
  code(t, () => vmOp(b, vm, 7, ioctlStruct(new Uint8Array(64))), 'ERR_INVALID_ARG_VALUE');
  const buf = new ArrayBuffer(48);
  structuredClone(buf, { transfer: [buf] });
  code(t, () => vmOp(b, vm, 6, ioctlStruct(structs.kvm_sev_launch_measure.encode({}), [{ offset: 0, target: buf }])), 'ERR_OUT_OF_RANGE');
  const msrs = new Uint8Array(8 + 16);
  new DataView(msrs.buffer).setUint32(0, 1000, true);
  code(t, () => b.ioctl(vcpu, ioc.KVM_GET_MSRS, ioctlStruct(msrs)), 'ERR_OUT_OF_RANGE');
  const region = ioctlStruct(structs.kvm_userspace_memory_region.encode({ slot: 0, memory_size: 4096n }), [{ offset: 24, target: new Uint8Array(4096) }]);
  code(t, () => b.ioctl(vm, ioc.KVM_SET_USER_MEMORY_REGION, region), 'ERR_INVALID_ARG_TYPE');
  code(t, () => b.ioctl(vm, ioc.KVM_MEMORY_ENCRYPT_OP, { kind: 'struct', bytes: structs.kvm_sev_cmd.encode({}), fixups: 'x' } as never), 'ERR_INVALID_ARG_TYPE');
  code(t, () => b.ioctl(vm, ioc.KVM_MEMORY_ENCRYPT_OP, ioctlStruct(structs.kvm_sev_cmd.encode({ id: 6 }), [{ offset: 8, target: { kind: 'mapping', mapping: {} } } as never])), 'ERR_INVALID_ARG_TYPE');
  close();
});

test('guest-memory ranges are bounds-checked, and an unmapped mapping is refused with EFAULT', (t) => {
  const { b, vm, close } = setup();
  const m = b.mmapAnonymous(0x4000);
  const region = (size: bigint, offset: number, length: number) =>
    ioctlStruct(structs.kvm_userspace_memory_region.encode({ slot: 0, memory_size: size }), [{ offset: 24, target: { kind: 'mapping', mapping: m, offset, length } }]);
  code(t, () => b.ioctl(vm, ioc.KVM_SET_USER_MEMORY_REGION, region(0x5000n, 0, 0x5000)), 'ERR_OUT_OF_RANGE');
  code(t, () => b.ioctl(vm, ioc.KVM_SET_USER_MEMORY_REGION, region(0x4000n, 0x1000, 0x2000)), 'ERR_OUT_OF_RANGE');
  m.unmap();
  code(t, () => b.ioctl(vm, ioc.KVM_SET_USER_MEMORY_REGION, region(0x4000n, 0, 0x4000)), 'EFAULT');
  close();
});

test('a mapping in a live memory slot cannot be unmapped; its ArrayBuffer detaches on unmap', (t) => {
  const { b, vm, close } = setup();
  const m = b.mmapAnonymous(0x10000);
  const view = new Uint8Array(m.buffer);
  view[5] = 42;
  b.ioctl(vm, ioc.KVM_SET_USER_MEMORY_REGION, structs.kvm_userspace_memory_region.arg({ slot: 3, memory_size: 0x10000n, userspace_addr: { kind: 'mapping', mapping: m, offset: 0, length: 0x10000 } }));
  t.is(m.bindings, 1);
  code(t, () => m.unmap(), 'EBUSY');
  t.is(view[5], 42);
  b.ioctl(vm, ioc.KVM_SET_USER_MEMORY_REGION, structs.kvm_userspace_memory_region.arg({ slot: 3, memory_size: 0n, userspace_addr: null }));
  t.is(m.bindings, 0);
  m.unmap();
  m.unmap();
  t.true(m.closed);
  t.is(view.byteLength, 0);
  t.is(m.buffer.byteLength, 0);
  close();
});

test('async ioctls copy back like sync ones and reject with the same Node-shaped errors', async (t) => {
  const { b, kvm, vm, vcpu, close } = setup();
  t.is(await b.ioctlAsync(kvm, ioc.KVM_GET_API_VERSION), 12);
  const regs = structs.kvm_regs.arg({ rip: 0x1234n, rflags: 2n, rax: 0xdead_beef_cafe_f00dn });
  await b.ioctlAsync(vcpu, ioc.KVM_SET_REGS, regs);
  const a = structs.kvm_regs.arg({});
  await b.ioctlAsync(vcpu, ioc.KVM_GET_REGS, a);
  t.is(structs.kvm_regs.decode(a.bytes).rax, 0xdead_beef_cafe_f00dn);
  const host = new MockHost({ sev: { enabled: false } });
  const hvm = host.ioctlFd(host.open('/dev/kvm'), ioc.KVM_CREATE_VM, 0);
  const cmd = structs.kvm_sev_cmd.arg({ id: 16, error: 0x1234, data: structs.kvm_sev_guest_status.arg({}) });
  const e = await t.throwsAsync(host.ioctlAsync(hvm, ioc.KVM_MEMORY_ENCRYPT_OP, cmd));
  t.like(e, { code: 'ENOTTY', errno: -25, syscall: 'ioctl', request: 'KVM_MEMORY_ENCRYPT_OP' });
  t.is(structs.kvm_sev_cmd.decode(cmd.bytes).error, 0x1234);
  t.is(((await t.throwsAsync(b.ioctlAsync(kvm, 0xae99))) as { code?: string }).code, 'ERR_KVM_SEV_UNKNOWN_IOCTL');
  void vm;
  close();
});

test('memfd mappings share pages; two hosts share nothing; SCM_RIGHTS hands over the same VM', async (t) => {
  const b = new MockHost();
  const fd = b.memfdCreate('guest', 0x2000);
  const m1 = b.mmapShared(fd, 0x2000);
  const m2 = b.mmapShared(fd, 0x2000);
  new Uint8Array(m1.buffer)[7] = 9;
  t.is(new Uint8Array(m2.buffer)[7], 9);
  code(t, () => b.mmapShared(b.open('/dev/kvm'), 0x1000), 'ERR_INVALID_ARG_VALUE');
  code(t, () => b.mmapShared(fd, 0x1000, 100), 'ERR_OUT_OF_RANGE');
  const other = new MockHost();
  code(t, () => other.mmapShared(fd, 0x1000), 'ERR_INVALID_ARG_TYPE');
  // SCM_RIGHTS within a host: the received fd is the same VM.
  const [a, c] = b.socketPair();
  const vm = b.ioctlFd(b.open('/dev/kvm'), ioc.KVM_CREATE_VM, 0);
  t.is(await b.sendFds(a, Uint8Array.of(1, 2), [vm]), 2);
  const got = await b.recvFds(c, 16);
  t.deepEqual([...got.data], [1, 2]);
  t.is(got.fds[0]!.kind, 'vm');
  t.not(got.fds[0]!.fd, vm.fd);
});
