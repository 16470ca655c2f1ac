/**
 * The live-migration demonstration guest (real mode, flat, loaded at `origin`): it counts in memory,
 * dirties one page per step, and flips a range between private and shared with the
 * KVM_HC_MAP_GPA_RANGE hypercall (Documentation/virt/kvm/x86/hypercalls.rst), so that a migration
 * meets every kind of change. Its whole state is in memory and registers: a migrated copy continues
 * the count exactly.
 *
 * ```
 *         ; once: the shared range becomes shared, then MSR_KVM_MIGRATION_CONTROL = 1
 *         mov eax, 12 / ebx, sharedGpa / ecx, sharedPages / edx, 0 ; hypercall
 *         mov ecx, 0x4b564d08 / eax, 1 / edx, 0 ; wrmsr                (with announceReady)
 * again:  inc dword [COUNTER]
 *         mov ebx, [COUNTER]
 *         mov ax, [CURSOR] / mov ds, ax / mov [0], ebx / xor ax, ax / mov ds, ax   ; dirty a page
 *         add word [CURSOR], 0x100 / wrap at the end of the dirty area
 *         test ebx, flipEvery - 1 / jnz report
 *         edx = (ebx / flipEvery) & 1 ? 0x10 (encrypted) : 0 (shared) ; hypercall on the flip range
 * report: out port, ebx
 *         jmp again
 * ```
 *
 * The hypercall is VMMCALL, or with `doorbell` an OUT to {@link HYPERCALL_DOORBELL_PORT} (the hybrid
 * backend's emulation for hosts whose KVM cannot return a VMMCALL to user space).
 */
import { Asm, dword, word } from './asm.js';
import { HYPERCALL_DOORBELL_PORT } from './vmm-programs.js';
import type { GuestProgram } from './programs.js';

/** Where the guest keeps its count (dword) and its dirty cursor (word, a segment). */
export const MIGRATION_GUEST = Object.freeze({ COUNTER: 0x2000, CURSOR: 0x2004, PORT: 0x500, ORIGIN: 0x1000 });
export const KVM_HC_MAP_GPA_RANGE = 12;
export const MSR_KVM_MIGRATION_CONTROL = 0x4b564d08;

export interface MigrationGuestOptions {
  /** The pages [dirtyStart, dirtyEnd) get one written each step, in turn (below 1 MiB, page-aligned). */
  dirtyStart: number;
  dirtyEnd: number;
  /** A range made shared once at start (and left so). */
  shared?: { gpa: number; pages: number };
  /** A range flipped between shared and private every `every` steps (a power of two). */
  flip?: { gpa: number; pages: number; every: number };
  /** Ring the hybrid's hypercall doorbell instead of VMMCALL. */
  doorbell?: boolean;
  /** Write MSR_KVM_MIGRATION_CONTROL = 1 after the start-up hypercall. */
  announceReady?: boolean;
}

export function migrationGuestProgram(o: MigrationGuestOptions): GuestProgram {
  const { COUNTER, CURSOR, PORT, ORIGIN } = MIGRATION_GUEST;
  const a = new Asm({ bits: 16, origin: ORIGIN });
  const hypercall = () => (o.doorbell ? a.out(HYPERCALL_DOORBELL_PORT, 'al') : a.vmmcall());
  a.mov('ax', 0).mov('ds', 'ax').mov('ss', 'ax').mov('sp', 0x8000);
  a.mov(word(CURSOR), o.dirtyStart >> 4);
  if (o.shared) {
    a.mov('eax', KVM_HC_MAP_GPA_RANGE).mov('ebx', o.shared.gpa).mov('ecx', o.shared.pages).mov('edx', 0);
    hypercall();
  }
  if (o.announceReady) a.mov('ecx', MSR_KVM_MIGRATION_CONTROL).mov('eax', 1).mov('edx', 0).wrmsr();
  a.label('again');
  a.inc(dword(COUNTER)).mov('ebx', dword(COUNTER));
  a.mov('ax', word(CURSOR)).mov('ds', 'ax').mov(dword(0), 'ebx').mov('ax', 0).mov('ds', 'ax');
  a.add(word(CURSOR), 0x100)
    .cmp(word(CURSOR), o.dirtyEnd >> 4)
    .jb('nowrap');
  a.mov(word(CURSOR), o.dirtyStart >> 4);
  a.label('nowrap');
  if (o.flip) {
    const every = o.flip.every;
    if (every < 2 || (every & (every - 1)) !== 0) throw new RangeError('flip.every must be a power of two >= 2');
    const shift = Math.log2(every);
    a.test('ebx', every - 1).jnz('report');
    a.mov('edx', 'ebx').shr('edx', shift).and('edx', 1).shl('edx', 4); // odd multiples: encrypted, even: shared
    a.mov('eax', KVM_HC_MAP_GPA_RANGE).mov('ebx', o.flip.gpa).mov('ecx', o.flip.pages);
    hypercall();
    a.mov('ebx', dword(COUNTER));
  }
  a.label('report').mov('dx', PORT).mov('eax', 'ebx').out('dx', 'eax').jmp('again');
  return { origin: ORIGIN, code: a.assemble() };
}
