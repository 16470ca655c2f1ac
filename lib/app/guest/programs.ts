/**
 * Small real-mode guest programs (flat, CS = DS = 0, loaded at `origin`), used by the hardware
 * tests, the benchmarks and the demo. Each is documented by the assembly that builds it.
 */
import { Asm, dword, mem, ref, span } from './asm.js';
import { Asm16 } from './asm16.js';

/** COM1: the data port, and the line status register whose bit 5 says "ready to send". */
export const COM1 = 0x3f8;
export const COM1_LSR = COM1 + 5;
export const LSR_THR_EMPTY = 0x20;

export interface GuestProgram {
  /** Guest-physical load address and entry point. */
  origin: number;
  code: Uint8Array;
}

/**
 * Prints `message` on COM1 the way a driver does (wait for LSR.THRE, then write the byte), then
 * sets AX = 0x600D, BX = 0xBEEF and halts.
 *
 * ```
 *         mov si, msg
 * next:   lodsb                 ; al = [si++]
 *         test al, al
 *         jz done
 *         mov bl, al
 * wait:   mov dx, 0x3fd         ; LSR
 *         in al, dx
 *         test al, 0x20         ; THR empty?
 *         jz wait
 *         mov al, bl
 *         mov dx, 0x3f8
 *         out dx, al
 *         jmp next
 * done:   mov ax, 0x600d
 *         mov bx, 0xbeef
 *         hlt
 * msg:    db message, 0
 * ```
 */
export function helloProgram(message: string | Uint8Array = 'Hello from a kvm-sev guest!\n', origin = 0x1000): GuestProgram {
  const a = new Asm16(origin);
  a.movLabel('si', 'msg')
    .label('next')
    .lodsb()
    .testAlAl()
    .jz('done')
    .movR8('bl', 'al')
    .label('wait')
    .movImm16('dx', COM1_LSR)
    .inAlDx()
    .testAlImm(LSR_THR_EMPTY)
    .jz('wait')
    .movR8('al', 'bl')
    .movImm16('dx', COM1)
    .outDxAl()
    .jmp('next')
    .label('done')
    .movImm16('ax', 0x600d)
    .movImm16('bx', 0xbeef)
    .hlt()
    .label('msg')
    .asciz(message);
  return { origin, code: a.assemble() };
}

/**
 * Writes AL to `port` `count` times (count <= 65535), incrementing AL each time, then halts:
 * `count` port-I/O exits, for exit-handling tests and the exit round-trip benchmark.
 *
 * ```
 *         mov cx, count
 *         mov dx, port
 *         mov al, 0
 * again:  out dx, al
 *         inc al
 *         loop again
 *         hlt
 * ```
 */
export function outLoopProgram(count: number, port = 0x80, origin = 0x1000): GuestProgram {
  if (!Number.isInteger(count) || count < 1 || count > 0xffff) throw new RangeError('count must be 1..65535');
  const a = new Asm16(origin);
  a.movImm16('cx', count).movImm16('dx', port).movImm8('al', 0).label('again').outDxAl().incAl().loop('again').hlt();
  return { origin, code: a.assemble() };
}

/**
 * Forever: increment the 32-bit counter at `counterAddr` in guest memory and report it with
 * OUT `port`, EAX. Its state lives in memory and registers only, so a handed-off guest continues
 * the sequence exactly.
 *
 * ```
 * again:  inc dword [counter]
 *         mov eax, [counter]
 *         mov dx, port
 *         out dx, eax
 *         jmp again
 * ```
 */
export function counterProgram(counterAddr = 0x2000, port = 0x500, origin = 0x1000): GuestProgram {
  const a = new Asm16(origin);
  a.label('again').incDwordAt(counterAddr).movEaxFrom(counterAddr).movImm16('dx', port).outDxEax().jmp('again');
  return { origin, code: a.assemble() };
}

/**
 * The demonstration guest of `kvm-sev demo`: reads the `length`-byte secret the guest owner injected
 * at `secretAddr` (LAUNCH_SECRET), folds it into a 16-bit digest ({@link secretDigest}), prints
 * "secret digest: XXXX" on COM1 and halts. The host sees the digest, never the secret.
 *
 * ```
 *         mov si, secretAddr
 *         mov cx, length
 *         xor di, di
 * fold:   lodsb
 *         rol di, 5
 *         xor ah, ah
 *         xor di, ax            ; di = rol(di, 5) ^ byte
 *         loop fold
 *         mov si, label
 *         call puts
 *         mov ax, di
 *         call puthex16
 *         mov al, 10
 *         call putc
 *         hlt
 * puts:   lodsb / test al, al / jz .done / call putc / jmp puts / .done: ret
 * putc:   push ax / wait for LSR.THRE / pop ax / out 0x3f8, al / ret
 * puthex16: mov bx, ax / mov cx, 4 / .n: rol bx, 4 / mov al, bl / and al, 0xf / add al, '0' /
 *         cmp al, '9' / jbe .d / add al, 7 / .d: call putc / loop .n / ret
 * ```
 */
export function secretDemoProgram(secretAddr: number, length: number, origin = 0x1000): GuestProgram {
  if (!Number.isInteger(length) || length < 1 || length > 0xffff) throw new RangeError('length must be 1..65535');
  const a = new Asm16(origin);
  a.movImm16('si', secretAddr)
    .movImm16('cx', length)
    .xorR16('di', 'di')
    .label('fold')
    .lodsb()
    .rolImm('di', 5)
    .zeroAh()
    .xorR16('di', 'ax')
    .loop('fold')
    .movLabel('si', 'label')
    .call('puts')
    .movR16('ax', 'di')
    .call('puthex16')
    .movImm8('al', 10)
    .call('putc')
    .hlt()
    .label('puts')
    .lodsb()
    .testAlAl()
    .jz('puts_done')
    .call('putc')
    .jmp('puts')
    .label('puts_done')
    .ret()
    .label('putc')
    .pushAx()
    .movImm16('dx', COM1_LSR)
    .label('putc_wait')
    .inAlDx()
    .testAlImm(LSR_THR_EMPTY)
    .jz('putc_wait')
    .popAx()
    .movImm16('dx', COM1)
    .outDxAl()
    .ret()
    .label('puthex16')
    .movR16('bx', 'ax')
    .movImm16('cx', 4)
    .label('hex_next')
    .rolImm('bx', 4)
    .movR8('al', 'bl')
    .andAlImm(0x0f)
    .addAlImm(0x30)
    .cmpAlImm(0x39)
    .jbe('hex_digit')
    .addAlImm(7)
    .label('hex_digit')
    .call('putc')
    .loop('hex_next')
    .ret()
    .label('label')
    .asciz('secret digest: ');
  return { origin, code: a.assemble() };
}

/** What {@link secretDemoProgram} prints for `secret`: the same fold, in TypeScript. */
export function secretDigest(secret: Uint8Array): string {
  let d = 0;
  for (const b of secret) d = (((d << 5) | (d >>> 11)) & 0xffff) ^ b;
  return d.toString(16).toUpperCase().padStart(4, '0');
}

/**
 * Enters long mode from reset the way a boot loader does, reporting each stage with OUT 0x80
 * (16, 32, then 64): loads its own GDT, sets CR0.PE and far-jumps into 32-bit code, clears three
 * pages at `pageTables` and fills them as a PML4, a PDPT and a page directory identity-mapping the
 * first GiB in 2 MiB pages, sets CR3, CR4.PAE, EFER.LME (WRMSR) and CR0.PG, far-jumps into 64-bit
 * code, stores RAX = 0x1122334455667788 RIP-relative at its label `result` and halts.
 * The vCPU needs a CPUID with long mode (KVM refuses EFER.LME otherwise: arch/x86/kvm/x86.c, kvm_valid_efer()).
 *
 * ```
 * .code16
 *         cli
 *         mov al, 16
 *         out 0x80, al
 *         lgdt [gdtr]
 *         mov eax, cr0
 *         or eax, 1                  ; CR0.PE
 *         mov cr0, eax
 *         jmp 0x18:pm32              ; the 32-bit code segment
 * .code32
 * pm32:   mov eax, 0x10
 *         mov ds, eax / mov es, eax / mov ss, eax
 *         mov al, 32
 *         out 0x80, al
 *         mov edi, pageTables
 *         xor eax, eax
 *         mov ecx, 3 * 4096 / 4
 *         rep stosd
 *         mov dword [pageTables], pageTables + 0x1003           ; PML4[0] -> PDPT, present, writable
 *         mov dword [pageTables + 0x1000], pageTables + 0x2003  ; PDPT[0] -> PD
 *         mov ebx, pageTables + 0x2000
 *         mov eax, 0x83              ; present, writable, 2 MiB page
 *         mov ecx, 512
 * fill:   mov [ebx], eax
 *         add eax, 0x200000
 *         add ebx, 8
 *         loop fill
 *         mov eax, pageTables
 *         mov cr3, eax
 *         mov eax, cr4
 *         or eax, 0x20               ; CR4.PAE
 *         mov cr4, eax
 *         mov ecx, 0xc0000080        ; EFER
 *         rdmsr
 *         or eax, 0x100              ; EFER.LME
 *         wrmsr
 *         mov eax, cr0
 *         or eax, 0x80000000         ; CR0.PG: long mode is active (EFER.LMA)
 *         mov cr0, eax
 *         jmp 0x08:lm64              ; the 64-bit code segment
 * .code64
 * lm64:   mov al, 64
 *         out 0x80, al
 *         mov rax, 0x1122334455667788
 *         mov [rel result], rax
 *         hlt
 *         align 8
 * gdt:    dq 0, 0x00af9b000000ffff, 0x00cf93000000ffff, 0x00cf9b000000ffff
 * gdtr:   dw gdt_end - gdt - 1
 *         dd gdt
 * result: dq 0
 * ```
 */
export function longModeEntryProgram(pageTables = 0x3000, origin = 0x1000): GuestProgram & { resultAddr: number } {
  if (!Number.isInteger(pageTables) || pageTables % 0x1000 !== 0 || pageTables < 0 || pageTables > 0xffffd000)
    throw new RangeError('pageTables must be a 4 KiB-aligned address below 4 GiB');
  const a = new Asm({ bits: 16, origin });
  a.cli()
    .mov('al', 16)
    .out(0x80, 'al')
    .lgdt(mem('gdtr'))
    .mov('eax', 'cr0')
    .or('eax', 1)
    .mov('cr0', 'eax')
    .jmpFar(0x18, 'pm32')
    .code(32)
    .label('pm32')
    .mov('eax', 0x10)
    .mov('ds', 'eax')
    .mov('es', 'eax')
    .mov('ss', 'eax')
    .mov('al', 32)
    .out(0x80, 'al')
    .mov('edi', pageTables)
    .xor('eax', 'eax')
    .mov('ecx', (3 * 4096) / 4)
    .rep()
    .stos(32)
    .mov(dword(pageTables), pageTables + 0x1003)
    .mov(dword(pageTables + 0x1000), pageTables + 0x2003)
    .mov('ebx', pageTables + 0x2000)
    .mov('eax', 0x83)
    .mov('ecx', 512)
    .label('fill')
    .mov(mem('ebx'), 'eax')
    .add('eax', 0x200000)
    .add('ebx', 8)
    .loop('fill')
    .mov('eax', pageTables)
    .mov('cr3', 'eax')
    .mov('eax', 'cr4')
    .or('eax', 0x20)
    .mov('cr4', 'eax')
    .mov('ecx', 0xc0000080)
    .rdmsr()
    .or('eax', 0x100)
    .wrmsr()
    .mov('eax', 'cr0')
    .or('eax', 0x80000000)
    .mov('cr0', 'eax')
    .jmpFar(0x08, 'lm64')
    .code(64)
    .label('lm64')
    .mov('al', 64)
    .out(0x80, 'al')
    .mov('rax', 0x1122334455667788n)
    .mov(mem('result'), 'rax')
    .hlt()
    .align(8)
    .label('gdt')
    .dq(0, 0x00af9b000000ffffn, 0x00cf93000000ffffn, 0x00cf9b000000ffffn)
    .label('gdt_end')
    .label('gdtr')
    .dw(span('gdt', 'gdt_end', -1))
    .dd(ref('gdt'))
    .label('result')
    .dq(0);
  const p = a.program();
  return { origin, code: p.code, resultAddr: p.labels.get('result')! };
}
