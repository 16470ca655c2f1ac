/** Guest memory by guest-physical address (see {@link GuestMemory}). */
import type { BackendFd, GuestMapping } from '../backend/contract.js';
import { KvmSevError } from '../backend/errors.js';
import { invalidArgType, outOfRange } from '../uapi/errors.js';
import { mappingRange, type MappingRange } from '../uapi/ioctl-arg.js';

const WINDOW = 1 << 30;
const FOUR_GIB = 2 ** 32;

export type Address = bigint | number;

export function toBigAddr(name: string, a: Address): bigint {
  if (typeof a === 'bigint') {
    if (a < 0n || a > 0xffff_ffff_ffff_ffffn) throw outOfRange(name, '>= 0 and < 2^64', a);
    return a;
  }
  if (typeof a !== 'number') throw invalidArgType(name, 'bigint or number', a);
  if (!Number.isSafeInteger(a) || a < 0) throw outOfRange(name, 'a safe integer >= 0', a);
  return BigInt(a);
}

/**
 * Guest memory: a backend mapping placed at a guest-physical address, with typed reads and writes
 * by guest-physical address. Views are over the mapping itself (no copies); a mapping larger than
 * 4 GiB is seen through 1 GiB windows (Node 20 caps one ArrayBuffer at 4 GiB). `range()` gives the
 * form SEV commands and memory slots take.
 *
 * ```ts
 * import { Kvm } from 'kvm-sev';
 * import { MockHost } from 'kvm-sev/mock';
 * using kvm = Kvm.open({ backend: new MockHost() });
 * using vm = kvm.createVm();
 * const mem = vm.addMemory({ guestPhysAddr: 0x10_0000n, size: 0x10000 }); // 64 KiB at 1 MiB
 * mem.write(0x10_1000n, Uint8Array.of(0xf4)); // HLT, by guest-physical address
 * console.log(mem.readU8(0x10_1000n), mem.bytes[0x1000]); // 244 244: the same bytes, no copy
 * const r = mem.range(0x10_1000n, 16); // a MappingRange: what SEV commands and memory slots take
 * console.log(r.offset, r.length); // 4096 16
 * ```
 */
export class GuestMemory {
  readonly mapping: GuestMapping;
  /** Where the memory sits in the guest's physical address space. */
  readonly guestPhysAddr: bigint;
  readonly size: number;
  /** The memfd behind the mapping, if it has one (local migration hands it to another process). */
  readonly memfd: BackendFd | undefined;
  private whole: Uint8Array | undefined;
  private windows = new Map<number, Uint8Array>();

  constructor(mapping: GuestMapping, guestPhysAddr: Address, memfd?: BackendFd) {
    this.mapping = mapping;
    this.guestPhysAddr = toBigAddr('guestPhysAddr', guestPhysAddr);
    this.size = mapping.size;
    this.memfd = memfd;
  }

  get closed(): boolean {
    return this.mapping.closed;
  }

  /** All of it as one Uint8Array (up to 4 GiB). */
  get bytes(): Uint8Array {
    this.checkOpen();
    if (this.size > FOUR_GIB) throw outOfRange('size', '<= 4 GiB for .bytes; use read()/write() or view()', this.size);
    if (!this.whole || this.whole.byteLength === 0) this.whole = new Uint8Array(this.mapping.buffer);
    return this.whole;
  }

  /** True if [gpa, gpa+length) lies inside this memory. */
  contains(gpa: Address, length = 1): boolean {
    const g = toBigAddr('gpa', gpa);
    return g >= this.guestPhysAddr && g + BigInt(length) <= this.guestPhysAddr + BigInt(this.size);
  }

  /** The byte offset of a guest-physical address; RangeError if outside. */
  offsetOf(gpa: Address, length = 1): number {
    const g = toBigAddr('gpa', gpa);
    if (!Number.isSafeInteger(length) || length < 0) throw outOfRange('length', 'a safe integer >= 0', length);
    const off = g - this.guestPhysAddr;
    if (off < 0n || off + BigInt(length) > BigInt(this.size)) {
      throw outOfRange('gpa', `inside [0x${this.guestPhysAddr.toString(16)}, +0x${this.size.toString(16)}) for ${length} bytes`, gpa);
    }
    return Number(off);
  }

  /** A view of [gpa, gpa+length) over guest memory (no copy). It may not cross a 1 GiB window on large mappings. */
  view(gpa: Address, length: number): Uint8Array {
    const off = this.offsetOf(gpa, length);
    if (this.size <= FOUR_GIB) return this.bytes.subarray(off, off + length);
    const w = Math.floor(off / WINDOW);
    if (Math.floor((off + Math.max(length, 1) - 1) / WINDOW) !== w) {
      throw new KvmSevError('ERR_KVM_SEV_CROSSES_WINDOW', `view crosses a 1 GiB window of a large mapping; use read()/write()`);
    }
    return this.window(w).subarray(off - w * WINDOW, off - w * WINDOW + length);
  }

  private window(w: number): Uint8Array {
    this.checkOpen();
    let v = this.windows.get(w);
    if (!v || v.byteLength === 0) {
      const start = w * WINDOW;
      v = new Uint8Array(this.mapping.view(start, Math.min(WINDOW, this.size - start)));
      this.windows.set(w, v);
    }
    return v;
  }

  /** Copies `length` bytes out of guest memory. */
  read(gpa: Address, length: number): Uint8Array {
    const off = this.offsetOf(gpa, length);
    const out = new Uint8Array(length);
    this.copy(off, length, (src, at) => out.set(src, at));
    return out;
  }

  /** Copies `data` into guest memory at `gpa`. */
  write(gpa: Address, data: ArrayBufferView): void {
    if (!ArrayBuffer.isView(data)) throw invalidArgType('data', 'an ArrayBufferView', data);
    const src = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const off = this.offsetOf(gpa, src.byteLength);
    this.copy(off, src.byteLength, (dst, at) => dst.set(src.subarray(at, at + dst.byteLength)));
  }

  /** Fills [gpa, gpa+length) with `value`. */
  fill(gpa: Address, length: number, value = 0): void {
    const off = this.offsetOf(gpa, length);
    this.copy(off, length, (dst) => dst.fill(value));
  }

  private copy(off: number, length: number, f: (chunk: Uint8Array, at: number) => void): void {
    if (this.size <= FOUR_GIB) {
      f(this.bytes.subarray(off, off + length), 0);
      return;
    }
    let done = 0;
    while (done < length) {
      const pos = off + done;
      const w = Math.floor(pos / WINDOW);
      const inWin = pos - w * WINDOW;
      const n = Math.min(length - done, WINDOW - inWin);
      f(this.window(w).subarray(inWin, inWin + n), done);
      done += n;
    }
  }

  private dv(gpa: Address, n: number): DataView {
    const b = this.view(gpa, n);
    return new DataView(b.buffer, b.byteOffset, n);
  }
  readU8(gpa: Address): number {
    return this.dv(gpa, 1).getUint8(0);
  }
  readU16(gpa: Address): number {
    return this.dv(gpa, 2).getUint16(0, true);
  }
  readU32(gpa: Address): number {
    return this.dv(gpa, 4).getUint32(0, true);
  }
  readU64(gpa: Address): bigint {
    return this.dv(gpa, 8).getBigUint64(0, true);
  }
  writeU8(gpa: Address, v: number): void {
    this.dv(gpa, 1).setUint8(0, v);
  }
  writeU16(gpa: Address, v: number): void {
    this.dv(gpa, 2).setUint16(0, v, true);
  }
  writeU32(gpa: Address, v: number): void {
    this.dv(gpa, 4).setUint32(0, v, true);
  }
  writeU64(gpa: Address, v: bigint): void {
    this.dv(gpa, 8).setBigUint64(0, v, true);
  }

  /** [gpa, gpa+length) as a pointer target for an ioctl (LAUNCH_UPDATE_DATA, REG_REGION, DBG_*). */
  range(gpa: Address = this.guestPhysAddr, length?: number): MappingRange {
    const len = length ?? this.size - Number(toBigAddr('gpa', gpa) - this.guestPhysAddr);
    return mappingRange(this.mapping, this.offsetOf(gpa, len), len);
  }

  private checkOpen(): void {
    if (this.mapping.closed) throw new KvmSevError('ERR_KVM_SEV_CLOSED', 'guest memory was unmapped');
  }

  /** Unmaps (EBUSY while a live VM's memory slot uses it) and closes the memfd. Idempotent. */
  close(): void {
    this.mapping.unmap();
    this.whole = undefined;
    this.windows.clear();
    this.memfd?.close();
  }
}
