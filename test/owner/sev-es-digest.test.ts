/**
 * The SEV-ES launch digest of a QEMU + OVMF launch, predicted by the guest owner from the OVMF image,
 * the vCPU count and the CPU (as sev-snp-measure does). The OVMF image is synthetic, built here with
 * its footer GUID table; the VMSA fields are checked against values derived here from QEMU's reset
 * state (target/i386/cpu.c: x86_cpu_reset_hold(); target/i386/sev.c: sev_es_set_reset_vector()) and
 * what KVM writes into the VMSA (arch/x86/kvm/svm/sev.c: sev_es_sync_vmsa()), at the offsets of
 * `struct sev_es_save_area` (arch/x86/include/asm/svm.h). Then a launch on the mock, with the vCPUs
 * in that state, measures to the predicted digest.
 */
import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { MockHost } from '../../lib/backends/mock/index.js';
import { Kvm } from '../../lib/kvm/kvm.js';
import { SevLaunch } from '../../lib/sev/launch.js';
import { SevPlatform } from '../../lib/sev/platform.js';
import { KVM_X86_SEV_ES_VM, SEV_POLICY } from '../../lib/uapi/constants.js';
import {
  SevFormatError,
  buildKernelHashesTable,
  cpuSignature,
  expectedLaunchDigest,
  ovmfFooterTable,
  sevEsResetAddress,
  sevEsVmsas,
  sevHashesTableArea,
  verifyMeasurement,
} from '../../lib/owner/index.js';
import { AP_RESET, FW_SIZE, HASHES, HASHES_AREA, OTHER, RESET_BLOCK, fullImage, le32, ovmf } from '../helpers/ovmf-image.js';

// `struct sev_es_save_area` offsets (AMD APM vol. 2, table B-4).
const SEG = { es: 0x00, cs: 0x10, ss: 0x20, ds: 0x30, fs: 0x40, gs: 0x50, gdtr: 0x60, ldtr: 0x70, idtr: 0x80, tr: 0x90 };
const U64 = {
  efer: 0xd0,
  cr4: 0x148,
  cr0: 0x158,
  dr7: 0x160,
  dr6: 0x168,
  rflags: 0x170,
  rip: 0x178,
  g_pat: 0x268,
  rdx: 0x310,
  sev_features: 0x3b0,
  xcr0: 0x3e8,
};
const MXCSR = 0x408;
const X87_FCW = 0x410;

/** The page QEMU's reset state gives, field by field, written here from the APM layout. */
function expectedVmsa(eip: number, signature: number, fpu: boolean, sevFeatures = 0n): Buffer {
  const p = Buffer.alloc(4096);
  const seg = (off: number, sel: number, attr: number, limit: number, base: number) => {
    p.writeUInt16LE(sel, off);
    p.writeUInt16LE(attr, off + 2);
    p.writeUInt32LE(limit, off + 4);
    p.writeBigUInt64LE(BigInt(base), off + 8);
  };
  // x86_cpu_reset_hold: data segments P|S|W|A = 0x93; CS P|S|CS|R|A = 0x9b at 0xf000:…; LDT P|type 2; TR P|type 11.
  for (const s of ['es', 'ss', 'ds', 'fs', 'gs'] as const) seg(SEG[s], 0, 0x93, 0xffff, 0);
  seg(SEG.cs, 0xf000, 0x9b, 0xffff, eip - (eip % 0x10000));
  seg(SEG.gdtr, 0, 0, 0xffff, 0);
  seg(SEG.idtr, 0, 0, 0xffff, 0);
  seg(SEG.ldtr, 0, 0x82, 0xffff, 0);
  seg(SEG.tr, 0, 0x8b, 0xffff, 0);
  const set = (f: keyof typeof U64, v: bigint) => p.writeBigUInt64LE(v, U64[f]);
  set('efer', 0x1000n); // KVM sets EFER.SVME in the VMCB
  set('cr4', 0x40n); // KVM sets CR4.MCE
  set('cr0', 0x10n); // QEMU's 0x60000010, CD and NW cleared by KVM
  set('dr7', 0x400n);
  set('dr6', 0xffff0ff0n);
  set('rflags', 2n);
  set('rip', BigInt(eip % 0x10000));
  set('g_pat', 0x0007040600070406n);
  set('rdx', BigInt(signature)); // env->cpuid_version
  set('sev_features', sevFeatures);
  set('xcr0', 1n);
  if (fpu) {
    p.writeUInt32LE(0x1f80, MXCSR);
    p.writeUInt16LE(0x37f, X87_FCW);
  }
  return p;
}

test('CPU signatures: QEMU EPYC models as CPUID reports them', (t) => {
  t.is(cpuSignature({ family: 23, model: 1, stepping: 2 }), 0x00800f12); // EPYC (Naples)
  t.is(cpuSignature({ family: 23, model: 49, stepping: 0 }), 0x00830f10); // EPYC-Rome
  t.is(cpuSignature({ family: 25, model: 1, stepping: 1 }), 0x00a00f11); // EPYC-Milan
  t.is(cpuSignature({ family: 25, model: 17, stepping: 0 }), 0x00a10f10); // EPYC-Genoa
  t.is(cpuSignature({ family: 6, model: 0x55, stepping: 4 }), 0x00050654); // a family below 0xf: no extended family
  t.throws(() => cpuSignature({ family: 25, model: 1, stepping: 16 }), { code: 'ERR_OUT_OF_RANGE' });
});

test('the footer table: entries by GUID, the SEV-ES reset address, the hashes table area', (t) => {
  const img = fullImage();
  const table = ovmfFooterTable(img);
  t.deepEqual([...table.keys()].sort(), [HASHES, OTHER, RESET_BLOCK].sort());
  t.is(sevEsResetAddress(img), AP_RESET);
  t.deepEqual(sevHashesTableArea(img), HASHES_AREA);
  t.is(ovmfFooterTable(randomBytes(4096)).size, 0, 'no footer GUID: no table, as QEMU reads it');
  const broken = Buffer.from(img);
  broken.writeUInt16LE(0xffff, FW_SIZE - 50); // the table's length
  t.throws(() => ovmfFooterTable(broken), { instanceOf: SevFormatError, message: /do not fit/ });
  t.throws(() => sevEsResetAddress(ovmf(FW_SIZE, [[RESET_BLOCK, le32(0)]])), { instanceOf: SevFormatError, message: /zero/ });
});

test('VMSAs: the first vCPU at the reset vector, the others at the OVMF SEV-ES reset address; every field as QEMU + KVM set it', (t) => {
  const img = fullImage();
  const sig = 0x00a00f11;
  const pages = sevEsVmsas(img, { vcpus: 3, cpu: 'EPYC-Milan' });
  t.is(pages.length, 3);
  t.deepEqual(pages[0], expectedVmsa(0xfffffff0, sig, true));
  t.deepEqual(pages[1], expectedVmsa(AP_RESET, sig, true));
  t.deepEqual(pages[2], pages[1]);
  // Spot checks of what the issue names, read back from the page.
  const bsp = pages[0]!;
  const ap = pages[1]!;
  t.is(bsp.readUInt16LE(SEG.cs), 0xf000);
  t.is(bsp.readBigUInt64LE(SEG.cs + 8), 0xffff0000n);
  t.is(bsp.readBigUInt64LE(U64.rip), 0xfff0n);
  t.is(ap.readBigUInt64LE(SEG.cs + 8), 0x00800000n);
  t.is(ap.readBigUInt64LE(U64.rip), 0xb004n);
  t.is(ap.readUInt16LE(SEG.cs + 2), 0x9b);
  t.is(ap.readUInt32LE(SEG.cs + 4), 0xffff);
  t.is(ap.readBigUInt64LE(U64.rdx), BigInt(sig));
  // The same CPU given three ways; legacy ES_INIT leaves the FPU out; SEV features land in the page.
  t.deepEqual(sevEsVmsas(img, { vcpus: 2, cpu: { family: 25, model: 1, stepping: 1 } }), pages.slice(0, 2));
  t.deepEqual(sevEsVmsas(img, { vcpus: 2, cpu: sig }), pages.slice(0, 2));
  t.deepEqual(sevEsVmsas(img, { vcpus: 1, cpu: 'EPYC-Milan-v2', init: 'legacy' })[0], expectedVmsa(0xfffffff0, sig, false));
  t.deepEqual(sevEsVmsas(img, { vcpus: 1, cpu: sig, sevFeatures: 1n << 5n })[0], expectedVmsa(0xfffffff0, sig, true, 1n << 5n));
  t.throws(() => sevEsVmsas(img, { vcpus: 1, cpu: 'Skylake' }), { code: 'ERR_INVALID_ARG_VALUE' });
  t.throws(() => sevEsVmsas(img, { vcpus: 0, cpu: sig }), { code: 'ERR_OUT_OF_RANGE' });
});

test('expectedLaunchDigest: SHA-256(OVMF ‖ kernel hashes table ‖ VMSAs); a kernel without a hashes table GUID, or SEV-ES without a reset block, is refused with the reason', (t) => {
  const img = fullImage();
  const sig = cpuSignature({ family: 23, model: 49, stepping: 0 });
  const kernel = { kernel: randomBytes(5000), initrd: randomBytes(300), cmdline: 'console=ttyS0' };
  const sha = (...parts: Uint8Array[]) => parts.reduce((h, p) => h.update(p), createHash('sha256')).digest();
  const vmsas = [
    expectedVmsa(0xfffffff0, sig, true),
    expectedVmsa(AP_RESET, sig, true),
    expectedVmsa(AP_RESET, sig, true),
    expectedVmsa(AP_RESET, sig, true),
  ];
  t.deepEqual(expectedLaunchDigest({ firmware: img, sevEs: { vcpus: 4, cpu: 'EPYC-Rome' } }), sha(img, ...vmsas));
  t.deepEqual(
    expectedLaunchDigest({ firmware: img, kernelHashes: kernel, sevEs: { vcpus: 4, cpu: 'EPYC-Rome' } }),
    sha(img, buildKernelHashesTable(kernel), ...vmsas),
  );
  t.deepEqual(expectedLaunchDigest({ firmware: img, kernelHashes: kernel }), sha(img, buildKernelHashesTable(kernel)), 'plain SEV');

  const noHashes = ovmf(FW_SIZE, [[RESET_BLOCK, le32(AP_RESET)]]);
  const e = t.throws(() => expectedLaunchDigest({ firmware: noHashes, kernelHashes: kernel, sevEs: { vcpus: 1, cpu: sig } }), {
    instanceOf: SevFormatError,
  });
  t.regex(e.message, new RegExp(`no SEV hashes table \\(no footer table GUID ${HASHES}\\)`));
  t.regex(e.message, /QEMU refuses direct kernel boot/);
  t.notThrows(() => expectedLaunchDigest({ firmware: noHashes, sevEs: { vcpus: 1, cpu: sig } }), 'no kernel: no table needed');
  const small = ovmf(FW_SIZE, [[HASHES, le32(0x80c00, 0x80)]]);
  t.throws(() => expectedLaunchDigest({ firmware: small, kernelHashes: kernel }), {
    instanceOf: SevFormatError,
    message: /cannot hold the 176-byte table/,
  });

  const noReset = ovmf(FW_SIZE, [[HASHES, le32(HASHES_AREA.base, HASHES_AREA.size)]]);
  t.throws(() => expectedLaunchDigest({ firmware: noReset, sevEs: { vcpus: 2, cpu: sig } }), {
    instanceOf: SevFormatError,
    message: new RegExp(`no SEV-ES reset block \\(footer table GUID ${RESET_BLOCK}\\)`),
  });
  t.throws(() => expectedLaunchDigest({ firmware: img, sevEs: { vcpus: 1, cpu: sig }, vmsas: [] }), { code: 'ERR_INVALID_ARG_VALUE' });
});

test('a QEMU-like SEV-ES launch on the mock (OVMF below 4 GiB, kernel hashes, 2 vCPUs at reset) measures to the predicted digest', async (t) => {
  const img = fullImage();
  const kernel = { kernel: randomBytes(3000), cmdline: 'root=/dev/vda' };
  const sig = cpuSignature({ family: 25, model: 1, stepping: 1 });
  const host = new MockHost({ processor: 'milan' });
  using kvm = Kvm.open({ backend: host });
  using vm = kvm.createVm(KVM_X86_SEV_ES_VM);
  await using platform = SevPlatform.open(kvm.backend);
  const low = vm.addMemory({ guestPhysAddr: 0n, size: 0x100000 });
  const flash = vm.addMemory({ guestPhysAddr: 0x1_0000_0000n - BigInt(FW_SIZE), size: FW_SIZE });
  flash.write(flash.guestPhysAddr, img);
  const table = buildKernelHashesTable(kernel);
  low.write(BigInt(HASHES_AREA.base), table); // QEMU copies the table into the area OVMF names
  const guest = await SevLaunch.init(vm, { platform, es: true });
  const vcpus = [0, 1].map((id) => vm.createVcpu(id));
  const launching = await guest.launchStart({ policy: SEV_POLICY.ES }); // no session: the TIK is zero
  await launching.launchUpdateData(flash);
  await launching.launchUpdateData(low.range(BigInt(HASHES_AREA.base), table.length));
  // What QEMU puts in each vCPU (x86_cpu_reset_hold, kvm_arch_put_registers), as KVM's VMCB holds it.
  for (const [i, v] of vcpus.entries()) {
    const eip = i === 0 ? 0xfffffff0 : AP_RESET;
    const seg = (selector: number, base: bigint, type: number, s: number) => ({
      selector,
      base,
      limit: 0xffff,
      type,
      s,
      present: 1,
      dpl: 0,
      db: 0,
      l: 0,
      g: 0,
      avl: 0,
      unusable: 0,
    });
    const data = seg(0, 0n, 3, 1);
    v.setSregs({
      ...v.getSregs(),
      cs: seg(0xf000, BigInt(eip - (eip % 0x10000)), 0xb, 1),
      ds: data,
      es: data,
      fs: data,
      gs: data,
      ss: data,
      ldt: seg(0, 0n, 2, 0),
      tr: seg(0, 0n, 0xb, 0),
      gdt: { base: 0n, limit: 0xffff },
      idt: { base: 0n, limit: 0xffff },
      cr0: 0x10n,
      cr4: 0x40n,
      efer: 0x1000n,
    });
    v.setRegs({ rip: BigInt(eip % 0x10000), rdx: BigInt(sig), rflags: 2n });
    v.setMsrs([{ index: 0x277, data: 0x0007040600070406n }]);
  }
  await launching.launchUpdateVmsa();
  const measured = await launching.launchMeasure();
  const st = await platform.platformStatus();
  const digest = expectedLaunchDigest({ firmware: img, kernelHashes: kernel, sevEs: { vcpus: 2, cpu: 'EPYC-Milan' } });
  t.true(
    verifyMeasurement({
      measurement: measured.measurement,
      tik: Buffer.alloc(16),
      apiMajor: st.apiMajor,
      apiMinor: st.apiMinor,
      build: st.build,
      policy: SEV_POLICY.ES,
      digest,
    }),
  );
  const wrong = expectedLaunchDigest({ firmware: img, kernelHashes: kernel, sevEs: { vcpus: 2, cpu: 'EPYC-Rome' } });
  t.false(
    verifyMeasurement({ measurement: measured.measurement, tik: Buffer.alloc(16), ...st, policy: SEV_POLICY.ES, digest: wrong }),
    'another CPU',
  );
});
