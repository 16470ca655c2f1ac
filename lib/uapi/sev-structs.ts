/**
 * SEV structs of the KVM uapi (`<linux/kvm.h>` ≤ 6.8, `<asm/kvm.h>` since 6.9): `kvm_sev_cmd`, the
 * argument of KVM_MEMORY_ENCRYPT_OP, and the per-command structs its `data` points at.
 *
 * The `padN` members are explicit in recent kernels and implicit (same offsets) in 6.1.
 * Layouts: arch/x86/include/uapi/asm/kvm.h (Linux 7.2), offsets and sizes as gcc computes them for x86_64.
 */

import { type AnyStructCodec, bytes, defineStruct, pad, ptr, u16, u32, u64, u8 } from './codec.js';
import { invalidArgType } from './errors.js';
import { KVM_SEV, KVM_SEV_SNP_FINISH_DATA_SIZE, KVM_SEV_SNP_ID_AUTH_SIZE, KVM_SEV_SNP_ID_BLOCK_SIZE } from './constants.js';

/** `struct kvm_sev_init` (6.10+): the argument of KVM_SEV_INIT2. */
export const kvm_sev_init = defineStruct(
  'kvm_sev_init',
  [
    ['vmsa_features', u64],
    ['flags', u32],
    ['ghcb_version', u16],
    ['pad1', pad(2)],
    ['pad2', pad(8 * 4)],
  ],
  { size: 48 },
);

/** `struct kvm_sev_launch_start` (in/out: `handle` is written back). */
export const kvm_sev_launch_start = defineStruct(
  'kvm_sev_launch_start',
  [
    ['handle', u32],
    ['policy', u32],
    ['dh_uaddr', ptr({ len: 'dh_len' })],
    ['dh_len', u32],
    ['pad0', pad(4)],
    ['session_uaddr', ptr({ len: 'session_len' })],
    ['session_len', u32],
    ['pad1', pad(4)],
  ],
  { size: 40 },
);

/** `struct kvm_sev_launch_update_data`: `uaddr` is guest memory, encrypted in place. */
export const kvm_sev_launch_update_data = defineStruct(
  'kvm_sev_launch_update_data',
  [
    ['uaddr', ptr({ len: 'len' })],
    ['len', u32],
    ['pad0', pad(4)],
  ],
  { size: 16 },
);

/** `struct kvm_sev_launch_secret`: packet header, guest destination, transport blob. */
export const kvm_sev_launch_secret = defineStruct(
  'kvm_sev_launch_secret',
  [
    ['hdr_uaddr', ptr({ len: 'hdr_len' })],
    ['hdr_len', u32],
    ['pad0', pad(4)],
    ['guest_uaddr', ptr({ len: 'guest_len' })],
    ['guest_len', u32],
    ['pad1', pad(4)],
    ['trans_uaddr', ptr({ len: 'trans_len' })],
    ['trans_len', u32],
    ['pad2', pad(4)],
  ],
  { size: 48 },
);

/** `struct kvm_sev_launch_measure` (in/out `len`; `len` 0 is a length query). */
export const kvm_sev_launch_measure = defineStruct(
  'kvm_sev_launch_measure',
  [
    ['uaddr', ptr({ len: 'len' })],
    ['len', u32],
    ['pad0', pad(4)],
  ],
  { size: 16 },
);

/** `struct kvm_sev_guest_status` (12 bytes, alignment 4; `state` is a u32 whatever the doc says). */
export const kvm_sev_guest_status = defineStruct(
  'kvm_sev_guest_status',
  [
    ['handle', u32],
    ['policy', u32],
    ['state', u32],
  ],
  { size: 12 },
);

/** `struct kvm_sev_dbg` (DBG_DECRYPT / DBG_ENCRYPT): both buffers share `len`. */
export const kvm_sev_dbg = defineStruct(
  'kvm_sev_dbg',
  [
    ['src_uaddr', ptr({ len: 'len' })],
    ['dst_uaddr', ptr({ len: 'len' })],
    ['len', u32],
    ['pad0', pad(4)],
  ],
  { size: 24 },
);

/** `struct kvm_sev_attestation_report` (GET_ATTESTATION_REPORT; `len` 0 is a length query). */
export const kvm_sev_attestation_report = defineStruct(
  'kvm_sev_attestation_report',
  [
    ['mnonce', bytes(16)],
    ['uaddr', ptr({ len: 'len' })],
    ['len', u32],
    ['pad0', pad(4)],
  ],
  { size: 32 },
);

/** `struct kvm_sev_send_start` (`session_len` 0 is a length query). */
export const kvm_sev_send_start = defineStruct(
  'kvm_sev_send_start',
  [
    ['policy', u32],
    ['pad0', pad(4)],
    ['pdh_cert_uaddr', ptr({ len: 'pdh_cert_len' })],
    ['pdh_cert_len', u32],
    ['pad1', pad(4)],
    ['plat_certs_uaddr', ptr({ len: 'plat_certs_len' })],
    ['plat_certs_len', u32],
    ['pad2', pad(4)],
    ['amd_certs_uaddr', ptr({ len: 'amd_certs_len' })],
    ['amd_certs_len', u32],
    ['pad3', pad(4)],
    ['session_uaddr', ptr({ len: 'session_len' })],
    ['session_len', u32],
    ['pad4', pad(4)],
  ],
  { size: 72 },
);

const hdrGuestTrans = [
  ['hdr_uaddr', ptr({ len: 'hdr_len' })],
  ['hdr_len', u32],
  ['pad0', pad(4)],
  ['guest_uaddr', ptr({ len: 'guest_len' })],
  ['guest_len', u32],
  ['pad1', pad(4)],
  ['trans_uaddr', ptr({ len: 'trans_len' })],
  ['trans_len', u32],
  ['pad2', pad(4)],
] as const;

/** `struct kvm_sev_send_update_data` (same layout as launch_secret; `hdr_len`/`trans_len` 0 is a length query). */
export const kvm_sev_send_update_data = defineStruct('kvm_sev_send_update_data', hdrGuestTrans, { size: 48 });

/** `struct kvm_sev_receive_start` (in/out: `handle` is written back). */
export const kvm_sev_receive_start = defineStruct(
  'kvm_sev_receive_start',
  [
    ['handle', u32],
    ['policy', u32],
    ['pdh_uaddr', ptr({ len: 'pdh_len' })],
    ['pdh_len', u32],
    ['pad0', pad(4)],
    ['session_uaddr', ptr({ len: 'session_len' })],
    ['session_len', u32],
    ['pad1', pad(4)],
  ],
  { size: 40 },
);

/** `struct kvm_sev_receive_update_data` (same layout as launch_secret). */
export const kvm_sev_receive_update_data = defineStruct('kvm_sev_receive_update_data', hdrGuestTrans, { size: 48 });

/** `struct kvm_sev_snp_launch_start` (6.11+). `flags` must be 0; policy bit 17 must be 1. */
export const kvm_sev_snp_launch_start = defineStruct(
  'kvm_sev_snp_launch_start',
  [
    ['policy', u64],
    ['gosvw', bytes(16)],
    ['flags', u16],
    ['pad0', pad(6)],
    ['pad1', pad(4 * 8)],
  ],
  { size: 64 },
);

/**
 * `struct kvm_sev_snp_launch_update` (6.11+). `len` is a u64 byte count; KVM may do part of the range
 * and write back the advanced `gfn_start`, `uaddr` and `len`.
 */
export const kvm_sev_snp_launch_update = defineStruct(
  'kvm_sev_snp_launch_update',
  [
    ['gfn_start', u64],
    ['uaddr', ptr({ len: 'len' })],
    ['len', u64],
    ['type', u8],
    ['pad0', pad(1)],
    ['flags', u16],
    ['pad1', pad(4)],
    ['pad2', pad(4 * 8)],
  ],
  { size: 64 },
);

/** `struct kvm_sev_snp_launch_finish` (6.11+): optional ID block (96 bytes) and ID auth (4096 bytes). */
export const kvm_sev_snp_launch_finish = defineStruct(
  'kvm_sev_snp_launch_finish',
  [
    ['id_block_uaddr', ptr({ fixedLen: KVM_SEV_SNP_ID_BLOCK_SIZE })],
    ['id_auth_uaddr', ptr({ fixedLen: KVM_SEV_SNP_ID_AUTH_SIZE })],
    ['id_block_en', u8],
    ['auth_key_en', u8],
    ['vcek_disabled', u8],
    ['host_data', bytes(KVM_SEV_SNP_FINISH_DATA_SIZE)],
    ['pad0', pad(3)],
    ['flags', u16],
    ['pad1', pad(4 * 8)],
  ],
  { size: 88 },
);

/**
 * The struct KVM reads through `kvm_sev_cmd.data` for command `id`:
 * - a codec for commands with a parameter struct;
 * - `null` for known commands that take none (INIT, ES_INIT, LAUNCH_UPDATE_VMSA, LAUNCH_FINISH,
 *   SEND_FINISH, SEND_CANCEL, RECEIVE_FINISH, SNP_ENABLE_REQ_CERTS) and for the declared but
 *   unimplemented SEND_UPDATE_VMSA, RECEIVE_UPDATE_VMSA and CERT_EXPORT (KVM rejects them before reading);
 * - `undefined` for ids KVM does not know.
 */
export function sevCommandStruct(id: number): AnyStructCodec | null | undefined {
  if (typeof id !== 'number') throw invalidArgType('id', 'number', id);
  switch (id) {
    case KVM_SEV.LAUNCH_START:
      return kvm_sev_launch_start;
    case KVM_SEV.LAUNCH_UPDATE_DATA:
      return kvm_sev_launch_update_data;
    case KVM_SEV.LAUNCH_SECRET:
      return kvm_sev_launch_secret;
    case KVM_SEV.LAUNCH_MEASURE:
      return kvm_sev_launch_measure;
    case KVM_SEV.SEND_START:
      return kvm_sev_send_start;
    case KVM_SEV.SEND_UPDATE_DATA:
      return kvm_sev_send_update_data;
    case KVM_SEV.RECEIVE_START:
      return kvm_sev_receive_start;
    case KVM_SEV.RECEIVE_UPDATE_DATA:
      return kvm_sev_receive_update_data;
    case KVM_SEV.GUEST_STATUS:
      return kvm_sev_guest_status;
    case KVM_SEV.DBG_DECRYPT:
    case KVM_SEV.DBG_ENCRYPT:
      return kvm_sev_dbg;
    case KVM_SEV.GET_ATTESTATION_REPORT:
      return kvm_sev_attestation_report;
    case KVM_SEV.INIT2:
      return kvm_sev_init;
    case KVM_SEV.SNP_LAUNCH_START:
      return kvm_sev_snp_launch_start;
    case KVM_SEV.SNP_LAUNCH_UPDATE:
      return kvm_sev_snp_launch_update;
    case KVM_SEV.SNP_LAUNCH_FINISH:
      return kvm_sev_snp_launch_finish;
    case KVM_SEV.INIT:
    case KVM_SEV.ES_INIT:
    case KVM_SEV.LAUNCH_UPDATE_VMSA:
    case KVM_SEV.LAUNCH_FINISH:
    case KVM_SEV.SEND_UPDATE_VMSA:
    case KVM_SEV.SEND_FINISH:
    case KVM_SEV.RECEIVE_UPDATE_VMSA:
    case KVM_SEV.RECEIVE_FINISH:
    case KVM_SEV.CERT_EXPORT:
    case KVM_SEV.SEND_CANCEL:
    case KVM_SEV.SNP_ENABLE_REQ_CERTS:
      return null;
    default:
      return undefined;
  }
}

/**
 * `struct kvm_sev_cmd` whose `data` is laid out by `select` (a command-id table, see
 * sev-command-table.ts): the same 24 bytes for every kernel, only the struct behind `data` differs.
 */
export function defineKvmSevCmd(select: (id: number) => AnyStructCodec | null | undefined) {
  return defineStruct(
    'kvm_sev_cmd',
    [
      ['id', u32],
      ['pad0', pad(4)],
      ['data', ptr({ selectBy: 'id', select })],
      ['error', u32],
      ['sev_fd', u32],
    ],
    { size: 24 },
  );
}

/** A `kvm_sev_cmd` codec (its `data` laid out by one command-id table). */
export type KvmSevCmdCodec = ReturnType<typeof defineKvmSevCmd>;

/**
 * `struct kvm_sev_cmd`: KVM_MEMORY_ENCRYPT_OP's real argument (24 bytes, although the ioctl number
 * says 8). `data` points at the struct {@link sevCommandStruct} gives for `id` (the upstream table;
 * a kernel with other ids has its own codec: `SevCommandTable.kvm_sev_cmd`); `arg()` accepts that
 * struct's `arg()` result or a plain object, which it encodes. `error` gets the firmware status.
 * `sev_fd` is an open /dev/sev fd (LAUNCH_START, RECEIVE_START, SNP_LAUNCH_START/UPDATE use it).
 */
export const kvm_sev_cmd: KvmSevCmdCodec = defineKvmSevCmd(sevCommandStruct);
