/**
 * The mode set-up helpers on the mock (which runs no guest code: this is the set-up half; the
 * guests run in hw-test/cpu-modes.test.ts): descriptors and gates bit for bit, the page tables of
 * both modes, the IDT, and the errors for memory that is not there or values that do not fit.
 */
import test, { type ExecutionContext } from 'ava';
import { Kvm } from '../../../lib/kvm/kvm.js';
import { MockHost } from '../../../lib/backends/mock/mock-host.js';
import {
  FLAT_SEGMENTS,
  interruptGate32,
  interruptGate64,
  segmentDescriptor,
  systemDescriptor64,
  tssSegment,
} from '../../../lib/app/guest/descriptors.js';
import { identityMap32, identityMap4Level } from '../../../lib/app/guest/page-tables.js';
import { setupLongMode, setupProtectedMode } from '../../../lib/app/guest/setup.js';

function mockVcpu(t: ExecutionContext, size = 0x20000) {
  const kvm = Kvm.open({ backend: new MockHost() });
  t.teardown(() => kvm.close());
  const vm = kvm.createVm();
  t.teardown(() => vm.close());
  const mem = vm.addMemory({ guestPhysAddr: 0n, size });
  return { kvm, vm, mem, vcpu: vm.createVcpu(0) };
}

test('descriptors: flat segments, a split base and limit, a 64-bit TSS, interrupt gates (Intel SDM vol. 3, 3.4.5, 7.2.3, 6.14.1)', (t) => {
  t.is(segmentDescriptor(FLAT_SEGMENTS.code64), 0x00af9b000000ffffn);
  t.is(segmentDescriptor(FLAT_SEGMENTS.data), 0x00cf93000000ffffn);
  t.is(segmentDescriptor(FLAT_SEGMENTS.code32), 0x00cf9b000000ffffn);
  t.is(segmentDescriptor({ ...FLAT_SEGMENTS.data, base: 0x12345678n, limit: 0xfffff, g: 0 }), 0x124f93345678ffffn);
  t.deepEqual(systemDescriptor64(tssSegment(0xffff8000_12345000n)), [0x12008b3450000067n, 0xffff8000n]);
  t.deepEqual(interruptGate64(0x1_23456789n, 0x08), [0x23458e0000086789n, 0x1n]);
  t.is(interruptGate32(0x00401000n, 0x18), 0x00408e0000181000n);
  t.throws(() => segmentDescriptor({ ...FLAT_SEGMENTS.data, g: 0 }), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => interruptGate32(0x1_0000_0000n, 0x18), { code: 'ERR_OUT_OF_RANGE' });
});

test('page tables: 4-level with 2 MiB pages, and a 32-bit directory of 4 MiB pages', (t) => {
  const lm = identityMap4Level(0x20000n, 2);
  const dv = new DataView(lm.bytes.buffer);
  t.is(lm.bytes.length, 4 * 0x1000);
  t.is(dv.getBigUint64(0, true), 0x21003n);
  t.is(dv.getBigUint64(8, true), 0n, 'one PML4 entry');
  t.is(dv.getBigUint64(0x1000, true), 0x22003n);
  t.is(dv.getBigUint64(0x1008, true), 0x23003n);
  t.is(dv.getBigUint64(0x1010, true), 0n, 'two GiB');
  t.is(dv.getBigUint64(0x2000 + 8, true), 0x200083n);
  t.is(dv.getBigUint64(0x3000 + 8 * 511, true), 0x7fe00083n);
  const pd = identityMap32(0x5000n);
  const dv32 = new DataView(pd.bytes.buffer);
  t.is(dv32.getUint32(0, true), 0x83);
  t.is(dv32.getUint32(4 * 1023, true), 0xffc00083);
  t.throws(() => identityMap4Level(0x20010n, 1), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => identityMap4Level(0x20000n, 513), { code: 'ERR_OUT_OF_RANGE' });
});

test('setupProtectedMode({ paging }) on the mock: CR0.PG|WP, CR4.PSE, CR3 at the page directory, IDT gates to the handlers', (t) => {
  const { vcpu, mem } = mockVcpu(t);
  const layout = setupProtectedMode(vcpu, {
    entry: 0x1000,
    stack: 0x7000,
    tables: 0x4000,
    paging: true,
    handlers: { 6: 0x1234, 32: 0x1300 },
  });
  t.deepEqual(layout, {
    gdt: 0x4000n,
    gdtLimit: 39,
    tss: 0x4100n,
    idt: 0x5000n,
    idtLimit: 2047,
    pageTables: 0x6000n,
    end: 0x7000n,
    selectors: { code64: 0x08, data: 0x10, code32: 0x18, tss: 0x20 },
  });
  t.like(vcpu.getSregs(), { cr0: 0x80010033n, cr3: 0x6000n, cr4: 0x610n, efer: 0n, cs: { selector: 0x18, db: 1, l: 0 } });
  t.like(vcpu.getRegs(), { rip: 0x1000n, rsp: 0x7000n, rflags: 2n });
  t.is(mem.readU32(0x6000n + 4n * 5n), (5 << 22) | 0x83);
  t.is(mem.readU64(0x5000n + 8n * 6n), interruptGate32(0x1234n, 0x18));
  t.is(mem.readU64(0x5000n + 8n * 32n), interruptGate32(0x1300n, 0x18));
  t.is(mem.readU64(0x5000n + 8n * 7n), 0n, 'no gate where no handler');
  t.is(mem.readU16(0x4100n + 0x66n), 0x68, 'no I/O permission bitmap');
  t.is(vcpu.cpuid, undefined, 'protected mode needs no CPUID');
});

test('setupLongMode() on the mock: 64-bit IDT gates, a smaller identity map, a CPUID the caller set is kept', (t) => {
  const { kvm, vcpu, mem } = mockVcpu(t);
  const cpuid = kvm.supportedCpuid().filter((e) => e.function !== 0x80000008);
  vcpu.setCpuid2(cpuid);
  const layout = setupLongMode(vcpu, { entry: 0x1000n, tables: 0x8000n, identityMapGiB: 1, handlers: { 14: 0x1_0000_2000n } });
  t.like(layout, { gdt: 0x8000n, idt: 0x9000n, pageTables: 0xa000n, end: 0xd000n });
  t.is(vcpu.cpuid?.length, cpuid.length);
  t.is(mem.readU64(0x9000n + 16n * 14n), interruptGate64(0x1_0000_2000n, 0x08)[0]);
  t.is(mem.readU64(0x9000n + 16n * 14n + 8n), 1n);
  t.deepEqual([mem.readU64(0x8020n), mem.readU64(0x8028n)], systemDescriptor64(tssSegment(0x8100n)));
  // Without leaf 0x80000008 KVM assumes a 36-bit MAXPHYADDR (cpuid_query_maxphyaddr()): CR3 above it is refused.
  t.throws(() => vcpu.setSregs({ ...vcpu.getSregs(), cr3: 1n << 40n }), { code: 'EINVAL' });
});

test('bad set-up input: memory that is not there, unaligned tables, sizes and vectors out of range', (t) => {
  const { vcpu } = mockVcpu(t, 0x10000);
  t.throws(() => setupLongMode(vcpu, { entry: 0x1000 }), { code: 'ERR_INVALID_ARG_VALUE', message: /vm\.addMemory\(\)/ });
  t.throws(() => setupLongMode(vcpu, { entry: 0x1000, tables: 0x9000 }), { code: 'ERR_INVALID_ARG_VALUE', message: /32768 bytes/ });
  t.throws(() => setupProtectedMode(vcpu, { entry: 0x1000, tables: 0x4800 }), { code: 'ERR_INVALID_ARG_VALUE', message: /aligned/ });
  t.throws(() => setupLongMode(vcpu, { entry: 0x1000, tables: 0x4000, identityMapGiB: 0 }), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => setupProtectedMode(vcpu, { entry: 0x1000, tables: 0x4000, handlers: { 256: 0x1000 } }), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => setupProtectedMode(vcpu, { entry: 0x1000, tables: 0x4000, handlers: { 3: 0x1_0000_0000n } }), {
    code: 'ERR_OUT_OF_RANGE',
  });
  t.throws(() => setupProtectedMode(vcpu, { entry: 1.5, tables: 0x4000 }), { code: 'ERR_INVALID_ARG_VALUE' });
  t.throws(() => setupProtectedMode(vcpu, { entry: -1, tables: 0x4000 }), { code: 'ERR_OUT_OF_RANGE' });
});
