/**
 * `kvm-sev/uapi`: the kernel's userspace ABI for KVM and SEV, byte for byte: constants, ioctl numbers,
 * errno and firmware-status tables, and struct codecs.
 *
 * @module kvm-sev/uapi
 */

export * from './errors.js';
export * from './ioc.js';
export * from './errno.js';
export * from './sev-status.js';
export * from './constants.js';
export * from './codec.js';
export * from './ioctl-arg.js';
export * from './kvm-structs.js';
export * from './sev-structs.js';
export * from './psp-structs.js';
export * from './kvm-run.js';
export * from './local-migration-structs.js';
export * from './sev-command-table.js';
export * from './vmm-constants.js';
export * from './vmm-structs.js';
export * from './ioctls.js';

import * as kvm from './kvm-structs.js';
import * as sev from './sev-structs.js';
import * as psp from './psp-structs.js';
import * as run from './kvm-run.js';
import * as lm from './local-migration-structs.js';
import * as vmm from './vmm-structs.js';

/**
 * Every codec keyed by its kernel struct name (`structs.kvm_sev_cmd`, `structs['kvm_run.io']`; the bare
 * `__u64` box is `structs.__u64`). Nested anonymous structs use a dotted name.
 */
export const structs = Object.freeze({
  __u64: kvm.u64_value,
  kvm_userspace_memory_region: kvm.kvm_userspace_memory_region,
  kvm_userspace_memory_region2: kvm.kvm_userspace_memory_region2,
  kvm_memory_attributes: kvm.kvm_memory_attributes,
  kvm_create_guest_memfd: kvm.kvm_create_guest_memfd,
  kvm_enable_cap: kvm.kvm_enable_cap,
  kvm_regs: kvm.kvm_regs,
  kvm_segment: kvm.kvm_segment,
  kvm_dtable: kvm.kvm_dtable,
  kvm_sregs: kvm.kvm_sregs,
  kvm_fpu: kvm.kvm_fpu,
  kvm_xsave: kvm.kvm_xsave,
  kvm_xcr: kvm.kvm_xcr,
  kvm_xcrs: kvm.kvm_xcrs,
  kvm_msr_entry: kvm.kvm_msr_entry,
  kvm_msrs: kvm.kvm_msrs,
  kvm_msr_list: kvm.kvm_msr_list,
  kvm_cpuid_entry2: kvm.kvm_cpuid_entry2,
  kvm_cpuid2: kvm.kvm_cpuid2,
  kvm_lapic_state: kvm.kvm_lapic_state,
  'kvm_vcpu_events.exception': kvm.kvm_vcpu_events_exception,
  'kvm_vcpu_events.interrupt': kvm.kvm_vcpu_events_interrupt,
  'kvm_vcpu_events.nmi': kvm.kvm_vcpu_events_nmi,
  'kvm_vcpu_events.smi': kvm.kvm_vcpu_events_smi,
  'kvm_vcpu_events.triple_fault': kvm.kvm_vcpu_events_triple_fault,
  kvm_vcpu_events: kvm.kvm_vcpu_events,
  kvm_mp_state: kvm.kvm_mp_state,
  kvm_debugregs: kvm.kvm_debugregs,
  kvm_device_attr: kvm.kvm_device_attr,
  kvm_guest_debug_arch: kvm.kvm_guest_debug_arch,
  kvm_guest_debug: kvm.kvm_guest_debug,
  kvm_enc_region: kvm.kvm_enc_region,
  kvm_clock_data: kvm.kvm_clock_data,
  kvm_sev_cmd: sev.kvm_sev_cmd,
  kvm_sev_init: sev.kvm_sev_init,
  kvm_sev_launch_start: sev.kvm_sev_launch_start,
  kvm_sev_launch_update_data: sev.kvm_sev_launch_update_data,
  kvm_sev_launch_secret: sev.kvm_sev_launch_secret,
  kvm_sev_launch_measure: sev.kvm_sev_launch_measure,
  kvm_sev_guest_status: sev.kvm_sev_guest_status,
  kvm_sev_dbg: sev.kvm_sev_dbg,
  kvm_sev_attestation_report: sev.kvm_sev_attestation_report,
  kvm_sev_send_start: sev.kvm_sev_send_start,
  kvm_sev_send_update_data: sev.kvm_sev_send_update_data,
  kvm_sev_receive_start: sev.kvm_sev_receive_start,
  kvm_sev_receive_update_data: sev.kvm_sev_receive_update_data,
  kvm_sev_snp_launch_start: sev.kvm_sev_snp_launch_start,
  kvm_sev_snp_launch_update: sev.kvm_sev_snp_launch_update,
  kvm_sev_snp_launch_finish: sev.kvm_sev_snp_launch_finish,
  kvm_sev_local_send: lm.kvm_sev_local_send,
  kvm_sev_local_receive: lm.kvm_sev_local_receive,
  sev_issue_cmd: psp.sev_issue_cmd,
  sev_user_data_status: psp.sev_user_data_status,
  sev_user_data_pek_csr: psp.sev_user_data_pek_csr,
  sev_user_data_pek_cert_import: psp.sev_user_data_pek_cert_import,
  sev_user_data_pdh_cert_export: psp.sev_user_data_pdh_cert_export,
  sev_user_data_get_id: psp.sev_user_data_get_id,
  sev_user_data_get_id2: psp.sev_user_data_get_id2,
  sev_user_data_snp_status: psp.sev_user_data_snp_status,
  sev_user_data_snp_config: psp.sev_user_data_snp_config,
  sev_user_data_snp_vlek_load: psp.sev_user_data_snp_vlek_load,
  kvm_run: run.kvm_run_header,
  'kvm_run.hw': run.kvm_run_hw,
  'kvm_run.fail_entry': run.kvm_run_fail_entry,
  'kvm_run.ex': run.kvm_run_ex,
  'kvm_run.io': run.kvm_run_io,
  'kvm_run.mmio': run.kvm_run_mmio,
  'kvm_run.hypercall': run.kvm_run_hypercall,
  'kvm_run.system_event': run.kvm_run_system_event,
  'kvm_run.internal': run.kvm_run_internal,
  'kvm_run.memory_fault': run.kvm_run_memory_fault,
  'kvm_run.msr': run.kvm_run_msr,
  'kvm_run.eoi': run.kvm_run_eoi,
  kvm_irq_level: vmm.kvm_irq_level,
  kvm_pic_state: vmm.kvm_pic_state,
  kvm_ioapic_state: vmm.kvm_ioapic_state,
  kvm_irqchip: vmm.kvm_irqchip,
  kvm_pit_config: vmm.kvm_pit_config,
  kvm_pit_channel_state: vmm.kvm_pit_channel_state,
  kvm_pit_state2: vmm.kvm_pit_state2,
  kvm_interrupt: vmm.kvm_interrupt,
  kvm_msi: vmm.kvm_msi,
  kvm_irq_routing_entry: vmm.kvm_irq_routing_entry,
  kvm_irq_routing: vmm.kvm_irq_routing,
  kvm_irqfd: vmm.kvm_irqfd,
  kvm_ioeventfd: vmm.kvm_ioeventfd,
  kvm_dirty_log: vmm.kvm_dirty_log,
  kvm_clear_dirty_log: vmm.kvm_clear_dirty_log,
  kvm_msr_filter_range: vmm.kvm_msr_filter_range,
  kvm_msr_filter: vmm.kvm_msr_filter,
  kvm_create_device: vmm.kvm_create_device,
  kvm_stats_header: vmm.kvm_stats_header,
  kvm_stats_desc: vmm.kvm_stats_desc,
  'kvm_run.sync_flags': run.kvm_run_sync_flags,
} as const);
