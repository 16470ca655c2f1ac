/**
 * ModRM, SIB and displacement bytes for a register or memory operand (Intel SDM vol. 2, section
 * 2.1.5: table 2-1 for 16-bit addressing, tables 2-2 and 2-3 for 32-bit; section 2.2.1.6 for
 * RIP-relative addressing in 64-bit mode).
 */
import { invalidArgValue } from '../../uapi/errors.js';
import { gpr, type GprInfo, type Mem } from './asm-operands.js';

export type Mode = 16 | 32 | 64;

export interface RmEncoding {
  /** The address size the operand uses (an 0x67 prefix is needed where it is not the mode's). */
  addrSize: 16 | 32 | 64 | undefined;
  rexX: number;
  rexB: number;
  /** ModRM, then SIB and displacement if any. */
  bytes: number[];
  /** A label in the displacement, to fix up once labels have addresses. */
  fix?: { at: number; size: 2 | 4; label: string; addend: number; pcRel: boolean };
}

const fitsS8 = (v: number): boolean => v >= -128 && v <= 127;
const le = (v: number, n: number): number[] => Array.from({ length: n }, (_, i) => Number((BigInt(v) >> BigInt(8 * i)) & 0xffn));

/** 16-bit addressing: the rm field for each base/index pair (table 2-1). */
const RM16: Record<string, number> = { 'bx+si': 0, 'bx+di': 1, 'bp+si': 2, 'bp+di': 3, si: 4, di: 5, bp: 6, bx: 7 };
const SCALE = { 1: 0, 2: 1, 4: 2, 8: 3 } as const;

/** `reg` is the ModRM.reg field (a register number or an opcode extension /digit). */
export function encodeRm(mode: Mode, reg: number, rm: GprInfo | Mem): RmEncoding {
  if (!('kind' in rm)) return { addrSize: undefined, rexX: 0, rexB: rm.n >> 3, bytes: [0xc0 | ((reg & 7) << 3) | (rm.n & 7)] };
  const base = rm.base === undefined ? undefined : gpr(rm.base)!;
  const index = rm.index === undefined ? undefined : gpr(rm.index)!;
  if (base && index && base.size !== index.size) throw invalidArgValue('mem', rm, 'mixes base and index registers of different sizes');
  const regSize = (base ?? index)?.size;
  const addrSize = (regSize ?? (mode === 64 ? 64 : mode)) as 16 | 32 | 64; // mem() refuses 8-bit registers
  if (mode === 64 ? addrSize === 16 : addrSize === 64)
    throw invalidArgValue('mem', rm, `uses ${addrSize}-bit addressing, which ${mode}-bit code cannot encode`);
  const r = (reg & 7) << 3;
  const label = rm.label;

  if (addrSize === 16) {
    if (rm.scale !== 1) throw invalidArgValue('mem', rm, 'has a scale, which 16-bit addressing cannot encode');
    if (!base && !index) return disp16Only(r, rm.disp, label);
    const key = [rm.base, rm.index]
      .filter((x) => x !== undefined)
      .sort((a, b) => (a === 'bx' || a === 'bp' ? -1 : b === 'bx' || b === 'bp' ? 1 : 0))
      .join('+');
    const field = RM16[key];
    if (field === undefined) throw invalidArgValue('mem', rm, 'is not a 16-bit addressing form ([bx|bp] + [si|di])');
    if (label !== undefined) return { addrSize, rexX: 0, rexB: 0, bytes: [0x80 | r | field, 0, 0], fix: fix16(1, label, rm.disp) };
    if (rm.disp === 0 && field !== 6) return { addrSize, rexX: 0, rexB: 0, bytes: [r | field] };
    if (fitsS8(rm.disp)) return { addrSize, rexX: 0, rexB: 0, bytes: [0x40 | r | field, rm.disp & 0xff] };
    return { addrSize, rexX: 0, rexB: 0, bytes: [0x80 | r | field, ...le(check(rm, 16), 2)] };
  }

  if (!base && !index) {
    if (label !== undefined && mode === 64)
      // RIP-relative: the displacement is counted from the end of the instruction.
      return { addrSize, rexX: 0, rexB: 0, bytes: [r | 5, 0, 0, 0, 0], fix: { at: 1, size: 4, label, addend: rm.disp, pcRel: true } };
    // In 64-bit mode mod=00 rm=101 is RIP-relative, so an absolute address takes a SIB with no base and no index.
    const head = mode === 64 ? [r | 4, 0x25] : [r | 5];
    if (label !== undefined) return { addrSize, rexX: 0, rexB: 0, bytes: [...head, 0, 0, 0, 0], fix: fix32(head.length, label, rm.disp) };
    return { addrSize, rexX: 0, rexB: 0, bytes: [...head, ...le(check(rm, mode === 64 ? 'disp32s' : 32), 4)] };
  }
  if (index?.n === 4) throw invalidArgValue('mem', rm, 'uses the stack pointer as an index, which cannot be encoded');
  const rexX = index ? index.n >> 3 : 0;
  const rexB = base ? base.n >> 3 : 0;
  const sib = index || !base || (base.n & 7) === 4;
  const sibByte = sib ? (SCALE[rm.scale] << 6) | ((index ? index.n & 7 : 4) << 3) | (base ? base.n & 7 : 5) : undefined;
  const rmField = sib || !base ? 4 : base.n & 7;
  const tail = sibByte === undefined ? [] : [sibByte];
  if (!base) {
    // [index*scale + disp32]: mod=00 with SIB base=101.
    if (label !== undefined) return { addrSize, rexX, rexB, bytes: [r | 4, ...tail, 0, 0, 0, 0], fix: fix32(2, label, rm.disp) };
    return { addrSize, rexX, rexB, bytes: [r | 4, ...tail, ...le(check(rm, 32), 4)] };
  }
  if (label !== undefined)
    return { addrSize, rexX, rexB, bytes: [0x80 | r | rmField, ...tail, 0, 0, 0, 0], fix: fix32(1 + tail.length, label, rm.disp) };
  // mod=00 with base rbp/r13 means "disp32, no base", so [rbp] takes a zero disp8.
  if (rm.disp === 0 && (base.n & 7) !== 5) return { addrSize, rexX, rexB, bytes: [r | rmField, ...tail] };
  if (fitsS8(rm.disp)) return { addrSize, rexX, rexB, bytes: [0x40 | r | rmField, ...tail, rm.disp & 0xff] };
  return { addrSize, rexX, rexB, bytes: [0x80 | r | rmField, ...tail, ...le(check(rm, 32), 4)] };
}

function disp16Only(r: number, disp: number, label: string | undefined): RmEncoding {
  if (label !== undefined) return { addrSize: 16, rexX: 0, rexB: 0, bytes: [r | 6, 0, 0], fix: fix16(1, label, disp) };
  if (disp < -0x8000 || disp > 0xffff) throw invalidArgValue('mem.disp', disp, 'does not fit a 16-bit address');
  return { addrSize: 16, rexX: 0, rexB: 0, bytes: [r | 6, ...le(disp, 2)] };
}
const fix16 = (at: number, label: string, addend: number) => ({ at, size: 2 as const, label, addend, pcRel: false });
const fix32 = (at: number, label: string, addend: number) => ({ at, size: 4 as const, label, addend, pcRel: false });

function check(m: Mem, kind: 16 | 32 | 'disp32s'): number {
  const [lo, hi] = kind === 16 ? [-0x8000, 0xffff] : kind === 32 ? [-(2 ** 31), 2 ** 32 - 1] : [-(2 ** 31), 2 ** 31 - 1];
  if (m.disp < lo || m.disp > hi)
    throw invalidArgValue(
      'mem.disp',
      m.disp,
      kind === 'disp32s' ? 'does not fit the sign-extended 32-bit displacement of 64-bit addressing' : `does not fit ${kind} bits`,
    );
  return m.disp;
}
