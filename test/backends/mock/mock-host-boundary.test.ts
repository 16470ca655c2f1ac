/**
 * What only the mock's boundary has beyond the shared conformance suite (test/conformance/boundary.ts,
 * run against the mock too): argument types at the MockHost entry points, fd numbering, memfd page
 * sharing, SCM_RIGHTS within one host, and what the kernel (not JS) decides for a command's data.
 */
import test, { type ExecutionContext } from 'ava';
import { MockHost } from '../../../lib/backends/mock/index.js';
import { KVM_SEV } from '../../../lib/uapi/constants.js';
import { ioctlStruct, type IoctlStruct, type MappingRange } from '../../../lib/uapi/ioctl-arg.js';
import * as ioc from '../../../lib/uapi/ioctls.js';
import { kvm_sev_cmd, kvm_sev_launch_measure, kvm_sev_launch_start } from '../../../lib/uapi/sev-structs.js';
import { openVcpuFds } from '../../helpers/vcpu-fds.js';

/** A mock host with /dev/kvm, a VM and a vCPU open; closed at teardown. */
function setup(t: ExecutionContext) {
  const b = new MockHost();
  return { b, ...openVcpuFds(t, b) };
}

function code(t: ExecutionContext, f: () => unknown, c: string, name?: string): void {
  const e = t.throws(f) as (Error & { code?: string }) | undefined;
  t.is(e?.code, c, e?.message);
  if (name) t.is(e?.name, name);
}

test('wrong argument types are TypeErrors with ERR_INVALID_ARG_TYPE; ranges RangeErrors', (t) => {
  const { b, kvm, close } = setup(t);
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

test('closed fds answer EBADF, and close() is idempotent; fd numbers start at 3 and are reused lowest first', async (t) => {
  const { b, kvm, close } = setup(t);
  t.is(kvm.fd, 3);
  close();
  close();
  t.true(kvm.closed);
  t.is(kvm.kind, 'closed');
  t.is(kvm.fd, -1);
  code(t, () => b.ioctl(kvm, ioc.KVM_GET_API_VERSION), 'EBADF');
  const e = await t.throwsAsync(b.ioctlAsync(kvm, ioc.KVM_GET_API_VERSION));
  t.like(e, { code: 'EBADF', errno: -9, syscall: 'ioctl' });
  const again = b.open('/dev/kvm');
  t.teardown(() => again.close());
  t.is(again.fd, 3);
  t.is(b.openFds, 1);
});

test('memfd mappings share pages; two hosts share nothing; SCM_RIGHTS hands over the same VM', async (t) => {
  const b = new MockHost();
  const fd = b.memfdCreate('guest', 0x2000);
  t.teardown(() => fd.close());
  const m1 = b.mmapShared(fd, 0x2000);
  t.teardown(() => m1.unmap());
  const m2 = b.mmapShared(fd, 0x2000);
  t.teardown(() => m2.unmap());
  new Uint8Array(m1.buffer)[7] = 9;
  t.is(new Uint8Array(m2.buffer)[7], 9);
  const kvm = b.open('/dev/kvm');
  t.teardown(() => kvm.close());
  code(t, () => b.mmapShared(kvm, 0x1000), 'ERR_INVALID_ARG_VALUE');
  code(t, () => b.mmapShared(fd, 0x1000, 100), 'ERR_OUT_OF_RANGE');
  const other = new MockHost();
  code(t, () => other.mmapShared(fd, 0x1000), 'ERR_INVALID_ARG_TYPE');
  // SCM_RIGHTS within a host: the received fd is the same VM.
  const [a, c] = b.socketPair();
  t.teardown(() => [a, c].forEach((s) => s.close()));
  const kvm2 = b.open('/dev/kvm');
  t.teardown(() => kvm2.close());
  const vm = b.ioctlFd(kvm2, ioc.KVM_CREATE_VM, 0);
  t.teardown(() => vm.close());
  t.is(await b.sendFds(a, Uint8Array.of(1, 2), [vm]), 2);
  const got = await b.recvFds(c, 16);
  t.teardown(() => got.fds.forEach((f) => f.close()));
  t.deepEqual([...got.data], [1, 2]);
  t.is(got.fds[0]!.kind, 'vm');
  t.not(got.fds[0]!.fd, vm.fd);
});

test('a command that takes no data gets the pointer given; the kernel decides: LAUNCH_FINISH ignores it, an unknown id is EINVAL', (t) => {
  const b = new MockHost();
  const kvm = b.open('/dev/kvm');
  const sev = b.open('/dev/sev');
  const vm = b.ioctlFd(kvm, ioc.KVM_CREATE_VM, 0);
  t.teardown(() => [vm, sev, kvm].forEach((f) => f.close()));
  const op = (id: number, data: IoctlStruct | Uint8Array | MappingRange | null, error = 0) => {
    const cmd = kvm_sev_cmd.arg({ id, data, sev_fd: sev.fd, error });
    try {
      b.ioctl(vm, ioc.KVM_MEMORY_ENCRYPT_OP, cmd);
      return { code: 'ok', error: kvm_sev_cmd.decode(cmd.bytes).error };
    } catch (e) {
      return { code: (e as { code: string }).code, error: kvm_sev_cmd.decode(cmd.bytes).error };
    }
  };
  const junk = new Uint8Array(64).fill(0xa5);
  t.like(op(KVM_SEV.INIT, junk), { code: 'ok' }, 'INIT reads no data');
  op(KVM_SEV.LAUNCH_START, kvm_sev_launch_start.arg({ policy: 0 }));
  // Unknown ids are refused before the data is looked at, without a write-back (error as given).
  t.deepEqual(op(30, junk, 7), { code: 'EINVAL', error: 7 });
  t.deepEqual(op(23, ioctlStruct(junk), 7), { code: 'EINVAL', error: 7 });
  const m = b.mmapAnonymous(0x1000);
  t.teardown(() => m.unmap());
  t.deepEqual(op(KVM_SEV.SEND_UPDATE_VMSA, { kind: 'mapping', mapping: m, offset: 8, length: 8 }, 7), { code: 'EINVAL', error: 7 });
  // Fix-ups in memory without a layout have no pointer field to land in: JS cannot express them.
  const withFixup = ioctlStruct(junk, [{ offset: 0, target: new Uint8Array(8) }]);
  code(
    t,
    () => b.ioctl(vm, ioc.KVM_MEMORY_ENCRYPT_OP, kvm_sev_cmd.arg({ id: KVM_SEV.LAUNCH_FINISH, data: withFixup, sev_fd: sev.fd })),
    'ERR_INVALID_ARG_VALUE',
    'TypeError',
  );
  op(KVM_SEV.LAUNCH_MEASURE, kvm_sev_launch_measure.arg({ uaddr: new Uint8Array(48) }));
  t.deepEqual(op(KVM_SEV.LAUNCH_FINISH, ioctlStruct(junk)), { code: 'ok', error: 0 });
  t.deepEqual(junk, new Uint8Array(64).fill(0xa5), 'the kernel wrote nothing there');
});
