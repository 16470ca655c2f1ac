/**
 * The library above the backend contract runs unchanged on the mock host: Kvm, Vm and Vcpu state
 * round trips, and a full SEV launch with SevPlatform and SevGuestCommands verified by lib/owner
 * (chain, session, measurement, secret), DBG_DECRYPT returning the plaintext, SEV-ES VMSA protection.
 */
import test from 'ava';
import { Kvm } from '../../../lib/kvm/kvm.js';
import { MockHost, mockAmdRoot, rootBitsFor } from '../../../lib/backends/mock/index.js';
import {
  LUKS_KEY_GUID,
  buildSecret,
  createSession,
  launchDigest,
  parseSecretTable,
  verifyChain,
  verifyMeasurement,
} from '../../../lib/owner/index.js';
import { SevGuestCommands, SevPlatform } from '../../../lib/sev/index.js';
import { serializeAmdCert } from '../../../lib/crypto/index.js';
import {
  KVM_CAP,
  KVM_X86_DEFAULT_VM,
  KVM_X86_SEV_ES_VM,
  KVM_X86_GRP_SEV,
  KVM_X86_SEV_VMSA_FEATURES,
  SEV_POLICY,
} from '../../../lib/uapi/constants.js';

test('Kvm: API version, extensions, VM types, mmap size, CPUID (0x8000001F from the profile), MSRs, device attrs', (t) => {
  using kvm = Kvm.open({ backend: new MockHost({ processor: 'genoa' }) });
  t.is(kvm.apiVersion(), 12);
  t.is(kvm.checkExtension(KVM_CAP.USER_MEMORY), 1);
  t.deepEqual(kvm.supportedVmTypes(), [0, 2, 3]);
  t.is(kvm.vcpuMmapSize(), 12288);
  const leaf = kvm.supportedCpuid().find((e) => e.function === 0x8000001f)!;
  t.like(leaf, { eax: 0xb, ebx: 51, ecx: 1006, edx: 100 });
  t.true(kvm.msrIndexList().includes(0x174));
  t.is(kvm.deviceAttr(KVM_X86_GRP_SEV, KVM_X86_SEV_VMSA_FEATURES), 1n << 5n);
  using off = Kvm.open({ backend: new MockHost({ sev: { enabled: false } }) });
  t.like(
    off.supportedCpuid().find((e) => e.function === 0x8000001f),
    { eax: 0, ebx: 0, ecx: 0, edx: 0 },
  );
  t.deepEqual(off.supportedVmTypes(), [KVM_X86_DEFAULT_VM]);
});

test('Vcpu: reset values and regs, sregs, fpu (shared with xsave), xcrs, msrs, lapic, events, mp state, debugregs round-trip', (t) => {
  using kvm = Kvm.open({ backend: new MockHost() });
  using vm = kvm.createVm();
  vm.createIrqchip();
  const vcpu = vm.createVcpu(0);
  vcpu.setCpuid2(kvm.supportedCpuid());
  const regs = vcpu.getRegs();
  t.is(regs.rip, 0xfff0n);
  t.is(regs.rflags, 2n);
  vcpu.setRegs({ ...regs, rax: 0x1122_3344_5566_7788n, r15: 0xffff_ffff_ffff_fff0n, rip: 0x1000n, rflags: 0n });
  const r2 = vcpu.getRegs();
  t.is(r2.r15, 0xffff_ffff_ffff_fff0n);
  t.is(r2.rflags, 2n, 'bit 1 is fixed');
  const s = vcpu.getSregs();
  t.is(s.cs.base, 0xffff0000n);
  t.is(s.cs.selector, 0xf000);
  t.is(s.apic_base, 0xfee00900n);
  s.ds.base = 0x12340n;
  vcpu.setSregs(s);
  t.is(vcpu.getSregs().ds.base, 0x12340n);
  const fpu = vcpu.getFpu();
  t.is(fpu.fcw, 0x37f);
  t.is(fpu.mxcsr, 0x1f80);
  fpu.fcw = 0x27f;
  fpu.xmm[3] = new Uint8Array(16).fill(0xa5);
  vcpu.setFpu(fpu);
  t.is(vcpu.getFpu().fcw, 0x27f);
  const xsave = vcpu.getXsave();
  t.is(new DataView(xsave.buffer, xsave.byteOffset).getUint16(0, true), 0x27f, 'FPU and XSAVE are one state');
  t.is(xsave[160 + 48], 0xa5);
  vcpu.setXsave(xsave);
  t.like(vcpu.getXcrs(), { nr_xcrs: 1 });
  t.throws(() => vcpu.setXcrs({ nr_xcrs: 1, xcrs: [{ xcr: 0, value: 0n }] }), { code: 'EINVAL' });
  t.is(vcpu.setMsrs([{ index: 0x174, data: 0x10n }]), 1);
  t.is(vcpu.getMsrs([0x174, 0x10])[0]!.data, 0x10n);
  t.is(vcpu.getMsrs([0x174, 0xdead, 0x10]).length, 1, 'stops at the first unknown MSR');
  t.is(vcpu.getLapic().byteLength, 1024);
  vcpu.setVcpuEvents(vcpu.getVcpuEvents());
  t.is(vcpu.getMpState().mp_state, 0);
  t.is(vm.createVcpu(1).getMpState().mp_state, 1, 'an AP waits for INIT/SIPI');
  vcpu.setMpState({ mp_state: 3 });
  t.is(vcpu.getMpState().mp_state, 3);
  const dr = vcpu.getDebugregs();
  t.is(dr.dr7, 0x400n);
  t.is(dr.dr6, 0xffff0ff0n);
  vcpu.setDebugregs({ ...dr, db: [0x1000n, 0n, 0n, 0n] });
  t.is(vcpu.getDebugregs().db[0], 0x1000n);
  t.throws(() => vcpu.setDebugregs({ ...dr, dr7: 1n << 40n }), { code: 'EINVAL' });
  t.is(vcpu.tscKhz(), 2_450_000);
});

test('memory slots: EEXIST on overlap, EINVAL on bad alignment; a slot holds its mapping (unmap EBUSY) until the VM goes', (t) => {
  const host = new MockHost();
  using kvm = Kvm.open({ backend: host });
  const vm = kvm.createVm();
  t.teardown(() => vm.close());
  const mem = vm.addMemory({ guestPhysAddr: 0n, size: 0x10000 });
  t.throws(() => vm.addMemory({ guestPhysAddr: 0x8000n, size: 0x10000 }), { code: 'EEXIST' });
  const m = host.mmapAnonymous(0x2000);
  t.teardown(() => m.unmap());
  t.throws(
    () => vm.setUserMemoryRegion({ slot: 5, guestPhysAddr: 0x100800n, memory: { kind: 'mapping', mapping: m, offset: 0, length: 0x2000 } }),
    { code: 'EINVAL' },
  );
  t.throws(() => mem.mapping.unmap(), { code: 'EBUSY' });
  t.is(mem.mapping.bindings, 1);
  vm.close();
  t.true(mem.closed, 'Vm.close() unmapped it once the VM was gone');
});

test('a full launch: owner verifies the chain and the measurement, injects a secret; DBG_DECRYPT shows the plaintext', async (t) => {
  const host = new MockHost({ processor: 'milan' });
  using kvm = Kvm.open({ backend: host });
  using vm = kvm.createVm();
  await using sev = SevPlatform.open(host);
  const { pdh, certChain } = await sev.pdhCertExport();
  const root = mockAmdRoot(rootBitsFor(host.options.processor));
  const cert = (i: number) => certChain.subarray(0x824 * i, 0x824 * (i + 1));
  const chain = verifyChain({
    pek: cert(0),
    oca: cert(1),
    cek: cert(2),
    pdh,
    extraRoots: [{ ark: serializeAmdCert(root.ark), ask: serializeAmdCert(root.ask) }],
  });
  const policy = SEV_POLICY.NOKS;
  const session = createSession({ pdh: chain.pdh, policy });

  const mem = vm.addMemory({ guestPhysAddr: 0n, size: 0x10000 });
  const image = new Uint8Array(0x2000).map((_, i) => (i * 7) & 0xff);
  mem.write(0x4000n, image);
  const cmds = new SevGuestCommands(vm, sev);
  await cmds.init();
  await cmds.launchStart({ policy, dh: session.godhCert, session: session.session });
  await cmds.launchUpdateData(mem.range(0x4000n, 0x2000));
  t.notDeepEqual(mem.read(0x4000n, 0x2000), image, 'memory holds ciphertext');
  const measurement = await cmds.launchMeasure();
  const st = await sev.platformStatus();
  const facts = { apiMajor: st.apiMajor, apiMinor: st.apiMinor, build: st.build, policy, digest: launchDigest([image]), tik: session.tik };
  t.true(verifyMeasurement({ ...facts, measurement }));
  t.false(verifyMeasurement({ ...facts, digest: launchDigest([image.subarray(1)]), measurement }));

  const secret = buildSecret({
    tek: session.tek,
    tik: session.tik,
    measurement,
    secret: [{ guid: LUKS_KEY_GUID, data: Buffer.from('hunter2') }],
  });
  const secretRange = mem.range(0x8000n, secret.trans.length);
  await cmds.launchSecret({ ...secret, guest: secretRange });
  await cmds.launchFinish();
  t.like(await cmds.guestStatus(), { policy, stateName: 'RUNNING' });

  const out = new Uint8Array(0x2000);
  await cmds.dbgDecrypt(mem.range(0x4000n, 0x2000), out);
  t.deepEqual(out, image);
  const landed = new Uint8Array(secret.trans.length);
  await cmds.dbgDecrypt(secretRange, landed);
  const table = parseSecretTable(landed);
  t.is(Buffer.from(table[0]!.data).toString(), 'hunter2');
});

test('NODBG: DBG_DECRYPT is refused by the firmware (EIO, POLICY_FAILURE)', async (t) => {
  const host = new MockHost();
  using kvm = Kvm.open({ backend: host });
  using vm = kvm.createVm();
  const mem = vm.addMemory({ guestPhysAddr: 0n, size: 0x4000 });
  using sev = SevPlatform.open(host);
  const cmds = new SevGuestCommands(vm, sev);
  await cmds.init();
  await cmds.launchStart({ policy: SEV_POLICY.NODBG });
  const e = await t.throwsAsync(cmds.dbgDecrypt(mem.range(0n, 16), new Uint8Array(16)));
  t.like(e, { code: 'EIO', sev: { fwErrorName: 'POLICY_FAILURE' } });
});

test('SEV-ES on a SEV_ES_VM: LAUNCH_UPDATE_VMSA protects the vCPU state (EINVAL for GET_REGS), second call EINVAL', async (t) => {
  const host = new MockHost();
  using kvm = Kvm.open({ backend: host });
  using vm = kvm.createVm(KVM_X86_SEV_ES_VM);
  using sev = SevPlatform.open(host);
  const cmds = new SevGuestCommands(vm, sev);
  await cmds.init2();
  const vcpu = vm.createVcpu(0);
  await cmds.launchStart({ policy: SEV_POLICY.ES });
  vcpu.setGuestDebug({ control: 1 });
  await t.throwsAsync(cmds.launchUpdateVmsa(), { code: 'EINVAL' }, 'guest_debug');
  vcpu.setGuestDebug({ control: 0 });
  vcpu.setDebugregs({ ...vcpu.getDebugregs(), dr7: 0x401n });
  await t.throwsAsync(cmds.launchUpdateVmsa(), { code: 'EINVAL' }, 'DR7 not at reset');
  vcpu.setDebugregs({ ...vcpu.getDebugregs(), dr7: 0x400n });
  await cmds.launchUpdateVmsa();
  t.throws(() => vcpu.getRegs(), { code: 'EINVAL' });
  t.throws(() => vcpu.getFpu(), { code: 'EINVAL' });
  t.is(vcpu.getMpState().mp_state, 0, 'not every vCPU ioctl is gated');
  await t.throwsAsync(cmds.launchUpdateVmsa(), { code: 'EINVAL' }, 'already protected');
  // On the legacy DEFAULT type with ES_INIT, the calls do not fail: FPU reads zeros.
  using vm2 = kvm.createVm();
  using sev2 = SevPlatform.open(host);
  const c2 = new SevGuestCommands(vm2, sev2);
  await c2.esInit();
  const v2 = vm2.createVcpu(0);
  await c2.launchStart({ policy: SEV_POLICY.ES });
  await c2.launchUpdateVmsa();
  t.is(v2.getRegs().rip, 0xfff0n);
  t.is(v2.getFpu().fcw, 0);
});
