/**
 * Pinning, memlock accounting and encrypted regions (arch/x86/kvm/svm/sev.c: sev_pin_memory(),
 * sev_mem_enc_register_region(), sev_mem_enc_unregister_region()), and the
 * physical ranges the firmware gets.
 *
 * sev_pin_memory: size 0 or overflow → EINVAL; more than INT_MAX pages → EINVAL; (7.2) more than
 * totalram → EINVAL; `pages_locked + npages > RLIMIT_MEMLOCK >> 12` without CAP_IPC_LOCK → ENOMEM;
 * a short pin (anything unmapped) → ENOMEM. npages counts partial pages whole. Pins held by a
 * command count only while held.
 *
 * Pinning modes: `upfront` is mainline (REG_REGION pins and charges the whole range at once).
 * `demand` follows seed 001 (demand pinning): REG_REGION only records the range (the same argument
 * checks, nothing pinned or charged, unmapped ranges accepted); a page of a registered region is
 * pinned and charged the first time it is used (by a firmware command that pins it, or by the hybrid
 * reporting a guest fault, {@link SevMemory.touch}) and stays pinned until its region is unregistered
 * or the VM is destroyed. Pages outside any region are pinned per command as upfront.
 */
import { E, fail } from '../common/errno.js';
import type { PhysRange } from '../../psp/api.js';
import type { Segment, UserMemory } from '../common/user-memory.js';
import type { EncRegion, SevMemslot, SevVm } from './sev-types.js';

const INT_MAX = 0x7fffffff;
const U64_MAX = 0xffff_ffff_ffff_ffffn;

export interface MemlockConfig {
  /** RLIMIT_MEMLOCK in bytes. */
  readonly limit: bigint;
  readonly capIpcLock: boolean;
}

/** A command's pin. */
export interface Pin {
  readonly segments: Segment[];
  /** Pages charged for the pin itself (released by unpin). */
  readonly charged: number;
}

export class SevMemory {
  readonly mem: UserMemory;
  readonly memlock: MemlockConfig;
  readonly pinning: 'upfront' | 'demand';
  /** totalram in pages (7.2 checks it), or undefined. */
  readonly totalRamPages: number | undefined;

  constructor(mem: UserMemory, memlock: MemlockConfig, pinning: 'upfront' | 'demand', totalRamPages: number | undefined) {
    this.mem = mem;
    this.memlock = memlock;
    this.pinning = pinning;
    this.totalRamPages = totalRamPages;
  }

  private npages(addr: bigint, len: bigint): number {
    if (len === 0n || addr + len > U64_MAX + 1n || addr + len < addr) fail(E.EINVAL, 'zero length or overflow');
    const n = ((addr + len - 1n) >> 12n) - (addr >> 12n) + 1n;
    if (n > BigInt(INT_MAX)) fail(E.EINVAL, 'more than INT_MAX pages');
    if (this.totalRamPages !== undefined && n > BigInt(this.totalRamPages)) fail(E.EINVAL, 'more pages than totalram');
    return Number(n);
  }

  private checkLimit(vm: SevVm, more: number): void {
    if (this.memlock.capIpcLock) return;
    if (BigInt(vm.info.pagesLocked + more) > this.memlock.limit >> 12n) {
      fail(E.ENOMEM, `${vm.info.pagesLocked + more} locked pages exceed RLIMIT_MEMLOCK`);
    }
  }

  /** sev_pin_memory for a command (released with {@link unpin}). */
  pin(vm: SevVm, addr: bigint, len: bigint): Pin {
    const n = this.npages(addr, len);
    if (this.pinning === 'upfront') {
      this.checkLimit(vm, n);
      const segments = this.mem.pin(addr, Number(len));
      vm.info.pagesLocked += n;
      return { segments, charged: n };
    }
    // demand: pages of registered regions are pinned for good on first use.
    const first = addr >> 12n;
    let transient = 0;
    const fresh: { r: EncRegion; page: number }[] = [];
    for (let p = 0n; p < BigInt(n); p++) {
      const page = first + p;
      const r = vm.info.regions.find((x) => page >= x.addr >> 12n && page < (x.addr >> 12n) + BigInt(x.npages));
      if (!r) transient++;
      else if (r.pinned !== 'all' && !r.pinned.has(Number(page - (r.addr >> 12n)))) fresh.push({ r, page: Number(page - (r.addr >> 12n)) });
    }
    this.checkLimit(vm, transient + fresh.length);
    const segments = this.mem.pin(addr, Number(len));
    for (const f of fresh) (f.r.pinned as Set<number>).add(f.page);
    vm.info.pagesLocked += transient + fresh.length;
    return { segments, charged: transient };
  }

  unpin(vm: SevVm, p: Pin): void {
    vm.info.pagesLocked -= p.charged;
  }

  /** Demand mode: the guest touched [gpa, gpa+len) (the hybrid's NPT fault). */
  touch(vm: SevVm, uaddr: bigint, len: number): void {
    if (this.pinning !== 'demand') return;
    this.unpin(vm, this.pin(vm, uaddr, BigInt(len)));
  }

  /** KVM_MEMORY_ENCRYPT_REG_REGION after the ENOTTY / mirror checks. */
  register(vm: SevVm, addr: bigint, size: bigint): void {
    const n = this.npages(addr, size);
    if (this.pinning === 'demand') {
      vm.info.regions.push({ addr, size, npages: n, pinned: new Set() });
      return;
    }
    this.checkLimit(vm, n);
    this.mem.pin(addr, Number(size));
    vm.info.pagesLocked += n;
    vm.info.regions.push({ addr, size, npages: n, pinned: 'all' });
  }

  /** KVM_MEMORY_ENCRYPT_UNREG_REGION after its checks: exact (addr, size) or EINVAL. */
  unregister(vm: SevVm, addr: bigint, size: bigint): void {
    const i = vm.info.regions.findIndex((r) => r.addr === addr && r.size === size);
    if (i < 0) fail(E.EINVAL, 'no region with exactly this address and size');
    this.release(vm, vm.info.regions.splice(i, 1)[0]!);
  }

  /** __unregister_enc_region_locked */
  release(vm: SevVm, r: EncRegion): void {
    vm.info.pagesLocked -= r.pinned === 'all' ? r.npages : r.pinned.size;
  }

  releaseAll(vm: SevVm, list: EncRegion[]): void {
    for (const r of list.splice(0)) this.release(vm, r);
  }

  /**
   * The firmware's view of pinned segments: physically contiguous ranges, as the kernel merges
   * pinned pages (get_num_contig_pages()). Pages the mock owns are scattered 4 KiB frames, so each
   * page is a range of its own unless its frame follows the previous one. A foreign (native) mapping
   * is one contiguous range, with the guest-physical address as `paddr` where it lies in a memory
   * slot (split at slot boundaries): the mock cannot see the real frames.
   */
  physRanges(slots: Iterable<SevMemslot>, segments: readonly Segment[], from?: bigint, length?: number): PhysRange[] {
    return [...this.eachPhysRange(slots, segments, from, length)];
  }

  /**
   * {@link physRanges} one at a time, as the kernel's loops compute them (get_num_contig_pages() per
   * iteration): a launch's 4 KiB ranges then die young instead of a list of all of them surviving the GC.
   */
  *eachPhysRange(slots: Iterable<SevMemslot>, segments: readonly Segment[], from?: bigint, length?: number): Generator<PhysRange> {
    const list = [...slots];
    const start = from ?? segments[0]?.addr ?? 0n;
    const end = length === undefined ? undefined : start + BigInt(length);
    for (const s of segments) {
      let a = s.addr > start ? s.addr : start;
      const segEnd = s.addr + BigInt(s.length);
      const stop = end !== undefined && end < segEnd ? end : segEnd;
      if (s.region.framed) {
        yield* framedRuns(s, a, stop);
        continue;
      }
      while (a < stop) {
        const slot = list.find((m) => a >= m.uaddr && a < m.uaddr + BigInt(m.size));
        let b: bigint;
        let paddr: bigint;
        if (slot) {
          const se = slot.uaddr + BigInt(slot.size);
          b = se < stop ? se : stop;
          paddr = slot.gpa + (a - slot.uaddr);
        } else {
          b = stop;
          for (const m of list) if (m.uaddr > a && m.uaddr < b) b = m.uaddr;
          paddr = s.region.phys(s.offset + Number(a - s.addr));
        }
        yield { paddr, bytes: s.region.bytes(s.offset + Number(a - s.addr), Number(b - a)) };
        a = b;
      }
    }
  }
}

/** [a, stop) of a framed segment as physically contiguous runs (page by page, merged where frames are adjacent). */
function* framedRuns(s: Segment, a: bigint, stop: bigint): Generator<PhysRange> {
  // Offsets in the region as numbers: the only bigint per page is its physical address.
  let off = s.offset + Number(a - s.addr);
  const end = s.offset + Number(stop - s.addr);
  let runOff = off;
  let runLen = 0;
  let runPaddr = 0n;
  while (off < end) {
    const next = Math.min((Math.floor(off / 4096) + 1) * 4096, end);
    const paddr = s.region.phys(off);
    if (runLen > 0 && runPaddr + BigInt(runLen) === paddr) runLen += next - off;
    else {
      if (runLen > 0) yield { paddr: runPaddr, bytes: s.region.bytes(runOff, runLen) };
      runOff = off;
      runLen = next - off;
      runPaddr = paddr;
    }
    off = next;
  }
  if (runLen > 0) yield { paddr: runPaddr, bytes: s.region.bytes(runOff, runLen) };
}
