/**
 * The 16-bit assembler's encodings (Intel SDM vol. 2; VMMCALL: AMD APM vol. 3) for the instructions
 * the interrupt, MSR and hypercall guests use.
 */
import test from 'ava';
import { Asm16 } from '../../../lib/app/guest/asm16.js';

const enc = (f: (a: Asm16) => Asm16, origin = 0x1000) => [...f(new Asm16(origin)).assemble()];

test('interrupt-handler instructions: STI, IRET, INC WORD [m], MOV WORD [m], imm', (t) => {
  t.deepEqual(
    enc((a) => a.sti()),
    [0xfb],
  );
  t.deepEqual(
    enc((a) => a.iret()),
    [0xcf],
  );
  t.deepEqual(
    enc((a) => a.incWordAt(0x7000)),
    [0xff, 0x06, 0x00, 0x70],
  );
  t.deepEqual(
    enc((a) => a.movWordImm(0x80, 0x1234)),
    [0xc7, 0x06, 0x80, 0x00, 0x34, 0x12],
  );
  t.deepEqual(
    enc((a) => a.movAxFrom(0x7000).cmpAxImm(5)),
    [0xa1, 0x00, 0x70, 0x83, 0xf8, 0x05],
  );
});

test('MSR and hypercall instructions: RDMSR, WRMSR, VMMCALL, VMCALL, MOV r32, imm32 (negative numbers too)', (t) => {
  t.deepEqual(
    enc((a) => a.rdmsr().wrmsr()),
    [0x0f, 0x32, 0x0f, 0x30],
  );
  t.deepEqual(
    enc((a) => a.vmmcall().vmcall()),
    [0x0f, 0x01, 0xd9, 0x0f, 0x01, 0xc1],
  );
  t.deepEqual(
    enc((a) => a.movImm32('cx', 0x4b564d08)),
    [0x66, 0xb9, 0x08, 0x4d, 0x56, 0x4b],
  );
  t.deepEqual(
    enc((a) => a.movImm32('ax', -1)),
    [0x66, 0xb8, 0xff, 0xff, 0xff, 0xff],
  );
  t.deepEqual(
    enc((a) => a.movR32('ax', 'dx')),
    [0x66, 0x89, 0xd0],
  );
  t.deepEqual(
    enc((a) => a.movToEax(0x7010).movToAl(0x7020)),
    [0x66, 0xa3, 0x10, 0x70, 0xa2, 0x20, 0x70],
  );
});

test('segment stores and shifts: MOV ES, AX; MOV [ES:BX], AL; SHL BH, 4; JB', (t) => {
  t.deepEqual(
    enc((a) => a.movEsAx().movEsBxAl().shlR8('bh', 4)),
    [0x8e, 0xc0, 0x26, 0x88, 0x07, 0xc0, 0xe7, 0x04],
  );
  t.deepEqual(
    enc((a) => a.label('top').jb('top')),
    [0x72, 0xfe],
  );
});
