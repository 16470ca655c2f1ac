/**
 * A tiny 16-bit x86 assembler for the real-mode test and demo guests: just the instructions those
 * programs use, with labels. Each method emits the documented encoding (Intel SDM vol. 2).
 *
 * ```ts
 * const a = new Asm16(0x1000);
 * a.movImm16('dx', 0x3f8).movImm8('al', 0x41).outDxAl().hlt();
 * a.assemble();   // Uint8Array [0xba,0xf8,0x03, 0xb0,0x41, 0xee, 0xf4]
 * ```
 */
const R16 = { ax: 0, cx: 1, dx: 2, bx: 3, sp: 4, bp: 5, si: 6, di: 7 } as const;
const R8 = { al: 0, cl: 1, dl: 2, bl: 3, ah: 4, ch: 5, dh: 6, bh: 7 } as const;
export type Reg16 = keyof typeof R16;
export type Reg8 = keyof typeof R8;

type Item =
  { bytes: number[] } | { rel8: string; op: number } | { rel16: string; op: number } | { abs16: string; op: number[] } | { label: string };

export class Asm16 {
  /** Where the code will be loaded (the `org`), for absolute addresses. */
  readonly origin: number;
  private items: Item[] = [];

  constructor(origin: number) {
    this.origin = origin;
  }

  private b(...bytes: number[]): this {
    this.items.push({ bytes });
    return this;
  }

  label(name: string): this {
    this.items.push({ label: name });
    return this;
  }
  /** MOV r16, imm16 (B8+r iw) */
  movImm16(r: Reg16, v: number): this {
    return this.b(0xb8 + R16[r], v & 0xff, (v >> 8) & 0xff);
  }
  /** MOV r16, offset of a label (B8+r iw) */
  movLabel(r: Reg16, label: string): this {
    this.items.push({ abs16: label, op: [0xb8 + R16[r]] });
    return this;
  }
  /** MOV r8, imm8 (B0+r ib) */
  movImm8(r: Reg8, v: number): this {
    return this.b(0xb0 + R8[r], v & 0xff);
  }
  /** MOV r8, r8 (88 /r) */
  movR8(dst: Reg8, src: Reg8): this {
    return this.b(0x88, 0xc0 | (R8[src] << 3) | R8[dst]);
  }
  /** OUT DX, AL (EE) */
  outDxAl(): this {
    return this.b(0xee);
  }
  /** OUT DX, EAX (66 EF) */
  outDxEax(): this {
    return this.b(0x66, 0xef);
  }
  /** IN AL, DX (EC) */
  inAlDx(): this {
    return this.b(0xec);
  }
  /** LODSB (AC): AL = [DS:SI], SI += 1 */
  lodsb(): this {
    return this.b(0xac);
  }
  /** TEST AL, AL (84 C0) */
  testAlAl(): this {
    return this.b(0x84, 0xc0);
  }
  /** TEST AL, imm8 (A8 ib) */
  testAlImm(v: number): this {
    return this.b(0xa8, v & 0xff);
  }
  /** INC DWORD [moffs16] (66 FF /0 with a disp16) */
  incDwordAt(addr: number): this {
    return this.b(0x66, 0xff, 0x06, addr & 0xff, (addr >> 8) & 0xff);
  }
  /** MOV EAX, [moffs16] (66 A1) */
  movEaxFrom(addr: number): this {
    return this.b(0x66, 0xa1, addr & 0xff, (addr >> 8) & 0xff);
  }
  /** MOV AL, [moffs16] (A0) */
  movAlFrom(addr: number): this {
    return this.b(0xa0, addr & 0xff, (addr >> 8) & 0xff);
  }
  /** INC AL (FE C0) */
  incAl(): this {
    return this.b(0xfe, 0xc0);
  }
  /** XOR AL, imm8 (34 ib) */
  xorAlImm(v: number): this {
    return this.b(0x34, v & 0xff);
  }
  /** ADD AL, [SI] ... kept out: not needed. JZ rel8 (74 cb) */
  jz(label: string): this {
    this.items.push({ rel8: label, op: 0x74 });
    return this;
  }
  /** JNZ rel8 (75 cb) */
  jnz(label: string): this {
    this.items.push({ rel8: label, op: 0x75 });
    return this;
  }
  /** JMP rel8 (EB cb) */
  jmp(label: string): this {
    this.items.push({ rel8: label, op: 0xeb });
    return this;
  }
  /** LOOP rel8 (E2 cb): CX -= 1, jump if CX != 0 */
  loop(label: string): this {
    this.items.push({ rel8: label, op: 0xe2 });
    return this;
  }
  /** CALL rel16 (E8 cw) */
  call(label: string): this {
    this.items.push({ rel16: label, op: 0xe8 });
    return this;
  }
  /** RET (C3) */
  ret(): this {
    return this.b(0xc3);
  }
  /** PUSH AX (50) */
  pushAx(): this {
    return this.b(0x50);
  }
  /** POP AX (58) */
  popAx(): this {
    return this.b(0x58);
  }
  /** XOR r16, r16 (31 /r) */
  xorR16(dst: Reg16, src: Reg16): this {
    return this.b(0x31, 0xc0 | (R16[src] << 3) | R16[dst]);
  }
  /** MOV r16, r16 (89 /r) */
  movR16(dst: Reg16, src: Reg16): this {
    return this.b(0x89, 0xc0 | (R16[src] << 3) | R16[dst]);
  }
  /** ROL r16, imm8 (C1 /0 ib) */
  rolImm(r: Reg16, n: number): this {
    return this.b(0xc1, 0xc0 | R16[r], n & 0xff);
  }
  /** XOR AH, AH (30 E4) */
  zeroAh(): this {
    return this.b(0x30, 0xe4);
  }
  /** AND AL, imm8 (24 ib) */
  andAlImm(v: number): this {
    return this.b(0x24, v & 0xff);
  }
  /** ADD AL, imm8 (04 ib) */
  addAlImm(v: number): this {
    return this.b(0x04, v & 0xff);
  }
  /** CMP AL, imm8 (3C ib) */
  cmpAlImm(v: number): this {
    return this.b(0x3c, v & 0xff);
  }
  /** JBE rel8 (76 cb) */
  jbe(label: string): this {
    this.items.push({ rel8: label, op: 0x76 });
    return this;
  }
  /** CLI (FA) */
  cli(): this {
    return this.b(0xfa);
  }
  /** STI (FB) */
  sti(): this {
    return this.b(0xfb);
  }
  /** IRET (CF): return from an interrupt handler (real mode: pops IP, CS, FLAGS). */
  iret(): this {
    return this.b(0xcf);
  }
  /** MOV r32, imm32 (66 B8+r id): `movImm32('cx', 0x4b564d08)` loads ECX. */
  movImm32(r: Reg16, v: number): this {
    const u = v >>> 0;
    return this.b(0x66, 0xb8 + R16[r], u & 0xff, (u >>> 8) & 0xff, (u >>> 16) & 0xff, u >>> 24);
  }
  /** MOV r32, r32 (66 89 /r): `movR32('ax', 'dx')` is MOV EAX, EDX. */
  movR32(dst: Reg16, src: Reg16): this {
    return this.b(0x66, 0x89, 0xc0 | (R16[src] << 3) | R16[dst]);
  }
  /** RDMSR (0F 32): EDX:EAX = MSR[ECX]. */
  rdmsr(): this {
    return this.b(0x0f, 0x32);
  }
  /** WRMSR (0F 30): MSR[ECX] = EDX:EAX. */
  wrmsr(): this {
    return this.b(0x0f, 0x30);
  }
  /** VMMCALL (0F 01 D9): AMD's hypercall (KVM: nr in RAX, arguments in RBX, RCX, RDX, RSI; result in RAX). */
  vmmcall(): this {
    return this.b(0x0f, 0x01, 0xd9);
  }
  /** VMCALL (0F 01 C1): Intel's hypercall (KVM patches one into the other where needed). */
  vmcall(): this {
    return this.b(0x0f, 0x01, 0xc1);
  }
  /** OUT imm8, AL (E6 ib): a port below 0x100 without touching DX. */
  outImmAl(port: number): this {
    return this.b(0xe6, port & 0xff);
  }
  /** MOV [moffs16], AX (A3) */
  movToAx(addr: number): this {
    return this.b(0xa3, addr & 0xff, (addr >> 8) & 0xff);
  }
  /** MOV [moffs16], AL (A2) */
  movToAl(addr: number): this {
    return this.b(0xa2, addr & 0xff, (addr >> 8) & 0xff);
  }
  /** MOV [moffs16], EAX (66 A3) */
  movToEax(addr: number): this {
    return this.b(0x66, 0xa3, addr & 0xff, (addr >> 8) & 0xff);
  }
  /** MOV WORD [disp16], imm16 (C7 06) */
  movWordImm(addr: number, v: number): this {
    return this.b(0xc7, 0x06, addr & 0xff, (addr >> 8) & 0xff, v & 0xff, (v >> 8) & 0xff);
  }
  /** INC WORD [disp16] (FF 06) */
  incWordAt(addr: number): this {
    return this.b(0xff, 0x06, addr & 0xff, (addr >> 8) & 0xff);
  }
  /** MOV AX, [moffs16] (A1) */
  movAxFrom(addr: number): this {
    return this.b(0xa1, addr & 0xff, (addr >> 8) & 0xff);
  }
  /** MOV ES, AX (8E C0) */
  movEsAx(): this {
    return this.b(0x8e, 0xc0);
  }
  /** MOV BYTE [ES:BX], AL (26 88 07) */
  movEsBxAl(): this {
    return this.b(0x26, 0x88, 0x07);
  }
  /** MOV AL, BYTE [ES:BX] (26 8A 07) */
  movAlEsBx(): this {
    return this.b(0x26, 0x8a, 0x07);
  }
  /** POPCNT AX, AX (F3 0F B8 C0) */
  popcntAx(): this {
    return this.b(0xf3, 0x0f, 0xb8, 0xc0);
  }
  /** SHL r8, imm8 (C0 /4 ib) */
  shlR8(r: Reg8, n: number): this {
    return this.b(0xc0, 0xe0 | R8[r], n & 0xff);
  }
  /** JB rel8 (72 cb) */
  jb(label: string): this {
    this.items.push({ rel8: label, op: 0x72 });
    return this;
  }
  /** CMP AX, imm16 (3D iw) */
  cmpAxImm(v: number): this {
    return this.b(0x3d, v & 0xff, (v >> 8) & 0xff);
  }
  /** HLT (F4) */
  hlt(): this {
    return this.b(0xf4);
  }
  /** Raw data bytes. */
  data(bytes: ArrayLike<number>): this {
    return this.b(...Array.from(bytes));
  }
  /** A NUL-terminated ASCII string. */
  asciz(s: string): this {
    return this.data([...Buffer.from(s, 'latin1'), 0]);
  }

  /** Resolves labels and returns the machine code. */
  assemble(): Uint8Array {
    const labels = new Map<string, number>();
    let pc = this.origin;
    for (const it of this.items) {
      if ('label' in it) labels.set(it.label, pc);
      else if ('bytes' in it) pc += it.bytes.length;
      else if ('rel8' in it) pc += 2;
      else if ('rel16' in it) pc += 3;
      else pc += it.op.length + 2;
    }
    const out: number[] = [];
    pc = this.origin;
    const find = (l: string): number => {
      const v = labels.get(l);
      if (v === undefined) throw new Error(`asm16: unknown label '${l}'`);
      return v;
    };
    for (const it of this.items) {
      if ('label' in it) continue;
      if ('bytes' in it) {
        out.push(...it.bytes);
        pc += it.bytes.length;
      } else if ('rel8' in it) {
        const rel = find(it.rel8) - (pc + 2);
        if (rel < -128 || rel > 127) throw new Error(`asm16: jump to '${it.rel8}' is out of rel8 range (${rel})`);
        out.push(it.op, rel & 0xff);
        pc += 2;
      } else if ('rel16' in it) {
        const rel = find(it.rel16) - (pc + 3);
        out.push(it.op, rel & 0xff, (rel >> 8) & 0xff);
        pc += 3;
      } else {
        const a = find(it.abs16);
        out.push(...it.op, a & 0xff, (a >> 8) & 0xff);
        pc += it.op.length + 2;
      }
    }
    return Uint8Array.from(out);
  }
}
