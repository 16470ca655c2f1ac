/**
 * Which boot of the guest a page-state request comes from. Across a kexec the guest resets its
 * shared pages by marking all RAM encrypted, and a request still in flight from the old kernel can
 * land after that reset and corrupt the new boot's view (Steve Rutherford, "Re: [PATCH v12 13/13]
 * x86/kvm: Add kexec support for SEV Live Migration", LKML April 2021). He named two answers, and the
 * VMM side of both lives here:
 * - the migration-control MSR (the kernel's answer: arch/x86/kernel/kvm.c kvm_guest_cpu_offline()
 *   writes 0 on every CPU on its way down, the next boot writes KVM_MIGRATION_READY again). The
 *   generation advances when the guest clears the MSR after having set it; each vCPU is in the
 *   generation of its own last MSR write, so a request from a vCPU that has not yet cleared the MSR
 *   (its reboot still pending) is `late`: it comes from the old boot. It is ignored only for the pages
 *   a newer generation has already declared (the reset): a guest that clears the MSR without going
 *   down (CPU offline, suspend: kvm_guest_cpu_offline() runs there too) keeps its other vCPUs' requests.
 *   The next boot's READY puts every vCPU in it.
 * - a per-boot generation ID passed with each request: an OPT-IN extension of KVM_HC_MAP_GPA_RANGE
 *   defined by kvm-sev (never merged upstream; off by default): attrs bits 31:16 carry the boot's ID
 *   (1..65535, 0 = none). An ID seen before the current one is stale; a new ID starts a new boot.
 *   It also catches a single vCPU racing with itself, which per-vCPU generations cannot.
 * What is ignored is logged with the reason.
 */

export interface BootGenerationsState {
  generation: number;
  ready: boolean;
  vcpus: [number, number][];
  currentId?: number;
  oldIds: number[];
}

/**
 * `stale`: from a boot that is over (its boot ID is an old one): ignore it. `late`: from a vCPU that
 * has not left the previous generation: ignore it where a newer generation has declared the pages.
 */
export type Attribution = { generation: number; stale?: string; late?: string };

export class BootGenerations {
  /** The current boot. */
  generation = 1;
  /** KVM_MIGRATION_READY as the guest last wrote it. */
  ready = false;
  private readonly vcpuGen = new Map<number, number>();
  private currentId: number | undefined;
  private readonly oldIds = new Set<number>();

  /** `enabled` false: every request counts as the current boot's (the behaviour the kexec race breaks). */
  constructor(readonly enabled: boolean) {}

  /** A vCPU the VMM runs; it starts in the current boot. */
  addVcpu(id: number): void {
    if (!this.vcpuGen.has(id)) this.vcpuGen.set(id, this.generation);
  }

  /** A write of MSR_KVM_MIGRATION_CONTROL bit 0 by `vcpu`; true if it ended a boot. */
  msrWrite(vcpu: number, ready: boolean): boolean {
    const ended = this.ready && !ready;
    if (ended) this.advance();
    this.ready = ready;
    this.vcpuGen.set(vcpu, this.generation);
    // READY again: the new boot is up, and every vCPU runs it.
    if (ready) for (const id of this.vcpuGen.keys()) this.vcpuGen.set(id, this.generation);
    return ended;
  }

  /** The guest rebooted (RESET) or the VM was reset: a new boot, not ready, every vCPU in it. */
  reboot(): void {
    this.advance();
    this.ready = false;
    for (const id of this.vcpuGen.keys()) this.vcpuGen.set(id, this.generation);
  }

  /** Which boot a request from `vcpu` (with the explicit boot ID `bootId`, 0 for none) belongs to. */
  attribute(vcpu: number, bootId: number): Attribution {
    if (!this.enabled) return { generation: this.generation };
    if (bootId !== 0) {
      if (bootId === this.currentId) return { generation: this.generation };
      if (this.oldIds.has(bootId))
        return { generation: this.generation, stale: `boot ID ${bootId} belongs to a boot before generation ${this.generation}` };
      // A new ID: a new boot, unless the MSR already started one that has no ID yet.
      if (this.currentId !== undefined) this.advance();
      this.currentId = bootId;
      this.vcpuGen.set(vcpu, this.generation);
      return { generation: this.generation };
    }
    const g = this.vcpuGen.get(vcpu);
    if (g === undefined) {
      this.vcpuGen.set(vcpu, this.generation);
      return { generation: this.generation };
    }
    if (g < this.generation)
      return {
        generation: g,
        late: `vCPU ${vcpu} has not cleared MSR_KVM_MIGRATION_CONTROL since generation ${g} ended: a late request from the previous boot (now ${this.generation})`,
      };
    return { generation: this.generation };
  }

  save(): BootGenerationsState {
    return {
      generation: this.generation,
      ready: this.ready,
      vcpus: [...this.vcpuGen.entries()],
      ...(this.currentId !== undefined ? { currentId: this.currentId } : {}),
      oldIds: [...this.oldIds],
    };
  }

  load(s: BootGenerationsState): void {
    this.generation = s.generation;
    this.ready = s.ready;
    this.vcpuGen.clear();
    for (const [id, g] of s.vcpus) this.vcpuGen.set(id, g);
    this.currentId = s.currentId;
    this.oldIds.clear();
    for (const id of s.oldIds) this.oldIds.add(id);
  }

  private advance(): void {
    this.generation++;
    if (this.currentId !== undefined) this.oldIds.add(this.currentId);
    this.currentId = undefined;
  }
}
