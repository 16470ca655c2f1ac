/**
 * AMD Secure Processor firmware status codes: `enum sev_ret_code` of `<linux/psp-sev.h>` (7.2 list).
 *
 * The kernel puts these in `kvm_sev_cmd.error` / `sev_issue_cmd.error`; a non-zero status makes the
 * ioctl fail with EIO. Names are the kernel's without the `SEV_RET_` prefix.
 */

import { invalidArgType } from './errors.js';

/** Firmware status name → code. Includes the kernel's misspelt alias `INAVLID_CONFIG` (= INVALID_CONFIG, 0x03). */
export const SEV_RET = Object.freeze({
  /** Linux only: the firmware was never called (e.g. the kernel failed before issuing the command). */
  NO_FW_CALL: -1,
  SUCCESS: 0x00,
  INVALID_PLATFORM_STATE: 0x01,
  INVALID_GUEST_STATE: 0x02,
  INVALID_CONFIG: 0x03,
  /** The kernel's own spelling (`SEV_RET_INAVLID_CONFIG`), kept so code ported from C still finds it. */
  INAVLID_CONFIG: 0x03,
  INVALID_LEN: 0x04,
  ALREADY_OWNED: 0x05,
  INVALID_CERTIFICATE: 0x06,
  POLICY_FAILURE: 0x07,
  INACTIVE: 0x08,
  INVALID_ADDRESS: 0x09,
  BAD_SIGNATURE: 0x0a,
  BAD_MEASUREMENT: 0x0b,
  ASID_OWNED: 0x0c,
  INVALID_ASID: 0x0d,
  WBINVD_REQUIRED: 0x0e,
  DFFLUSH_REQUIRED: 0x0f,
  INVALID_GUEST: 0x10,
  INVALID_COMMAND: 0x11,
  ACTIVE: 0x12,
  HWSEV_RET_PLATFORM: 0x13,
  HWSEV_RET_UNSAFE: 0x14,
  UNSUPPORTED: 0x15,
  INVALID_PARAM: 0x16,
  RESOURCE_LIMIT: 0x17,
  SECURE_DATA_INVALID: 0x18,
  INVALID_PAGE_SIZE: 0x19,
  INVALID_PAGE_STATE: 0x1a,
  INVALID_MDATA_ENTRY: 0x1b,
  INVALID_PAGE_OWNER: 0x1c,
  AEAD_OFLOW: 0x1d,
  EXIT_RING_BUFFER: 0x1f,
  RMP_INIT_REQUIRED: 0x20,
  BAD_SVN: 0x21,
  BAD_VERSION: 0x22,
  SHUTDOWN_REQUIRED: 0x23,
  UPDATE_FAILED: 0x24,
  RESTORE_REQUIRED: 0x25,
  RMP_INITIALIZATION_FAILED: 0x26,
  INVALID_KEY: 0x27,
  SHUTDOWN_INCOMPLETE: 0x28,
  INCORRECT_BUFFER_LENGTH: 0x30,
  EXPAND_BUFFER_LENGTH_REQUEST: 0x31,
  SPDM_REQUEST: 0x32,
  SPDM_ERROR: 0x33,
  SEV_STATUS_ERR_IN_DEV_CONN: 0x35,
  INVALID_DEV_CTX: 0x36,
  INVALID_TDI_CTX: 0x37,
  INVALID_TDI: 0x38,
  RECLAIM_REQUIRED: 0x39,
  IN_USE: 0x3a,
  INVALID_DEV_STATE: 0x3b,
  INVALID_TDI_STATE: 0x3c,
  DEV_CERT_CHANGED: 0x3d,
  RESYNC_REQ: 0x3e,
  RESPONSE_TOO_LARGE: 0x3f,
} as const);

export type SevRetName = keyof typeof SEV_RET;

/** `SEV_RET_MAX` of the 7.2 header (one past the last code). 6.1 has 0x19, 6.12 0x28. */
export const SEV_RET_MAX = 0x40;

const DESCRIPTIONS: Readonly<Record<number, string>> = {
  [-1]: 'The firmware was not called',
  0x00: 'Success',
  0x01: 'Platform state is invalid',
  0x02: 'Guest state is invalid',
  0x03: 'Platform configuration is invalid',
  0x04: 'Buffer too small',
  0x05: 'Platform is already owned',
  0x06: 'Certificate is invalid',
  0x07: 'Request is not allowed by guest policy',
  0x08: 'Guest is not active',
  0x09: 'Invalid address',
  0x0a: 'Bad signature',
  0x0b: 'Bad measurement',
  0x0c: 'ASID is already owned',
  0x0d: 'Invalid ASID',
  0x0e: 'WBINVD is required',
  0x0f: 'DF_FLUSH is required',
  0x10: 'Guest handle is invalid',
  0x11: 'Invalid command',
  0x12: 'Guest is active',
  0x13: 'Hardware error',
  0x14: 'Hardware unsafe',
  0x15: 'Feature not supported',
  0x16: 'Invalid parameter',
  0x17: 'Required firmware resource depleted',
  0x18: 'Part-specific integrity check failure',
  0x19: 'Invalid page size',
  0x1a: 'Invalid page state',
  0x1b: 'Invalid metadata entry',
  0x1c: 'Invalid page owner',
  0x1d: 'AEAD algorithm would have overflowed',
  0x1f: 'Exited the ring buffer',
  0x20: 'The RMP must be initialised first',
  0x21: 'SVN of the provided image is lower than the committed SVN',
  0x22: 'Firmware version anti-rollback check failed',
  0x23: 'A shutdown is required',
  0x24: 'Firmware update failed',
  0x25: 'A restore is required',
  0x26: 'RMP initialisation failed',
  0x27: 'The key requested is invalid',
  0x28: 'Shutdown did not complete',
  0x30: 'Incorrect buffer length',
  0x31: 'Buffer length must be expanded',
  0x32: 'An SPDM request is pending',
  0x33: 'SPDM error',
  0x35: 'Error in device connection',
  0x36: 'Invalid device context',
  0x37: 'Invalid TDI context',
  0x38: 'Invalid TDI',
  0x39: 'A reclaim is required',
  0x3a: 'Resource in use',
  0x3b: 'Invalid device state',
  0x3c: 'Invalid TDI state',
  0x3d: 'Device certificate changed',
  0x3e: 'A resync is required',
  0x3f: 'Response too large',
};

const NAMES = new Map<number, string>();
for (const [name, code] of Object.entries(SEV_RET)) {
  if (name === 'INAVLID_CONFIG') continue; // prefer the correct spelling for reverse lookups
  NAMES.set(code, name);
}

function checkCode(code: unknown): asserts code is number {
  if (typeof code !== 'number') throw invalidArgType('code', 'number', code);
}

function hex(code: number): string {
  const h = Math.abs(code).toString(16).toUpperCase().padStart(2, '0');
  return code < 0 ? `-0x${h}` : `0x${h}`;
}

/** The status name (`2` → `'INVALID_GUEST_STATE'`); unknown codes give `'UNKNOWN_0x1E'`. */
export function sevStatusName(code: number): string {
  checkCode(code);
  return NAMES.get(code) ?? `UNKNOWN_${hex(code)}`;
}

/** A short human sentence for a status (`7` → `'Request is not allowed by guest policy'`). */
export function sevStatusDescription(code: number): string {
  checkCode(code);
  return DESCRIPTIONS[code] ?? `Unknown firmware status ${hex(code)}`;
}

/** True if `code` is one of the listed statuses. */
export function isKnownSevStatus(code: number): boolean {
  return NAMES.has(code);
}
