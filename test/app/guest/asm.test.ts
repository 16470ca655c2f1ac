/**
 * The guest assembler against GNU as: every instruction form in 16-, 32- and 64-bit code, whole
 * programs with labels, relaxed branches, RIP-relative and absolute fix-ups and mode switches
 * (bytes from `as --64` and `ld -Ttext=0x1000 --oformat=binary`, recorded here), the legacy Asm16
 * helpers byte for byte, and the errors bad input gets.
 */
import test from 'ava';
import { Asm, dword, mem, qword, ref, span, type Mode } from '../../../lib/app/guest/asm.js';
import { Asm16 } from '../../../lib/app/guest/asm16.js';
import { counterProgram, helloProgram, longModeEntryProgram, outLoopProgram, secretDemoProgram } from '../../../lib/app/guest/programs.js';
import { ENCODINGS } from './asm-encodings.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const spaced = (b: Uint8Array): string => [...b].map((x) => x.toString(16).padStart(2, '0')).join(' ');

for (const bits of [16, 32, 64] as Mode[]) {
  test(`${bits}-bit code: each instruction encodes as GNU as encodes it`, (t) => {
    const cases = ENCODINGS.filter(([m]) => m === bits);
    t.true(cases.length > 80);
    for (const [, gas, build, want] of cases) {
      const a = new Asm({ bits, origin: 0 });
      t.is(spaced(build(a).assemble()), want, gas);
    }
  });
}

test('a 64-bit program: RIP-relative loads and stores, absolute label immediates, relaxed Jcc/JMP, CALL, LOOP, data with labels and spans', (t) => {
  // .code64; assembled by GNU as and linked at 0x1000 (the source is the chain below, in AT&T syntax).
  const gas =
    '488d3539010000b84011000048c7c340110000488b0d0601000048890d07010000c705f500000007000000e81800000048ffc975fb0f84d6000000e9d1000000e2eeff25e8000000c3' +
    '90'.repeat(200) +
    'e9eafeffff0f84e4fefffff40000008877665544332211111100000000000048100000000000002011000000000000686900400100004801';
  const a = new Asm({ bits: 64, origin: 0x1000 });
  a.label('start')
    .lea('rsi', mem('msg')) // lea msg(%rip), %rsi
    .mov('eax', ref('msg')) // mov $msg, %eax
    .mov('rbx', ref('msg')) // mov $msg, %rbx (sign-extended imm32)
    .mov('rcx', mem('value')) // mov value(%rip), %rcx
    .mov(mem({ label: 'value', disp: 8 }), 'rcx') // mov %rcx, value+8(%rip)
    .mov(dword('value'), 7) // movl $7, value(%rip): the displacement counts the immediate after it
    .call('func')
    .label('back')
    .dec('rcx')
    .jnz('back') // stays short
    .jz('far_away') // relaxed to 0F 84 rel32
    .jmp('far_away') // relaxed to E9 rel32
    .loop('back')
    .jmp(mem('table')) // jmp *table(%rip)
    .label('func')
    .ret()
    .space(200, 0x90)
    .label('far_away')
    .jmp('start')
    .je('start')
    .hlt()
    .align(8) // .balign 8, 0
    .label('value')
    .dq(0x1122334455667788n, ref('far_away'))
    .label('table')
    .dq(ref('func'), ref('value'))
    .label('msg')
    .asciz('hi')
    .dd(span('start', 'msg'))
    .dw(span('start', 'end', -1))
    .label('end');
  const p = a.program();
  t.is(hex(p.code), gas);
  t.is(p.origin, 0x1000);
  t.is(p.labels.get('far_away'), 0x1111); // the second quad at 'value'
  t.is(p.labels.get('msg'), 0x1140);
});

test('16- and 32-bit code in one program: a far jump between them, moffs loads of labels, a GDT and its pseudo-descriptor', (t) => {
  const gas =
    'eb0190bed6100f0116d010e80300e98300c3' +
    '90'.repeat(130) +
    '0f8568ff66b8c010000066a1d210eaa7101800bed610000066a1d0100000e802000000ebeec3' +
    '0000000000000000000000000000ffff0000009baf000f00c01000006f6b';
  const a = new Asm({ bits: 16, origin: 0x1000 });
  a.label('start')
    .jmp('l1')
    .nop()
    .label('l1')
    .mov('si', ref('msg'))
    .lgdt(mem('gdtr'))
    .call('sub16') // E8 rel16
    .jmp('far16') // relaxed to E9 rel16
    .label('sub16')
    .ret()
    .space(130, 0x90)
    .label('far16')
    .jne('start') // relaxed to 0F 85 rel16
    .mov('eax', ref('gdt'))
    .mov('eax', mem({ label: 'gdtr', disp: 2 })) // 66 A1 moffs16
    .jmpFar(0x18, 'pm32')
    .code(32)
    .label('pm32')
    .mov('esi', ref('msg'))
    .mov('ax', mem('gdtr')) // 66 A1 moffs32
    .call('sub32') // E8 rel32
    .jmp('pm32')
    .label('sub32')
    .ret()
    .align(16)
    .label('gdt')
    .dq(0, 0x00af9b000000ffffn)
    .label('gdt_end')
    .label('gdtr')
    .dw(span('gdt', 'gdt_end', -1))
    .dd(ref('gdt'))
    .label('msg')
    .ascii('ok');
  t.is(hex(a.assemble()), gas);
  t.is(a.bits, 32);
});

test('longModeEntryProgram(): the real → protected → long mode guest is what GNU as makes of its listing', (t) => {
  const gas =
    'fab010e6800f0116d0100f20c06683c8010f22c0ea19101800b8100000008ed88ec08ed0b020e680bf0030000031c0b9000c' +
    '0000f3abc7050030000003400000c7050040000003500000bb00500000b883000000b9000200008903050000200083c308e2' +
    'f4b8003000000f22d80f20e083c8200f22e0b9800000c00f320d000100000f300f20c00d000000800f22c0ea961000000800' +
    'b040e68048b888776655443322114889052b000000f4000000000000000000000000ffff0000009baf00ffff00000093cf00' +
    'ffff0000009bcf001f00b01000000000000000000000';
  const p = longModeEntryProgram();
  t.is(hex(p.code), gas);
  t.is(p.resultAddr, 0x10d6);
  t.throws(() => longModeEntryProgram(0x3001), { instanceOf: RangeError });
});

test('Asm16 keeps its helpers: the real-mode programs assemble to the same bytes as before', (t) => {
  // Recorded from the 16-bit assembler these programs were written with.
  t.is(hex(helloProgram('hi\n').code), 'be2110ac84c0741288c3bafd03eca82074f888d8baf803eeebe9b80d60bbefbef468690a00');
  t.is(hex(outLoopProgram(300, 0x80).code), 'b92c01ba8000b000eefec0e2fbf4');
  t.is(hex(counterProgram().code), '66ff06002066a10020ba000566efebf0');
  t.is(
    hex(secretDemoProgram(0x9000, 32).code),
    'be0090b9200031ffacc1c70530e431c7e2f6be5710e80b0089f8e82000b00ae80c00f4ac84c07405e80300ebf6c350bafd03eca82074fb58baf803eec389c3b90400c1c30488d8240f04303c3976020407e8daffe2ecc3736563726574206469676573743a2000',
  );
  const a = new Asm16(0x1000);
  a.movImm16('dx', 0x3f8).movImm8('al', 0x41).outDxAl().hlt();
  t.deepEqual([...a.assemble()], [0xba, 0xf8, 0x03, 0xb0, 0x41, 0xee, 0xf4]);
  t.is(a.bits, 16);
});

test('branches: forced near, short while in reach and near one byte past it, LOOP only short', (t) => {
  const near = new Asm({ bits: 64, origin: 0 }).jmp('next', 'near').label('next').jz('next', 'near');
  t.is(hex(near.assemble()), 'e900000000' + '0f84faffffff');
  const n16 = new Asm({ bits: 16, origin: 0 }).jmp('next', 'near').label('next');
  t.is(hex(n16.assemble()), 'e90000');
  // rel8 reaches 127 bytes forward: a jump over 127 bytes is short, over 128 it is near.
  for (const [gap, want] of [
    [127, 'eb7f'],
    [128, 'e980000000'],
  ] as const) {
    const a = new Asm({ bits: 32, origin: 0 }).jmp('x').space(gap).label('x');
    t.is(hex(a.assemble()).slice(0, want.length), want);
  }
  // A growing branch can push another one out of reach: relaxation repeats until all fit.
  const chain = new Asm({ bits: 32, origin: 0 }).jz('end').space(124).jnz('end').label('end');
  t.is(hex(chain.assemble().subarray(0, 2)), '747e');
  // The JZ grows first; that takes the JMP, which reached 'mid' at +126, out of reach too (as GNU as does).
  const chain2 = new Asm({ bits: 32, origin: 0 }).jmp('mid').jz('end').space(124).label('mid').space(10).label('end');
  t.is(hex(chain2.assemble().subarray(0, 11)), 'e982000000' + '0f8486000000');
  const loop = new Asm({ bits: 64, origin: 0 }).label('top').space(130).loop('top');
  t.throws(() => loop.assemble(), { code: 'ERR_KVM_SEV_ASM_OUT_OF_RANGE' });
  t.throws(() => new Asm({ bits: 64, origin: 0 }).jmp('x', 'short').space(200).label('x').assemble(), {
    code: 'ERR_KVM_SEV_ASM_OUT_OF_RANGE',
  });
});

test('labels: unknown and duplicate names, fix-ups that do not fit their field, program() twice', (t) => {
  t.throws(() => new Asm({ bits: 16, origin: 0 }).jmp('nowhere').assemble(), { code: 'ERR_KVM_SEV_ASM_UNKNOWN_LABEL', message: /nowhere/ });
  t.throws(() => new Asm({ bits: 16, origin: 0 }).dw(span('a', 'b'))?.assemble(), { code: 'ERR_KVM_SEV_ASM_UNKNOWN_LABEL' });
  t.throws(() => new Asm({ bits: 16, origin: 0 }).label('a').label('a'), { code: 'ERR_KVM_SEV_ASM_DUPLICATE_LABEL' });
  t.throws(() => new Asm({ bits: 16, origin: 0 }).label('eax'), { code: 'ERR_INVALID_ARG_VALUE' });
  // A label above 64 KiB in a 16-bit immediate, and beyond the sign-extended imm32 of a 64-bit MOV.
  t.throws(() => new Asm({ bits: 16, origin: 0x10000 }).label('x').mov('si', ref('x')).assemble(), {
    code: 'ERR_KVM_SEV_ASM_OUT_OF_RANGE',
  });
  t.throws(() => new Asm({ bits: 64, origin: 0x80000000 }).label('x').mov('rax', ref('x')).assemble(), {
    code: 'ERR_KVM_SEV_ASM_OUT_OF_RANGE',
  });
  // A 32-bit absolute address is fine in 32-bit code; RIP-relative reaches it from nearby in 64-bit code.
  t.is(hex(new Asm({ bits: 32, origin: 0x80000000 }).label('x').mov('eax', mem('x')).assemble()), 'a100000080');
  t.is(hex(new Asm({ bits: 64, origin: 0x80000000 }).label('x').mov('eax', mem('x')).assemble()), '8b05faffffff');
  const a = new Asm({ bits: 64, origin: 0x1000 }).jmp('x').label('x');
  t.deepEqual(a.program().code, a.program().code);
  t.is(a.program().labels.get('x'), 0x1002);
});

test('operands that no encoding takes get ERR_INVALID_ARG_VALUE or ERR_OUT_OF_RANGE, with the reason', (t) => {
  const a16 = () => new Asm({ bits: 16, origin: 0 });
  const a32 = () => new Asm({ bits: 32, origin: 0 });
  const a64 = () => new Asm({ bits: 64, origin: 0 });
  const invalid = { code: 'ERR_INVALID_ARG_VALUE', instanceOf: TypeError };
  const range = { code: 'ERR_OUT_OF_RANGE', instanceOf: RangeError };
  t.throws(() => a32().mov('eax', 'r8d'), { ...invalid, message: /REX prefix/ });
  t.throws(() => a32().mov('rax', 1), { ...invalid, message: /64-bit/ });
  t.throws(() => a64().mov('ah', 'sil'), { ...invalid, message: /ah\/ch\/dh\/bh/ });
  t.throws(() => a64().mov('eax', 'bx'), { ...invalid, message: /differ in size/ });
  t.throws(() => a64().mov(mem('rax'), 1), { ...invalid, message: /need a size/ });
  t.throws(() => a64().mov(qword('rax'), 'eax'), invalid);
  t.throws(() => a64().mov(mem(0x2000), mem(0x3000)), { ...invalid, message: /not an encodable form of MOV in 64-bit code/ });
  t.throws(() => a64().push('eax'), invalid);
  t.throws(() => a32().push('rax'), invalid);
  t.throws(() => a64().iret(), { ...invalid, message: /iretq/ });
  t.throws(() => a64().retf(), { ...invalid, message: /retfq/ });
  t.throws(() => a32().iretq(), invalid);
  t.throws(() => a64().jmpFar(8, 'x'), { ...invalid, message: /retfq/ });
  t.throws(() => a32().mov('cr3', 'rax'), invalid);
  t.throws(() => a64().mov('cr3', 'eax'), { ...invalid, message: /64-bit general register/ });
  t.throws(() => a32().mov('cr8', 'eax'), { ...invalid, message: /CR8/ });
  t.throws(() => a64().mov('cs', 'ax'), { ...invalid, message: /far jump/ });
  t.throws(() => a64().in('rax' as 'eax', 'dx'), invalid);
  t.throws(() => a64().out('dx', 'bl' as 'al'), invalid);
  t.throws(() => a64().mov('eax', mem({ base: 'ax' })), { ...invalid, message: /16-bit addressing/ });
  t.throws(() => a16().mov('ax', mem({ base: 'bx', index: 'bp' })), invalid);
  t.throws(() => a16().mov('ax', mem({ base: 'si', scale: 2 })), invalid);
  t.throws(() => a32().mov('eax', mem({ base: 'eax', index: 'esp' })), { ...invalid, message: /stack pointer/ });
  t.throws(() => a64().mov('eax', mem(0x80000000)), { ...invalid, message: /sign-extended/ });
  t.throws(() => mem('al'), invalid);
  t.throws(() => a64().rep().hlt(), { ...invalid, message: /string instruction/ });
  t.throws(() => a64().rep().assemble(), invalid);
  t.throws(
    () =>
      a64()
        .movs(64)
        .ins(64 as 8),
    invalid,
  );
  t.throws(() => a16().mov('al', 256), range);
  t.throws(() => a16().mov('ax', -0x8001), range);
  t.throws(() => a64().add('rax', 0x80000000), { ...range, message: /sign-extended imm32/ });
  t.throws(() => a64().mov('rax', 2n ** 64n), range);
  t.throws(() => a64().in('al', 256), range);
  t.throws(() => a64().shl('eax', 256), range);
  t.throws(() => a64().int(-1), range);
  t.throws(() => a64().data([256]), range);
  t.throws(() => a16().jmpFar(0x10000, 0), range);
  t.throws(() => new Asm({ bits: 8 as Mode, origin: 0 }), invalid);
  t.throws(() => new Asm({ origin: -1 }), range);
  t.throws(() => a64().align(3), invalid);
  t.throws(() => a64().j('xx' as 'z', 'l'), invalid);
});
