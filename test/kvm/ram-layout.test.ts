/**
 * Guest RAM laid out as a PC does: up to the hole below 4 GiB from 0, the rest from 4 GiB, never over
 * the IOAPIC's or the local APIC's page (a 4 GiB guest in one slot from 0 took a KVM_EXIT_MMIO at
 * 0xfee00000, issue 13). vm.addRam() plugs in one slot per range, and takes back what it added when
 * a slot fails.
 */
import test from 'ava';
import { MockHost } from '../../lib/backends/mock/index.js';
import { Kvm } from '../../lib/kvm/kvm.js';
import { IOAPIC_BASE, LAPIC_BASE, MMIO_HOLE_END, MMIO_HOLE_START, ramEnd, ramLayout } from '../../lib/kvm/ram-layout.js';

const GIB = 2 ** 30;
const covers = (r: { guestPhysAddr: bigint; size: number }, a: number) =>
  r.guestPhysAddr <= BigInt(a) && BigInt(a) < r.guestPhysAddr + BigInt(r.size);

test('RAM up to the hole is one range from 0', (t) => {
  t.deepEqual(ramLayout(256 << 20), [{ guestPhysAddr: 0n, size: 256 << 20 }]);
  t.deepEqual(ramLayout(2 * GIB), [{ guestPhysAddr: 0n, size: 2 * GIB }]);
  t.deepEqual(ramLayout(3 * GIB), [{ guestPhysAddr: 0n, size: 3 * GIB }]);
});

test('RAM past the hole resumes at 4 GiB: 4 GiB of RAM ends at 5 GiB', (t) => {
  const four = ramLayout(4 * GIB);
  t.deepEqual(four, [
    { guestPhysAddr: 0n, size: 3 * GIB },
    { guestPhysAddr: 4n * BigInt(GIB), size: GIB },
  ]);
  t.is(ramEnd(four), 5n * BigInt(GIB));
  const sixteen = ramLayout(16 * GIB);
  t.is(sixteen[1]!.size, 13 * GIB, 'sizes past 2^32 keep their value (no 32-bit arithmetic)');
  t.is(ramEnd(sixteen), 17n * BigInt(GIB));
});

test('no size puts RAM over the hole, the IOAPIC or the local APIC', (t) => {
  for (const size of [
    4096,
    MMIO_HOLE_START - 4096,
    MMIO_HOLE_START,
    MMIO_HOLE_START + 4096,
    3.5 * GIB,
    4 * GIB,
    4 * GIB + 4096,
    64 * GIB,
  ]) {
    const ranges = ramLayout(size);
    t.is(
      ranges.reduce((s, r) => s + r.size, 0),
      size,
      `${size}: every byte placed`,
    );
    for (const a of [IOAPIC_BASE, LAPIC_BASE, MMIO_HOLE_START, MMIO_HOLE_END - 4096])
      t.false(
        ranges.some((r) => covers(r, a)),
        `${size}: 0x${a.toString(16)} is a hole`,
      );
  }
});

test('the hole may start lower; not above the IOAPIC', (t) => {
  t.deepEqual(ramLayout(0x3000, { holeStart: 0x1000 }), [
    { guestPhysAddr: 0n, size: 0x1000 },
    { guestPhysAddr: 2n ** 32n, size: 0x2000 },
  ]);
  t.throws(() => ramLayout(GIB, { holeStart: IOAPIC_BASE + 4096 }), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => ramLayout(GIB, { holeStart: 0x1001 }), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => ramLayout(GIB, { holeStart: 0 }), { code: 'ERR_OUT_OF_RANGE' });
});

test('bad sizes are typed errors', (t) => {
  for (const size of [0, -4096, 4097, 1.5, NaN, 2 ** 53 + 4096])
    t.throws(() => ramLayout(size), { code: 'ERR_INVALID_ARG_VALUE' }, String(size));
  for (const size of ['4096', 4096n, undefined]) t.throws(() => ramLayout(size as never), { code: 'ERR_INVALID_ARG_TYPE' }, String(size));
  t.throws(() => ramLayout(4096, null as never), { code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => ramLayout(4096, { holeStart: '0x1000' as never }), { code: 'ERR_INVALID_ARG_TYPE' });
});

test('vm.addRam() adds one slot per range; memoryAt() finds each, and nothing in the hole', (t) => {
  const kvm = Kvm.open({ backend: new MockHost() });
  t.teardown(() => kvm.close());
  const vm = kvm.createVm();
  t.teardown(() => vm.close());
  const ram = vm.addRam({ size: 0x3000, holeStart: 0x1000, memfd: 'ram' });
  t.deepEqual(
    ram.map((m) => [m.guestPhysAddr, m.size, m.memfd !== undefined]),
    [
      [0n, 0x1000, true],
      [2n ** 32n, 0x2000, true],
    ],
  );
  t.deepEqual(vm.memory, ram);
  t.is(vm.memoryAt(2n ** 32n + 0x1fffn), ram[1]);
  t.is(vm.memoryAt(0x1000n), undefined);
  t.is(vm.slotSize(1), 0x2000);
});

test('vm.addRam() takes back the pieces it added when a later slot is refused', (t) => {
  const kvm = Kvm.open({ backend: new MockHost() });
  t.teardown(() => kvm.close());
  const vm = kvm.createVm();
  t.teardown(() => vm.close());
  const taken = vm.addMemory({ guestPhysAddr: 2n ** 32n, size: 0x1000 }); // where the second piece would go
  const err = t.throws(() => vm.addRam({ size: 0x3000, holeStart: 0x1000 }));
  t.is((err as { code?: string }).code, 'EEXIST');
  t.deepEqual(vm.memory, [taken], 'the first piece is gone again');
  t.is(vm.memoryAt(0n), undefined);
  // Its slot is free again: RAM can go there now.
  const low = vm.addMemory({ guestPhysAddr: 0n, size: 0x1000 });
  t.is(vm.memoryAt(0n), low);
  t.throws(() => vm.addRam(null as never), { code: 'ERR_INVALID_ARG_TYPE' });
});
