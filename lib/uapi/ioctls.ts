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
/** `_IOW(KVMIO, 0x49, struct kvm_userspace_memory_region2)` (6.8+; not in {@link IOCTLS}). */
export const KVM_SET_USER_MEMORY_REGION2 = _IOW(KVMIO, 0x49, kvm_userspace_memory_region2.size);
/** `_IO(KVMIO, 0x60)` */
export const KVM_CREATE_IRQCHIP = _IO(KVMIO, 0x60);
/** `_IOW(KVMIO, 0x7b, struct kvm_clock_data)` (not in {@link IOCTLS}). */
export const KVM_SET_CLOCK = _IOW(KVMIO, 0x7b, kvm_clock_data.size);
/** `_IOR(KVMIO, 0x7c, struct kvm_clock_data)` (not in {@link IOCTLS}). */
export const KVM_GET_CLOCK = _IOR(KVMIO, 0x7c, kvm_clock_data.size);
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
/** `_IOW(KVMIO, 0xd2, struct kvm_memory_attributes)` (6.8+; not in {@link IOCTLS}). */
export const KVM_SET_MEMORY_ATTRIBUTES = _IOW(KVMIO, 0xd2, kvm_memory_attributes.size);
/** `_IOWR(KVMIO, 0xd4, struct kvm_create_guest_memfd)` (6.8+; not in {@link IOCTLS}). */
export const KVM_CREATE_GUEST_MEMFD = _IOWR(KVMIO, 0xd4, kvm_create_guest_memfd.size);
/** `_IOW(KVMIO, 0xe1, struct kvm_device_attr)` (not in {@link IOCTLS}). */
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

/** Which kind of fd an ioctl is issued on. */
export type FdKind = 'kvm' | 'vm' | 'vcpu' | 'sev';

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
  /** The ioctl returns a new fd. */
  readonly returnsFd?: true;
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
  def({ name: 'KVM_GET_DEVICE_ATTR', request: KVM_GET_DEVICE_ATTR, arg: 'struct', struct: kvm_device_attr, fds: ['kvm', 'vm', 'vcpu'] }),
  def({ name: 'KVM_HAS_DEVICE_ATTR', request: KVM_HAS_DEVICE_ATTR, arg: 'struct', struct: kvm_device_attr, fds: ['kvm', 'vm', 'vcpu'] }),
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
  def({ name: 'KVM_GET_TSC_KHZ', request: KVM_GET_TSC_KHZ, arg: 'none', fds: ['vcpu'] }),
  // /dev/sev
  def({ name: 'SEV_ISSUE_CMD', request: SEV_ISSUE_CMD, arg: 'struct', struct: sev_issue_cmd, fds: ['sev'] }),
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
