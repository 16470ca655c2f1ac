/** Puts a vCPU in flat real mode (all segment bases 0) at an entry point, and loads a program. */
import type { GuestMemory } from '../../kvm/guest-memory.js';
import type { Vcpu } from '../../kvm/vcpu.js';
import type { GuestProgram } from './programs.js';

export function setupRealMode(vcpu: Vcpu, entry: number, stack = 0x8000): void {
  const s = vcpu.getSregs();
  for (const seg of [s.cs, s.ds, s.es, s.fs, s.gs, s.ss]) {
    seg.base = 0n;
    seg.selector = 0;
  }
  vcpu.setSregs(s);
  vcpu.setRegs({ ...vcpu.getRegs(), rip: BigInt(entry), rsp: BigInt(stack), rflags: 2n });
}

/** Copies the program into guest memory and points the vCPU at it. */
export function loadProgram(mem: GuestMemory, vcpu: Vcpu, program: GuestProgram): void {
  mem.write(BigInt(program.origin), program.code);
  setupRealMode(vcpu, program.origin);
}
