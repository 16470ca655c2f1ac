/**
 * The proposed 2021 SEV local-migration commands (never merged): "[PATCH 2/3] KVM, SEV: Add support
 * for SEV local migration", Peter Gonda, 2021-06-21, <20210621163118.1040170-3-pgonda@google.com>.
 *
 * The design was replaced upstream by KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM (cap 206). It is modelled here
 * only for backends that emulate that historical kernel, and its command ids are deliberately NOT
 * constants: the patch appended LOCAL_SEND and LOCAL_RECEIVE after SEND_CANCEL (21), giving them 22
 * and 23, and **22 became KVM_SEV_INIT2 in mainline 6.10**. A backend that treated 22 as LOCAL_SEND
 * unconditionally would turn every INIT2 into a LOCAL_SEND. So the ids only exist behind an explicit
 * choice: {@link localMigrationIds}.
 */

import { defineStruct, pad, u32, u64 } from './codec.js';
import { invalidArgType, invalidArgValue, outOfRange } from './errors.js';
import { KVM_SEV, sevCommandName } from './constants.js';

/** `struct kvm_sev_local_send` (proposed): KVM writes back a random 64-bit token (0 = none). */
export const kvm_sev_local_send = defineStruct('kvm_sev_local_send', [['info_token', u64]], { size: 8 });

/** `struct kvm_sev_local_receive` (proposed): the token from LOCAL_SEND in, the guest handle out. */
export const kvm_sev_local_receive = defineStruct(
  'kvm_sev_local_receive',
  [
    ['info_token', u64],
    ['handle', u32],
    ['pad0', pad(4)],
  ],
  { size: 16 },
);

/** The command ids a backend uses for the two local-migration commands. */
export interface LocalMigrationIds {
  readonly LOCAL_SEND: number;
  readonly LOCAL_RECEIVE: number;
}

/** Where the ids come from: the patch's own numbering, or explicit numbers. */
export type LocalMigrationSource =
  | { readonly profile: 'local-migration-2021' }
  | { readonly send: number; readonly receive: number; readonly allowUpstreamCollision?: boolean };

/**
 * Resolve the local-migration command ids.
 * - `{ profile: 'local-migration-2021' }`: the patch's numbering, `{ LOCAL_SEND: 22, LOCAL_RECEIVE: 23 }`.
 *   Choosing this profile is the opt-in to 22 shadowing KVM_SEV_INIT2.
 * - `{ send, receive }`: explicit u32 ids, distinct, and not equal to any upstream `KVM_SEV_*` id
 *   unless `allowUpstreamCollision: true` (then the caller owns the ambiguity).
 */
export function localMigrationIds(source: LocalMigrationSource): LocalMigrationIds {
  if (typeof source !== 'object' || source === null) throw invalidArgType('source', 'object', source);
  if ('profile' in source) {
    if (source.profile !== 'local-migration-2021') {
      throw invalidArgValue('source.profile', source.profile, "must be 'local-migration-2021'");
    }
    return Object.freeze({ LOCAL_SEND: KVM_SEV.SEND_CANCEL + 1, LOCAL_RECEIVE: KVM_SEV.SEND_CANCEL + 2 });
  }
  const { send, receive, allowUpstreamCollision = false } = source as { send: unknown; receive: unknown; allowUpstreamCollision?: unknown };
  if (typeof allowUpstreamCollision !== 'boolean') {
    throw invalidArgType('source.allowUpstreamCollision', 'boolean', allowUpstreamCollision);
  }
  const check = (name: string, v: unknown): number => {
    if (typeof v !== 'number') throw invalidArgType(name, 'number', v);
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw outOfRange(name, 'an integer >= 0 && <= 4294967295', v);
    const upstream = sevCommandName(v);
    if (upstream !== undefined && !allowUpstreamCollision) {
      throw invalidArgValue(
        name,
        v,
        `collides with the upstream command KVM_SEV_${upstream} (pass allowUpstreamCollision: true to accept that)`,
      );
    }
    return v;
  };
  const s = check('source.send', send);
  const r = check('source.receive', receive);
  if (s === r) throw invalidArgValue('source.receive', r, 'must differ from source.send');
  return Object.freeze({ LOCAL_SEND: s, LOCAL_RECEIVE: r });
}

/** The struct for a local-migration command id under `ids`, or undefined if `id` is neither. */
export function localMigrationStruct(
  id: number,
  ids: LocalMigrationIds,
): typeof kvm_sev_local_send | typeof kvm_sev_local_receive | undefined {
  if (id === ids.LOCAL_SEND) return kvm_sev_local_send;
  if (id === ids.LOCAL_RECEIVE) return kvm_sev_local_receive;
  return undefined;
}
