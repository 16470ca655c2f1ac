/**
 * The mock kernel answers a VMM's ioctls as KVM does: irqchip and PIT state round trips with the
 * kernel's reset values, IRQ lines into the PIC/IOAPIC, GSI routing and MSIs into LAPIC IRRs,
 * irqfd/ioeventfd bookkeeping and signalling, the dirty log of what the (queued) guest writes, the
 * MSR filter and hypercall exits with their replies completed on the next KVM_RUN, clocks, TSC, the
 * boot CPU, interrupts/NMIs, devices, stats, and the kernel's errnos on misuse.
 */
import test, { type ExecutionContext } from 'ava';
import { Kvm } from '../../../../lib/kvm/kvm.js';
import { MockHost } from '../../../../lib/backends/mock/index.js';
import { KVM_CAP, KVM_MEM, MSR_KVM_MIGRATION_CONTROL } from '../../../../lib/uapi/constants.js';
import {
  KVM_DEV_TYPE,
  KVM_DEV_VFIO,
  KVM_DIRTY_LOG,
  KVM_IRQCHIP,
  KVM_MSR_EXIT_REASON,
  KVM_MSR_FILTER,
  KVM_MSR_FILTER_DEFAULT_ALLOW,
} from '../../../../lib/uapi/vmm-constants.js';
import { dirtyPages, ioapicRedirection, kvm_dirty_log } from '../../../../lib/uapi/vmm-structs.js';
import * as ioc from '../../../../lib/uapi/ioctls.js';

function setup(t: ExecutionContext, o: { irqchip?: 'kernel' | 'split'; vcpus?: number } = {}) {
  const host = new MockHost();
  const kvm = Kvm.open({ backend: host });
  t.teardown(() => kvm.close());
  const vm = kvm.createVm();
  t.teardown(() => vm.close());
  if (o.irqchip === 'kernel') vm.createIrqchip();
  if (o.irqchip === 'split') vm.enableSplitIrqchip(24);
  const mem = vm.addMemory({ guestPhysAddr: 0n, size: 0x10000 });
  const vcpu = vm.createVcpu(0);
  return { host, kvm, vm, mem, vcpu };
}

const code = (f: () => unknown) => {
  try {
    f();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return 'no error';
};

test('irqchip: ENXIO before KVM_CREATE_IRQCHIP and with a split one; reset values; SET/GET round trips', (t) => {
  const { vm } = setup(t);
  t.is(
    code(() => vm.getIrqchip(0)),
    'ENXIO',
  );
  const split = setup(t, { irqchip: 'split' });
  t.is(
    code(() => split.vm.getIrqchip(0)),
    'ENXIO',
  );
  t.is(
    code(() => split.vm.createIrqchip()),
    'EEXIST',
  );
  const { vm: v2 } = setup(t, { irqchip: 'kernel' });
  const m = v2.getIrqchip(KVM_IRQCHIP.PIC_MASTER);
  const s = v2.getIrqchip(KVM_IRQCHIP.PIC_SLAVE);
  if (m.chip_id === 2 || s.chip_id === 2) return t.fail();
  t.is(m.pic.elcr_mask, 0xf8);
  t.is(s.pic.elcr_mask, 0xde);
  const io = v2.getIrqchip(KVM_IRQCHIP.IOAPIC);
  if (io.chip_id !== 2) return t.fail();
  t.is(io.ioapic.base_address, 0xfec00000n);
  t.true(io.ioapic.redirtbl.every((e) => ioapicRedirection(e).mask === 1));
  v2.setIrqchip({ chip_id: 0, pic: { ...m.pic, imr: 0xfb, irq_base: 0x20 } });
  const m2 = v2.getIrqchip(0);
  if (m2.chip_id !== 2) t.deepEqual([m2.pic.imr, m2.pic.irq_base], [0xfb, 0x20]);
  t.is(
    code(() => v2.getIrqchip(3 as 2)),
    'EINVAL',
  );
});

test('KVM_IRQ_LINE: an edge sets the PIC IRR; a new edge while it is pending is coalesced; an unmasked IOAPIC pin delivers to its LAPIC', (t) => {
  const { vm, vcpu } = setup(t, { irqchip: 'kernel' });
  t.is(vm.irqLineStatus(5, 1), 1, 'PIC only: the IOAPIC pin is masked');
  const pic = vm.getIrqchip(0);
  if (pic.chip_id !== 2) t.is(pic.pic.irr & 0x20, 0x20);
  t.is(vm.irqLineStatus(5, 1), 1, 'still high: no new edge');
  vm.irqLine(5, 0);
  t.is(vm.irqLineStatus(5, 1), 0, 'a new edge while IRR still holds the last one: coalesced');
  vm.irqLine(5, 0);
  const io = vm.getIrqchip(2);
  if (io.chip_id !== 2) return t.fail();
  io.ioapic.redirtbl[6] = 0x36n; // vector 0x36, fixed, edge, unmasked, destination 0
  vm.setIrqchip(io);
  t.is(vm.irqLineStatus(6, 1), 1 + 0, 'PIC 1, IOAPIC 0: the LAPIC is software-disabled after reset');
  vm.irqLine(6, 0);
  const page = vcpu.getLapic();
  new DataView(page.buffer).setUint32(0xf0, 0x1ff, true);
  vcpu.setLapic(page);
  const m = vm.getIrqchip(0);
  if (m.chip_id !== 2) vm.setIrqchip({ chip_id: 0, pic: { ...m.pic, irr: 0 } });
  t.is(vm.irqLineStatus(6, 1), 1 + 1, 'PIC and IOAPIC');
  t.is((new DataView(vcpu.getLapic().buffer).getUint32(0x210, true) >>> (0x36 - 32)) & 1, 1, 'IRR bit of vector 0x36');
  const none = setup(t);
  t.is(
    code(() => none.vm.irqLine(5, 1)),
    'ENXIO',
  );
});

test('KVM_CREATE_PIT2 / KVM_GET_PIT2 / KVM_SET_PIT2: reset state, round trip, EEXIST, ENXIO', (t) => {
  const { vm } = setup(t, { irqchip: 'kernel' });
  t.is(
    code(() => vm.getPit2()),
    'ENXIO',
  );
  vm.createPit2();
  t.is(
    code(() => vm.createPit2()),
    'EEXIST',
  );
  const p = vm.getPit2();
  t.deepEqual(
    p.channels.map((c) => [c.count, c.mode, c.gate]),
    [
      [0x10000, 0xff, 1],
      [0x10000, 0xff, 1],
      [0x10000, 0xff, 0],
    ],
  );
  p.channels[0]!.count = 11932;
  p.channels[0]!.mode = 2;
  vm.setPit2(p);
  const q = vm.getPit2().channels[0]!;
  t.deepEqual([q.count, q.mode], [11932, 2]);
});

test('split irqchip: KVM_SIGNAL_MSI reaches a software-enabled LAPIC only; an MSI route behind an irqfd sets the IRR and consumes the count', (t) => {
  const { vm, vcpu } = setup(t, { irqchip: 'split' });
  t.is(vm.signalMsi({ address_lo: 0xfee00000, data: 0x40 }), 0, 'SVR.APIC_ENABLED is clear after reset');
  const page = vcpu.getLapic();
  new DataView(page.buffer).setUint32(0xf0, 0x1ff, true);
  vcpu.setLapic(page);
  t.is(vm.signalMsi({ address_lo: 0xfee00000, data: 0x40 }), 1);
  const irr = (v: number) => (new DataView(vcpu.getLapic().buffer).getUint32(0x200 + (v >> 5) * 0x10, true) >>> (v & 31)) & 1;
  t.is(irr(0x40), 1);
  t.is(
    code(() => vm.setGsiRouting([{ gsi: 1, type: 'irqchip', irqchip: 0, pin: 1 }])),
    'EINVAL',
    'no PIC routes on a split irqchip',
  );
  vm.setGsiRouting([{ gsi: 5, type: 'msi', addressLo: 0xfee00000, data: 0x41 }]);
  using ev = vm.eventfd();
  vm.irqfd(ev, 5);
  t.is(
    code(() => vm.irqfd(ev, 5)),
    'EBUSY',
  );
  ev.signal();
  t.is(irr(0x41), 1);
  t.is(ev.read(), 0n, 'the irqfd consumed the write');
  using resample = vm.eventfd();
  using ev2 = vm.eventfd();
  t.is(
    code(() => vm.irqfd(ev2, 6, { resample })),
    'EINVAL',
    'resampling needs the in-kernel IOAPIC',
  );
});

test('irqfd and ioeventfd: the kernel errnos (no irqchip, not an eventfd, bad length, duplicates, unknown deassign)', (t) => {
  const { host, vm } = setup(t);
  using ev = vm.eventfd();
  t.is(
    code(() => vm.irqfd(ev, 5)),
    'EINVAL',
  );
  const notEventfd = host.memfdCreate('x', 4096);
  t.teardown(() => notEventfd.close());
  t.is(
    code(() =>
      host.ioctl(vm.fd, ioc.KVM_IRQFD, {
        kind: 'struct',
        bytes: new Uint8Array(32).fill(0).map((_, i) => (i === 0 ? notEventfd.fd : 0)),
        fixups: [],
      }),
    ),
    'EINVAL',
  );
  t.is(
    code(() => vm.ioeventfd({ eventfd: ev, addr: 0x600, len: 3 as 1, pio: true })),
    'EINVAL',
  );
  vm.ioeventfd({ eventfd: ev, addr: 0x600, len: 1, pio: true });
  t.is(
    code(() => vm.ioeventfd({ eventfd: ev, addr: 0x600, len: 1, pio: true })),
    'EEXIST',
  );
  vm.ioeventfdDeassign({ eventfd: ev, addr: 0x600, len: 1, pio: true });
  t.is(
    code(() => vm.ioeventfdDeassign({ eventfd: ev, addr: 0x600, len: 1, pio: true })),
    'ENOENT',
  );
});

test('ioeventfd: a queued guest OUT to the port signals the eventfd without an exit; a datamatch miss exits', async (t) => {
  const { host, vm, vcpu } = setup(t);
  using ev = vm.eventfd();
  vm.ioeventfd({ eventfd: ev, addr: 0x602, len: 1, pio: true, datamatch: 7n });
  const woke = ev.wait();
  host.queueGuestOps(vcpu.fd, [
    { op: 'out', port: 0x602, size: 1, value: 7 },
    { op: 'out', port: 0x602, size: 1, value: 8 },
  ]);
  const exit = await vcpu.run();
  t.is(exit.reason, 'io');
  if (exit.reason === 'io') t.deepEqual([exit.port, exit.data[0]], [0x602, 8]);
  t.is(await woke, 1n);
});

test('dirty log: exactly the pages the guest stored to, GET resets without manual protect; manual protect keeps them until CLEAR', async (t) => {
  const { host, vm, vcpu } = setup(t);
  vm.addMemory({ guestPhysAddr: 0x20000n, size: 0x10000, slot: 1, flags: KVM_MEM.LOG_DIRTY_PAGES });
  const store = (pages: number[]) =>
    host.queueGuestOps(
      vcpu.fd,
      pages.map((p) => ({ op: 'store' as const, gpa: 0x20000n + BigInt(p) * 4096n + 5n, bytes: Uint8Array.of(p) })),
    );
  store([0, 3, 7]);
  host.queueGuestOps(vcpu.fd, [{ op: 'out', port: 0x500, size: 1, value: 0 }]);
  t.is((await vcpu.run()).reason, 'io');
  t.deepEqual(dirtyPages(vm.getDirtyLog(1)), [0, 3, 7]);
  t.deepEqual(dirtyPages(vm.getDirtyLog(1)), [], 'reset by the GET');
  t.is(vm.memory[1]!.read(0x23005n, 1)[0], 3, 'the store reached guest memory');
  t.is(
    code(() => vm.getDirtyLog(0)),
    'ENOENT',
    'slot 0 does not log',
  );
  const e = t.throws(() => host.ioctl(vm.fd, ioc.KVM_GET_DIRTY_LOG, kvm_dirty_log.arg({ slot: 9, dirty_bitmap: new Uint8Array(8) })));
  t.is((e as { code?: string }).code, 'ERR_INVALID_ARG_VALUE', 'a slot the process did not set cannot be sized');
  t.is(
    code(() => host.ioctl(vm.fd, ioc.KVM_GET_DIRTY_LOG, kvm_dirty_log.arg({ slot: 1, dirty_bitmap: new Uint8Array(4) }))),
    'ERR_OUT_OF_RANGE',
  );

  const m = setup(t);
  m.vm.enableManualDirtyLogProtect(KVM_DIRTY_LOG.MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG.INITIALLY_SET);
  m.vm.addMemory({ guestPhysAddr: 0x20000n, size: 0x10000, slot: 1, flags: KVM_MEM.LOG_DIRTY_PAGES });
  const all = m.vm.getDirtyLog(1);
  t.is(dirtyPages(all).length, 16, 'KVM_DIRTY_LOG_INITIALLY_SET');
  m.vm.clearDirtyLog(1, all);
  t.deepEqual(dirtyPages(m.vm.getDirtyLog(1)), []);
  m.host.queueGuestOps(m.vcpu.fd, [
    { op: 'store', gpa: 0x2f000n, bytes: Uint8Array.of(1) },
    { op: 'out', port: 0x500, size: 1, value: 0 },
  ]);
  await m.vcpu.run();
  t.deepEqual(dirtyPages(m.vm.getDirtyLog(1)), [15]);
  t.deepEqual(dirtyPages(m.vm.getDirtyLog(1)), [15], 'kept until cleared');
  t.is(
    code(() => m.vm.clearDirtyLog(1, new Uint8Array(8), 1, 15)),
    'EINVAL',
    'first_page must be a multiple of 64',
  );
});

test("MSR filter: a filtered RDMSR/WRMSR exits with KVM_MSR_EXIT_REASON_FILTER; the reply's data reaches EDX:EAX, its error a #GP", async (t) => {
  const { host, vm, vcpu } = setup(t);
  vm.enableUserSpaceMsr(KVM_MSR_EXIT_REASON.FILTER);
  vm.setMsrFilter(KVM_MSR_FILTER_DEFAULT_ALLOW, [
    { flags: KVM_MSR_FILTER.READ | KVM_MSR_FILTER.WRITE, base: MSR_KVM_MIGRATION_CONTROL, nmsrs: 1 },
  ]);
  host.queueGuestOps(vcpu.fd, [
    { op: 'rdmsr', index: MSR_KVM_MIGRATION_CONTROL },
    { op: 'wrmsr', index: MSR_KVM_MIGRATION_CONTROL, value: 1n },
    { op: 'rdmsr', index: 0x1b }, // allowed: KVM answers
    { op: 'out', port: 0x500, size: 1, value: 0 },
  ]);
  const rd = await vcpu.run();
  if (rd.reason !== 'rdmsr') return t.fail(rd.reason);
  t.deepEqual([rd.index, rd.msrReason], [MSR_KVM_MIGRATION_CONTROL, KVM_MSR_EXIT_REASON.FILTER]);
  rd.reply({ data: 0x1122334455667788n });
  const wr = await vcpu.run();
  const regs = vcpu.getRegs();
  t.deepEqual([regs.rax, regs.rdx], [0x55667788n, 0x11223344n]);
  if (wr.reason !== 'wrmsr') return t.fail(wr.reason);
  t.is(wr.data, 1n);
  wr.reply({ error: true });
  t.is((await vcpu.run()).reason, 'io');
  t.is(vcpu.getVcpuEvents().exception.nr, 13, 'the error reply injected #GP');
  const bare = setup(t);
  bare.vm.setMsrFilter(KVM_MSR_FILTER_DEFAULT_ALLOW, [{ flags: KVM_MSR_FILTER.READ, base: MSR_KVM_MIGRATION_CONTROL, nmsrs: 1 }]);
  bare.host.queueGuestOps(bare.vcpu.fd, [
    { op: 'rdmsr', index: MSR_KVM_MIGRATION_CONTROL },
    { op: 'out', port: 0x500, size: 1, value: 0 },
  ]);
  t.is((await bare.vcpu.run()).reason, 'io', 'no user-space MSR exits: no exit');
  t.is(bare.vcpu.getVcpuEvents().exception.injected, 1, '#GP instead');
  t.is(
    code(() => vm.setMsrFilter(1, [])),
    'EINVAL',
    'deny-by-default with no ranges',
  );
});

test('KVM_EXIT_HYPERCALL: KVM_HC_MAP_GPA_RANGE exits with its three arguments when enabled, and ret reaches RAX on the next KVM_RUN; otherwise -KVM_ENOSYS', async (t) => {
  const { host, vm, vcpu } = setup(t);
  host.queueGuestOps(vcpu.fd, [
    { op: 'vmmcall', nr: 12n, args: [0x8000n, 2n, 0x10n] },
    { op: 'out', port: 0x500, size: 1, value: 0 },
  ]);
  t.is((await vcpu.run()).reason, 'io', 'not enabled: KVM answers itself');
  t.is(BigInt.asIntN(64, vcpu.getRegs().rax), -1000n);
  t.is(
    code(() => vm.enableHypercallExit(1n << 3n)),
    'EINVAL',
  );
  vm.enableHypercallExit(1n << 12n);
  host.queueGuestOps(vcpu.fd, [
    { op: 'vmmcall', nr: 12n, args: [0x8000n, 2n, 0x10n] },
    { op: 'out', port: 0x500, size: 1, value: 0 },
  ]);
  const hc = await vcpu.run();
  if (hc.reason !== 'hypercall') return t.fail(hc.reason);
  t.is(hc.nr, 12n);
  t.deepEqual(hc.args.slice(0, 3), [0x8000n, 2n, 0x10n]);
  hc.reply(0n);
  t.is((await vcpu.run()).reason, 'io');
  t.is(vcpu.getRegs().rax, 0n);
  host.queueGuestOps(vcpu.fd, [
    { op: 'vmmcall', nr: 12n, args: [0x8001n, 2n, 0n] },
    { op: 'out', port: 0x500, size: 1, value: 0 },
  ]);
  t.is((await vcpu.run()).reason, 'io', 'an unaligned GPA never reaches the VMM');
  t.is(BigInt.asIntN(64, vcpu.getRegs().rax), -22n);
  using stats = vcpu.statsFd();
  t.is(stats.read().get('hypercalls'), 3n);
  t.true((stats.read().get('exits') as bigint) >= 4n);
});

test('clock, TSC, boot CPU, KVM_INTERRUPT, KVM_NMI, KVM_KVMCLOCK_CTRL answer as the kernel does', (t) => {
  const { vm, vcpu } = setup(t);
  const c0 = vm.getClock();
  vm.setClock({ clock: c0.clock + 10_000_000_000n });
  const c1 = vm.getClock();
  t.true(c1.clock >= c0.clock + 10_000_000_000n && c1.clock < c0.clock + 11_000_000_000n);
  t.is(
    code(() => vm.setClock({ clock: 0n, flags: 1 })),
    'EINVAL',
  );
  t.is(vcpu.tscKhz(), vm.tscKhz());
  vcpu.setTscKhz(1_000_000);
  t.is(vcpu.tscKhz(), 1_000_000);
  t.is(
    code(() => vm.setTscKhz(1_000_000)),
    'EINVAL',
    'vCPUs exist',
  );
  t.is(
    code(() => vm.setBootCpuId(1)),
    'EBUSY',
  );
  vcpu.interrupt(0x30);
  t.deepEqual([vcpu.getVcpuEvents().interrupt.injected, vcpu.getVcpuEvents().interrupt.nr], [1, 0x30]);
  vcpu.interrupt(0x31);
  t.is(vcpu.getVcpuEvents().interrupt.nr, 0x31, 'a second one replaces the first');
  vcpu.nmi();
  t.is(vcpu.getVcpuEvents().nmi.pending, 1);
  t.is(
    code(() => vcpu.kvmclockCtrl()),
    'EINVAL',
    'the guest has not enabled kvmclock',
  );
  vcpu.setMsrs([{ index: 0x4b564d01, data: 0x9001n }]);
  t.notThrows(() => vcpu.kvmclockCtrl());
  const fresh = new MockHost();
  const k = Kvm.open({ backend: fresh });
  t.teardown(() => k.close());
  const v2 = k.createVm();
  t.teardown(() => v2.close());
  v2.createIrqchip();
  v2.setTscKhz(1_500_000);
  v2.setBootCpuId(1);
  const ap = v2.createVcpu(0);
  const bsp = v2.createVcpu(1);
  t.deepEqual([bsp.getMpState().mp_state, ap.getMpState().mp_state], [0, 1]);
  t.is(bsp.tscKhz(), 1_500_000);
  t.is(
    code(() => bsp.interrupt(0x30)),
    'ENXIO',
    'the in-kernel LAPIC takes interrupts from the irqchip',
  );
});

test('devices: only KVM_DEV_TYPE_VFIO exists; its fd has the VFIO file attributes; GET has no accessor (EPERM)', (t) => {
  const { vm, vcpu } = setup(t);
  t.true(vm.testDevice(KVM_DEV_TYPE.VFIO));
  t.false(vm.testDevice(KVM_DEV_TYPE.ARM_VGIC_V3));
  using dev = vm.createDevice(KVM_DEV_TYPE.VFIO);
  t.is(dev.fd.kind, 'device');
  t.true(dev.hasAttr(KVM_DEV_VFIO.GROUP, KVM_DEV_VFIO.GROUP_ADD));
  t.false(dev.hasAttr(2, 0));
  t.is(
    code(() => dev.getAttr(KVM_DEV_VFIO.GROUP, KVM_DEV_VFIO.GROUP_ADD)),
    'EPERM',
  );
  vcpu.setDeviceAttr(0, 0, 1234n);
  t.is(vcpu.getDeviceAttr(0, 0), 1234n, 'KVM_VCPU_TSC_OFFSET round trip');
  t.false(vcpu.hasDeviceAttr(0, 1));
  using stats = vm.statsFd();
  t.regex(stats.id, /^kvm-\d+$/);
  t.is(stats.read().get('pages_4k'), 16n);
});

test('guest_memfd: EINVAL on a VM without private memory; KVM_CAP_GUEST_MEMFD says so on the VM fd', (t) => {
  const { vm } = setup(t);
  t.is(vm.checkExtension(KVM_CAP.GUEST_MEMFD), 0);
  t.is(
    code(() => vm.createGuestMemfd(0x10000)),
    'EINVAL',
  );
  t.is(
    code(() => vm.setMemoryAttributes(0n, 0x1000n, 8n)),
    'ENOTTY',
  );
});
