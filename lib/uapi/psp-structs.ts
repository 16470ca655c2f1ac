/**
 * /dev/sev structs of `<linux/psp-sev.h>`. All are `__attribute__((packed))`, so 64-bit members
 * can sit at odd offsets (sev_issue_cmd.data at 4).
 */

import { type AnyStructCodec, bytes, defineStruct, pad, ptr, u32, u64, u8 } from './codec.js';
import { invalidArgType } from './errors.js';
import { SEV_CMD } from './constants.js';

/** `struct sev_user_data_status` (SEV_PLATFORM_STATUS). `flags` bit 8 = SEV_STATUS_FLAGS_CONFIG_ES, bit 0 = owned. */
export const sev_user_data_status = defineStruct(
  'sev_user_data_status',
  [
    ['api_major', u8],
    ['api_minor', u8],
    ['state', u8],
    ['flags', u32],
    ['build', u8],
    ['guest_count', u32],
  ],
  { packed: true, size: 12 },
);

/** `struct sev_user_data_pek_csr` (SEV_PEK_CSR; address 0 or length 0 is a length query). */
export const sev_user_data_pek_csr = defineStruct(
  'sev_user_data_pek_csr',
  [
    ['address', ptr({ len: 'length' })],
    ['length', u32],
  ],
  { packed: true, size: 12 },
);

/** `struct sev_user_data_pek_cert_import` (SEV_PEK_CERT_IMPORT). */
export const sev_user_data_pek_cert_import = defineStruct(
  'sev_user_data_pek_cert_import',
  [
    ['pek_cert_address', ptr({ len: 'pek_cert_len' })],
    ['pek_cert_len', u32],
    ['oca_cert_address', ptr({ len: 'oca_cert_len' })],
    ['oca_cert_len', u32],
  ],
  { packed: true, size: 24 },
);

/** `struct sev_user_data_pdh_cert_export` (SEV_PDH_CERT_EXPORT; any field 0 is a length query). */
export const sev_user_data_pdh_cert_export = defineStruct(
  'sev_user_data_pdh_cert_export',
  [
    ['pdh_cert_address', ptr({ len: 'pdh_cert_len' })],
    ['pdh_cert_len', u32],
    ['cert_chain_address', ptr({ len: 'cert_chain_len' })],
    ['cert_chain_len', u32],
  ],
  { packed: true, size: 24 },
);

/** `struct sev_user_data_get_id` (SEV_GET_ID, deprecated): two 64-byte chip ids. */
export const sev_user_data_get_id = defineStruct(
  'sev_user_data_get_id',
  [
    ['socket1', bytes(64)],
    ['socket2', bytes(64)],
  ],
  { packed: true, size: 128 },
);

/** `struct sev_user_data_get_id2` (SEV_GET_ID2; a NULL address or 0 length is a length query). */
export const sev_user_data_get_id2 = defineStruct(
  'sev_user_data_get_id2',
  [
    ['address', ptr({ len: 'length' })],
    ['length', u32],
  ],
  { packed: true, size: 12 },
);

/**
 * `struct sev_user_data_snp_status` (SNP_PLATFORM_STATUS, 6.11+). The C bitfields are exposed raw:
 * `is_rmp_initialized` is the whole byte 3 (bit 0 = the flag), `feature_flags` the u32 at 8
 * (bits: see SNP_STATUS_FEATURE).
 */
export const sev_user_data_snp_status = defineStruct(
  'sev_user_data_snp_status',
  [
    ['api_major', u8],
    ['api_minor', u8],
    ['state', u8],
    ['is_rmp_initialized', u8],
    ['build_id', u32],
    ['feature_flags', u32],
    ['guest_count', u32],
    ['current_tcb_version', u64],
    ['reported_tcb_version', u64],
  ],
  { packed: true, size: 32 },
);

/** `struct sev_user_data_snp_config` (SNP_SET_CONFIG, 6.11+). `flags`: mask_chip_id bit 0, mask_chip_key bit 1. */
export const sev_user_data_snp_config = defineStruct(
  'sev_user_data_snp_config',
  [
    ['reported_tcb', u64],
    ['flags', u32],
    ['rsvd1', pad(52)],
  ],
  { packed: true, size: 64 },
);

/** Size of `struct sev_user_data_snp_wrapped_vlek_hashstick`. */
export const SEV_SNP_WRAPPED_VLEK_HASHSTICK_SIZE = 432;

/** `struct sev_user_data_snp_vlek_load` (SNP_VLEK_LOAD, 6.11+). `len` must be 16, the version 0. */
export const sev_user_data_snp_vlek_load = defineStruct(
  'sev_user_data_snp_vlek_load',
  [
    ['len', u32],
    ['vlek_wrapped_version', u8],
    ['rsvd', pad(3)],
    ['vlek_wrapped_address', ptr({ fixedLen: SEV_SNP_WRAPPED_VLEK_HASHSTICK_SIZE })],
  ],
  { packed: true, size: 16 },
);

/**
 * The struct the PSP driver reads/writes through `sev_issue_cmd.data` for platform command `cmd`:
 * a codec, `null` for commands without data (FACTORY_RESET, PEK_GEN, PDH_GEN, SNP_COMMIT), `undefined`
 * for unknown commands.
 */
export function sevPlatformCommandStruct(cmd: number): AnyStructCodec | null | undefined {
  if (typeof cmd !== 'number') throw invalidArgType('cmd', 'number', cmd);
  switch (cmd) {
    case SEV_CMD.PLATFORM_STATUS:
      return sev_user_data_status;
    case SEV_CMD.PEK_CSR:
      return sev_user_data_pek_csr;
    case SEV_CMD.PDH_CERT_EXPORT:
      return sev_user_data_pdh_cert_export;
    case SEV_CMD.PEK_CERT_IMPORT:
      return sev_user_data_pek_cert_import;
    case SEV_CMD.GET_ID:
      return sev_user_data_get_id;
    case SEV_CMD.GET_ID2:
      return sev_user_data_get_id2;
    case SEV_CMD.SNP_PLATFORM_STATUS:
      return sev_user_data_snp_status;
    case SEV_CMD.SNP_SET_CONFIG:
      return sev_user_data_snp_config;
    case SEV_CMD.SNP_VLEK_LOAD:
      return sev_user_data_snp_vlek_load;
    case SEV_CMD.FACTORY_RESET:
    case SEV_CMD.PEK_GEN:
    case SEV_CMD.PDH_GEN:
    case SEV_CMD.SNP_COMMIT:
      return null;
    default:
      return undefined;
  }
}

/** `struct sev_issue_cmd` (SEV_ISSUE_CMD; packed, 16 bytes): `data` points at {@link sevPlatformCommandStruct}(cmd). */
export const sev_issue_cmd = defineStruct(
  'sev_issue_cmd',
  [
    ['cmd', u32],
    ['data', ptr({ selectBy: 'cmd', select: sevPlatformCommandStruct })],
    ['error', u32],
  ],
  { packed: true, size: 16 },
);
