/**
 * The SEV VM port over a real KVM VM: what the mock's SEV half (arch/x86/kvm/svm/sev.c's model) sees
 * of a VM whose KVM is the real kernel's. Its type, its memory slots (guest-memory mappings, which
 * the SEV code reaches as user addresses in the mock host's address space), its vCPUs in creation
 * order, and whether it is dead (the source of a MOVE). The hybrid backend keeps one per VM it
 * creates (hybrid-backend.ts), the shared mock SEV service one per VM a client attached
 * (daemon/server.ts); each adds what only it tracks (references, holders) and where its vCPUs'
 * register state comes from.
 */
import type { BackendFd, GuestMapping } from '../../../backend/contract.js';
import type { ExternalVcpuPort, MockHost, MockSevVm, SevMemslot, SevVmPort } from '../../mock/seam.js';

/** A memory slot as KVM_SET_USER_MEMORY_REGION set it: `size` bytes of `mapping` from `offset`, at `gpa`. */
export interface RealMemslot {
  readonly gpa: bigint;
  readonly size: number;
  readonly mapping: GuestMapping;
  readonly offset: number;
}

export class RealVmPort<V extends ExternalVcpuPort, S extends RealMemslot = RealMemslot> implements SevVmPort {
  /** By slot number. */
  readonly slots = new Map<number, S>();
  readonly vcpuList: V[] = [];
  /** The VM as the mock's SEV half knows it (set once attached). */
  sev!: MockSevVm;
  /** kvm_vm_dead: the source of a MOVE; every ioctl answers EIO. */
  dead = false;

  constructor(
    /** The mock whose SEV half serves this VM (its address space resolves the slots). */
    readonly host: MockHost,
    /** The real VM's fd. */
    readonly fd: BackendFd,
    readonly vmType: number,
  ) {}

  memslots(): SevMemslot[] {
    return [...this.slots.values()].map((s) => ({
      gpa: s.gpa,
      size: s.size,
      uaddr: this.host.memory.addressOf(s.mapping) + BigInt(s.offset),
    }));
  }
  vcpus(): readonly V[] {
    return this.vcpuList;
  }
  createdVcpus(): number {
    return this.vcpuList.length;
  }
  markDead(): void {
    this.dead = true;
  }
}
