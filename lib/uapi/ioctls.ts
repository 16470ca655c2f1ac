/**
 * ioctl request numbers, computed from the codecs' sizes with the kernel's `_IO*` macros, and the
 * allowlist table {@link IOCTLS} that backends use to validate and route calls.
 */

import { type AnyStructCodec, type VariableLayout } from './codec.js';
import { KVMIO, SEV_IOC_TYPE } from './constants.js';
import { invalidArgType } from './errors.js';
import { _IO, _IOR, _IOW, _IOWR } from './ioc.js';
import {
  KVM_CPUID2_LAYOUT,
  KVM_MSRS_LAYOUT,
  KVM_MSR_LIST_LAYOUT,
  kvm_clock_data,
  kvm_cpuid2,
  kvm_create_guest_memfd,
  kvm_debugregs,
  kvm_device_attr,
  kvm_enable_cap,
  kvm_enc_region,
  kvm_fpu,
  kvm_guest_debug,
  kvm_lapic_state,
  kvm_memory_attributes,
  kvm_mp_state,
  kvm_msr_list,
  kvm_msrs,
  kvm_regs,
  kvm_sregs,
  kvm_userspace_memory_region,
  kvm_userspace_memory_region2,
  kvm_vcpu_events,
  kvm_xcrs,
  kvm_xsave,
  u64_value,
} from './kvm-structs.js';
import { sev_issue_cmd } from './psp-structs.js';
import {
  KVM_IRQ_ROUTING_LAYOUT,
  kvm_clear_dirty_log,
  kvm_create_device,
  kvm_dirty_log,
  kvm_interrupt,
  kvm_ioeventfd,
  kvm_irq_level,
  kvm_irq_routing,
  kvm_irqchip,
  kvm_irqfd,
  kvm_msi,
  kvm_msr_filter,
  kvm_pit_config,
  kvm_pit_state2,
} from './vmm-structs.js';
import { kvm_sev_cmd } from './sev-structs.js';

/** `sizeof(unsigned long)` on x86_64. */
const SIZEOF_UNSIGNED_LONG = 8;

// /dev/kvm
/** `_IO(KVMIO, 0x00)`: returns KVM_API_VERSION (12). */
export const KVM_GET_API_VERSION = _IO(KVMIO, 0x00);
/** `_IO(KVMIO, 0x01)`: arg = VM type; returns a VM fd. */
export const KVM_CREATE_VM = _IO(KVMIO, 0x01);
/** `_IOWR(KVMIO, 0x02, struct kvm_msr_list)` */
export const KVM_GET_MSR_INDEX_LIST = _IOWR(KVMIO, 0x02, kvm_msr_list.size);
/** `_IO(KVMIO, 0x03)`: arg = KVM_CAP_*; returns 0 if absent, else a cap-specific positive value. */
export const KVM_CHECK_EXTENSION = _IO(KVMIO, 0x03);
/** `_IO(KVMIO, 0x04)`: size of the vCPU mmap (kvm_run + PIO/MMIO pages). */
export const KVM_GET_VCPU_MMAP_SIZE = _IO(KVMIO, 0x04);
/** `_IOWR(KVMIO, 0x05, struct kvm_cpuid2)` */
export const KVM_GET_SUPPORTED_CPUID = _IOWR(KVMIO, 0x05, kvm_cpuid2.size);
/** `_IOWR(KVMIO, 0x0a, struct kvm_msr_list)` */
export const KVM_GET_MSR_FEATURE_INDEX_LIST = _IOWR(KVMIO, 0x0a, kvm_msr_list.size);

// VM fd
/** `_IO(KVMIO, 0x41)`: arg = vCPU id; returns a vCPU fd. */
export const KVM_CREATE_VCPU = _IO(KVMIO, 0x41);
/** `_IOW(KVMIO, 0x46, struct kvm_userspace_memory_region)` */
export const KVM_SET_USER_MEMORY_REGION = _IOW(KVMIO, 0x46, kvm_userspace_memory_region.size);
/** `_IO(KVMIO, 0x47)`: arg = guest physical address of the 3-page TSS region. */
export const KVM_SET_TSS_ADDR = _IO(KVMIO, 0x47);
/** `_IOW(KVMIO, 0x48, __u64)`: arg points at the guest physical address. */
export const KVM_SET_IDENTITY_MAP_ADDR = _IOW(KVMIO, 0x48, u64_value.size);
/** `_IOW(KVMIO, 0x42, struct kvm_dirty_log)`: KVM writes the slot's dirty bitmap and re-protects it (unless manual protect). */
export const KVM_GET_DIRTY_LOG = _IOW(KVMIO, 0x42, kvm_dirty_log.size);
/** `_IOW(KVMIO, 0x49, struct kvm_userspace_memory_region2)` (6.8+). */
export const KVM_SET_USER_MEMORY_REGION2 = _IOW(KVMIO, 0x49, kvm_userspace_memory_region2.size);
/** `_IO(KVMIO, 0x60)`: PIC pair, IOAPIC and per-vCPU LAPICs in the kernel. */
export const KVM_CREATE_IRQCHIP = _IO(KVMIO, 0x60);
/** `_IOW(KVMIO, 0x61, struct kvm_irq_level)` */
export const KVM_IRQ_LINE = _IOW(KVMIO, 0x61, kvm_irq_level.size);
/** `_IOWR(KVMIO, 0x62, struct kvm_irqchip)` */
export const KVM_GET_IRQCHIP = _IOWR(KVMIO, 0x62, kvm_irqchip.size);
/** `_IOR(KVMIO, 0x63, struct kvm_irqchip)` (direction R although the struct is input, as in the kernel). */
export const KVM_SET_IRQCHIP = _IOR(KVMIO, 0x63, kvm_irqchip.size);
/** `_IOWR(KVMIO, 0x67, struct kvm_irq_level)`: KVM_IRQ_LINE that writes back whether the interrupt was delivered. */
export const KVM_IRQ_LINE_STATUS = _IOWR(KVMIO, 0x67, kvm_irq_level.size);
/** `_IOW(KVMIO, 0x6a, struct kvm_irq_routing)`: replaces the whole GSI routing table. */
export const KVM_SET_GSI_ROUTING = _IOW(KVMIO, 0x6a, kvm_irq_routing.size);
/** `_IOW(KVMIO, 0x76, struct kvm_irqfd)` */
export const KVM_IRQFD = _IOW(KVMIO, 0x76, kvm_irqfd.size);
/** `_IOW(KVMIO, 0x77, struct kvm_pit_config)` */
export const KVM_CREATE_PIT2 = _IOW(KVMIO, 0x77, kvm_pit_config.size);
/** `_IO(KVMIO, 0x78)`: arg = the boot vCPU's id (before any vCPU exists). */
export const KVM_SET_BOOT_CPU_ID = _IO(KVMIO, 0x78);
/** `_IOW(KVMIO, 0x79, struct kvm_ioeventfd)` */
export const KVM_IOEVENTFD = _IOW(KVMIO, 0x79, kvm_ioeventfd.size);
/** `_IOW(KVMIO, 0x7b, struct kvm_clock_data)` */
export const KVM_SET_CLOCK = _IOW(KVMIO, 0x7b, kvm_clock_data.size);
/** `_IOR(KVMIO, 0x7c, struct kvm_clock_data)` */
export const KVM_GET_CLOCK = _IOR(KVMIO, 0x7c, kvm_clock_data.size);
/** `_IOR(KVMIO, 0x9f, struct kvm_pit_state2)` */
export const KVM_GET_PIT2 = _IOR(KVMIO, 0x9f, kvm_pit_state2.size);
/** `_IOW(KVMIO, 0xa0, struct kvm_pit_state2)` */
export const KVM_SET_PIT2 = _IOW(KVMIO, 0xa0, kvm_pit_state2.size);
/** `_IO(KVMIO, 0xa2)`: arg = the guest TSC frequency in kHz (VM fd: the default for new vCPUs; vCPU fd: that vCPU). */
export const KVM_SET_TSC_KHZ = _IO(KVMIO, 0xa2);
/** `_IOW(KVMIO, 0xa5, struct kvm_msi)`: 1 if delivered, 0 if the guest blocked it. */
export const KVM_SIGNAL_MSI = _IOW(KVMIO, 0xa5, kvm_msi.size);
/** `_IOWR(KVMIO, 0xc0, struct kvm_clear_dirty_log)` (KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2). */
export const KVM_CLEAR_DIRTY_LOG = _IOWR(KVMIO, 0xc0, kvm_clear_dirty_log.size);
/** `_IOW(KVMIO, 0xc6, struct kvm_msr_filter)` */
export const KVM_X86_SET_MSR_FILTER = _IOW(KVMIO, 0xc6, kvm_msr_filter.size);
/** `_IO(KVMIO, 0xce)`: returns a binary-stats fd of the VM or vCPU. */
export const KVM_GET_STATS_FD = _IO(KVMIO, 0xce);
/** `_IOWR(KVMIO, 0xe0, struct kvm_create_device)`: KVM writes the device fd into the struct. */
export const KVM_CREATE_DEVICE = _IOWR(KVMIO, 0xe0, kvm_create_device.size);
/** `_IOW(KVMIO, 0xa3, struct kvm_enable_cap)` (VM and vCPU fds). */
export const KVM_ENABLE_CAP = _IOW(KVMIO, 0xa3, kvm_enable_cap.size);
/**
 * `_IOWR(KVMIO, 0xba, unsigned long)` = 0xC008AEBA. The size field says 8, but KVM copies a 24-byte
 * `struct kvm_sev_cmd` in and out. A NULL argument is a "SEV enabled?" probe (0 or ENOTTY).
 */
export const KVM_MEMORY_ENCRYPT_OP = _IOWR(KVMIO, 0xba, SIZEOF_UNSIGNED_LONG);
/** `_IOR(KVMIO, 0xbb, struct kvm_enc_region)` (direction R although the struct is input). */
export const KVM_MEMORY_ENCRYPT_REG_REGION = _IOR(KVMIO, 0xbb, kvm_enc_region.size);
/** `_IOR(KVMIO, 0xbc, struct kvm_enc_region)` */
export const KVM_MEMORY_ENCRYPT_UNREG_REGION = _IOR(KVMIO, 0xbc, kvm_enc_region.size);
/** `_IOW(KVMIO, 0xd2, struct kvm_memory_attributes)` (6.8+). */
export const KVM_SET_MEMORY_ATTRIBUTES = _IOW(KVMIO, 0xd2, kvm_memory_attributes.size);
/** `_IOWR(KVMIO, 0xd4, struct kvm_create_guest_memfd)` (6.8+): returns a guest_memfd. */
export const KVM_CREATE_GUEST_MEMFD = _IOWR(KVMIO, 0xd4, kvm_create_guest_memfd.size);
/** `_IOW(KVMIO, 0xe1, struct kvm_device_attr)`: KVM reads the value from `*addr`. */
export const KVM_SET_DEVICE_ATTR = _IOW(KVMIO, 0xe1, kvm_device_attr.size);
/** `_IOW(KVMIO, 0xe2, struct kvm_device_attr)`: KVM writes the value to `*addr`. */
export const KVM_GET_DEVICE_ATTR = _IOW(KVMIO, 0xe2, kvm_device_attr.size);
/** `_IOW(KVMIO, 0xe3, struct kvm_device_attr)`: 0 if the attribute exists, ENXIO otherwise. */
export const KVM_HAS_DEVICE_ATTR = _IOW(KVMIO, 0xe3, kvm_device_attr.size);

// vCPU fd
/** `_IO(KVMIO, 0x80)` */
export const KVM_RUN = _IO(KVMIO, 0x80);
/** `_IOR(KVMIO, 0x81, struct kvm_regs)` */
export const KVM_GET_REGS = _IOR(KVMIO, 0x81, kvm_regs.size);
/** `_IOW(KVMIO, 0x82, struct kvm_regs)` */
export const KVM_SET_REGS = _IOW(KVMIO, 0x82, kvm_regs.size);
/** `_IOR(KVMIO, 0x83, struct kvm_sregs)` */
export const KVM_GET_SREGS = _IOR(KVMIO, 0x83, kvm_sregs.size);
/** `_IOW(KVMIO, 0x84, struct kvm_sregs)` */
export const KVM_SET_SREGS = _IOW(KVMIO, 0x84, kvm_sregs.size);
/** `_IOWR(KVMIO, 0x88, struct kvm_msrs)`: returns the number of MSRs read. */
export const KVM_GET_MSRS = _IOWR(KVMIO, 0x88, kvm_msrs.size);
/** `_IOW(KVMIO, 0x89, struct kvm_msrs)`: returns the number of MSRs set. */
export const KVM_SET_MSRS = _IOW(KVMIO, 0x89, kvm_msrs.size);
/** `_IOR(KVMIO, 0x8c, struct kvm_fpu)` */
export const KVM_GET_FPU = _IOR(KVMIO, 0x8c, kvm_fpu.size);
/** `_IOW(KVMIO, 0x8d, struct kvm_fpu)` */
export const KVM_SET_FPU = _IOW(KVMIO, 0x8d, kvm_fpu.size);
/** `_IOR(KVMIO, 0x8e, struct kvm_lapic_state)` */
export const KVM_GET_LAPIC = _IOR(KVMIO, 0x8e, kvm_lapic_state.size);
/** `_IOW(KVMIO, 0x8f, struct kvm_lapic_state)` */
export const KVM_SET_LAPIC = _IOW(KVMIO, 0x8f, kvm_lapic_state.size);
/** `_IOW(KVMIO, 0x86, struct kvm_interrupt)`: queue a vector (only without an in-kernel LAPIC). */
export const KVM_INTERRUPT = _IOW(KVMIO, 0x86, kvm_interrupt.size);
/** `_IO(KVMIO, 0x9a)`: queue an NMI. */
export const KVM_NMI = _IO(KVMIO, 0x9a);
/** `_IO(KVMIO, 0xad)`: tell the guest's kvmclock that the vCPU was paused (no soft-lockup warning). */
export const KVM_KVMCLOCK_CTRL = _IO(KVMIO, 0xad);
/** `_IOW(KVMIO, 0x90, struct kvm_cpuid2)` */
export const KVM_SET_CPUID2 = _IOW(KVMIO, 0x90, kvm_cpuid2.size);
/** `_IOR(KVMIO, 0x98, struct kvm_mp_state)` */
export const KVM_GET_MP_STATE = _IOR(KVMIO, 0x98, kvm_mp_state.size);
/** `_IOW(KVMIO, 0x99, struct kvm_mp_state)` */
export const KVM_SET_MP_STATE = _IOW(KVMIO, 0x99, kvm_mp_state.size);
/** `_IOW(KVMIO, 0x9b, struct kvm_guest_debug)` */
export const KVM_SET_GUEST_DEBUG = _IOW(KVMIO, 0x9b, kvm_guest_debug.size);
/** `_IOR(KVMIO, 0x9f, struct kvm_vcpu_events)` */
export const KVM_GET_VCPU_EVENTS = _IOR(KVMIO, 0x9f, kvm_vcpu_events.size);
/** `_IOW(KVMIO, 0xa0, struct kvm_vcpu_events)` */
export const KVM_SET_VCPU_EVENTS = _IOW(KVMIO, 0xa0, kvm_vcpu_events.size);
/** `_IOR(KVMIO, 0xa1, struct kvm_debugregs)` */
export const KVM_GET_DEBUGREGS = _IOR(KVMIO, 0xa1, kvm_debugregs.size);
/** `_IOW(KVMIO, 0xa2, struct kvm_debugregs)` */
export const KVM_SET_DEBUGREGS = _IOW(KVMIO, 0xa2, kvm_debugregs.size);
/** `_IO(KVMIO, 0xa3)`: returns the vCPU's TSC frequency in kHz. */
export const KVM_GET_TSC_KHZ = _IO(KVMIO, 0xa3);
/** `_IOR(KVMIO, 0xa4, struct kvm_xsave)` */
export const KVM_GET_XSAVE = _IOR(KVMIO, 0xa4, kvm_xsave.size);
/** `_IOW(KVMIO, 0xa5, struct kvm_xsave)` */
export const KVM_SET_XSAVE = _IOW(KVMIO, 0xa5, kvm_xsave.size);
/** `_IOR(KVMIO, 0xa6, struct kvm_xcrs)` */
export const KVM_GET_XCRS = _IOR(KVMIO, 0xa6, kvm_xcrs.size);
/** `_IOW(KVMIO, 0xa7, struct kvm_xcrs)` */
export const KVM_SET_XCRS = _IOW(KVMIO, 0xa7, kvm_xcrs.size);

// /dev/sev
/** `_IOWR('S', 0x0, struct sev_issue_cmd)` = 0xC0105300. */
export const SEV_ISSUE_CMD = _IOWR(SEV_IOC_TYPE, 0x0, sev_issue_cmd.size);

/** Which kind of fd an ioctl is issued on ('device': an fd from KVM_CREATE_DEVICE). */
export type FdKind = 'kvm' | 'vm' | 'vcpu' | 'sev' | 'device';

/** One allowed ioctl. */
export interface IoctlDef {
  /** The kernel macro name. */
  readonly name: string;
  /** The request number (unsigned 32-bit). */
  readonly request: number;
  /** The third argument: none (0), an integer by value, or a pointer to a struct. */
  readonly arg: 'none' | 'int' | 'struct';
  /** For `'struct'`: what the pointer points at (for variable-length ones: the header). */
  readonly struct?: AnyStructCodec;
  /** For kvm_msrs, kvm_cpuid2 and kvm_msr_list: the header's element count and the element size. */
  readonly variable?: VariableLayout;
  /** The ioctl returns a new fd (KVM_CREATE_DEVICE: writes it into the struct, at {@link fdOut}). */
  readonly returnsFd?: true;
  /** Where KVM writes the new fd in the struct, when it is not the return value (KVM_CREATE_DEVICE). */
  readonly fdOut?: number;
  /** The fd kinds that accept it. */
  readonly fds: readonly FdKind[];
  /** A NULL pointer argument is meaningful (KVM_MEMORY_ENCRYPT_OP's "SEV enabled?" probe). */
  readonly nullArg?: true;
}

function def(d: IoctlDef): IoctlDef {
  return Object.freeze({ ...d, fds: Object.freeze([...d.fds]) });
}

/** The allowlist: every ioctl this package issues, and nothing else. */
export const IOCTLS: readonly IoctlDef[] = Object.freeze([
  // /dev/kvm
  def({ name: 'KVM_GET_API_VERSION', request: KVM_GET_API_VERSION, arg: 'none', fds: ['kvm'] }),
  def({ name: 'KVM_CREATE_VM', request: KVM_CREATE_VM, arg: 'int', returnsFd: true, fds: ['kvm'] }),
  def({ name: 'KVM_CHECK_EXTENSION', request: KVM_CHECK_EXTENSION, arg: 'int', fds: ['kvm', 'vm'] }),
  def({ name: 'KVM_GET_VCPU_MMAP_SIZE', request: KVM_GET_VCPU_MMAP_SIZE, arg: 'none', fds: ['kvm'] }),
  def({
    name: 'KVM_GET_SUPPORTED_CPUID',
    request: KVM_GET_SUPPORTED_CPUID,
    arg: 'struct',
    struct: kvm_cpuid2,
    variable: KVM_CPUID2_LAYOUT,
    fds: ['kvm'],
  }),
  def({
    name: 'KVM_GET_MSR_INDEX_LIST',
    request: KVM_GET_MSR_INDEX_LIST,
    arg: 'struct',
    struct: kvm_msr_list,
    variable: KVM_MSR_LIST_LAYOUT,
    fds: ['kvm'],
  }),
  def({
    name: 'KVM_GET_MSR_FEATURE_INDEX_LIST',
    request: KVM_GET_MSR_FEATURE_INDEX_LIST,
    arg: 'struct',
    struct: kvm_msr_list,
    variable: KVM_MSR_LIST_LAYOUT,
    fds: ['kvm'],
  }),
  def({
    name: 'KVM_GET_DEVICE_ATTR',
    request: KVM_GET_DEVICE_ATTR,
    arg: 'struct',
    struct: kvm_device_attr,
    fds: ['kvm', 'vm', 'vcpu', 'device'],
  }),
  def({
    name: 'KVM_HAS_DEVICE_ATTR',
    request: KVM_HAS_DEVICE_ATTR,
    arg: 'struct',
    struct: kvm_device_attr,
    fds: ['kvm', 'vm', 'vcpu', 'device'],
  }),
  def({ name: 'KVM_SET_DEVICE_ATTR', request: KVM_SET_DEVICE_ATTR, arg: 'struct', struct: kvm_device_attr, fds: ['vm', 'vcpu', 'device'] }),
  // VM fd
  def({ name: 'KVM_CREATE_VCPU', request: KVM_CREATE_VCPU, arg: 'int', returnsFd: true, fds: ['vm'] }),
  def({
    name: 'KVM_SET_USER_MEMORY_REGION',
    request: KVM_SET_USER_MEMORY_REGION,
    arg: 'struct',
    struct: kvm_userspace_memory_region,
    fds: ['vm'],
  }),
  def({ name: 'KVM_SET_TSS_ADDR', request: KVM_SET_TSS_ADDR, arg: 'int', fds: ['vm'] }),
  def({ name: 'KVM_SET_IDENTITY_MAP_ADDR', request: KVM_SET_IDENTITY_MAP_ADDR, arg: 'struct', struct: u64_value, fds: ['vm'] }),
  def({ name: 'KVM_CREATE_IRQCHIP', request: KVM_CREATE_IRQCHIP, arg: 'none', fds: ['vm'] }),
  def({ name: 'KVM_GET_IRQCHIP', request: KVM_GET_IRQCHIP, arg: 'struct', struct: kvm_irqchip, fds: ['vm'] }),
  def({ name: 'KVM_SET_IRQCHIP', request: KVM_SET_IRQCHIP, arg: 'struct', struct: kvm_irqchip, fds: ['vm'] }),
  def({ name: 'KVM_IRQ_LINE', request: KVM_IRQ_LINE, arg: 'struct', struct: kvm_irq_level, fds: ['vm'] }),
  def({ name: 'KVM_IRQ_LINE_STATUS', request: KVM_IRQ_LINE_STATUS, arg: 'struct', struct: kvm_irq_level, fds: ['vm'] }),
  def({
    name: 'KVM_SET_GSI_ROUTING',
    request: KVM_SET_GSI_ROUTING,
    arg: 'struct',
    struct: kvm_irq_routing,
    variable: KVM_IRQ_ROUTING_LAYOUT,
    fds: ['vm'],
  }),
  def({ name: 'KVM_SIGNAL_MSI', request: KVM_SIGNAL_MSI, arg: 'struct', struct: kvm_msi, fds: ['vm'] }),
  def({ name: 'KVM_IRQFD', request: KVM_IRQFD, arg: 'struct', struct: kvm_irqfd, fds: ['vm'] }),
  def({ name: 'KVM_IOEVENTFD', request: KVM_IOEVENTFD, arg: 'struct', struct: kvm_ioeventfd, fds: ['vm'] }),
  def({ name: 'KVM_CREATE_PIT2', request: KVM_CREATE_PIT2, arg: 'struct', struct: kvm_pit_config, fds: ['vm'] }),
  def({ name: 'KVM_GET_PIT2', request: KVM_GET_PIT2, arg: 'struct', struct: kvm_pit_state2, fds: ['vm'] }),
  def({ name: 'KVM_SET_PIT2', request: KVM_SET_PIT2, arg: 'struct', struct: kvm_pit_state2, fds: ['vm'] }),
  def({ name: 'KVM_GET_DIRTY_LOG', request: KVM_GET_DIRTY_LOG, arg: 'struct', struct: kvm_dirty_log, fds: ['vm'] }),
  def({ name: 'KVM_CLEAR_DIRTY_LOG', request: KVM_CLEAR_DIRTY_LOG, arg: 'struct', struct: kvm_clear_dirty_log, fds: ['vm'] }),
  def({
    name: 'KVM_SET_USER_MEMORY_REGION2',
    request: KVM_SET_USER_MEMORY_REGION2,
    arg: 'struct',
    struct: kvm_userspace_memory_region2,
    fds: ['vm'],
  }),
  def({
    name: 'KVM_CREATE_GUEST_MEMFD',
    request: KVM_CREATE_GUEST_MEMFD,
    arg: 'struct',
    struct: kvm_create_guest_memfd,
    returnsFd: true,
    fds: ['vm'],
  }),
  def({ name: 'KVM_SET_MEMORY_ATTRIBUTES', request: KVM_SET_MEMORY_ATTRIBUTES, arg: 'struct', struct: kvm_memory_attributes, fds: ['vm'] }),
  def({ name: 'KVM_X86_SET_MSR_FILTER', request: KVM_X86_SET_MSR_FILTER, arg: 'struct', struct: kvm_msr_filter, fds: ['vm'] }),
  def({ name: 'KVM_GET_CLOCK', request: KVM_GET_CLOCK, arg: 'struct', struct: kvm_clock_data, fds: ['vm'] }),
  def({ name: 'KVM_SET_CLOCK', request: KVM_SET_CLOCK, arg: 'struct', struct: kvm_clock_data, fds: ['vm'] }),
  def({ name: 'KVM_SET_TSC_KHZ', request: KVM_SET_TSC_KHZ, arg: 'int', fds: ['vm', 'vcpu'] }),
  def({ name: 'KVM_SET_BOOT_CPU_ID', request: KVM_SET_BOOT_CPU_ID, arg: 'int', fds: ['vm'] }),
  def({
    name: 'KVM_CREATE_DEVICE',
    request: KVM_CREATE_DEVICE,
    arg: 'struct',
    struct: kvm_create_device,
    returnsFd: true,
    fdOut: 4,
    fds: ['vm'],
  }),
  def({ name: 'KVM_GET_STATS_FD', request: KVM_GET_STATS_FD, arg: 'none', returnsFd: true, fds: ['vm', 'vcpu'] }),
  def({ name: 'KVM_ENABLE_CAP', request: KVM_ENABLE_CAP, arg: 'struct', struct: kvm_enable_cap, fds: ['vm', 'vcpu'] }),
  def({ name: 'KVM_MEMORY_ENCRYPT_OP', request: KVM_MEMORY_ENCRYPT_OP, arg: 'struct', struct: kvm_sev_cmd, fds: ['vm'], nullArg: true }),
  def({
    name: 'KVM_MEMORY_ENCRYPT_REG_REGION',
    request: KVM_MEMORY_ENCRYPT_REG_REGION,
    arg: 'struct',
    struct: kvm_enc_region,
    fds: ['vm'],
  }),
  def({
    name: 'KVM_MEMORY_ENCRYPT_UNREG_REGION',
    request: KVM_MEMORY_ENCRYPT_UNREG_REGION,
    arg: 'struct',
    struct: kvm_enc_region,
    fds: ['vm'],
  }),
  // vCPU fd
  def({ name: 'KVM_RUN', request: KVM_RUN, arg: 'none', fds: ['vcpu'] }),
  def({ name: 'KVM_GET_REGS', request: KVM_GET_REGS, arg: 'struct', struct: kvm_regs, fds: ['vcpu'] }),
  def({ name: 'KVM_SET_REGS', request: KVM_SET_REGS, arg: 'struct', struct: kvm_regs, fds: ['vcpu'] }),
  def({ name: 'KVM_GET_SREGS', request: KVM_GET_SREGS, arg: 'struct', struct: kvm_sregs, fds: ['vcpu'] }),
  def({ name: 'KVM_SET_SREGS', request: KVM_SET_SREGS, arg: 'struct', struct: kvm_sregs, fds: ['vcpu'] }),
  def({ name: 'KVM_GET_FPU', request: KVM_GET_FPU, arg: 'struct', struct: kvm_fpu, fds: ['vcpu'] }),
  def({ name: 'KVM_SET_FPU', request: KVM_SET_FPU, arg: 'struct', struct: kvm_fpu, fds: ['vcpu'] }),
  def({ name: 'KVM_GET_XSAVE', request: KVM_GET_XSAVE, arg: 'struct', struct: kvm_xsave, fds: ['vcpu'] }),
  def({ name: 'KVM_SET_XSAVE', request: KVM_SET_XSAVE, arg: 'struct', struct: kvm_xsave, fds: ['vcpu'] }),
  def({ name: 'KVM_GET_XCRS', request: KVM_GET_XCRS, arg: 'struct', struct: kvm_xcrs, fds: ['vcpu'] }),
  def({ name: 'KVM_SET_XCRS', request: KVM_SET_XCRS, arg: 'struct', struct: kvm_xcrs, fds: ['vcpu'] }),
  def({ name: 'KVM_GET_MSRS', request: KVM_GET_MSRS, arg: 'struct', struct: kvm_msrs, variable: KVM_MSRS_LAYOUT, fds: ['vcpu'] }),
  def({ name: 'KVM_SET_MSRS', request: KVM_SET_MSRS, arg: 'struct', struct: kvm_msrs, variable: KVM_MSRS_LAYOUT, fds: ['vcpu'] }),
  def({ name: 'KVM_SET_CPUID2', request: KVM_SET_CPUID2, arg: 'struct', struct: kvm_cpuid2, variable: KVM_CPUID2_LAYOUT, fds: ['vcpu'] }),
  def({ name: 'KVM_GET_LAPIC', request: KVM_GET_LAPIC, arg: 'struct', struct: kvm_lapic_state, fds: ['vcpu'] }),
  def({ name: 'KVM_SET_LAPIC', request: KVM_SET_LAPIC, arg: 'struct', struct: kvm_lapic_state, fds: ['vcpu'] }),
  def({ name: 'KVM_GET_VCPU_EVENTS', request: KVM_GET_VCPU_EVENTS, arg: 'struct', struct: kvm_vcpu_events, fds: ['vcpu'] }),
  def({ name: 'KVM_SET_VCPU_EVENTS', request: KVM_SET_VCPU_EVENTS, arg: 'struct', struct: kvm_vcpu_events, fds: ['vcpu'] }),
  def({ name: 'KVM_GET_MP_STATE', request: KVM_GET_MP_STATE, arg: 'struct', struct: kvm_mp_state, fds: ['vcpu'] }),
  def({ name: 'KVM_SET_MP_STATE', request: KVM_SET_MP_STATE, arg: 'struct', struct: kvm_mp_state, fds: ['vcpu'] }),
  def({ name: 'KVM_GET_DEBUGREGS', request: KVM_GET_DEBUGREGS, arg: 'struct', struct: kvm_debugregs, fds: ['vcpu'] }),
  def({ name: 'KVM_SET_DEBUGREGS', request: KVM_SET_DEBUGREGS, arg: 'struct', struct: kvm_debugregs, fds: ['vcpu'] }),
  def({ name: 'KVM_SET_GUEST_DEBUG', request: KVM_SET_GUEST_DEBUG, arg: 'struct', struct: kvm_guest_debug, fds: ['vcpu'] }),
  def({ name: 'KVM_GET_TSC_KHZ', request: KVM_GET_TSC_KHZ, arg: 'none', fds: ['vm', 'vcpu'] }),
  def({ name: 'KVM_INTERRUPT', request: KVM_INTERRUPT, arg: 'struct', struct: kvm_interrupt, fds: ['vcpu'] }),
  def({ name: 'KVM_NMI', request: KVM_NMI, arg: 'none', fds: ['vcpu'] }),
  def({ name: 'KVM_KVMCLOCK_CTRL', request: KVM_KVMCLOCK_CTRL, arg: 'none', fds: ['vcpu'] }),
  // /dev/sev
  def({ name: 'SEV_ISSUE_CMD', request: SEV_ISSUE_CMD, arg: 'struct', struct: sev_issue_cmd, fds: ['sev'] }),
]);

/** `_IOW(KVMIO, 0x8b, struct kvm_signal_mask)` (refused: see {@link REFUSED_IOCTLS}). */
export const KVM_SET_SIGNAL_MASK = _IOW(KVMIO, 0x8b, 4);
/** `_IO(KVMIO, 0xc7)` (refused: see {@link REFUSED_IOCTLS}). */
export const KVM_RESET_DIRTY_RINGS = _IO(KVMIO, 0xc7);

/**
 * Requests defined here that the backends refuse on purpose (ERR_KVM_SEV_UNKNOWN_IOCTL), each with
 * the reason. Every other request of this module is in {@link IOCTLS}.
 */
export const REFUSED_IOCTLS: readonly { readonly name: string; readonly request: number; readonly reason: string }[] = Object.freeze([
  Object.freeze({
    name: 'KVM_SET_SIGNAL_MASK',
    request: KVM_SET_SIGNAL_MASK,
    reason: "the vCPU thread's signal mask belongs to the runner: the kick signal must interrupt KVM_RUN, so JS may not block it",
  }),
  Object.freeze({
    name: 'KVM_RESET_DIRTY_RINGS',
    request: KVM_RESET_DIRTY_RINGS,
    reason:
      'the dirty ring (KVM_CAP_DIRTY_LOG_RING) lives in pages mmapped from the vCPU fd past kvm_run, which the runner does not map; use KVM_GET/CLEAR_DIRTY_LOG',
  }),
]);

const byName = new Map(IOCTLS.map((d) => [d.name, d]));
const byRequest = new Map(IOCTLS.map((d) => [d.request, d]));

/** The allowlisted ioctl called `name` (`'KVM_RUN'`), or undefined. */
export function ioctlByName(name: string): IoctlDef | undefined {
  if (typeof name !== 'string') throw invalidArgType('name', 'string', name);
  return byName.get(name);
}

/** The allowlisted ioctl with this request number (signed or unsigned form), or undefined. */
export function ioctlByRequest(request: number): IoctlDef | undefined {
  if (typeof request !== 'number') throw invalidArgType('request', 'number', request);
  return byRequest.get(request >>> 0);
}
