/**
 * The native shim keeps the KVM_SEV command-id table per VM fd: two VMs of one process, one told
 * that its kernel has the 2021 LOCAL_SEND/LOCAL_RECEIVE (22/23), one not, marshal the same ids
 * differently. No kernel here has the patch, so the table shows in what the shim accepts and
 * refuses; where SEV is off, what it accepts reaches the kernel, which answers ENOTTY.
 */
import type { ExecutionContext } from 'ava';
import type { BackendFd } from '../../../lib/backend/contract.js';
import { NativeBackend } from '../../../lib/backends/native/native-backend.js';
import { ioctlStruct, type IoctlStruct } from '../../../lib/uapi/ioctl-arg.js';
import * as ioc from '../../../lib/uapi/ioctls.js';
import { kvm_sev_local_receive, kvm_sev_local_send } from '../../../lib/uapi/local-migration-structs.js';
import { SevCommandTable } from '../../../lib/uapi/sev-command-table.js';
import { kvm_sev_cmd, kvm_sev_init } from '../../../lib/uapi/sev-structs.js';
import { hwTest, kvmDevice, nativeAddon, type Requirement } from '../../helpers/hw.js';

const kvmReq = kvmDevice();

/** Where the NULL-argument probe answers ENOTTY, every KVM_SEV command does, before the firmware. */
function sevOff(): Requirement {
  if (!kvmReq.ok) return kvmReq;
  const b = new NativeBackend();
  const kvm = b.open('/dev/kvm');
  try {
    const vm = b.ioctlFd(kvm, ioc.KVM_CREATE_VM, 0);
    try {
      b.ioctl(vm, ioc.KVM_MEMORY_ENCRYPT_OP);
      return { ok: false, reason: 'SEV is enabled on this host: a LOCAL_SEND struct must not reach a kernel that reads id 22 as INIT2' };
    } catch (e) {
      return (e as { code?: string }).code === 'ENOTTY'
        ? { ok: true, reason: '' }
        : { ok: false, reason: `the probe answered ${String(e)}` };
    } finally {
      vm.close();
    }
  } finally {
    kvm.close();
  }
}

function code(t: ExecutionContext, f: () => unknown, c: string): void {
  const e = t.throws(f) as (Error & { code?: string }) | undefined;
  t.is(e?.code, c, e?.message);
}

/** `data` at kvm_sev_cmd.data, laid out by hand so that only the shim's own table decides. */
function raw(id: number, data: IoctlStruct): IoctlStruct {
  return ioctlStruct(kvm_sev_cmd.encode({ id, sev_fd: 0xffffffff }), [{ offset: kvm_sev_cmd.offsetOf('data'), target: data }]);
}

function setup(t: ExecutionContext) {
  const b = new NativeBackend();
  const kvm = b.open('/dev/kvm');
  t.teardown(() => kvm.close());
  const createVm = () => {
    const vm = b.ioctlFd(kvm, ioc.KVM_CREATE_VM, 0);
    t.teardown(() => vm.close());
    return vm;
  };
  const patched = createVm();
  const plain = createVm();
  b.setSevCommandTable(patched, SevCommandTable.LOCAL_MIGRATION_2021);
  return { b, kvm, patched, plain, createVm };
}

hwTest(kvmReq, 'two VMs, one told its kernel has LOCAL_SEND/RECEIVE at 22/23: each marshals by its own table', (t) => {
  const { b, kvm, patched, plain } = setup(t);
  t.is(b.sevCommandTable(patched), SevCommandTable.LOCAL_MIGRATION_2021);
  t.is(b.sevCommandTable(plain), SevCommandTable.UPSTREAM, 'the other VM of the process keeps the upstream table');
  const op = (vm: BackendFd, id: number, data: IoctlStruct) => b.ioctl(vm, ioc.KVM_MEMORY_ENCRYPT_OP, raw(id, data));
  // 22 upstream is INIT2: the 8-byte LOCAL_SEND struct is too short for kvm_sev_init.
  code(t, () => op(plain, 22, kvm_sev_local_send.arg({})), 'ERR_OUT_OF_RANGE');
  // 23 upstream is no command: the shim passes the memory as it is and the kernel decides (EINVAL on
  // an SEV host for the unknown id; ENOTTY here, where KVM has no SEV).
  const unknown = t.throws(() => op(plain, 23, kvm_sev_local_receive.arg({ info_token: 1n }))) as Error & {
    syscall?: string;
    code?: string;
  };
  t.is(unknown.syscall, 'ioctl', 'the kernel answered');
  t.true(['EINVAL', 'ENOTTY'].includes(unknown.code ?? ''), unknown.message);
  // On the patched VM 23 is LOCAL_RECEIVE: 8 bytes are too few for kvm_sev_local_receive.
  code(t, () => op(patched, 23, kvm_sev_local_send.arg({})), 'ERR_OUT_OF_RANGE');
  // The table's own codec builds what the shim then accepts (see the next test for the kernel's answer).
  code(t, () => b.sevCommandTable(plain).kvm_sev_cmd.arg({ id: 22, data: kvm_sev_local_send.arg({}) }), 'ERR_OUT_OF_RANGE');

  // Back to upstream: the table is the fd's state, set by the caller.
  b.setSevCommandTable(patched, SevCommandTable.UPSTREAM);
  t.is(b.sevCommandTable(patched), SevCommandTable.UPSTREAM);
  code(t, () => op(patched, 22, kvm_sev_local_send.arg({})), 'ERR_OUT_OF_RANGE');
  // Other ids of the shim's choice, where upstream assigns none.
  const custom = SevCommandTable.withLocalMigration({ send: 200, receive: 201 });
  b.setSevCommandTable(patched, custom);
  t.true(b.sevCommandTable(patched).equals(custom));
  code(t, () => op(patched, 22, kvm_sev_local_send.arg({})), 'ERR_OUT_OF_RANGE');

  // Only VM fds; SNP and pointer-bearing ids cannot be taken over.
  code(t, () => b.setSevCommandTable(kvm, SevCommandTable.LOCAL_MIGRATION_2021), 'ERR_INVALID_ARG_VALUE');
  code(t, () => b.sevCommandTable(kvm), 'ERR_INVALID_ARG_VALUE');
  code(
    t,
    () => b.setSevCommandTable(plain, SevCommandTable.withLocalMigration({ send: 100, receive: 101, allowUpstreamCollision: true })),
    'ERR_OUT_OF_RANGE',
  );
  code(t, () => b.setSevCommandTable(plain, { localMigration: { LOCAL_SEND: 22, LOCAL_RECEIVE: 23 } } as never), 'ERR_INVALID_ARG_TYPE');
  t.is(b.sevCommandTable(plain), SevCommandTable.UPSTREAM);
});

hwTest(kvmReq, 'a VM fd received over a socket has its own table (upstream), whatever the sender told its fd', async (t) => {
  const { b, patched } = setup(t);
  const [s1, s2] = b.socketPair();
  t.teardown(() => {
    s1.close();
    s2.close();
  });
  await b.sendFds(s1, new Uint8Array([1]), [patched]);
  const { fds } = await b.recvFds(s2, 1, 1);
  t.teardown(() => fds.forEach((f) => f.close()));
  const received = fds[0]!;
  t.is(received.kind, 'vm');
  t.is(b.sevCommandTable(patched), SevCommandTable.LOCAL_MIGRATION_2021);
  t.is(b.sevCommandTable(received), SevCommandTable.UPSTREAM);
  patched.close();
  code(t, () => b.sevCommandTable(patched), 'EBADF');
});

hwTest(sevOff(), 'what the table lets through reaches the kernel: LOCAL_SEND on one VM, INIT2 on the other, both ENOTTY here', (t) => {
  const { b, patched, plain } = setup(t);
  const send = b.sevCommandTable(patched).kvm_sev_cmd.arg({ id: 22, data: kvm_sev_local_send.arg({}) });
  code(t, () => b.ioctl(patched, ioc.KVM_MEMORY_ENCRYPT_OP, send), 'ENOTTY');
  const recv = b.sevCommandTable(patched).kvm_sev_cmd.arg({ id: 23, data: { info_token: 5n } });
  code(t, () => b.ioctl(patched, ioc.KVM_MEMORY_ENCRYPT_OP, recv), 'ENOTTY');
  const init2 = b.sevCommandTable(plain).kvm_sev_cmd.arg({ id: 22, data: kvm_sev_init.arg({}) });
  code(t, () => b.ioctl(plain, ioc.KVM_MEMORY_ENCRYPT_OP, init2), 'ENOTTY');
});

hwTest(nativeAddon(), 'the native backend refuses a foreign fd for the table calls', (t) => {
  const b = new NativeBackend();
  code(t, () => b.sevCommandTable({ kind: 'vm', fd: 3, closed: false, writable: true, close() {} }), 'ERR_INVALID_ARG_TYPE');
});
