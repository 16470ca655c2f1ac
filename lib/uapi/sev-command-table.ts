/**
 * KVM_SEV command-id tables: for each `kvm_sev_cmd.id`, the command's name and the struct KVM reads
 * through `kvm_sev_cmd.data`. Upstream Linux has one table (`enum sev_cmd_id`, {@link KVM_SEV}, and
 * `arch/x86/kvm/svm/sev.c: sev_mem_enc_ioctl()`). A kernel carrying the never-merged 2021
 * local-migration patch (local-migration-structs.ts) has LOCAL_SEND/LOCAL_RECEIVE at ids 22/23, and
 * 22 is KVM_SEV_INIT2 upstream since 6.10: one id, two commands with structs of different sizes. So
 * the table is a property of the kernel behind a VM fd, and the Backend contract carries it per VM:
 * `backend.sevCommandTable(vm)` and `backend.setSevCommandTable(vm, table)`.
 *
 * A table is the upstream one, optionally with the two local-migration commands at ids of their own
 * (which shadow whatever upstream has there): exactly what a backend can be told.
 *
 * ```ts
 * import { MockHost } from 'kvm-sev/mock';
 * import { KVM_CREATE_VM } from 'kvm-sev/uapi';
 * const backend = new MockHost({ kernel: 'local-migration-2021' });
 * const kvm = backend.open('/dev/kvm');
 * const vmFd = backend.ioctlFd(kvm, KVM_CREATE_VM, 0);
 * const table = backend.sevCommandTable(vmFd); // the mock: its kernel profile's; native: what was set
 * console.log(table.commandName(22), table.struct(22)?.size); // LOCAL_SEND 8 (KVM_SEV_INIT2, 48 bytes, upstream)
 * vmFd.close();
 * kvm.close();
 * ```
 */
import type { AnyStructCodec } from './codec.js';
import { sevCommandName } from './constants.js';
import { invalidArgType } from './errors.js';
import {
  kvm_sev_local_receive,
  kvm_sev_local_send,
  localMigrationIds,
  type LocalMigrationIds,
  type LocalMigrationSource,
} from './local-migration-structs.js';
import { defineKvmSevCmd, kvm_sev_cmd, sevCommandStruct, type KvmSevCmdCodec } from './sev-structs.js';

/** One kernel's KVM_SEV command ids. Compare with {@link SevCommandTable.equals}; instances are shared per id pair. */
export class SevCommandTable {
  private static readonly byIds = new Map<string, SevCommandTable>();

  /** Upstream Linux (`enum sev_cmd_id`). */
  static readonly UPSTREAM: SevCommandTable = new SevCommandTable(undefined, kvm_sev_cmd);

  /** A kernel with the 2021 patch as posted: LOCAL_SEND 22 (where upstream has INIT2), LOCAL_RECEIVE 23. */
  static readonly LOCAL_MIGRATION_2021: SevCommandTable = SevCommandTable.withLocalMigration({ profile: 'local-migration-2021' });

  /**
   * The upstream table with LOCAL_SEND/LOCAL_RECEIVE at the ids `source` resolves to
   * ({@link localMigrationIds}: ids that collide with an upstream command need the profile or
   * `allowUpstreamCollision: true`).
   */
  static withLocalMigration(source: LocalMigrationSource): SevCommandTable {
    const ids = localMigrationIds(source);
    const key = `${ids.LOCAL_SEND}/${ids.LOCAL_RECEIVE}`;
    let t = SevCommandTable.byIds.get(key);
    if (!t) {
      t = new SevCommandTable(ids, undefined);
      SevCommandTable.byIds.set(key, t);
    }
    return t;
  }

  /** The local-migration ids, or undefined for the upstream table. */
  readonly localMigration: LocalMigrationIds | undefined;
  /** `'upstream'`, or `'upstream with LOCAL_SEND 22, LOCAL_RECEIVE 23'`: for messages. */
  readonly name: string;
  /** `struct kvm_sev_cmd` whose `arg()` lays out `data` by this table. */
  readonly kvm_sev_cmd: KvmSevCmdCodec;

  private constructor(ids: LocalMigrationIds | undefined, codec: KvmSevCmdCodec | undefined) {
    this.localMigration = ids;
    this.name = ids ? `upstream with LOCAL_SEND ${ids.LOCAL_SEND}, LOCAL_RECEIVE ${ids.LOCAL_RECEIVE}` : 'upstream';
    this.kvm_sev_cmd = codec ?? defineKvmSevCmd((id) => this.struct(id));
    Object.freeze(this);
  }

  /**
   * The struct KVM reads through `data` for command `id`: a codec, `null` for a command that takes
   * none, `undefined` for an id this kernel does not know (see {@link sevCommandStruct}).
   */
  struct(id: number): AnyStructCodec | null | undefined {
    if (typeof id !== 'number') throw invalidArgType('id', 'number', id);
    const lm = this.localMigration;
    if (lm?.LOCAL_SEND === id) return kvm_sev_local_send;
    if (lm?.LOCAL_RECEIVE === id) return kvm_sev_local_receive;
    return sevCommandStruct(id);
  }

  /** `'INIT2'`, `'LOCAL_SEND'`…, without the `KVM_SEV_` prefix; undefined for an unknown id. */
  commandName(id: number): string | undefined {
    const lm = this.localMigration;
    if (lm?.LOCAL_SEND === id) return 'LOCAL_SEND';
    if (lm?.LOCAL_RECEIVE === id) return 'LOCAL_RECEIVE';
    return sevCommandName(id);
  }

  /** Same ids, same commands. */
  equals(other: SevCommandTable): boolean {
    const a = this.localMigration;
    const b = other.localMigration;
    return a === b || (a !== undefined && b !== undefined && a.LOCAL_SEND === b.LOCAL_SEND && a.LOCAL_RECEIVE === b.LOCAL_RECEIVE);
  }
}
