/**
 * The mock KVM's answers to a VMM's ioctls beyond SEV: interrupt controllers and the PIT, IRQ lines,
 * GSI routing and MSIs, irqfd/ioeventfd, dirty logging, guest_memfd, the MSR filter, clocks and TSC,
 * the boot CPU, devices and stats (virt/kvm/kvm_main.c: kvm_vm_ioctl(), kvm_vcpu_ioctl();
 * arch/x86/kvm/x86.c: kvm_arch_vm_ioctl(), kvm_arch_vcpu_ioctl(); virt/kvm/eventfd.c), with the
 * kernel's checks and errnos. The state they carry round-trips (GET returns what SET or the model
 * put there); what no guest code can show here is listed in irqchip.ts and the runner.
 */
import { KVM_CAP } from '../../../../uapi/constants.js';
import {
  kvm_clock_data,
  kvm_create_guest_memfd,
  kvm_device_attr,
  kvm_enable_cap,
  kvm_memory_attributes,
} from '../../../../uapi/kvm-structs.js';
import {
  decodeGsiRouting,
  kvm_clear_dirty_log,
  kvm_create_device,
  kvm_dirty_log,
  kvm_interrupt,
  kvm_ioeventfd,
  kvm_irq_level,
  kvm_irqchip,
  kvm_irqfd,
  kvm_msi,
  kvm_msr_filter,
  kvm_pit_config,
  kvm_pit_state2,
} from '../../../../uapi/vmm-structs.js';
import { EventfdFile } from '../common/eventfd.js';
import { E, fail } from '../common/errno.js';
import { KernelFile } from '../common/files.js';
import { KVM_MAX_IRQ_ROUTES, MockIrqchip, MockPit } from './irqchip.js';
import { StatsFile, type MockStat } from './stats.js';
import type { MockVcpu } from './vcpu.js';
import type { MockVm } from './vm.js';

/** What the handlers need of the kernel around them (copy_from_user / copy_to_user, the fd table). */
export interface IoctlContext {
  bytes(addr: bigint, size: number): Uint8Array;
  write(addr: bigint, b: Uint8Array): void;
  /** The open file behind an fd number of the calling process. */
  fileOf(fd: number): KernelFile | undefined;
  /** The mock's monotonic clock in ns. */
  nowNs(): bigint;
  /** The host's TSC frequency. */
  readonly hostTscKhz: number;
}

export interface IoctlArgs {
  readonly int: bigint;
  readonly addr: bigint;
}

/** A fd KVM_CREATE_DEVICE made (kvm_device_fops). On x86, only KVM_DEV_TYPE_VFIO. */
export class DeviceFile extends KernelFile {
  readonly kind = 'device' as const;
  readonly path = 'anon_inode:kvm-vfio';
  readonly type: number;
  readonly vm: MockVm;
  constructor(vm: MockVm, type: number) {
    super();
    this.vm = vm;
    this.type = type;
    vm.hold();
  }
  protected release(): void {
    this.vm.release();
  }
}

/** A guest_memfd (virt/kvm/guest_memfd.c). */
export class GuestMemfdFile extends KernelFile {
  readonly kind = 'guest_memfd' as const;
  readonly path = 'anon_inode:[kvm-gmem]';
  readonly size: bigint;
  constructor(size: bigint) {
    super();
    this.size = size;
  }
  protected release(): void {}
}

const KVM_DEV_TYPE_VFIO = 4;
const KVM_DEV_VFIO_FILE = 1;
const KVM_MSR_FILTER_MAX_BITMAP_SIZE = 0x600;
const MAX_NR_RESERVED_IOAPIC_PINS = 48;
const KVM_CLOCK_VALID_FLAGS = 2 | 4 | 8;
const KVM_MAX_VCPU_IDS = 16384;
/** kvm_caps.max_guest_tsc_khz with TSC scaling (KVM_CAP_TSC_CONTROL): a 48-bit ratio's worth. */
const MAX_GUEST_TSC_KHZ = 0x7fffffff;
const EXIT_HYPERCALL_VALID = 1n << 12n;

function eventfdOf(ctx: IoctlContext, fd: number): EventfdFile {
  const f = ctx.fileOf(fd);
  if (!f) fail(E.EBADF);
  if (!(f instanceof EventfdFile)) fail(E.EINVAL, 'not an eventfd');
  return f;
}

/** kvm_set_msi() → delivery to the LAPIC(s) the MSI address names: how many accepted it. */
export function deliverMsi(vm: MockVm, addressLo: number, _addressHi: number, data: number): number {
  const dest = (addressLo >>> 12) & 0xff;
  const vector = data & 0xff;
  let n = 0;
  for (const v of vm.vcpuList) {
    if (!v.lapic || (v.apicId() !== dest && dest !== 0xff)) continue;
    if (!v.lapicEnabled()) continue;
    v.acceptInterrupt(vector);
    n++;
  }
  return n;
}

/**
 * kvm_notify_acked_gsi(): the guest EOI'd an interrupt of `gsi`; its ack notifiers run. An irqfd
 * resampler (virt/kvm/eventfd.c: irqfd_resampler_ack()) lowers the line it holds up, then signals
 * the resamplefd of every irqfd on it, so the VMM raises the line again if its device still wants service.
 */
export function ackGsi(vm: MockVm, gsi: number): void {
  const fds = [...vm.irqfds.values()].filter((x) => x.gsi === gsi && x.resample);
  if (fds.length === 0) return;
  vm.chip!.setIrq(gsi, 0, (lo, hi, d) => deliverMsi(vm, lo, hi, d));
  for (const x of fds) x.resample!.write(1n);
}

function irqfdInject(vm: MockVm, gsi: number, resample: boolean): void {
  const msi = (lo: number, hi: number, d: number) => deliverMsi(vm, lo, hi, d);
  vm.chip!.setIrq(gsi, 1, msi);
  if (!resample) vm.chip!.setIrq(gsi, 0, msi);
}

function vmStats(vm: MockVm): MockStat[] {
  const inst = 0x1;
  return [
    { name: 'remote_tlb_flush', flags: 0, value: () => 0n },
    { name: 'pages_4k', flags: inst, value: () => BigInt([...vm.slots.values()].reduce((a, s) => a + s.size / 4096, 0)) },
    { name: 'vcpus', flags: inst, value: () => BigInt(vm.vcpuList.length) },
  ];
}

function vcpuStats(v: MockVcpu): MockStat[] {
  return Object.keys(v.counters).map((k) => ({ name: k, flags: 0, value: () => v.counters[k as keyof MockVcpu['counters']] }));
}

/** A VM ioctl of this family; undefined if `name` is not one. */
export function vmmVmIoctl(ctx: IoctlContext, vm: MockVm, name: string, a: IoctlArgs, legacy: boolean): number | undefined {
  switch (name) {
    case 'KVM_GET_IRQCHIP':
    case 'KVM_SET_IRQCHIP': {
      const b = ctx.bytes(a.addr, kvm_irqchip.size);
      const id = new DataView(b.buffer, b.byteOffset).getUint32(0, true);
      if (!vm.chip || vm.chip.split) fail(E.ENXIO, 'no in-kernel PIC/IOAPIC');
      if (id > 2) fail(E.EINVAL, 'chip_id');
      const chip = id === 2 ? vm.chip.ioapic! : vm.chip.pics![id]!;
      if (name === 'KVM_GET_IRQCHIP') {
        b.fill(0, 8);
        b.set(chip, 8);
        ctx.write(a.addr, b);
      } else chip.set(b.subarray(8, 8 + chip.byteLength));
      return 0;
    }
    case 'KVM_IRQ_LINE':
    case 'KVM_IRQ_LINE_STATUS': {
      const l = kvm_irq_level.decode(ctx.bytes(a.addr, kvm_irq_level.size));
      if (!vm.chip) fail(E.ENXIO, 'no in-kernel irqchip');
      const status = vm.chip.setIrq(l.irq, l.level, (lo, hi, d) => deliverMsi(vm, lo, hi, d));
      if (name === 'KVM_IRQ_LINE_STATUS') {
        const out = new Uint8Array(4);
        new DataView(out.buffer).setInt32(0, status, true);
        ctx.write(a.addr, out);
      }
      return 0;
    }
    case 'KVM_SET_GSI_ROUTING': {
      const head = ctx.bytes(a.addr, 8);
      const dv = new DataView(head.buffer, head.byteOffset);
      const nr = dv.getUint32(0, true);
      if (!vm.chip) fail(E.EINVAL, 'no in-kernel irqchip');
      if (nr > KVM_MAX_IRQ_ROUTES || dv.getUint32(4, true)) fail(E.EINVAL);
      const all = new Uint8Array(8 + 48 * nr);
      all.set(head);
      all.set(ctx.bytes(a.addr + 8n, 48 * nr), 8);
      vm.chip.routes = MockIrqchip.parseRoutes(vm.chip.split, decodeGsiRouting(all).entries);
      return 0;
    }
    case 'KVM_SIGNAL_MSI': {
      const m = kvm_msi.decode(ctx.bytes(a.addr, kvm_msi.size));
      if (!vm.chip || m.flags & ~1) fail(E.EINVAL);
      return deliverMsi(vm, m.address_lo, m.address_hi, m.data);
    }
    case 'KVM_IRQFD': {
      const f = kvm_irqfd.decode(ctx.bytes(a.addr, kvm_irqfd.size));
      if (f.flags & ~3) fail(E.EINVAL, 'flags');
      const ev = eventfdOf(ctx, f.fd);
      if (f.flags & 1) {
        // kvm_irqfd_deassign(): 0 whether or not it was assigned.
        const x = vm.irqfds.get(ev);
        if (x?.gsi === f.gsi) {
          vm.irqfds.delete(ev);
          ev.onSignal = undefined;
          // irqfd_resampler_shutdown(): the last irqfd of a resampler lowers its line.
          if (x.resample && ![...vm.irqfds.values()].some((y) => y.gsi === f.gsi && y.resample))
            vm.chip?.setIrq(f.gsi, 0, (lo, hi, d) => deliverMsi(vm, lo, hi, d));
        }
        return 0;
      }
      // kvm_arch_irqfd_allowed(): an in-kernel irqchip (the IOAPIC for resampling), else EINVAL.
      if (!vm.chip) fail(E.EINVAL, 'no in-kernel irqchip');
      const resample = f.flags & 2 ? eventfdOf(ctx, f.resamplefd) : undefined;
      if (resample && vm.chip.split) fail(E.EINVAL, 'resampling needs the in-kernel IOAPIC');
      if (vm.irqfds.has(ev)) fail(E.EBUSY, 'the eventfd is an irqfd already');
      vm.irqfds.set(ev, { gsi: f.gsi, resample });
      // irqfd_wakeup(): each write is consumed and injects the GSI.
      ev.onSignal = (e) => {
        if (e.read() !== 0n) irqfdInject(vm, f.gsi, !!resample);
      };
      if (ev.count > 0n) ev.onSignal(ev); // signalled before assignment: injected at once
      return 0;
    }
    case 'KVM_IOEVENTFD': {
      const io = kvm_ioeventfd.decode(ctx.bytes(a.addr, kvm_ioeventfd.size));
      if (io.flags & ~0x1f) fail(E.EINVAL, 'flags');
      if (![0, 1, 2, 4, 8].includes(io.len)) fail(E.EINVAL, 'len');
      if (io.addr + BigInt(io.len) < io.addr) fail(E.EINVAL, 'address overflow');
      const pio = (io.flags & 2) !== 0;
      const datamatch = io.flags & 1 ? io.datamatch : undefined;
      if (io.len === 0 && datamatch !== undefined) fail(E.EINVAL, 'datamatch needs a length');
      const ev = eventfdOf(ctx, io.fd);
      const same = (x: (typeof vm.ioeventfds)[number]) =>
        x.addr === io.addr && x.len === io.len && x.pio === pio && x.datamatch === datamatch;
      if (io.flags & 4) {
        const i = vm.ioeventfds.findIndex((x) => same(x) && x.eventfd === ev);
        if (i < 0) fail(E.ENOENT, 'no such ioeventfd');
        vm.ioeventfds.splice(i, 1);
        return 0;
      }
      if (vm.ioeventfds.some(same)) fail(E.EEXIST, 'an ioeventfd is assigned there');
      vm.ioeventfds.push({ addr: io.addr, len: io.len, pio, datamatch, eventfd: ev });
      return 0;
    }
    case 'KVM_CREATE_PIT2':
      kvm_pit_config.decode(ctx.bytes(a.addr, kvm_pit_config.size));
      if (vm.pit) fail(E.EEXIST);
      vm.pit = new MockPit(ctx.nowNs());
      return 0;
    case 'KVM_GET_PIT2':
      if (!vm.pit) fail(E.ENXIO, 'no PIT');
      ctx.write(a.addr, vm.pit.state);
      return 0;
    case 'KVM_SET_PIT2':
      if (!vm.pit) fail(E.ENXIO, 'no PIT');
      vm.pit.set(ctx.bytes(a.addr, kvm_pit_state2.size), ctx.nowNs());
      return 0;
    case 'KVM_GET_DIRTY_LOG': {
      const d = kvm_dirty_log.decode(ctx.bytes(a.addr, kvm_dirty_log.size));
      const bits = vm.getDirtyLog(d.slot);
      ctx.write(d.dirty_bitmap, bits);
      return 0;
    }
    case 'KVM_CLEAR_DIRTY_LOG': {
      const c = kvm_clear_dirty_log.decode(ctx.bytes(a.addr, kvm_clear_dirty_log.size));
      const bits = ctx.bytes(c.dirty_bitmap, Math.ceil(c.num_pages / 64) * 8);
      vm.clearDirtyLog(c.slot, c.first_page, c.num_pages, bits);
      return 0;
    }
    case 'KVM_SET_MEMORY_ATTRIBUTES': {
      if (legacy) fail(E.ENOTTY);
      const m = kvm_memory_attributes.decode(ctx.bytes(a.addr, kvm_memory_attributes.size));
      const supported = vm.vmType === 4 ? 8n : 0n; // KVM_MEMORY_ATTRIBUTE_PRIVATE on SNP VMs
      if (!supported) fail(E.ENOTTY); // no KVM_CAP_MEMORY_ATTRIBUTES: the ioctl does not exist for the VM
      if (m.flags || m.attributes & ~supported) fail(E.EINVAL);
      if (m.size === 0n || m.address + m.size < m.address || (m.address | m.size) & 0xfffn) fail(E.EINVAL);
      return 0;
    }
    case 'KVM_X86_SET_MSR_FILTER': {
      const f = kvm_msr_filter.decode(ctx.bytes(a.addr, kvm_msr_filter.size));
      if (f.flags & ~1) fail(E.EINVAL, 'flags');
      const ranges: NonNullable<MockVm['msrFilter']>['ranges'] = [];
      for (const r of f.ranges) {
        if (!r.nmsrs) continue;
        if (r.flags & ~3 || !r.flags) fail(E.EINVAL, 'range flags');
        const size = Math.ceil(r.nmsrs / 64) * 8;
        if (size > KVM_MSR_FILTER_MAX_BITMAP_SIZE) fail(E.EINVAL, 'bitmap too large');
        ranges.push({ flags: r.flags, base: r.base, nmsrs: r.nmsrs, bitmap: ctx.bytes(r.bitmap, size) });
      }
      if (ranges.length === 0 && f.flags & 1) fail(E.EINVAL, 'deny-by-default with no ranges');
      vm.msrFilter = { defaultDeny: (f.flags & 1) !== 0, ranges };
      return 0;
    }
    case 'KVM_GET_CLOCK': {
      const now = ctx.nowNs();
      ctx.write(
        a.addr,
        kvm_clock_data.encode({
          clock: now + vm.kvmclockOffset,
          flags: 4 | 8, // KVM_CLOCK_REALTIME | KVM_CLOCK_HOST_TSC
          realtime: BigInt(Date.now()) * 1_000_000n,
          host_tsc: (now * BigInt(ctx.hostTscKhz)) / 1_000_000n,
        }),
      );
      return 0;
    }
    case 'KVM_SET_CLOCK': {
      const c = kvm_clock_data.decode(ctx.bytes(a.addr, kvm_clock_data.size));
      if (c.flags & ~KVM_CLOCK_VALID_FLAGS) fail(E.EINVAL);
      vm.kvmclockOffset = c.clock - ctx.nowNs();
      return 0;
    }
    case 'KVM_SET_TSC_KHZ': {
      let khz = Number(a.int);
      if (a.int >= BigInt(MAX_GUEST_TSC_KHZ)) fail(E.EINVAL);
      if (khz === 0) khz = ctx.hostTscKhz;
      if (vm.created > 0) fail(E.EINVAL, 'vCPUs exist');
      vm.defaultTscKhz = khz;
      return 0;
    }
    case 'KVM_GET_TSC_KHZ':
      return vm.defaultTscKhz || ctx.hostTscKhz;
    case 'KVM_SET_BOOT_CPU_ID':
      if (vm.created > 0) fail(E.EBUSY, 'vCPUs exist');
      if (a.int >= BigInt(KVM_MAX_VCPU_IDS)) fail(E.EINVAL);
      vm.bspId = Number(a.int);
      return 0;
    default:
      return undefined;
  }
}

/** KVM_ENABLE_CAP on a VM for the caps of this family; undefined if not one. */
export function vmmEnableCap(vm: MockVm, c: ReturnType<typeof kvm_enable_cap.decode>, legacy: boolean): number | undefined {
  const arg0 = c.args[0]!;
  switch (c.cap) {
    case KVM_CAP.SPLIT_IRQCHIP:
      if (arg0 > BigInt(MAX_NR_RESERVED_IOAPIC_PINS)) fail(E.EINVAL);
      if (vm.irqchip) fail(E.EEXIST, 'an irqchip exists');
      if (vm.created > 0) fail(E.EINVAL, 'vCPUs exist');
      vm.makeIrqchip(true);
      return 0;
    case KVM_CAP.MANUAL_DIRTY_LOG_PROTECT2:
      if (arg0 & ~3n) fail(E.EINVAL);
      vm.manualDirtyLogProtect = Number(arg0);
      return 0;
    case KVM_CAP.X86_USER_SPACE_MSR:
      if (arg0 & ~7n) fail(E.EINVAL);
      vm.userSpaceMsr = Number(arg0);
      return 0;
    case KVM_CAP.EXIT_HYPERCALL:
      if (legacy) return undefined;
      if (arg0 & ~EXIT_HYPERCALL_VALID) fail(E.EINVAL);
      vm.hypercallExitMask = arg0;
      return 0;
    case KVM_CAP.X86_TRIPLE_FAULT_EVENT:
      if (legacy) return undefined;
      vm.tripleFaultEvent = arg0 !== 0n; // kvm->arch.triple_fault_event = cap->args[0]
      return 0;
    default:
      return undefined;
  }
}

/** KVM_CREATE_DEVICE / KVM_CREATE_GUEST_MEMFD / KVM_GET_STATS_FD on a VM: the new file (null: none, the TEST flag). */
export function vmmVmFile(ctx: IoctlContext, vm: MockVm, name: string, a: IoctlArgs): KernelFile | null | undefined {
  switch (name) {
    case 'KVM_CREATE_DEVICE': {
      const d = kvm_create_device.decode(ctx.bytes(a.addr, kvm_create_device.size));
      if (d.type !== KVM_DEV_TYPE_VFIO) fail(E.ENODEV, `device type ${d.type}`);
      if (d.flags & 1) return null; // KVM_CREATE_DEVICE_TEST
      return new DeviceFile(vm, d.type);
    }
    case 'KVM_CREATE_GUEST_MEMFD': {
      const g = kvm_create_guest_memfd.decode(ctx.bytes(a.addr, kvm_create_guest_memfd.size));
      if (vm.vmType !== 4) fail(E.EINVAL, 'the VM has no private memory'); // KVM_CAP_GUEST_MEMFD is 0 for it
      if (g.flags !== 0n || g.size === 0n || g.size & 0xfffn) fail(E.EINVAL);
      return new GuestMemfdFile(g.size);
    }
    case 'KVM_GET_STATS_FD':
      return new StatsFile('anon_inode:kvm-vm-stats', `kvm-${process.pid}`, vmStats(vm));
    default:
      return undefined;
  }
}

/** A vCPU ioctl of this family; undefined if `name` is not one. */
export function vmmVcpuIoctl(ctx: IoctlContext, vm: MockVm, v: MockVcpu, name: string, a: IoctlArgs): number | undefined {
  switch (name) {
    case 'KVM_INTERRUPT': {
      const irq = kvm_interrupt.decode(ctx.bytes(a.addr, kvm_interrupt.size)).irq;
      if (irq >= 256) fail(E.EINVAL);
      if (vm.chip && !vm.chip.split) fail(E.ENXIO, 'the in-kernel LAPIC takes interrupts from the irqchip');
      if (vm.chip?.split) {
        if (v.pendingExternalVector !== -1) fail(E.EEXIST);
        v.pendingExternalVector = irq;
        return 0;
      }
      v.queueInterrupt(irq);
      return 0;
    }
    case 'KVM_NMI':
      v.queueNmi();
      return 0;
    case 'KVM_KVMCLOCK_CTRL':
      // pv_time.active: the guest enabled kvmclock (MSR_KVM_SYSTEM_TIME_NEW bit 0).
      if (!((v.msrs.get(0x4b564d01) ?? 0n) & 1n)) fail(E.EINVAL, 'kvmclock is not active');
      return 0;
    case 'KVM_SET_TSC_KHZ': {
      if (a.int >= BigInt(MAX_GUEST_TSC_KHZ)) fail(E.EINVAL);
      v.tscKhz = a.int === 0n ? ctx.hostTscKhz : Number(a.int);
      return 0;
    }
    case 'KVM_GET_TSC_KHZ':
      return v.tscKhz;
    case 'KVM_SET_DEVICE_ATTR':
    case 'KVM_GET_DEVICE_ATTR':
    case 'KVM_HAS_DEVICE_ATTR': {
      // KVM_VCPU_TSC_CTRL (0) / KVM_VCPU_TSC_OFFSET (0): the only vCPU attribute on x86.
      const attr = kvm_device_attr.decode(ctx.bytes(a.addr, kvm_device_attr.size));
      if (attr.group !== 0 || attr.attr !== 0n) fail(E.ENXIO);
      if (name === 'KVM_GET_DEVICE_ATTR') {
        const out = new Uint8Array(8);
        new DataView(out.buffer).setBigUint64(0, v.tscOffset, true);
        ctx.write(attr.addr, out);
      } else if (name === 'KVM_SET_DEVICE_ATTR') {
        v.tscOffset = new DataView(ctx.bytes(attr.addr, 8).buffer).getBigUint64(0, true);
      }
      return 0;
    }
    default:
      return undefined;
  }
}

/** KVM_GET_STATS_FD on a vCPU. */
export function vcpuStatsFile(v: MockVcpu): StatsFile {
  return new StatsFile('anon_inode:kvm-vcpu-stats', `kvm-${process.pid}/vcpu-${v.id}`, vcpuStats(v));
}

/** Device-fd ioctls (kvm_device_ioctl()): the VFIO device's attributes (virt/kvm/vfio.c). */
export function deviceIoctl(ctx: IoctlContext, _dev: DeviceFile, name: string, a: IoctlArgs): number {
  if (!['KVM_SET_DEVICE_ATTR', 'KVM_GET_DEVICE_ATTR', 'KVM_HAS_DEVICE_ATTR'].includes(name)) return fail(E.ENOTTY);
  const attr = kvm_device_attr.decode(ctx.bytes(a.addr, kvm_device_attr.size));
  if (name === 'KVM_GET_DEVICE_ATTR') fail(E.EPERM, 'the VFIO device has no get_attr'); // kvm_device_ioctl_attr(): no accessor
  if (attr.group !== KVM_DEV_VFIO_FILE || (attr.attr !== 1n && attr.attr !== 2n)) fail(E.ENXIO);
  if (name === 'KVM_HAS_DEVICE_ATTR') return 0;
  // KVM_DEV_VFIO_FILE_ADD/DEL take a VFIO file's fd, which the mock has none of.
  const fd = new DataView(ctx.bytes(attr.addr, 4).buffer).getInt32(0, true);
  if (!ctx.fileOf(fd)) fail(E.EBADF);
  return fail(E.EINVAL, 'not a VFIO file');
}
