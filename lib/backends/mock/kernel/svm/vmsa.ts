/**
 * The VMSA page LAUNCH_UPDATE_VMSA encrypts: `struct sev_es_save_area` of arch/x86/include/asm/svm.h
 * (4096 bytes), built from the vCPU's registers as sev_es_sync_vmsa does. Layout used (offsets):
 * segments es 0x000, cs 0x010, ss 0x020, ds 0x030, fs 0x040, gs 0x050, gdtr 0x060, ldtr 0x070,
 * idtr 0x080, tr 0x090 (vmcb_seg: selector u16, attrib u16, limit u32, base u64); cpl 0x0cb;
 * efer 0x0d0; xss 0x140; cr4 0x148; cr3 0x150; cr0 0x158; dr7 0x160; dr6 0x168; rflags 0x170;
 * rip 0x178; dr0-3 0x180-0x198; rsp 0x1d8; rax 0x1f8; star 0x200; lstar 0x208; cstar 0x210;
 * sfmask 0x218; kernel_gs_base 0x220; sysenter_cs/esp/eip 0x228-0x238; cr2 0x240; g_pat 0x268;
 * rcx 0x308; rdx 0x310; rbx 0x318; rbp 0x328; rsi 0x330; rdi 0x338; r8-r15 0x340-0x378;
 * sev_features 0x3b0; xcr0 0x3e8; and, for VM types other than DEFAULT only (as KVM does), the FPU:
 * mxcsr 0x408, x87_ftw 0x40c, x87_fsw 0x40e, x87_fcw 0x410, x87_fop 0x412, x87 registers 0x420
 * (10 bytes each), xmm 0x470 (16 each). Everything else is zero.
 */
import { kvm_regs, kvm_sregs } from '../../../../uapi/kvm-structs.js';
import type { VcpuRegisterState } from './sev-types.js';

const SEGS: readonly [name: 'es' | 'cs' | 'ss' | 'ds' | 'fs' | 'gs' | 'ldt' | 'tr', off: number][] = [
  ['es', 0x00],
  ['cs', 0x10],
  ['ss', 0x20],
  ['ds', 0x30],
  ['fs', 0x40],
  ['gs', 0x50],
  ['ldt', 0x70],
  ['tr', 0x90],
];
const GPRS: readonly [name: keyof ReturnType<typeof kvm_regs.decode>, off: number][] = [
  ['rcx', 0x308],
  ['rdx', 0x310],
  ['rbx', 0x318],
  ['rbp', 0x328],
  ['rsi', 0x330],
  ['rdi', 0x338],
  ['r8', 0x340],
  ['r9', 0x348],
  ['r10', 0x350],
  ['r11', 0x358],
  ['r12', 0x360],
  ['r13', 0x368],
  ['r14', 0x370],
  ['r15', 0x378],
  ['rax', 0x1f8],
  ['rsp', 0x1d8],
  ['rip', 0x178],
  ['rflags', 0x170],
];
const MSRS: readonly [index: number, off: number][] = [
  [0xc0000081, 0x200],
  [0xc0000082, 0x208],
  [0xc0000083, 0x210],
  [0xc0000084, 0x218],
  [0xc0000102, 0x220],
  [0x174, 0x228],
  [0x175, 0x230],
  [0x176, 0x238],
  [0x277, 0x268],
];

export function buildVmsa(s: VcpuRegisterState, vmType: number, sevFeatures: bigint): Uint8Array {
  const page = new Uint8Array(4096);
  const dv = new DataView(page.buffer);
  const regs = kvm_regs.decode(s.regs);
  const sregs = kvm_sregs.decode(s.sregs);
  for (const [name, off] of SEGS) {
    const g = sregs[name];
    const attrib =
      (g.type & 0xf) |
      ((g.s & 1) << 4) |
      ((g.dpl & 3) << 5) |
      ((g.present & 1) << 7) |
      ((g.avl & 1) << 8) |
      ((g.l & 1) << 9) |
      ((g.db & 1) << 10) |
      ((g.g & 1) << 11);
    dv.setUint16(off, g.selector, true);
    dv.setUint16(off + 2, attrib, true);
    dv.setUint32(off + 4, g.limit, true);
    dv.setBigUint64(off + 8, g.base, true);
  }
  for (const [t, off] of [
    [sregs.gdt, 0x60],
    [sregs.idt, 0x80],
  ] as const) {
    dv.setUint32(off + 4, t.limit, true);
    dv.setBigUint64(off + 8, t.base, true);
  }
  page[0xcb] = sregs.cs.dpl & 3;
  dv.setBigUint64(0xd0, sregs.efer, true);
  dv.setBigUint64(0x148, sregs.cr4, true);
  dv.setBigUint64(0x150, sregs.cr3, true);
  dv.setBigUint64(0x158, sregs.cr0, true);
  dv.setBigUint64(0x240, sregs.cr2, true);
  dv.setBigUint64(0x160, s.dr7, true);
  dv.setBigUint64(0x168, s.dr6, true);
  s.db.forEach((v, i) => dv.setBigUint64(0x180 + 8 * i, v, true));
  for (const [name, off] of GPRS) dv.setBigUint64(off, regs[name], true);
  for (const [index, off] of MSRS) dv.setBigUint64(off, s.msrs.get(index) ?? 0n, true);
  dv.setBigUint64(0x3b0, sevFeatures, true);
  dv.setBigUint64(0x3e8, s.xcr0, true);
  if (vmType !== 0) {
    const x = s.xsave;
    page.set(x.subarray(24, 28), 0x408); // mxcsr
    page[0x40c] = x[4]!; // abridged tag word
    page.set(x.subarray(2, 4), 0x40e); // fsw
    page.set(x.subarray(0, 2), 0x410); // fcw
    page.set(x.subarray(6, 8), 0x412); // fop
    for (let i = 0; i < 8; i++) page.set(x.subarray(32 + 16 * i, 42 + 16 * i), 0x420 + 10 * i);
    page.set(x.subarray(160, 416), 0x470);
  }
  return page;
}
