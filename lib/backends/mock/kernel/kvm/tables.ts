/**
 * Static answers of the mock's /dev/kvm: capabilities per kernel profile, the supported CPUID
 * (with leaf 0x8000001F from the processor profile), and the MSR lists. Values are those of an
 * AMD EPYC host running kvm_amd; only what a VMM asks for is modelled (unknown caps answer 0).
 */
import { KVM_CAP } from '../../../../uapi/constants.js';
import type { ProcessorProfile } from '../../psp/api.js';
import type { KernelProfile } from '../common/kernel-profile.js';

/** What a capability's answer depends on. */
export interface CapContext {
  readonly kernel: KernelProfile;
  readonly vmTypesMask: number;
  /** The VM asking (KVM_CHECK_EXTENSION on a VM fd), if any. */
  readonly vmType?: number;
}

const ONE = [
  'IRQCHIP',
  'HLT',
  'USER_MEMORY',
  'SET_TSS_ADDR',
  'EXT_CPUID',
  'CLOCKSOURCE',
  'PIT',
  'NOP_IO_DELAY',
  'MP_STATE',
  'SYNC_MMU',
  'DESTROY_MEMORY_REGION_WORKS',
  'USER_NMI',
  'SET_GUEST_DEBUG',
  'REINJECT_CONTROL',
  'IRQ_ROUTING',
  'IRQ_INJECT_STATUS',
  'JOIN_MEMORY_REGIONS_WORKS',
  'IRQFD',
  'PIT2',
  'SET_BOOT_CPU_ID',
  'PIT_STATE2',
  'IOEVENTFD',
  'SET_IDENTITY_MAP_ADDR',
  'ADJUST_CLOCK',
  'INTERNAL_ERROR_DATA',
  'VCPU_EVENTS',
  'INTR_SHADOW',
  'DEBUGREGS',
  'X86_ROBUST_SINGLESTEP',
  'ENABLE_CAP',
  'XSAVE',
  'XCRS',
  'ASYNC_PF',
  'GET_TSC_KHZ',
  'ONE_REG',
  'TSC_DEADLINE_TIMER',
  'KVMCLOCK_CTRL',
  'SIGNAL_MSI',
  'READONLY_MEM',
  'IRQFD_RESAMPLE',
  'DEVICE_CTRL',
  'EXT_EMUL_CPUID',
  'IOAPIC_POLARITY_IGNORED',
  'ENABLE_CAP_VM',
  'IOEVENTFD_NO_LENGTH',
  'VM_ATTRIBUTES',
  'CHECK_EXTENSION_VM',
  'X86_SMM',
  'SPLIT_IRQCHIP',
  'IOEVENTFD_ANY_LENGTH',
  'VCPU_ATTRIBUTES',
  'X2APIC_API',
  'IMMEDIATE_EXIT',
  'GET_MSR_FEATURES',
  'MSR_PLATFORM_INFO',
  'EXCEPTION_PAYLOAD',
  'PMU_EVENT_FILTER',
  'HALT_POLL',
  'LAST_CPU',
  'SMALLER_MAXPHYADDR',
  'X86_USER_SPACE_MSR',
  'X86_MSR_FILTER',
  'ENFORCE_PV_FEATURE_CPUID',
  'SET_GUEST_DEBUG2',
  'SYSTEM_EVENT_DATA',
  'X86_TRIPLE_FAULT_EVENT',
] as const;
/** Caps that arrived after the 2021 kernel (5.13). */
const AFTER_2021: readonly number[] = [
  KVM_CAP.VM_COPY_ENC_CONTEXT_FROM,
  KVM_CAP.SREGS2,
  KVM_CAP.EXIT_HYPERCALL,
  KVM_CAP.BINARY_STATS_FD,
  KVM_CAP.EXIT_ON_EMULATION_FAILURE,
  KVM_CAP.VM_MOVE_ENC_CONTEXT_FROM,
  KVM_CAP.VM_GPA_BITS,
  KVM_CAP.XSAVE2,
  KVM_CAP.SYS_ATTRIBUTES,
  KVM_CAP.USER_MEMORY2,
  KVM_CAP.GUEST_MEMFD,
  KVM_CAP.VM_TYPES,
  KVM_CAP.PRE_FAULT_MEMORY,
  KVM_CAP.MEMORY_FAULT_INFO,
  KVM_CAP.SYSTEM_EVENT_DATA,
  KVM_CAP.X86_TRIPLE_FAULT_EVENT,
];

/** KVM_CHECK_EXTENSION. */
export function checkExtension(cap: number, ctx: CapContext): number {
  const old = ctx.kernel === 'local-migration-2021';
  if (old && AFTER_2021.includes(cap)) return 0;
  switch (cap) {
    case KVM_CAP.NR_VCPUS:
      return 64;
    case KVM_CAP.MAX_VCPUS:
      return old ? 288 : 4096;
    case KVM_CAP.MAX_VCPU_ID:
      return old ? 1023 : 16384;
    case KVM_CAP.NR_MEMSLOTS:
      return old ? 509 : 32764;
    case KVM_CAP.COALESCED_MMIO:
      return 1; // the page offset in the vCPU mmap
    case KVM_CAP.MULTI_ADDRESS_SPACE:
      return 2;
    case KVM_CAP.SYNC_REGS:
      return 7;
    case KVM_CAP.GUEST_DEBUG_HW_BPS:
      return 4;
    case KVM_CAP.GUEST_DEBUG_HW_WPS:
      return 4;
    case KVM_CAP.TSC_CONTROL:
      return 1;
    case KVM_CAP.VM_COPY_ENC_CONTEXT_FROM:
      return 1;
    case KVM_CAP.VM_MOVE_ENC_CONTEXT_FROM:
      return 1;
    case KVM_CAP.EXIT_HYPERCALL:
      return 0x1000; // 1 << KVM_HC_MAP_GPA_RANGE
    case KVM_CAP.SREGS2:
      return 1;
    case KVM_CAP.BINARY_STATS_FD:
      return 1;
    case KVM_CAP.EXIT_ON_EMULATION_FAILURE:
      return 1;
    case KVM_CAP.VM_GPA_BITS:
      return 48;
    case KVM_CAP.XSAVE2:
      return 4096;
    case KVM_CAP.SYS_ATTRIBUTES:
      return 1;
    case KVM_CAP.USER_MEMORY2:
      return 1;
    case KVM_CAP.MEMORY_FAULT_INFO:
      return 1;
    case KVM_CAP.GUEST_MEMFD:
      return ctx.vmType === undefined || ctx.vmType === 4 ? 1 : 0;
    case KVM_CAP.MEMORY_ATTRIBUTES:
      return ctx.vmType === 4 ? 8 : 0; // PRIVATE, for SNP VMs
    case KVM_CAP.VM_TYPES:
      return old ? 0 : ctx.vmTypesMask;
    case KVM_CAP.PRE_FAULT_MEMORY:
      return 1;
    default:
      return (ONE as readonly string[]).some((n) => (KVM_CAP as Record<string, number>)[n] === cap) ? 1 : 0;
  }
}

/** One `kvm_cpuid_entry2`. */
export interface CpuidEntry {
  function: number;
  index: number;
  flags: number;
  eax: number;
  ebx: number;
  ecx: number;
  edx: number;
}

/** CPUID Fn0000_0001_EAX (family, model, stepping) of each generation; the system view's /proc/cpuinfo agrees. */
export const SIGNATURE: Readonly<Record<ProcessorProfile['name'], number>> = {
  naples: 0x00800f12,
  rome: 0x00830f10,
  milan: 0x00a00f11,
  genoa: 0x00a10f11,
};

/** KVM_GET_SUPPORTED_CPUID on this host (0x8000001F: SEV facts when SEV is usable, else zeros). */
export function supportedCpuid(p: ProcessorProfile, sev: { enabled: boolean; es: boolean; snp: boolean }): CpuidEntry[] {
  const e = (fn: number, eax: number, ebx: number, ecx: number, edx: number, index = 0, flags = 0): CpuidEntry => ({
    function: fn,
    index,
    flags,
    eax: eax >>> 0,
    ebx: ebx >>> 0,
    ecx: ecx >>> 0,
    edx: edx >>> 0,
  });
  const sig = p.name in SIGNATURE ? SIGNATURE[p.name] : SIGNATURE.milan;
  // 0x8000001F EAX: SME (0), SEV (1), SEV-ES (3), SEV-SNP (4), as sev_set_cpu_caps() sets them from
  // what kvm_amd enabled (arch/x86/kvm/svm/sev.c), so CPUID and KVM_CAP_VM_TYPES agree.
  const sevEax = sev.enabled ? 0x1 | 0x2 | (sev.es ? 0x8 : 0) | (sev.snp ? 0x10 : 0) : 0;
  return [
    e(0x0, 0x10, 0x68747541, 0x444d4163, 0x69746e65), // "AuthenticAMD"
    e(0x1, sig, 0x00000800, 0xf6d83203, 0x178bfbff),
    e(0x5, 0, 0, 0, 0),
    e(0x6, 0x4, 0, 0, 0),
    e(0x7, 0, 0x219c07a9, 0x0040069c, 0x00000010, 0, 1),
    e(0xd, 0x7, 0x340, 0x340, 0, 0, 1),
    e(0xd, 0xf, 0x340, 0, 0, 1, 1),
    e(0xd, 0x100, 0x240, 0, 0, 2, 1),
    e(0x40000000, 0x40000001, 0x4b4d564b, 0x564b4d56, 0x4d), // "KVMKVMKVM"
    e(0x40000001, 0x01007afb, 0, 0, 0),
    e(0x80000000, 0x80000021, 0x68747541, 0x444d4163, 0x69746e65),
    e(0x80000001, sig, 0, 0x75c237ff, 0x2fd3fbff),
    e(0x80000002, 0x20444d41, 0x43595045, 0x4f4d2d20, 0x00004b43), // "AMD EPYC-MOCK"
    e(0x80000003, 0, 0, 0, 0),
    e(0x80000004, 0, 0, 0, 0),
    e(0x80000005, 0xff40ff40, 0xff40ff40, 0x20080140, 0x20080140),
    e(0x80000006, 0x48002200, 0x68004200, 0x02006140, 0x00808140),
    e(0x80000007, 0, 0, 0, 0x100),
    e(0x80000008, 0x3030, 0x0101d205, 0, 0),
    e(0x8000000a, 0x1, 0x8000, 0, 0x0001bcff),
    e(0x8000001f, sevEax, sev.enabled ? p.cbitPosition & 0x3f : 0, sev.enabled ? p.maxSevAsid : 0, sev.enabled ? p.minSevAsid : 0),
    e(0x80000021, 0x45, 0, 0, 0),
  ];
}

/** KVM_GET_MSR_INDEX_LIST: msrs_to_save + emulated MSRs. */
export const MSR_INDEX_LIST: readonly number[] = Object.freeze([
  0x174, 0x175, 0x176, 0x10, 0x11, 0x12, 0x1b, 0x277, 0x1a0, 0x6e0, 0x48, 0x10a, 0xc0000080, 0xc0000081, 0xc0000082, 0xc0000083, 0xc0000084,
  0xc0000100, 0xc0000101, 0xc0000102, 0xc0000103, 0xc0010117, 0xc001011f, 0x4b564d00, 0x4b564d01, 0x4b564d02, 0x4b564d03, 0x4b564d04,
  0x4b564d05, 0x4b564d06, 0x4b564d07, 0x4b564d08,
]);

/** KVM_GET_MSR_FEATURE_INDEX_LIST. */
export const MSR_FEATURE_LIST: readonly number[] = Object.freeze([0x10a, 0xc0011029, 0x345]);

/** The guest-visible MSRs a vCPU keeps, with their reset values (IA32_PAT, MISC_ENABLE as KVM sets them). */
export function resetMsrs(apicBase: bigint): Map<number, bigint> {
  const m = new Map<number, bigint>();
  for (const i of MSR_INDEX_LIST) m.set(i, 0n);
  m.set(0x277, 0x0007040600070406n);
  m.set(0x1a0, 0x1n);
  m.set(0x1b, apicBase);
  return m;
}

/** Supported XCR0 bits (x87, SSE, AVX, PKRU): KVM_X86_XCOMP_GUEST_SUPP. */
export const SUPPORTED_XCR0 = 0x207n;
