/**
 * The 16-bit assembler of the real-mode test and demo guests: {@link Asm} in 16-bit code, plus the
 * instruction-named helpers those programs were first written with (each is the generic method
 * with fixed operands, and encodes as its comment says).
 *
 * ```ts
 * import { Asm16 } from 'kvm-sev';
 * const a = new Asm16(0x1000);
 * a.movImm16('dx', 0x3f8).movImm8('al', 0x41).outDxAl().hlt();
 * console.log(Buffer.from(a.assemble()).toString('hex')); // baf803 b041 ee f4
 * ```
 */
import { Asm, mem, dword, ref, word, type Reg32 } from './asm.js';

export type Reg16 = 'ax' | 'cx' | 'dx' | 'bx' | 'sp' | 'bp' | 'si' | 'di';
export type Reg8 = 'al' | 'cl' | 'dl' | 'bl' | 'ah' | 'ch' | 'dh' | 'bh';

export class Asm16 extends Asm {
  constructor(origin: number) {
    super({ bits: 16, origin });
  }

  /** MOV r16, imm16 (B8+r iw) */
  movImm16(r: Reg16, v: number): this {
    return this.mov(r, v);
  }
  /** MOV r16, offset of a label (B8+r iw) */
  movLabel(r: Reg16, label: string): this {
    return this.mov(r, ref(label));
  }
  /** MOV r8, imm8 (B0+r ib) */
  movImm8(r: Reg8, v: number): this {
    return this.mov(r, v);
  }
  /** MOV r8, r8 (88 /r) */
  movR8(dst: Reg8, src: Reg8): this {
    return this.mov(dst, src);
  }
  /** OUT DX, AL (EE) */
  outDxAl(): this {
    return this.out('dx', 'al');
  }
  /** OUT DX, EAX (66 EF) */
  outDxEax(): this {
    return this.out('dx', 'eax');
  }
  /** IN AL, DX (EC) */
  inAlDx(): this {
    return this.in('al', 'dx');
  }
  /** LODSB (AC): AL = [DS:SI], SI += 1 */
  lodsb(): this {
    return this.lods(8);
  }
  /** TEST AL, AL (84 C0) */
  testAlAl(): this {
    return this.test('al', 'al');
  }
  /** TEST AL, imm8 (A8 ib) */
  testAlImm(v: number): this {
    return this.test('al', v);
  }
  /** INC DWORD [moffs16] (66 FF /0 with a disp16) */
  incDwordAt(addr: number): this {
    return this.inc(dword(addr));
  }
  /** MOV EAX, [moffs16] (66 A1) */
  movEaxFrom(addr: number): this {
    return this.mov('eax', mem(addr));
  }
  /** MOV AL, [moffs16] (A0) */
  movAlFrom(addr: number): this {
    return this.mov('al', mem(addr));
  }
  /** INC AL (FE C0) */
  incAl(): this {
    return this.inc('al');
  }
  /** XOR AL, imm8 (34 ib) */
  xorAlImm(v: number): this {
    return this.xor('al', v);
  }
  /** PUSH AX (50) */
  pushAx(): this {
    return this.push('ax');
  }
  /** POP AX (58) */
  popAx(): this {
    return this.pop('ax');
  }
  /** XOR r16, r16 (31 /r) */
  xorR16(dst: Reg16, src: Reg16): this {
    return this.xor(dst, src);
  }
  /** MOV r16, r16 (89 /r) */
  movR16(dst: Reg16, src: Reg16): this {
    return this.mov(dst, src);
  }
  /** ROL r16, imm8 (C1 /0 ib; D1 /0 for a count of one) */
  rolImm(r: Reg16, n: number): this {
    return this.rol(r, n);
  }
  /** XOR AH, AH (30 E4) */
  zeroAh(): this {
    return this.xor('ah', 'ah');
  }
  /** AND AL, imm8 (24 ib) */
  andAlImm(v: number): this {
    return this.and('al', v);
  }
  /** ADD AL, imm8 (04 ib) */
  addAlImm(v: number): this {
    return this.add('al', v);
  }
  /** CMP AL, imm8 (3C ib) */
  cmpAlImm(v: number): this {
    return this.cmp('al', v);
  }
  /** MOV r32, imm32 (66 B8+r id): `movImm32('cx', 0x4b564d08)` loads ECX. */
  movImm32(r: Reg16, v: number): this {
    return this.mov(`e${r}` as Reg32, v >>> 0);
  }
  /** MOV r32, r32 (66 89 /r): `movR32('ax', 'dx')` is MOV EAX, EDX. */
  movR32(dst: Reg16, src: Reg16): this {
    return this.mov(`e${dst}` as Reg32, `e${src}` as Reg32);
  }
  /** OUT imm8, AL (E6 ib): a port below 0x100 without touching DX. */
  outImmAl(port: number): this {
    return this.out(port & 0xff, 'al');
  }
  /** MOV [moffs16], AX */
  movToAx(addr: number): this {
    return this.mov(mem(addr), 'ax');
  }
  /** MOV [moffs16], AL */
  movToAl(addr: number): this {
    return this.mov(mem(addr), 'al');
  }
  /** MOV [moffs16], EAX (66 prefix) */
  movToEax(addr: number): this {
    return this.mov(mem(addr), 'eax');
  }
  /** MOV WORD [disp16], imm16 (C7 /0) */
  movWordImm(addr: number, v: number): this {
    return this.mov(word(addr), v & 0xffff);
  }
  /** INC WORD [disp16] (FF /0) */
  incWordAt(addr: number): this {
    return this.inc(word(addr));
  }
  /** MOV AX, [moffs16] */
  movAxFrom(addr: number): this {
    return this.mov('ax', mem(addr));
  }
  /** MOV ES, AX (8E C0) */
  movEsAx(): this {
    return this.mov('es', 'ax');
  }
  /** MOV BYTE [ES:BX], AL (26 88 07): Asm has no segment overrides, so the bytes are given. */
  movEsBxAl(): this {
    return this.db(0x26, 0x88, 0x07);
  }
  /** MOV AL, BYTE [ES:BX] (26 8A 07) */
  movAlEsBx(): this {
    return this.db(0x26, 0x8a, 0x07);
  }
  /** POPCNT AX, AX (F3 0F B8 C0): not in Asm, so the bytes are given. */
  popcntAx(): this {
    return this.db(0xf3, 0x0f, 0xb8, 0xc0);
  }
  /** SHL r8, imm8 (C0 /4 ib; D0 /4 for a count of one) */
  shlR8(r: Reg8, n: number): this {
    return this.shl(r, n);
  }
  /** CMP AX, imm (83 /7 ib for a signed byte, else 3D iw) */
  cmpAxImm(v: number): this {
    return this.cmp('ax', v & 0xffff);
  }
}
