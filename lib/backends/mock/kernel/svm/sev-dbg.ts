/**
 * KVM_SEV_DBG_DECRYPT / DBG_ENCRYPT: arch/x86/kvm/svm/sev.c `sev_dbg_crypt()` of each kernel
 * profile, on physical addresses. The firmware works in 16-byte granules (16-aligned addresses and
 * lengths), so the kernel goes through a kernel buffer when the caller's addresses or length are not
 * aligned. The firmware gets the frames the kernel pinned (kernel/common/phys-memory.ts): a range
 * that runs past its page reaches whatever frame is physically next, as on a host.
 *
 * `7.2` (the rewrite of the debug {de,en}crypt flows, 2026): argument checks `!len || !src || !dst`
 * and a wrap of `src + len` or `dst + len` are EINVAL; each step moves at most to the end of the
 * source page *and* of the destination page (`min3()`), pins one page of each (sev_pin_page());
 * aligned steps go straight to the firmware, the others take a "slow" path through a kmalloc'd buffer
 * of `round_up(len, 16)` bytes, 16 more when the aligned span does not cover the access: decrypt
 * reads the span into it and copies the asked bytes out; encrypt decrypts the destination span into
 * it, copies the source in at the destination's offset and encrypts the whole span back. Every
 * length and offset round-trips exactly (selftest sev_dbg_test).
 *
 * `6.12` (and the 2021 kernel, whose code is the same): `__sev_dbg_decrypt_user()` and
 * `__sev_dbg_encrypt_user()`. Checks `!len || src + len` wrapping, then `!dst`, are EINVAL (a NULL
 * source is pinned, and fails). Each step is bounded by the source page only, so a destination
 * offset beyond the source's makes the firmware run past the destination page into the physically
 * next frame. Encrypt with an unaligned destination or length decrypts `round_up(len + off, 16)`
 * bytes into one page, copies the source in at `off`, then re-encrypts only `round_up(len, 16)` bytes
 * from the rounded-down destination: the last `off` bytes of the span are not written.
 */
import { PAGE_SIZE } from '../../../../uapi/constants.js';
import { E, fail } from '../common/errno.js';
import type { KernelProfile } from '../common/kernel-profile.js';
import type { PhysRange } from '../../psp/api.js';
import type { PhysView } from '../common/phys-memory.js';
import type { UserMemory } from '../common/user-memory.js';
import type { SevMemory } from './sev-memory.js';
import type { SevVm } from './sev-types.js';

const U64_MAX = 0xffff_ffff_ffff_ffffn;

export interface DbgContext {
  readonly kernel: KernelProfile;
  readonly mem: UserMemory;
  readonly memory: SevMemory;
  readonly vm: SevVm;
  /** One firmware DBG_DECRYPT (true) or DBG_ENCRYPT command (throws its KernelErrno). */
  issue(decrypt: boolean, src: PhysRange, dst: PhysRange): void;
}

/** Memory as the firmware addresses it: views of the bytes from a base physical address on. */
interface PhysPage {
  view(delta: number, length: number): PhysView;
}

const roundUp16 = (n: number): number => (n + 15) & ~15;
const aligned16 = (n: bigint | number): boolean => (typeof n === 'bigint' ? (n & 15n) === 0n : (n & 15) === 0);

/** The pinned user page at `uaddr` (page-aligned) as the firmware sees it (__sme_page_pa()). */
function userPage(ctx: DbgContext, uaddr: bigint): PhysPage {
  const seg = ctx.mem.view(uaddr, 1)[0]!;
  const region = seg.region;
  if (region.framed) {
    const paddr = region.phys(seg.offset);
    return { view: (delta, length) => ctx.mem.phys.view(paddr + BigInt(delta), length) };
  }
  // A foreign mapping: one contiguous range, tweaked by the guest-physical address inside a slot.
  const slot = [...ctx.vm.port.memslots()].find((m) => uaddr >= m.uaddr && uaddr < m.uaddr + BigInt(m.size));
  const paddr = slot ? slot.gpa + (uaddr - slot.uaddr) : region.phys(seg.offset);
  return {
    view(delta, length) {
      const off = seg.offset + delta;
      const room = Math.min(region.size, (Math.floor(seg.offset / region.chunk) + 1) * region.chunk) - off;
      return { paddr: paddr + BigInt(delta), bytes: region.bytes(off, Math.max(0, Math.min(length, room))), commit: () => {} };
    },
  };
}

/** A kernel allocation (alloc_page, kmalloc) for one step; free() after. */
function kernelBuffer(ctx: DbgContext, size: number): PhysPage & { paddr: bigint; free(): void } {
  const a = ctx.mem.kernelPage(size);
  return { paddr: a.paddr, free: () => a.free(), view: (delta, length) => ctx.mem.phys.view(a.paddr + BigInt(delta), length) };
}

/** One firmware command; the destination view is stored back (a range gathered across frames). */
function issue(ctx: DbgContext, decrypt: boolean, src: PhysView, dst: PhysView): void {
  ctx.issue(decrypt, src, dst);
  dst.commit();
}

/** sev_dbg_crypt() */
export function sevDbg(ctx: DbgContext, srcUaddr: bigint, dstUaddr: bigint, len: number, decrypt: boolean): void {
  if (ctx.kernel === '7.2') {
    if (!len || !srcUaddr || !dstUaddr) fail(E.EINVAL, 'len, src_uaddr and dst_uaddr must be non-zero');
    if (srcUaddr + BigInt(len) > U64_MAX || dstUaddr + BigInt(len) > U64_MAX) fail(E.EINVAL, 'src_uaddr + len or dst_uaddr + len wraps');
  } else {
    if (!len || srcUaddr + BigInt(len) > U64_MAX) fail(E.EINVAL, 'len is 0 or src_uaddr + len wraps');
    if (!dstUaddr) fail(E.EINVAL, 'dst_uaddr is NULL');
  }
  const { memory, vm } = ctx;
  let done = 0;
  while (done < len) {
    const src = srcUaddr + BigInt(done);
    const dst = (dstUaddr + BigInt(done)) & U64_MAX;
    const sOff = Number(src & 0xfffn);
    const dOff = Number(dst & 0xfffn);
    let n = Math.min(PAGE_SIZE - sOff, len - done);
    if (ctx.kernel === '7.2') n = Math.min(n, PAGE_SIZE - dOff);
    const srcPin = memory.pin(vm, src & ~0xfffn, BigInt(PAGE_SIZE));
    let dstPin;
    try {
      dstPin = memory.pin(vm, dst & ~0xfffn, BigInt(PAGE_SIZE));
    } catch (e) {
      memory.unpin(vm, srcPin);
      throw e;
    }
    try {
      const srcPage = userPage(ctx, src & ~0xfffn);
      const dstPage = userPage(ctx, dst & ~0xfffn);
      if (ctx.kernel === '7.2') crypt72(ctx, decrypt, src, srcPage, dst, dstPage, n);
      else if (decrypt) decryptUser612(ctx, srcPage, sOff, src, dst, dstPage, dOff, n);
      else encryptUser612(ctx, srcPage, sOff, src, dst, dstPage, dOff, n);
    } finally {
      memory.unpin(vm, srcPin);
      memory.unpin(vm, dstPin);
    }
    done += n;
  }
}

// ---- 7.2 ----

/** One step: straight to the firmware when aligned, else sev_dbg_decrypt_slow() / sev_dbg_encrypt_slow(). */
function crypt72(ctx: DbgContext, decrypt: boolean, src: bigint, srcPage: PhysPage, dst: bigint, dstPage: PhysPage, n: number): void {
  const sOff = Number(src & 0xfffn);
  const dOff = Number(dst & 0xfffn);
  if (aligned16(src) && aligned16(dst) && aligned16(n)) return issue(ctx, decrypt, srcPage.view(sOff, n), dstPage.view(dOff, n));
  // sev_dbg_crypt_slow_alloc(): the 16-aligned span of the unaligned side, within its page.
  const va = decrypt ? src : dst;
  const page = decrypt ? srcPage : dstPage;
  const start = va & ~15n;
  let nr = roundUp16(n);
  if (start + BigInt(nr) < va + BigInt(n)) nr += 16;
  const spanOff = Number(start & 0xfffn);
  const buf = kernelBuffer(ctx, nr);
  try {
    issue(ctx, true, page.view(spanOff, nr), buf.view(0, nr));
    const at = Number(va & 15n);
    if (decrypt) {
      ctx.mem.copyToUser(dst, ctx.mem.phys.read(buf.paddr + BigInt(at), n));
      return;
    }
    ctx.mem.phys.write(buf.paddr + BigInt(at), ctx.mem.copyFromUser(src, n));
    issue(ctx, false, buf.view(0, nr), page.view(spanOff, nr));
  } finally {
    buf.free();
  }
}

// ---- 6.12 ----

/** __sev_dbg_decrypt(): the source rounded down, the length rounded up (source offset included). */
function dbgDecrypt612(
  ctx: DbgContext,
  src: PhysPage,
  srcDelta: number,
  srcPa: bigint,
  dst: PhysPage,
  dstDelta: number,
  size: number,
): void {
  const offset = Number(srcPa & 15n);
  const sz = roundUp16(size + offset);
  issue(ctx, true, src.view(srcDelta - offset, sz), dst.view(dstDelta, sz));
}

/** __sev_dbg_decrypt_user() */
function decryptUser612(
  ctx: DbgContext,
  srcPage: PhysPage,
  sOff: number,
  srcUaddr: bigint,
  dstUaddr: bigint,
  dstPage: PhysPage,
  dOff: number,
  size: number,
): void {
  // Physical and user addresses share their low 12 bits.
  if (!aligned16(dstUaddr) || !aligned16(srcUaddr) || !aligned16(size)) {
    const t = kernelBuffer(ctx, PAGE_SIZE); // alloc_page(__GFP_ZERO)
    try {
      dbgDecrypt612(ctx, srcPage, sOff, srcUaddr, t, 0, size);
      ctx.mem.copyToUser(dstUaddr, ctx.mem.phys.read(t.paddr + (srcUaddr & 15n), size));
    } finally {
      t.free();
    }
    return;
  }
  dbgDecrypt612(ctx, srcPage, sOff, srcUaddr, dstPage, dOff, size);
}

/** __sev_dbg_encrypt_user() */
function encryptUser612(
  ctx: DbgContext,
  srcPage: PhysPage,
  sOff: number,
  srcUaddr: bigint,
  dstUaddr: bigint,
  dstPage: PhysPage,
  dOff: number,
  size: number,
): void {
  let from: PhysPage = srcPage;
  let fromDelta = sOff;
  let srcTpage: ReturnType<typeof kernelBuffer> | undefined;
  let dstTpage: ReturnType<typeof kernelBuffer> | undefined;
  try {
    if (!aligned16(srcUaddr)) {
      srcTpage = kernelBuffer(ctx, PAGE_SIZE);
      ctx.mem.phys.write(srcTpage.paddr, ctx.mem.copyFromUser(srcUaddr, size));
      from = srcTpage;
      fromDelta = 0;
    }
    let toDelta = dOff;
    let length = size;
    if (!aligned16(dstUaddr) || !aligned16(size)) {
      // Read-modify-write through one page: decrypt the destination, copy the source in, re-encrypt.
      dstTpage = kernelBuffer(ctx, PAGE_SIZE);
      dbgDecrypt612(ctx, dstPage, dOff, dstUaddr, dstTpage, 0, size);
      const dstOffset = Number(dstUaddr & 15n);
      const data = srcTpage ? ctx.mem.phys.read(srcTpage.paddr, size) : ctx.mem.copyFromUser(srcUaddr, size);
      ctx.mem.phys.write(dstTpage.paddr + BigInt(dstOffset), data);
      from = dstTpage;
      fromDelta = 0;
      toDelta = dOff - dstOffset;
      length = roundUp16(size);
    }
    issue(ctx, false, from.view(fromDelta, length), dstPage.view(toDelta, length));
  } finally {
    srcTpage?.free();
    dstTpage?.free();
  }
}
