/**
 * Physical memory as the PSP and the memory controller address it: 4 KiB frames.
 *
 * A process's memory is not physically contiguous. The kernel hands the PSP system-physical
 * addresses of the pages it pinned (`__sme_page_pa()`, arch/x86/kvm/svm/sev.c), merges pages into
 * one command only where their frames are adjacent (`get_num_contig_pages()`), and the memory
 * controller tweaks its cipher by that address. So the mock gives every page of a backing store (an
 * anonymous mapping, a memfd, a per-call copy of a JS buffer) a frame of its own, scattered: page p of
 * store `id` sits at frame `scatter(id, p)` of the store's physical range `[id << 40, (id + 1) << 40)`,
 * a bijection under which consecutive pages are never adjacent frames. Every mapping of one memfd
 * shows the same frames.
 *
 * Kernel allocations (VMSAs, the DBG bounce buffers) are physically contiguous within themselves
 * (alloc_page, kmalloc) and followed by a frame nobody owns. Any physical address resolves to bytes:
 * a frame that belongs to no live store is "other memory" (zeroed on first touch, kept): a firmware
 * command that runs past the frames the kernel pinned reads and writes there, as it would on a host.
 */
import type { PhysRange } from '../../psp/api.js';

/** Bytes per frame. */
export const FRAME = 4096;
const STORE_SHIFT = 40n;
const FRAME_SHIFT = 12n;
/** Frames per store range (2^28 frames: 1 TiB). */
const STORE_FRAMES = 1 << 28;
const FRAME_MASK = STORE_FRAMES - 1;
/** An odd multiplier: a bijection of [0, 2^28) under which p and p + 1 are never adjacent. */
const SCATTER = 0x0b5ad4e5;
/** Its inverse mod 2^28. */
const UNSCATTER = inverseMod28(SCATTER);
/** Store id of kernel allocations. */
export const KERNEL_STORE = 1;

function inverseMod28(a: number): number {
  // Newton's iteration for the inverse of an odd number modulo a power of two (low 32 bits, then masked).
  let x = a;
  for (let i = 0; i < 5; i++) x = Math.imul(x, 2 - Math.imul(a, x));
  return (x >>> 0) & FRAME_MASK;
}

const salt = (id: number): number => Math.imul(id, 0x9e3779b1) & FRAME_MASK;

/** The frame (within its store's range) of page `page` of scattered store `id`. */
export function scatterFrame(id: number, page: number): number {
  return (Math.imul(page, SCATTER) + salt(id)) & FRAME_MASK;
}

/** The page of scattered store `id` that frame `frame` holds. */
export function unscatterFrame(id: number, frame: number): number {
  return Math.imul((frame - salt(id)) & FRAME_MASK, UNSCATTER) & FRAME_MASK;
}

/** Memory that lives in frames: a backing store, a bounce copy, a kernel allocation. */
export interface FrameStore {
  readonly id: number;
  /** Its size in bytes (a multiple of FRAME). */
  readonly size: number;
  /** True: page p is at scatterFrame(id, p); false: at frame p (a kernel allocation, foreign memory). */
  readonly scattered: boolean;
  /** Live bytes of [offset, offset + length); never asked for more than one frame. */
  bytes(offset: number, length: number): Uint8Array;
  /** False once its memory is gone (its frames are then nobody's). */
  live(): boolean;
}

/** A kernel allocation: physically contiguous, with a stable address; free() gives its frames back. */
export interface KernelAllocation {
  readonly paddr: bigint;
  readonly bytes: Uint8Array;
  free(): void;
}

/** A firmware view of a physical range; `commit()` stores a gathered copy back (no-op for live views). */
export interface PhysView extends PhysRange {
  commit(): void;
}

export class PhysicalMemory {
  private readonly stores = new Map<number, FrameStore>();
  /** Frames no live store owns: "other memory". */
  private readonly stray = new Map<bigint, Uint8Array>();
  /**
   * Kernel allocations by each of their frames; each allocation is followed by an unowned frame. An
   * allocation the kernel keeps (a VMSA) goes with its last JS reference.
   */
  private readonly kernel = new Map<number, { first: number; bytes: WeakRef<Uint8Array> }>();
  private readonly kernelGone = new FinalizationRegistry<{ first: number; frames: number }>((a) => this.dropKernel(a.first, a.frames));
  private readonly kernelFree = new Map<number, number[]>();
  private kernelNext = 0;

  register(store: FrameStore): void {
    this.stores.set(store.id, store);
  }

  unregister(id: number): void {
    this.stores.delete(id);
  }

  /** Forget stores whose memory is gone. */
  prune(): void {
    for (const [id, s] of this.stores) if (!s.live()) this.stores.delete(id);
  }

  /** The system-physical address of byte `offset` of `store`. */
  addressOf(store: Pick<FrameStore, 'id' | 'scattered'>, offset: number): bigint {
    const page = Math.floor(offset / FRAME);
    const frame = store.scattered ? scatterFrame(store.id, page) : page;
    return (BigInt(store.id) << STORE_SHIFT) + (BigInt(frame) << FRAME_SHIFT) + BigInt(offset - page * FRAME);
  }

  /** Zeroed kernel memory, physically contiguous (kzalloc / alloc_page(__GFP_ZERO)). */
  allocKernel(size = FRAME): KernelAllocation {
    const frames = Math.max(1, Math.ceil(size / FRAME));
    let first = this.kernelFree.get(frames)?.pop();
    if (first === undefined) {
      first = this.kernelNext;
      this.kernelNext += frames + 1; // an unowned frame after each allocation
    }
    // The caller holds the view it gets; its buffer is the whole allocation.
    const bytes = new Uint8Array(frames * FRAME).subarray(0, size);
    const entry = { first, bytes: new WeakRef(bytes) };
    for (let f = 0; f < frames; f++) this.kernel.set(first + f, entry);
    const start = first;
    const token = {};
    this.kernelGone.register(bytes, { first, frames }, token);
    let freed = false;
    return {
      paddr: (BigInt(KERNEL_STORE) << STORE_SHIFT) + (BigInt(start) << FRAME_SHIFT),
      bytes,
      free: () => {
        if (freed) return;
        freed = true;
        this.kernelGone.unregister(token);
        this.dropKernel(start, frames);
        const list = this.kernelFree.get(frames) ?? [];
        list.push(start);
        this.kernelFree.set(frames, list);
      },
    };
  }

  private dropKernel(first: number, frames: number): void {
    const entry = this.kernel.get(first);
    if (!entry || entry.first !== first) return;
    for (let f = 0; f < frames; f++) if (this.kernel.get(first + f) === entry) this.kernel.delete(first + f);
  }

  /** Live bytes of [paddr, paddr + length), which must lie in one frame. */
  private frameBytes(paddr: bigint, length: number): Uint8Array {
    const id = Number(paddr >> STORE_SHIFT);
    const frame = Number((paddr >> FRAME_SHIFT) & BigInt(FRAME_MASK));
    const at = Number(paddr & BigInt(FRAME - 1));
    if (id === KERNEL_STORE) {
      const a = this.kernel.get(frame);
      const view = a?.bytes.deref();
      if (a && view) {
        const off = (frame - a.first) * FRAME + at;
        return new Uint8Array(view.buffer, off, length);
      }
    } else {
      const s = this.stores.get(id);
      if (s?.live()) {
        const page = s.scattered ? unscatterFrame(id, frame) : frame;
        if (page * FRAME < s.size) return s.bytes(page * FRAME + at, length);
      }
    }
    const key = paddr >> FRAME_SHIFT;
    let f = this.stray.get(key);
    if (!f) {
      f = new Uint8Array(FRAME);
      this.stray.set(key, f);
    }
    return f.subarray(at, at + length);
  }

  /** The frame-bounded pieces of [paddr, paddr + length). */
  private pieces(paddr: bigint, length: number): Uint8Array[] {
    const out: Uint8Array[] = [];
    let a = paddr;
    let left = length;
    while (left > 0) {
      const n = Math.min(left, FRAME - Number(a & BigInt(FRAME - 1)));
      out.push(this.frameBytes(a, n));
      a += BigInt(n);
      left -= n;
    }
    return out;
  }

  /** A copy of the bytes at [paddr, paddr + length). */
  read(paddr: bigint, length: number): Uint8Array {
    const out = new Uint8Array(length);
    let at = 0;
    for (const p of this.pieces(paddr, length)) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }

  /** Stores `data` at `paddr` (across frames, wherever they are). */
  write(paddr: bigint, data: Uint8Array): void {
    let at = 0;
    for (const p of this.pieces(paddr, data.length)) {
      p.set(data.subarray(at, at + p.length));
      at += p.length;
    }
  }

  /**
   * What the firmware gets for [paddr, paddr + length): a live view when it lies in one frame or in
   * one contiguous piece of memory, otherwise a gathered copy that `commit()` scatters back.
   */
  view(paddr: bigint, length: number): PhysView {
    const parts = this.pieces(paddr, length);
    if (parts.length <= 1) return { paddr, bytes: parts[0] ?? new Uint8Array(0), commit: () => {} };
    const first = parts[0]!;
    const contiguous = parts.every(
      (p, i) => i === 0 || (p.buffer === first.buffer && p.byteOffset === parts[i - 1]!.byteOffset + parts[i - 1]!.length),
    );
    if (contiguous) return { paddr, bytes: new Uint8Array(first.buffer, first.byteOffset, length), commit: () => {} };
    const copy = this.read(paddr, length);
    return { paddr, bytes: copy, commit: () => this.write(paddr, copy) };
  }
}
