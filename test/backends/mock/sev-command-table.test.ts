/**
 * The mock's KVM_SEV command ids are its kernel profile's, for every VM: at the raw-ioctl level, id
 * 22 is LOCAL_SEND with its 8-byte struct on 'local-migration-2021' and INIT2 with the 48-byte
 * kvm_sev_init on '7.2', both in what the table's codec builds and in what the mock's boundary accepts.
 */
import test, { type ExecutionContext } from 'ava';
import type { BackendFd } from '../../../lib/backend/contract.js';
import { MockHost } from '../../../lib/backends/mock/index.js';
import { KVM_SEV, KVM_X86_SEV_VM } from '../../../lib/uapi/constants.js';
import { ioctlStruct, type IoctlStruct } from '../../../lib/uapi/ioctl-arg.js';
import * as ioc from '../../../lib/uapi/ioctls.js';
import { kvm_sev_local_receive, kvm_sev_local_send } from '../../../lib/uapi/local-migration-structs.js';
import { SevCommandTable } from '../../../lib/uapi/sev-command-table.js';
import { kvm_sev_cmd, kvm_sev_launch_start } from '../../../lib/uapi/sev-structs.js';

function code(t: ExecutionContext, f: () => unknown, c: string): void {
  const e = t.throws(f) as (Error & { code?: string }) | undefined;
  t.is(e?.code, c, e?.message);
}

function setup(t: ExecutionContext, kernel: '7.2' | 'local-migration-2021') {
  const host = new MockHost({ kernel, trace: true });
  const kvm = host.open('/dev/kvm');
  t.teardown(() => kvm.close());
  const sev = host.open('/dev/sev');
  t.teardown(() => sev.close());
  const newVmFd = (type = 0) => {
    const vm = host.ioctlFd(kvm, ioc.KVM_CREATE_VM, type);
    t.teardown(() => vm.close());
    return vm;
  };
  /** KVM_MEMORY_ENCRYPT_OP laid out by the table of the kernel behind `vm`. */
  const op = (vm: BackendFd, id: number, data: IoctlStruct | Record<string, unknown> | null = null) =>
    host.ioctl(vm, ioc.KVM_MEMORY_ENCRYPT_OP, host.sevCommandTable(vm).kvm_sev_cmd.arg({ id, data, sev_fd: sev.fd }));
  return { host, kvm, sev, newVmFd, op };
}

test('local-migration-2021: a raw KVM_MEMORY_ENCRYPT_OP with id 22 and the 8-byte kvm_sev_local_send works, and 23 redeems it', (t) => {
  const { host, newVmFd, op } = setup(t, 'local-migration-2021');
  const source = newVmFd();
  t.is(host.sevCommandTable(source), SevCommandTable.LOCAL_MIGRATION_2021);
  op(source, KVM_SEV.INIT);
  op(source, KVM_SEV.LAUNCH_START, kvm_sev_launch_start.arg({ policy: 0 }));
  const send = kvm_sev_local_send.arg({});
  t.is(op(source, 22, send), 0);
  const token = kvm_sev_local_send.decode(send.bytes).info_token;
  t.not(token, 0n, 'LOCAL_SEND wrote its token back into the 8-byte struct');

  const target = newVmFd();
  op(target, KVM_SEV.INIT);
  const recv = kvm_sev_local_receive.arg({ info_token: token });
  t.is(op(target, 23, recv), 0);
  t.true(kvm_sev_local_receive.decode(recv.bytes).handle > 0);
  t.deepEqual(
    host.trace.entries.filter((e) => e.command === 'LOCAL_SEND' || e.command === 'LOCAL_RECEIVE').map((e) => e.command),
    ['LOCAL_SEND', 'LOCAL_RECEIVE'],
    'the trace names them by the profile',
  );
});

test('7.2: id 22 is KVM_SEV_INIT2 with the 48-byte kvm_sev_init; the 8-byte struct is refused by the codec and by the boundary', (t) => {
  const { host, newVmFd, op } = setup(t, '7.2');
  const vm = newVmFd(KVM_X86_SEV_VM);
  const table = host.sevCommandTable(vm);
  t.is(table, SevCommandTable.UPSTREAM);
  code(t, () => op(vm, 22, kvm_sev_local_send.arg({})), 'ERR_OUT_OF_RANGE');
  // Laid out by hand, past the codec: the mock's boundary reads id 22 as the kernel does.
  const byHand = ioctlStruct(kvm_sev_cmd.encode({ id: 22 }), [
    { offset: kvm_sev_cmd.offsetOf('data'), target: kvm_sev_local_send.arg({}) },
  ]);
  code(t, () => host.ioctl(vm, ioc.KVM_MEMORY_ENCRYPT_OP, byHand), 'ERR_OUT_OF_RANGE');
  t.false(
    host.sev.snapshot().vms.some((v) => v.active),
    'nothing reached the kernel',
  );
  t.is(op(vm, 22, {}), 0, 'INIT2');
  t.true(
    host.sev.snapshot().vms.some((v) => v.active && v.asid > 0),
    'INIT2 made the VM an SEV guest',
  );
});

test('two kernels in one process: each VM speaks its own kernel profile; another table is refused, typed', (t) => {
  const old = setup(t, 'local-migration-2021');
  const cur = setup(t, '7.2');
  const a = old.newVmFd();
  const b = cur.newVmFd();
  t.is(old.host.sevCommandTable(a), SevCommandTable.LOCAL_MIGRATION_2021);
  t.is(cur.host.sevCommandTable(b), SevCommandTable.UPSTREAM);
  t.notThrows(() => old.host.setSevCommandTable(a, SevCommandTable.LOCAL_MIGRATION_2021));
  t.notThrows(() => cur.host.setSevCommandTable(b, SevCommandTable.UPSTREAM));
  const refusedOld = t.throws(() => old.host.setSevCommandTable(a, SevCommandTable.UPSTREAM));
  t.is((refusedOld as { code?: string }).code, 'ERR_KVM_SEV_COMMAND_TABLE');
  t.regex(refusedOld?.message ?? '', /profile 'local-migration-2021'.*id 22 is LOCAL_SEND/);
  const refusedCur = t.throws(() => cur.host.setSevCommandTable(b, SevCommandTable.LOCAL_MIGRATION_2021));
  t.is((refusedCur as { code?: string }).code, 'ERR_KVM_SEV_COMMAND_TABLE');
  t.regex(refusedCur?.message ?? '', /id 22 is KVM_SEV_INIT2 here/);
  code(
    t,
    () => cur.host.setSevCommandTable(b, SevCommandTable.withLocalMigration({ send: 200, receive: 201 })),
    'ERR_KVM_SEV_COMMAND_TABLE',
  );
  t.is(cur.host.sevCommandTable(b), SevCommandTable.UPSTREAM, 'a refused table changes nothing');
  // Only VM fds, of this host, open.
  code(t, () => cur.host.sevCommandTable(cur.kvm), 'ERR_INVALID_ARG_VALUE');
  code(t, () => cur.host.sevCommandTable(cur.sev), 'ERR_INVALID_ARG_VALUE');
  code(t, () => cur.host.sevCommandTable(a), 'ERR_INVALID_ARG_TYPE');
  code(t, () => cur.host.setSevCommandTable(b, { localMigration: undefined } as never), 'ERR_INVALID_ARG_TYPE');
  const gone = cur.newVmFd();
  gone.close();
  code(t, () => cur.host.sevCommandTable(gone), 'EBADF');
});
