/**
 * The vCPU API on the mock: setCpuid2 takes the values JS bit operations produce (negative int32),
 * and exits decode with their replies written where KVM reads them.
 */
import test from 'ava';
import { Kvm } from '../../lib/kvm/kvm.js';
import { MockHost } from '../../lib/backends/mock/index.js';
import { decodeExit } from '../../lib/kvm/exits.js';
import { KVM_EXIT, KVM_SYSTEM_EVENT } from '../../lib/uapi/constants.js';

test('setCpuid2 takes `ecx | (1 << 31)` (a negative int32) as the u32 it means', (t) => {
  const kvm = Kvm.open({ backend: new MockHost() });
  t.teardown(() => kvm.close());
  const vm = kvm.createVm();
  t.teardown(() => vm.close());
  const vcpu = vm.createVcpu(0);
  const leaf1 = kvm.supportedCpuid().find((e) => e.function === 1)!;
  const ecx = leaf1.ecx | (1 << 31); // hypervisor bit: JS makes this negative
  t.true(ecx < 0);
  vcpu.setCpuid2([{ ...leaf1, ecx }]);
  t.is(vcpu.cpuid![0]!.ecx, (leaf1.ecx | 0x80000000) >>> 0);
  t.throws(() => vcpu.setCpuid2([{ function: 1, ecx: 2 ** 32 }]), { code: 'ERR_OUT_OF_RANGE' });
});

test('decodeExit: MSR exits reply into kvm_run.msr, hypercalls into hypercall.ret, IOAPIC EOIs carry the vector', (t) => {
  const page = new Uint8Array(4096);
  const run = new DataView(page.buffer);
  run.setUint32(8, KVM_EXIT.X86_RDMSR, true);
  run.setUint32(40, 4, true);
  run.setUint32(44, 0x4b564d08, true);
  const rd = decodeExit(run, page);
  if (rd.reason !== 'rdmsr') return t.fail();
  t.deepEqual([rd.index, rd.msrReason], [0x4b564d08, 4]);
  rd.reply({ data: 0x1234n });
  t.deepEqual([run.getUint8(32), run.getBigUint64(48, true)], [0, 0x1234n]);
  rd.reply({ error: true });
  t.is(run.getUint8(32), 1);
  run.setUint32(8, KVM_EXIT.HYPERCALL, true);
  run.setBigUint64(32, 12n, true);
  const hc = decodeExit(run, page);
  if (hc.reason !== 'hypercall') return t.fail();
  hc.reply(-22n);
  t.is(run.getBigInt64(88, true), -22n);
  run.setUint32(8, KVM_EXIT.IOAPIC_EOI, true);
  run.setUint8(32, 0x31);
  t.deepEqual(decodeExit(run, page), { reason: 'ioapic_eoi', vector: 0x31 });
});

test('decodeExit: SYSTEM_EVENT with its type name, the ndata entries, the old flags; SEV_TERM from the GHCB MSR protocol with its reason', (t) => {
  const page = new Uint8Array(4096);
  const run = new DataView(page.buffer);
  run.setUint32(8, KVM_EXIT.SYSTEM_EVENT, true);
  // A kernel before KVM_CAP_SYSTEM_EVENT_DATA: type and flags, ndata 0.
  run.setUint32(32, KVM_SYSTEM_EVENT.RESET, true);
  run.setBigUint64(40, 5n, true);
  t.deepEqual(decodeExit(run, page), { reason: 'system_event', type: 2, typeName: 'RESET', data: [], flags: 5n });
  // arch/x86/kvm/svm/sev.c: GHCB_MSR_TERM_REQ with reason set 0xf and code 0xab; data[0] is the GHCB MSR.
  const msr = 0x100n | (0xfn << 12n) | (0xabn << 16n);
  run.setUint32(32, KVM_SYSTEM_EVENT.SEV_TERM, true);
  run.setUint32(36, 1, true);
  run.setBigUint64(40, msr, true);
  t.like(decodeExit(run, page), { typeName: 'SEV_TERM', data: [msr], sevTerm: { reasonSet: 0xf, reasonCode: 0xab } });
  // Through a GHCB page (SVM_VMGEXIT_TERM_REQUEST), data[0] is the page's address: the reason is in the page.
  run.setBigUint64(40, 0x5000n, true);
  const page2 = decodeExit(run, page);
  t.true(page2.reason === 'system_event' && page2.sevTerm === undefined);
  run.setUint32(32, 99, true);
  t.like(decodeExit(run, page), { type: 99, typeName: undefined });
});
