/**
 * Real-mode guests that prove a VMM's KVM features end to end (flat, CS = DS = 0, loaded at
 * `origin`): interrupts from the in-kernel PIT and PIC, MSIs to an x2APIC, ioeventfd doorbells, a
 * dirty-page writer, MSR accesses and a hypercall. Each reports through port I/O at
 * {@link VMM_PORT}: `DONE` when finished, `TICK` with the interrupt count in AL, `READY` once its
 * interrupt controller is set up. Data lives at {@link VMM_DATA}.
 */
import { Asm, mem, ref, span } from './asm.js';
import { Asm16 } from './asm16.js';
import { outOfRange } from '../../uapi/errors.js';
import { COM1, type GuestProgram } from './programs.js';

/** The ports the guests report on; ACK is the status register of {@link levelIrqProgram}'s device. */
export const VMM_PORT = Object.freeze({ DONE: 0x500, TICK: 0x501, READY: 0x502, ACK: 0x503 } as const);
/** Where the guests keep their data: the interrupt count (word) at +0, results from +0x10, a table at +0x100. */
export const VMM_DATA = 0x7000;
const COUNT = VMM_DATA;
/** The port the hybrid backend's hypercall emulation listens on (an OUT imm8, so DX stays an argument). */
export const HYPERCALL_DOORBELL_PORT = 0xe8;

function out(a: Asm16, port: number): Asm16 {
  return a.movImm16('dx', port).outDxAl();
}

/** IVT entry `vector` = handler (segment 0). */
function setVector(a: Asm16, vector: number, handler: string): Asm16 {
  return a
    .movLabel('ax', handler)
    .movToAx(vector * 4)
    .movWordImm(vector * 4 + 2, 0);
}

/** 8259A pair: ICW1-4 with vector bases 0x20 / 0x28, then mask all but `irq` (< 8). */
function initPic(a: Asm16, irq: number): Asm16 {
  out(a.movImm8('al', 0x11), 0x20);
  out(a, 0xa0);
  out(a.movImm8('al', 0x20), 0x21);
  out(a.movImm8('al', 0x28), 0xa1);
  out(a.movImm8('al', 0x04), 0x21);
  out(a.movImm8('al', 0x02), 0xa1);
  out(a.movImm8('al', 0x01), 0x21);
  out(a, 0xa1);
  out(a.movImm8('al', ~(1 << irq) & 0xff), 0x21);
  return out(a.movImm8('al', 0xff), 0xa1);
}

/**
 * Counts `ticks` interrupts of the in-kernel PIT (channel 0, mode 2, `divisor`) through the in-kernel
 * PIC (IRQ 0 → vector 0x20), halting between them (HLT stays in the kernel with an in-kernel irqchip),
 * then reports DONE.
 */
export function pitTicksProgram(ticks: number, divisor = 11932, origin = 0x1000): GuestProgram {
  const a = new Asm16(origin);
  setVector(a, 0x20, 'handler');
  a.movWordImm(COUNT, 0);
  initPic(a, 0);
  out(a.movImm8('al', 0x34), 0x43); // channel 0, lobyte/hibyte, mode 2 (rate generator)
  out(a.movImm8('al', divisor & 0xff), 0x40);
  out(a.movImm8('al', (divisor >> 8) & 0xff), 0x40);
  a.sti().label('wait').hlt().movAxFrom(COUNT).cmpAxImm(ticks).jb('wait').cli();
  out(a, VMM_PORT.DONE).hlt();
  a.label('handler').incWordAt(COUNT).pushAx().movImm8('al', 0x20).outImmAl(0x20).popAx().iret();
  return { origin, code: a.assemble() };
}

/**
 * Waits for interrupts on PIC line `irq` (vector 0x20 + irq): reports READY, then TICK with the
 * count after each one (the handler sends the PIC its EOI).
 */
export function picIrqProgram(irq: number, origin = 0x1000): GuestProgram {
  const a = new Asm16(origin);
  setVector(a, 0x20 + irq, 'handler');
  a.movWordImm(COUNT, 0);
  initPic(a, irq);
  a.sti();
  out(a, VMM_PORT.READY);
  a.label('idle').hlt().jmp('idle');
  a.label('handler').incWordAt(COUNT).movAxFrom(COUNT);
  out(a, VMM_PORT.TICK);
  a.movImm8('al', 0x20).outImmAl(0x20).iret();
  return { origin, code: a.assemble() };
}

/**
 * A driver for a device with a level-triggered interrupt on PIC line `irq` (3–7, vector 0x20 + irq;
 * ELCR, ports 0x4d0/0x4d1, makes the line level-triggered): reports READY, then for each interrupt
 * reads the device's status register (IN from {@link VMM_PORT}.ACK: the read acknowledges one unit
 * of the device's work, and the VMM answers with its id), appends that byte to a table at
 * VMM_DATA+0x100, counts it at VMM_DATA, and sends the PIC its EOI. With an irqfd in resample mode
 * the EOI is what lowers the line and signals the resamplefd (virt/kvm/eventfd.c: irqfd_resampler_ack()).
 */
export function levelIrqProgram(irq: number, origin = 0x1000): GuestProgram {
  if (!Number.isInteger(irq) || irq < 3 || irq > 7) throw outOfRange('irq', '>= 3 && <= 7', irq); // ELCR: IRQ 0-2 are edge only
  const a = new Asm16(origin);
  setVector(a, 0x20 + irq, 'handler');
  a.movWordImm(COUNT, 0);
  initPic(a, irq);
  out(a.movImm8('al', 1 << irq), 0x4d0);
  a.sti();
  out(a, VMM_PORT.READY);
  a.label('idle').hlt().jmp('idle');
  a.label('handler').pushAx();
  a.movImm16('dx', VMM_PORT.ACK).inAlDx();
  a.mov('bx', mem(COUNT)).mov(mem({ base: 'bx', disp: VMM_DATA + 0x100 }), 'al');
  a.incWordAt(COUNT);
  a.movImm8('al', 0x20).outImmAl(0x20).popAx().iret();
  return { origin, code: a.assemble() };
}

/**
 * For a split irqchip with the vCPU's LAPIC in x2APIC mode: enables the LAPIC (SVR = 0x1ff through
 * WRMSR 0x80f), reports READY, and counts interrupts on each vector of `vectors` (TICK with the
 * count; EOI through WRMSR 0x80b).
 */
export function x2apicIrqProgram(vectors: readonly number[], origin = 0x1000): GuestProgram {
  const a = new Asm16(origin);
  for (const v of vectors) setVector(a, v, 'handler');
  a.movWordImm(COUNT, 0);
  a.movImm32('cx', 0x80f).movImm32('ax', 0x1ff).movImm32('dx', 0).wrmsr();
  a.sti();
  out(a, VMM_PORT.READY);
  a.label('idle').hlt().jmp('idle');
  a.label('handler').incWordAt(COUNT).movAxFrom(COUNT);
  out(a, VMM_PORT.TICK);
  a.movImm32('cx', 0x80b).movImm32('ax', 0).movImm32('dx', 0).wrmsr().iret();
  return { origin, code: a.assemble() };
}

/**
 * Doorbells: `n` OUTs to `port` (AL = 0, 1, …), then OUT 7 and OUT 8 to `port + 2`, then a byte
 * store to MMIO address `mmioSegment`:0, then DONE.
 */
export function doorbellProgram(n: number, port: number, mmioSegment: number, origin = 0x1000): GuestProgram {
  const a = new Asm16(origin);
  a.movImm16('cx', n).movImm16('dx', port).movImm8('al', 0);
  a.label('again').outDxAl().incAl().loop('again');
  a.movImm16('dx', port + 2)
    .movImm8('al', 7)
    .outDxAl()
    .movImm8('al', 8)
    .outDxAl();
  a.movImm16('ax', mmioSegment).movEsAx().movImm16('bx', 0).movImm8('al', 0x5a).movEsBxAl();
  out(a, VMM_PORT.DONE).hlt();
  return { origin, code: a.assemble() };
}

/**
 * Writes one byte into each page listed at `table` (page numbers of the 64 KiB at `segment`:0,
 * 0xff-terminated), then DONE. Run it again with a new table for another round.
 */
export function dirtyPagesProgram(segment: number, table = VMM_DATA + 0x100, origin = 0x1000): GuestProgram {
  const a = new Asm16(origin);
  a.movImm16('ax', segment).movEsAx().movImm16('si', table);
  a.label('next').lodsb().cmpAlImm(0xff).jz('done');
  a.movR8('bh', 'al').shlR8('bh', 4).movImm8('bl', 0).movEsBxAl().jmp('next');
  a.label('done');
  out(a, VMM_PORT.DONE).hlt();
  return { origin, code: a.assemble() };
}

/**
 * RDMSR `index` (EAX to VMM_DATA+0x10, EDX to +0x14), then WRMSR `index` with EDX:EAX = 0:`value`,
 * then DONE.
 */
export function msrProgram(index: number, value: number, origin = 0x1000): GuestProgram {
  const a = new Asm16(origin);
  a.movImm32('cx', index)
    .rdmsr()
    .movToEax(VMM_DATA + 0x10)
    .movR32('ax', 'dx')
    .movToEax(VMM_DATA + 0x14);
  a.movImm32('cx', index).movImm32('ax', value).movImm32('dx', 0).wrmsr();
  out(a, VMM_PORT.DONE).hlt();
  return { origin, code: a.assemble() };
}

/**
 * A KVM hypercall: RAX = `nr`, RBX, RCX, RDX = `args` (KVM_HC_MAP_GPA_RANGE: gpa, pages, attributes),
 * then VMMCALL (or, `doorbell`, an OUT to {@link HYPERCALL_DOORBELL_PORT} for the hybrid's
 * emulation); the result (EAX) goes to VMM_DATA+0x10, then DONE.
 */
export function hypercallProgram(nr: number, args: readonly [number, number, number], doorbell = false, origin = 0x1000): GuestProgram {
  const a = new Asm16(origin);
  a.movImm32('ax', nr).movImm32('bx', args[0]).movImm32('cx', args[1]).movImm32('dx', args[2]);
  if (doorbell) a.outImmAl(HYPERCALL_DOORBELL_PORT);
  else a.vmmcall();
  a.movToEax(VMM_DATA + 0x10);
  out(a, VMM_PORT.DONE).hlt();
  return { origin, code: a.assemble() };
}

/** Loads a byte from MMIO address `segment`:0 (the VMM answers the read), stores it at VMM_DATA+0x10, then DONE. */
export function mmioReadProgram(segment: number, origin = 0x1000): GuestProgram {
  const a = new Asm16(origin);
  a.movImm16('ax', segment)
    .movEsAx()
    .movImm16('bx', 0)
    .movAlEsBx()
    .movToAl(VMM_DATA + 0x10);
  out(a, VMM_PORT.DONE).hlt();
  return { origin, code: a.assemble() };
}

/** POPCNT AX, AX on AX = 0xf0f0 (the count, 8, to VMM_DATA+0x10), then DONE. */
export function popcntProgram(origin = 0x1000): GuestProgram {
  const a = new Asm16(origin);
  a.movImm16('ax', 0xf0f0)
    .popcntAx()
    .movToAx(VMM_DATA + 0x10);
  out(a, VMM_PORT.DONE).hlt();
  return { origin, code: a.assemble() };
}

/**
 * A triple fault. In protected mode (the default): from real mode the guest loads an empty IDT
 * (limit 0) and a GDT, enters 32-bit protected mode, reports READY, then far-jumps to selector 0x78,
 * past its GDT's limit; the #GP that raises cannot be delivered (no IDT), nor can the #DF that
 * follows: the CPU shuts down and KVM_RUN returns KVM_EXIT_SHUTDOWN. In real mode (`realMode`): the
 * guest loads the same empty IDT and executes INT3, whose vector lies past the limit, as does that of
 * the #GP it raises, and of the #DF. A CPU that runs real mode itself shuts down; KVM's emulation of
 * real-mode interrupts (arch/x86/kvm/emulate.c: __emulate_int_real(), "TODO: Add limit checks")
 * reads the vector from the interrupt table whatever the limit, so where KVM emulates real mode the
 * guest goes on at whatever the table holds.
 */
export function tripleFaultProgram(options: { realMode?: boolean } = {}, origin = 0x1000): GuestProgram {
  const a = new Asm({ bits: 16, origin });
  a.cli().lidt(mem('idtr'));
  if (options.realMode) a.int3().hlt();
  a.lgdt(mem('gdtr'))
    .mov('eax', 'cr0')
    .or('eax', 1)
    .mov('cr0', 'eax')
    .jmpFar(0x08, 'pm32')
    .code(32)
    .label('pm32')
    .mov('eax', 0x10)
    .mov('ds', 'eax')
    .mov('ss', 'eax')
    .mov('dx', VMM_PORT.READY)
    .out('dx', 'al')
    .jmpFar(0x78, 0)
    .hlt()
    .align(8)
    .label('gdt')
    .dq(0, 0x00cf9b000000ffffn, 0x00cf93000000ffffn) // null, flat 32-bit code, flat data
    .label('gdt_end')
    .label('gdtr')
    .dw(span('gdt', 'gdt_end', -1))
    .dd(ref('gdt'))
    .label('idtr')
    .dw(0)
    .dd(0);
  return { origin, code: a.assemble() };
}

/** MSR_AMD64_SEV_ES_GHCB: the GHCB MSR of an SEV-ES guest. */
export const MSR_AMD64_SEV_ES_GHCB = 0xc0010130;

/**
 * An SEV-ES guest's termination request through the GHCB MSR protocol (the GHCB specification's
 * GHCB_MSR_TERM_REQ, 0x100, with `reasonSet` in bits 15:12 and `reasonCode` in bits 23:16): WRMSR to
 * {@link MSR_AMD64_SEV_ES_GHCB}, then VMGEXIT (REP VMMCALL). KVM answers with KVM_EXIT_SYSTEM_EVENT,
 * type KVM_SYSTEM_EVENT_SEV_TERM (arch/x86/kvm/svm/sev.c: sev_handle_vmgexit_msr_protocol()), as
 * KVM's selftest sev_smoke_test does from its guest_sev_es_code(). The guest halts if it comes back.
 */
export function sevTermProgram(reasonSet = 0, reasonCode = 0, origin = 0x1000): GuestProgram {
  if (!Number.isInteger(reasonSet) || reasonSet < 0 || reasonSet > 0xf) throw outOfRange('reasonSet', '>= 0 && <= 15', reasonSet);
  if (!Number.isInteger(reasonCode) || reasonCode < 0 || reasonCode > 0xff) throw outOfRange('reasonCode', '>= 0 && <= 255', reasonCode);
  const a = new Asm16(origin);
  a.movImm32('cx', MSR_AMD64_SEV_ES_GHCB)
    .movImm32('ax', 0x100 | (reasonSet << 12) | (reasonCode << 16))
    .movImm32('dx', 0)
    .wrmsr()
    .db(0xf3) // REP: VMGEXIT is F3 0F 01 D9
    .vmmcall()
    .hlt();
  return { origin, code: a.assemble() };
}

/**
 * An interrupt-driven 16550A driver on COM1 (IRQ 4, vector 0x24), one interrupt source per
 * interrupt: it sets 8N1, FIFOs, MCR.OUT2 (which lets the UART's interrupt out) and IER.RDI, reports
 * READY, then idles. Each IRQ 4 reads IIR: on received data it reads RBR while LSR.DR is set
 * (appending to a buffer at VMM_DATA+0x100) and enables IER.THRI to echo the bytes back; on THRI
 * it writes the next byte not yet echoed to THR, or, with none left, turns THRI off again (as
 * Linux's serial8250_stop_tx()) and reports DONE with the interrupt count (a word at VMM_DATA; the
 * bytes received and echoed are words at VMM_DATA+2 and +4). Every handler ends with the PIC's EOI.
 */
export function serialIrqProgram(origin = 0x1000): GuestProgram {
  const INTERRUPTS = VMM_DATA;
  const RECEIVED = VMM_DATA + 2;
  const SENT = VMM_DATA + 4;
  const BUF = VMM_DATA + 0x100;
  const a = new Asm16(origin);
  setVector(a, 0x24, 'handler');
  for (const at of [INTERRUPTS, RECEIVED, SENT]) a.movWordImm(at, 0);
  initPic(a, 4);
  out(a.movImm8('al', 0x03), COM1 + 3); // LCR: 8N1
  out(a.movImm8('al', 0x07), COM1 + 2); // FCR: FIFOs on, both cleared, receive trigger 1 byte
  out(a.movImm8('al', 0x0b), COM1 + 4); // MCR: DTR, RTS, OUT2
  out(a.movImm8('al', 0x01), COM1 + 1); // IER: RDI
  a.sti();
  out(a, VMM_PORT.READY);
  a.label('idle').hlt().jmp('idle');

  a.label('handler').incWordAt(INTERRUPTS);
  a.movImm16('dx', COM1 + 2).inAlDx(); // IIR
  a.test('al', 1).jnz('eoi'); // nothing pending
  a.and('al', 0x0e).cmp('al', 0x02).je('thri');
  // Received data (or its timeout): drain the FIFO, then echo it.
  a.label('rx')
    .movImm16('dx', COM1 + 5)
    .inAlDx()
    .test('al', 1)
    .jz('rxDone');
  a.movImm16('dx', COM1).inAlDx();
  a.mov('bx', mem(RECEIVED))
    .mov(mem({ base: 'bx', disp: BUF }), 'al')
    .incWordAt(RECEIVED)
    .jmp('rx');
  a.label('rxDone');
  out(a.movImm8('al', 0x03), COM1 + 1).jmp('eoi'); // IER: RDI | THRI
  // THR empty: the next byte, or stop transmitting.
  a.label('thri').mov('bx', mem(SENT)).cmp('bx', mem(RECEIVED)).jae('stop');
  a.mov('al', mem({ base: 'bx', disp: BUF }));
  out(a, COM1).incWordAt(SENT).jmp('eoi');
  a.label('stop');
  out(a.movImm8('al', 0x01), COM1 + 1); // IER: RDI
  a.movAxFrom(INTERRUPTS);
  out(a, VMM_PORT.DONE);
  a.label('eoi').movImm8('al', 0x20).outImmAl(0x20).iret();
  return { origin, code: a.assemble() };
}
