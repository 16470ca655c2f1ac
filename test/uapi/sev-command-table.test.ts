/**
 * KVM_SEV command-id tables: `kvm_sev_cmd.data` is laid out by the table of the kernel the command
 * goes to. Upstream, id 22 is KVM_SEV_INIT2 (the 48-byte `kvm_sev_init`); with the 2021
 * local-migration patch it is LOCAL_SEND (the 8-byte `kvm_sev_local_send`), and 23 LOCAL_RECEIVE.
 */
import test, { type ExecutionContext } from 'ava';
import { KVM_SEV } from '../../lib/uapi/constants.js';
import { isIoctlStruct, type IoctlStruct } from '../../lib/uapi/ioctl-arg.js';
import { kvm_sev_local_receive, kvm_sev_local_send } from '../../lib/uapi/local-migration-structs.js';
import { SevCommandTable } from '../../lib/uapi/sev-command-table.js';
import { kvm_sev_cmd, kvm_sev_init, kvm_sev_launch_start, sevCommandStruct } from '../../lib/uapi/sev-structs.js';

const { UPSTREAM, LOCAL_MIGRATION_2021 } = SevCommandTable;

function code(t: ExecutionContext, f: () => unknown, c: string): void {
  const e = t.throws(f) as (Error & { code?: string }) | undefined;
  t.is(e?.code, c, e?.message);
}

/** The struct `data` points at, as the codec resolved it. */
function dataOf(cmd: IoctlStruct): IoctlStruct {
  const [f, ...rest] = cmd.fixups;
  if (!f || rest.length > 0 || f.offset !== kvm_sev_cmd.offsetOf('data') || !isIoctlStruct(f.target)) {
    throw new Error('expected one fix-up, a struct at kvm_sev_cmd.data');
  }
  return f.target;
}

test('upstream: id 22 is INIT2 with the 48-byte kvm_sev_init; an 8-byte struct is refused', (t) => {
  t.is(UPSTREAM.commandName(22), 'INIT2');
  t.is(UPSTREAM.struct(22), kvm_sev_init);
  t.is(UPSTREAM.struct(23), undefined, 'no upstream command 23');
  t.is(UPSTREAM.localMigration, undefined);
  t.is(UPSTREAM.kvm_sev_cmd, kvm_sev_cmd, 'the upstream table is the plain codec');
  t.is(dataOf(UPSTREAM.kvm_sev_cmd.arg({ id: 22, data: {} })).bytes.byteLength, 48);
  code(t, () => UPSTREAM.kvm_sev_cmd.arg({ id: 22, data: kvm_sev_local_send.arg({}) }), 'ERR_OUT_OF_RANGE');
  code(t, () => UPSTREAM.kvm_sev_cmd.arg({ id: 23, data: {} }), 'ERR_INVALID_ARG_VALUE');
});

test('local-migration-2021: id 22 is LOCAL_SEND (8 bytes) and 23 LOCAL_RECEIVE (16 bytes); nothing else changes', (t) => {
  t.deepEqual({ ...LOCAL_MIGRATION_2021.localMigration }, { LOCAL_SEND: 22, LOCAL_RECEIVE: 23 });
  t.is(LOCAL_MIGRATION_2021.commandName(22), 'LOCAL_SEND');
  t.is(LOCAL_MIGRATION_2021.commandName(23), 'LOCAL_RECEIVE');
  t.is(LOCAL_MIGRATION_2021.struct(22), kvm_sev_local_send);
  t.is(LOCAL_MIGRATION_2021.struct(23), kvm_sev_local_receive);

  const send = kvm_sev_local_send.arg({});
  const cmd = LOCAL_MIGRATION_2021.kvm_sev_cmd.arg({ id: 22, data: send, sev_fd: 7 });
  t.is(dataOf(cmd), send, 'the 8-byte struct itself is the target');
  t.deepEqual(kvm_sev_cmd.decode(cmd.bytes), { id: 22, data: 0n, error: 0, sev_fd: 7 }, 'the same 24 bytes as upstream');
  t.is(dataOf(LOCAL_MIGRATION_2021.kvm_sev_cmd.arg({ id: 22, data: {} })).bytes.byteLength, 8, 'a plain object becomes LOCAL_SEND');
  const recv = dataOf(LOCAL_MIGRATION_2021.kvm_sev_cmd.arg({ id: 23, data: { info_token: 5n } }));
  t.deepEqual(kvm_sev_local_receive.decode(recv.bytes), { info_token: 5n, handle: 0 });
  code(t, () => LOCAL_MIGRATION_2021.kvm_sev_cmd.arg({ id: 22, data: { vmsa_features: 1n } }), 'ERR_INVALID_ARG_VALUE');

  for (let id = 0; id < 256; id++) {
    if (id === 22 || id === 23) continue;
    t.is(LOCAL_MIGRATION_2021.struct(id), sevCommandStruct(id), `id ${id}`);
    t.is(LOCAL_MIGRATION_2021.commandName(id), UPSTREAM.commandName(id), `id ${id}`);
  }
  const start = LOCAL_MIGRATION_2021.kvm_sev_cmd.arg({ id: KVM_SEV.LAUNCH_START, data: { policy: 1 } });
  t.deepEqual(kvm_sev_launch_start.decode(dataOf(start).bytes), kvm_sev_launch_start.decode(kvm_sev_launch_start.encode({ policy: 1 })));
});

test('tables: one instance per id pair, compared by ids; collisions with upstream only by explicit choice', (t) => {
  t.is(SevCommandTable.withLocalMigration({ profile: 'local-migration-2021' }), LOCAL_MIGRATION_2021);
  t.is(SevCommandTable.withLocalMigration({ send: 22, receive: 23, allowUpstreamCollision: true }), LOCAL_MIGRATION_2021);
  code(t, () => SevCommandTable.withLocalMigration({ send: 22, receive: 23 }), 'ERR_INVALID_ARG_VALUE');
  code(t, () => SevCommandTable.withLocalMigration({ send: 200, receive: 200 }), 'ERR_INVALID_ARG_VALUE');
  const custom = SevCommandTable.withLocalMigration({ send: 200, receive: 201 });
  t.is(custom.commandName(200), 'LOCAL_SEND');
  t.is(custom.commandName(22), 'INIT2', 'upstream ids stay where the local ones are elsewhere');
  t.is(custom.struct(201), kvm_sev_local_receive);
  t.true(custom.equals(SevCommandTable.withLocalMigration({ send: 200, receive: 201 })));
  t.false(custom.equals(LOCAL_MIGRATION_2021));
  t.false(UPSTREAM.equals(LOCAL_MIGRATION_2021));
  t.true(UPSTREAM.equals(UPSTREAM));
  t.regex(LOCAL_MIGRATION_2021.name, /LOCAL_SEND 22, LOCAL_RECEIVE 23/);
  t.true(Object.isFrozen(LOCAL_MIGRATION_2021));
  code(t, () => UPSTREAM.struct('22' as never), 'ERR_INVALID_ARG_TYPE');
});
