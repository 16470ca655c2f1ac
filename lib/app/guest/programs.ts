/**
 * Small real-mode guest programs (flat, CS = DS = 0, loaded at `origin`), used by the hardware
 * tests, the benchmarks and the demo. Each is documented by the assembly that builds it.
 */
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
