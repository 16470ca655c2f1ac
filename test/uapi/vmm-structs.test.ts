/**
 * The VMM structs' helpers: GSI routing tables, MSR filters (a fix-up per range bitmap, bits from
 * the allowed MSRs), irqchip unions, dirty bitmaps, and the bit-counted pointer lengths.
 */
import test from 'ava';
import {
  decodeGsiRouting,
  decodeIrqchip,
  dirtyBitmapBytes,
  dirtyPages,
  gsiRoutingArg,
  ioapicRedirection,
  irqchipArg,
  kvm_clear_dirty_log,
  kvm_msr_filter,
  msrFilterArg,
} from '../../lib/uapi/vmm-structs.js';
import { defineStruct, ptr, u32 } from '../../lib/uapi/codec.js';
import { KVM_IRQ_ROUTING } from '../../lib/uapi/vmm-constants.js';

test('gsiRoutingArg: nr, then 48-byte entries with the irqchip or MSI union filled in', (t) => {
  const a = gsiRoutingArg([
    { gsi: 4, type: 'irqchip', irqchip: 2, pin: 4 },
    { gsi: 24, type: 'msi', addressLo: 0xfee00000, data: 0x41 },
  ]);
  t.is(a.bytes.byteLength, 8 + 2 * 48);
  const d = decodeGsiRouting(a.bytes);
  t.is(d.nr, 2);
  t.deepEqual([d.entries[0]!.gsi, d.entries[0]!.type, d.entries[0]!.u.slice(0, 2)], [4, KVM_IRQ_ROUTING.IRQCHIP, [2, 4]]);
  t.deepEqual([d.entries[1]!.type, d.entries[1]!.u.slice(0, 3)], [KVM_IRQ_ROUTING.MSI, [0xfee00000, 0, 0x41]]);
  t.throws(() => gsiRoutingArg([{ gsi: 1, type: 'nope' } as never]), { code: 'ERR_INVALID_ARG_VALUE' });
});

test('msrFilterArg: one fix-up per range bitmap at ranges[i].bitmap, a set bit per allowed MSR, rounded to longs', (t) => {
  const a = msrFilterArg(1, [
    { flags: 3, base: 0x4b564d00, nmsrs: 16, allow: [0x4b564d01] },
    { flags: 1, base: 0xc0000080, nmsrs: 65 },
  ]);
  t.deepEqual(
    a.fixups.map((f) => f.offset),
    [8 + 16, 8 + 24 + 16],
  );
  const b0 = a.fixups[0]!.target as Uint8Array;
  t.is(b0.byteLength, 8);
  t.is(b0[0], 0b10);
  t.is((a.fixups[1]!.target as Uint8Array).byteLength, 16);
  const f = kvm_msr_filter.decode(a.bytes);
  t.deepEqual([f.flags, f.ranges[0]!.nmsrs, f.ranges[0]!.base, f.ranges[1]!.nmsrs, f.ranges[2]!.nmsrs], [1, 16, 0x4b564d00, 65, 0]);
  t.throws(() => msrFilterArg(0, [{ flags: 1, base: 0, nmsrs: 0 }]), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => msrFilterArg(0, [{ flags: 1, base: 0x10, nmsrs: 4, allow: [0x20] }]), { code: 'ERR_OUT_OF_RANGE' });
});

test('bit-counted lengths: the target must hold BITS_TO_LONGS(len) longs, and arg() never fills such a length in', (t) => {
  t.notThrows(() => kvm_clear_dirty_log.arg({ slot: 0, num_pages: 64, dirty_bitmap: new Uint8Array(8) }));
  t.throws(() => kvm_clear_dirty_log.arg({ slot: 0, num_pages: 65, dirty_bitmap: new Uint8Array(8) }), { code: 'ERR_OUT_OF_RANGE' });
  t.is(kvm_clear_dirty_log.decode(kvm_clear_dirty_log.arg({ slot: 0, dirty_bitmap: new Uint8Array(8) }).bytes).num_pages, 0);
  t.true(kvm_clear_dirty_log.field('dirty_bitmap').pointer?.lenBits);
  t.throws(
    () =>
      defineStruct('bad', [
        ['p', ptr({ lenUnit: 'bits' })],
        ['n', u32],
      ]),
    { code: 'ERR_INVALID_ARG_VALUE' },
  );
});

test('irqchip unions and IOAPIC entries; dirty bitmaps', (t) => {
  const pic = decodeIrqchip(irqchipArg({ chip_id: 1, pic: { imr: 0xfe, irq_base: 0x28 } }).bytes);
  t.is(pic.chip_id, 1);
  if (pic.chip_id !== 2) t.deepEqual([pic.pic.imr, pic.pic.irq_base], [0xfe, 0x28]);
  const io = decodeIrqchip(irqchipArg({ chip_id: 2, ioapic: { base_address: 0xfec00000n, redirtbl: [0x0a00_0000_0001_8031n] } }).bytes);
  if (io.chip_id !== 2) return t.fail();
  t.deepEqual(ioapicRedirection(io.ioapic.redirtbl[0]!), {
    vector: 0x31,
    deliveryMode: 0,
    destMode: 0,
    deliveryStatus: 0,
    polarity: 0,
    remoteIrr: 0,
    trigMode: 1,
    mask: 1,
    destId: 0x0a,
  });
  t.throws(() => irqchipArg({ chip_id: 3 } as never), { code: 'ERR_OUT_OF_RANGE' });
  t.is(dirtyBitmapBytes(16), 8);
  t.is(dirtyBitmapBytes(65), 16);
  t.deepEqual(dirtyPages(Uint8Array.of(0b1001, 0, 0x80)), [0, 3, 23]);
});
