/**
 * A VM of the mock KVM: type, memory slots (kvm_set_memory_region's checks), vCPUs, and the kernel's
 * reference counting: the VM fd, every vCPU fd and every mirror of it hold a reference, and the VM is
 * destroyed (SEV context torn down, memory slots released) when the last one goes. It is the SEV
 * layer's {@link SevVmPort}.
 */
import { KVM_MEM } from '../../../../uapi/constants.js';
import { E, fail } from '../common/errno.js';
import { MockMapping } from '../common/mapping.js';
import type { AnyMapping } from '../common/user-memory.js';
import type { SevMemslot, SevVcpuPort, SevVm, SevVmPort } from '../svm/sev-types.js';
import { MockVcpu } from './vcpu.js';
import type { VcpuRegisterState } from '../svm/sev-types.js';

export interface Memslot extends SevMemslot {
  readonly slot: number;
  readonly flags: number;
  readonly mapping: AnyMapping | undefined;
}

const KVM_USER_MEM_SLOTS = 32764;

class VcpuPort implements SevVcpuPort {
  readonly index: number;
  private readonly v: MockVcpu;
  constructor(v: MockVcpu) {
    this.v = v;
    this.index = v.index;
  }
  guestDebug(): boolean {
    return this.v.guestDebug !== 0;
  }
  isProtected(): boolean {
    return this.v.protectedState;
  }
  registerState(): VcpuRegisterState {
    return this.v.state();
  }
  setProtected(on: boolean, vmsa?: Uint8Array): void {
    this.v.protectedState = on;
    this.v.vmsa = on ? vmsa : undefined;
  }
  vmsa(): Uint8Array | undefined {
    return this.v.vmsa;
  }
}

export class MockVm implements SevVmPort {
  readonly vmType: number;
  /** Protected state (SEV_ES_VM, SNP_VM): register access ends with LAUNCH_UPDATE_VMSA. */
  readonly hasProtectedState: boolean;
  readonly slots = new Map<number, Memslot>();
  readonly vcpuList: MockVcpu[] = [];
  private readonly ports: VcpuPort[] = [];
  created = 0;
  irqchip = false;
  identityMapSet = false;
  tssAddr = 0n;
  dead = false;
  destroyed = false;
  /** Set by the kernel right after creation. */
  sev!: SevVm;
  private refs = 0;
  private readonly onDestroy: (vm: MockVm) => void;
  private readonly maxVcpus: number;
  private readonly maxVcpuIds: number;

  constructor(vmType: number, limits: { maxVcpus: number; maxVcpuIds: number }, onDestroy: (vm: MockVm) => void) {
    this.vmType = vmType;
    this.hasProtectedState = vmType === 3 || vmType === 4;
    this.maxVcpus = limits.maxVcpus;
    this.maxVcpuIds = limits.maxVcpuIds;
    this.onDestroy = onDestroy;
  }

  // ---- SevVmPort ----
  memslots(): Iterable<SevMemslot> {
    return this.slots.values();
  }
  vcpus(): readonly SevVcpuPort[] {
    return this.ports;
  }
  createdVcpus(): number {
    return this.created;
  }
  markDead(): void {
    this.dead = true;
  }
  hold(): void {
    this.refs++;
  }
  release(): void {
    if (--this.refs === 0) this.destroy();
  }

  private destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.onDestroy(this);
    for (const s of this.slots.values()) if (s.mapping instanceof MockMapping) s.mapping.bindings--;
    this.slots.clear();
  }

  /** KVM_CREATE_VCPU */
  createVcpu(id: number): MockVcpu {
    if (id >= this.maxVcpuIds) fail(E.EINVAL, 'vCPU id too large');
    if (this.created >= this.maxVcpus) fail(E.EINVAL, 'too many vCPUs');
    if (this.vcpuList.some((v) => v.id === id)) fail(E.EEXIST, `vCPU ${id} exists`);
    const v = new MockVcpu(id, this.vcpuList.length, this.irqchip);
    this.created++;
    this.vcpuList.push(v);
    this.ports.push(new VcpuPort(v));
    return v;
  }

  /** KVM_SET_USER_MEMORY_REGION (kvm_set_memory_region). */
  setMemoryRegion(r: { slot: number; flags: number; gpa: bigint; size: bigint; uaddr: bigint; mapping: AnyMapping | undefined }): void {
    let valid = KVM_MEM.LOG_DIRTY_PAGES;
    if (!this.hasProtectedState) valid |= KVM_MEM.READONLY;
    if (r.flags & ~valid) fail(E.EINVAL, 'invalid flags');
    const asId = r.slot >>> 16;
    const id = r.slot & 0xffff;
    if (r.size & 0xfffn) fail(E.EINVAL, 'memory_size is not a page multiple');
    if (r.gpa & 0xfffn) fail(E.EINVAL, 'guest_phys_addr is not page aligned');
    if (r.uaddr & 0xfffn) fail(E.EINVAL, 'userspace_addr is not page aligned');
    if (asId >= (this.hasProtectedState ? 1 : 2) || id >= KVM_USER_MEM_SLOTS) fail(E.EINVAL, 'bad slot');
    if (r.gpa + r.size > 0xffff_ffff_ffff_ffffn) fail(E.EINVAL, 'overflow');
    const old = this.slots.get(r.slot);
    if (r.size === 0n) {
      if (!old) fail(E.EINVAL, 'no such slot');
      this.slots.delete(r.slot);
      if (old.mapping instanceof MockMapping) old.mapping.bindings--;
      return;
    }
    if (old) {
      if (r.uaddr !== old.uaddr || Number(r.size) !== old.size || (r.flags ^ old.flags) & KVM_MEM.READONLY)
        fail(E.EINVAL, 'a slot can only move or change flags');
      if (r.gpa === old.gpa && r.flags === old.flags) return;
    }
    if (!old || r.gpa !== old.gpa) {
      for (const s of this.slots.values()) {
        if (s.slot === r.slot || s.slot >>> 16 !== asId) continue;
        if (r.gpa < s.gpa + BigInt(s.size) && s.gpa < r.gpa + r.size) fail(E.EEXIST, `overlaps slot ${s.slot}`);
      }
    }
    const mapping = old ? old.mapping : r.mapping;
    if (!old && mapping instanceof MockMapping) mapping.bindings++;
    this.slots.set(r.slot, { slot: r.slot, flags: r.flags, gpa: r.gpa, size: Number(r.size), uaddr: r.uaddr, mapping });
  }
}
