/**
 * The vCPU API on the mock: setCpuid2 takes the values JS bit operations produce (negative int32),
 * and exits decode with their replies written where KVM reads them.
 */
import test from 'ava';
import { Kvm } from '../../lib/kvm/kvm.js';
import { MockHost } from '../../lib/backends/mock/index.js';
import { decodeExit } from '../../lib/kvm/exits.js';
import { KVM_EXIT } from '../../lib/uapi/constants.js';

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
