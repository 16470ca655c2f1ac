/**
 * An x86 assembler for small test guests, in 16-, 32- and 64-bit code: the instructions such guests
 * use (moves, arithmetic, branches, port I/O, string operations, descriptor tables, control
 * registers, MSRs, hypercalls, far jumps between modes), labels and fix-ups. Each method emits the
 * encoding of Intel SDM vol. 2 (AMD APM vol. 3 for VMMCALL), and where there are several, the one
 * GNU as picks, so a listing from `as` and `objdump -d` reads the same. Operands are in Intel order
 * (destination first).
 *
 * ```ts
 * import { Asm } from 'kvm-sev';
 * const a = new Asm({ bits: 64, origin: 0x1000 });
 * a.mov('dx', 0x3f8).mov('al', 0x41).out('dx', 'al').hlt();
 * console.log(Buffer.from(a.assemble()).toString('hex')); // 66baf803 b041 ee f4
 * ```
 *
 * Branches to labels start short (rel8) and grow to near (rel16/rel32) where the target is out of
 * reach, as `as` relaxes them. `bits()` switches the encoding for what follows (`.code16`, `.code32`,
 * `.code64`), so one program can carry the code on both sides of a mode switch.
 */
import { KvmSevError } from '../../backend/errors.js';
import { invalidArgValue, outOfRange } from '../../uapi/errors.js';
import { encodeRm, type Mode } from './asm-modrm.js';
import {
  SREG,
  gpr,
  isCreg,
  isMem,
  isRef,
  isSreg,
  ref,
  type Creg,
  type Gpr,
  type GprInfo,
  type Imm,
  type Mem,
  type Ref,
  type Reg16,
  type Reg32,
  type Reg64,
  type Reg8,
  type Size,
  type Sreg,
} from './asm-operands.js';

export type { Mode };
export { byte, dword, mem, qword, ref, span, word } from './asm-operands.js';
export type { Creg, Gpr, Imm, Mem, MemSpec, Ref, Reg16, Reg32, Reg64, Reg8, Size, Sreg } from './asm-operands.js';

/** Condition codes, as the low nibble of Jcc (Intel SDM vol. 2, appendix B.1.4.7). */
export const CONDITIONS = {
  o: 0, no: 1, b: 2, c: 2, nae: 2, ae: 3, nb: 3, nc: 3, e: 4, z: 4, ne: 5, nz: 5, be: 6, na: 6, a: 7, nbe: 7,
  s: 8, ns: 9, p: 10, pe: 10, np: 11, po: 11, l: 12, nge: 12, ge: 13, nl: 13, le: 14, ng: 14, g: 15, nle: 15,
} as const; // prettier-ignore
export type Condition = keyof typeof CONDITIONS;

/** `short` (rel8) or `near` (rel16 in 16-bit code, rel32 otherwise); by default the shortest that reaches. */
export type BranchSize = 'short' | 'near';

/** The output of {@link Asm.program}: loadable code and where each label ended up. */
export interface AssembledProgram {
  /** Guest-physical load address. */
  origin: number;
  code: Uint8Array;
  labels: ReadonlyMap<string, number>;
}

interface Fix {
  /** Byte offset in the item. */
  at: number;
  size: 1 | 2 | 4 | 8;
  ref: Ref;
  /** Relative to the end of the instruction (branches, RIP-relative operands). */
  pcRel: boolean;
  /** The field is sign-extended by the CPU, so it must fit as a signed value. */
  signed: boolean;
}

type Item =
  | { k: 'code'; bytes: number[]; fixes: Fix[] }
  | { k: 'label'; name: string }
  | {
      k: 'branch';
      short: number[];
      near: number[] | undefined;
      nearSize: 2 | 4;
      target: string;
      force: BranchSize | undefined;
      what: string;
    }
  | { k: 'align'; to: number; fill: number };

interface Inst {
  op: number[];
  /** Operand size: decides the 0x66 prefix and REX.W. Undefined or 8: neither. */
  size?: Size | undefined;
  /** 64-bit operands are the default in 64-bit mode (PUSH, POP, indirect JMP/CALL): no REX.W. */
  default64?: boolean;
  /** ModRM.reg: a register number or an opcode extension (/digit). */
  reg?: number;
  rm?: GprInfo | Mem | undefined;
  /** A register in the low three bits of the last opcode byte (B8+r). */
  plusReg?: GprInfo;
  /** Every general-purpose register operand, for the byte-register REX rules. */
  gprs?: (GprInfo | undefined)[];
  imm?: { v: Imm; bytes: 1 | 2 | 4 | 8; signed?: boolean };
  /** Further immediate bytes (the selector of a far jump). */
  tail?: number[];
  /** A REP prefix (F3), after 67 and 66. */
  rep?: boolean;
}

export interface AsmOptions {
  /** 16 (real mode, the default), 32 (protected mode) or 64 (long mode). */
  bits?: Mode;
  /** Where the code will be loaded (the `org`), for absolute addresses. */
  origin: number;
}

type Operand = Gpr | Sreg | Creg | Mem | Imm;

const le = (v: bigint, n: number): number[] => Array.from({ length: n }, (_, i) => Number((v >> BigInt(8 * i)) & 0xffn));
const fitsS8 = (v: bigint): boolean => v >= -128n && v <= 127n;
const fitsS32 = (v: bigint): boolean => v >= -(2n ** 31n) && v < 2n ** 31n;

function asmError(code: 'UNKNOWN_LABEL' | 'DUPLICATE_LABEL' | 'OUT_OF_RANGE', message: string): KvmSevError {
  return new KvmSevError(`ERR_KVM_SEV_ASM_${code}`, `asm: ${message}`);
}

export class Asm {
  /** Where the code will be loaded (the `org`), for absolute addresses. */
  readonly origin: number;
  private cur: Mode;
  private readonly items: Item[] = [];
  private readonly defined = new Set<string>();
  /** rep() was called: the next (string) instruction takes F3, after its 66 as gas orders them. */
  private pendingRep = false;

  constructor(options: AsmOptions) {
    if (!Number.isSafeInteger(options.origin) || options.origin < 0) throw outOfRange('options.origin', '>= 0', options.origin);
    this.origin = options.origin;
    this.cur = this.checkMode(options.bits ?? 16);
  }

  /** The code size instructions are being encoded for. */
  get bits(): Mode {
    return this.cur;
  }

  /** Encodes what follows as `bits`-bit code (after the far jump or mode switch that gets there). */
  code(bits: Mode): this {
    this.cur = this.checkMode(bits);
    return this;
  }

  private checkMode(bits: Mode): Mode {
    if (bits !== 16 && bits !== 32 && bits !== 64) throw invalidArgValue('bits', bits, 'must be 16, 32 or 64');
    return bits;
  }

  // ---- labels and data ----

  label(name: string): this {
    if (typeof name !== 'string' || name === '' || gpr(name) || isSreg(name) || isCreg(name))
      throw invalidArgValue('name', name, 'is not a usable label name');
    if (this.defined.has(name)) throw asmError('DUPLICATE_LABEL', `label '${name}' is defined twice`);
    this.defined.add(name);
    this.emitItem({ k: 'label', name });
    return this;
  }
  /** Raw bytes. */
  data(bytes: ArrayLike<number>): this {
    const b = Array.from(bytes);
    for (const x of b) if (!Number.isInteger(x) || x < 0 || x > 255) throw outOfRange('bytes', '>= 0 && <= 255', x);
    return this.raw(b);
  }
  db(...bytes: number[]): this {
    return this.data(bytes);
  }
  /** 16-bit words (a label's address, a span, or numbers). */
  dw(...values: Imm[]): this {
    return this.values(values, 2);
  }
  dd(...values: Imm[]): this {
    return this.values(values, 4);
  }
  dq(...values: Imm[]): this {
    return this.values(values, 8);
  }
  /** ASCII (latin1) text. */
  ascii(s: string): this {
    return this.data(Buffer.from(s, 'latin1'));
  }
  /** A NUL-terminated string: a JS string as Latin-1 bytes, or the bytes given (e.g. UTF-8). */
  asciz(s: string | Uint8Array): this {
    return this.data([...(typeof s === 'string' ? Buffer.from(s, 'latin1') : s), 0]);
  }
  /** Pads with `fill` to a multiple of `to` bytes (a power of two). */
  align(to: number, fill = 0): this {
    if (!Number.isInteger(to) || to < 1 || (to & (to - 1)) !== 0) throw invalidArgValue('to', to, 'must be a power of two');
    this.emitItem({ k: 'align', to, fill: fill & 0xff });
    return this;
  }
  /** `n` bytes of `fill`. */
  space(n: number, fill = 0): this {
    return this.raw(new Array<number>(n).fill(fill & 0xff));
  }

  private values(values: Imm[], n: 2 | 4 | 8): this {
    const bytes: number[] = [];
    const fixes: Fix[] = [];
    for (const v of values) this.pushImm(bytes, fixes, v, n, false, `d${n === 2 ? 'w' : n === 4 ? 'd' : 'q'}`);
    this.emitItem({ k: 'code', bytes, fixes });
    return this;
  }
  private raw(bytes: number[]): this {
    this.emitItem({ k: 'code', bytes, fixes: [] });
    return this;
  }
  private emitItem(item: Item): void {
    if (this.pendingRep) throw invalidArgValue('rep', true, 'must be followed by a string instruction (movs, stos, lods, ins, outs)');
    this.items.push(item);
  }

  // ---- moves ----

  /**
   * MOV: register or memory from register, memory or immediate (88–8B, B0+r, B8+r, C6/C7;
   * A0–A3 for the accumulator and an absolute address in 16- and 32-bit code; REX.W C7 or, for a
   * value beyond 32 signed bits, REX.W B8+r io); segment registers (8C, 8E); control registers (0F 20, 0F 22).
   */
  mov(dst: Gpr | Sreg | Creg | Mem, src: Operand): this {
    if (isCreg(dst) || isCreg(src)) return this.movCr(dst, src);
    const d = gpr(dst);
    const s = gpr(src);
    if (isSreg(dst)) {
      // MOV Sreg, r/m16: the register's size needs no prefix (gas writes none).
      if (dst === 'cs') throw invalidArgValue('dst', dst, 'cannot be loaded with MOV (use a far jump)');
      if (!(s && s.size !== 8) && !isMem(src)) throw this.badOperands('mov', dst, src);
      return this.inst({ op: [0x8e], reg: SREG.indexOf(dst), rm: s ?? (src as Mem), gprs: [s] });
    }
    if (isSreg(src)) {
      if (!(d && d.size !== 8) && !isMem(dst)) throw this.badOperands('mov', dst, src);
      // Into a 64-bit register the selector is zero-extended either way: gas writes no REX.W.
      return this.inst({
        op: [0x8c],
        reg: SREG.indexOf(src),
        rm: d ?? (dst as Mem),
        size: d?.size === 64 ? undefined : d?.size,
        gprs: [d],
      });
    }
    if (d && s) {
      this.sameSize('mov', d, s, dst, src);
      return this.inst({ op: [d.size === 8 ? 0x88 : 0x89], size: d.size, reg: s.n, rm: d, gprs: [d, s] });
    }
    if (d && isMem(src)) {
      this.memSize('mov', src, d.size);
      if (d.n === 0 && this.moffs(src)) return this.moffsInst(d.size === 8 ? 0xa0 : 0xa1, d.size, src);
      return this.inst({ op: [d.size === 8 ? 0x8a : 0x8b], size: d.size, reg: d.n, rm: src, gprs: [d] });
    }
    if (isMem(dst) && s) {
      this.memSize('mov', dst, s.size);
      if (s.n === 0 && this.moffs(dst)) return this.moffsInst(s.size === 8 ? 0xa2 : 0xa3, s.size, dst);
      return this.inst({ op: [s.size === 8 ? 0x88 : 0x89], size: s.size, reg: s.n, rm: dst, gprs: [s] });
    }
    if (d && this.isImm(src)) {
      if (d.size === 8) return this.inst({ op: [0xb0], plusReg: d, gprs: [d], imm: { v: this.immFor(src, 8, 'src'), bytes: 1 } });
      if (d.size !== 64)
        return this.inst({
          op: [0xb8],
          size: d.size,
          plusReg: d,
          imm: { v: this.immFor(src, d.size, 'src'), bytes: d.size === 16 ? 2 : 4 },
        });
      const v = this.immFor(src, 64, 'src');
      if (isRef(v) || fitsS32(v)) return this.inst({ op: [0xc7], size: 64, reg: 0, rm: d, imm: { v, bytes: 4, signed: true } });
      return this.inst({ op: [0xb8], size: 64, plusReg: d, imm: { v, bytes: 8 } });
    }
    if (isMem(dst) && this.isImm(src)) {
      const size = this.memSize('mov', dst);
      const v = this.immFor(src, size, 'src');
      return this.inst({ op: [size === 8 ? 0xc6 : 0xc7], size, reg: 0, rm: dst, imm: this.immField(v, size) });
    }
    throw this.badOperands('mov', dst, src);
  }

  /** MOVZX: zero-extends a byte or word (0F B6, 0F B7). */
  movzx(dst: Reg16 | Reg32 | Reg64, src: Reg8 | Reg16 | Mem): this {
    return this.extend(0xb6, 'movzx', dst, src);
  }
  /** MOVSX: sign-extends a byte or word (0F BE, 0F BF). */
  movsx(dst: Reg16 | Reg32 | Reg64, src: Reg8 | Reg16 | Mem): this {
    return this.extend(0xbe, 'movsx', dst, src);
  }
  private extend(op: number, what: string, dst: Reg16 | Reg32 | Reg64, src: Reg8 | Reg16 | Mem): this {
    const d = gpr(dst);
    const s = gpr(src);
    const from = s?.size ?? (isMem(src) ? src.size : undefined);
    if (!d || d.size === 8 || (from !== 8 && from !== 16) || from >= d.size) throw this.badOperands(what, dst, src);
    return this.inst({ op: [0x0f, op | (from === 16 ? 1 : 0)], size: d.size, reg: d.n, rm: s ?? (src as Mem), gprs: [d, s] });
  }

  /** LEA: the address of a memory operand (8D /r). */
  lea(dst: Reg16 | Reg32 | Reg64, src: Mem): this {
    const d = gpr(dst);
    if (!d || d.size === 8 || !isMem(src)) throw this.badOperands('lea', dst, src);
    return this.inst({ op: [0x8d], size: d.size, reg: d.n, rm: src, gprs: [d] });
  }

  private movCr(dst: Operand, src: Operand): this {
    // MOV CRn, r32/r64 (0F 22 /r) and MOV r32/r64, CRn (0F 20 /r): the register is the mode's width, no prefix.
    const [cr, g, op] = isCreg(dst) ? [dst, gpr(src), 0x22] : [src as Creg, gpr(dst), 0x20];
    const want = this.cur === 64 ? 64 : 32;
    if (!g || g.size !== want)
      throw invalidArgValue('operands', [dst, src], `need a ${want}-bit general register with ${cr} in ${this.cur}-bit code`);
    const n = Number(cr.slice(2));
    if (n === 8 && this.cur !== 64) throw invalidArgValue('operands', [dst, src], 'use CR8 only in 64-bit code (it needs REX.R)');
    return this.inst({ op: [0x0f, op], reg: n, rm: g, gprs: [g] });
  }

  // ---- arithmetic and logic ----

  add(dst: Gpr | Mem, src: Gpr | Mem | Imm): this {
    return this.alu(0, 'add', dst, src);
  }
  or(dst: Gpr | Mem, src: Gpr | Mem | Imm): this {
    return this.alu(1, 'or', dst, src);
  }
  adc(dst: Gpr | Mem, src: Gpr | Mem | Imm): this {
    return this.alu(2, 'adc', dst, src);
  }
  sbb(dst: Gpr | Mem, src: Gpr | Mem | Imm): this {
    return this.alu(3, 'sbb', dst, src);
  }
  and(dst: Gpr | Mem, src: Gpr | Mem | Imm): this {
    return this.alu(4, 'and', dst, src);
  }
  sub(dst: Gpr | Mem, src: Gpr | Mem | Imm): this {
    return this.alu(5, 'sub', dst, src);
  }
  xor(dst: Gpr | Mem, src: Gpr | Mem | Imm): this {
    return this.alu(6, 'xor', dst, src);
  }
  cmp(dst: Gpr | Mem, src: Gpr | Mem | Imm): this {
    return this.alu(7, 'cmp', dst, src);
  }

  /**
   * The eight ALU operations (00–3F, 80, 81, 83 /n): an immediate that fits a signed byte at the
   * operand's size takes 83 /n ib, otherwise the accumulator's short form or 81 /n.
   */
  private alu(n: number, what: string, dst: Gpr | Mem, src: Gpr | Mem | Imm): this {
    const d = gpr(dst);
    const s = gpr(src);
    if (d && s) {
      this.sameSize(what, d, s, dst, src);
      return this.inst({ op: [(n << 3) | (d.size === 8 ? 0 : 1)], size: d.size, reg: s.n, rm: d, gprs: [d, s] });
    }
    if (d && isMem(src)) {
      this.memSize(what, src, d.size);
      return this.inst({ op: [(n << 3) | (d.size === 8 ? 2 : 3)], size: d.size, reg: d.n, rm: src, gprs: [d] });
    }
    if (isMem(dst) && s) {
      this.memSize(what, dst, s.size);
      return this.inst({ op: [(n << 3) | (s.size === 8 ? 0 : 1)], size: s.size, reg: s.n, rm: dst, gprs: [s] });
    }
    if ((d || isMem(dst)) && this.isImm(src)) {
      const size = d ? d.size : this.memSize(what, dst as Mem);
      const rm = d ?? (dst as Mem);
      const acc = d?.n === 0;
      const v = this.immFor(src, size, 'src');
      if (size === 8)
        return this.inst({ op: [acc ? (n << 3) | 4 : 0x80], reg: n, rm: acc ? undefined : rm, gprs: [d], imm: { v, bytes: 1 } });
      if (!isRef(v) && fitsS8(v)) return this.inst({ op: [0x83], size, reg: n, rm, gprs: [d], imm: { v, bytes: 1, signed: true } });
      if (acc) return this.inst({ op: [(n << 3) | 5], size, imm: this.immField(v, size) });
      return this.inst({ op: [0x81], size, reg: n, rm, gprs: [d], imm: this.immField(v, size) });
    }
    throw this.badOperands(what, dst, src);
  }

  /** INC (FE/FF /0; 40+r for a 16- or 32-bit register outside 64-bit code, where 40–4F are REX). */
  inc(dst: Gpr | Mem): this {
    return this.incDec(0, 'inc', dst);
  }
  /** DEC (FE/FF /1; 48+r outside 64-bit code). */
  dec(dst: Gpr | Mem): this {
    return this.incDec(1, 'dec', dst);
  }
  private incDec(n: 0 | 1, what: string, dst: Gpr | Mem): this {
    const d = gpr(dst);
    if (d && d.size !== 8 && this.cur !== 64) return this.inst({ op: [0x40 | (n << 3)], size: d.size, plusReg: d });
    const size = d ? d.size : isMem(dst) ? this.memSize(what, dst) : undefined;
    if (size === undefined) throw this.badOperands(what, dst);
    return this.inst({ op: [size === 8 ? 0xfe : 0xff], size, reg: n, rm: d ?? (dst as Mem), gprs: [d] });
  }

  /** NOT (F6/F7 /2). */
  not(dst: Gpr | Mem): this {
    return this.unary(2, 'not', dst);
  }
  /** NEG (F6/F7 /3). */
  neg(dst: Gpr | Mem): this {
    return this.unary(3, 'neg', dst);
  }
  private unary(n: number, what: string, dst: Gpr | Mem): this {
    const d = gpr(dst);
    const size = d ? d.size : isMem(dst) ? this.memSize(what, dst) : undefined;
    if (size === undefined) throw this.badOperands(what, dst);
    return this.inst({ op: [size === 8 ? 0xf6 : 0xf7], size, reg: n, rm: d ?? (dst as Mem), gprs: [d] });
  }

  /** TEST (84/85 /r; A8/A9 for the accumulator with an immediate, else F6/F7 /0). */
  test(dst: Gpr | Mem, src: Gpr | Mem | Imm): this {
    let d = gpr(dst);
    let s = gpr(src);
    if (isMem(src) && d) [dst, src, d, s] = [src, dst, undefined, d]; // TEST is symmetric: the register goes in ModRM.reg
    if ((d || isMem(dst)) && s) {
      const size = d ? this.sameSize('test', d, s, dst, src) : this.memSize('test', dst as Mem, s.size);
      return this.inst({ op: [size === 8 ? 0x84 : 0x85], size, reg: s.n, rm: d ?? (dst as Mem), gprs: [d, s] });
    }
    if ((d || isMem(dst)) && this.isImm(src)) {
      const size = d ? d.size : this.memSize('test', dst as Mem);
      const v = this.immFor(src, size, 'src');
      if (d?.n === 0) return this.inst({ op: [size === 8 ? 0xa8 : 0xa9], size, imm: this.immField(v, size) });
      return this.inst({ op: [size === 8 ? 0xf6 : 0xf7], size, reg: 0, rm: d ?? (dst as Mem), gprs: [d], imm: this.immField(v, size) });
    }
    throw this.badOperands('test', dst, src);
  }

  rol(dst: Gpr | Mem, count: number | 'cl'): this {
    return this.shift(0, 'rol', dst, count);
  }
  ror(dst: Gpr | Mem, count: number | 'cl'): this {
    return this.shift(1, 'ror', dst, count);
  }
  shl(dst: Gpr | Mem, count: number | 'cl'): this {
    return this.shift(4, 'shl', dst, count);
  }
  shr(dst: Gpr | Mem, count: number | 'cl'): this {
    return this.shift(5, 'shr', dst, count);
  }
  sar(dst: Gpr | Mem, count: number | 'cl'): this {
    return this.shift(7, 'sar', dst, count);
  }
  /** Shifts and rotates: D0/D1 /n by one, D2/D3 /n by CL, C0/C1 /n ib otherwise. */
  private shift(n: number, what: string, dst: Gpr | Mem, count: number | 'cl'): this {
    const d = gpr(dst);
    const size = d ? d.size : isMem(dst) ? this.memSize(what, dst) : undefined;
    if (size === undefined) throw this.badOperands(what, dst, count);
    const w = size === 8 ? 0 : 1;
    const rm = d ?? (dst as Mem);
    if (count === 'cl') return this.inst({ op: [0xd2 | w], size, reg: n, rm, gprs: [d] });
    if (!Number.isInteger(count) || count < 0 || count > 255) throw outOfRange('count', ">= 0 && <= 255, or 'cl'", count);
    if (count === 1) return this.inst({ op: [0xd0 | w], size, reg: n, rm, gprs: [d] });
    return this.inst({ op: [0xc0 | w], size, reg: n, rm, gprs: [d], imm: { v: BigInt(count), bytes: 1 } });
  }

  // ---- stack ----

  /** PUSH: 50+r, 6A ib / 68 iw|id (the mode's operand size), FF /6. */
  push(src: Reg16 | Reg32 | Reg64 | Mem | Imm): this {
    const s = gpr(src);
    if (s) return this.inst({ op: [0x50], size: this.stackSize(s.size, 'push', src), default64: true, plusReg: s });
    if (isMem(src))
      return this.inst({
        op: [0xff],
        reg: 6,
        rm: src,
        size: this.stackSize(src.size ?? this.stackDefault(), 'push', src),
        default64: true,
      });
    if (this.isImm(src)) {
      const size = this.stackDefault();
      const v = this.immFor(src, size, 'src');
      if (!isRef(v) && fitsS8(v)) return this.raw([0x6a, Number(BigInt.asUintN(8, v))]);
      return this.inst({ op: [0x68], imm: this.immField(v, size) });
    }
    throw this.badOperands('push', src);
  }
  /** POP: 58+r, 8F /0. */
  pop(dst: Reg16 | Reg32 | Reg64 | Mem): this {
    const d = gpr(dst);
    if (d) return this.inst({ op: [0x58], size: this.stackSize(d.size, 'pop', dst), default64: true, plusReg: d });
    if (isMem(dst))
      return this.inst({ op: [0x8f], reg: 0, rm: dst, size: this.stackSize(dst.size ?? this.stackDefault(), 'pop', dst), default64: true });
    throw this.badOperands('pop', dst);
  }
  /** PUSHF (9C) and POPF (9D), at the mode's stack width. */
  pushf(): this {
    return this.raw([0x9c]);
  }
  popf(): this {
    return this.raw([0x9d]);
  }
  private stackDefault(): Size {
    return this.cur === 64 ? 64 : this.cur;
  }
  private stackSize(size: Size, what: string, op: unknown): Size {
    if (size === 8 || (this.cur === 64 && size === 32) || (this.cur !== 64 && size === 64))
      throw invalidArgValue('operand', op, `cannot be used with ${what} in ${this.cur}-bit code`);
    return size;
  }

  // ---- branches ----

  /** JMP to a label (EB rel8 / E9 rel16|rel32), or through a register (a register name) or memory (FF /4). */
  jmp(target: string | Mem, size?: BranchSize): this {
    if (typeof target === 'string' && !gpr(target)) return this.branch('jmp', [0xeb], [0xe9], target, size);
    return this.indirect(4, 'jmp', target as Gpr | Mem);
  }
  /** Jcc to a label (70+cc rel8 / 0F 80+cc rel16|rel32). */
  j(cc: Condition, target: string, size?: BranchSize): this {
    const c = CONDITIONS[cc];
    if (c === undefined) throw invalidArgValue('cc', cc, 'is not a condition code');
    return this.branch(`j${cc}`, [0x70 | c], [0x0f, 0x80 | c], target, size);
  }
  jz(target: string, size?: BranchSize): this {
    return this.j('z', target, size);
  }
  jnz(target: string, size?: BranchSize): this {
    return this.j('nz', target, size);
  }
  je(target: string, size?: BranchSize): this {
    return this.j('e', target, size);
  }
  jne(target: string, size?: BranchSize): this {
    return this.j('ne', target, size);
  }
  jb(target: string, size?: BranchSize): this {
    return this.j('b', target, size);
  }
  jae(target: string, size?: BranchSize): this {
    return this.j('ae', target, size);
  }
  jbe(target: string, size?: BranchSize): this {
    return this.j('be', target, size);
  }
  ja(target: string, size?: BranchSize): this {
    return this.j('a', target, size);
  }
  jl(target: string, size?: BranchSize): this {
    return this.j('l', target, size);
  }
  jge(target: string, size?: BranchSize): this {
    return this.j('ge', target, size);
  }
  jle(target: string, size?: BranchSize): this {
    return this.j('le', target, size);
  }
  jg(target: string, size?: BranchSize): this {
    return this.j('g', target, size);
  }
  /** LOOP rel8 (E2): decrement CX/ECX/RCX (the mode's address size), jump if not zero. */
  loop(target: string): this {
    return this.branch('loop', [0xe2], undefined, target, 'short');
  }
  /** CALL a label (E8 rel16|rel32), or through a register (a register name) or memory (FF /2). */
  call(target: string | Mem): this {
    if (typeof target === 'string' && !gpr(target)) {
      const n = this.cur === 16 ? 2 : 4;
      this.emitItem({
        k: 'code',
        bytes: [0xe8, ...new Array<number>(n).fill(0)],
        fixes: [{ at: 1, size: n, ref: ref(target), pcRel: true, signed: true }],
      });
      return this;
    }
    return this.indirect(2, 'call', target as Gpr | Mem);
  }
  /** RET (C3), or RET imm16 (C2 iw) releasing `bytes` of arguments. */
  ret(bytes?: number): this {
    if (bytes === undefined) return this.raw([0xc3]);
    if (!Number.isInteger(bytes) || bytes < 0 || bytes > 0xffff) throw outOfRange('bytes', '>= 0 && <= 65535', bytes);
    return this.raw([0xc2, ...le(BigInt(bytes), 2)]);
  }
  /**
   * JMP ptr16:16 / ptr16:32 (EA): loads CS with `selector` and jumps to `target` in one step, the
   * way into protected mode or, from 32-bit code with EFER.LME and paging on, into 64-bit mode.
   * The offset has the mode's operand size unless `offsetBits` says (0x66 for the other one).
   * 64-bit code has no direct far jump: push the selector and the address and use {@link retfq}.
   */
  jmpFar(selector: number, target: Imm | string, offsetBits?: 16 | 32): this {
    if (this.cur === 64) throw invalidArgValue('bits', 64, 'has no direct far jump (push selector and offset, then retfq)');
    if (!Number.isInteger(selector) || selector < 0 || selector > 0xffff) throw outOfRange('selector', '>= 0 && <= 65535', selector);
    const size = offsetBits ?? this.cur;
    const v = typeof target === 'string' ? ref(target) : this.immFor(target, size, 'target');
    return this.inst({ op: [0xea], size, imm: { v, bytes: size === 16 ? 2 : 4 }, tail: le(BigInt(selector), 2) });
  }
  /** RETF (CB): a far return at the mode's operand size (not in 64-bit code: see {@link retfq}). */
  retf(): this {
    if (this.cur === 64) throw invalidArgValue('bits', 64, 'pops a 32-bit frame with a plain RETF: use retfq()');
    return this.raw([0xcb]);
  }
  /** RETFQ (REX.W CB): pops RIP, then CS, 8 bytes each. */
  retfq(): this {
    this.need64('retfq');
    return this.raw([0x48, 0xcb]);
  }
  /** IRET (CF) in 16- and 32-bit code (IRET / IRETD). */
  iret(): this {
    if (this.cur === 64) throw invalidArgValue('bits', 64, 'pops a 32-bit frame with a plain IRET: use iretq()');
    return this.raw([0xcf]);
  }
  /** IRETQ (REX.W CF): returns from an interrupt in 64-bit mode. */
  iretq(): this {
    this.need64('iretq');
    return this.raw([0x48, 0xcf]);
  }
  /** INT imm8 (CD ib). */
  int(vector: number): this {
    if (!Number.isInteger(vector) || vector < 0 || vector > 255) throw outOfRange('vector', '>= 0 && <= 255', vector);
    return this.raw([0xcd, vector]);
  }

  private branch(what: string, short: number[], near: number[] | undefined, target: string, size: BranchSize | undefined): this {
    if (typeof target !== 'string' || target === '') throw invalidArgValue('target', target, 'is not a label');
    if (size !== undefined && size !== 'short' && size !== 'near') throw invalidArgValue('size', size, "must be 'short' or 'near'");
    if (size === 'near' && !near) throw invalidArgValue('size', size, `is not available for ${what} (rel8 only)`);
    this.emitItem({ k: 'branch', short, near, nearSize: this.cur === 16 ? 2 : 4, target, force: size, what });
    return this;
  }
  private indirect(n: 2 | 4, what: string, target: Gpr | Mem): this {
    const t = gpr(target);
    const size = t?.size ?? (isMem(target) ? (target.size ?? this.stackDefault()) : undefined);
    if (size === undefined || size !== this.stackDefault()) throw this.badOperands(what, target);
    return this.inst({ op: [0xff], reg: n, rm: t ?? (target as Mem), size, default64: true, gprs: [t] });
  }

  // ---- port I/O ----

  /** IN AL/AX/EAX from an 8-bit port number (E4/E5 ib) or from DX (EC/ED). */
  in(dst: 'al' | 'ax' | 'eax', port: number | 'dx'): this {
    const d = gpr(dst);
    if (!d || d.n !== 0 || d.size === 64) throw this.badOperands('in', dst, port);
    return this.io(0xe4, d.size, port);
  }
  /** OUT to an 8-bit port number (E6/E7 ib) or to DX (EE/EF) from AL/AX/EAX. */
  out(port: number | 'dx', src: 'al' | 'ax' | 'eax'): this {
    const s = gpr(src);
    if (!s || s.n !== 0 || s.size === 64) throw this.badOperands('out', port, src);
    return this.io(0xe6, s.size, port);
  }
  private io(base: number, size: Size, port: number | 'dx'): this {
    const w = size === 8 ? 0 : 1;
    if (port === 'dx') return this.inst({ op: [base | 8 | w], size });
    if (!Number.isInteger(port) || port < 0 || port > 255) throw outOfRange('port', ">= 0 && <= 255 (or 'dx')", port);
    return this.inst({ op: [base | w], size, imm: { v: BigInt(port), bytes: 1 } });
  }

  // ---- string operations ----

  /** A REP prefix (F3) for the string instruction that follows: `a.rep().stos(64)`. */
  rep(): this {
    if (this.pendingRep) throw invalidArgValue('rep', true, 'is already pending');
    this.pendingRep = true;
    return this;
  }
  /** MOVS (A4/A5): [rDI] = [rSI], both advance. */
  movs(size: Size): this {
    return this.str(0xa4, size);
  }
  /** STOS (AA/AB): [rDI] = rAX, rDI advances. */
  stos(size: Size): this {
    return this.str(0xaa, size);
  }
  /** LODS (AC/AD): rAX = [rSI], rSI advances. */
  lods(size: Size): this {
    return this.str(0xac, size);
  }
  /** INS (6C/6D): [rDI] = IN(DX). */
  ins(size: 8 | 16 | 32): this {
    return this.str(0x6c, size);
  }
  /** OUTS (6E/6F): OUT(DX, [rSI]). */
  outs(size: 8 | 16 | 32): this {
    return this.str(0x6e, size);
  }
  private str(op: number, size: Size): this {
    if (size !== 8 && size !== 16 && size !== 32 && (size !== 64 || op === 0x6c || op === 0x6e))
      throw invalidArgValue('size', size, 'is not an operand size of this string instruction');
    const rep = this.pendingRep;
    this.pendingRep = false;
    return this.inst({ op: [op | (size === 8 ? 0 : 1)], size, rep });
  }

  // ---- system ----

  /** LGDT m (0F 01 /2): a 6-byte (16/32-bit code) or 10-byte (64-bit code) limit and base. */
  lgdt(m: Mem): this {
    return this.descriptorTable(2, 'lgdt', m);
  }
  /** LIDT m (0F 01 /3). */
  lidt(m: Mem): this {
    return this.descriptorTable(3, 'lidt', m);
  }
  /** SGDT m (0F 01 /0). */
  sgdt(m: Mem): this {
    return this.descriptorTable(0, 'sgdt', m);
  }
  /** SIDT m (0F 01 /1). */
  sidt(m: Mem): this {
    return this.descriptorTable(1, 'sidt', m);
  }
  /** LTR r/m16 (0F 00 /3): loads the task register from a selector. */
  ltr(src: Reg16 | Mem): this {
    const s = gpr(src);
    if (!(s?.size === 16) && !isMem(src)) throw this.badOperands('ltr', src);
    return this.inst({ op: [0x0f, 0x00], reg: 3, rm: s ?? (src as Mem), gprs: [s] });
  }
  private descriptorTable(n: number, what: string, m: Mem): this {
    if (!isMem(m)) throw this.badOperands(what, m);
    return this.inst({ op: [0x0f, 0x01], reg: n, rm: m });
  }
  /** WRMSR (0F 30): MSR[ECX] = EDX:EAX. */
  wrmsr(): this {
    return this.raw([0x0f, 0x30]);
  }
  /** RDMSR (0F 32): EDX:EAX = MSR[ECX]. */
  rdmsr(): this {
    return this.raw([0x0f, 0x32]);
  }
  /** RDTSC (0F 31). */
  rdtsc(): this {
    return this.raw([0x0f, 0x31]);
  }
  /** CPUID (0F A2). */
  cpuid(): this {
    return this.raw([0x0f, 0xa2]);
  }
  /** VMMCALL (0F 01 D9): AMD's hypercall (AMD APM vol. 3); KVM also accepts it on Intel by patching. */
  vmmcall(): this {
    return this.raw([0x0f, 0x01, 0xd9]);
  }
  /** VMCALL (0F 01 C1): Intel's hypercall. */
  vmcall(): this {
    return this.raw([0x0f, 0x01, 0xc1]);
  }
  hlt(): this {
    return this.raw([0xf4]);
  }
  cli(): this {
    return this.raw([0xfa]);
  }
  sti(): this {
    return this.raw([0xfb]);
  }
  cld(): this {
    return this.raw([0xfc]);
  }
  std(): this {
    return this.raw([0xfd]);
  }
  nop(): this {
    return this.raw([0x90]);
  }
  pause(): this {
    return this.raw([0xf3, 0x90]);
  }
  /** INT3 (CC): a breakpoint. */
  int3(): this {
    return this.raw([0xcc]);
  }
  /** UD2 (0F 0B): an invalid-opcode exception on purpose. */
  ud2(): this {
    return this.raw([0x0f, 0x0b]);
  }

  private need64(what: string): void {
    if (this.cur !== 64) throw invalidArgValue('bits', this.cur, `has no ${what} (64-bit code only)`);
  }

  // ---- encoding ----

  private isImm(x: unknown): x is Imm {
    return typeof x === 'number' || typeof x === 'bigint' || isRef(x);
  }
  /** Checks a number against an operand of `size` bits and returns it sign-normalised; labels pass through. */
  private immFor(v: Imm, size: Size, name: string): bigint | Ref {
    if (isRef(v)) return v;
    if (typeof v === 'number' && !Number.isSafeInteger(v)) throw invalidArgValue(name, v, 'is not an integer');
    const b = BigInt(v);
    const lo = -(2n ** BigInt(size - 1));
    const hi = 2n ** BigInt(size) - 1n;
    if (b < lo || b > hi) throw outOfRange(name, `>= ${lo} && <= ${hi} (${size} bits)`, v);
    return BigInt.asIntN(size, b);
  }
  /** The immediate field of an operand of `size`: 16 or 32 bits; 64-bit operands take a sign-extended imm32. */
  private immField(v: bigint | Ref, size: Size): { v: Imm; bytes: 1 | 2 | 4; signed: boolean } {
    if (size === 64 && !isRef(v) && !fitsS32(v))
      throw outOfRange('src', '>= -2147483648 && <= 2147483647 (a sign-extended imm32 with a 64-bit operand)', v);
    return { v, bytes: size === 8 ? 1 : size === 16 ? 2 : 4, signed: size === 64 };
  }
  private pushImm(bytes: number[], fixes: Fix[], v: Imm, n: 1 | 2 | 4 | 8, signed: boolean, name: string): void {
    if (isRef(v)) {
      fixes.push({ at: bytes.length, size: n, ref: v, pcRel: false, signed });
      bytes.push(...new Array<number>(n).fill(0));
      return;
    }
    const b = this.immFor(v, (n * 8) as Size, name) as bigint;
    bytes.push(...le(BigInt.asUintN(n * 8, b), n));
  }

  private moffs(m: Mem): boolean {
    // A0–A3 carry an absolute address of the mode's address size; gas uses them outside 64-bit code.
    return this.cur !== 64 && m.base === undefined && m.index === undefined;
  }
  private moffsInst(op: number, size: Size, m: Mem): this {
    const n = this.cur === 16 ? 2 : 4;
    const v: Imm = m.label !== undefined ? ref(m.label, m.disp) : m.disp;
    if (!isRef(v) && (v < 0 || v >= 2 ** (8 * n))) throw invalidArgValue('mem.disp', m.disp, `does not fit a ${8 * n}-bit address`);
    return this.inst({ op: [op], size, imm: { v: typeof v === 'number' ? BigInt(v) : v, bytes: n } });
  }

  private inst(o: Inst): this {
    const mode = this.cur;
    const bytes: number[] = [];
    const fixes: Fix[] = [];
    const enc = o.rm === undefined ? undefined : encodeRm(mode, o.reg ?? 0, o.rm);
    // gas orders the prefixes 67, 66, F3, REX.
    if (enc?.addrSize !== undefined && enc.addrSize !== (mode === 64 ? 64 : mode)) bytes.push(0x67);
    const size = o.size;
    if ((size === 16 && mode !== 16) || (size === 32 && mode === 16)) bytes.push(0x66);
    if (o.rep) bytes.push(0xf3);
    if (size === 64 && mode !== 64) throw invalidArgValue('operands', size, `are 64-bit, which ${mode}-bit code cannot encode`);
    const rexW = size === 64 && !o.default64 ? 1 : 0;
    const rexR = enc ? (o.reg ?? 0) >> 3 : 0;
    const rexX = enc?.rexX ?? 0;
    const rexB = (enc?.rexB ?? 0) | (o.plusReg ? o.plusReg.n >> 3 : 0);
    const regs = [...(o.gprs ?? []), o.plusReg].filter((g) => g !== undefined);
    const names = regs.map((g) => g.name);
    const needsRex = regs.some((g) => g.needsRex);
    if (rexW || rexR || rexX || rexB || needsRex) {
      if (mode !== 64) throw invalidArgValue('operands', names, `need a REX prefix, which ${mode}-bit code does not have`);
      if (regs.some((g) => g?.noRex))
        throw invalidArgValue('operands', regs.filter(Boolean), 'mix ah/ch/dh/bh with an operand that needs REX');
      bytes.push(0x40 | (rexW << 3) | (rexR << 2) | (rexX << 1) | rexB);
    }
    const op = [...o.op];
    if (o.plusReg) op[op.length - 1]! += o.plusReg.n & 7;
    bytes.push(...op);
    if (enc) {
      if (enc.fix)
        fixes.push({
          at: bytes.length + enc.fix.at,
          size: enc.fix.size,
          ref: ref(enc.fix.label, enc.fix.addend),
          pcRel: enc.fix.pcRel,
          signed: enc.fix.pcRel || mode === 64,
        });
      bytes.push(...enc.bytes);
    }
    if (o.imm) this.pushImm(bytes, fixes, o.imm.v, o.imm.bytes, o.imm.signed ?? false, 'src');
    if (o.tail) bytes.push(...o.tail);
    this.emitItem({ k: 'code', bytes, fixes });
    return this;
  }

  private sameSize(what: string, a: GprInfo, b: GprInfo, x: unknown, y: unknown): Size {
    if (a.size !== b.size) throw invalidArgValue('operands', [x, y], `of ${what} differ in size`);
    return a.size;
  }
  private memSize(what: string, m: Mem, size?: Size): Size {
    if (size !== undefined) {
      if (m.size !== undefined && m.size !== size)
        throw invalidArgValue('operands', m, `of ${what}: a ${m.size}-bit memory operand with a ${size}-bit register`);
      return size;
    }
    if (m.size === undefined) throw invalidArgValue('operands', m, `of ${what} need a size: use byte(), word(), dword() or qword()`);
    return m.size;
  }
  private badOperands(what: string, ...ops: unknown[]): TypeError {
    return invalidArgValue('operands', ops, `are not an encodable form of ${what.toUpperCase()} in ${this.cur}-bit code`);
  }

  // ---- layout ----

  /** Resolves labels and returns the machine code. */
  assemble(): Uint8Array {
    return this.program().code;
  }

  /** Resolves labels (relaxing branches until every one reaches) and returns code and label addresses. */
  program(): AssembledProgram {
    if (this.pendingRep) throw invalidArgValue('rep', true, 'must be followed by a string instruction (movs, stos, lods, ins, outs)');
    const long = this.items.map((it) => it.k === 'branch' && it.force === 'near');
    for (;;) {
      const { labels, at } = this.layout(long);
      let grew = false;
      this.items.forEach((it, i) => {
        if (it.k !== 'branch' || long[i]) return;
        const rel = this.target(labels, it.target) - (at[i]! + it.short.length + 1);
        if (fitsS8(BigInt(rel))) return;
        if (!it.near || it.force === 'short')
          throw asmError('OUT_OF_RANGE', `${it.what} to '${it.target}' is out of rel8 range (${rel} bytes)`);
        long[i] = true;
        grew = true;
      });
      if (!grew) return { origin: this.origin, code: this.emit(labels, at, long), labels };
    }
  }

  private layout(long: boolean[]): { labels: Map<string, number>; at: number[] } {
    const labels = new Map<string, number>();
    const at: number[] = [];
    let pc = this.origin;
    this.items.forEach((it, i) => {
      at.push(pc);
      if (it.k === 'label') labels.set(it.name, pc);
      else if (it.k === 'code') pc += it.bytes.length;
      else if (it.k === 'align') pc += (it.to - (pc % it.to)) % it.to;
      else pc += long[i] ? it.near!.length + it.nearSize : it.short.length + 1;
    });
    return { labels, at };
  }

  private target(labels: Map<string, number>, name: string): number {
    const v = labels.get(name);
    if (v === undefined) throw asmError('UNKNOWN_LABEL', `unknown label '${name}'`);
    return v;
  }

  private emit(labels: Map<string, number>, at: number[], long: boolean[]): Uint8Array {
    const out: number[] = [];
    this.items.forEach((it, i) => {
      const pc = at[i]!;
      if (it.k === 'label') return;
      if (it.k === 'align') {
        out.push(...new Array<number>((it.to - (pc % it.to)) % it.to).fill(it.fill));
        return;
      }
      if (it.k === 'branch') {
        const t = this.target(labels, it.target);
        const [op, n] = long[i] ? [it.near!, it.nearSize] : [it.short, 1];
        const rel = BigInt(t - (pc + op.length + n));
        const lim = 2n ** BigInt(8 * n - 1);
        if (rel < -lim || rel >= lim)
          throw asmError('OUT_OF_RANGE', `${it.what} to '${it.target}' is out of rel${8 * n} range (${rel} bytes)`);
        out.push(...op, ...le(BigInt.asUintN(8 * n, rel), n));
        return;
      }
      const bytes = [...it.bytes];
      for (const f of it.fixes) {
        let v = BigInt(
          this.target(labels, f.ref.label) + f.ref.addend - (f.ref.minus === undefined ? 0 : this.target(labels, f.ref.minus)),
        );
        if (f.pcRel) v -= BigInt(pc + bytes.length);
        const bits = BigInt(8 * f.size);
        const lo = -(2n ** (bits - 1n));
        const hi = f.signed ? 2n ** (bits - 1n) - 1n : 2n ** bits - 1n;
        if (v < lo || v > hi)
          throw asmError('OUT_OF_RANGE', `'${f.ref.label}' (${v}) does not fit the ${8 * f.size}-bit field it is used in`);
        bytes.splice(f.at, f.size, ...le(BigInt.asUintN(8 * f.size, v), f.size));
      }
      out.push(...bytes);
    });
    return Uint8Array.from(out);
  }
}
