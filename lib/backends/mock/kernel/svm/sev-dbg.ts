/**
 * KVM_SEV_DBG_DECRYPT / DBG_ENCRYPT as arch/x86/kvm/svm/sev.c: sev_dbg_crypt() does them: page by
 * page of the source (each step pins one source and one destination page and moves at most to the
 * end of the source page), with the kernel's bounce pages when an address or the length is not a
 * multiple of 16 (the firmware works in 16-byte granules): decrypt reads the rounded range into a
 * bounce page and copies the asked bytes out; encrypt does read-modify-write of the destination.
 * Byte for byte what the kernel does, including its quirk: an unaligned destination is re-encrypted
 * for round_up(len, 16) bytes from the rounded-down address, so bytes past that are not written.
 * "Physically next" bytes are the next bytes of the same backing store (user-memory.ts).
 */
import { PAGE_SIZE } from '../../../../uapi/constants.js';
import { E, fail } from '../common/errno.js';
import type { PhysRange } from '../../psp/api.js';
import type { UserMemory } from '../common/user-memory.js';
import type { SevMemory } from './sev-memory.js';
import type { SevVm } from './sev-types.js';

const U64_MAX = 0xffff_ffff_ffff_ffffn;

export interface DbgContext {
  readonly mem: UserMemory;
  readonly memory: SevMemory;
  readonly vm: SevVm;
  /** One firmware DBG_DECRYPT (true) or DBG_ENCRYPT command (throws its KernelErrno). */
  issue(decrypt: boolean, src: PhysRange, dst: PhysRange): void;
}

/** Memory as the firmware addresses it: a physical address with bytes from there on. */
interface PhysMem {
  at(delta: number, len: number): PhysRange;
  readonly paddr: bigint;
}

const roundUp16 = (n: number): number => (n + 15) & ~15;

function userPhys(ctx: DbgContext, uaddr: bigint): PhysMem {
  const seg = ctx.mem.view(uaddr, 1)[0]!;
  const slots = [...ctx.vm.port.memslots()];
  const slot = slots.find((m) => uaddr >= m.uaddr && uaddr < m.uaddr + BigInt(m.size));
  const paddr = slot ? slot.gpa + (uaddr - slot.uaddr) : seg.region.phys(seg.offset);
  return {
    paddr,
    at(delta, len) {
      const off = seg.offset + delta;
      const room = Math.min(seg.region.size, (Math.floor(seg.offset / seg.region.chunk) + 1) * seg.region.chunk) - off;
      return { paddr: paddr + BigInt(delta), bytes: seg.region.bytes(off, Math.max(0, Math.min(len, room))) };
    },
  };
}

function kernelPhys(ctx: DbgContext, pages = 2): PhysMem & { bytes: Uint8Array } {
  const kp = ctx.mem.kernelPage(PAGE_SIZE * pages);
  return {
    paddr: kp.paddr,
    bytes: kp.bytes,
    at: (delta, len) => ({ paddr: kp.paddr + BigInt(delta), bytes: kp.bytes.subarray(delta, delta + len) }),
  };
}

/** __sev_dbg_decrypt: rounds the source down and the length up to 16. */
function dbgDecryptRaw(ctx: DbgContext, src: PhysMem, srcDelta: number, dst: PhysMem, dstDelta: number, size: number): void {
  const offset = Number((src.paddr + BigInt(srcDelta)) & 15n);
  const sz = roundUp16(size + offset);
  ctx.issue(true, src.at(srcDelta - offset, sz), dst.at(dstDelta, sz));
}

export function sevDbg(ctx: DbgContext, srcUaddr: bigint, dstUaddr: bigint, len: number, decrypt: boolean): void {
  if (!len || !srcUaddr || !dstUaddr) fail(E.EINVAL, 'len, src_uaddr and dst_uaddr must be non-zero');
  if (srcUaddr + BigInt(len) > U64_MAX || dstUaddr + BigInt(len) > U64_MAX) fail(E.EINVAL, 'overflow');
  const { memory, vm } = ctx;
  let vaddr = srcUaddr;
  const end = srcUaddr + BigInt(len);
  let dst = dstUaddr;
  let size = len;
  while (vaddr < end) {
    const srcPin = memory.pin(vm, vaddr & ~0xfffn, BigInt(PAGE_SIZE));
    let dstPin;
    try {
      dstPin = memory.pin(vm, dst & ~0xfffn, BigInt(PAGE_SIZE));
    } catch (e) {
      memory.unpin(vm, srcPin);
      throw e;
    }
    try {
      const sOff = Number(vaddr & 0xfffn);
      const n = Math.min(PAGE_SIZE - sOff, size);
      const srcMem = userPhys(ctx, vaddr & ~0xfffn);
      const dstMem = userPhys(ctx, dst & ~0xfffn);
      const dOff = Number(dst & 0xfffn);
      if (decrypt) decryptUser(ctx, srcMem, sOff, dst, dstMem, dOff, n);
      else encryptUser(ctx, srcMem, sOff, vaddr, dstMem, dOff, n);
      vaddr += BigInt(n);
      dst += BigInt(n);
      size -= n;
    } finally {
      memory.unpin(vm, dstPin);
      memory.unpin(vm, srcPin);
    }
  }
}

/** __sev_dbg_decrypt_user */
function decryptUser(ctx: DbgContext, src: PhysMem, sOff: number, dstUaddr: bigint, dst: PhysMem, dOff: number, size: number): void {
  const srcPa = src.paddr + BigInt(sOff);
  const dstPa = dst.paddr + BigInt(dOff);
  if (dstPa & 15n || srcPa & 15n || size & 15) {
    const t = kernelPhys(ctx);
    dbgDecryptRaw(ctx, src, sOff, t, 0, size);
    const offset = Number(srcPa & 15n);
    ctx.mem.copyToUser(dstUaddr, t.bytes.subarray(offset, offset + size));
    return;
  }
  dbgDecryptRaw(ctx, src, sOff, dst, dOff, size);
}

/** __sev_dbg_encrypt_user */
function encryptUser(ctx: DbgContext, src: PhysMem, sOff: number, vaddr: bigint, dst: PhysMem, dOff: number, size: number): void {
  let from: PhysMem = src;
  let fromDelta = sOff;
  let srcCopy: Uint8Array | undefined;
  if (vaddr & 15n) {
    const t = kernelPhys(ctx, 1);
    srcCopy = ctx.mem.copyFromUser(vaddr, size);
    t.bytes.set(srcCopy);
    from = t;
    fromDelta = 0;
  }
  let to: PhysMem = dst;
  let toDelta = dOff;
  let length = size;
  const dstPa = dst.paddr + BigInt(dOff);
  if (dstPa & 15n || size & 15) {
    const t = kernelPhys(ctx);
    dbgDecryptRaw(ctx, dst, dOff, t, 0, size);
    const dstOffset = Number(dstPa & 15n);
    t.bytes.set(srcCopy ?? ctx.mem.copyFromUser(vaddr, size), dstOffset);
    from = t;
    fromDelta = 0;
    toDelta = dOff - dstOffset;
    length = roundUp16(size);
    to = dst;
  }
  ctx.issue(false, from.at(fromDelta, length), to.at(toDelta, length));
}
