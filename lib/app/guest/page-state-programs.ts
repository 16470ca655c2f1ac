/**
 * A real-mode guest that reports its page states the way an SEV Linux guest does
 * (arch/x86/mm/mem_encrypt_amd.c enc_dec_hypercall(), arch/x86/kernel/kvm.c): it walks a table of
 * steps in its memory — KVM_HC_MAP_GPA_RANGE hypercalls, writes of MSR_KVM_MIGRATION_CONTROL,
 * synchronisation points, a CPUID read — and keeps its own record of every step and what it got
 * back (RAX of the hypercall, the MSR read back after the write, CPUID 0x40000001 EAX). A VMM's
 * tracker is checked against that record. Real mode is CPL 0, so VMMCALL is allowed (a hypercall
 * from CPL > 0 gets -KVM_EPERM); with `doorbell` the guest rings the hybrid backend's EMULATED
 * hypercall port instead (lib/backends/hybrid/common/hypercall-doorbell.ts).
 *
 * Table entries and record entries: 16 and 32 bytes, little-endian u32s
 * (table: op, a, b, c; record: op, a, b, c, result). A `sync` step reports on {@link VMM_PORT}.TICK
 * (AL = the step's index), so a VMM can interleave several vCPUs deterministically.
 */
import { Asm16 } from './asm16.js';
import { dword, mem } from './asm.js';
import type { GuestProgram } from './programs.js';
import { HYPERCALL_DOORBELL_PORT, VMM_PORT } from './vmm-programs.js';

export type PageStateStep =
  { op: 'map'; gpa: number; pages: number; attrs: number } | { op: 'msr'; value: number } | { op: 'sync' } | { op: 'cpuid' };

const OPS = { map: 1, msr: 2, sync: 3, cpuid: 4 } as const;
const NAMES = ['end', 'map', 'msr', 'sync', 'cpuid'] as const;

export interface PageStateGuestLayout {
  /** Code. */
  origin: number;
  /** The step table (16 bytes a step, ended by op 0). */
  table: number;
  /** The guest's record (32 bytes a step); the address of its end goes to `record - 4`. */
  record: number;
  /** Ring the hybrid's EMULATED doorbell instead of VMMCALL. */
  doorbell?: boolean;
}

/** What the guest recorded for one step: the step, and its result. */
export type PageStateRecordEntry = PageStateStep & { result: number };

/** The interpreter (small enough for one page). */
export function pageStateGuest(l: PageStateGuestLayout): GuestProgram {
  const a = new Asm16(l.origin);
  a.mov('si', l.table)
    .mov('edi', l.record)
    .mov(dword(l.record - 4), 'edi');
  a.label('next').mov('eax', mem({ base: 'si' }));
  for (const [name, op] of Object.entries(OPS)) a.cmp('eax', op).je(name, 'near');
  a.jmp('done', 'near');
  // Each step: copy op, a, b, c to the record, do it, store the result at +16.
  a.label('map')
    .mov('eax', 12)
    .mov('ebx', mem({ base: 'si', disp: 4 }))
    .mov('ecx', mem({ base: 'si', disp: 8 }));
  a.mov('edx', mem({ base: 'si', disp: 12 }));
  if (l.doorbell) a.out(HYPERCALL_DOORBELL_PORT, 'al');
  else a.vmmcall();
  a.jmp('store', 'near');
  a.label('msr')
    .mov('ecx', 0x4b564d08)
    .mov('eax', mem({ base: 'si', disp: 4 }))
    .xor('edx', 'edx')
    .wrmsr();
  a.mov('ecx', 0x4b564d08).rdmsr().jmp('store', 'near');
  a.label('sync').mov('ax', 'si').mov('dx', VMM_PORT.TICK).out('dx', 'al').xor('eax', 'eax').jmp('store', 'near');
  a.label('cpuid').mov('eax', 0x40000001).cpuid();
  a.label('store').mov(dword({ base: 'di', disp: 16 }), 'eax');
  for (const off of [0, 4, 8, 12]) a.mov('eax', mem({ base: 'si', disp: off })).mov(mem({ base: 'di', disp: off }), 'eax');
  // The record's end after every step, so a VMM can read it at each sync point.
  a.add('si', 16)
    .add('di', 32)
    .mov(dword(l.record - 4), 'edi')
    .jmp('next', 'near');
  a.label('done').mov('dx', VMM_PORT.DONE).out('dx', 'al').hlt();
  return { origin: l.origin, code: a.assemble() };
}

/** The step table's bytes. */
export function encodePageStateSteps(steps: readonly PageStateStep[]): Uint8Array {
  const b = new Uint8Array((steps.length + 1) * 16);
  const dv = new DataView(b.buffer);
  steps.forEach((s, i) => {
    const at = i * 16;
    dv.setUint32(at, OPS[s.op], true);
    if (s.op === 'map') [s.gpa, s.pages, s.attrs].forEach((v, j) => dv.setUint32(at + 4 + 4 * j, v >>> 0, true));
    if (s.op === 'msr') dv.setUint32(at + 4, s.value >>> 0, true);
  });
  return b;
}

/** Decodes the guest's record: `bytes` from `record - 4` on (the end pointer, then the entries). */
export function decodePageStateRecord(bytes: Uint8Array, record: number): PageStateRecordEntry[] {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const end = dv.getUint32(0, true);
  const n = end >= record ? (end - record) / 32 : 0;
  const out: PageStateRecordEntry[] = [];
  for (let i = 0; i < n; i++) {
    const at = 4 + i * 32;
    const [op, x, y, z, result] = [0, 4, 8, 12, 16].map((o) => dv.getUint32(at + o, true)) as [number, number, number, number, number];
    const name = NAMES[op];
    if (name === 'map') out.push({ op: 'map', gpa: x, pages: y, attrs: z, result: result | 0 });
    else if (name === 'msr') out.push({ op: 'msr', value: x, result });
    else if (name === 'sync') out.push({ op: 'sync', result });
    else if (name === 'cpuid') out.push({ op: 'cpuid', result });
    else throw new RangeError(`record entry ${i}: unknown op ${op}`);
  }
  return out;
}
