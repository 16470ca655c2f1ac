/**
 * The process's address space as the mock kernel sees it.
 *
 * Every mapping gets a stable, page-aligned fake user address the first time it is seen (mock
 * mappings and native GuestMappings alike: anything with `size`, `closed` and `view()`), with an
 * unmapped guard gap after it, so a range that runs off a mapping faults as it would in a process.
 * For each ioctl the marshaller (marshal.ts) places the JS buffers a struct points at in per-call
 * "bounce" regions, as the native shim copies them into C++ vectors, and the kernel model reaches all
 * of it through {@link UserMemory.copyFromUser}, {@link UserMemory.copyToUser} (EFAULT on anything
 * unmapped) and {@link UserMemory.pin} (ENOMEM, the kernel's short pin), which return live bytes.
 * A bounce copy keeps the low 12 bits of its JS view's byteOffset, so a test places a buffer at any
 * offset in a page, and across a page boundary, as a C program's buffers are. A call's bounce regions
 * live until that call ends (calls may be in flight together).
 *
 * Physical addresses (phys-memory.ts): the pages of a backing store (an anonymous mapping, a memfd,
 * a bounce region) are 4 KiB frames scattered in the store's physical range, so pages are never
 * physically contiguous and every mapping of one memfd shows the same frames. A native mapping (the
 * hybrid's real guest memory) is foreign: the mock cannot see its frames, so it stays one contiguous
 * range, and the SEV layer gives the firmware the guest-physical address for ranges in a memory slot
 * (kernel/svm/sev-memory.ts). Kernel memory (VMSAs, DBG bounce buffers) comes from
 * {@link UserMemory.kernelPage}.
 */
import { errnoError } from '../../../../backend/errors.js';
import { invalidArgType } from '../../../../uapi/errors.js';
import { E, fail } from './errno.js';
import { PAGE_SIZE } from '../../../../uapi/constants.js';
import { Backing, MockMapping } from './mapping.js';
import { PhysicalMemory, type FrameStore, type KernelAllocation } from './phys-memory.js';

/** What the mock accepts as a mapping: its own, or a native GuestMapping. */
export interface AnyMapping {
  readonly size: number;
  readonly closed: boolean;
  view(offset: number, length?: number): ArrayBuffer;
}

export function isAnyMapping(m: unknown): m is AnyMapping {
  const x = m as Partial<AnyMapping> | null;
  return typeof x === 'object' && x !== null && typeof x.size === 'number' && typeof x.closed === 'boolean' && typeof x.view === 'function';
}

const MAP_BASE = 0x7f00_0000_0000n;
const BOUNCE_BASE = 0x5555_0000_0000n;
const ALIGN = 0x20_0000n; // 2 MiB between mappings (and a guard gap)
const GIB = 2 ** 30;
const FOUR_GIB = 2 ** 32;

/** A mapped range of the address space. */
export interface Region {
  readonly base: bigint;
  /** Mapped bytes (page multiple). */
  readonly size: number;
  readonly kind: 'mapping' | 'bounce';
  readonly mapping?: AnyMapping;
  /** Largest run `bytes()` can return at once, aligned to multiples of it from offset 0. */
  readonly chunk: number;
  live(): boolean;
  bytes(offset: number, length: number): Uint8Array;
  /** The physical address of byte `offset`. */
  phys(offset: number): bigint;
  /**
   * True when the mock knows its frames (its own mappings and bounce regions: scattered 4 KiB
   * frames); false for a foreign (native) mapping, one contiguous range whose frames are the real
   * kernel's.
   */
  readonly framed: boolean;
  /** Physically contiguous runs never cross a backing: its id. */
  readonly backingId: number;
}

/** A part of a user range inside one region and one chunk. */
export interface Segment {
  readonly region: Region;
  readonly offset: number;
  readonly length: number;
  /** The user address of its first byte. */
  readonly addr: bigint;
}

/** A kernel allocation: stable physical address, its bytes; free() when the kernel would. */
export type KernelPage = KernelAllocation;

/** One call's bounce regions (released together when the call ends). */
export interface BounceSet {
  readonly regions: Region[];
}

function roundUp(n: bigint, a: bigint): bigint {
  return ((n + a - 1n) / a) * a;
}

export class UserMemory {
  /** Physical memory: frames of every store, kernel allocations, and memory nobody owns. */
  readonly phys = new PhysicalMemory();
  private readonly regions: Region[] = []; // mappings, sorted by base
  private bounces: Region[] = [];
  private readonly releasers = new Map<Region, () => void>();
  private readonly byMapping = new WeakMap<object, Region>();
  private cursor = MAP_BASE;
  private bounceCursor = BOUNCE_BASE;
  private nextBacking = 2; // 1: kernel memory
  private registered = 0;

  /** A new backing store with its own physical frames. */
  newBacking(size: number): Backing {
    const b = new Backing(this.nextBacking++, size);
    this.registerStore({
      id: b.id,
      size: b.size,
      scattered: true,
      bytes: (off, len) => b.bytes(off, len),
      live: () => b.mappings > 0 || b.fileRefs > 0,
    });
    return b;
  }

  private registerStore(s: FrameStore): void {
    if (++this.registered % 256 === 0) this.phys.prune();
    this.phys.register(s);
  }

  /** The fake user address of a mapping (stable; assigned on first sight). */
  addressOf(m: AnyMapping): bigint {
    return this.regionOf(m).base;
  }

  regionOf(m: AnyMapping): Region {
    if (!isAnyMapping(m)) throw invalidArgType('mapping', 'a guest-memory mapping (size, closed, view())', m);
    let r = this.byMapping.get(m);
    if (r) return r;
    r = m instanceof MockMapping ? this.mockRegion(m) : this.foreignRegion(m);
    this.byMapping.set(m, r);
    this.regions.push(r);
    if (this.regions.length > 256 && this.regions.length % 256 === 0) this.prune();
    return r;
  }

  private place(size: number): bigint {
    const base = this.cursor;
    this.cursor = roundUp(base + BigInt(size), ALIGN) + ALIGN;
    return base;
  }

  private mockRegion(m: MockMapping): Region {
    const b = m.backing;
    const store = { id: b.id, scattered: true };
    return {
      base: this.place(m.size),
      size: m.size,
      kind: 'mapping',
      mapping: m,
      backingId: b.id,
      chunk: b.chunkSize,
      framed: true,
      live: () => !m.closed,
      bytes: (off, len) => b.bytes(m.offset + off, len),
      phys: (off) => this.phys.addressOf(store, m.offset + off),
    };
  }

  private foreignRegion(m: AnyMapping): Region {
    const id = this.nextBacking++;
    const physBase = BigInt(id) << 40n;
    const big = m.size > FOUR_GIB;
    let whole: Uint8Array | undefined;
    return {
      base: this.place(m.size),
      size: m.size,
      kind: 'mapping',
      mapping: m,
      backingId: id,
      chunk: big ? GIB : Math.max(m.size, 1),
      framed: false,
      live: () => !m.closed,
      bytes: (off, len) => {
        if (big) return new Uint8Array(m.view(off, len));
        if (!whole || whole.byteLength === 0) whole = new Uint8Array(m.view(0, m.size));
        return whole.subarray(off, off + len);
      },
      phys: (off) => physBase + BigInt(off),
    };
  }

  /** Drop regions of unmapped mappings (their addresses are never handed out again). */
  private prune(): void {
    for (let i = this.regions.length - 1; i >= 0; i--) if (!this.regions[i]!.live()) this.regions.splice(i, 1);
  }

  /**
   * Per-call bounce regions: place a copy of a JS buffer, at the offset in a page its JS view has in
   * its ArrayBuffer (`pageOffset`, low 12 bits used); returns its address and its storage. The region
   * joins the call's `set` (released with {@link endCall}).
   */
  addBounce(data: Uint8Array, set: BounceSet, pageOffset = 0): { addr: bigint; store: Uint8Array } {
    const at = pageOffset & (PAGE_SIZE - 1);
    const mapped = Math.max(PAGE_SIZE, Math.ceil((at + data.byteLength) / PAGE_SIZE) * PAGE_SIZE);
    const backing = new Uint8Array(mapped);
    const store = backing.subarray(at, at + data.byteLength);
    store.set(data);
    if (this.bounces.length === 0) this.bounceCursor = BOUNCE_BASE;
    const base = this.bounceCursor;
    this.bounceCursor = roundUp(base + BigInt(mapped), BigInt(PAGE_SIZE)) + BigInt(PAGE_SIZE);
    const id = this.nextBacking++;
    let live = true;
    const frames: FrameStore = { id, size: mapped, scattered: true, bytes: (o, l) => backing.subarray(o, o + l), live: () => live };
    this.phys.register(frames);
    const r: Region = {
      base,
      size: mapped,
      kind: 'bounce',
      backingId: id,
      chunk: mapped,
      framed: true,
      live: () => live,
      bytes: (off, len) => backing.subarray(off, off + len),
      phys: (off) => this.phys.addressOf(frames, off),
    };
    this.releasers.set(r, () => {
      live = false;
      this.phys.unregister(id);
    });
    this.bounces.push(r);
    set.regions.push(r);
    return { addr: base + BigInt(at), store };
  }

  /** Forget the bounce regions of a call that ended. */
  endCall(set: BounceSet): void {
    for (const r of set.regions.splice(0)) {
      this.releasers.get(r)?.();
      this.releasers.delete(r);
    }
    this.bounces = this.bounces.filter((r) => r.live());
  }

  private find(addr: bigint): Region | undefined {
    for (const r of this.bounces) if (addr >= r.base && addr < r.base + BigInt(r.size)) return r;
    let lo = 0;
    let hi = this.regions.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const r = this.regions[mid]!;
      if (addr < r.base) hi = mid - 1;
      else if (addr >= r.base + BigInt(r.size)) lo = mid + 1;
      else return r.live() ? r : undefined;
    }
    return undefined;
  }

  /** [addr, addr+len) as segments, or undefined if any byte is unmapped. */
  trySegments(addr: bigint, len: number): Segment[] | undefined {
    if (len === 0) return [];
    if (addr < 0n || addr + BigInt(len) > 0xffff_ffff_ffff_ffffn) return undefined;
    const r = this.find(addr);
    if (!r) return undefined;
    const off = Number(addr - r.base);
    if (off + len > r.size) return undefined; // guard gaps: no region touches another
    const out: Segment[] = [];
    let pos = off;
    while (pos < off + len) {
      const end = Math.min(off + len, (Math.floor(pos / r.chunk) + 1) * r.chunk);
      out.push({ region: r, offset: pos, length: end - pos, addr: r.base + BigInt(pos) });
      pos = end;
    }
    return out;
  }

  /** copy_from_user: a copy of the bytes, EFAULT if unmapped. */
  copyFromUser(addr: bigint, len: number): Uint8Array {
    const segs = this.trySegments(addr, len) ?? fail(E.EFAULT, `copy_from_user(0x${addr.toString(16)}, ${len})`);
    if (segs.length === 1) return segs[0]!.region.bytes(segs[0]!.offset, len).slice();
    const out = new Uint8Array(len);
    let at = 0;
    for (const s of segs) {
      out.set(s.region.bytes(s.offset, s.length), at);
      at += s.length;
    }
    return out;
  }

  /** copy_to_user: EFAULT if unmapped (nothing written then). */
  copyToUser(addr: bigint, data: Uint8Array): void {
    const segs = this.trySegments(addr, data.byteLength) ?? fail(E.EFAULT, `copy_to_user(0x${addr.toString(16)}, ${data.byteLength})`);
    let at = 0;
    for (const s of segs) {
      s.region.bytes(s.offset, s.length).set(data.subarray(at, at + s.length));
      at += s.length;
    }
  }

  /**
   * pin_user_pages of the pages covering [addr, addr+len): the live segments of the whole pages, or
   * ENOMEM if any page is unmapped (the kernel's short pin).
   */
  pin(addr: bigint, len: number): Segment[] {
    const first = addr & ~0xfffn;
    const last = ((addr + BigInt(len) - 1n) & ~0xfffn) + 0x1000n;
    return this.trySegments(first, Number(last - first)) ?? fail(E.ENOMEM, `short pin at 0x${addr.toString(16)}`);
  }

  /** Live bytes of a user range known to be mapped (after a pin). */
  view(addr: bigint, len: number): Segment[] {
    return this.trySegments(addr, len) ?? fail(E.EFAULT);
  }

  /** Zeroed, physically contiguous kernel memory (alloc_page, kzalloc); free() it when the kernel does. */
  kernelPage(size = PAGE_SIZE): KernelPage {
    return this.phys.allocKernel(size);
  }
}

/** EFAULT as the native shim raises it for an unmapped mapping target (the message in `request`). */
export function unmappedTarget(field: string): Error {
  return errnoError(E.EFAULT, 'ioctl', `${field} points into an unmapped mapping`);
}
