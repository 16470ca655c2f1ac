/**
 * Constants of the KVM interfaces a VMM drives besides SEV: interrupt controllers and timers, GSI
 * routing, irqfd/ioeventfd, dirty logging, user-space MSR exits and the MSR filter, clocks, devices
 * and binary stats (`<linux/kvm.h>`, `<asm/kvm.h>` of x86_64). Named as in constants.ts: grouped
 * values without their common prefix, single ones with the full kernel name.
 */

/** `KVM_IRQCHIP_*`: kvm_irqchip.chip_id and kvm_irq_routing_irqchip.irqchip. */
export const KVM_IRQCHIP = Object.freeze({ PIC_MASTER: 0, PIC_SLAVE: 1, IOAPIC: 2 } as const);
/** `KVM_NR_IRQCHIPS` */
export const KVM_NR_IRQCHIPS = 3;
/** `KVM_IOAPIC_NUM_PINS`: redirection-table entries of kvm_ioapic_state. */
export const KVM_IOAPIC_NUM_PINS = 24;
/** `KVM_PIT_SPEAKER_DUMMY`: kvm_pit_config.flags (a dummy speaker port 0x61). */
export const KVM_PIT_SPEAKER_DUMMY = 1;
/** `KVM_PIT_FLAGS_*`: kvm_pit_state2.flags. */
export const KVM_PIT_FLAGS = Object.freeze({ HPET_LEGACY: 0x1, SPEAKER_DATA_ON: 0x2 } as const);

/** `KVM_IRQ_ROUTING_*`: kvm_irq_routing_entry.type. */
export const KVM_IRQ_ROUTING = Object.freeze({ IRQCHIP: 1, MSI: 2, S390_ADAPTER: 3, HV_SINT: 4, XEN_EVTCHN: 5 } as const);
/** `KVM_MSI_VALID_DEVID`: kvm_msi.flags / routing entry flags (not used on x86). */
export const KVM_MSI_VALID_DEVID = 1 << 0;

/** `KVM_IRQFD_FLAG_*`: kvm_irqfd.flags. */
export const KVM_IRQFD_FLAG = Object.freeze({ DEASSIGN: 1 << 0, RESAMPLE: 1 << 1 } as const);
/** `KVM_IOEVENTFD_FLAG_*`: kvm_ioeventfd.flags. */
export const KVM_IOEVENTFD_FLAG = Object.freeze({ DATAMATCH: 1 << 0, PIO: 1 << 1, DEASSIGN: 1 << 2, VIRTIO_CCW_NOTIFY: 1 << 3 } as const);

/** `KVM_DIRTY_LOG_*`: KVM_ENABLE_CAP(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) args[0] bits. */
export const KVM_DIRTY_LOG = Object.freeze({ MANUAL_PROTECT_ENABLE: 1 << 0, INITIALLY_SET: 1 << 1 } as const);

/** `KVM_MSR_EXIT_REASON_*`: kvm_run.msr.reason, and KVM_ENABLE_CAP(KVM_CAP_X86_USER_SPACE_MSR) args[0]. */
export const KVM_MSR_EXIT_REASON = Object.freeze({ INVAL: 1 << 0, UNKNOWN: 1 << 1, FILTER: 1 << 2 } as const);
/** `KVM_MSR_FILTER_READ` / `_WRITE`: kvm_msr_filter_range.flags. */
export const KVM_MSR_FILTER = Object.freeze({ READ: 1 << 0, WRITE: 1 << 1 } as const);
/** `KVM_MSR_FILTER_DEFAULT_ALLOW` / `_DENY`: kvm_msr_filter.flags. */
export const KVM_MSR_FILTER_DEFAULT_ALLOW = 0;
export const KVM_MSR_FILTER_DEFAULT_DENY = 1 << 0;
/** `KVM_MSR_FILTER_MAX_RANGES` */
export const KVM_MSR_FILTER_MAX_RANGES = 16;
/** `KVM_MSR_FILTER_MAX_BITMAP_SIZE`: bytes of one range's bitmap at most (so nmsrs <= 0x3000). */
export const KVM_MSR_FILTER_MAX_BITMAP_SIZE = 0x600;

/** `KVM_CLOCK_*`: kvm_clock_data.flags. */
export const KVM_CLOCK = Object.freeze({ TSC_STABLE: 2, REALTIME: 1 << 2, HOST_TSC: 1 << 3 } as const);

/** `KVM_CREATE_DEVICE_TEST`: kvm_create_device.flags (only ask whether the type exists). */
export const KVM_CREATE_DEVICE_TEST = 1;
/** `KVM_DEV_TYPE_*` (enum kvm_device_type): kvm_create_device.type. On x86 only VFIO exists. */
export const KVM_DEV_TYPE = Object.freeze({
  FSL_MPIC_20: 1,
  FSL_MPIC_42: 2,
  XICS: 3,
  VFIO: 4,
  ARM_VGIC_V2: 5,
  FLIC: 6,
  ARM_VGIC_V3: 7,
  ARM_VGIC_ITS: 8,
  XIVE: 9,
  ARM_PV_TIME: 10,
} as const);
/** `KVM_DEV_VFIO_*` groups and attributes of the VFIO device. */
export const KVM_DEV_VFIO = Object.freeze({ GROUP: 1, GROUP_ADD: 1, GROUP_DEL: 2 } as const);

/** `KVM_STATS_TYPE_*` (flags bits 0-3 of kvm_stats_desc). */
export const KVM_STATS_TYPE = Object.freeze({ CUMULATIVE: 0x0, INSTANT: 0x1, PEAK: 0x2, LINEAR_HIST: 0x3, LOG_HIST: 0x4 } as const);
export const KVM_STATS_TYPE_MASK = 0xf;
/** `KVM_STATS_UNIT_*` (flags bits 4-7). */
export const KVM_STATS_UNIT = Object.freeze({ NONE: 0x00, BYTES: 0x10, SECONDS: 0x20, CYCLES: 0x30, BOOLEAN: 0x40 } as const);
export const KVM_STATS_UNIT_MASK = 0xf0;
/** `KVM_STATS_BASE_*` (flags bits 8-11). */
export const KVM_STATS_BASE = Object.freeze({ POW10: 0x000, POW2: 0x100 } as const);
export const KVM_STATS_BASE_MASK = 0xf00;

/** `KVM_X86_QUIRK_*` and friends are not used; `KVM_HC_*` hypercall numbers (`<linux/kvm_para.h>`). */
export const KVM_HC = Object.freeze({
  VAPIC_POLL_IRQ: 1,
  MMU_OP: 2,
  FEATURES: 3,
  PPC_MAP_MAGIC_PAGE: 4,
  KICK_CPU: 5,
  MIPS_GET_CLOCK_FREQ: 6,
  MIPS_EXIT_VM: 7,
  MIPS_CONSOLE_OUTPUT: 8,
  CLOCK_PAIRING: 9,
  SEND_IPI: 10,
  SCHED_YIELD: 11,
  MAP_GPA_RANGE: 12,
} as const);
