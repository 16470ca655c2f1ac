/**
 * A 64-bit guest that counts on a port and, told so through a mailbox, writes to every page of its
 * RAM: the handoff benchmark's guest (bench/handoff.ts), and the check that a large guest's RAM is
 * all RAM. Loaded at `PAGE_TOUCHER.ORIGIN` under setupLongMode() with an identity map reaching
 * ramEnd(ranges). The RAM ranges are built in, one loop each, so that the hole below 4 GiB
 * (lib/kvm/ram-layout.ts) is skipped:
 *
 * ```
 * again:  inc dword [COUNTER]
 *         mov eax, [COUNTER]
 *         mov dx, PORT
 *         out dx, eax              ; the exit a handoff pauses between
 *         cmp dword [MAILBOX], 0
 *         je again
 *         mov dword [MAILBOX], 0
 *         ; for each range:
 *         mov rbx, range.start     ; 64-bit: ranges reach past 4 GiB
 *         mov rcx, range.size / stride
 * touchN: or byte [rbx], 0         ; a write that keeps the byte (page tables live in this memory too)
 *         add rbx, stride
 *         loop touchN
 *         ; then:
 *         mov dx, DONE
 *         out dx, eax
 *         jmp again
 * ```
 */
import { invalidArgValue } from '../../uapi/errors.js';
import type { RamRange } from '../../kvm/ram-layout.js';
import { Asm, byte, dword, mem } from './asm.js';

/** Where the program sits, its count (dword) and mailbox (dword), and its two ports. */
export const PAGE_TOUCHER = Object.freeze({ ORIGIN: 0x1000, COUNTER: 0x2000, MAILBOX: 0x2008, PORT: 0x500, DONE: 0x501 });

export interface PageToucherOptions {
  /** The RAM to write, e.g. ramLayout(size) or vm.memory. */
  ranges: readonly RamRange[];
  /** Bytes between two writes: 4096 (the default) writes every 4 KiB page. */
  stride?: number;
}

export function pageToucherProgram(o: PageToucherOptions): Uint8Array {
  const stride = o.stride ?? 4096;
  if (!Number.isSafeInteger(stride) || stride < 1 || stride > 2 ** 31 - 1)
    throw invalidArgValue('stride', stride, 'is not an integer in [1, 2^31)');
  const { COUNTER, MAILBOX, PORT, DONE, ORIGIN } = PAGE_TOUCHER;
  let a = new Asm({ bits: 64, origin: ORIGIN })
    .label('again')
    .inc(dword(COUNTER))
    .mov('eax', dword(COUNTER))
    .mov('dx', PORT)
    .out('dx', 'eax')
    .cmp(dword(MAILBOX), 0)
    .je('again')
    .mov(dword(MAILBOX), 0);
  o.ranges.forEach((r, i) => {
    const count = Math.floor(r.size / stride);
    // LOOP decrements RCX before it tests it: a count of 0 would run 2^64 times.
    if (count < 1 || count > 2 ** 31 - 1)
      throw invalidArgValue(`ranges[${i}].size`, r.size, `holds no whole stride of ${stride} bytes, or too many`);
    a = a
      .mov('rbx', r.guestPhysAddr)
      .mov('rcx', count)
      .label(`touch${i}`)
      .or(byte(mem('rbx')), 0)
      .add('rbx', stride)
      .loop(`touch${i}`);
  });
  const code = a.mov('dx', DONE).out('dx', 'eax').jmp('again').assemble();
  if (ORIGIN + code.length > COUNTER)
    throw invalidArgValue('ranges', o.ranges.length, `make a program of ${code.length} bytes, past its data at 0x${COUNTER.toString(16)}`);
  return code;
}
