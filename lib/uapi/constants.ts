/**
 * KVM and SEV constants, matching the x86_64 kernel uapi (`<linux/kvm.h>`, `<asm/kvm.h>`,
 * `<linux/psp-sev.h>`) as of Linux 7.2. Values newer than Debian 12's 6.1 headers come from the
 * 6.x / 7.2 uapi headers (include/uapi/linux/kvm.h, arch/x86/include/uapi/asm/kvm.h,
 * include/uapi/linux/psp-sev.h) and are marked "(6.x+)".
 *
 * Naming: grouped enums are frozen objects keyed by the kernel name without its common prefix
 * (`KVM_CAP.VM_TYPES` is `KVM_CAP_VM_TYPES`); single constants keep the full kernel name.
 * Values that live in 64-bit fields (vmsa_features, SNP policy) are bigints so they can be compared
 * with decoded u64 fields directly.
 */

import { invalidArgType } from './errors.js';

/** `KVMIO`: the ioctl type byte of every KVM ioctl. */
export const KVMIO = 0xae;
/** `SEV_IOC_TYPE`: the ioctl type byte of /dev/sev (`'S'`). */
export const SEV_IOC_TYPE = 0x53;
/** `KVM_API_VERSION`: what KVM_GET_API_VERSION returns; any other value is an incompatible kernel. */
export const KVM_API_VERSION = 12;

function reverse<T extends Record<string, number>>(obj: T, skip: readonly string[] = []): ReadonlyMap<number, keyof T & string> {
  const m = new Map<number, keyof T & string>();
  for (const [k, v] of Object.entries(obj)) {
    if (skip.includes(k) || m.has(v)) continue;
    m.set(v, k);
  }
  return m;
}

function lookup<K extends string>(map: ReadonlyMap<number, K>, what: string, n: number): K | undefined {
  if (typeof n !== 'number') throw invalidArgType(what, 'number', n);
  return map.get(n);
}

// ------------------------------------------------------------------------------------------------
// KVM_MEMORY_ENCRYPT_OP command ids: `enum sev_cmd_id`

/**
 * `enum sev_cmd_id` (kvm_sev_cmd.id), without the `KVM_SEV_` prefix. Ids 10 (SEND_UPDATE_VMSA),
 * 14 (RECEIVE_UPDATE_VMSA) and 19 (CERT_EXPORT) are declared but not implemented by KVM (-EINVAL).
 * The proposed 2021 LOCAL_SEND/LOCAL_RECEIVE ids are deliberately absent: see local-migration.ts.
 */
export const KVM_SEV = Object.freeze({
  INIT: 0,
  ES_INIT: 1,
  LAUNCH_START: 2,
  LAUNCH_UPDATE_DATA: 3,
  LAUNCH_UPDATE_VMSA: 4,
  LAUNCH_SECRET: 5,
  LAUNCH_MEASURE: 6,
  LAUNCH_FINISH: 7,
  SEND_START: 8,
  SEND_UPDATE_DATA: 9,
  SEND_UPDATE_VMSA: 10,
  SEND_FINISH: 11,
  RECEIVE_START: 12,
  RECEIVE_UPDATE_DATA: 13,
  RECEIVE_UPDATE_VMSA: 14,
  RECEIVE_FINISH: 15,
  GUEST_STATUS: 16,
  DBG_DECRYPT: 17,
  DBG_ENCRYPT: 18,
  CERT_EXPORT: 19,
  GET_ATTESTATION_REPORT: 20,
  SEND_CANCEL: 21,
  /** (6.10+) */
  INIT2: 22,
  /** (6.11+) The SNP block starts at an explicit 100. */
  SNP_LAUNCH_START: 100,
  SNP_LAUNCH_UPDATE: 101,
  SNP_LAUNCH_FINISH: 102,
  /** (7.2; absent in 6.12) */
  SNP_ENABLE_REQ_CERTS: 103,
} as const);
export type KvmSevCommandName = keyof typeof KVM_SEV;

/** `KVM_SEV_NR_MAX` of 7.2 (6.12: 103; 6.1: 22). */
export const KVM_SEV_NR_MAX = 104;

const sevCommandNames = reverse(KVM_SEV);
/** `2` → `'LAUNCH_START'`; undefined for an id KVM does not define. */
export function sevCommandName(id: number): KvmSevCommandName | undefined {
  return lookup(sevCommandNames, 'id', id);
}

// ------------------------------------------------------------------------------------------------
// /dev/sev

/**
 * /dev/sev platform commands (`sev_issue_cmd.cmd`; the anonymous enum of `<linux/psp-sev.h>`), without the
 * `SEV_` prefix (`SNP_*` names are the kernel's as they are).
 */
export const SEV_CMD = Object.freeze({
  FACTORY_RESET: 0,
  PLATFORM_STATUS: 1,
  PEK_GEN: 2,
  PEK_CSR: 3,
  PDH_GEN: 4,
  PDH_CERT_EXPORT: 5,
  PEK_CERT_IMPORT: 6,
  /** Deprecated: use GET_ID2. */
  GET_ID: 7,
  GET_ID2: 8,
  /** (6.11+) */
  SNP_PLATFORM_STATUS: 9,
  SNP_COMMIT: 10,
  SNP_SET_CONFIG: 11,
  SNP_VLEK_LOAD: 12,
} as const);
export type SevPlatformCommandName = keyof typeof SEV_CMD;

/** `SEV_MAX` (6.12+: 13; 6.1: 9). The driver rejects `cmd >= SEV_MAX` with EINVAL. Not a command. */
export const SEV_MAX = 13;

const sevPlatformCommandNames = reverse(SEV_CMD);
/** `1` → `'PLATFORM_STATUS'`; undefined for unknown ids (SEV_MAX included). */
export function sevPlatformCommandName(cmd: number): SevPlatformCommandName | undefined {
  return lookup(sevPlatformCommandNames, 'cmd', cmd);
}

/**
 * The firmware's own command ids (`enum sev_cmd` of `include/linux/psp-sev.h`, `SEV_CMD_` prefix dropped):
 * what the mailbox carries, for a mock PSP. NOP, RING_BUFFER, COPY, ACTIVATE_EX, SWAP_OUT and SWAP_IN come
 * from the SEV API spec (the kernel never issues them).
 */
export const SEV_FW_CMD = Object.freeze({
  INIT: 0x01,
  SHUTDOWN: 0x02,
  FACTORY_RESET: 0x03,
  PLATFORM_STATUS: 0x04,
  PEK_GEN: 0x05,
  PEK_CSR: 0x06,
  PEK_CERT_IMPORT: 0x07,
  PDH_CERT_EXPORT: 0x08,
  PDH_GEN: 0x09,
  DF_FLUSH: 0x0a,
  DOWNLOAD_FIRMWARE: 0x0b,
  GET_ID: 0x0c,
  INIT_EX: 0x0d,
  NOP: 0x0e,
  RING_BUFFER: 0x0f,
  DECOMMISSION: 0x20,
  ACTIVATE: 0x21,
  DEACTIVATE: 0x22,
  GUEST_STATUS: 0x23,
  COPY: 0x24,
  ACTIVATE_EX: 0x25,
  LAUNCH_START: 0x30,
  LAUNCH_UPDATE_DATA: 0x31,
  LAUNCH_UPDATE_VMSA: 0x32,
  LAUNCH_MEASURE: 0x33,
  LAUNCH_UPDATE_SECRET: 0x34,
  LAUNCH_FINISH: 0x35,
  ATTESTATION_REPORT: 0x36,
  SEND_START: 0x40,
  SEND_UPDATE_DATA: 0x41,
  SEND_UPDATE_VMSA: 0x42,
  SEND_FINISH: 0x43,
  SEND_CANCEL: 0x44,
  RECEIVE_START: 0x50,
  RECEIVE_UPDATE_DATA: 0x51,
  RECEIVE_UPDATE_VMSA: 0x52,
  RECEIVE_FINISH: 0x53,
  DBG_DECRYPT: 0x60,
  DBG_ENCRYPT: 0x61,
  SWAP_OUT: 0x70,
  SWAP_IN: 0x71,
  SNP_PLATFORM_STATUS: 0x83,
  SNP_DF_FLUSH: 0x84,
  SNP_DECOMMISSION: 0x90,
  SNP_ACTIVATE: 0x91,
  SNP_GCTX_CREATE: 0x93,
  SNP_LAUNCH_START: 0xa0,
  SNP_LAUNCH_UPDATE: 0xa1,
  SNP_LAUNCH_FINISH: 0xa2,
  SNP_PAGE_RECLAIM: 0xc7,
  SNP_CONFIG: 0xc9,
} as const);
export type SevFirmwareCommandName = keyof typeof SEV_FW_CMD;

const sevFwCommandNames = reverse(SEV_FW_CMD);
/** `0x30` → `'LAUNCH_START'`; undefined if unknown. */
export function sevFirmwareCommandName(id: number): SevFirmwareCommandName | undefined {
  return lookup(sevFwCommandNames, 'id', id);
}

/** Platform state (`sev_user_data_status.state`, PSTATE). */
export const PSTATE = Object.freeze({ UNINIT: 0, INIT: 1, WORKING: 2 } as const);

/**
 * Firmware guest state (`kvm_sev_guest_status.state`, GSTATE), per the SEV API spec and QEMU's SevState.
 * (amd-memory-encryption.rst swaps SEND/RECEIVE: it is wrong.)
 */
export const GSTATE = Object.freeze({
  UNINIT: 0,
  LUPDATE: 1,
  LSECRET: 2,
  RUNNING: 3,
  SUPDATE: 4,
  RUPDATE: 5,
  SENT: 6,
} as const);

const pstateNames = reverse(PSTATE);
const gstateNames = reverse(GSTATE);
/** `2` → `'WORKING'`. */
export function platformStateName(state: number): keyof typeof PSTATE | undefined {
  return lookup(pstateNames, 'state', state);
}
/** `3` → `'RUNNING'`. */
export function guestStateName(state: number): keyof typeof GSTATE | undefined {
  return lookup(gstateNames, 'state', state);
}

/** `SEV_STATUS_FLAGS_CONFIG_ES`: `sev_user_data_status.flags` bit set when the platform was INIT'd with SEV-ES. */
export const SEV_STATUS_FLAGS_CONFIG_ES = 0x100;
/** `sev_user_data_status.flags` bit 0: the platform is externally owned (PEK_CERT_IMPORT done). */
export const SEV_STATUS_FLAGS_OWNER = 0x1;

/** `sev_user_data_snp_status` u32 at offset 8: its bitfields, lowest bit first. */
export const SNP_STATUS_FEATURE = Object.freeze({
  MASK_CHIP_ID: 1 << 0,
  MASK_CHIP_KEY: 1 << 1,
  VLEK_EN: 1 << 2,
  FEATURE_INFO: 1 << 3,
  RAPL_DIS: 1 << 4,
  CIPHERTEXT_HIDING_CAP: 1 << 5,
  CIPHERTEXT_HIDING_EN: 1 << 6,
} as const);

/** `sev_user_data_snp_config` u32 at offset 8: its bitfields. */
export const SNP_CONFIG_FLAG = Object.freeze({ MASK_CHIP_ID: 1 << 0, MASK_CHIP_KEY: 1 << 1 } as const);

/** `SEV_FW_BLOB_MAX_SIZE`: the cap on every user blob KVM or the PSP driver copies (16 KiB). */
export const SEV_FW_BLOB_MAX_SIZE = 0x4000;

/** Length of a LAUNCH_MEASURE result (32-byte HMAC + 16-byte mnonce); QEMU's SEV_MEASUREMENT_SIZE. */
export const SEV_MEASUREMENT_SIZE = 48;

// ------------------------------------------------------------------------------------------------
// Guest policy

/** Legacy SEV guest policy bits (u32, `SEV_POLICY_MASK_*` of include/linux/psp-sev.h). */
export const SEV_POLICY = Object.freeze({
  /** Debugging (DBG_DECRYPT/ENCRYPT) is disallowed. */
  NODBG: 1 << 0,
  /** Key sharing with other guests is disallowed. */
  NOKS: 1 << 1,
  /** SEV-ES guest. */
  ES: 1 << 2,
  /** Sending (SEND_START) is disallowed. */
  NOSEND: 1 << 3,
  /** Migration only within the same domain (OCA). */
  DOMAIN: 1 << 4,
  /** Migration only to SEV platforms with an AMD-rooted chain. */
  SEV: 1 << 5,
} as const);
/** Bits 6..15 are reserved: the firmware rejects a policy with any of them set. */
export const SEV_POLICY_RESERVED_MASK = 0xffc0;
/** Minimum firmware API major version: bits 23:16. */
export const SEV_POLICY_API_MAJOR_SHIFT = 16;
/** Minimum firmware API minor version: bits 31:24. */
export const SEV_POLICY_API_MINOR_SHIFT = 24;
export const SEV_POLICY_API_MAJOR_MASK = 0x00ff0000;
export const SEV_POLICY_API_MINOR_MASK = 0xff000000;

/** SEV-SNP guest policy bits (u64, as bigints for `kvm_sev_snp_launch_start.policy`). */
export const SNP_POLICY = Object.freeze({
  SMT: 1n << 16n,
  /** Reserved, must be one. */
  RSVD_MBO: 1n << 17n,
  MIGRATE_MA: 1n << 18n,
  DEBUG: 1n << 19n,
  SINGLE_SOCKET: 1n << 20n,
  CXL_ALLOW: 1n << 21n,
  MEM_AES_256_XTS: 1n << 22n,
  RAPL_DIS: 1n << 23n,
  CIPHERTEXT_HIDING_DRAM: 1n << 24n,
  PAGE_SWAP_DISABLE: 1n << 25n,
} as const);
/** SNP policy ABI minor: bits 7:0. */
export const SNP_POLICY_API_MINOR_SHIFT = 0n;
/** SNP policy ABI major: bits 15:8. */
export const SNP_POLICY_API_MAJOR_SHIFT = 8n;
export const SNP_POLICY_API_MINOR_MASK = 0xffn;
export const SNP_POLICY_API_MAJOR_MASK = 0xff00n;

// ------------------------------------------------------------------------------------------------
// VM types, SEV features, GHCB

/** `KVM_X86_*_VM`: the KVM_CREATE_VM argument (6.10+; 6.1 knows only 0). */
export const KVM_X86_DEFAULT_VM = 0;
export const KVM_X86_SW_PROTECTED_VM = 1;
export const KVM_X86_SEV_VM = 2;
export const KVM_X86_SEV_ES_VM = 3;
export const KVM_X86_SNP_VM = 4;
export const KVM_X86_TDX_VM = 5;
/** The VM types by name (`KVM_VM_TYPE.SEV_ES` = KVM_X86_SEV_ES_VM). KVM_CAP_VM_TYPES returns a bitmask of `1 << type`. */
export const KVM_VM_TYPE = Object.freeze({
  DEFAULT: KVM_X86_DEFAULT_VM,
  SW_PROTECTED: KVM_X86_SW_PROTECTED_VM,
  SEV: KVM_X86_SEV_VM,
  SEV_ES: KVM_X86_SEV_ES_VM,
  SNP: KVM_X86_SNP_VM,
  TDX: KVM_X86_TDX_VM,
} as const);
const vmTypeNames = reverse(KVM_VM_TYPE);
/** `3` → `'SEV_ES'`. */
export function vmTypeName(type: number): keyof typeof KVM_VM_TYPE | undefined {
  return lookup(vmTypeNames, 'type', type);
}

/** `SVM_SEV_FEAT_*`: `kvm_sev_init.vmsa_features` bits (u64, bigints). */
export const SVM_SEV_FEAT = Object.freeze({
  /** Internal: set by KVM itself for SNP VMs. */
  SNP_ACTIVE: 1n << 0n,
  RESTRICTED_INJECTION: 1n << 3n,
  ALTERNATE_INJECTION: 1n << 4n,
  DEBUG_SWAP: 1n << 5n,
  /** (7.2, SNP only) */
  SECURE_TSC: 1n << 9n,
} as const);

/** GHCB protocol versions accepted by INIT2 (`kvm_sev_init.ghcb_version`; 0 means the default for ES/SNP). */
export const GHCB_VERSION_MIN = 1;
export const GHCB_VERSION_MAX = 2;
export const GHCB_VERSION_DEFAULT = 2;

/** `KVM_X86_GRP_SEV`: device-attribute group on /dev/kvm (KVM_GET_DEVICE_ATTR). */
export const KVM_X86_GRP_SEV = 1;
/** Attribute: the vmsa_features INIT2 accepts (u64). */
export const KVM_X86_SEV_VMSA_FEATURES = 0;
/** Attribute (7.2): the supported SNP policy bits. */
export const KVM_X86_SNP_POLICY_BITS = 1;
/** Attribute (7.2): 1 if SNP certificate requests can be enabled. */
export const KVM_X86_SEV_SNP_REQ_CERTS = 2;

/** SNP launch page types (`kvm_sev_snp_launch_update.type`, `KVM_SEV_SNP_PAGE_TYPE_*`). */
export const KVM_SEV_SNP_PAGE_TYPE = Object.freeze({
  /** (7.2 only) */
  INVALID: 0,
  NORMAL: 1,
  ZERO: 3,
  UNMEASURED: 4,
  SECRETS: 5,
  CPUID: 6,
} as const);
/** `KVM_SEV_SNP_ID_BLOCK_SIZE`. */
export const KVM_SEV_SNP_ID_BLOCK_SIZE = 96;
/** `KVM_SEV_SNP_ID_AUTH_SIZE`. */
export const KVM_SEV_SNP_ID_AUTH_SIZE = 4096;
/** `KVM_SEV_SNP_FINISH_DATA_SIZE` (host_data). */
export const KVM_SEV_SNP_FINISH_DATA_SIZE = 32;

// ------------------------------------------------------------------------------------------------
// Hypercalls, MSRs, CPUID

/** `KVM_HC_MAP_GPA_RANGE`: the guest's "change encryption status" hypercall (exits to userspace with KVM_CAP_EXIT_HYPERCALL). */
export const KVM_HC_MAP_GPA_RANGE = 12;
/** KVM_HC_MAP_GPA_RANGE attribute flags (args[2]). */
export const KVM_MAP_GPA_RANGE = Object.freeze({
  PAGE_SZ_4K: 0,
  PAGE_SZ_2M: 1 << 0,
  PAGE_SZ_1G: 1 << 1,
  ENCRYPTED: 1 << 4,
  DECRYPTED: 0,
} as const);
/** `KVM_MAP_GPA_RANGE_ENC_STAT(n)`. */
export function KVM_MAP_GPA_RANGE_ENC_STAT(n: number): number {
  return n << 4;
}
/** `MSR_KVM_MIGRATION_CONTROL`: a guest writes KVM_MIGRATION_READY here once it can be migrated. */
export const MSR_KVM_MIGRATION_CONTROL = 0x4b564d08;
/** `KVM_MIGRATION_READY`. */
export const KVM_MIGRATION_READY = 1 << 0;
/** CPUID 0x40000001 EAX bit numbers. */
export const KVM_FEATURE_HC_MAP_GPA_RANGE = 16;
export const KVM_FEATURE_MIGRATION_CONTROL = 17;

/** CPUID 0x8000001F EAX bits (memory-encryption features). */
export const CPUID_8000001F_EAX = Object.freeze({ SME: 1 << 0, SEV: 1 << 1, SEV_ES: 1 << 3, SEV_SNP: 1 << 4 } as const);

// ------------------------------------------------------------------------------------------------
// Capabilities

/**
 * `KVM_CAP_*` (KVM_CHECK_EXTENSION / KVM_ENABLE_CAP), without the prefix: every generic and x86 cap of the
 * 6.1 header (PowerPC, s390, MIPS, ARM and RISC-V ones omitted) plus the later ones a SEV VMM needs.
 */
export const KVM_CAP = Object.freeze({
  IRQCHIP: 0,
  HLT: 1,
  MMU_SHADOW_CACHE_CONTROL: 2,
  USER_MEMORY: 3,
  SET_TSS_ADDR: 4,
  VAPIC: 6,
  EXT_CPUID: 7,
  CLOCKSOURCE: 8,
  NR_VCPUS: 9,
  NR_MEMSLOTS: 10,
  PIT: 11,
  NOP_IO_DELAY: 12,
  PV_MMU: 13,
  MP_STATE: 14,
  COALESCED_MMIO: 15,
  SYNC_MMU: 16,
  DESTROY_MEMORY_REGION_WORKS: 21,
  USER_NMI: 22,
  SET_GUEST_DEBUG: 23,
  REINJECT_CONTROL: 24,
  IRQ_ROUTING: 25,
  IRQ_INJECT_STATUS: 26,
  JOIN_MEMORY_REGIONS_WORKS: 30,
  MCE: 31,
  IRQFD: 32,
  PIT2: 33,
  SET_BOOT_CPU_ID: 34,
  PIT_STATE2: 35,
  IOEVENTFD: 36,
  SET_IDENTITY_MAP_ADDR: 37,
  XEN_HVM: 38,
  ADJUST_CLOCK: 39,
  INTERNAL_ERROR_DATA: 40,
  VCPU_EVENTS: 41,
  HYPERV: 44,
  HYPERV_VAPIC: 45,
  HYPERV_SPIN: 46,
  INTR_SHADOW: 49,
  DEBUGREGS: 50,
  X86_ROBUST_SINGLESTEP: 51,
  ENABLE_CAP: 54,
  XSAVE: 55,
  XCRS: 56,
  ASYNC_PF: 59,
  TSC_CONTROL: 60,
  GET_TSC_KHZ: 61,
  MAX_VCPUS: 66,
  ONE_REG: 70,
  TSC_DEADLINE_TIMER: 72,
  SYNC_REGS: 74,
  KVMCLOCK_CTRL: 76,
  SIGNAL_MSI: 77,
  READONLY_MEM: 81,
  IRQFD_RESAMPLE: 82,
  DEVICE_CTRL: 89,
  EXT_EMUL_CPUID: 95,
  HYPERV_TIME: 96,
  IOAPIC_POLARITY_IGNORED: 97,
  ENABLE_CAP_VM: 98,
  IOEVENTFD_NO_LENGTH: 100,
  VM_ATTRIBUTES: 101,
  CHECK_EXTENSION_VM: 105,
  DISABLE_QUIRKS: 116,
  X86_SMM: 117,
  MULTI_ADDRESS_SPACE: 118,
  GUEST_DEBUG_HW_BPS: 119,
  GUEST_DEBUG_HW_WPS: 120,
  SPLIT_IRQCHIP: 121,
  IOEVENTFD_ANY_LENGTH: 122,
  HYPERV_SYNIC: 123,
  VCPU_ATTRIBUTES: 127,
  MAX_VCPU_ID: 128,
  X2APIC_API: 129,
  IMMEDIATE_EXIT: 136,
  X86_DISABLE_EXITS: 143,
  HYPERV_SYNIC2: 148,
  HYPERV_VP_INDEX: 149,
  GET_MSR_FEATURES: 153,
  HYPERV_EVENTFD: 154,
  HYPERV_TLBFLUSH: 155,
  NESTED_STATE: 157,
  MSR_PLATFORM_INFO: 159,
  HYPERV_SEND_IPI: 161,
  COALESCED_PIO: 162,
  HYPERV_ENLIGHTENED_VMCS: 163,
  EXCEPTION_PAYLOAD: 164,
  MANUAL_DIRTY_LOG_PROTECT: 166,
  HYPERV_CPUID: 167,
  MANUAL_DIRTY_LOG_PROTECT2: 168,
  PMU_EVENT_FILTER: 173,
  HYPERV_DIRECT_TLBFLUSH: 175,
  HALT_POLL: 182,
  ASYNC_PF_INT: 183,
  LAST_CPU: 184,
  SMALLER_MAXPHYADDR: 185,
  STEAL_TIME: 187,
  X86_USER_SPACE_MSR: 188,
  X86_MSR_FILTER: 189,
  ENFORCE_PV_FEATURE_CPUID: 190,
  SYS_HYPERV_CPUID: 191,
  DIRTY_LOG_RING: 192,
  X86_BUS_LOCK_EXIT: 193,
  SET_GUEST_DEBUG2: 195,
  SGX_ATTRIBUTE: 196,
  /** Make this VM a mirror of another SEV VM (args[0] = source fd). */
  VM_COPY_ENC_CONTEXT_FROM: 197,
  PTP_KVM: 198,
  HYPERV_ENFORCE_CPUID: 199,
  SREGS2: 200,
  /** args[0] = mask of hypercalls that exit to userspace (`1 << KVM_HC_MAP_GPA_RANGE`). */
  EXIT_HYPERCALL: 201,
  BINARY_STATS_FD: 203,
  EXIT_ON_EMULATION_FAILURE: 204,
  /** Move the SEV context of another VM into this one (args[0] = source fd). */
  VM_MOVE_ENC_CONTEXT_FROM: 206,
  VM_GPA_BITS: 207,
  XSAVE2: 208,
  SYS_ATTRIBUTES: 209,
  PMU_CAPABILITY: 212,
  DISABLE_QUIRKS2: 213,
  VM_TSC_CONTROL: 214,
  SYSTEM_EVENT_DATA: 215,
  X86_TRIPLE_FAULT_EVENT: 218,
  X86_NOTIFY_VMEXIT: 219,
  VM_DISABLE_NX_HUGE_PAGES: 220,
  DIRTY_LOG_RING_ACQ_REL: 223,
  /** (6.3+) */
  DIRTY_LOG_RING_WITH_BITMAP: 225,
  PMU_EVENT_MASKED_EVENTS: 226,
  COUNTER_OFFSET: 227,
  /** (6.8+) */
  USER_MEMORY2: 231,
  MEMORY_FAULT_INFO: 232,
  MEMORY_ATTRIBUTES: 233,
  GUEST_MEMFD: 234,
  /** (6.8+) KVM_CHECK_EXTENSION returns a bitmask of `1 << KVM_X86_*_VM`. */
  VM_TYPES: 235,
  /** (6.10+) */
  PRE_FAULT_MEMORY: 236,
  X86_APIC_BUS_CYCLES_NS: 237,
  X86_GUEST_MODE: 238,
} as const);
export type KvmCapName = keyof typeof KVM_CAP;
const capNames = reverse(KVM_CAP);
/** `235` → `'VM_TYPES'`. */
export function capName(cap: number): KvmCapName | undefined {
  return lookup(capNames, 'cap', cap);
}

// ------------------------------------------------------------------------------------------------
// kvm_run

/** `KVM_EXIT_*`: `kvm_run.exit_reason`, without the prefix. */
export const KVM_EXIT = Object.freeze({
  UNKNOWN: 0,
  EXCEPTION: 1,
  IO: 2,
  HYPERCALL: 3,
  DEBUG: 4,
  HLT: 5,
  MMIO: 6,
  IRQ_WINDOW_OPEN: 7,
  SHUTDOWN: 8,
  FAIL_ENTRY: 9,
  INTR: 10,
  SET_TPR: 11,
  TPR_ACCESS: 12,
  S390_SIEIC: 13,
  S390_RESET: 14,
  /** deprecated */
  DCR: 15,
  NMI: 16,
  INTERNAL_ERROR: 17,
  OSI: 18,
  PAPR_HCALL: 19,
  S390_UCONTROL: 20,
  WATCHDOG: 21,
  S390_TSCH: 22,
  EPR: 23,
  SYSTEM_EVENT: 24,
  S390_STSI: 25,
  IOAPIC_EOI: 26,
  HYPERV: 27,
  ARM_NISV: 28,
  X86_RDMSR: 29,
  X86_WRMSR: 30,
  DIRTY_RING_FULL: 31,
  AP_RESET_HOLD: 32,
  X86_BUS_LOCK: 33,
  XEN: 34,
  RISCV_SBI: 35,
  RISCV_CSR: 36,
  NOTIFY: 37,
  /** (6.2+) */
  LOONGARCH_IOCSR: 38,
  /** (6.8+) */
  MEMORY_FAULT: 39,
  /** (6.16+) */
  TDX: 40,
  ARM_SEA: 41,
  ARM_LDST64B: 42,
  /** (7.2) */
  SNP_REQ_CERTS: 43,
} as const);
export type KvmExitName = keyof typeof KVM_EXIT;
const exitNames = reverse(KVM_EXIT);
/** `2` → `'IO'`; undefined for an unknown reason. */
export function exitReasonName(reason: number): KvmExitName | undefined {
  return lookup(exitNames, 'reason', reason);
}

/** `kvm_run.io.direction`. */
export const KVM_EXIT_IO_IN = 0;
export const KVM_EXIT_IO_OUT = 1;

/** `KVM_SYSTEM_EVENT_*`: `kvm_run.system_event.type`. */
export const KVM_SYSTEM_EVENT = Object.freeze({
  SHUTDOWN: 1,
  RESET: 2,
  CRASH: 3,
  WAKEUP: 4,
  SUSPEND: 5,
  /** An SEV-ES/SNP guest asked to terminate through the GHCB. */
  SEV_TERM: 6,
  /** (6.16+) */
  TDX_FATAL: 7,
} as const);
const systemEventNames = reverse(KVM_SYSTEM_EVENT);
/** `6` → `'SEV_TERM'`. */
export function systemEventName(type: number): keyof typeof KVM_SYSTEM_EVENT | undefined {
  return lookup(systemEventNames, 'type', type);
}

/** `KVM_INTERNAL_ERROR_*`: `kvm_run.internal.suberror`. */
export const KVM_INTERNAL_ERROR = Object.freeze({
  EMULATION: 1,
  SIMUL_EX: 2,
  DELIVERY_EV: 3,
  UNEXPECTED_EXIT_REASON: 4,
} as const);

/** `KVM_SYNC_X86_*`: kvm_run.kvm_valid_regs / kvm_dirty_regs bits. */
export const KVM_SYNC_X86 = Object.freeze({ REGS: 1 << 0, SREGS: 1 << 1, EVENTS: 1 << 2 } as const);

// ------------------------------------------------------------------------------------------------
// Memory slots, vCPU state

/** `PAGE_SIZE` of x86_64 (arch/x86/include/asm/page_types.h): the unit KVM pins, maps and moves memory in. */
export const PAGE_SIZE = 4096;

/** `KVM_MEM_*`: `kvm_userspace_memory_region.flags`. */
export const KVM_MEM = Object.freeze({
  LOG_DIRTY_PAGES: 1 << 0,
  READONLY: 1 << 1,
  /** (6.8+) region2 only. */
  GUEST_MEMFD: 1 << 2,
} as const);

/** `KVM_MEMORY_ATTRIBUTE_PRIVATE` (6.8+): kvm_memory_attributes.attributes bit (u64). */
export const KVM_MEMORY_ATTRIBUTE_PRIVATE = 1n << 3n;

/** `KVM_MP_STATE_*`: kvm_mp_state.mp_state. */
export const KVM_MP_STATE = Object.freeze({
  RUNNABLE: 0,
  UNINITIALIZED: 1,
  INIT_RECEIVED: 2,
  HALTED: 3,
  SIPI_RECEIVED: 4,
  STOPPED: 5,
  CHECK_STOP: 6,
  OPERATING: 7,
  LOAD: 8,
  AP_RESET_HOLD: 9,
  SUSPENDED: 10,
} as const);

/** `KVM_GUESTDBG_*`: kvm_guest_debug.control. */
export const KVM_GUESTDBG = Object.freeze({
  ENABLE: 0x00000001,
  SINGLESTEP: 0x00000002,
  USE_SW_BP: 0x00010000,
  USE_HW_BP: 0x00020000,
  INJECT_DB: 0x00040000,
  INJECT_BP: 0x00080000,
  BLOCKIRQ: 0x00100000,
} as const);

/** `KVM_VCPUEVENT_VALID_*`: kvm_vcpu_events.flags. */
export const KVM_VCPUEVENT_VALID = Object.freeze({
  NMI_PENDING: 0x00000001,
  SIPI_VECTOR: 0x00000002,
  SHADOW: 0x00000004,
  SMM: 0x00000008,
  PAYLOAD: 0x00000010,
  TRIPLE_FAULT: 0x00000020,
} as const);

/** `KVM_NR_INTERRUPTS`: bits in kvm_sregs.interrupt_bitmap. */
export const KVM_NR_INTERRUPTS = 256;
/** `KVM_APIC_REG_SIZE`: bytes of kvm_lapic_state.regs. */
export const KVM_APIC_REG_SIZE = 0x400;
/** `KVM_MAX_XCRS`: entries of kvm_xcrs.xcrs. */
export const KVM_MAX_XCRS = 16;
/** `KVM_MAX_CPUID_ENTRIES` (x86 KVM's internal limit; KVM_GET_SUPPORTED_CPUID fails with E2BIG beyond it). */
export const KVM_MAX_CPUID_ENTRIES = 256;
