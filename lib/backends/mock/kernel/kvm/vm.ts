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
import type { EventfdFile } from '../common/eventfd.js';
import { MockIrqchip, type MockPit } from './irqchip.js';
import type { VcpuRegisterState } from '../svm/sev-types.js';

export interface Memslot extends SevMemslot {
  readonly slot: number;
  readonly flags: number;
  readonly mapping: AnyMapping | undefined;
  /** One bit per page while KVM_MEM_LOG_DIRTY_PAGES is set (kvm_alloc_dirty_bitmap()). */
  dirty: Uint8Array | undefined;
}

/** An assigned ioeventfd (virt/kvm/eventfd.c: struct _ioeventfd). */
export interface Ioeventfd {
  readonly addr: bigint;
  readonly len: number;
  readonly pio: boolean;
  readonly datamatch: bigint | undefined;
  readonly eventfd: EventfdFile;
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
  /** KVM_CREATE_IRQCHIP (full) or KVM_CAP_SPLIT_IRQCHIP. */
  irqchip = false;
  chip: MockIrqchip | undefined;
  pit: MockPit | undefined;
  readonly irqfds = new Map<EventfdFile, { gsi: number; resample: EventfdFile | undefined }>();
  readonly ioeventfds: Ioeventfd[] = [];
  /** KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2's flags (kvm->manual_dirty_log_protect). */
  manualDirtyLogProtect = 0;
  /** KVM_CAP_X86_USER_SPACE_MSR's reasons, the MSR filter, KVM_CAP_EXIT_HYPERCALL's mask. */
  userSpaceMsr = 0;
  msrFilter: { defaultDeny: boolean; ranges: { flags: number; base: number; nmsrs: number; bitmap: Uint8Array }[] } | undefined;
  hypercallExitMask = 0n;
  /** KVM_CAP_X86_TRIPLE_FAULT_EVENT (kvm->arch.triple_fault_event): vCPU events carry triple_fault. */
  tripleFaultEvent = false;
  /** kvmclock: the offset so that KVM_GET_CLOCK = mock clock + offset (kvm->arch.kvmclock_offset). */
  kvmclockOffset = 0n;
  defaultTscKhz = 0;
  bspId = 0;
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
    const v = new MockVcpu(id, this.vcpuList.length, this.irqchip, id === this.bspId);
    if (this.defaultTscKhz) v.tscKhz = this.defaultTscKhz;
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
    // kvm_prepare_memory_region(): a bitmap while LOG_DIRTY_PAGES is set, all ones with KVM_DIRTY_LOG_INITIALLY_SET.
    let dirty: Uint8Array | undefined;
    if (r.flags & KVM_MEM.LOG_DIRTY_PAGES) {
      dirty = old?.dirty ?? new Uint8Array(Math.ceil(Number(r.size) / 4096 / 64) * 8);
      if (!old?.dirty && this.manualDirtyLogProtect & 2) markAll(dirty, Number(r.size) / 4096);
    }
    this.slots.set(r.slot, { slot: r.slot, flags: r.flags, gpa: r.gpa, size: Number(r.size), uaddr: r.uaddr, mapping, dirty });
  }

  /** The slot holding guest-physical page `gfn` (address space 0). */
  slotOfGpa(gpa: bigint): Memslot | undefined {
    for (const s of this.slots.values()) if (s.slot >>> 16 === 0 && gpa >= s.gpa && gpa < s.gpa + BigInt(s.size)) return s;
    return undefined;
  }

  /** mark_page_dirty_in_slot(). */
  markDirty(gpa: bigint): void {
    const s = this.slotOfGpa(gpa);
    if (!s?.dirty) return;
    const page = Number((gpa - s.gpa) >> 12n);
    s.dirty[page >> 3]! |= 1 << (page & 7);
  }

  /** KVM_GET_DIRTY_LOG (kvm_get_dirty_log_protect()): the bitmap; reset unless manual protect. */
  getDirtyLog(slot: number): Uint8Array {
    const id = slot & 0xffff;
    if (slot >>> 16 >= (this.hasProtectedState ? 1 : 2) || id >= KVM_USER_MEM_SLOTS) fail(E.EINVAL, 'bad slot');
    const s = this.slots.get(slot);
    if (!s?.dirty) fail(E.ENOENT, 'no such slot, or it does not log dirty pages');
    const out = s.dirty.slice();
    if (!(this.manualDirtyLogProtect & 1)) s.dirty.fill(0);
    return out;
  }

  /** KVM_CLEAR_DIRTY_LOG (kvm_clear_dirty_log_protect()): clears the given bits of [first, first+num). */
  clearDirtyLog(slot: number, first: bigint, num: number, bits: Uint8Array): void {
    const id = slot & 0xffff;
    if (slot >>> 16 >= (this.hasProtectedState ? 1 : 2) || id >= KVM_USER_MEM_SLOTS) fail(E.EINVAL, 'bad slot');
    if (first & 63n) fail(E.EINVAL, 'first_page is not a multiple of 64');
    const s = this.slots.get(slot);
    if (!s?.dirty) fail(E.ENOENT, 'no such slot, or it does not log dirty pages');
    const npages = BigInt(s.size / 4096);
    if (first > npages || BigInt(num) > npages - first || (BigInt(num) < npages - first && num & 63))
      fail(E.EINVAL, 'range outside the slot, or not a multiple of 64 pages');
    for (let i = 0; i < num; i++) {
      if (!(bits[i >> 3]! & (1 << (i & 7)))) continue;
      const page = Number(first) + i;
      s.dirty[page >> 3]! &= ~(1 << (page & 7));
    }
  }

  /** Creates the in-kernel irqchip (full or split). */
  makeIrqchip(split: boolean): void {
    this.irqchip = true;
    this.chip = new MockIrqchip(split);
  }
}

function markAll(bitmap: Uint8Array, pages: number): void {
  for (let p = 0; p < pages; p++) bitmap[p >> 3]! |= 1 << (p & 7);
}
