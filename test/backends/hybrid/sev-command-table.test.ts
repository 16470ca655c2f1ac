/**
 * The hybrid's KVM_SEV command ids are its mocked kernel's: on 'local-migration-2021' a raw
 * KVM_MEMORY_ENCRYPT_OP with id 22 carries the 8-byte LOCAL_SEND struct to the mocked SEV layer,
 * and a caller who says otherwise is refused.
 */
import type { ExecutionContext } from 'ava';
import { HybridBackend } from '../../../lib/backends/hybrid/hybrid-backend.js';
import { KVM_SEV } from '../../../lib/uapi/constants.js';
import * as ioc from '../../../lib/uapi/ioctls.js';
import { kvm_sev_local_send } from '../../../lib/uapi/local-migration-structs.js';
import { SevCommandTable } from '../../../lib/uapi/sev-command-table.js';
import { kvm_sev_launch_start } from '../../../lib/uapi/sev-structs.js';
import { hwTest, kvmDevice } from '../../helpers/hw.js';

const req = kvmDevice();

function code(t: ExecutionContext, f: () => unknown, c: string): void {
  const e = t.throws(f) as (Error & { code?: string }) | undefined;
  t.is(e?.code, c, e?.message);
}

hwTest(req, "hybrid on 'local-migration-2021': id 22 is LOCAL_SEND with its 8-byte struct; another table is refused", (t) => {
  const b = new HybridBackend({ kernel: 'local-migration-2021' });
  const kvm = b.open('/dev/kvm');
  t.teardown(() => kvm.close());
  const sev = b.open('/dev/sev');
  t.teardown(() => sev.close());
  const vm = b.ioctlFd(kvm, ioc.KVM_CREATE_VM, 0);
  t.teardown(() => vm.close());
  const table = b.sevCommandTable(vm);
  t.is(table, SevCommandTable.LOCAL_MIGRATION_2021);
  const op = (id: number, data: Parameters<typeof table.kvm_sev_cmd.arg>[0]['data'] = null) =>
    b.ioctl(vm, ioc.KVM_MEMORY_ENCRYPT_OP, table.kvm_sev_cmd.arg({ id, data, sev_fd: sev.fd }));
  op(KVM_SEV.INIT);
  op(KVM_SEV.LAUNCH_START, kvm_sev_launch_start.arg({ policy: 0 }));
  const send = kvm_sev_local_send.arg({});
  t.is(op(22, send), 0);
  t.not(kvm_sev_local_send.decode(send.bytes).info_token, 0n);
  t.notThrows(() => b.setSevCommandTable(vm, SevCommandTable.LOCAL_MIGRATION_2021));
  code(t, () => b.setSevCommandTable(vm, SevCommandTable.UPSTREAM), 'ERR_KVM_SEV_COMMAND_TABLE');
  code(t, () => b.sevCommandTable(kvm), 'ERR_INVALID_ARG_VALUE');
});
