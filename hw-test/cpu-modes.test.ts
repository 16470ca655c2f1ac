/**
 * Guests in 32-bit protected mode and 64-bit long mode on the real /dev/kvm: set up by
 * setupProtectedMode()/setupLongMode() (tables in guest memory, sregs), or entering long mode by
 * themselves from reset (longModeEntryProgram). Each prints through COM1, takes an exception through
 * the IDT the helper wrote, and leaves registers and memory the test checks.
 */
import type { ExecutionContext } from 'ava';
import { Kvm } from '../lib/kvm/kvm.js';
import type { Vcpu } from '../lib/kvm/vcpu.js';
import type { VcpuExit } from '../lib/kvm/exits.js';
import { NativeBackend } from '../lib/backends/native/native-backend.js';
import { Asm, dword, mem, qword } from '../lib/app/guest/asm.js';
import { longModeEntryProgram } from '../lib/app/guest/programs.js';
import { SerialPort } from '../lib/app/guest/serial.js';
import { loadProgram, setupLongMode, setupProtectedMode } from '../lib/app/guest/setup.js';
import { hwTest, kvmDevice, type Requirement } from '../test/helpers/hw.js';

const kvm = kvmDevice();

/** A VM with 128 KiB at 0 and one vCPU; closed when the test ends. */
function vmWithVcpu(t: ExecutionContext) {
  const k = Kvm.open({ backend: new NativeBackend() });
  t.teardown(() => k.close());
  const vm = k.createVm();
  t.teardown(() => vm.close());
  const m = vm.addMemory({ guestPhysAddr: 0n, size: 0x20000 });
  return { k, vm, mem: m, vcpu: vm.createVcpu(0) };
}

/** Runs until an exit the serial port does not take; returns it with what the guest printed. */
async function runPrinting(vcpu: Vcpu): Promise<{ exit: VcpuExit; output: string }> {
  const serial = new SerialPort();
  let exit: VcpuExit;
  while (serial.handle((exit = await vcpu.run())));
  return { exit, output: serial.output };
}

/** Prints the NUL-terminated string at the label `msg` through COM1, then goes on at `printed`. */
function printLoop(a: Asm, si: 'esi' | 'rsi'): Asm {
  return a
    .lea(si, mem('msg'))
    .mov('dx', 0x3f8)
    .label('next')
    .lods(8)
    .test('al', 'al')
    .jz('printed')
    .out('dx', 'al')
    .jmp('next')
    .label('printed');
}

hwTest(kvm, 'long mode from setupLongMode(): 64-bit code prints, takes #UD through the IDT and returns with IRETQ', async (t) => {
  const { mem: m, vcpu } = vmWithVcpu(t);
  const a = new Asm({ bits: 64, origin: 0x1000 });
  printLoop(a, 'rsi')
    .label('fault')
    .ud2() // #UD: the handler skips it
    .mov('rax', 0x1122334455667788n)
    .mov(mem('result'), 'rax')
    .mov('r15', 'rsp')
    .hlt()
    .label('ud') // the frame: RIP, CS, RFLAGS, RSP, SS
    .mov('rbx', mem('rsp'))
    .mov('rcx', mem({ base: 'rsp', disp: 8 }))
    .add(qword('rsp'), 2)
    .iretq()
    .align(8)
    .label('result')
    .dq(0)
    .label('msg')
    .asciz('hello from long mode\n');
  const p = a.program();
  m.write(0x1000n, p.code);
  setupLongMode(vcpu, { entry: 0x1000, stack: 0x8000, handlers: { 6: p.labels.get('ud')! } });
  const { exit, output } = await runPrinting(vcpu);
  t.is(exit.reason, 'hlt');
  t.is(output, 'hello from long mode\n');
  const r = vcpu.getRegs();
  t.is(r.rax, 0x1122334455667788n, 'a 64-bit immediate in a 64-bit register');
  t.is(m.readU64(BigInt(p.labels.get('result')!)), 0x1122334455667788n, 'stored RIP-relative');
  t.is(r.rbx, BigInt(p.labels.get('fault')!), 'the #UD frame holds the faulting RIP');
  t.is(r.rcx, 0x08n, 'and the 64-bit code selector');
  t.is(r.r15, 0x8000n, 'IRETQ restored RSP');
  t.like(vcpu.getSregs(), { efer: 0x500n, cs: { l: 1, selector: 0x08 } });
});

hwTest(kvm, 'protected mode from setupProtectedMode(): 32-bit code prints and takes #UD through a 32-bit interrupt gate', async (t) => {
  const { mem: m, vcpu } = vmWithVcpu(t);
  const a = new Asm({ bits: 32, origin: 0x1000 });
  printLoop(a, 'esi')
    .mov(dword('result'), 0xc0ffee)
    .label('fault')
    .ud2()
    .label('ud') // KVM's emulator does not do IRET outside real mode, so the handler reports and halts
    .mov('eax', mem('esp'))
    .mov('ebx', mem({ base: 'esp', disp: 4 }))
    .mov('ecx', 'esp')
    .hlt()
    .label('result')
    .dd(0)
    .label('msg')
    .asciz('hello from protected mode\n');
  const p = a.program();
  m.write(0x1000n, p.code);
  setupProtectedMode(vcpu, { entry: 0x1000, stack: 0x8000, handlers: { 6: p.labels.get('ud')! } });
  const { exit, output } = await runPrinting(vcpu);
  t.is(exit.reason, 'hlt');
  t.is(output, 'hello from protected mode\n');
  t.is(m.readU32(BigInt(p.labels.get('result')!)), 0xc0ffee);
  const r = vcpu.getRegs();
  t.is(r.rax, BigInt(p.labels.get('fault')!), 'the frame: EIP of the UD2');
  t.is(r.rbx, 0x18n, 'CS');
  t.is(r.rcx, 0x8000n - 12n, 'EIP, CS and EFLAGS pushed on the 32-bit stack');
  t.like(vcpu.getSregs(), { cr0: 0x33n, efer: 0n, cs: { db: 1, l: 0 } });
});

/** Whether this host's KVM keeps CR0.PG with EFER.LME clear (kvm_pvm does not: it pages only in long mode). */
function pagingOutsideLongMode(): Requirement {
  if (!kvm.ok) return kvm;
  using k = Kvm.open({ backend: new NativeBackend() });
  using vm = k.createVm();
  vm.addMemory({ guestPhysAddr: 0n, size: 0x20000 });
  const vcpu = vm.createVcpu(0);
  setupProtectedMode(vcpu, { entry: 0x1000, paging: true });
  if (vcpu.getSregs().cr0 & (1n << 31n)) return { ok: true, reason: '' };
  return {
    ok: false,
    reason: "this host's KVM clears CR0.PG set without EFER.LME (kvm_pvm pages only in long mode; the guest would shut down)",
  };
}

hwTest(pagingOutsideLongMode(), 'protected mode with paging: 4 MiB identity pages, the guest writes through them', async (t) => {
  const { mem: m, vcpu } = vmWithVcpu(t);
  const a = new Asm({ bits: 32, origin: 0x1000 });
  a.mov('eax', 'cr0').mov(dword(0x3000), 'eax').mov(dword(0x3004), 0x600d).mov('dx', 0x3f8).mov('al', 0x50).out('dx', 'al').hlt();
  m.write(0x1000n, a.assemble());
  setupProtectedMode(vcpu, { entry: 0x1000, paging: true });
  const { exit, output } = await runPrinting(vcpu);
  t.is(exit.reason, 'hlt');
  t.is(output, 'P');
  t.is(m.readU32(0x3000n), 0x80010033, 'the guest sees CR0.PG');
  t.is(m.readU32(0x3004n), 0x600d);
});

hwTest(kvm, 'a guest enters long mode by itself: GDT, CR0.PE, far jump, page tables, PAE, EFER.LME, CR0.PG, far jump', async (t) => {
  const { k, mem: m, vcpu } = vmWithVcpu(t);
  vcpu.setCpuid2(k.supportedCpuid());
  const p = longModeEntryProgram();
  loadProgram(m, vcpu, p);
  const stages: number[] = [];
  let exit: VcpuExit;
  while ((exit = await vcpu.run()).reason === 'io' && exit.port === 0x80) stages.push(exit.data[0]!);
  t.is(exit.reason, 'hlt');
  t.deepEqual(stages, [16, 32, 64]);
  t.is(m.readU64(BigInt(p.resultAddr)), 0x1122334455667788n);
  t.is(m.readU64(0x3000n) & ~0x20n, 0x4003n, 'the PML4 entry the guest built (the page walk may have set its accessed bit)');
  const s = vcpu.getSregs();
  t.is(s.efer & 0x500n, 0x500n, 'EFER.LME and LMA');
  t.like(s, { cr3: 0x3000n, cs: { selector: 0x08, l: 1 }, ds: { selector: 0x10 } });
  t.is(s.cr0 & 0x80000001n, 0x80000001n);
});

hwTest(kvm, 'without long mode in its CPUID the same guest faults at WRMSR EFER.LME and shuts down', async (t) => {
  const { mem: m, vcpu } = vmWithVcpu(t);
  loadProgram(m, vcpu, longModeEntryProgram());
  const stages: number[] = [];
  let exit: VcpuExit;
  while ((exit = await vcpu.run()).reason === 'io' && exit.port === 0x80) stages.push(exit.data[0]!);
  t.deepEqual(stages, [16, 32]);
  t.is(exit.reason, 'shutdown');
  t.is(vcpu.getSregs().efer, 0n);
});
