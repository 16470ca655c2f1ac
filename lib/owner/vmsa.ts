/**
 * The VMSA pages a QEMU + OVMF SEV-ES launch measures (LAUNCH_UPDATE_VMSA), built as
 * sev-snp-measure's vmsa.py builds them for QEMU: `struct sev_es_save_area`
 * (arch/x86/include/asm/svm.h; AMD APM vol. 2, table B-4) holding the vCPU state QEMU gives at reset
 * (target/i386/cpu.c: x86_cpu_reset_hold()) as KVM writes it into the VMSA
 * (arch/x86/kvm/svm/sev.c: sev_es_sync_vmsa()).
 *
 * - CS: selector 0xf000, limit 0xffff, attributes 0x9b (present, code, readable, accessed); the
 *   first vCPU starts at the architectural reset vector 0xfffffff0 (CS base 0xffff0000, RIP 0xfff0),
 *   every other one at the OVMF's SEV-ES reset address (CS base = its upper 16 bits, RIP = its lower
 *   16; target/i386/sev.c: sev_es_set_reset_vector()).
 * - DS, ES, FS, GS, SS: selector 0, limit 0xffff, attributes 0x93 (present, data, writable, accessed).
 * - GDTR, IDTR: limit 0xffff. LDTR: limit 0xffff, attributes 0x82. TR: limit 0xffff, attributes 0x8b.
 * - RDX: the CPUID signature (family, model, stepping; QEMU's `cpuid_version`). RFLAGS 0x2.
 * - CR0 0x10 (QEMU's 0x60000010 without CD and NW, which KVM clears in the VMCB); CR4 0x40 (KVM sets
 *   MCE); EFER 0x1000 (KVM sets SVME). DR6 0xffff0ff0, DR7 0x400. G_PAT 0x0007040600070406. XCR0 1.
 * - With KVM_SEV_INIT2 (a KVM_X86_SEV_ES_VM, QEMU 9.1+ on Linux 6.11+) KVM also copies the FPU
 *   state: MXCSR 0x1f80, x87 FCW 0x37f (an empty tag word is 0 in the abridged form). Legacy
 *   KVM_SEV_ES_INIT leaves them zero.
 * - SEV_FEATURES: the VMSA features given to INIT2 (0 by default for SEV-ES).
 */
import { checkObject, checkU8, checkU32 } from '../uapi/args.js';
import { invalidArgType, invalidArgValue, outOfRange } from '../crypto/errors.js';

export const VMSA_SIZE = 4096;
/** Where the first vCPU starts: the architectural reset vector. */
export const BSP_RESET_EIP = 0xfffffff0;

/** Offsets in `struct sev_es_save_area`. */
const VMSA_OFFSET = {
  es: 0x000,
  cs: 0x010,
  ss: 0x020,
  ds: 0x030,
  fs: 0x040,
  gs: 0x050,
  gdtr: 0x060,
  ldtr: 0x070,
  idtr: 0x080,
  tr: 0x090,
  efer: 0x0d0,
  cr4: 0x148,
  cr3: 0x150,
  cr0: 0x158,
  dr7: 0x160,
  dr6: 0x168,
  rflags: 0x170,
  rip: 0x178,
  rsp: 0x1d8,
  rax: 0x1f8,
  g_pat: 0x268,
  rcx: 0x308,
  rdx: 0x310,
  sev_features: 0x3b0,
  xcr0: 0x3e8,
  mxcsr: 0x408,
  x87_ftw: 0x40c,
  x87_fsw: 0x40e,
  x87_fcw: 0x410,
} as const;

/** A CPU as family, model and stepping (CPUID Fn0000_0001_EAX, decoded). */
export interface CpuIdentity {
  family: number;
  model: number;
  stepping: number;
}

/**
 * The signature of QEMU's built-in AMD EPYC CPU models (target/i386/cpu.c: builtin_x86_defs); a
 * `-vN` suffix names the same CPU.
 */
export const QEMU_EPYC_CPUS: Readonly<Record<string, CpuIdentity>> = {
  EPYC: { family: 23, model: 1, stepping: 2 },
  'EPYC-IBPB': { family: 23, model: 1, stepping: 2 },
  'EPYC-Rome': { family: 23, model: 49, stepping: 0 },
  'EPYC-Milan': { family: 25, model: 1, stepping: 1 },
  'EPYC-Genoa': { family: 25, model: 17, stepping: 0 },
  'EPYC-Turin': { family: 26, model: 0, stepping: 0 },
};

/**
 * CPUID Fn0000_0001_EAX from family, model and stepping (AMD CPUID specification, pub. 25481):
 * a family above 0xf is 0xf plus the extended family; the model's upper nibble is the extended model.
 */
export function cpuSignature(cpu: CpuIdentity): number {
  checkObject('cpu', cpu);
  const family = checkU8('cpu.family', cpu.family);
  const model = checkU8('cpu.model', cpu.model);
  const stepping = checkU8('cpu.stepping', cpu.stepping);
  if (family > 0xf + 0xff) throw outOfRange('cpu.family', 'an integer <= 270', family);
  if (stepping > 0xf) throw outOfRange('cpu.stepping', 'an integer <= 15', stepping);
  const [famLow, famExt] = family > 0xf ? [0xf, family - 0xf] : [family, 0];
  return ((famExt << 20) | ((model >> 4) << 16) | (famLow << 8) | ((model & 0xf) << 4) | stepping) >>> 0;
}

/** A CPU given as a signature, a family/model/stepping, or a QEMU EPYC model name. */
export type CpuInput = number | string | CpuIdentity;

/** The CPUID signature of a {@link CpuInput}. */
export function toCpuSignature(cpu: CpuInput, name = 'cpu'): number {
  if (typeof cpu === 'number') return checkU32(name, cpu);
  if (typeof cpu === 'string') {
    const known = QEMU_EPYC_CPUS[cpu.replace(/-v\d+$/, '')];
    if (!known)
      throw invalidArgValue(
        name,
        cpu,
        `is not a QEMU EPYC model (${Object.keys(QEMU_EPYC_CPUS).join(', ')}); give { family, model, stepping }`,
      );
    return cpuSignature(known);
  }
  if (typeof cpu === 'object' && cpu !== null) return cpuSignature(cpu);
  throw invalidArgType(name, 'a signature (number), a QEMU EPYC model name or { family, model, stepping }', cpu);
}

export interface QemuVmsaOptions {
  /** Where this vCPU starts: {@link BSP_RESET_EIP} for the first, the OVMF's SEV-ES reset address for the others. */
  eip: number;
  /** CPUID signature (RDX at reset). */
  cpuSignature: number;
  /** The VMSA features (SEV_FEATURES); default 0. */
  sevFeatures?: bigint;
  /** 'init2' (default): KVM copies the FPU state into the VMSA; 'legacy' (KVM_SEV_ES_INIT): it does not. */
  init?: 'init2' | 'legacy';
}

function seg(dv: DataView, off: number, selector: number, attrib: number, limit: number, base: number): void {
  dv.setUint16(off, selector, true);
  dv.setUint16(off + 2, attrib, true);
  dv.setUint32(off + 4, limit, true);
  dv.setBigUint64(off + 8, BigInt(base), true);
}

/** One VMSA page as QEMU's reset state gives it (see the module comment). */
export function qemuResetVmsa(opts: QemuVmsaOptions): Buffer {
  checkObject('options', opts);
  const eip = checkU32('options.eip', opts.eip);
  const sig = checkU32('options.cpuSignature', opts.cpuSignature);
  const features = opts.sevFeatures ?? 0n;
  if (typeof features !== 'bigint' || features < 0n || features >= 1n << 64n)
    throw invalidArgType('options.sevFeatures', 'a u64 bigint', opts.sevFeatures);
  const init = opts.init ?? 'init2';
  if (init !== 'init2' && init !== 'legacy') throw invalidArgValue('options.init', init, "must be 'init2' or 'legacy'");
  const page = Buffer.alloc(VMSA_SIZE);
  const dv = new DataView(page.buffer, page.byteOffset, page.byteLength);
  const O = VMSA_OFFSET;
  for (const off of [O.es, O.ss, O.ds, O.fs, O.gs]) seg(dv, off, 0, 0x93, 0xffff, 0);
  seg(dv, O.cs, 0xf000, 0x9b, 0xffff, (eip & 0xffff0000) >>> 0);
  seg(dv, O.gdtr, 0, 0, 0xffff, 0);
  seg(dv, O.idtr, 0, 0, 0xffff, 0);
  seg(dv, O.ldtr, 0, 0x82, 0xffff, 0);
  seg(dv, O.tr, 0, 0x8b, 0xffff, 0);
  dv.setBigUint64(O.efer, 0x1000n, true);
  dv.setBigUint64(O.cr4, 0x40n, true);
  dv.setBigUint64(O.cr0, 0x10n, true);
  dv.setBigUint64(O.dr7, 0x400n, true);
  dv.setBigUint64(O.dr6, 0xffff0ff0n, true);
  dv.setBigUint64(O.rflags, 0x2n, true);
  dv.setBigUint64(O.rip, BigInt(eip & 0xffff), true);
  dv.setBigUint64(O.g_pat, 0x0007040600070406n, true);
  dv.setBigUint64(O.rdx, BigInt(sig), true);
  dv.setBigUint64(O.sev_features, features, true);
  dv.setBigUint64(O.xcr0, 1n, true);
  if (init === 'init2') {
    dv.setUint32(O.mxcsr, 0x1f80, true);
    dv.setUint16(O.x87_fcw, 0x37f, true);
  }
  return page;
}
