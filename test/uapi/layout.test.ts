/**
 * Layout conformance: every codec, ioctl number and constant is checked against the C compiler and the
 * system's kernel headers (Linux 6.1 on the build machines), or — for what 6.1 lacks — against the values
 * of the newer uapi headers (Linux 6.8 … 7.2) written out below.
 *
 * No `cc` means failure, not a skip: a silent pass would prove nothing.
 */

import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import * as uapi from '../../lib/uapi/index.js';
import type { AnyStructCodec } from '../../lib/uapi/index.js';

// ------------------------------------------------------------------------------------------------
// What to check against C

interface CCase {
  readonly codec: AnyStructCodec;
  /** The C type (`struct kvm_regs`). */
  readonly c: string;
  /** An (anonymous) member of `c` this codec describes (`io` for kvm_run.io). */
  readonly member?: string;
  /** Added to the codec's offsets before comparing with `offsetof(c, …)` (kvm_run tail fields). */
  readonly base?: number;
  /** Fields that do not exist in the 6.1 header (newer explicit pads, renamed members). */
  readonly absent61?: readonly string[];
  /** Compare the codec's size with sizeof (false for partial views of a bigger struct). */
  readonly checkSize?: boolean;
}

const { structs } = uapi;

const C_CASES: readonly CCase[] = [
  { codec: structs.__u64, c: '__u64', absent61: ['value'] },
  { codec: structs.kvm_userspace_memory_region, c: 'struct kvm_userspace_memory_region' },
  { codec: structs.kvm_enable_cap, c: 'struct kvm_enable_cap' },
  { codec: structs.kvm_regs, c: 'struct kvm_regs' },
  { codec: structs.kvm_segment, c: 'struct kvm_segment' },
  { codec: structs.kvm_dtable, c: 'struct kvm_dtable' },
  { codec: structs.kvm_sregs, c: 'struct kvm_sregs' },
  { codec: structs.kvm_fpu, c: 'struct kvm_fpu' },
  { codec: structs.kvm_xsave, c: 'struct kvm_xsave' },
  { codec: structs.kvm_xcr, c: 'struct kvm_xcr' },
  { codec: structs.kvm_xcrs, c: 'struct kvm_xcrs' },
  { codec: structs.kvm_msr_entry, c: 'struct kvm_msr_entry' },
  { codec: structs.kvm_msrs, c: 'struct kvm_msrs' },
  { codec: structs.kvm_msr_list, c: 'struct kvm_msr_list' },
  { codec: structs.kvm_cpuid_entry2, c: 'struct kvm_cpuid_entry2' },
  { codec: structs.kvm_cpuid2, c: 'struct kvm_cpuid2' },
  { codec: structs.kvm_lapic_state, c: 'struct kvm_lapic_state' },
  { codec: structs['kvm_vcpu_events.exception'], c: 'struct kvm_vcpu_events', member: 'exception' },
  { codec: structs['kvm_vcpu_events.interrupt'], c: 'struct kvm_vcpu_events', member: 'interrupt' },
  { codec: structs['kvm_vcpu_events.nmi'], c: 'struct kvm_vcpu_events', member: 'nmi' },
  { codec: structs['kvm_vcpu_events.smi'], c: 'struct kvm_vcpu_events', member: 'smi' },
  { codec: structs['kvm_vcpu_events.triple_fault'], c: 'struct kvm_vcpu_events', member: 'triple_fault' },
  { codec: structs.kvm_vcpu_events, c: 'struct kvm_vcpu_events' },
  { codec: structs.kvm_mp_state, c: 'struct kvm_mp_state' },
  { codec: structs.kvm_debugregs, c: 'struct kvm_debugregs' },
  { codec: structs.kvm_device_attr, c: 'struct kvm_device_attr' },
  { codec: structs.kvm_guest_debug_arch, c: 'struct kvm_guest_debug_arch' },
  { codec: structs.kvm_guest_debug, c: 'struct kvm_guest_debug' },
  { codec: structs.kvm_enc_region, c: 'struct kvm_enc_region' },
  { codec: structs.kvm_clock_data, c: 'struct kvm_clock_data' },
  { codec: structs.kvm_sev_cmd, c: 'struct kvm_sev_cmd', absent61: ['pad0'] },
  { codec: structs.kvm_sev_launch_start, c: 'struct kvm_sev_launch_start', absent61: ['pad0', 'pad1'] },
  { codec: structs.kvm_sev_launch_update_data, c: 'struct kvm_sev_launch_update_data', absent61: ['pad0'] },
  { codec: structs.kvm_sev_launch_secret, c: 'struct kvm_sev_launch_secret', absent61: ['pad0', 'pad1', 'pad2'] },
  { codec: structs.kvm_sev_launch_measure, c: 'struct kvm_sev_launch_measure', absent61: ['pad0'] },
  { codec: structs.kvm_sev_guest_status, c: 'struct kvm_sev_guest_status' },
  { codec: structs.kvm_sev_dbg, c: 'struct kvm_sev_dbg', absent61: ['pad0'] },
  { codec: structs.kvm_sev_attestation_report, c: 'struct kvm_sev_attestation_report', absent61: ['pad0'] },
  { codec: structs.kvm_sev_send_start, c: 'struct kvm_sev_send_start', absent61: ['pad0', 'pad1', 'pad2', 'pad3', 'pad4'] },
  { codec: structs.kvm_sev_send_update_data, c: 'struct kvm_sev_send_update_data', absent61: ['pad0', 'pad1', 'pad2'] },
  { codec: structs.kvm_sev_receive_start, c: 'struct kvm_sev_receive_start', absent61: ['pad0', 'pad1'] },
  { codec: structs.kvm_sev_receive_update_data, c: 'struct kvm_sev_receive_update_data', absent61: ['pad0', 'pad1', 'pad2'] },
  { codec: structs.sev_issue_cmd, c: 'struct sev_issue_cmd' },
  { codec: structs.sev_user_data_status, c: 'struct sev_user_data_status' },
  { codec: structs.sev_user_data_pek_csr, c: 'struct sev_user_data_pek_csr' },
  { codec: structs.sev_user_data_pek_cert_import, c: 'struct sev_user_data_pek_cert_import' },
  { codec: structs.sev_user_data_pdh_cert_export, c: 'struct sev_user_data_pdh_cert_export' },
  { codec: structs.sev_user_data_get_id, c: 'struct sev_user_data_get_id' },
  { codec: structs.sev_user_data_get_id2, c: 'struct sev_user_data_get_id2' },
  { codec: structs.kvm_run, c: 'struct kvm_run', checkSize: false },
  { codec: structs['kvm_run.hw'], c: 'struct kvm_run', member: 'hw' },
  { codec: structs['kvm_run.fail_entry'], c: 'struct kvm_run', member: 'fail_entry' },
  { codec: structs['kvm_run.ex'], c: 'struct kvm_run', member: 'ex' },
  { codec: structs['kvm_run.io'], c: 'struct kvm_run', member: 'io' },
  { codec: structs['kvm_run.mmio'], c: 'struct kvm_run', member: 'mmio' },
  // 6.1 has `__u32 longmode; __u32 pad;` where 6.7+ has `union { __u32 longmode; __u64 flags; }`: checked below.
  { codec: structs['kvm_run.hypercall'], c: 'struct kvm_run', member: 'hypercall', absent61: ['flags'] },
  { codec: structs['kvm_run.system_event'], c: 'struct kvm_run', member: 'system_event' },
  { codec: structs['kvm_run.internal'], c: 'struct kvm_run', member: 'internal' },
  { codec: structs['kvm_run.msr'], c: 'struct kvm_run', member: 'msr' },
  { codec: structs['kvm_run.eoi'], c: 'struct kvm_run', member: 'eoi' },
  { codec: structs['kvm_run.sync_flags'], c: 'struct kvm_run', base: 288, checkSize: false },
  { codec: structs.kvm_irq_level, c: 'struct kvm_irq_level' },
  { codec: structs.kvm_pic_state, c: 'struct kvm_pic_state' },
  { codec: structs.kvm_ioapic_state, c: 'struct kvm_ioapic_state' },
  { codec: structs.kvm_irqchip, c: 'struct kvm_irqchip' },
  { codec: structs.kvm_pit_config, c: 'struct kvm_pit_config' },
  { codec: structs.kvm_pit_channel_state, c: 'struct kvm_pit_channel_state' },
  { codec: structs.kvm_pit_state2, c: 'struct kvm_pit_state2' },
  { codec: structs.kvm_interrupt, c: 'struct kvm_interrupt' },
  { codec: structs.kvm_msi, c: 'struct kvm_msi' },
  { codec: structs.kvm_irq_routing_entry, c: 'struct kvm_irq_routing_entry' },
  { codec: structs.kvm_irq_routing, c: 'struct kvm_irq_routing' },
  { codec: structs.kvm_irqfd, c: 'struct kvm_irqfd' },
  { codec: structs.kvm_ioeventfd, c: 'struct kvm_ioeventfd' },
  { codec: structs.kvm_dirty_log, c: 'struct kvm_dirty_log' },
  { codec: structs.kvm_clear_dirty_log, c: 'struct kvm_clear_dirty_log' },
  { codec: structs.kvm_msr_filter_range, c: 'struct kvm_msr_filter_range' },
  { codec: structs.kvm_msr_filter, c: 'struct kvm_msr_filter' },
  { codec: structs.kvm_create_device, c: 'struct kvm_create_device' },
  { codec: structs.kvm_stats_header, c: 'struct kvm_stats_header' },
  { codec: structs.kvm_stats_desc, c: 'struct kvm_stats_desc' },
];

/** Layouts the 6.1 headers lack, from the 7.2 uapi (asm/kvm.h, linux/psp-sev.h) and the 2021 local-migration patch. */
const REFERENCE_LAYOUTS: Readonly<Record<string, { size: number; fields: Readonly<Record<string, number>> }>> = {
  kvm_sev_init: { size: 48, fields: { vmsa_features: 0, flags: 8, ghcb_version: 12, pad1: 14, pad2: 16 } },
  kvm_sev_snp_launch_start: { size: 64, fields: { policy: 0, gosvw: 8, flags: 24, pad0: 26, pad1: 32 } },
  kvm_sev_snp_launch_update: {
    size: 64,
    fields: { gfn_start: 0, uaddr: 8, len: 16, type: 24, pad0: 25, flags: 26, pad1: 28, pad2: 32 },
  },
  kvm_sev_snp_launch_finish: {
    size: 88,
    fields: {
      id_block_uaddr: 0,
      id_auth_uaddr: 8,
      id_block_en: 16,
      auth_key_en: 17,
      vcek_disabled: 18,
      host_data: 19,
      pad0: 51,
      flags: 54,
      pad1: 56,
    },
  },
  kvm_sev_local_send: { size: 8, fields: { info_token: 0 } },
  kvm_sev_local_receive: { size: 16, fields: { info_token: 0, handle: 8, pad0: 12 } },
  sev_user_data_snp_status: {
    size: 32,
    fields: {
      api_major: 0,
      api_minor: 1,
      state: 2,
      is_rmp_initialized: 3,
      build_id: 4,
      feature_flags: 8,
      guest_count: 12,
      current_tcb_version: 16,
      reported_tcb_version: 24,
    },
  },
  sev_user_data_snp_config: { size: 64, fields: { reported_tcb: 0, flags: 8, rsvd1: 12 } },
  sev_user_data_snp_vlek_load: { size: 16, fields: { len: 0, vlek_wrapped_version: 4, rsvd: 5, vlek_wrapped_address: 8 } },
  kvm_userspace_memory_region2: {
    size: 160,
    fields: {
      slot: 0,
      flags: 4,
      guest_phys_addr: 8,
      memory_size: 16,
      userspace_addr: 24,
      guest_memfd_offset: 32,
      guest_memfd: 40,
      pad1: 44,
      pad2: 48,
    },
  },
  kvm_memory_attributes: { size: 32, fields: { address: 0, size: 8, attributes: 16, flags: 24 } },
  kvm_create_guest_memfd: { size: 64, fields: { size: 0, flags: 8, reserved: 16 } },
  // Offsets relative to the kvm_run union (absolute: flags 32, gpa 40, size 48).
  'kvm_run.memory_fault': { size: 24, fields: { flags: 0, gpa: 8, size: 16 } },
};

/** Kernel macro name → our value, for every constant with a uapi macro. */
function macroList(): [string, number | bigint][] {
  const out: [string, number | bigint][] = [];
  const group = (prefix: string, obj: Readonly<Record<string, number | bigint>>) => {
    for (const [k, v] of Object.entries(obj)) out.push([prefix + k, v]);
  };
  group('KVM_CAP_', uapi.KVM_CAP);
  group('KVM_EXIT_', uapi.KVM_EXIT);
  group('KVM_SYSTEM_EVENT_', uapi.KVM_SYSTEM_EVENT);
  group('KVM_MEM_', uapi.KVM_MEM);
  group('KVM_MP_STATE_', uapi.KVM_MP_STATE);
  group('KVM_GUESTDBG_', uapi.KVM_GUESTDBG);
  group('KVM_VCPUEVENT_VALID_', uapi.KVM_VCPUEVENT_VALID);
  group('KVM_INTERNAL_ERROR_', uapi.KVM_INTERNAL_ERROR);
  group('KVM_SYNC_X86_', uapi.KVM_SYNC_X86);
  group('KVM_SEV_SNP_PAGE_TYPE_', uapi.KVM_SEV_SNP_PAGE_TYPE);
  group('SVM_SEV_FEAT_', uapi.SVM_SEV_FEAT);
  group('KVM_MAP_GPA_RANGE_', uapi.KVM_MAP_GPA_RANGE);
  group('KVM_IRQCHIP_', uapi.KVM_IRQCHIP);
  group('KVM_PIT_FLAGS_', uapi.KVM_PIT_FLAGS);
  group('KVM_IRQ_ROUTING_', uapi.KVM_IRQ_ROUTING);
  group('KVM_IRQFD_FLAG_', uapi.KVM_IRQFD_FLAG);
  group('KVM_IOEVENTFD_FLAG_', uapi.KVM_IOEVENTFD_FLAG);
  group('KVM_DIRTY_LOG_', uapi.KVM_DIRTY_LOG);
  group('KVM_MSR_EXIT_REASON_', uapi.KVM_MSR_EXIT_REASON);
  group('KVM_MSR_FILTER_', uapi.KVM_MSR_FILTER);
  group('KVM_CLOCK_', uapi.KVM_CLOCK);
  group('KVM_DEV_TYPE_', uapi.KVM_DEV_TYPE);
  group('KVM_DEV_VFIO_', uapi.KVM_DEV_VFIO);
  group('KVM_STATS_TYPE_', uapi.KVM_STATS_TYPE);
  group('KVM_STATS_UNIT_', uapi.KVM_STATS_UNIT);
  group('KVM_STATS_BASE_', uapi.KVM_STATS_BASE);
  group('KVM_HC_', uapi.KVM_HC);
  const single: Record<string, number | bigint> = {
    KVMIO: uapi.KVMIO,
    KVM_API_VERSION: uapi.KVM_API_VERSION,
    SEV_IOC_TYPE: uapi.SEV_IOC_TYPE,
    KVM_EXIT_IO_IN: uapi.KVM_EXIT_IO_IN,
    KVM_EXIT_IO_OUT: uapi.KVM_EXIT_IO_OUT,
    SEV_STATUS_FLAGS_CONFIG_ES: uapi.SEV_STATUS_FLAGS_CONFIG_ES,
    KVM_NR_INTERRUPTS: uapi.KVM_NR_INTERRUPTS,
    KVM_APIC_REG_SIZE: uapi.KVM_APIC_REG_SIZE,
    KVM_MAX_XCRS: uapi.KVM_MAX_XCRS,
    KVM_X86_DEFAULT_VM: uapi.KVM_X86_DEFAULT_VM,
    KVM_X86_SW_PROTECTED_VM: uapi.KVM_X86_SW_PROTECTED_VM,
    KVM_X86_SEV_VM: uapi.KVM_X86_SEV_VM,
    KVM_X86_SEV_ES_VM: uapi.KVM_X86_SEV_ES_VM,
    KVM_X86_SNP_VM: uapi.KVM_X86_SNP_VM,
    KVM_X86_TDX_VM: uapi.KVM_X86_TDX_VM,
    KVM_X86_GRP_SEV: uapi.KVM_X86_GRP_SEV,
    KVM_X86_SEV_VMSA_FEATURES: uapi.KVM_X86_SEV_VMSA_FEATURES,
    KVM_X86_SNP_POLICY_BITS: uapi.KVM_X86_SNP_POLICY_BITS,
    KVM_X86_SEV_SNP_REQ_CERTS: uapi.KVM_X86_SEV_SNP_REQ_CERTS,
    KVM_SEV_SNP_ID_BLOCK_SIZE: uapi.KVM_SEV_SNP_ID_BLOCK_SIZE,
    KVM_SEV_SNP_ID_AUTH_SIZE: uapi.KVM_SEV_SNP_ID_AUTH_SIZE,
    KVM_SEV_SNP_FINISH_DATA_SIZE: uapi.KVM_SEV_SNP_FINISH_DATA_SIZE,
    KVM_HC_MAP_GPA_RANGE: uapi.KVM_HC_MAP_GPA_RANGE,
    MSR_KVM_MIGRATION_CONTROL: uapi.MSR_KVM_MIGRATION_CONTROL,
    KVM_MIGRATION_READY: uapi.KVM_MIGRATION_READY,
    KVM_FEATURE_HC_MAP_GPA_RANGE: uapi.KVM_FEATURE_HC_MAP_GPA_RANGE,
    KVM_FEATURE_MIGRATION_CONTROL: uapi.KVM_FEATURE_MIGRATION_CONTROL,
    KVM_MEMORY_ATTRIBUTE_PRIVATE: uapi.KVM_MEMORY_ATTRIBUTE_PRIVATE,
    // ioctls outside the allowlist table
    KVM_SET_USER_MEMORY_REGION2: uapi.KVM_SET_USER_MEMORY_REGION2,
    KVM_SET_MEMORY_ATTRIBUTES: uapi.KVM_SET_MEMORY_ATTRIBUTES,
    KVM_CREATE_GUEST_MEMFD: uapi.KVM_CREATE_GUEST_MEMFD,
    KVM_SET_CLOCK: uapi.KVM_SET_CLOCK,
    KVM_GET_CLOCK: uapi.KVM_GET_CLOCK,
    KVM_SET_DEVICE_ATTR: uapi.KVM_SET_DEVICE_ATTR,
    KVM_NR_IRQCHIPS: uapi.KVM_NR_IRQCHIPS,
    KVM_IOAPIC_NUM_PINS: uapi.KVM_IOAPIC_NUM_PINS,
    KVM_PIT_SPEAKER_DUMMY: uapi.KVM_PIT_SPEAKER_DUMMY,
    KVM_MSI_VALID_DEVID: uapi.KVM_MSI_VALID_DEVID,
    KVM_MSR_FILTER_DEFAULT_ALLOW: uapi.KVM_MSR_FILTER_DEFAULT_ALLOW,
    KVM_MSR_FILTER_DEFAULT_DENY: uapi.KVM_MSR_FILTER_DEFAULT_DENY,
    KVM_MSR_FILTER_MAX_RANGES: uapi.KVM_MSR_FILTER_MAX_RANGES,
    KVM_MSR_FILTER_MAX_BITMAP_SIZE: uapi.KVM_MSR_FILTER_MAX_BITMAP_SIZE,
    KVM_CREATE_DEVICE_TEST: uapi.KVM_CREATE_DEVICE_TEST,
    KVM_STATS_TYPE_MASK: uapi.KVM_STATS_TYPE_MASK,
    KVM_STATS_UNIT_MASK: uapi.KVM_STATS_UNIT_MASK,
    KVM_STATS_BASE_MASK: uapi.KVM_STATS_BASE_MASK,
  };
  out.push(...Object.entries(single));
  for (const d of uapi.IOCTLS) out.push([d.name, d.request]);
  for (const d of uapi.REFUSED_IOCTLS) out.push([d.name, d.request]);
  return out;
}

/**
 * Macros newer than 6.1. Values from the upstream uapi headers (include/uapi/linux/kvm.h,
 * arch/x86/include/uapi/asm/kvm.h, include/uapi/linux/psp-sev.h of 6.3 … 7.2).
 */
const REFERENCE_MACROS: Readonly<Record<string, number | bigint>> = {
  KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP: 225,
  KVM_CAP_PMU_EVENT_MASKED_EVENTS: 226,
  KVM_CAP_COUNTER_OFFSET: 227,
  KVM_CAP_USER_MEMORY2: 231,
  KVM_CAP_MEMORY_FAULT_INFO: 232,
  KVM_CAP_MEMORY_ATTRIBUTES: 233,
  KVM_CAP_GUEST_MEMFD: 234,
  KVM_CAP_VM_TYPES: 235,
  KVM_CAP_PRE_FAULT_MEMORY: 236,
  KVM_CAP_X86_APIC_BUS_CYCLES_NS: 237,
  KVM_CAP_X86_GUEST_MODE: 238,
  KVM_EXIT_LOONGARCH_IOCSR: 38,
  KVM_EXIT_MEMORY_FAULT: 39,
  KVM_EXIT_TDX: 40,
  KVM_EXIT_ARM_SEA: 41,
  KVM_EXIT_ARM_LDST64B: 42,
  KVM_EXIT_SNP_REQ_CERTS: 43,
  KVM_SYSTEM_EVENT_TDX_FATAL: 7,
  KVM_MEM_GUEST_MEMFD: 4,
  KVM_X86_DEFAULT_VM: 0,
  KVM_X86_SW_PROTECTED_VM: 1,
  KVM_X86_SEV_VM: 2,
  KVM_X86_SEV_ES_VM: 3,
  KVM_X86_SNP_VM: 4,
  KVM_X86_TDX_VM: 5,
  KVM_X86_GRP_SEV: 1,
  KVM_X86_SEV_VMSA_FEATURES: 0,
  KVM_X86_SNP_POLICY_BITS: 1,
  KVM_X86_SEV_SNP_REQ_CERTS: 2,
  KVM_SEV_SNP_PAGE_TYPE_INVALID: 0,
  KVM_SEV_SNP_PAGE_TYPE_NORMAL: 1,
  KVM_SEV_SNP_PAGE_TYPE_ZERO: 3,
  KVM_SEV_SNP_PAGE_TYPE_UNMEASURED: 4,
  KVM_SEV_SNP_PAGE_TYPE_SECRETS: 5,
  KVM_SEV_SNP_PAGE_TYPE_CPUID: 6,
  KVM_SEV_SNP_ID_BLOCK_SIZE: 96,
  KVM_SEV_SNP_ID_AUTH_SIZE: 4096,
  KVM_SEV_SNP_FINISH_DATA_SIZE: 32,
  SVM_SEV_FEAT_SNP_ACTIVE: 1n,
  SVM_SEV_FEAT_RESTRICTED_INJECTION: 8n,
  SVM_SEV_FEAT_ALTERNATE_INJECTION: 16n,
  SVM_SEV_FEAT_DEBUG_SWAP: 32n,
  SVM_SEV_FEAT_SECURE_TSC: 512n,
  KVM_MEMORY_ATTRIBUTE_PRIVATE: 8n,
  KVM_SET_USER_MEMORY_REGION2: 0x40a0ae49,
  KVM_SET_MEMORY_ATTRIBUTES: 0x4020aed2,
  KVM_CREATE_GUEST_MEMFD: 0xc040aed4,
};

/** Enum constants (no #ifdef possible) that exist in the 6.1 headers. */
function enumList61(): [string, number][] {
  const out: [string, number][] = [];
  for (const [k, v] of Object.entries(uapi.KVM_SEV)) if (v <= uapi.KVM_SEV.SEND_CANCEL) out.push([`KVM_SEV_${k}`, v]);
  for (const [k, v] of Object.entries(uapi.SEV_CMD)) if (v <= uapi.SEV_CMD.GET_ID2) out.push([`SEV_${k}`, v]);
  // 6.1 only has the misspelt SEV_RET_INAVLID_CONFIG; the correct spelling is checked through the alias.
  for (const [k, v] of Object.entries(uapi.SEV_RET)) if (v <= 0x18 && k !== 'INVALID_CONFIG') out.push([`SEV_RET_${k}`, v]);
  return out;
}

/** Enum values newer than 6.1, from the 7.2 uapi (`enum sev_cmd_id` in asm/kvm.h, `enum sev_ret_code` in linux/psp-sev.h). */
const REFERENCE_ENUMS: Readonly<Record<string, number>> = {
  KVM_SEV_INIT2: 22,
  KVM_SEV_SNP_LAUNCH_START: 100,
  KVM_SEV_SNP_LAUNCH_UPDATE: 101,
  KVM_SEV_SNP_LAUNCH_FINISH: 102,
  KVM_SEV_SNP_ENABLE_REQ_CERTS: 103,
  SNP_PLATFORM_STATUS: 9,
  SNP_COMMIT: 10,
  SNP_SET_CONFIG: 11,
  SNP_VLEK_LOAD: 12,
};

/** include/linux/errno.h (kernel-internal, not in <errno.h>). */
const KERNEL_ERRNOS: Readonly<Record<string, number>> = {
  ERESTARTSYS: 512,
  ERESTARTNOINTR: 513,
  ERESTARTNOHAND: 514,
  ENOIOCTLCMD: 515,
  ERESTART_RESTARTBLOCK: 516,
  EPROBE_DEFER: 517,
  EOPENSTALE: 518,
  ENOPARAM: 519,
  EBADHANDLE: 521,
  ENOTSYNC: 522,
  EBADCOOKIE: 523,
  ENOTSUPP: 524,
  ETOOSMALL: 525,
  ESERVERFAULT: 526,
  EBADTYPE: 527,
  EJUKEBOX: 528,
  EIOCBQUEUED: 529,
  ERECALLCONFLICT: 530,
  ENOGRACE: 531,
};

// ------------------------------------------------------------------------------------------------
// The C program

const cIdent = /^[A-Za-z_][A-Za-z0-9_]*$/;

function cProgram(): string {
  const L: string[] = [
    '#define _GNU_SOURCE',
    '#include <stdio.h>',
    '#include <stddef.h>',
    '#include <string.h>',
    '#include <errno.h>',
    '#include <sys/ioctl.h>',
    '#include <linux/kvm.h>',
    '#include <linux/kvm_para.h>',
    '#include <linux/psp-sev.h>',
    'int main(void) {',
  ];
  for (const k of C_CASES) {
    const id = k.codec.name;
    if (k.checkSize !== false) {
      const expr = k.member ? `sizeof(((${k.c} *)0)->${k.member})` : `sizeof(${k.c})`;
      L.push(`  printf("S|${id}|%zu\\n", (size_t)${expr});`);
    }
    for (const f of k.codec.fields) {
      if (k.absent61?.includes(f.name)) continue;
      const path = k.member ? `${k.member}.${f.name}` : f.name;
      const off = k.member ? `offsetof(${k.c}, ${path}) - offsetof(${k.c}, ${k.member})` : `offsetof(${k.c}, ${path})`;
      L.push(`  printf("F|${id}|${f.name}|%zu|%zu\\n", (size_t)(${off}), (size_t)sizeof(((${k.c} *)0)->${path}));`);
    }
  }
  L.push('  printf("X|kvm_run.hypercall.longmode|%zu\\n", offsetof(struct kvm_run, hypercall.longmode));');
  L.push('  printf("X|sizeof_kvm_run|%zu\\n", sizeof(struct kvm_run));');
  for (const m of ['exit_reason', 'kvm_valid_regs', 'kvm_dirty_regs', 's', 'immediate_exit', 'cr8', 'apic_base']) {
    L.push(`  printf("X|kvm_run.${m}|%zu\\n", offsetof(struct kvm_run, ${m}));`);
  }
  for (const [name] of macroList()) {
    if (!cIdent.test(name)) throw new Error(`bad macro name ${name}`);
    L.push(`#ifdef ${name}`, `  printf("M|${name}|%lld\\n", (long long)(${name}));`, '#else', `  printf("U|${name}\\n");`, '#endif');
  }
  for (const [name] of enumList61()) L.push(`  printf("M|${name}|%lld\\n", (long long)(${name}));`);
  for (const name of Object.keys(uapi.ERRNO)) {
    L.push(`#ifdef ${name}`, `  printf("N|${name}|%d\\n", ${name});`, '#else', `  printf("V|${name}\\n");`, '#endif');
  }
  L.push('  for (int i = 1; i <= 133; i++) printf("E|%d|%s\\n", i, strerror(i));');
  L.push('  return 0;', '}');
  return L.join('\n') + '\n';
}

interface CFacts {
  sizes: Map<string, number>;
  fields: Map<string, { offset: number; size: number }>;
  extra: Map<string, number>;
  macros: Map<string, bigint>;
  undefinedMacros: Set<string>;
  errnos: Map<string, number>;
  strerror: Map<number, string>;
}

let cache: CFacts | Error | undefined;

/** `m.get(k)`, failing loudly if the C probe printed nothing for `k`. */
function must<K, V>(m: ReadonlyMap<K, V>, k: K): V {
  const v = m.get(k);
  if (v === undefined) throw new Error(`the C probe printed nothing for ${String(k)}`);
  return v;
}

function cFacts(): CFacts {
  if (cache instanceof Error) throw cache;
  if (cache) return cache;
  const dir = mkdtempSync(join(tmpdir(), 'kvm-sev-layout-'));
  try {
    const src = join(dir, 'layout.c');
    const exe = join(dir, 'layout');
    writeFileSync(src, cProgram());
    try {
      execFileSync('cc', ['-std=gnu11', '-O0', '-w', '-o', exe, src], { stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (e) {
      const err = e as NodeJS.ErrnoException & { stderr?: Buffer };
      if (err.code === 'ENOENT') {
        throw new Error('The layout test needs a C compiler: `cc` was not found on PATH (install gcc). It cannot pass without it.');
      }
      throw new Error(`cc failed to compile the layout probe:\n${err.stderr?.toString() ?? String(e)}`);
    }
    const text = execFileSync(exe, [], { env: { ...process.env, LC_ALL: 'C', LANG: 'C' } }).toString();
    const f: CFacts = {
      sizes: new Map(),
      fields: new Map(),
      extra: new Map(),
      macros: new Map(),
      undefinedMacros: new Set(),
      errnos: new Map(),
      strerror: new Map(),
    };
    for (const line of text.split('\n')) {
      if (!line) continue;
      const p = line.split('|');
      switch (p[0]) {
        case 'S':
          f.sizes.set(p[1]!, Number(p[2]));
          break;
        case 'F':
          f.fields.set(`${p[1]}.${p[2]}`, { offset: Number(p[3]), size: Number(p[4]) });
          break;
        case 'X':
          f.extra.set(p[1]!, Number(p[2]));
          break;
        case 'M':
          f.macros.set(p[1]!, BigInt(p[2]!));
          break;
        case 'U':
          f.undefinedMacros.add(p[1]!);
          break;
        case 'N':
          f.errnos.set(p[1]!, Number(p[2]));
          break;
        case 'V':
          break;
        case 'E':
          f.strerror.set(Number(p[1]), p.slice(2).join('|'));
          break;
        default:
          throw new Error(`unexpected probe output: ${line}`);
      }
    }
    cache = f;
    return f;
  } catch (e) {
    cache = e instanceof Error ? e : new Error(String(e));
    throw cache;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ------------------------------------------------------------------------------------------------
// Tests

test('the system headers are the ones this test was written for (6.1 or newer uapi)', (t) => {
  const kvmh = readFileSync('/usr/include/linux/kvm.h', 'utf8');
  t.true(kvmh.includes('struct kvm_sev_cmd'), '/usr/include/linux/kvm.h lacks struct kvm_sev_cmd');
  t.true(cFacts().sizes.size > 40);
});

for (const k of C_CASES) {
  test(`layout vs C: ${k.codec.name} (${k.c}${k.member ? `.${k.member}` : ''})`, (t) => {
    const f = cFacts();
    if (k.checkSize !== false) t.is(k.codec.size, must(f.sizes, k.codec.name), `sizeof ${k.codec.name}`);
    let compared = 0;
    for (const fi of k.codec.fields) {
      if (k.absent61?.includes(fi.name)) continue;
      const c = f.fields.get(`${k.codec.name}.${fi.name}`);
      if (!c) {
        t.fail(`no C output for ${k.codec.name}.${fi.name}`);
        continue;
      }
      t.is(fi.offset + (k.base ?? 0), c.offset, `offsetof ${k.codec.name}.${fi.name}`);
      t.is(fi.size, c.size, `sizeof ${k.codec.name}.${fi.name}`);
      compared++;
    }
    // Every field absent from 6.1 must be a deliberate exception, not a typo hiding a real field.
    for (const name of k.absent61 ?? [])
      t.truthy(
        k.codec.fields.find((x) => x.name === name),
        `absent61 names a field: ${name}`,
      );
    if (k.codec.fields.length > (k.absent61?.length ?? 0)) t.true(compared > 0);
  });
}

for (const [name, ref] of Object.entries(REFERENCE_LAYOUTS)) {
  test(`layout vs reference: ${name}`, (t) => {
    const codec = (structs as Readonly<Record<string, AnyStructCodec>>)[name];
    if (!codec) return t.fail(`no codec ${name}`);
    t.is(codec.size, ref.size);
    t.deepEqual(Object.fromEntries(codec.fields.map((f) => [f.name, f.offset])), ref.fields);
  });
}

test('every codec in `structs` is covered by a layout check', (t) => {
  const covered = new Set([...C_CASES.map((k) => k.codec.name), ...Object.keys(REFERENCE_LAYOUTS)]);
  for (const [key, codec] of Object.entries(structs)) {
    t.is(codec.name, key, `structs key ${key} names its codec`);
    t.true(covered.has(codec.name), `${codec.name} has no layout check`);
  }
});

test('kvm_run offsets and size vs C', (t) => {
  const x = cFacts().extra;
  t.is(uapi.KVM_RUN_SIZE, must(x, 'sizeof_kvm_run'));
  t.is(uapi.KVM_RUN_EXIT_REASON_OFFSET, must(x, 'kvm_run.exit_reason'));
  t.is(uapi.KVM_RUN_IMMEDIATE_EXIT_OFFSET, must(x, 'kvm_run.immediate_exit'));
  t.is(uapi.KVM_RUN_CR8_OFFSET, must(x, 'kvm_run.cr8'));
  t.is(uapi.KVM_RUN_APIC_BASE_OFFSET, must(x, 'kvm_run.apic_base'));
  t.is(uapi.KVM_RUN_VALID_REGS_OFFSET, must(x, 'kvm_run.kvm_valid_regs'));
  t.is(uapi.KVM_RUN_DIRTY_REGS_OFFSET, must(x, 'kvm_run.kvm_dirty_regs'));
  t.is(uapi.KVM_RUN_SYNC_REGS_OFFSET, must(x, 'kvm_run.s'));
  t.is(uapi.KVM_RUN_EXIT_OFFSET + uapi.KVM_RUN_EXIT_SIZE, must(x, 'kvm_run.kvm_valid_regs'));
  // hypercall.flags (6.7+) overlays 6.1's longmode.
  t.is(uapi.KVM_RUN_EXIT_OFFSET + structs['kvm_run.hypercall'].offsetOf('flags'), must(x, 'kvm_run.hypercall.longmode'));
  // The absolute offset constants agree with the codecs.
  const abs = (codec: AnyStructCodec, f: string) => uapi.KVM_RUN_EXIT_OFFSET + codec.offsetOf(f);
  t.is(uapi.KVM_RUN_IO_DIRECTION_OFFSET, abs(structs['kvm_run.io'], 'direction'));
  t.is(uapi.KVM_RUN_IO_SIZE_OFFSET, abs(structs['kvm_run.io'], 'size'));
  t.is(uapi.KVM_RUN_IO_PORT_OFFSET, abs(structs['kvm_run.io'], 'port'));
  t.is(uapi.KVM_RUN_IO_COUNT_OFFSET, abs(structs['kvm_run.io'], 'count'));
  t.is(uapi.KVM_RUN_IO_DATA_OFFSET_OFFSET, abs(structs['kvm_run.io'], 'data_offset'));
  t.is(uapi.KVM_RUN_MMIO_PHYS_ADDR_OFFSET, abs(structs['kvm_run.mmio'], 'phys_addr'));
  t.is(uapi.KVM_RUN_MMIO_DATA_OFFSET, abs(structs['kvm_run.mmio'], 'data'));
  t.is(uapi.KVM_RUN_MMIO_LEN_OFFSET, abs(structs['kvm_run.mmio'], 'len'));
  t.is(uapi.KVM_RUN_MMIO_IS_WRITE_OFFSET, abs(structs['kvm_run.mmio'], 'is_write'));
  t.is(uapi.KVM_RUN_HYPERCALL_NR_OFFSET, abs(structs['kvm_run.hypercall'], 'nr'));
  t.is(uapi.KVM_RUN_HYPERCALL_ARGS_OFFSET, abs(structs['kvm_run.hypercall'], 'args'));
  t.is(uapi.KVM_RUN_HYPERCALL_RET_OFFSET, abs(structs['kvm_run.hypercall'], 'ret'));
  t.is(uapi.KVM_RUN_HYPERCALL_FLAGS_OFFSET, abs(structs['kvm_run.hypercall'], 'flags'));
  t.is(uapi.KVM_RUN_SYSTEM_EVENT_TYPE_OFFSET, abs(structs['kvm_run.system_event'], 'type'));
  t.is(uapi.KVM_RUN_SYSTEM_EVENT_NDATA_OFFSET, abs(structs['kvm_run.system_event'], 'ndata'));
  t.is(uapi.KVM_RUN_SYSTEM_EVENT_DATA_OFFSET, abs(structs['kvm_run.system_event'], 'data'));
  t.is(uapi.KVM_RUN_INTERNAL_SUBERROR_OFFSET, abs(structs['kvm_run.internal'], 'suberror'));
  t.is(uapi.KVM_RUN_INTERNAL_NDATA_OFFSET, abs(structs['kvm_run.internal'], 'ndata'));
  t.is(uapi.KVM_RUN_INTERNAL_DATA_OFFSET, abs(structs['kvm_run.internal'], 'data'));
  t.is(uapi.KVM_RUN_FAIL_ENTRY_REASON_OFFSET, abs(structs['kvm_run.fail_entry'], 'hardware_entry_failure_reason'));
  t.is(uapi.KVM_RUN_FAIL_ENTRY_CPU_OFFSET, abs(structs['kvm_run.fail_entry'], 'cpu'));
});

test('ioctl numbers and macros vs C (or the reference where 6.1 lacks them)', (t) => {
  const f = cFacts();
  let fromC = 0;
  let fromRef = 0;
  for (const [name, ours] of macroList()) {
    const c = f.macros.get(name);
    if (c !== undefined) {
      t.is(BigInt(ours), c, `${name} vs C`);
      fromC++;
    } else {
      t.true(f.undefinedMacros.has(name), `${name}: no probe output`);
      const ref = REFERENCE_MACROS[name];
      if (ref === undefined) {
        t.fail(`${name} is not in the 6.1 headers and has no reference value`);
        continue;
      }
      t.is(BigInt(ours), BigInt(ref), `${name} vs reference`);
      fromRef++;
    }
  }
  t.true(fromC > 250, `compared ${fromC} macros with C`);
  t.true(fromRef > 30, `compared ${fromRef} macros with the reference`);
  // Every allowlisted ioctl was compared with C, or (the 6.8+ guest_memfd ones) with the newer headers' value.
  for (const d of uapi.IOCTLS) t.true(f.macros.has(d.name) || REFERENCE_MACROS[d.name] !== undefined, `${d.name} compared`);
});

test('enum values vs C (or the reference)', (t) => {
  const f = cFacts();
  const list = enumList61();
  t.true(list.length >= 22 + 9 + 26);
  for (const [name, ours] of list) t.is(BigInt(ours), must(f.macros, name), name);
  t.is(must(f.macros, 'SEV_RET_INAVLID_CONFIG'), BigInt(uapi.SEV_RET.INVALID_CONFIG));
  for (const [name, ref] of Object.entries(REFERENCE_ENUMS)) {
    const ours = name.startsWith('KVM_SEV_')
      ? (uapi.KVM_SEV as Readonly<Record<string, number>>)[name.slice('KVM_SEV_'.length)]
      : (uapi.SEV_CMD as Readonly<Record<string, number>>)[name];
    t.is(ours, ref, name);
  }
});

test('every KVM_EXIT_* and every generic/x86 KVM_CAP_* of the system header is exported', (t) => {
  const kvmh = readFileSync('/usr/include/linux/kvm.h', 'utf8');
  const exits = [...kvmh.matchAll(/^#define\s+KVM_EXIT_([A-Z0-9_]+)\s+(\d+)\b/gm)].filter(
    (m) => !/^(HYPERV_|XEN_|IO_IN$|IO_OUT$)/.test(m[1]!),
  );
  t.true(exits.length >= 38);
  for (const m of exits) t.is((uapi.KVM_EXIT as Readonly<Record<string, number>>)[m[1]!], Number(m[2]), `KVM_EXIT_${m[1]}`);
  const caps = [...kvmh.matchAll(/^#define\s+KVM_CAP_([A-Z0-9_]+)\s+(\d+)\b/gm)].filter(
    (m) =>
      !/^(PPC|S390|MIPS|ARM|SPAPR|RISCV|IRQ_XICS|IRQ_MPIC|IOMMU$|ASSIGN_DEV_IRQ$|PCI_SEGMENT$|PCI_2_3$|SW_TLB$|MSI_DEVID$)/.test(m[1]!),
  );
  t.true(caps.length > 100);
  for (const m of caps) t.is((uapi.KVM_CAP as Readonly<Record<string, number>>)[m[1]!], Number(m[2]), `KVM_CAP_${m[1]}`);
});

test('errno numbers and glibc strerror texts vs C', (t) => {
  const f = cFacts();
  let checked = 0;
  for (const [name, ours] of Object.entries(uapi.ERRNO)) {
    const c = f.errnos.get(name);
    if (c !== undefined) {
      t.is(ours, c, name);
      checked++;
    } else {
      t.is(ours, KERNEL_ERRNOS[name]!, `${name} (kernel-internal)`);
    }
  }
  t.true(checked >= 131);
  for (const [name, n] of Object.entries(KERNEL_ERRNOS)) t.is(uapi.ERRNO[name], n, name);
  for (let i = 1; i <= 133; i++) t.is(uapi.errnoMessage(i), must(f.strerror, i), `strerror(${i})`);
});
