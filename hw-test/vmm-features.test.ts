/**
 * A VMM's KVM features on the real /dev/kvm, each proved by a small real-mode guest
 * (lib/app/guest/vmm-programs.ts): the in-kernel PIT and PIC, KVM_IRQ_LINE, irqfd, MSIs to a split
 * irqchip's x2APIC, ioeventfd doorbells, the dirty log with manual clearing, MSR-filter exits,
 * hypercall exits, MMIO read replies, read-only and moved slots, clocks, stats. Where this host's KVM
 * refuses a feature, the test is pending with the host's reason.
 */
import test, { type ExecutionContext } from 'ava';
import { Kvm } from '../lib/kvm/kvm.js';
import type { Vcpu } from '../lib/kvm/vcpu.js';
import type { VcpuExit } from '../lib/kvm/exits.js';
import { NativeBackend } from '../lib/backends/native/native-backend.js';
import { HybridBackend } from '../lib/backends/hybrid/hybrid-backend.js';
import { loadProgram } from '../lib/app/guest/setup.js';
import { SerialPort, kvmIrqLine } from '../lib/app/guest/serial.js';
import type { GuestProgram } from '../lib/app/guest/programs.js';
import {
  HYPERCALL_DOORBELL_PORT,
  VMM_DATA,
  VMM_PORT,
  dirtyPagesProgram,
  doorbellProgram,
  hypercallProgram,
  levelIrqProgram,
  mmioReadProgram,
  msrProgram,
  picIrqProgram,
  pitTicksProgram,
  popcntProgram,
  serialIrqProgram,
  sevTermProgram,
  tripleFaultProgram,
  x2apicIrqProgram,
} from '../lib/app/guest/vmm-programs.js';
import { SevLaunch } from '../lib/sev/launch.js';
import { SevPlatform } from '../lib/sev/platform.js';
import {
  KVM_CAP,
  KVM_HC_MAP_GPA_RANGE,
  KVM_INTERNAL_ERROR,
  KVM_MEM,
  KVM_SYSTEM_EVENT,
  KVM_X86_SEV_ES_VM,
  MSR_KVM_MIGRATION_CONTROL,
  SEV_POLICY,
} from '../lib/uapi/constants.js';
import {
  KVM_DEV_TYPE,
  KVM_DEV_VFIO,
  KVM_DIRTY_LOG,
  KVM_IRQCHIP,
  KVM_MSR_EXIT_REASON,
  KVM_MSR_FILTER,
  KVM_MSR_FILTER_DEFAULT_ALLOW,
} from '../lib/uapi/vmm-constants.js';
import { dirtyPages } from '../lib/uapi/vmm-structs.js';
import { hwTest, kvmDevice, sevDevice, type Requirement } from '../test/helpers/hw.js';

const kvm = kvmDevice();

interface BootOptions {
  irqchip?: 'kernel' | 'split';
  pit?: boolean;
  backend?: NativeBackend | HybridBackend;
}

/** A VM with 64 KiB at 0 and one vCPU at the program; everything closed when the test ends. */
function boot(t: ExecutionContext, program: GuestProgram | undefined, o: BootOptions = {}) {
  const k = Kvm.open({ backend: o.backend ?? new NativeBackend() });
  t.teardown(() => k.close());
  const vm = k.createVm();
  t.teardown(() => vm.close());
  if (o.irqchip === 'kernel') vm.createIrqchip();
  if (o.irqchip === 'split') vm.enableSplitIrqchip(24);
  if (o.pit) vm.createPit2();
  const mem = vm.addMemory({ guestPhysAddr: 0n, size: 0x10000 });
  const vcpu = vm.createVcpu(0);
  if (program) loadProgram(mem, vcpu, program);
  return { k, vm, mem, vcpu };
}

/** run(), kicked after `ms` if the guest has not exited by then (an exit that never comes is 'intr'). */
async function runFor(vcpu: Vcpu, ms = 5000): Promise<VcpuExit> {
  const timer = setTimeout(() => vcpu.kick(), ms);
  try {
    return await vcpu.run();
  } finally {
    clearTimeout(timer);
  }
}

/** Starts a run, lets the guest settle into HLT, does `poke`, and returns the exit it causes. */
async function afterPoke(vcpu: Vcpu, poke: () => void): Promise<VcpuExit> {
  const p = runFor(vcpu);
  await new Promise((r) => setTimeout(r, 20));
  poke();
  return p;
}

const isPort = (e: VcpuExit, port: number) => e.reason === 'io' && e.port === port && e.direction === 'out';
const tickCount = (e: VcpuExit) => (e.reason === 'io' ? e.data[0] : -1);

/** What KVM_CHECK_EXTENSION says about `cap` here, as a requirement. */
function capRequirement(name: keyof typeof KVM_CAP, why: string): Requirement {
  if (!kvm.ok) return kvm;
  const k = Kvm.open({ backend: new NativeBackend() });
  try {
    return k.checkExtension(KVM_CAP[name]) > 0
      ? { ok: true, reason: '' }
      : { ok: false, reason: `this host's KVM lacks KVM_CAP_${name}: ${why}` };
  } finally {
    k.close();
  }
}

/**
 * Whether a guest's VMMCALL comes back from KVM_RUN as KVM_EXIT_HYPERCALL here: a bounded probe (the
 * guest runs with a kick timer; no exit within 2 s means the host swallows it, as kvm_pvm does).
 */
async function hypercallRequirement(): Promise<Requirement> {
  if (!kvm.ok) return kvm;
  const k = Kvm.open({ backend: new NativeBackend() });
  try {
    if (!(BigInt(k.checkExtension(KVM_CAP.EXIT_HYPERCALL)) & (1n << 12n)))
      return { ok: false, reason: "this host's KVM lacks KVM_CAP_EXIT_HYPERCALL for KVM_HC_MAP_GPA_RANGE" };
    const vm = k.createVm();
    try {
      vm.enableHypercallExit(1n << BigInt(KVM_HC_MAP_GPA_RANGE));
      const mem = vm.addMemory({ guestPhysAddr: 0n, size: 0x10000 });
      const vcpu = vm.createVcpu(0);
      loadProgram(mem, vcpu, hypercallProgram(KVM_HC_MAP_GPA_RANGE, [0x8000, 1, 0]));
      const exit = await runFor(vcpu, 2000);
      if (exit.reason === 'hypercall') return { ok: true, reason: '' };
      return {
        ok: false,
        reason:
          `a guest's VMMCALL never returned from KVM_RUN within 2 s on this host (exit: ${exit.reason}): its /dev/kvm ` +
          '(kvm_pvm, a paravirtualised nested KVM) runs guests not built for PVM through the instruction emulator; the emulated doorbell test covers the code above',
      };
    } finally {
      vm.close();
    }
  } finally {
    k.close();
  }
}

const hypercall = await hypercallRequirement();
const guestMemfd = capRequirement('GUEST_MEMFD', 'no guest_memfd (KVM_CREATE_GUEST_MEMFD, KVM_SET_MEMORY_ATTRIBUTES need it)');
const tscScaling = capRequirement('TSC_CONTROL', 'no TSC scaling, so a vCPU cannot run at another TSC frequency');
const tripleFaultEvent = capRequirement('X86_TRIPLE_FAULT_EVENT', 'KVM_SET_VCPU_EVENTS cannot make a triple fault pending');

/** An SEV-ES guest needs KVM_X86_SEV_ES_VM from this KVM and the PSP behind /dev/sev. */
function sevEsRequirement(): Requirement {
  if (!kvm.ok) return kvm;
  const k = Kvm.open({ backend: new NativeBackend() });
  try {
    const types = k.supportedVmTypes();
    if (!types.includes(KVM_X86_SEV_ES_VM))
      return {
        ok: false,
        reason:
          `this host's KVM creates no SEV-ES VM (KVM_CAP_VM_TYPES lists ${JSON.stringify(types)}, not KVM_X86_SEV_ES_VM = 3): ` +
          "KVM_EXIT_SYSTEM_EVENT's SEV_TERM comes only from an SEV-ES guest's VMGEXIT; test/backends/mock/kernel/vmm-exits.test.ts checks the mock's",
      };
  } finally {
    k.close();
  }
  return sevDevice();
}
const sevEs = sevEsRequirement();

/**
 * Whether a real-mode guest's interrupt past its IDT limit triple-faults here: a bounded probe (1 s).
 * Where KVM emulates real mode, its __emulate_int_real() does not check the limit, and the guest
 * runs on from the vector it read (kvm_pvm here emulates every instruction of such a guest).
 */
async function realModeTripleFaultRequirement(): Promise<Requirement> {
  if (!kvm.ok) return kvm;
  const k = Kvm.open({ backend: new NativeBackend() });
  try {
    const vm = k.createVm();
    try {
      const mem = vm.addMemory({ guestPhysAddr: 0n, size: 0x10000 });
      const vcpu = vm.createVcpu(0);
      loadProgram(mem, vcpu, tripleFaultProgram({ realMode: true }));
      const exit = await runFor(vcpu, 1000);
      if (exit.reason === 'shutdown') return { ok: true, reason: '' };
      return {
        ok: false,
        reason:
          `a real-mode INT3 past an empty IDT gave no KVM_EXIT_SHUTDOWN within 1 s here (exit: ${exit.reason}, the guest at ` +
          `${vcpu.getRegs().rip.toString(16)}h): KVM emulates this host's real mode, and its __emulate_int_real() does not check ` +
          'the IDT limit; the protected-mode triple fault test covers KVM_EXIT_SHUTDOWN',
      };
    } finally {
      vm.close();
    }
  } finally {
    k.close();
  }
}
const realModeTripleFault = await realModeTripleFaultRequirement();

hwTest(
  kvm,
  "the in-kernel PIT's interrupts reach the guest's handler through the in-kernel PIC; GET_PIT2/GET_IRQCHIP show what it programmed",
  async (t) => {
    const { vm, mem, vcpu } = boot(t, pitTicksProgram(20, 11932), { irqchip: 'kernel', pit: true });
    const exit = await runFor(vcpu, 20000);
    t.true(isPort(exit, VMM_PORT.DONE), `exit ${exit.reason}`);
    t.is(new DataView(mem.read(BigInt(VMM_DATA), 2).buffer).getUint16(0, true), 20);
    const ch0 = vm.getPit2().channels[0]!;
    t.is(ch0.mode, 2);
    t.is(ch0.count, 11932);
    const pic = vm.getIrqchip(KVM_IRQCHIP.PIC_MASTER);
    t.is(pic.chip_id, 0);
    if (pic.chip_id !== 2) {
      t.is(pic.pic.irq_base, 0x20);
      t.is(pic.pic.imr, 0xfe);
    }
  },
);

hwTest(kvm, 'KVM_SET_PIT2 / KVM_SET_IRQCHIP round-trip through the kernel', (t) => {
  const { vm } = boot(t, undefined, { irqchip: 'kernel', pit: true });
  const pit = vm.getPit2();
  pit.channels[1]!.count = 0x1234;
  pit.channels[1]!.mode = 3;
  vm.setPit2(pit);
  const back = vm.getPit2().channels[1]!;
  t.is(back.count, 0x1234);
  t.is(back.mode, 3);
  const io = vm.getIrqchip(KVM_IRQCHIP.IOAPIC);
  t.is(io.chip_id, 2);
  if (io.chip_id === 2) {
    t.is(io.ioapic.base_address, 0xfec00000n);
    io.ioapic.redirtbl[3] = 0x31n; // vector 0x31, unmasked, edge
    vm.setIrqchip(io);
    const again = vm.getIrqchip(KVM_IRQCHIP.IOAPIC);
    if (again.chip_id === 2) t.is(again.ioapic.redirtbl[3], 0x31n);
  }
  const m = vm.getIrqchip(KVM_IRQCHIP.PIC_MASTER);
  if (m.chip_id !== 2) {
    vm.setIrqchip({ chip_id: 0, pic: { ...m.pic, imr: 0x5a } });
    const m2 = vm.getIrqchip(KVM_IRQCHIP.PIC_MASTER);
    if (m2.chip_id !== 2) t.is(m2.pic.imr, 0x5a);
  }
});

hwTest(kvm, 'KVM_IRQ_LINE / KVM_IRQ_LINE_STATUS deliver a vector the guest counts, each edge once', async (t) => {
  const { vm, vcpu } = boot(t, picIrqProgram(5), { irqchip: 'kernel' });
  t.true(isPort(await runFor(vcpu), VMM_PORT.READY));
  for (let i = 1; i <= 3; i++) {
    const exit = await afterPoke(vcpu, () => {
      if (i === 2) t.is(vm.irqLineStatus(5, 1), 1);
      else vm.irqLine(5, 1);
      vm.irqLine(5, 0);
    });
    t.true(isPort(exit, VMM_PORT.TICK), `interrupt ${i}: exit ${exit.reason}`);
    t.is(tickCount(exit), i);
  }
});

hwTest(kvm, 'an irqfd write injects its GSI without an ioctl; after deassign the same write injects nothing', async (t) => {
  const { vm, vcpu } = boot(t, picIrqProgram(5), { irqchip: 'kernel' });
  using ev = vm.eventfd();
  t.true(isPort(await runFor(vcpu), VMM_PORT.READY));
  vm.irqfd(ev, 5);
  const exit = await afterPoke(vcpu, () => ev.signal());
  t.true(isPort(exit, VMM_PORT.TICK));
  t.is(tickCount(exit), 1);
  t.is(ev.read(), 0n, 'KVM consumed the count');
  vm.irqfdDeassign(ev, 5);
  const none = await afterPoke(vcpu, () => ev.signal());
  t.is(none.reason, 'intr', 'no interrupt after deassign (the kick ended the run)');
  t.is(ev.read(), 1n, 'the write stayed in the eventfd');
});

hwTest(
  kvm,
  "irqfd with a resamplefd: a level-triggered guest's EOI lowers the line and signals the VMM, which raises it again only while its device has work",
  async (t) => {
    const { vm, mem, vcpu } = boot(t, levelIrqProgram(5), { irqchip: 'kernel' });
    using irq = vm.eventfd();
    using resample = vm.eventfd();
    t.true(isPort(await runFor(vcpu), VMM_PORT.READY));
    const pic = vm.getIrqchip(KVM_IRQCHIP.PIC_MASTER);
    if (pic.chip_id !== 2) t.is(pic.pic.elcr & 0x20, 0x20, 'the guest made IRQ 5 level-triggered');
    vm.irqfd(irq, 5, { resample });
    // The device: three units of work, each acknowledged by the guest's read of its status register.
    const work = [0xa1, 0xa2, 0xa3];
    let resamples = 0;
    let reasserts = 0;
    // The VMM's resample loop, on the event loop (no thread): the EOI lowered the line; raise it again while work is left.
    const vmmLoop = (async () => {
      for (;;) {
        await resample.wait();
        resamples++;
        if (work.length > 0) {
          reasserts++;
          irq.signal();
        }
      }
    })().catch((e: unknown) => e); // ends when the resamplefd closes (its wait is aborted)
    irq.signal(); // the device raises its line
    for (let i = 0; i < 3; i++) {
      const exit = await runFor(vcpu);
      t.true(exit.reason === 'io' && exit.port === VMM_PORT.ACK && exit.direction === 'in', `interrupt ${i + 1}: exit ${exit.reason}`);
      if (exit.reason === 'io') exit.data[0] = work.shift()!;
    }
    // After the third EOI the line stays low: the guest idles in HLT until the kick.
    t.is((await runFor(vcpu, 300)).reason, 'intr', 'no interrupt the VMM did not mean');
    t.is(resamples, 3, 'one resample per EOI');
    t.is(reasserts, 2);
    t.is(new DataView(mem.read(BigInt(VMM_DATA), 2).buffer).getUint16(0, true), 3, 'the guest counted three interrupts');
    t.deepEqual([...mem.read(BigInt(VMM_DATA + 0x100), 4)], [0xa1, 0xa2, 0xa3, 0], 'and read each unit of work once');
    const after = vm.getIrqchip(KVM_IRQCHIP.PIC_MASTER);
    if (after.chip_id !== 2) t.is(after.pic.irr & 0x20, 0, 'the line is low');
    resample.close();
    t.truthy(await vmmLoop);
  },
);

hwTest(
  kvm,
  "the 16550A's IRQ 4 through KVM_IRQ_LINE: an interrupt-driven guest driver receives bytes and echoes them, one interrupt each",
  async (t) => {
    const { vm, mem, vcpu } = boot(t, serialIrqProgram(), { irqchip: 'kernel' });
    const line = kvmIrqLine(vm, 4);
    let rises = 0;
    const com1 = new SerialPort({
      irq: (level) => {
        if (level) rises++;
        line(level);
      },
    });
    /** Runs the guest, serving its COM1 accesses, until it reports on a VMM port. */
    const runUntilReport = async (ms = 5000) => {
      for (;;) {
        const exit = await runFor(vcpu, ms);
        if (!com1.handle(exit)) return exit;
      }
    };
    t.true(isPort(await runUntilReport(), VMM_PORT.READY));
    t.false(com1.irqLevel, 'nothing pending yet: IRQ 4 low');
    const words = () => {
      const dv = new DataView(mem.read(BigInt(VMM_DATA), 6).buffer);
      return { interrupts: dv.getUint16(0, true), received: dv.getUint16(2, true), sent: dv.getUint16(4, true) };
    };
    let expected = 0;
    for (const input of ['hi', 'kvm']) {
      t.is(com1.receive(input), input.length);
      t.true(com1.irqLevel, 'received data raised IRQ 4');
      const done = await runUntilReport();
      t.true(isPort(done, VMM_PORT.DONE), `exit ${done.reason}`);
      // One interrupt for the received bytes, one per echoed byte, one that finds nothing left to send.
      expected += input.length + 2;
      t.is(tickCount(done), expected, 'the interrupt count the guest reported');
      t.is(rises, expected, 'each interrupt was one rise of the line');
      t.false(com1.irqLevel);
    }
    t.is(com1.output, 'hikvm');
    t.like(words(), { interrupts: expected, received: 5, sent: 5 });
    t.deepEqual([...mem.read(BigInt(VMM_DATA + 0x100), 5)], [...Buffer.from('hikvm')]);
    // The guest returns from its last handler and idles: no interrupt comes without data.
    t.is((await runUntilReport(300)).reason, 'intr');
    t.is(words().interrupts, expected);
  },
);

hwTest(kvm, 'a split irqchip: KVM_SIGNAL_MSI and an MSI route behind an irqfd reach the x2APIC guest', async (t) => {
  const { k, vm, vcpu } = boot(t, undefined, { irqchip: 'split' });
  vcpu.setCpuid2(k.supportedCpuid());
  vcpu.setMsrs([{ index: 0x1b, data: 0xfee00000n | 0x900n | 0x400n }]); // IA32_APIC_BASE: BSP, enabled, x2APIC
  loadProgram(vm.memory[0]!, vcpu, x2apicIrqProgram([0x40, 0x41]));
  t.true(isPort(await runFor(vcpu), VMM_PORT.READY));
  for (let i = 1; i <= 2; i++) {
    let accepted = -1;
    const exit = await afterPoke(vcpu, () => (accepted = vm.signalMsi({ address_lo: 0xfee00000, data: 0x40 })));
    t.is(accepted, 1);
    t.true(isPort(exit, VMM_PORT.TICK));
    t.is(tickCount(exit), i);
  }
  vm.setGsiRouting([{ gsi: 5, type: 'msi', addressLo: 0xfee00000, data: 0x41 }]);
  using ev = vm.eventfd();
  vm.irqfd(ev, 5);
  const exit = await afterPoke(vcpu, () => ev.signal());
  t.true(isPort(exit, VMM_PORT.TICK));
  t.is(tickCount(exit), 3);
});

hwTest(
  kvm,
  "split irqchip: the guest's EOI of a level-triggered MSI route comes back as KVM_EXIT_IOAPIC_EOI with its vector",
  async (t) => {
    const { k, vm, vcpu } = boot(t, undefined, { irqchip: 'split' });
    vcpu.setCpuid2(k.supportedCpuid());
    vcpu.setMsrs([{ index: 0x1b, data: 0xfee00000n | 0x900n | 0x400n }]);
    // A reserved IOAPIC GSI routed as a level-triggered MSI (data bit 15: level, bit 14: assert): KVM
    // intercepts the EOI of its vector for the VMM's IOAPIC (kvm_scan_ioapic_routes()).
    vm.setGsiRouting([{ gsi: 5, type: 'msi', addressLo: 0xfee00000, data: 0xc042 }]);
    loadProgram(vm.memory[0]!, vcpu, x2apicIrqProgram([0x42]));
    t.true(isPort(await runFor(vcpu), VMM_PORT.READY));
    const tick = await afterPoke(vcpu, () => vm.signalMsi({ address_lo: 0xfee00000, data: 0xc042 }));
    t.true(isPort(tick, VMM_PORT.TICK));
    t.deepEqual(await runFor(vcpu), { reason: 'ioapic_eoi', vector: 0x42 });
  },
);

hwTest(kvm, 'ioeventfd: 100 PIO writes complete without an exit and wake wait(); datamatch and MMIO doorbells', async (t) => {
  const { vm, vcpu } = boot(t, doorbellProgram(100, 0x600, 0xd000));
  using e1 = vm.eventfd();
  using e2 = vm.eventfd();
  using e3 = vm.eventfd();
  vm.ioeventfd({ eventfd: e1, addr: 0x600, len: 1, pio: true });
  vm.ioeventfd({ eventfd: e2, addr: 0x602, len: 1, pio: true, datamatch: 7n });
  vm.ioeventfd({ eventfd: e3, addr: 0xd0000, len: 1 });
  const woke = e1.wait();
  const first = await runFor(vcpu);
  // The first exit to JS is the write that matched nothing: OUT 8 to 0x602.
  t.true(isPort(first, 0x602));
  t.is(first.reason === 'io' ? first.data[0] : -1, 8);
  t.is(await woke, 100n);
  t.true(isPort(await runFor(vcpu), VMM_PORT.DONE), 'the MMIO store did not exit either');
  t.is(e2.read(), 1n);
  t.is(e3.read(), 1n);
  vm.ioeventfdDeassign({ eventfd: e1, addr: 0x600, len: 1, pio: true });
  const err = t.throws(() => vm.ioeventfdDeassign({ eventfd: e1, addr: 0x600, len: 1, pio: true }));
  t.is((err as { code?: string }).code, 'ENOENT');
});

hwTest(kvm, 'the dirty log of a guest writing known pages is exactly those pages, round after round, with manual clearing', async (t) => {
  const { vm, mem, vcpu } = boot(t, undefined);
  // Must precede the logged slot: with KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE, GET does not reset the log.
  vm.enableManualDirtyLogProtect(KVM_DIRTY_LOG.MANUAL_PROTECT_ENABLE);
  vm.addMemory({ guestPhysAddr: 0x20000n, size: 0x10000, slot: 1, flags: KVM_MEM.LOG_DIRTY_PAGES });
  const prog = dirtyPagesProgram(0x2000);
  const rounds = [[0, 3, 7], [1, 15], [3], [], [2, 4, 6, 8, 10, 12, 14]];
  for (const set of rounds) {
    mem.write(BigInt(VMM_DATA + 0x100), Uint8Array.from([...set, 0xff]));
    loadProgram(mem, vcpu, prog);
    t.true(isPort(await runFor(vcpu), VMM_PORT.DONE));
    const log = vm.getDirtyLog(1);
    t.is(log.byteLength, 8);
    t.deepEqual(dirtyPages(log), set, `round ${JSON.stringify(set)}`);
    t.deepEqual(dirtyPages(vm.getDirtyLog(1)), set, 'GET alone does not reset it (manual protect)');
    vm.clearDirtyLog(1, log);
  }
  t.deepEqual(dirtyPages(vm.getDirtyLog(1)), []);
});

hwTest(kvm, "a filtered MSR's RDMSR and WRMSR exit to JS and the guest gets JS's answer (MSR_KVM_MIGRATION_CONTROL)", async (t) => {
  const { vm, mem, vcpu } = boot(t, msrProgram(MSR_KVM_MIGRATION_CONTROL, 1));
  vm.enableUserSpaceMsr(KVM_MSR_EXIT_REASON.FILTER);
  vm.setMsrFilter(KVM_MSR_FILTER_DEFAULT_ALLOW, [
    { flags: KVM_MSR_FILTER.READ | KVM_MSR_FILTER.WRITE, base: MSR_KVM_MIGRATION_CONTROL, nmsrs: 1 },
  ]);
  const rd = await runFor(vcpu);
  t.is(rd.reason, 'rdmsr');
  if (rd.reason !== 'rdmsr') return;
  t.is(rd.index, MSR_KVM_MIGRATION_CONTROL);
  t.is(rd.msrReason, KVM_MSR_EXIT_REASON.FILTER);
  rd.reply({ data: 0x1122334455667788n });
  const wr = await runFor(vcpu);
  t.is(wr.reason, 'wrmsr');
  if (wr.reason !== 'wrmsr') return;
  t.is(wr.index, MSR_KVM_MIGRATION_CONTROL);
  t.is(wr.data, 1n);
  wr.reply({});
  t.true(isPort(await runFor(vcpu), VMM_PORT.DONE));
  const dv = new DataView(mem.read(BigInt(VMM_DATA + 0x10), 8).buffer);
  t.is(dv.getUint32(0, true), 0x55667788, 'EAX');
  t.is(dv.getUint32(4, true), 0x11223344, 'EDX');
});

hwTest(hypercall, "a guest's VMMCALL of KVM_HC_MAP_GPA_RANGE exits with its three arguments and gets its ret", async (t) => {
  const { vm, mem, vcpu } = boot(t, hypercallProgram(KVM_HC_MAP_GPA_RANGE, [0x8000, 2, 0x10]));
  vm.enableHypercallExit(1n << BigInt(KVM_HC_MAP_GPA_RANGE));
  const hc = await runFor(vcpu);
  t.is(hc.reason, 'hypercall');
  if (hc.reason !== 'hypercall') return;
  t.is(hc.nr, 12n);
  t.deepEqual(hc.args.slice(0, 3), [0x8000n, 2n, 0x10n]);
  hc.reply(0x77n);
  t.true(isPort(await runFor(vcpu), VMM_PORT.DONE));
  t.is(new DataView(mem.read(BigInt(VMM_DATA + 0x10), 4).buffer).getUint32(0, true), 0x77);
});

hwTest(
  kvm,
  'EMULATED hypercall (hybrid doorbell, not a VMMCALL): the same KVM_EXIT_HYPERCALL with three arguments, ret in RAX; disabled → -KVM_ENOSYS',
  async (t) => {
    const backend = new HybridBackend({ emulateHypercalls: { port: HYPERCALL_DOORBELL_PORT } });
    const { vm, mem, vcpu } = boot(t, hypercallProgram(KVM_HC_MAP_GPA_RANGE, [0x8000, 2, 0x10], true), { backend });
    vm.enableHypercallExit(1n << BigInt(KVM_HC_MAP_GPA_RANGE));
    const hc = await runFor(vcpu);
    t.is(hc.reason, 'hypercall');
    if (hc.reason !== 'hypercall') return;
    t.is(hc.nr, 12n);
    t.deepEqual(hc.args.slice(0, 3), [0x8000n, 2n, 0x10n]);
    hc.reply(0x77n);
    t.true(isPort(await runFor(vcpu), VMM_PORT.DONE));
    t.is(new DataView(mem.read(BigInt(VMM_DATA + 0x10), 4).buffer).getUint32(0, true), 0x77);
    t.is(backend.hypercallDoorbell?.emulated, 1);
    // Without KVM_CAP_EXIT_HYPERCALL the kernel answers itself: RAX = -KVM_ENOSYS, no exit.
    const again = boot(t, hypercallProgram(KVM_HC_MAP_GPA_RANGE, [0x8000, 2, 0x10], true), { backend });
    t.true(isPort(await runFor(again.vcpu), VMM_PORT.DONE));
    t.is(new DataView(again.mem.read(BigInt(VMM_DATA + 0x10), 4).buffer).getInt32(0, true), -1000);
  },
);

hwTest(kvm, "an MMIO read exits with the address; the bytes JS writes into the exit's data are what the guest loads", async (t) => {
  const { mem, vcpu } = boot(t, mmioReadProgram(0xd000));
  const rd = await runFor(vcpu);
  t.is(rd.reason, 'mmio');
  if (rd.reason !== 'mmio') return;
  t.is(rd.physAddr, 0xd0000n);
  t.false(rd.isWrite);
  t.is(rd.len, 1);
  rd.data[0] = 0xa5;
  t.true(isPort(await runFor(vcpu), VMM_PORT.DONE));
  t.is(mem.read(BigInt(VMM_DATA + 0x10), 1)[0], 0xa5);
});

hwTest(kvm, 'read-only slots turn writes into MMIO exits; a moved slot keeps its memory; a deleted one is gone', async (t) => {
  const { vm, mem, vcpu } = boot(t, undefined);
  const data = vm.addMemory({ guestPhysAddr: 0x20000n, size: 0x10000, slot: 1, flags: KVM_MEM.READONLY });
  mem.write(BigInt(VMM_DATA + 0x100), Uint8Array.from([2, 0xff]));
  loadProgram(mem, vcpu, dirtyPagesProgram(0x2000));
  const w = await runFor(vcpu);
  t.is(w.reason, 'mmio');
  if (w.reason === 'mmio') {
    t.true(w.isWrite);
    t.is(w.physAddr, 0x22000n);
  }
  // Move: same memory at 0x30000 (delete, then add again, as a flags/address change needs).
  vm.setUserMemoryRegion({ slot: 1, guestPhysAddr: 0x20000n, memory: null });
  vm.setUserMemoryRegion({ slot: 1, guestPhysAddr: 0x30000n, memory: data });
  loadProgram(mem, vcpu, dirtyPagesProgram(0x3000));
  t.true(isPort(await runFor(vcpu), VMM_PORT.DONE));
  t.is(data.read(0x22000n, 1)[0], 2, 'the guest wrote page 2 of the moved slot');
  vm.setUserMemoryRegion({ slot: 1, guestPhysAddr: 0x30000n, memory: null });
  loadProgram(mem, vcpu, dirtyPagesProgram(0x3000));
  const gone = await runFor(vcpu);
  t.is(gone.reason, 'mmio');
});

hwTest(kvm, 'KVM_SET_USER_MEMORY_REGION2 (without guest_memfd) backs a slot the guest runs from', async (t) => {
  const { vm, vcpu } = boot(t, undefined);
  const extra = vm.kvm.backend.mmapAnonymous(0x10000);
  t.teardown(() => {
    vm.close();
    extra.unmap();
  });
  vm.setUserMemoryRegion2({ slot: 2, guestPhysAddr: 0x40000n, memory: { kind: 'mapping', mapping: extra, offset: 0, length: 0x10000 } });
  vm.memory[0]!.write(BigInt(VMM_DATA + 0x100), Uint8Array.from([5, 0xff]));
  loadProgram(vm.memory[0]!, vcpu, dirtyPagesProgram(0x4000));
  t.true(isPort(await runFor(vcpu), VMM_PORT.DONE));
  t.is(new Uint8Array(extra.buffer)[0x5000], 5);
});

hwTest(guestMemfd, 'KVM_CREATE_GUEST_MEMFD and KVM_SET_MEMORY_ATTRIBUTES', (t) => {
  const { vm } = boot(t, undefined);
  const g = vm.createGuestMemfd(0x10000);
  t.teardown(() => g.close());
  t.is(g.kind, 'guest_memfd');
});

hwTest(kvm, 'an instruction the host cannot run exits with KVM_EXIT_INTERNAL_ERROR and its data, or runs (POPCNT)', async (t) => {
  const { mem, vcpu } = boot(t, popcntProgram());
  const exit = await runFor(vcpu);
  if (exit.reason === 'internal_error') {
    // kvm_pvm: the instruction emulator lacks POPCNT (KVM_INTERNAL_ERROR_EMULATION, with the instruction bytes in data).
    t.is(exit.suberror, KVM_INTERNAL_ERROR.EMULATION);
    t.true(exit.data.length > 0);
  } else {
    t.true(isPort(exit, VMM_PORT.DONE));
    t.is(mem.read(BigInt(VMM_DATA + 0x10), 1)[0], 8);
  }
});

hwTest(kvm, 'KVM_GET/SET_CLOCK move the kvmclock; KVM_GET/SET_TSC_KHZ on VM and vCPU; KVM_KVMCLOCK_CTRL needs a guest kvmclock', (t) => {
  const { vm, vcpu } = boot(t, undefined);
  const c0 = vm.getClock();
  vm.setClock({ clock: c0.clock + 10_000_000_000n });
  const c1 = vm.getClock();
  t.true(c1.clock >= c0.clock + 10_000_000_000n && c1.clock < c0.clock + 11_000_000_000n, `${c0.clock} → ${c1.clock}`);
  const khz = vcpu.tscKhz();
  t.true(khz > 0);
  t.is(vm.tscKhz(), khz);
  vcpu.setTscKhz(khz); // the same frequency needs no scaling
  t.is(vcpu.tscKhz(), khz);
  const e = t.throws(() => vcpu.kvmclockCtrl());
  t.is((e as { code?: string }).code, 'EINVAL');
});

hwTest(tscScaling, 'KVM_SET_TSC_KHZ runs a vCPU at another TSC frequency', (t) => {
  const { vcpu } = boot(t, undefined);
  const khz = vcpu.tscKhz();
  vcpu.setTscKhz(Math.floor(khz / 2));
  t.is(vcpu.tscKhz(), Math.floor(khz / 2));
});

hwTest(
  kvm,
  'KVM_SET_BOOT_CPU_ID makes vCPU 1 the BSP; KVM_INTERRUPT and KVM_NMI queue events on a vCPU without an in-kernel LAPIC',
  (t) => {
    const k = Kvm.open({ backend: new NativeBackend() });
    t.teardown(() => k.close());
    const vm = k.createVm();
    t.teardown(() => vm.close());
    vm.createIrqchip();
    vm.setBootCpuId(1);
    const ap = vm.createVcpu(0);
    const bsp = vm.createVcpu(1);
    t.is(bsp.getMpState().mp_state, 0, 'RUNNABLE');
    t.is(ap.getMpState().mp_state, 1, 'UNINITIALIZED');
    t.is(bsp.getMsrs([0x1b])[0]!.data & 0x100n, 0x100n, 'IA32_APIC_BASE.BSP');
    const err = t.throws(() => vm.setBootCpuId(0));
    t.is((err as { code?: string }).code, 'EBUSY');
    const plain = boot(t, undefined);
    plain.vcpu.interrupt(0x30);
    const ev = plain.vcpu.getVcpuEvents();
    t.is(ev.interrupt.injected, 1);
    t.is(ev.interrupt.nr, 0x30);
    plain.vcpu.nmi();
    t.is(plain.vcpu.getVcpuEvents().nmi.pending, 1);
  },
);

hwTest(kvm, 'binary stats: the vCPU counts the exits of a guest, the VM has its own stats', async (t) => {
  const { vm, vcpu } = boot(t, doorbellProgram(10, 0x600, 0xd000));
  using stats = vcpu.statsFd();
  const before = stats.read();
  t.true(before.has('exits'), [...before.keys()].join(', '));
  let exits = 0;
  for (let e = await runFor(vcpu); !isPort(e, VMM_PORT.DONE); e = await runFor(vcpu)) exits++;
  t.true(exits >= 10);
  const after = stats.read();
  // (io_exits stays 0 on kvm_pvm, whose port I/O goes through the emulator: the total is what every host counts.)
  t.true((after.get('exits') as bigint) - (before.get('exits') as bigint) >= BigInt(exits), `exits ${String(after.get('exits'))}`);
  t.regex(stats.id, /^kvm-\d+\/vcpu-0$/);
  using vmStats = vm.statsFd();
  t.regex(vmStats.id, /^kvm-\d+/);
  t.true(vmStats.descriptors.length > 0);
});

hwTest(kvm, 'KVM_CREATE_DEVICE: the VFIO device where the host has it, with its attributes; others are ENODEV', (t) => {
  const { vm } = boot(t, undefined);
  t.false(vm.testDevice(KVM_DEV_TYPE.ARM_VGIC_V3));
  if (!vm.testDevice(KVM_DEV_TYPE.VFIO)) {
    t.pass('this host has no KVM VFIO device');
    return;
  }
  using dev = vm.createDevice(KVM_DEV_TYPE.VFIO);
  t.is(dev.fd.kind, 'device');
  t.true(dev.hasAttr(KVM_DEV_VFIO.GROUP, KVM_DEV_VFIO.GROUP_ADD));
  t.false(dev.hasAttr(0x7777, 0));
});

hwTest(
  kvm,
  'a guest that triple-faults (a far jump past its GDT with an empty IDT) exits with KVM_EXIT_SHUTDOWN, again on every run',
  async (t) => {
    const { vcpu } = boot(t, tripleFaultProgram());
    t.true(isPort(await runFor(vcpu), VMM_PORT.READY), 'the guest reached protected mode');
    t.deepEqual(await runFor(vcpu), { reason: 'shutdown' });
    const s = vcpu.getSregs();
    t.is(s.cr0 & 1n, 1n, 'CR0.PE');
    t.is(s.idt.limit, 0);
    // Nothing answers a shutdown: until the VMM resets the vCPU, the guest faults the same way again.
    t.deepEqual(await runFor(vcpu), { reason: 'shutdown' });
  },
);

hwTest(realModeTripleFault, 'a real-mode guest whose INT3 lies past an empty IDT triple-faults: KVM_EXIT_SHUTDOWN', async (t) => {
  const { vcpu } = boot(t, tripleFaultProgram({ realMode: true }));
  t.deepEqual(await runFor(vcpu), { reason: 'shutdown' });
  t.is(vcpu.getSregs().cr0 & 1n, 0n, 'still in real mode');
});

hwTest(
  tripleFaultEvent,
  'KVM_CAP_X86_TRIPLE_FAULT_EVENT: a triple fault made pending with KVM_SET_VCPU_EVENTS is the next exit',
  async (t) => {
    const { vm, vcpu } = boot(t, picIrqProgram(5));
    const e = t.throws(() => vcpu.setVcpuEvents({ flags: 0x20, triple_fault: { pending: 1 } }));
    t.is((e as { code?: string }).code, 'EINVAL', 'KVM_VCPUEVENT_VALID_TRIPLE_FAULT needs the capability');
    vm.enableCap(KVM_CAP.X86_TRIPLE_FAULT_EVENT, [1n]);
    t.is(vcpu.getVcpuEvents().flags & 0x20, 0x20, 'KVM_VCPUEVENT_VALID_TRIPLE_FAULT');
    vcpu.setVcpuEvents({ triple_fault: { pending: 1 } });
    t.is(vcpu.getVcpuEvents().triple_fault.pending, 1);
    t.deepEqual(await runFor(vcpu), { reason: 'shutdown' });
    t.is(vcpu.getRegs().rip, 0x1000n, 'before the first instruction');
    t.is(vcpu.getVcpuEvents().triple_fault.pending, 0, 'consumed by the exit');
    vcpu.setVcpuEvents({ triple_fault: { pending: 1 } });
    vcpu.setVcpuEvents({ triple_fault: { pending: 0 } });
    const first = await runFor(vcpu);
    t.is(first.reason, 'io', 'cleared: the guest runs (its first OUT, to the PIC no irqchip models here)');
  },
);

hwTest(
  sevEs,
  "an SEV-ES guest's GHCB MSR termination request exits with KVM_EXIT_SYSTEM_EVENT (SEV_TERM, reason set and code)",
  async (t) => {
    const backend = new NativeBackend();
    const k = Kvm.open({ backend });
    t.teardown(() => k.close());
    const platform = SevPlatform.open(backend);
    t.teardown(() => platform.close());
    const vm = k.createVm(KVM_X86_SEV_ES_VM);
    t.teardown(() => vm.close());
    const mem = vm.addMemory({ guestPhysAddr: 0n, size: 0x10000 });
    const guest = await SevLaunch.init(vm, { platform, es: true });
    const vcpu = vm.createVcpu(0);
    loadProgram(mem, vcpu, sevTermProgram(1, 3));
    const launching = await guest.launchStart({ policy: SEV_POLICY.ES });
    await launching.launchUpdateData(mem);
    await launching.launchUpdateVmsa();
    const running = await (await launching.launchMeasure()).launchFinish();
    t.teardown(() => running.close());
    const exit = await runFor(vcpu);
    t.is(exit.reason, 'system_event');
    if (exit.reason !== 'system_event') return;
    t.is(exit.type, KVM_SYSTEM_EVENT.SEV_TERM);
    t.is(exit.data[0]! & 0xfffn, 0x100n, 'data[0] is the GHCB MSR with GHCB_MSR_TERM_REQ');
    t.deepEqual(exit.sevTerm, { reasonSet: 1, reasonCode: 3 });
  },
);

test('the hypercall probe ran and said why where it is pending', (t) => {
  t.true(hypercall.ok || hypercall.reason.length > 0);
});

test('the real-mode triple fault probe ran and said why where it is pending', (t) => {
  t.true(realModeTripleFault.ok || realModeTripleFault.reason.length > 0);
});

hwTest(
  kvm,
  'the hybrid passes them to the real KVM: irqchip/PIT state, an irqfd interrupt, ioeventfd doorbells, the dirty log, stats',
  async (t) => {
    const backend = new HybridBackend();
    const { vm, mem, vcpu } = boot(t, picIrqProgram(5), { irqchip: 'kernel', pit: true, backend });
    t.is(vm.getPit2().channels[2]!.gate, 0);
    using ev = vm.eventfd();
    t.is(ev.fd.kind, 'eventfd');
    t.true(isPort(await runFor(vcpu), VMM_PORT.READY));
    vm.irqfd(ev, 5);
    const exit = await afterPoke(vcpu, () => ev.signal());
    t.true(isPort(exit, VMM_PORT.TICK));
    const pic = vm.getIrqchip(KVM_IRQCHIP.PIC_MASTER);
    if (pic.chip_id !== 2) t.is(pic.pic.imr, 0xdf, 'the guest unmasked IRQ 5 only');
    vm.enableManualDirtyLogProtect(KVM_DIRTY_LOG.MANUAL_PROTECT_ENABLE);
    vm.addMemory({ guestPhysAddr: 0x20000n, size: 0x10000, slot: 1, flags: KVM_MEM.LOG_DIRTY_PAGES });
    mem.write(BigInt(VMM_DATA + 0x100), Uint8Array.from([4, 9, 0xff]));
    loadProgram(mem, vcpu, dirtyPagesProgram(0x2000));
    t.true(isPort(await runFor(vcpu), VMM_PORT.DONE));
    t.deepEqual(dirtyPages(vm.getDirtyLog(1)), [4, 9]);
    using stats = vcpu.statsFd();
    t.true((stats.read().get('exits') as bigint) > 0n);
  },
);
