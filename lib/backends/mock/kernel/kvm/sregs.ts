/**
 * The consistency check KVM_SET_SREGS applies before it loads anything (arch/x86/kvm/x86.c:
 * kvm_is_valid_sregs(), kvm_is_valid_cr0(), kvm_is_valid_cr4() with __cr4_reserved_bits() from
 * arch/x86/kvm/x86.h, kvm_vcpu_is_legal_cr3()): a failing combination is EINVAL and changes nothing.
 * EFER itself is not checked on this path (only a guest's WRMSR is), as on the kernel.
 */
import { kvm_sregs } from '../../../../uapi/kvm-structs.js';
import { E, fail } from '../common/errno.js';
import type { CpuidEntry } from './tables.js';

const bit = (n: number): bigint => 1n << BigInt(n);
const CR0_PE = bit(0);
const CR0_NW = bit(29);
const CR0_CD = bit(30);
const CR0_PG = bit(31);
const CR4_PAE = bit(5);
const EFER_LME = bit(8);
const EFER_LMA = bit(10);

/** CR4 bits KVM knows at all (CR4_RESERVED_BITS is their complement). */
const CR4_KNOWN = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 16, 17, 18, 20, 21, 22, 23, 28].reduce((m, n) => m | bit(n), 0n);

/** CR4 bits reserved unless the vCPU's CPUID has the feature: [CR4 bit, leaf, subleaf, register, feature bit]. */
const CR4_BY_FEATURE: [number, number, number, 'eax' | 'ebx' | 'ecx' | 'edx', number][] = [
  [18, 0x1, 0, 'ecx', 26], // OSXSAVE: XSAVE
  [20, 0x7, 0, 'ebx', 7], // SMEP
  [21, 0x7, 0, 'ebx', 20], // SMAP
  [16, 0x7, 0, 'ebx', 0], // FSGSBASE
  [22, 0x7, 0, 'ecx', 3], // PKE: PKU
  [12, 0x7, 0, 'ecx', 16], // LA57
  [11, 0x7, 0, 'ecx', 2], // UMIP
  [13, 0x1, 0, 'ecx', 5], // VMXE: VMX
  [17, 0x1, 0, 'ecx', 17], // PCIDE: PCID
  [28, 0x7, 1, 'eax', 26], // LAM_SUP: LAM
];

function has(cpuid: readonly CpuidEntry[], leaf: number, sub: number, reg: 'eax' | 'ebx' | 'ecx' | 'edx', n: number): boolean {
  const e = cpuid.find((x) => x.function === leaf && x.index === sub) ?? (sub === 0 ? cpuid.find((x) => x.function === leaf) : undefined);
  return e !== undefined && ((e[reg] >>> n) & 1) === 1;
}

/** cpuid_query_maxphyaddr(): CPUID 0x80000008 EAX[7:0], or 36 without that leaf. */
function maxPhysAddr(cpuid: readonly CpuidEntry[]): number {
  const top = cpuid.find((x) => x.function === 0x80000000);
  const leaf = cpuid.find((x) => x.function === 0x80000008);
  return top && top.eax >= 0x80000008 && leaf ? leaf.eax & 0xff : 36;
}

/** Returns `bytes` if KVM would load these sregs on a vCPU with this CPUID; EINVAL otherwise. */
export function validSregs(bytes: Uint8Array, cpuid: readonly CpuidEntry[]): Uint8Array {
  const s = kvm_sregs.decode(bytes);
  if (s.efer & EFER_LME && s.cr0 & CR0_PG) {
    // Paging with EFER.LME is 64-bit mode: CR4.PAE and EFER.LMA must be set, CR3 within MAXPHYADDR.
    if (!(s.cr4 & CR4_PAE) || !(s.efer & EFER_LMA)) fail(E.EINVAL, 'long mode needs CR4.PAE and EFER.LMA');
    if (s.cr3 >> BigInt(maxPhysAddr(cpuid))) fail(E.EINVAL, 'CR3 sets bits beyond MAXPHYADDR');
  } else if (s.efer & EFER_LMA || s.cs.l) fail(E.EINVAL, 'EFER.LMA or CS.L outside long mode');
  if (s.cr0 >> 32n) fail(E.EINVAL, 'CR0 bits 63:32 are reserved');
  if (s.cr0 & CR0_NW && !(s.cr0 & CR0_CD)) fail(E.EINVAL, 'CR0.NW without CR0.CD');
  if (s.cr0 & CR0_PG && !(s.cr0 & CR0_PE)) fail(E.EINVAL, 'CR0.PG without CR0.PE');
  let reserved = ~CR4_KNOWN & (bit(64) - 1n);
  for (const [cr4Bit, leaf, sub, reg, n] of CR4_BY_FEATURE) if (!has(cpuid, leaf, sub, reg, n)) reserved |= bit(cr4Bit);
  // CET: reserved unless the CPUID has shadow stacks (7.0 ECX[7]) or IBT (7.0 EDX[20]).
  if (!has(cpuid, 0x7, 0, 'ecx', 7) && !has(cpuid, 0x7, 0, 'edx', 20)) reserved |= bit(23);
  if (s.cr4 & reserved) fail(E.EINVAL, 'CR4 sets a reserved bit (or one the vCPU CPUID does not have)');
  return bytes;
}
