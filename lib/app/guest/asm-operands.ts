/**
 * The operands of the guest assembler ({@link Asm}): register names, memory references and
 * references to labels. Register numbers are the ModRM/opcode encodings of Intel SDM vol. 2,
 * section 2.1.5 (tables 2-1 to 2-3) and, for r8–r15 and the byte registers spl–dil, section 2.2.1 (REX).
 */
import { invalidArgValue } from '../../uapi/errors.js';

export const REG8 = [
  'al', 'cl', 'dl', 'bl', 'ah', 'ch', 'dh', 'bh', 'spl', 'bpl', 'sil', 'dil',
  'r8b', 'r9b', 'r10b', 'r11b', 'r12b', 'r13b', 'r14b', 'r15b',
] as const; // prettier-ignore
export const REG16 = [
  'ax', 'cx', 'dx', 'bx', 'sp', 'bp', 'si', 'di',
  'r8w', 'r9w', 'r10w', 'r11w', 'r12w', 'r13w', 'r14w', 'r15w',
] as const; // prettier-ignore
export const REG32 = [
  'eax', 'ecx', 'edx', 'ebx', 'esp', 'ebp', 'esi', 'edi',
  'r8d', 'r9d', 'r10d', 'r11d', 'r12d', 'r13d', 'r14d', 'r15d',
] as const; // prettier-ignore
export const REG64 = [
  'rax', 'rcx', 'rdx', 'rbx', 'rsp', 'rbp', 'rsi', 'rdi',
  'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15',
] as const; // prettier-ignore
/** Segment registers in their Sreg encoding (ES=0 … GS=5). */
export const SREG = ['es', 'cs', 'ss', 'ds', 'fs', 'gs'] as const;
/** The control registers a guest moves to and from (CR8 is the task-priority register, 64-bit only). */
export const CREG = ['cr0', 'cr2', 'cr3', 'cr4', 'cr8'] as const;

export type Reg8 = (typeof REG8)[number];
export type Reg16 = (typeof REG16)[number];
export type Reg32 = (typeof REG32)[number];
export type Reg64 = (typeof REG64)[number];
export type Gpr = Reg8 | Reg16 | Reg32 | Reg64;
export type Sreg = (typeof SREG)[number];
export type Creg = (typeof CREG)[number];
export type Size = 8 | 16 | 32 | 64;

export interface GprInfo {
  name: Gpr;
  /** 0–15: bit 3 goes into a REX prefix. */
  n: number;
  size: Size;
  /** spl, bpl, sil, dil: only with a REX prefix (without one, 4–7 are ah, ch, dh, bh). */
  needsRex: boolean;
  /** ah, ch, dh, bh: never with a REX prefix. */
  noRex: boolean;
}

const GPRS = new Map<string, GprInfo>();
REG8.forEach((r, i) => {
  // spl..dil are numbers 4..7 like ah..bh (told apart by a REX prefix); r8b.. follow from 8.
  const n = i < 8 ? i : i - 4;
  GPRS.set(r, { name: r, n, size: 8, needsRex: i >= 8 && i < 12, noRex: i >= 4 && i < 8 });
});
for (const [names, size] of [
  [REG16, 16],
  [REG32, 32],
  [REG64, 64],
] as const)
  names.forEach((r, n) => GPRS.set(r, { name: r, n, size, needsRex: false, noRex: false }));

/** The encoding of a general-purpose register, or undefined if `x` is not one. */
export function gpr(x: unknown): GprInfo | undefined {
  return typeof x === 'string' ? GPRS.get(x) : undefined;
}
export function isSreg(x: unknown): x is Sreg {
  return typeof x === 'string' && (SREG as readonly string[]).includes(x);
}
export function isCreg(x: unknown): x is Creg {
  return typeof x === 'string' && (CREG as readonly string[]).includes(x);
}

/**
 * A reference to a label's address, plus `addend`; with `minus`, the distance from that label
 * instead (`span('gdt', 'gdt_end', -1)` is a GDT limit).
 */
export interface Ref {
  readonly kind: 'ref';
  readonly label: string;
  readonly minus?: string;
  readonly addend: number;
}

/** An immediate: a number, a bigint (for 64-bit values), or a label's address. */
export type Imm = number | bigint | Ref;

/** The address of `label`, plus `addend`. */
export function ref(label: string, addend = 0): Ref {
  return { kind: 'ref', label, addend };
}
/** `end - start + addend`: a size or a limit. */
export function span(start: string, end: string, addend = 0): Ref {
  return { kind: 'ref', label: end, minus: start, addend };
}
export function isRef(x: unknown): x is Ref {
  return typeof x === 'object' && x !== null && (x as Ref).kind === 'ref';
}

/**
 * A memory operand: `[base + index*scale + disp]`, or `[label + disp]` (RIP-relative in 64-bit
 * code, absolute otherwise). `size` is needed where no register operand gives it (an immediate
 * store, INC, shifts).
 */
export interface Mem {
  readonly kind: 'mem';
  readonly size?: Size;
  readonly base?: Reg16 | Reg32 | Reg64;
  readonly index?: Reg16 | Reg32 | Reg64;
  readonly scale: 1 | 2 | 4 | 8;
  readonly disp: number;
  readonly label?: string;
}

export interface MemSpec {
  base?: Reg16 | Reg32 | Reg64;
  index?: Reg16 | Reg32 | Reg64;
  scale?: 1 | 2 | 4 | 8;
  disp?: number;
  label?: string;
}

/**
 * A memory operand: `mem(0x2000)` (an absolute address), `mem('rbx')` (`[rbx]`), `mem('msg')`
 * (a label), or `mem({ base: 'ebp', index: 'ecx', scale: 4, disp: 8 })`.
 */
export function mem(at: MemSpec | number | string, size?: Size): Mem {
  let spec: MemSpec;
  if (typeof at === 'number') spec = { disp: at };
  else if (typeof at === 'string') {
    const g = gpr(at);
    if (g && g.size !== 8) spec = { base: at as Reg16 | Reg32 | Reg64 };
    else if (g) throw invalidArgValue('at', at, 'cannot address memory (an 8-bit register)');
    else spec = { label: at };
  } else spec = at;
  for (const k of ['base', 'index'] as const) {
    const r = spec[k];
    if (r !== undefined && (gpr(r)?.size ?? 8) === 8) throw invalidArgValue(`at.${k}`, r, 'is not a 16-, 32- or 64-bit register');
  }
  if (spec.disp !== undefined && !Number.isSafeInteger(spec.disp)) throw invalidArgValue('at.disp', spec.disp, 'is not an integer');
  return {
    kind: 'mem',
    ...(size !== undefined && { size }),
    ...(spec.base !== undefined && { base: spec.base }),
    ...(spec.index !== undefined && { index: spec.index }),
    scale: spec.scale ?? 1,
    disp: spec.disp ?? 0,
    ...(spec.label !== undefined && { label: spec.label }),
  };
}
export const byte = (at: MemSpec | number | string): Mem => mem(at, 8);
export const word = (at: MemSpec | number | string): Mem => mem(at, 16);
export const dword = (at: MemSpec | number | string): Mem => mem(at, 32);
export const qword = (at: MemSpec | number | string): Mem => mem(at, 64);

export function isMem(x: unknown): x is Mem {
  return typeof x === 'object' && x !== null && (x as Mem).kind === 'mem';
}
