/**
 * Wires a VM to a page-state tracker: KVM_CAP_EXIT_HYPERCALL for KVM_HC_MAP_GPA_RANGE, the MSR filter
 * that sends MSR_KVM_MIGRATION_CONTROL to user space (KVM_CAP_X86_USER_SPACE_MSR with
 * KVM_MSR_EXIT_REASON_FILTER; hypercalls.rst), the CPUID bits that tell the guest both exist
 * (0x40000001 EAX: KVM_FEATURE_HC_MAP_GPA_RANGE 16, KVM_FEATURE_MIGRATION_CONTROL 17, from
 * arch/x86/include/uapi/asm/kvm_para.h; KVM_GET_SUPPORTED_CPUID does not report them, the VMM sets
 * them), and a run loop that serves those exits and completes each hypercall before the vCPU runs on.
 *
 * ```ts
 * import { Kvm, PageStateExits, PageStateTracker } from 'kvm-sev';
 * import { MockHost } from 'kvm-sev/mock';
 *
 * const host = new MockHost(); // or openHost(): the same calls on the real KVM
 * using kvm = Kvm.open({ backend: host });
 * using vm = kvm.createVm();
 * vm.addMemory({ guestPhysAddr: 0n, size: 0x10000 });
 * const vcpu = vm.createVcpu(0);
 * const pages = new PageStateTracker({ ram: vm.memory.map((m) => ({ gpa: m.guestPhysAddr, size: m.size })) });
 * pages.vmEvent('LAUNCH_START'); // as the launch goes (SevLaunch's steps); LAUNCH_FINISH makes the RAM private
 * pages.vmEvent('LAUNCH_FINISH');
 * const exits = PageStateExits.attach(vm, pages);
 * exits.advertise(vcpu, kvm.supportedCpuid());
 * // The mock runs no guest code: these stand in for the guest's WRMSR, VMMCALL and OUT.
 * host.queueGuestOps(vcpu.fd, [
 *   { op: 'wrmsr', index: 0x4b564d08, value: 1n },
 *   { op: 'vmmcall', nr: 12n, args: [0x8000n, 2n, 0n] },
 *   { op: 'out', port: 0x500, size: 1, value: 0 },
 * ]);
 * const exit = await exits.run(vcpu); // the first exit that is not a page-state request
 * console.log(exit.reason, pages.pageState(0x8000n), pages.migrationReady); // io shared true
 * ```
 */
import type { Vcpu } from '../../kvm/vcpu.js';
import type { Vm } from '../../kvm/vm.js';
import type { VcpuExit } from '../../kvm/exits.js';
import {
  KVM_FEATURE_HC_MAP_GPA_RANGE,
  KVM_FEATURE_MIGRATION_CONTROL,
  KVM_HC_MAP_GPA_RANGE,
  MSR_KVM_MIGRATION_CONTROL,
} from '../../uapi/constants.js';
import { KVM_MSR_EXIT_REASON, KVM_MSR_FILTER, KVM_MSR_FILTER_DEFAULT_ALLOW } from '../../uapi/vmm-constants.js';
import type { KvmCpuidEntry2 } from '../../uapi/kvm-structs.js';
import { handleMapGpaRange } from './map-gpa-range.js';
import { handleMigrationControlMsr } from './migration-control-msr.js';
import type { PageStateTracker } from './page-state-tracker.js';

const KVM_CPUID_SIGNATURE = 0x40000000;
const KVM_CPUID_FEATURES = 0x40000001;

/** `entries` with the two feature bits set in leaf 0x40000001 (and the KVM leaves added if absent). */
export function withPageStateCpuid(entries: readonly KvmCpuidEntry2[]): KvmCpuidEntry2[] {
  const bits = (1 << KVM_FEATURE_HC_MAP_GPA_RANGE) | (1 << KVM_FEATURE_MIGRATION_CONTROL);
  const out = entries.map((e) => ({ ...e }));
  const zero = { index: 0, flags: 0, ebx: 0, ecx: 0, edx: 0 } as KvmCpuidEntry2;
  if (!out.some((e) => e.function === KVM_CPUID_SIGNATURE))
    // "KVMKVMKVM\0\0\0" in EBX, ECX, EDX; EAX: the highest KVM leaf.
    out.push({ ...zero, function: KVM_CPUID_SIGNATURE, eax: KVM_CPUID_FEATURES, ebx: 0x4b4d564b, ecx: 0x564b4d56, edx: 0x4d });
  const f = out.find((e) => e.function === KVM_CPUID_FEATURES);
  if (f) f.eax = (f.eax | bits) >>> 0;
  else out.push({ ...zero, function: KVM_CPUID_FEATURES, eax: bits });
  return out;
}

export class PageStateExits {
  private constructor(
    readonly vm: Vm,
    readonly tracker: PageStateTracker,
  ) {}

  /**
   * Enables the hypercall exit and the MSR filter on `vm` (before its vCPUs run) and registers the
   * VM's vCPUs with the tracker.
   */
  static attach(vm: Vm, tracker: PageStateTracker): PageStateExits {
    vm.enableHypercallExit(1n << BigInt(KVM_HC_MAP_GPA_RANGE));
    vm.enableUserSpaceMsr(KVM_MSR_EXIT_REASON.FILTER);
    vm.setMsrFilter(KVM_MSR_FILTER_DEFAULT_ALLOW, [
      { flags: KVM_MSR_FILTER.READ | KVM_MSR_FILTER.WRITE, base: MSR_KVM_MIGRATION_CONTROL, nmsrs: 1 },
    ]);
    return new PageStateExits(vm, tracker);
  }

  /** Sets the vCPU's CPUID to `entries` plus the two feature bits, and registers the vCPU. */
  advertise(vcpu: Vcpu, entries: readonly KvmCpuidEntry2[]): void {
    vcpu.setCpuid2(withPageStateCpuid(entries));
    this.tracker.addVcpu(vcpu.id);
  }

  /** Serves `exit` if it is a page-state request (its answer written); false otherwise. */
  handle(vcpu: Vcpu, exit: VcpuExit): boolean {
    return handleMapGpaRange(this.tracker, vcpu.id, exit) || handleMigrationControlMsr(this.tracker, vcpu.id, exit);
  }

  /** Runs `vcpu`, serving page-state requests, until an exit that is not one; each hypercall settles as the guest is re-entered. */
  async run(vcpu: Vcpu): Promise<VcpuExit> {
    this.tracker.addVcpu(vcpu.id);
    for (;;) {
      const exit = await vcpu.run();
      // The KVM_RUN that returned this exit completed the previous hypercall: its pages settle.
      this.tracker.settle(vcpu.id);
      if (!this.handle(vcpu, exit)) return exit;
    }
  }

  /**
   * Completes every vCPU's pending exit with a KVM_RUN that runs no guest code (immediate_exit), as
   * the kernel requires before saving vCPU state (Documentation/virt/kvm/api.rst, KVM_EXIT_HYPERCALL:
   * otherwise a restored vCPU re-executes the hypercall), and settles the pages.
   */
  completePending(vcpus: readonly Vcpu[]): void {
    for (const v of vcpus) {
      v.completePendingIo();
      this.tracker.settle(v.id);
    }
  }
}
