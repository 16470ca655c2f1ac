/** A VM fd (see {@link Vm}). */
import type { Backend, BackendFd } from '../backend/contract.js';
import { explainKvmError, KvmSevError } from '../backend/errors.js';
import { invalidArgType, outOfRange } from '../uapi/errors.js';
import type { IoctlStruct, MappingRange } from '../uapi/ioctl-arg.js';
import * as ioc from '../uapi/ioctls.js';
import {
  kvm_clock_data,
  kvm_create_guest_memfd,
  kvm_enable_cap,
  kvm_enc_region,
  kvm_memory_attributes,
  kvm_userspace_memory_region,
  kvm_userspace_memory_region2,
  u64_value,
} from '../uapi/kvm-structs.js';
import type { ValueOf, EncodeInput } from '../uapi/codec.js';
import { KVM_CAP } from '../uapi/constants.js';
import { KVM_CREATE_DEVICE_TEST, KVM_IOEVENTFD_FLAG, KVM_IRQFD_FLAG } from '../uapi/vmm-constants.js';
import {
  decodeIrqchip,
  dirtyBitmapBytes,
  gsiRoutingArg,
  irqchipArg,
  kvm_clear_dirty_log,
  kvm_create_device,
  kvm_dirty_log,
  kvm_ioeventfd,
  kvm_irq_level,
  kvm_irqchip,
  kvm_irqfd,
  kvm_msi,
  kvm_pit_config,
  kvm_pit_state2,
  msrFilterArg,
  type GsiRoute,
  type KvmIoapicState,
  type KvmPicState,
  type MsrFilterRange,
} from '../uapi/vmm-structs.js';
import type { BackendFd as Fd } from '../backend/contract.js';
import { EventFd } from './eventfd.js';
import { KvmDevice, getDeviceAttr, hasDeviceAttr, setDeviceAttr } from './device.js';
import { KvmStats } from './stats.js';
import { GuestMemory, toBigAddr, type Address } from './guest-memory.js';
import { ramLayout, type RamLayoutOptions } from './ram-layout.js';
import type { Kvm } from './kvm.js';
import { Vcpu } from './vcpu.js';

export interface MemoryRegionOptions {
  slot: number;
  /** KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY. */
  flags?: number;
  guestPhysAddr: Address;
  /** The memory (all of it, or a range of a mapping); null with size 0 deletes the slot. */
  memory: GuestMemory | MappingRange | null;
}

export interface AddMemoryOptions {
  guestPhysAddr: Address;
  /** Bytes, a non-zero multiple of 4096. */
  size: number;
  /** Back it by a memfd (what local migration hands to another process); the name shows in /proc. */
  memfd?: boolean | string;
  slot?: number;
  flags?: number;
}

export interface AddRamOptions extends RamLayoutOptions {
  /** Bytes of RAM, a non-zero multiple of 4096. */
  size: number;
  /** Back each piece by a memfd (see {@link AddMemoryOptions.memfd}). */
  memfd?: boolean | string;
}

export type KvmPitState2 = ValueOf<typeof kvm_pit_state2>;
export type KvmClockData = ValueOf<typeof kvm_clock_data>;
export type IrqchipState = { chip_id: 0 | 1; pic: KvmPicState } | { chip_id: 2; ioapic: KvmIoapicState };

export interface MemoryRegion2Options extends MemoryRegionOptions {
  /** A guest_memfd from {@link Vm.createGuestMemfd} (with KVM_MEM_GUEST_MEMFD in flags) and the offset into it. */
  guestMemfd?: Fd;
  guestMemfdOffset?: bigint;
}

export interface IoeventfdOptions {
  eventfd: EventFd;
  /** Port (pio) or guest-physical address. */
  addr: Address;
  /** 1, 2, 4 or 8 bytes; 0 matches any length (MMIO only). */
  len: 0 | 1 | 2 | 4 | 8;
  /** A port-I/O address (KVM_IOEVENTFD_FLAG_PIO), else MMIO. */
  pio?: boolean;
  /** Signal only when the guest writes this value (KVM_IOEVENTFD_FLAG_DATAMATCH). */
  datamatch?: bigint;
}

/**
 * A VM fd: memory slots, vCPUs, capabilities, and the raw SEV entry points (KVM_MEMORY_ENCRYPT_OP,
 * KVM_MEMORY_ENCRYPT_REG/UNREG_REGION) that the SEV layer builds on. Made by {@link Kvm.createVm};
 * closing it closes its vCPUs and unmaps the memory it added.
 *
 * ```ts
 * import { Kvm } from 'kvm-sev';
 * import { MockHost } from 'kvm-sev/mock';
 * using kvm = Kvm.open({ backend: new MockHost() }); // runs anywhere; NativeBackend for the real /dev/kvm
 * using vm = kvm.createVm();
 * const mem = vm.addMemory({ guestPhysAddr: 0n, size: 0x10000 }); // anonymous memory in slot 0
 * const fw = vm.addMemory({ guestPhysAddr: 0xfff0_0000n, size: 0x10_0000, memfd: true }); // memfd-backed, as a handoff needs
 * const vcpu = vm.createVcpu(); // id 0; the next one is 1
 * console.log(vm.memoryAt(0x1000n) === mem, vm.memoryAt(0xffff_fff0n) === fw, vcpu.id); // true true 0
 * ```
 */
export class Vm implements Disposable, AsyncDisposable {
  readonly kvm: Kvm;
  readonly fd: BackendFd;
  readonly backend: Backend;
  /** KVM_X86_*_VM */
  readonly type: number;
  private readonly vcpus = new Set<Vcpu>();
  private readonly owned: GuestMemory[] = [];
  private readonly slots = new Map<number, GuestMemory | MappingRange>();
  private nextVcpuId = 0;

  /** @internal use {@link Kvm.createVm}. */
  constructor(kvm: Kvm, fd: BackendFd, type: number) {
    this.kvm = kvm;
    this.fd = fd;
    this.backend = kvm.backend;
    this.type = type;
  }

  get closed(): boolean {
    return this.fd.closed;
  }

  /** Guest memory added with {@link addMemory}, in order. */
  get memory(): readonly GuestMemory[] {
    return this.owned;
  }

  /** The guest memory holding `gpa`, if any. */
  memoryAt(gpa: Address, length = 1): GuestMemory | undefined {
    return this.owned.find((m) => !m.closed && m.contains(gpa, length));
  }

  checkExtension(cap: number): number {
    return this.backend.ioctl(this.fd, ioc.KVM_CHECK_EXTENSION, cap);
  }

  /** KVM_SET_USER_MEMORY_REGION. */
  setUserMemoryRegion(opts: MemoryRegionOptions): void {
    if (typeof opts !== 'object' || opts === null) throw invalidArgType('opts', 'object', opts);
    const range = opts.memory instanceof GuestMemory ? opts.memory.range() : opts.memory;
    this.backend.ioctl(
      this.fd,
      ioc.KVM_SET_USER_MEMORY_REGION,
      kvm_userspace_memory_region.arg({
        slot: opts.slot,
        flags: opts.flags ?? 0,
        guest_phys_addr: toBigAddr('guestPhysAddr', opts.guestPhysAddr),
        memory_size: BigInt(range ? range.length : 0),
        userspace_addr: range,
      }),
    );
    if (range) this.slots.set(opts.slot, opts.memory!);
    else this.slots.delete(opts.slot);
  }

  /** Maps new memory (anonymous or memfd) and plugs it in at `guestPhysAddr`. The VM owns it. */
  addMemory(opts: AddMemoryOptions): GuestMemory {
    if (typeof opts !== 'object' || opts === null) throw invalidArgType('opts', 'object', opts);
    let slot = opts.slot;
    if (slot === undefined) for (slot = 0; this.slots.has(slot); slot++);
    let memfd: BackendFd | undefined;
    let mapping;
    if (opts.memfd) {
      memfd = this.backend.memfdCreate(typeof opts.memfd === 'string' ? opts.memfd : `kvm-sev-guest-${slot}`, opts.size);
      try {
        mapping = this.backend.mmapShared(memfd, opts.size);
      } catch (e) {
        memfd.close();
        throw e;
      }
    } else {
      mapping = this.backend.mmapAnonymous(opts.size);
    }
    const mem = new GuestMemory(mapping, opts.guestPhysAddr, memfd);
    try {
      this.setUserMemoryRegion({ slot, flags: opts.flags ?? 0, guestPhysAddr: opts.guestPhysAddr, memory: mem });
    } catch (e) {
      mem.close();
      throw e;
    }
    this.owned.push(mem);
    return mem;
  }

  /**
   * Adds `size` bytes of RAM laid out as a PC does ({@link ramLayout}): from 0 up to the hole below
   * 4 GiB, the rest from 4 GiB, one memory slot each; returns the pieces in address order.
   * `vm.addRam({ size: 4 * 2 ** 30, memfd: true })` → RAM at [0, 3 GiB) and [4 GiB, 5 GiB).
   */
  addRam(opts: AddRamOptions): GuestMemory[] {
    if (typeof opts !== 'object' || opts === null) throw invalidArgType('opts', 'object', opts);
    const ranges = ramLayout(opts.size, opts.holeStart === undefined ? {} : { holeStart: opts.holeStart });
    const added: GuestMemory[] = [];
    try {
      for (const r of ranges) added.push(this.addMemory({ ...r, ...(opts.memfd === undefined ? {} : { memfd: opts.memfd }) }));
    } catch (e) {
      for (const m of added) this.removeMemory(m);
      throw e;
    }
    return added;
  }

  /** Unplugs memory added here (its slot deleted) and unmaps it. */
  private removeMemory(mem: GuestMemory): void {
    for (const [slot, m] of this.slots) if (m === mem) this.setUserMemoryRegion({ slot, guestPhysAddr: mem.guestPhysAddr, memory: null });
    this.owned.splice(this.owned.indexOf(mem), 1);
    mem.close();
  }

  /** KVM_CREATE_VCPU; ids count up from 0 by default. */
  createVcpu(id: number = this.nextVcpuId): Vcpu {
    if (!Number.isSafeInteger(id) || id < 0) throw outOfRange('id', 'an integer >= 0', id);
    let fd: BackendFd;
    try {
      fd = this.backend.ioctlFd(this.fd, ioc.KVM_CREATE_VCPU, id);
    } catch (e) {
      if ((e as { code?: unknown }).code !== 'EEXIST') throw e;
      const here = this.vcpuList.some((v) => v.id === id);
      throw explainKvmError(
        e,
        `vCPU id ${id} already exists in this VM`,
        here
          ? `vm.createVcpu(${id}) was called before: use that Vcpu, or createVcpu() with no id for the next free one`
          : `another fd of this VM (one received from another process, or a Vm over the same VM fd) created vCPU ${id}; pick another id`,
      );
    }
    const v = new Vcpu(this, id, fd);
    this.vcpus.add(v);
    this.nextVcpuId = Math.max(this.nextVcpuId, id + 1);
    return v;
  }

  /** @internal */
  forgetVcpu(v: Vcpu): void {
    this.vcpus.delete(v);
  }

  /** The vCPUs created here and not yet closed. */
  get vcpuList(): readonly Vcpu[] {
    return [...this.vcpus];
  }

  /** KVM_ENABLE_CAP on the VM (e.g. KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM with args[0] = source VM fd). */
  enableCap(cap: number, args: readonly bigint[] = [], flags = 0): void {
    this.backend.ioctl(this.fd, ioc.KVM_ENABLE_CAP, kvm_enable_cap.arg({ cap, flags, args: [0, 1, 2, 3].map((i) => args[i] ?? 0n) }));
  }

  /** See KVM_SET_TSS_ADDR: three pages of guest-physical space KVM needs on Intel: `vm.setTssAddr(0xfffbd000)`. */
  setTssAddr(addr: number): void {
    this.backend.ioctl(this.fd, ioc.KVM_SET_TSS_ADDR, addr);
  }
  /** See KVM_SET_IDENTITY_MAP_ADDR: one page for the real-mode identity map (Intel), before any vCPU: `vm.setIdentityMapAddr(0xfeffc000n)`. */
  setIdentityMapAddr(addr: Address): void {
    this.backend.ioctl(this.fd, ioc.KVM_SET_IDENTITY_MAP_ADDR, u64_value.arg({ value: toBigAddr('addr', addr) }));
  }
  /** KVM_CREATE_IRQCHIP: PIC pair, IOAPIC and a LAPIC per vCPU in the kernel. Before any vCPU: `vm.createIrqchip()`. */
  createIrqchip(): void {
    this.backend.ioctl(this.fd, ioc.KVM_CREATE_IRQCHIP);
  }
  /**
   * Split irqchip (KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP)): LAPICs in the kernel, PIC/IOAPIC in the
   * VMM, `routes` GSIs reserved for the IOAPIC; its EOIs come back as KVM_EXIT_IOAPIC_EOI. Before any vCPU.
   */
  enableSplitIrqchip(routes = 24): void {
    this.enableCap(KVM_CAP.SPLIT_IRQCHIP, [BigInt(routes)]);
  }

  /** See KVM_GET_IRQCHIP: `vm.getIrqchip(KVM_IRQCHIP.IOAPIC).ioapic.redirtbl`. */
  getIrqchip(chipId: 0 | 1 | 2): IrqchipState {
    const a = kvm_irqchip.arg({ chip_id: chipId });
    this.backend.ioctl(this.fd, ioc.KVM_GET_IRQCHIP, a);
    return decodeIrqchip(a.bytes);
  }
  /** See KVM_SET_IRQCHIP: `vm.setIrqchip({ chip_id: 0, pic: { ...pic, imr: 0xfe } })`. */
  setIrqchip(state: Parameters<typeof irqchipArg>[0]): void {
    this.backend.ioctl(this.fd, ioc.KVM_SET_IRQCHIP, irqchipArg(state));
  }
  /** See KVM_CREATE_PIT2: `vm.createPit2()` (after createIrqchip; flags KVM_PIT_SPEAKER_DUMMY). */
  createPit2(flags = 0): void {
    this.backend.ioctl(this.fd, ioc.KVM_CREATE_PIT2, kvm_pit_config.arg({ flags }));
  }
  /** See KVM_GET_PIT2: `vm.getPit2().channels[0].count`. */
  getPit2(): KvmPitState2 {
    const a = kvm_pit_state2.arg({});
    this.backend.ioctl(this.fd, ioc.KVM_GET_PIT2, a);
    return kvm_pit_state2.decode(a.bytes);
  }
  /** See KVM_SET_PIT2: `vm.setPit2(saved)`. */
  setPit2(state: EncodeInput<typeof kvm_pit_state2>): void {
    this.backend.ioctl(this.fd, ioc.KVM_SET_PIT2, kvm_pit_state2.arg(state));
  }
  /** See KVM_IRQ_LINE: `vm.irqLine(4, 1); vm.irqLine(4, 0)` (an edge on GSI 4). */
  irqLine(irq: number, level: 0 | 1): void {
    this.backend.ioctl(this.fd, ioc.KVM_IRQ_LINE, kvm_irq_level.arg({ irq, level }));
  }
  /**
   * See KVM_IRQ_LINE_STATUS: the kernel's status, > 0 delivered, 0 coalesced (already pending), < 0
   * masked or not delivered: `if (vm.irqLineStatus(4, 1) === 0) lost++`.
   */
  irqLineStatus(irq: number, level: 0 | 1): number {
    const a = kvm_irq_level.arg({ irq, level });
    this.backend.ioctl(this.fd, ioc.KVM_IRQ_LINE_STATUS, a);
    return kvm_irq_level.decode(a.bytes).irq | 0; // __s32 status over the irq field
  }
  /** See KVM_SET_GSI_ROUTING (replaces the table): `vm.setGsiRouting([{ gsi: 24, type: 'msi', addressLo: 0xfee00000, data: 0x40 }])`. */
  setGsiRouting(routes: readonly GsiRoute[]): void {
    this.backend.ioctl(this.fd, ioc.KVM_SET_GSI_ROUTING, gsiRoutingArg(routes));
  }
  /** See KVM_SIGNAL_MSI: how many LAPICs accepted it: `vm.signalMsi({ address_lo: 0xfee00000, data: 0x40 })`. */
  signalMsi(msi: EncodeInput<typeof kvm_msi>): number {
    return this.backend.ioctl(this.fd, ioc.KVM_SIGNAL_MSI, kvm_msi.arg(msi));
  }

  /** An owned eventfd on this VM's backend, for {@link irqfd} and {@link ioeventfd}: `using e = vm.eventfd()`. */
  eventfd(options: { initval?: number; semaphore?: boolean } = {}): EventFd {
    return EventFd.create(this.backend, options);
  }
  /**
   * See KVM_IRQFD: a write to `eventfd` raises GSI `gsi` (an edge). With `resample` (level-triggered,
   * KVM_IRQFD_FLAG_RESAMPLE), the line stays up until the guest EOIs, and KVM signals `resample` then.
   * `vm.irqfd(e, 5); e.signal();`
   */
  irqfd(eventfd: EventFd, gsi: number, options: { resample?: EventFd } = {}): void {
    const flags = options.resample ? KVM_IRQFD_FLAG.RESAMPLE : 0;
    this.backend.ioctl(
      this.fd,
      ioc.KVM_IRQFD,
      kvm_irqfd.arg({ fd: eventfd.fd.fd, gsi, flags, resamplefd: options.resample ? options.resample.fd.fd : 0 }),
    );
  }
  /** See KVM_IRQFD with KVM_IRQFD_FLAG_DEASSIGN: `vm.irqfdDeassign(e, 5)`. */
  irqfdDeassign(eventfd: EventFd, gsi: number): void {
    this.backend.ioctl(this.fd, ioc.KVM_IRQFD, kvm_irqfd.arg({ fd: eventfd.fd.fd, gsi, flags: KVM_IRQFD_FLAG.DEASSIGN }));
  }
  /** See KVM_IOEVENTFD: guest writes to `addr` signal the eventfd instead of exiting: `vm.ioeventfd({ eventfd: e, addr: 0x600, len: 1, pio: true })`. */
  ioeventfd(o: IoeventfdOptions, deassign = false): void {
    const flags =
      (o.pio ? KVM_IOEVENTFD_FLAG.PIO : 0) |
      (o.datamatch !== undefined ? KVM_IOEVENTFD_FLAG.DATAMATCH : 0) |
      (deassign ? KVM_IOEVENTFD_FLAG.DEASSIGN : 0);
    this.backend.ioctl(
      this.fd,
      ioc.KVM_IOEVENTFD,
      kvm_ioeventfd.arg({ datamatch: o.datamatch ?? 0n, addr: toBigAddr('addr', o.addr), len: o.len, fd: o.eventfd.fd.fd, flags }),
    );
  }
  /** See KVM_IOEVENTFD with KVM_IOEVENTFD_FLAG_DEASSIGN (the same options as when assigned). */
  ioeventfdDeassign(o: IoeventfdOptions): void {
    this.ioeventfd(o, true);
  }

  /** The size in bytes of memory slot `slot` as set here (for dirty bitmaps). */
  slotSize(slot: number): number {
    const m = this.slots.get(slot);
    if (!m) throw outOfRange('slot', 'a memory slot set on this Vm', slot);
    return m instanceof GuestMemory ? m.size : m.length;
  }
  /**
   * See KVM_GET_DIRTY_LOG: one bit per page of the slot (set with KVM_MEM_LOG_DIRTY_PAGES), pages
   * the guest wrote since the last call (with manual protect: since the last clearDirtyLog).
   * `dirtyPages(vm.getDirtyLog(1))` → `[0, 3, 7]`.
   */
  getDirtyLog(slot: number): Uint8Array {
    const bitmap = new Uint8Array(dirtyBitmapBytes(this.slotSize(slot) / 4096));
    this.backend.ioctl(this.fd, ioc.KVM_GET_DIRTY_LOG, kvm_dirty_log.arg({ slot, dirty_bitmap: bitmap }));
    return bitmap;
  }
  /**
   * See KVM_CLEAR_DIRTY_LOG (KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2): write-protects again the pages whose
   * bits are set in `bitmap`, from `firstPage` (a multiple of 64) for `numPages` pages:
   * `vm.clearDirtyLog(1, vm.getDirtyLog(1))`.
   */
  clearDirtyLog(slot: number, bitmap: Uint8Array, firstPage = 0, numPages = this.slotSize(slot) / 4096 - firstPage): void {
    this.backend.ioctl(
      this.fd,
      ioc.KVM_CLEAR_DIRTY_LOG,
      kvm_clear_dirty_log.arg({ slot, num_pages: numPages, first_page: firstPage, dirty_bitmap: bitmap }),
    );
  }
  /** KVM_ENABLE_CAP(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) with KVM_DIRTY_LOG_* flags (before slots are logged). */
  enableManualDirtyLogProtect(flags: number): void {
    this.enableCap(KVM_CAP.MANUAL_DIRTY_LOG_PROTECT2, [BigInt(flags)]);
  }

  /** See KVM_SET_USER_MEMORY_REGION2 (6.8+): a slot that may be backed by a guest_memfd for private memory. */
  setUserMemoryRegion2(opts: MemoryRegion2Options): void {
    if (typeof opts !== 'object' || opts === null) throw invalidArgType('opts', 'object', opts);
    const range = opts.memory instanceof GuestMemory ? opts.memory.range() : opts.memory;
    this.backend.ioctl(
      this.fd,
      ioc.KVM_SET_USER_MEMORY_REGION2,
      kvm_userspace_memory_region2.arg({
        slot: opts.slot,
        flags: opts.flags ?? 0,
        guest_phys_addr: toBigAddr('guestPhysAddr', opts.guestPhysAddr),
        memory_size: BigInt(range ? range.length : 0),
        userspace_addr: range,
        guest_memfd_offset: opts.guestMemfdOffset ?? 0n,
        guest_memfd: opts.guestMemfd ? opts.guestMemfd.fd : 0,
      }),
    );
    if (range) this.slots.set(opts.slot, opts.memory!);
    else this.slots.delete(opts.slot);
  }
  /** See KVM_CREATE_GUEST_MEMFD (6.8+, where KVM_CAP_GUEST_MEMFD): `vm.createGuestMemfd(0x10000)`. */
  createGuestMemfd(size: bigint | number, flags = 0n): Fd {
    return this.backend.ioctlFd(this.fd, ioc.KVM_CREATE_GUEST_MEMFD, kvm_create_guest_memfd.arg({ size: BigInt(size), flags }));
  }
  /** See KVM_SET_MEMORY_ATTRIBUTES (6.8+): `vm.setMemoryAttributes(0n, 0x1000n, KVM_MEMORY_ATTRIBUTE_PRIVATE)`. */
  setMemoryAttributes(address: bigint, size: bigint, attributes: bigint): void {
    this.backend.ioctl(this.fd, ioc.KVM_SET_MEMORY_ATTRIBUTES, kvm_memory_attributes.arg({ address, size, attributes, flags: 0n }));
  }

  /**
   * See KVM_X86_SET_MSR_FILTER: accesses the ranges deny exit to JS (with
   * KVM_CAP_X86_USER_SPACE_MSR / KVM_MSR_EXIT_REASON_FILTER) or get a #GP:
   * `vm.setMsrFilter(KVM_MSR_FILTER_DEFAULT_ALLOW, [{ flags: KVM_MSR_FILTER.READ | KVM_MSR_FILTER.WRITE, base: 0x4b564d08, nmsrs: 1 }])`.
   */
  setMsrFilter(flags: number, ranges: readonly MsrFilterRange[]): void {
    this.backend.ioctl(this.fd, ioc.KVM_X86_SET_MSR_FILTER, msrFilterArg(flags, ranges));
  }
  /** KVM_ENABLE_CAP(KVM_CAP_X86_USER_SPACE_MSR): which failed MSR accesses exit to JS (KVM_MSR_EXIT_REASON_* bits). */
  enableUserSpaceMsr(reasons: number): void {
    this.enableCap(KVM_CAP.X86_USER_SPACE_MSR, [BigInt(reasons)]);
  }
  /** KVM_ENABLE_CAP(KVM_CAP_EXIT_HYPERCALL): hypercalls in `mask` (bit n: hypercall n, e.g. 1 << KVM_HC_MAP_GPA_RANGE) exit to JS. */
  enableHypercallExit(mask: bigint): void {
    this.enableCap(KVM_CAP.EXIT_HYPERCALL, [mask]);
  }

  /** See KVM_GET_CLOCK: the kvmclock in ns (`clock`), with `realtime` and `host_tsc` where flags say so. */
  getClock(): KvmClockData {
    const a = kvm_clock_data.arg({});
    this.backend.ioctl(this.fd, ioc.KVM_GET_CLOCK, a);
    return kvm_clock_data.decode(a.bytes);
  }
  /** See KVM_SET_CLOCK: `vm.setClock({ clock: saved.clock })` after a migration. */
  setClock(data: EncodeInput<typeof kvm_clock_data>): void {
    this.backend.ioctl(this.fd, ioc.KVM_SET_CLOCK, kvm_clock_data.arg(data));
  }
  /** See KVM_SET_TSC_KHZ on the VM: the TSC frequency of vCPUs created after this: `vm.setTscKhz(2_000_000)`. */
  setTscKhz(khz: number): void {
    this.backend.ioctl(this.fd, ioc.KVM_SET_TSC_KHZ, khz);
  }
  /** See KVM_GET_TSC_KHZ on the VM: the default for new vCPUs. */
  tscKhz(): number {
    return this.backend.ioctl(this.fd, ioc.KVM_GET_TSC_KHZ);
  }
  /** See KVM_SET_BOOT_CPU_ID: which vCPU id is the BSP (before any vCPU): `vm.setBootCpuId(1)`. */
  setBootCpuId(id: number): void {
    this.backend.ioctl(this.fd, ioc.KVM_SET_BOOT_CPU_ID, id);
  }

  /** See KVM_CREATE_DEVICE: `using vfio = vm.createDevice(KVM_DEV_TYPE.VFIO)`. */
  createDevice(type: number): KvmDevice {
    return new KvmDevice(
      this.backend,
      this.backend.ioctlFd(this.fd, ioc.KVM_CREATE_DEVICE, kvm_create_device.arg({ type, flags: 0 })),
      type,
    );
  }
  /** See KVM_CREATE_DEVICE with KVM_CREATE_DEVICE_TEST: whether the device type exists (ENODEV: false). */
  testDevice(type: number): boolean {
    try {
      this.backend.ioctl(this.fd, ioc.KVM_CREATE_DEVICE, kvm_create_device.arg({ type, flags: KVM_CREATE_DEVICE_TEST }));
      return true;
    } catch (e) {
      if ((e as { code?: string }).code === 'ENODEV') return false;
      throw e;
    }
  }
  /** See KVM_SET_DEVICE_ATTR on the VM fd. */
  setDeviceAttr(group: number, attr: bigint | number, value: bigint | number): void {
    setDeviceAttr(this.backend, this.fd, group, attr, value);
  }
  /** See KVM_GET_DEVICE_ATTR on the VM fd. */
  getDeviceAttr(group: number, attr: bigint | number): bigint {
    return getDeviceAttr(this.backend, this.fd, group, attr);
  }
  /** See KVM_HAS_DEVICE_ATTR on the VM fd. */
  hasDeviceAttr(group: number, attr: bigint | number): boolean {
    return hasDeviceAttr(this.backend, this.fd, group, attr);
  }
  /** See KVM_GET_STATS_FD: `using s = vm.statsFd(); s.read().get('remote_tlb_flush')`. */
  statsFd(): KvmStats {
    return KvmStats.open(this.backend, this.fd);
  }

  /**
   * KVM_MEMORY_ENCRYPT_OP with a `kvm_sev_cmd` (or no argument: the "is SEV enabled?" probe, which
   * answers 0 or ENOTTY). The command's `error` field holds the firmware status afterwards.
   */
  memoryEncryptOp(cmd?: IoctlStruct): number {
    return this.backend.ioctl(this.fd, ioc.KVM_MEMORY_ENCRYPT_OP, cmd);
  }
  memoryEncryptOpAsync(cmd: IoctlStruct): Promise<number> {
    return this.backend.ioctlAsync(this.fd, ioc.KVM_MEMORY_ENCRYPT_OP, cmd);
  }
  /** KVM_MEMORY_ENCRYPT_REG_REGION: pins guest memory for an SEV guest. */
  registerEncRegion(range: MappingRange): void {
    this.backend.ioctl(this.fd, ioc.KVM_MEMORY_ENCRYPT_REG_REGION, kvm_enc_region.arg({ addr: range, size: BigInt(range.length) }));
  }
  /** KVM_MEMORY_ENCRYPT_UNREG_REGION: the exact range registered before. */
  unregisterEncRegion(range: MappingRange): void {
    this.backend.ioctl(this.fd, ioc.KVM_MEMORY_ENCRYPT_UNREG_REGION, kvm_enc_region.arg({ addr: range, size: BigInt(range.length) }));
  }

  /** Closes the vCPUs, then the VM fd, then unmaps the memory it added. Idempotent. */
  close(): void {
    for (const v of [...this.vcpus]) v.close();
    this.fd.close();
    this.slots.clear();
    for (const m of this.owned.splice(0)) {
      try {
        m.close();
      } catch (e) {
        // The kernel keeps the VM while other fds (a handed-off copy) reference it: the memory stays.
        if ((e as { code?: string }).code !== 'EBUSY') throw e;
      }
    }
  }
  [Symbol.dispose](): void {
    this.close();
  }
  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }
}

export { KvmSevError };
