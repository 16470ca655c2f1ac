/**
 * Behaviour of kvm-sev/uapi: codec round trips, BigInt fidelity, ioctl-argument fix-ups, ioctl numbers,
 * the errno/status/constant tables (spot values from the kernel uapi headers), and input validation.
 */

import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';

import * as uapi from '../../lib/uapi/index.js';
import {
  type AnyStructCodec,
  type IoctlStruct,
  type MappingHandle,
  GSTATE,
  IOCTLS,
  KVM_SEV,
  SEV_CMD,
  SEV_RET,
  array,
  defineStruct,
  i64,
  mappingRange,
  pad,
  ptr,
  structs,
  u16,
  u32,
  u64,
  u8,
} from '../../lib/uapi/index.js';

type Code = 'ERR_INVALID_ARG_TYPE' | 'ERR_INVALID_ARG_VALUE' | 'ERR_OUT_OF_RANGE';

function throwsCode(t: ExecutionContext, fn: () => unknown, code: Code, msg?: string): void {
  const err = t.throws(fn, { code }, msg);
  if (err) t.true(code === 'ERR_OUT_OF_RANGE' ? err instanceof RangeError : err instanceof TypeError, `${code} class`);
}

function isStruct(x: unknown): x is IoctlStruct {
  return uapi.isIoctlStruct(x);
}

function fakeMapping(size: number, closed = false): MappingHandle {
  return { size, closed };
}

// ------------------------------------------------------------------------------------------------
// Round trips

for (const [name, codec] of Object.entries(structs) as [string, AnyStructCodec][]) {
  test(`round trip: ${name}`, (t) => {
    // Padding = bytes that stay 0 when an all-ones value is decoded and re-encoded.
    const mask = codec.encode(codec.decode(new Uint8Array(codec.size).fill(0xff)) as never);
    t.is(mask.byteLength, codec.size);
    const raw = new Uint8Array(randomBytes(codec.size));
    const value = codec.decode(raw);
    const again = codec.encode(value as never);
    const expected = raw.map((b, i) => b & mask[i]!);
    t.deepEqual(again, expected);
    t.deepEqual(codec.decode(again), value);
    // Pads and implicit padding are exactly the bytes no field covers.
    const covered = new Uint8Array(codec.size);
    for (const f of codec.fields) if (f.kind !== 'pad') covered.fill(1, f.offset, f.offset + f.size);
    for (let i = 0; i < codec.size; i++) {
      if (!covered[i]) t.is(mask[i], 0, `${name} byte ${i} is padding`);
    }
    // Fields are in order, inside the struct, and do not overlap.
    let end = 0;
    for (const f of codec.fields) {
      t.true(f.offset >= end, `${name}.${f.name} does not overlap`);
      end = f.offset + f.size;
    }
    t.true(end <= codec.size);
    t.is(codec.size % codec.align, 0);
  });
}

test('encode at an offset writes exactly `size` bytes and zeroes missing fields', (t) => {
  const c = structs.kvm_sev_launch_measure;
  const buf = new Uint8Array(64).fill(0xaa);
  c.encode({ len: 48 }, buf, 8);
  t.deepEqual([...buf.subarray(0, 8)], new Array(8).fill(0xaa));
  t.deepEqual([...buf.subarray(8, 24)], [0, 0, 0, 0, 0, 0, 0, 0, 48, 0, 0, 0, 0, 0, 0, 0]);
  t.deepEqual([...buf.subarray(24)], new Array(40).fill(0xaa));
  t.deepEqual(c.decode(buf, 8), { uaddr: 0n, len: 48 });
});

test('decode copies byte fields (no aliasing of the source buffer)', (t) => {
  const b = new Uint8Array(structs.kvm_sev_attestation_report.size).fill(7);
  const v = structs.kvm_sev_attestation_report.decode(b);
  b.fill(0);
  t.is(v.mnonce[0], 7);
});

test('nested structs and arrays of structs round trip by value', (t) => {
  const sregs = structs.kvm_sregs.encode({
    cs: { base: 0xffff0000n, limit: 0xffff, selector: 0xf000, type: 11, present: 1, s: 1 },
    gdt: { base: 0x1000n, limit: 0x27 },
    cr0: 0x60000010n,
    efer: 0x500,
    interrupt_bitmap: [1n, 0n, 0n, 1n << 63n],
  });
  const v = structs.kvm_sregs.decode(sregs);
  t.is(v.cs.selector, 0xf000);
  t.is(v.cs.base, 0xffff0000n);
  t.is(v.cs.present, 1);
  t.is(v.ds.selector, 0);
  t.is(v.gdt.limit, 0x27);
  t.is(v.efer, 0x500n);
  t.deepEqual(v.interrupt_bitmap, [1n, 0n, 0n, 1n << 63n]);
  // byte-level: cs.selector at 12, efer at 264 (cs 0..24, ..., gdt 192, idt 208, cr0 224 … efer 264).
  t.is(new DataView(sregs.buffer).getUint16(12, true), 0xf000);
  t.is(new DataView(sregs.buffer).getBigUint64(264, true), 0x500n);

  const xcrs = structs.kvm_xcrs.encode({ nr_xcrs: 1, xcrs: [{ xcr: 0, value: 7n }] });
  const xv = structs.kvm_xcrs.decode(xcrs);
  t.is(xv.xcrs.length, 16);
  t.deepEqual(xv.xcrs[0], { xcr: 0, value: 7n });
  t.deepEqual(xv.xcrs[15], { xcr: 0, value: 0n });

  const fpu = structs.kvm_fpu.decode(structs.kvm_fpu.encode({ fpr: [new Uint8Array(16).fill(1)], xmm: [], mxcsr: 0x1f80 }));
  t.is(fpu.fpr.length, 8);
  t.deepEqual(fpu.fpr[0], new Uint8Array(16).fill(1));
  t.deepEqual(fpu.fpr[1], new Uint8Array(16));
  t.is(fpu.mxcsr, 0x1f80);
});

test('encodeArray / decodeArray use the struct size as stride', (t) => {
  const entries = [
    { index: 0x10, data: 5n },
    { index: 0xc0000080, data: 0xd01n },
  ];
  const b = uapi.encodeArray(structs.kvm_msr_entry, entries);
  t.is(b.byteLength, 32);
  t.deepEqual(uapi.decodeArray(structs.kvm_msr_entry, b), entries);
  t.deepEqual(uapi.decodeArray(structs.kvm_msr_entry, b, 16, 1), [entries[1]]);
  throwsCode(t, () => uapi.decodeArray(structs.kvm_msr_entry, b, 0, 3), 'ERR_OUT_OF_RANGE');
});

// ------------------------------------------------------------------------------------------------
// BigInt fidelity

test('64-bit fields keep every bit beyond 2^53', (t) => {
  const c = structs.kvm_regs;
  const vals = [2n ** 64n - 1n, 2n ** 53n + 1n, 0x8000000000000000n, 0x0123456789abcdefn];
  const b = c.encode({ rax: vals[0], rbx: vals[1], rcx: vals[2], rip: vals[3] });
  const v = c.decode(b);
  t.is(v.rax, vals[0]!);
  t.is(v.rbx, vals[1]!);
  t.is(v.rcx, vals[2]!);
  t.is(v.rip, vals[3]!);
  t.is(typeof v.rdx, 'bigint');
  const dv = new DataView(b.buffer);
  t.is(dv.getUint32(0, true), 0xffffffff);
  t.is(dv.getUint32(4, true), 0xffffffff);
  t.is(dv.getBigUint64(8, true), 2n ** 53n + 1n);
});

test('u64 accepts safe-integer Numbers and decodes them as bigint', (t) => {
  const c = structs.kvm_regs;
  const v = c.decode(c.encode({ rax: Number.MAX_SAFE_INTEGER, rbx: 0x100000000, rcx: 0xffffffff, rdx: 0 }));
  t.is(v.rax, 9007199254740991n);
  t.is(v.rbx, 0x100000000n);
  t.is(v.rcx, 0xffffffffn);
  t.is(v.rdx, 0n);
});

test('i64 handles negatives from bigint and Number', (t) => {
  const c = defineStruct('t_i64', [
    ['a', i64],
    ['b', i64],
    ['c', i64],
    ['d', i64],
  ]);
  const v = c.decode(c.encode({ a: -1n, b: -(2n ** 63n), c: -Number.MAX_SAFE_INTEGER, d: -0x100000000 }));
  t.deepEqual(v, { a: -1n, b: -(2n ** 63n), c: -9007199254740991n, d: -0x100000000n });
  throwsCode(t, () => c.encode({ a: 2n ** 63n }), 'ERR_OUT_OF_RANGE');
});

// ------------------------------------------------------------------------------------------------
// arg(): fix-ups, lengths, targets

test('arg: pointer fields stay 0, each non-null target becomes a fix-up, lengths are filled', (t) => {
  const dh = new Uint8Array(2084);
  const session = new Uint8Array(128);
  const a = structs.kvm_sev_launch_start.arg({ policy: 1, dh_uaddr: dh, session_uaddr: session });
  t.is(a.kind, 'struct');
  t.is(a.bytes.byteLength, 40);
  t.deepEqual(
    a.fixups.map((f) => f.offset),
    [8, 24],
  );
  t.is(a.fixups[0]!.target, dh);
  t.is(a.fixups[1]!.target, session);
  const v = structs.kvm_sev_launch_start.decode(a.bytes);
  t.deepEqual(v, { handle: 0, policy: 1, dh_uaddr: 0n, dh_len: 2084, session_uaddr: 0n, session_len: 128 });
});

test('arg: a given length is kept (length query: null target and 0), a too-large one refused', (t) => {
  const q = structs.kvm_sev_launch_measure.arg({ uaddr: null, len: 0 });
  t.is(q.fixups.length, 0);
  t.deepEqual(structs.kvm_sev_launch_measure.decode(q.bytes), { uaddr: 0n, len: 0 });
  const buf = new Uint8Array(48);
  const partial = structs.kvm_sev_launch_measure.arg({ uaddr: buf, len: 32 });
  t.is(structs.kvm_sev_launch_measure.decode(partial.bytes).len, 32);
  throwsCode(t, () => structs.kvm_sev_launch_measure.arg({ uaddr: buf, len: 49 }), 'ERR_OUT_OF_RANGE');
  // Null, undefined, 0 and 0n all mean NULL.
  for (const n of [null, undefined, 0, 0n] as const) t.is(structs.kvm_sev_launch_measure.arg({ uaddr: n }).fixups.length, 0);
});

test('arg: every PointerTarget kind is accepted and measured', (t) => {
  const ab = new ArrayBuffer(24);
  const dv = new DataView(new ArrayBuffer(40), 8, 16);
  const u32a = new Uint32Array(5);
  const m = mappingRange(fakeMapping(8192), 4096, 100);
  for (const [target, len] of [
    [ab, 24],
    [dv, 16],
    [u32a, 20],
    [m, 100],
  ] as const) {
    const a = structs.kvm_sev_launch_update_data.arg({ uaddr: target });
    t.is(a.fixups[0]!.target, target);
    t.is(structs.kvm_sev_launch_update_data.decode(a.bytes).len, len);
  }
});

test('arg: two pointers sharing one length take the smaller target', (t) => {
  const a = structs.kvm_sev_dbg.arg({ src_uaddr: new Uint8Array(64), dst_uaddr: new Uint8Array(32) });
  t.is(structs.kvm_sev_dbg.decode(a.bytes).len, 32);
  t.deepEqual(
    a.fixups.map((f) => f.offset),
    [0, 8],
  );
  throwsCode(
    t,
    () => structs.kvm_sev_dbg.arg({ src_uaddr: new Uint8Array(64), dst_uaddr: new Uint8Array(32), len: 64 }),
    'ERR_OUT_OF_RANGE',
  );
});

test('arg: u64 paired lengths (memslot, enc_region, snp_launch_update)', (t) => {
  const m = mappingRange(fakeMapping(1 << 21), 0, 1 << 21);
  const slot = structs.kvm_userspace_memory_region.arg({ slot: 0, guest_phys_addr: 0x100000n, userspace_addr: m });
  t.is(structs.kvm_userspace_memory_region.decode(slot.bytes).memory_size, 1n << 21n);
  t.deepEqual(slot.fixups, [{ offset: 24, target: m }]);
  const r = structs.kvm_enc_region.arg({ addr: m });
  t.is(structs.kvm_enc_region.decode(r.bytes).size, 1n << 21n);
  const up = structs.kvm_sev_snp_launch_update.arg({ gfn_start: 0x80n, uaddr: new Uint8Array(8192), type: 1 });
  t.is(structs.kvm_sev_snp_launch_update.decode(up.bytes).len, 8192n);
  t.is(up.fixups[0]!.offset, 8);
});

test('arg: retained pointers only take guest memory, and never a closed mapping', (t) => {
  throwsCode(t, () => structs.kvm_userspace_memory_region.arg({ userspace_addr: new Uint8Array(4096) }), 'ERR_INVALID_ARG_VALUE');
  throwsCode(t, () => structs.kvm_enc_region.arg({ addr: new ArrayBuffer(4096) }), 'ERR_INVALID_ARG_VALUE');
  throwsCode(t, () => structs.kvm_enc_region.arg({ addr: mappingRange(fakeMapping(4096, true)) }), 'ERR_INVALID_ARG_VALUE');
  throwsCode(
    t,
    () => structs.kvm_enc_region.arg({ addr: { kind: 'mapping', mapping: fakeMapping(4096), offset: 4000, length: 200 } }),
    'ERR_OUT_OF_RANGE',
  );
  t.is(structs.kvm_enc_region.arg({ addr: mappingRange(fakeMapping(4096)) }).fixups.length, 1);
});

test('arg: fixed-length targets (kvm_device_attr.addr is a u64, SNP id block/auth)', (t) => {
  const val = new BigUint64Array(1);
  const a = structs.kvm_device_attr.arg({ group: uapi.KVM_X86_GRP_SEV, attr: uapi.KVM_X86_SEV_VMSA_FEATURES, addr: val });
  t.deepEqual(a.fixups, [{ offset: 16, target: val }]);
  throwsCode(t, () => structs.kvm_device_attr.arg({ addr: new Uint8Array(4) }), 'ERR_OUT_OF_RANGE');
  throwsCode(t, () => structs.kvm_sev_snp_launch_finish.arg({ id_block_uaddr: new Uint8Array(95) }), 'ERR_OUT_OF_RANGE');
  t.is(structs.kvm_sev_snp_launch_finish.arg({ id_block_uaddr: new Uint8Array(96), id_auth_uaddr: new Uint8Array(4096) }).fixups.length, 2);
});

test('arg: a raw address is refused, a non-target object too', (t) => {
  throwsCode(t, () => structs.kvm_sev_launch_measure.arg({ uaddr: 0x7f0000001000n as unknown as null }), 'ERR_INVALID_ARG_VALUE');
  throwsCode(t, () => structs.kvm_sev_launch_measure.arg({ uaddr: 4096 as unknown as null }), 'ERR_INVALID_ARG_VALUE');
  throwsCode(t, () => structs.kvm_sev_launch_measure.arg({ uaddr: 'x' as unknown as null }), 'ERR_INVALID_ARG_TYPE');
  throwsCode(t, () => structs.kvm_sev_launch_measure.arg({ uaddr: new Map() as unknown as null }), 'ERR_INVALID_ARG_TYPE');
  // encode() (for mocks/tests) does take raw addresses.
  t.is(structs.kvm_sev_launch_measure.decode(structs.kvm_sev_launch_measure.encode({ uaddr: 0x7f0000001000n })).uaddr, 0x7f0000001000n);
});

test('arg: nested struct pointers (kvm_sev_cmd → kvm_sev_launch_start → dh blob)', (t) => {
  const dh = new Uint8Array(2084).fill(1);
  const inner = structs.kvm_sev_launch_start.arg({ policy: 0x1, dh_uaddr: dh });
  const cmd = structs.kvm_sev_cmd.arg({ id: KVM_SEV.LAUNCH_START, data: inner, sev_fd: 7 });
  t.is(cmd.bytes.byteLength, 24);
  t.deepEqual(structs.kvm_sev_cmd.decode(cmd.bytes), { id: 2, data: 0n, error: 0, sev_fd: 7 });
  t.is(cmd.fixups.length, 1);
  t.is(cmd.fixups[0]!.offset, 8);
  const target = cmd.fixups[0]!.target;
  if (!isStruct(target)) return t.fail('data is not an IoctlStruct');
  t.is(target, inner);
  t.is(target.fixups[0]!.offset, 8);
  t.is(target.fixups[0]!.target, dh);
  t.is(structs.kvm_sev_launch_start.decode(target.bytes).dh_len, 2084);

  // A plain object is encoded with the struct chosen by `id`.
  const cmd2 = structs.kvm_sev_cmd.arg({ id: KVM_SEV.LAUNCH_START, data: { policy: 0x1, dh_uaddr: dh } });
  const t2 = cmd2.fixups[0]!.target;
  if (!isStruct(t2)) return t.fail('plain data not encoded');
  t.deepEqual(t2.bytes, inner.bytes);
  t.is(t2.fixups[0]!.target, dh);

  // Errors inside the nested struct carry the nested path.
  const e = t.throws(() => structs.kvm_sev_cmd.arg({ id: KVM_SEV.LAUNCH_START, data: { policy: -1 } }), { code: 'ERR_OUT_OF_RANGE' });
  t.regex(e?.message ?? '', /kvm_sev_cmd\.data\.policy/);
});

test('arg: kvm_sev_cmd checks data against the struct KVM reads for `id`', (t) => {
  // GUEST_STATUS is 12 bytes; LAUNCH_START needs 40.
  const status = structs.kvm_sev_guest_status.arg({});
  throwsCode(t, () => structs.kvm_sev_cmd.arg({ id: KVM_SEV.LAUNCH_START, data: status }), 'ERR_OUT_OF_RANGE');
  throwsCode(t, () => structs.kvm_sev_cmd.arg({ id: KVM_SEV.INIT2, data: new Uint8Array(40) }), 'ERR_OUT_OF_RANGE');
  t.is(structs.kvm_sev_cmd.arg({ id: KVM_SEV.INIT2, data: structs.kvm_sev_init.arg({ vmsa_features: 1n << 5n }) }).fixups.length, 1);
  // Plain objects need a known struct.
  throwsCode(t, () => structs.kvm_sev_cmd.arg({ id: 23, data: { handle: 1 } }), 'ERR_INVALID_ARG_VALUE');
  throwsCode(t, () => structs.kvm_sev_cmd.arg({ id: KVM_SEV.LAUNCH_FINISH, data: { handle: 1 } }), 'ERR_INVALID_ARG_VALUE');
  // No data at all is fine (LAUNCH_FINISH, and the NULL probe's shape).
  t.is(structs.kvm_sev_cmd.arg({ id: KVM_SEV.LAUNCH_FINISH }).fixups.length, 0);
});

test('arg: sev_issue_cmd (packed) points at the /dev/sev struct of `cmd`', (t) => {
  const st = new Uint8Array(12);
  const a = structs.sev_issue_cmd.arg({ cmd: SEV_CMD.PLATFORM_STATUS, data: st });
  t.is(a.bytes.byteLength, 16);
  t.deepEqual(a.fixups, [{ offset: 4, target: st }]);
  throwsCode(t, () => structs.sev_issue_cmd.arg({ cmd: SEV_CMD.PLATFORM_STATUS, data: new Uint8Array(8) }), 'ERR_OUT_OF_RANGE');
  const csr = new Uint8Array(2084);
  const b = structs.sev_issue_cmd.arg({ cmd: SEV_CMD.PEK_CSR, data: { address: csr } });
  const inner = b.fixups[0]!.target;
  if (!isStruct(inner)) return t.fail('not encoded');
  t.deepEqual(structs.sev_user_data_pek_csr.decode(inner.bytes), { address: 0n, length: 2084 });
  t.deepEqual(inner.fixups, [{ offset: 0, target: csr }]);
  // packed u64 at offset 4 encodes correctly.
  const raw = structs.sev_issue_cmd.encode({ cmd: 1, data: 0x1122334455667788n, error: 4 });
  t.deepEqual([...raw], [1, 0, 0, 0, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 4, 0, 0, 0]);
});

test('codec metadata for native backends', (t) => {
  const cmd = structs.kvm_sev_cmd;
  t.is(cmd.pointers.length, 1);
  t.deepEqual(cmd.pointers[0]!.pointer?.selectBy, { name: 'id', offset: 0, size: 4 });
  t.deepEqual(structs.kvm_sev_launch_start.field('dh_uaddr').pointer?.len, { name: 'dh_len', offset: 16, size: 4 });
  t.is(structs.kvm_userspace_memory_region.field('userspace_addr').pointer?.retained, true);
  t.deepEqual(structs.kvm_userspace_memory_region.field('userspace_addr').pointer?.len, { name: 'memory_size', offset: 16, size: 8 });
  t.is(structs.kvm_device_attr.field('addr').pointer?.fixedLen, 8);
  t.is(structs.kvm_sev_launch_start.offsetOf('session_len'), 32);
  t.is(structs.kvm_sev_launch_start.field('pad0').kind, 'pad');
  t.is(structs.kvm_sregs.field('cs').type, 'struct kvm_segment');
  t.is(structs.kvm_sregs.field('interrupt_bitmap').type, 'u64[4]');
  t.is(structs.sev_issue_cmd.packed, true);
  t.is(structs.sev_issue_cmd.align, 1);
  t.is(structs.kvm_sev_guest_status.align, 4);
  throwsCode(t, () => structs.kvm_regs.offsetOf('rzz'), 'ERR_INVALID_ARG_VALUE');
  t.true(uapi.isStructCodec(structs.kvm_regs));
  t.false(uapi.isStructCodec({ size: 4 }));
});

test('defineStruct: C alignment, packed, align override, size assertion', (t) => {
  const a = defineStruct('t_a', [
    ['x', u8],
    ['y', u64],
    ['z', u16],
  ]);
  t.deepEqual(
    a.fields.map((f) => f.offset),
    [0, 8, 16],
  );
  t.is(a.size, 24);
  const p = defineStruct(
    't_p',
    [
      ['x', u8],
      ['y', u64],
      ['z', u16],
    ],
    { packed: true },
  );
  t.deepEqual(
    p.fields.map((f) => f.offset),
    [0, 1, 9],
  );
  t.is(p.size, 11);
  const al = defineStruct('t_al', [['x', u32]], { align: 8 });
  t.is(al.size, 8);
  const nested = defineStruct('t_n', [
    ['c', u8],
    ['a', a.type],
  ]);
  t.is(nested.offsetOf('a'), 8);
  t.is(nested.size, 32);
  t.is(
    defineStruct('t_arr', [
      ['c', u8],
      ['v', array(u32, 3)],
    ]).size,
    16,
  );
  // A pointer inside a struct nested by value: its fix-up offset is relative to the outer struct.
  const outer = defineStruct('t_outer', [
    ['x', u32],
    ['m', structs.kvm_sev_launch_measure.type],
    ['tail', array(u8, 3)],
    ['p', pad(1)],
  ]);
  t.is(outer.offsetOf('m'), 8);
  const blob = new Uint8Array(48);
  const oa = outer.arg({ x: 1, m: { uaddr: blob } });
  t.deepEqual(oa.fixups, [{ offset: 8, target: blob }]);
  t.is(outer.decode(oa.bytes).m.len, 48);
  t.throws(() => defineStruct('t_bad', [['x', u32]], { size: 8 }), { message: /computed size 4/ });
  throwsCode(
    t,
    () =>
      defineStruct('t_dup', [
        ['x', u32],
        ['x', u32],
      ]),
    'ERR_INVALID_ARG_VALUE',
  );
  throwsCode(t, () => defineStruct('t_len', [['p', ptr({ len: 'nope' })]]), 'ERR_INVALID_ARG_VALUE');
  throwsCode(
    t,
    () =>
      defineStruct('t_len8', [
        ['p', ptr({ len: 'l' })],
        ['l', u8],
      ]),
    'ERR_INVALID_ARG_VALUE',
  );
});

// ------------------------------------------------------------------------------------------------
// Variable-length structs and kvm_run

test('kvm_msrs helpers', (t) => {
  const a = uapi.msrsArg([{ index: 0x10, data: 5n }, { index: 0xc0000080 }]);
  t.is(a.bytes.byteLength, 8 + 2 * 16);
  t.is(a.fixups.length, 0);
  t.is(new DataView(a.bytes.buffer).getUint32(0, true), 2);
  t.deepEqual(uapi.decodeMsrs(a.bytes), {
    nmsrs: 2,
    entries: [
      { index: 0x10, data: 5n },
      { index: 0xc0000080, data: 0n },
    ],
  });
  t.deepEqual(uapi.decodeMsrs(a.bytes, 1).entries, [{ index: 0x10, data: 5n }]);
  throwsCode(t, () => uapi.msrsArg([{ index: -1 }]), 'ERR_OUT_OF_RANGE');
});

test('kvm_cpuid2 helpers', (t) => {
  const q = uapi.cpuid2Arg(4);
  t.is(q.bytes.byteLength, 8 + 4 * 40);
  t.is(new DataView(q.bytes.buffer).getUint32(0, true), 4);
  // Pretend KVM filled 2 entries and wrote nent = 2.
  structs.kvm_cpuid2.encode({ nent: 2 }, q.bytes, 0);
  structs.kvm_cpuid_entry2.encode({ function: 0x8000001f, eax: 0x1b, ebx: 0x33 }, q.bytes, 8);
  const d = uapi.decodeCpuid2(q.bytes);
  t.is(d.nent, 2);
  t.is(d.entries.length, 2);
  t.deepEqual(d.entries[0], { function: 0x8000001f, index: 0, flags: 0, eax: 0x1b, ebx: 0x33, ecx: 0, edx: 0 });
  const s = uapi.cpuid2Arg([{ function: 1, eax: 2 }]);
  t.deepEqual(uapi.decodeCpuid2(s.bytes).entries, [{ function: 1, index: 0, flags: 0, eax: 2, ebx: 0, ecx: 0, edx: 0 }]);
  throwsCode(t, () => uapi.cpuid2Arg(-1), 'ERR_OUT_OF_RANGE');
});

test('kvm_msr_list helpers', (t) => {
  const a = uapi.msrListArg(3);
  t.is(a.bytes.byteLength, 4 + 12);
  const dv = new DataView(a.bytes.buffer);
  t.is(dv.getUint32(0, true), 3);
  dv.setUint32(0, 2, true);
  dv.setUint32(4, 0x174, true);
  dv.setUint32(8, 0xc0000080, true);
  t.deepEqual(uapi.decodeMsrList(a.bytes), { nmsrs: 2, indices: [0x174, 0xc0000080] });
  // nmsrs larger than the buffer (E2BIG case): only what fits.
  dv.setUint32(0, 100, true);
  t.is(uapi.decodeMsrList(a.bytes).indices.length, 3);
});

test('kvm_run: exit codecs decode from the page at the union offset', (t) => {
  const page = new Uint8Array(4096);
  const dv = new DataView(page.buffer);
  dv.setUint32(uapi.KVM_RUN_EXIT_REASON_OFFSET, uapi.KVM_EXIT.IO, true);
  page[uapi.KVM_RUN_IO_DIRECTION_OFFSET] = uapi.KVM_EXIT_IO_OUT;
  page[uapi.KVM_RUN_IO_SIZE_OFFSET] = 1;
  dv.setUint16(uapi.KVM_RUN_IO_PORT_OFFSET, 0x3f8, true);
  dv.setUint32(uapi.KVM_RUN_IO_COUNT_OFFSET, 1, true);
  dv.setBigUint64(uapi.KVM_RUN_IO_DATA_OFFSET_OFFSET, 4096n - 8n, true);
  t.deepEqual(uapi.kvm_run_io.decode(page, uapi.KVM_RUN_EXIT_OFFSET), { direction: 1, size: 1, port: 0x3f8, count: 1, data_offset: 4088n });
  const run = uapi.decodeKvmRun(page);
  t.is(run.header.exit_reason, uapi.KVM_EXIT.IO);
  t.deepEqual(run.exit, { direction: 1, size: 1, port: 0x3f8, count: 1, data_offset: 4088n });

  dv.setUint32(uapi.KVM_RUN_EXIT_REASON_OFFSET, uapi.KVM_EXIT.SYSTEM_EVENT, true);
  dv.setUint32(uapi.KVM_RUN_SYSTEM_EVENT_TYPE_OFFSET, uapi.KVM_SYSTEM_EVENT.SEV_TERM, true);
  dv.setUint32(uapi.KVM_RUN_SYSTEM_EVENT_NDATA_OFFSET, 1, true);
  dv.setBigUint64(uapi.KVM_RUN_SYSTEM_EVENT_DATA_OFFSET, 0xdeadbeefcafef00dn, true);
  const se = uapi.kvm_run_system_event.decode(page, uapi.KVM_RUN_EXIT_OFFSET);
  t.is(se.type, 6);
  t.is(se.data[0], 0xdeadbeefcafef00dn);
  t.is(uapi.kvmRunExitStruct(uapi.KVM_EXIT.HLT), null);
  t.is(uapi.kvmRunExitStruct(uapi.KVM_EXIT.MMIO), uapi.kvm_run_mmio);
  throwsCode(t, () => uapi.decodeKvmRun(new Uint8Array(100)), 'ERR_OUT_OF_RANGE');
});

// ------------------------------------------------------------------------------------------------
// ioctl numbers

test('ioctl numbers: reference values, all unsigned 32-bit, none negative', (t) => {
  const ref: Record<string, number> = {
    KVM_GET_API_VERSION: 0xae00,
    KVM_CREATE_VM: 0xae01,
    KVM_CHECK_EXTENSION: 0xae03,
    KVM_GET_VCPU_MMAP_SIZE: 0xae04,
    KVM_CREATE_VCPU: 0xae41,
    KVM_RUN: 0xae80,
    KVM_ENABLE_CAP: 0x4068aea3,
    KVM_SET_USER_MEMORY_REGION: 0x4020ae46,
    KVM_GET_DEVICE_ATTR: 0x4018aee2,
    KVM_HAS_DEVICE_ATTR: 0x4018aee3,
    KVM_GET_SUPPORTED_CPUID: 0xc008ae05,
    KVM_GET_REGS: 0x8090ae81,
    KVM_SET_REGS: 0x4090ae82,
    KVM_GET_SREGS: 0x8138ae83,
    KVM_SET_SREGS: 0x4138ae84,
    KVM_GET_XSAVE: 0x9000aea4,
    KVM_SET_XSAVE: 0x5000aea5,
    KVM_GET_TSC_KHZ: 0xaea3,
    KVM_MEMORY_ENCRYPT_OP: 0xc008aeba,
    KVM_MEMORY_ENCRYPT_REG_REGION: 0x8010aebb,
    KVM_MEMORY_ENCRYPT_UNREG_REGION: 0x8010aebc,
    SEV_ISSUE_CMD: 0xc0105300,
  };
  for (const [name, v] of Object.entries(ref)) {
    t.is((uapi as unknown as Record<string, number>)[name], v, name);
    t.is(uapi.ioctlByName(name)?.request, v, `${name} in IOCTLS`);
  }
  t.is(uapi.KVM_SET_USER_MEMORY_REGION2, 0x40a0ae49);
  t.is(uapi.KVM_SET_MEMORY_ATTRIBUTES, 0x4020aed2);
  t.is(uapi.KVM_CREATE_GUEST_MEMFD, 0xc040aed4);
  for (const d of IOCTLS) {
    t.true(Number.isInteger(d.request) && d.request >= 0 && d.request <= 0xffffffff, `${d.name} is unsigned 32-bit`);
  }
  t.true(uapi.KVM_GET_REGS > 0x80000000);
  t.true(uapi.KVM_MEMORY_ENCRYPT_OP > 0);
});

test('ioctl encoding helpers', (t) => {
  t.is(uapi._IOWR(0xae, 0xba, 8), 0xc008aeba);
  t.is(uapi._IOR('S', 1, 16), 0x80105301);
  t.is(uapi._IO(0xae, 0x80), 0xae80);
  t.is(uapi._IOW(0xae, 0x46, 32), 0x4020ae46);
  t.deepEqual(uapi.decodeIoc(uapi.KVM_MEMORY_ENCRYPT_OP), { dir: 3, type: 0xae, nr: 0xba, size: 8 });
  t.deepEqual(uapi.decodeIoc(0xc008aeba | 0), { dir: 3, type: 0xae, nr: 0xba, size: 8 }, 'signed form');
  t.deepEqual(uapi.decodeIoc(uapi.KVM_GET_SREGS), { dir: 2, type: 0xae, nr: 0x83, size: 312 });
  throwsCode(t, () => uapi._IOC(4, 0xae, 0, 0), 'ERR_OUT_OF_RANGE');
  throwsCode(t, () => uapi._IOC(0, 0x100, 0, 0), 'ERR_OUT_OF_RANGE');
  throwsCode(t, () => uapi._IOR(0xae, 0, 0x4000), 'ERR_OUT_OF_RANGE');
  throwsCode(t, () => uapi._IOR(0xae, '1' as unknown as number, 8), 'ERR_INVALID_ARG_TYPE');
});

test('IOCTLS is exactly the allowlist, with fd kinds and argument shapes', (t) => {
  const names = [
    'KVM_GET_API_VERSION',
    'KVM_CREATE_VM',
    'KVM_CHECK_EXTENSION',
    'KVM_GET_VCPU_MMAP_SIZE',
    'KVM_GET_SUPPORTED_CPUID',
    'KVM_GET_MSR_INDEX_LIST',
    'KVM_GET_MSR_FEATURE_INDEX_LIST',
    'KVM_GET_DEVICE_ATTR',
    'KVM_HAS_DEVICE_ATTR',
    'KVM_CREATE_VCPU',
    'KVM_SET_USER_MEMORY_REGION',
    'KVM_SET_TSS_ADDR',
    'KVM_SET_IDENTITY_MAP_ADDR',
    'KVM_CREATE_IRQCHIP',
    'KVM_ENABLE_CAP',
    'KVM_MEMORY_ENCRYPT_OP',
    'KVM_MEMORY_ENCRYPT_REG_REGION',
    'KVM_MEMORY_ENCRYPT_UNREG_REGION',
    'KVM_RUN',
    'KVM_GET_REGS',
    'KVM_SET_REGS',
    'KVM_GET_SREGS',
    'KVM_SET_SREGS',
    'KVM_GET_FPU',
    'KVM_SET_FPU',
    'KVM_GET_XSAVE',
    'KVM_SET_XSAVE',
    'KVM_GET_XCRS',
    'KVM_SET_XCRS',
    'KVM_GET_MSRS',
    'KVM_SET_MSRS',
    'KVM_SET_CPUID2',
    'KVM_GET_LAPIC',
    'KVM_SET_LAPIC',
    'KVM_GET_VCPU_EVENTS',
    'KVM_SET_VCPU_EVENTS',
    'KVM_GET_MP_STATE',
    'KVM_SET_MP_STATE',
    'KVM_GET_DEBUGREGS',
    'KVM_SET_DEBUGREGS',
    'KVM_SET_GUEST_DEBUG',
    'KVM_GET_TSC_KHZ',
    'SEV_ISSUE_CMD',
    // issue 12: what a kvmtool- or Firecracker-class VMM needs
    'KVM_SET_DEVICE_ATTR',
    'KVM_GET_IRQCHIP',
    'KVM_SET_IRQCHIP',
    'KVM_IRQ_LINE',
    'KVM_IRQ_LINE_STATUS',
    'KVM_SET_GSI_ROUTING',
    'KVM_SIGNAL_MSI',
    'KVM_IRQFD',
    'KVM_IOEVENTFD',
    'KVM_CREATE_PIT2',
    'KVM_GET_PIT2',
    'KVM_SET_PIT2',
    'KVM_GET_DIRTY_LOG',
    'KVM_CLEAR_DIRTY_LOG',
    'KVM_SET_USER_MEMORY_REGION2',
    'KVM_CREATE_GUEST_MEMFD',
    'KVM_SET_MEMORY_ATTRIBUTES',
    'KVM_X86_SET_MSR_FILTER',
    'KVM_GET_CLOCK',
    'KVM_SET_CLOCK',
    'KVM_SET_TSC_KHZ',
    'KVM_SET_BOOT_CPU_ID',
    'KVM_CREATE_DEVICE',
    'KVM_GET_STATS_FD',
    'KVM_INTERRUPT',
    'KVM_NMI',
    'KVM_KVMCLOCK_CTRL',
  ];
  t.deepEqual([...IOCTLS.map((d) => d.name)].sort(), [...names].sort());
  t.is(new Set(IOCTLS.map((d) => d.request)).size, IOCTLS.length, 'requests are unique');
  for (const d of IOCTLS) {
    t.is(uapi.ioctlByRequest(d.request), d);
    t.is(uapi.ioctlByRequest(d.request | 0), d, `${d.name} by signed request`);
    t.is(d.arg === 'struct', d.struct !== undefined, `${d.name}: struct iff arg is struct`);
    t.true(d.fds.length > 0);
    // The size field of a struct ioctl is the struct's size (KVM_MEMORY_ENCRYPT_OP excepted: unsigned long).
    if (d.struct && d.name !== 'KVM_MEMORY_ENCRYPT_OP') t.is(uapi.decodeIoc(d.request).size, d.struct.size, `${d.name} size`);
    if (d.arg !== 'struct') t.is(uapi.decodeIoc(d.request).size, 0, `${d.name} has no size`);
  }
  const op = uapi.ioctlByName('KVM_MEMORY_ENCRYPT_OP')!;
  t.is(op.struct, structs.kvm_sev_cmd);
  t.is(op.nullArg, true);
  t.is(IOCTLS.filter((d) => d.nullArg).length, 1);
  t.deepEqual(
    IOCTLS.filter((d) => d.returnsFd)
      .map((d) => d.name)
      .sort(),
    ['KVM_CREATE_DEVICE', 'KVM_CREATE_GUEST_MEMFD', 'KVM_CREATE_VCPU', 'KVM_CREATE_VM', 'KVM_GET_STATS_FD'],
  );
  t.is(uapi.ioctlByName('KVM_CREATE_DEVICE')!.fdOut, structs.kvm_create_device.offsetOf('fd'));
  t.deepEqual(uapi.ioctlByName('KVM_CHECK_EXTENSION')!.fds, ['kvm', 'vm']);
  t.deepEqual(uapi.ioctlByName('KVM_GET_DEVICE_ATTR')!.fds, ['kvm', 'vm', 'vcpu', 'device']);
  t.deepEqual(uapi.ioctlByName('KVM_SET_DEVICE_ATTR')!.fds, ['vm', 'vcpu', 'device']);
  t.deepEqual(uapi.ioctlByName('KVM_SET_GSI_ROUTING')!.variable, { countOffset: 0, countSize: 4, headerSize: 8, elementSize: 48 });
  t.deepEqual(uapi.ioctlByName('KVM_ENABLE_CAP')!.fds, ['vm', 'vcpu']);
  t.deepEqual(uapi.ioctlByName('SEV_ISSUE_CMD')!.fds, ['sev']);
  t.deepEqual(uapi.ioctlByName('KVM_GET_MSRS')!.variable, { countOffset: 0, countSize: 4, headerSize: 8, elementSize: 16 });
  t.deepEqual(uapi.ioctlByName('KVM_SET_CPUID2')!.variable, { countOffset: 0, countSize: 4, headerSize: 8, elementSize: 40 });
  t.deepEqual(uapi.ioctlByName('KVM_GET_MSR_INDEX_LIST')!.variable, { countOffset: 0, countSize: 4, headerSize: 4, elementSize: 4 });
  t.is(IOCTLS.filter((d) => d.variable).length, 7);
  t.is(uapi.ioctlByName('KVM_SET_IDENTITY_MAP_ADDR')!.struct?.size, 8);
  t.is(uapi.ioctlByName('KVM_NOPE'), undefined);
  t.is(uapi.ioctlByRequest(0xdeadbeef), undefined);
});

// ------------------------------------------------------------------------------------------------
// Tables

test('errno table (x86_64 values, glibc texts, kernel-internal values)', (t) => {
  const E = uapi.ERRNO;
  const spot: Record<string, number> = {
    EPERM: 1,
    EINTR: 4,
    EIO: 5,
    ENXIO: 6,
    EBADF: 9,
    EAGAIN: 11,
    ENOMEM: 12,
    EFAULT: 14,
    EBUSY: 16,
    EEXIST: 17,
    ENODEV: 19,
    EINVAL: 22,
    ENOTTY: 25,
    ENOSPC: 28,
    ETIMEDOUT: 110,
    ENOTSUPP: 524,
    E2BIG: 7,
    ENOSYS: 38,
    EOPNOTSUPP: 95,
    ENOTSUP: 95,
    EWOULDBLOCK: 11,
    EDEADLOCK: 35,
    EHWPOISON: 133,
    ERESTARTSYS: 512,
  };
  for (const [k, v] of Object.entries(spot)) t.is(E[k], v, k);
  t.is(uapi.errnoName(22), 'EINVAL');
  t.is(uapi.errnoName(-22), 'EINVAL');
  t.is(uapi.errnoName(11), 'EAGAIN');
  t.is(uapi.errnoName(95), 'EOPNOTSUPP');
  t.is(uapi.errnoName(524), 'ENOTSUPP');
  t.is(uapi.errnoName(9999), 'E9999');
  t.is(uapi.errnoMessage(5), 'Input/output error');
  t.is(uapi.errnoMessage(25), 'Inappropriate ioctl for device');
  t.is(uapi.errnoMessage(524), 'Unknown error 524');
  t.is(uapi.errnoInfo(524)?.description, 'Operation is not supported');
  t.is(uapi.errnoMessage(41), 'Unknown error 41');
  const nums = new Set(uapi.errnoTable().map((e) => e.errno));
  for (let i = 1; i <= 133; i++) t.is(nums.has(i), i !== 41 && i !== 58, `errno ${i}`);
  throwsCode(t, () => uapi.errnoName('5' as unknown as number), 'ERR_INVALID_ARG_TYPE');
});

test('SEV firmware status table', (t) => {
  t.is(SEV_RET.NO_FW_CALL, -1);
  t.is(SEV_RET.SUCCESS, 0);
  t.is(SEV_RET.INVALID_GUEST_STATE, 2);
  t.is(SEV_RET.INVALID_CONFIG, 3);
  t.is(SEV_RET.INAVLID_CONFIG, 3);
  t.is(SEV_RET.INVALID_LEN, 4);
  t.is(SEV_RET.POLICY_FAILURE, 7);
  t.is(SEV_RET.INVALID_ASID, 0x0d);
  t.is(SEV_RET.DFFLUSH_REQUIRED, 0x0f);
  t.is(SEV_RET.INVALID_COMMAND, 0x11);
  t.is(SEV_RET.HWSEV_RET_PLATFORM, 0x13);
  t.is(SEV_RET.SECURE_DATA_INVALID, 0x18);
  t.is(SEV_RET.AEAD_OFLOW, 0x1d);
  t.is(SEV_RET.EXIT_RING_BUFFER, 0x1f);
  t.is(SEV_RET.INVALID_KEY, 0x27);
  t.is(SEV_RET.SHUTDOWN_INCOMPLETE, 0x28);
  t.is(SEV_RET.INCORRECT_BUFFER_LENGTH, 0x30);
  t.is(SEV_RET.SEV_STATUS_ERR_IN_DEV_CONN, 0x35);
  t.is(SEV_RET.RESPONSE_TOO_LARGE, 0x3f);
  t.is(uapi.SEV_RET_MAX, 0x40);
  // Every code 0x00..0x3F except the unassigned ones has a name.
  const unassigned = new Set([0x1e, 0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f, 0x34]);
  for (let c = 0; c < 0x40; c++) {
    t.is(uapi.isKnownSevStatus(c), !unassigned.has(c), `0x${c.toString(16)}`);
    t.truthy(uapi.sevStatusDescription(c));
  }
  t.is(uapi.sevStatusName(2), 'INVALID_GUEST_STATE');
  t.is(uapi.sevStatusName(3), 'INVALID_CONFIG');
  t.is(uapi.sevStatusName(-1), 'NO_FW_CALL');
  t.is(uapi.sevStatusName(0x1e), 'UNKNOWN_0x1E');
  t.is(uapi.sevStatusName(0x140), 'UNKNOWN_0x140');
  t.is(uapi.sevStatusDescription(4), 'Buffer too small');
  t.regex(uapi.sevStatusDescription(0x1e), /0x1E/);
  throwsCode(t, () => uapi.sevStatusName('2' as unknown as number), 'ERR_INVALID_ARG_TYPE');
});

test('constants: command ids, states, policy bits, VM types (reference spot values)', (t) => {
  t.is(KVM_SEV.INIT, 0);
  t.is(KVM_SEV.LAUNCH_START, 2);
  t.is(KVM_SEV.LAUNCH_MEASURE, 6);
  t.is(KVM_SEV.GUEST_STATUS, 16);
  t.is(KVM_SEV.GET_ATTESTATION_REPORT, 20);
  t.is(KVM_SEV.SEND_CANCEL, 21);
  t.is(KVM_SEV.INIT2, 22);
  t.is(KVM_SEV.SNP_LAUNCH_START, 100);
  t.is(KVM_SEV.SNP_ENABLE_REQ_CERTS, 103);
  t.is(uapi.KVM_SEV_NR_MAX, 104);
  t.is(uapi.sevCommandName(22), 'INIT2');
  t.is(uapi.sevCommandName(23), undefined);
  t.is(uapi.sevCommandName(100), 'SNP_LAUNCH_START');
  t.is(SEV_CMD.FACTORY_RESET, 0);
  t.is(SEV_CMD.GET_ID2, 8);
  t.is(SEV_CMD.SNP_VLEK_LOAD, 12);
  t.is(uapi.SEV_MAX, 13);
  t.is(uapi.sevPlatformCommandName(1), 'PLATFORM_STATUS');
  t.is(uapi.sevPlatformCommandName(13), undefined);
  t.is(uapi.SEV_FW_CMD.INIT, 0x01);
  t.is(uapi.SEV_FW_CMD.LAUNCH_START, 0x30);
  t.is(uapi.SEV_FW_CMD.LAUNCH_UPDATE_SECRET, 0x34);
  t.is(uapi.SEV_FW_CMD.DBG_ENCRYPT, 0x61);
  t.is(uapi.SEV_FW_CMD.SNP_GCTX_CREATE, 0x93);
  t.is(uapi.sevFirmwareCommandName(0x33), 'LAUNCH_MEASURE');
  t.deepEqual({ ...GSTATE }, { UNINIT: 0, LUPDATE: 1, LSECRET: 2, RUNNING: 3, SUPDATE: 4, RUPDATE: 5, SENT: 6 });
  t.deepEqual({ ...uapi.PSTATE }, { UNINIT: 0, INIT: 1, WORKING: 2 });
  t.is(uapi.guestStateName(5), 'RUPDATE');
  t.is(uapi.platformStateName(2), 'WORKING');
  t.deepEqual({ ...uapi.SEV_POLICY }, { NODBG: 1, NOKS: 2, ES: 4, NOSEND: 8, DOMAIN: 16, SEV: 32 });
  t.is(uapi.SEV_POLICY_API_MAJOR_SHIFT, 16);
  t.is(uapi.SEV_POLICY_API_MINOR_SHIFT, 24);
  t.is(uapi.SEV_POLICY_RESERVED_MASK, 0xffc0);
  t.is(uapi.SNP_POLICY.SMT, 0x10000n);
  t.is(uapi.SNP_POLICY.RSVD_MBO, 0x20000n);
  t.is(uapi.SNP_POLICY.DEBUG, 1n << 19n);
  t.is(uapi.SNP_POLICY.PAGE_SWAP_DISABLE, 1n << 25n);
  t.is(uapi.KVM_X86_SEV_VM, 2);
  t.is(uapi.KVM_X86_SEV_ES_VM, 3);
  t.is(uapi.vmTypeName(4), 'SNP');
  t.is(uapi.SVM_SEV_FEAT.DEBUG_SWAP, 0x20n);
  t.is(uapi.GHCB_VERSION_MIN, 1);
  t.is(uapi.GHCB_VERSION_MAX, 2);
  t.is(uapi.SEV_FW_BLOB_MAX_SIZE, 0x4000);
  t.is(uapi.SEV_STATUS_FLAGS_CONFIG_ES, 0x100);
  t.is(uapi.KVM_API_VERSION, 12);
  t.is(uapi.KVM_CAP.VM_TYPES, 235);
  t.is(uapi.KVM_CAP.VM_COPY_ENC_CONTEXT_FROM, 197);
  t.is(uapi.KVM_CAP.VM_MOVE_ENC_CONTEXT_FROM, 206);
  t.is(uapi.KVM_CAP.EXIT_HYPERCALL, 201);
  t.is(uapi.capName(236), 'PRE_FAULT_MEMORY');
  t.is(uapi.exitReasonName(24), 'SYSTEM_EVENT');
  t.is(uapi.exitReasonName(39), 'MEMORY_FAULT');
  t.is(uapi.exitReasonName(43), 'SNP_REQ_CERTS');
  t.is(uapi.exitReasonName(1000), undefined);
  t.is(uapi.KVM_SYSTEM_EVENT.SEV_TERM, 6);
  t.is(uapi.systemEventName(6), 'SEV_TERM');
  t.is(uapi.KVM_HC_MAP_GPA_RANGE, 12);
  t.is(1 << uapi.KVM_HC_MAP_GPA_RANGE, 0x1000);
  t.is(uapi.KVM_MAP_GPA_RANGE_ENC_STAT(1), uapi.KVM_MAP_GPA_RANGE.ENCRYPTED);
  t.is(uapi.MSR_KVM_MIGRATION_CONTROL, 0x4b564d08);
  t.is(uapi.KVM_X86_GRP_SEV, 1);
  t.is(uapi.KVM_MEM.READONLY, 2);
});

test('sevCommandStruct / sevPlatformCommandStruct follow the reference', (t) => {
  const s = uapi.sevCommandStruct;
  t.is(s(KVM_SEV.LAUNCH_START), structs.kvm_sev_launch_start);
  t.is(s(KVM_SEV.LAUNCH_UPDATE_DATA), structs.kvm_sev_launch_update_data);
  t.is(s(KVM_SEV.LAUNCH_SECRET), structs.kvm_sev_launch_secret);
  t.is(s(KVM_SEV.LAUNCH_MEASURE), structs.kvm_sev_launch_measure);
  t.is(s(KVM_SEV.SEND_START), structs.kvm_sev_send_start);
  t.is(s(KVM_SEV.SEND_UPDATE_DATA), structs.kvm_sev_send_update_data);
  t.is(s(KVM_SEV.RECEIVE_START), structs.kvm_sev_receive_start);
  t.is(s(KVM_SEV.RECEIVE_UPDATE_DATA), structs.kvm_sev_receive_update_data);
  t.is(s(KVM_SEV.GUEST_STATUS), structs.kvm_sev_guest_status);
  t.is(s(KVM_SEV.DBG_DECRYPT), structs.kvm_sev_dbg);
  t.is(s(KVM_SEV.DBG_ENCRYPT), structs.kvm_sev_dbg);
  t.is(s(KVM_SEV.GET_ATTESTATION_REPORT), structs.kvm_sev_attestation_report);
  t.is(s(KVM_SEV.INIT2), structs.kvm_sev_init);
  t.is(s(KVM_SEV.SNP_LAUNCH_START), structs.kvm_sev_snp_launch_start);
  t.is(s(KVM_SEV.SNP_LAUNCH_UPDATE), structs.kvm_sev_snp_launch_update);
  t.is(s(KVM_SEV.SNP_LAUNCH_FINISH), structs.kvm_sev_snp_launch_finish);
  for (const id of ['INIT', 'ES_INIT', 'LAUNCH_UPDATE_VMSA', 'LAUNCH_FINISH', 'SEND_FINISH', 'SEND_CANCEL', 'RECEIVE_FINISH'] as const) {
    t.is(s(KVM_SEV[id]), null, id);
  }
  for (const id of [23, 99, 104, -1]) t.is(s(id), undefined, `unknown ${id}`);
  // Every known id answers codec or null; nothing else answers.
  for (const id of Object.values(KVM_SEV)) t.not(s(id), undefined);

  const p = uapi.sevPlatformCommandStruct;
  t.is(p(SEV_CMD.PLATFORM_STATUS), structs.sev_user_data_status);
  t.is(p(SEV_CMD.PEK_CSR), structs.sev_user_data_pek_csr);
  t.is(p(SEV_CMD.PEK_CERT_IMPORT), structs.sev_user_data_pek_cert_import);
  t.is(p(SEV_CMD.PDH_CERT_EXPORT), structs.sev_user_data_pdh_cert_export);
  t.is(p(SEV_CMD.GET_ID), structs.sev_user_data_get_id);
  t.is(p(SEV_CMD.GET_ID2), structs.sev_user_data_get_id2);
  t.is(p(SEV_CMD.SNP_PLATFORM_STATUS), structs.sev_user_data_snp_status);
  t.is(p(SEV_CMD.SNP_SET_CONFIG), structs.sev_user_data_snp_config);
  t.is(p(SEV_CMD.SNP_VLEK_LOAD), structs.sev_user_data_snp_vlek_load);
  for (const c of [SEV_CMD.FACTORY_RESET, SEV_CMD.PEK_GEN, SEV_CMD.PDH_GEN, SEV_CMD.SNP_COMMIT]) t.is(p(c), null);
  t.is(p(uapi.SEV_MAX), undefined);
});

test('local migration: ids only behind an explicit choice, INIT2 collision guarded', (t) => {
  t.deepEqual({ ...uapi.localMigrationIds({ profile: 'local-migration-2021' }) }, { LOCAL_SEND: 22, LOCAL_RECEIVE: 23 });
  throwsCode(t, () => uapi.localMigrationIds({ send: 22, receive: 23 }), 'ERR_INVALID_ARG_VALUE');
  const e = t.throws(() => uapi.localMigrationIds({ send: 22, receive: 23 }));
  t.regex(e?.message ?? '', /INIT2/);
  t.deepEqual(
    { ...uapi.localMigrationIds({ send: 22, receive: 23, allowUpstreamCollision: true }) },
    { LOCAL_SEND: 22, LOCAL_RECEIVE: 23 },
  );
  t.deepEqual({ ...uapi.localMigrationIds({ send: 200, receive: 201 }) }, { LOCAL_SEND: 200, LOCAL_RECEIVE: 201 });
  throwsCode(t, () => uapi.localMigrationIds({ send: 200, receive: 200 }), 'ERR_INVALID_ARG_VALUE');
  throwsCode(t, () => uapi.localMigrationIds({ send: -1, receive: 201 }), 'ERR_OUT_OF_RANGE');
  throwsCode(t, () => uapi.localMigrationIds({ send: '200' as unknown as number, receive: 201 }), 'ERR_INVALID_ARG_TYPE');
  throwsCode(t, () => uapi.localMigrationIds({ profile: 'x' as 'local-migration-2021' }), 'ERR_INVALID_ARG_VALUE');
  // No constant for them anywhere in the command table.
  t.false(Object.keys(KVM_SEV).some((k) => k.startsWith('LOCAL')));
  const ids = uapi.localMigrationIds({ profile: 'local-migration-2021' });
  t.is(uapi.localMigrationStruct(22, ids), structs.kvm_sev_local_send);
  t.is(uapi.localMigrationStruct(23, ids), structs.kvm_sev_local_receive);
  t.is(uapi.localMigrationStruct(24, ids), undefined);
  const r = structs.kvm_sev_local_receive.decode(structs.kvm_sev_local_receive.encode({ info_token: 2n ** 64n - 2n, handle: 5 }));
  t.deepEqual(r, { info_token: 2n ** 64n - 2n, handle: 5 });
});

// ------------------------------------------------------------------------------------------------
// Bad input: typed error, nothing written

test('bad input gives the right typed error and leaves `into` untouched', (t) => {
  const c = structs.kvm_sev_launch_start;
  const attr = structs.kvm_sev_attestation_report;
  const regs = structs.kvm_regs;
  const cases: [string, () => unknown, Code][] = [];
  const into = new Uint8Array(128).fill(0xaa);
  const enc =
    <V>(codec: { encode(v: V, into?: Uint8Array, at?: number): Uint8Array }, v: V, at = 0) =>
    () =>
      codec.encode(v, into, at);
  // Valid fields come first so a non-atomic encoder would already have written them.
  cases.push(['unknown field', enc(c, { handle: 5, policy: 7, bogus: 1 } as never), 'ERR_INVALID_ARG_VALUE']);
  cases.push(['string for u32', enc(c, { handle: 5, policy: '7' } as never), 'ERR_INVALID_ARG_TYPE']);
  cases.push(['bigint for u32', enc(c, { handle: 5, policy: 7n } as never), 'ERR_INVALID_ARG_TYPE']);
  cases.push(['u32 too large', enc(c, { handle: 5, policy: 2 ** 32 }), 'ERR_OUT_OF_RANGE']);
  cases.push(['u32 negative', enc(c, { handle: 5, session_len: -1 }), 'ERR_OUT_OF_RANGE']);
  cases.push(['u32 fraction', enc(c, { handle: 5, session_len: 1.5 }), 'ERR_OUT_OF_RANGE']);
  cases.push(['u32 NaN', enc(c, { handle: 5, session_len: NaN }), 'ERR_OUT_OF_RANGE']);
  cases.push(['u8 too large', enc(structs.kvm_segment, { base: 1n, type: 256 }), 'ERR_OUT_OF_RANGE']);
  cases.push(['u16 negative', enc(structs.kvm_segment, { base: 1n, selector: -1 }), 'ERR_OUT_OF_RANGE']);
  cases.push(['u64 negative Number', enc(regs, { rax: 1n, rbx: -1 }), 'ERR_OUT_OF_RANGE']);
  cases.push(['u64 unsafe Number', enc(regs, { rax: 1n, rbx: 2 ** 53 }), 'ERR_OUT_OF_RANGE']);
  cases.push(['u64 negative bigint', enc(regs, { rax: 1n, rbx: -1n }), 'ERR_OUT_OF_RANGE']);
  cases.push(['u64 bigint > 2^64-1', enc(regs, { rax: 1n, rbx: 2n ** 64n }), 'ERR_OUT_OF_RANGE']);
  cases.push(['u64 string', enc(regs, { rax: 1n, rbx: '1' } as never), 'ERR_INVALID_ARG_TYPE']);
  cases.push(['u64 null', enc(regs, { rax: 1n, rbx: null } as never), 'ERR_INVALID_ARG_TYPE']);
  cases.push(['bytes wrong length', enc(attr, { len: 4, mnonce: Buffer.alloc(15) }), 'ERR_INVALID_ARG_VALUE']);
  cases.push(['bytes not a Uint8Array', enc(attr, { len: 4, mnonce: [1, 2] } as never), 'ERR_INVALID_ARG_TYPE']);
  cases.push(['array too long', enc(structs.kvm_debugregs, { dr6: 1n, db: [1n, 2n, 3n, 4n, 5n] }), 'ERR_OUT_OF_RANGE']);
  cases.push(['array not an array', enc(structs.kvm_debugregs, { dr6: 1n, db: 5n } as never), 'ERR_INVALID_ARG_TYPE']);
  cases.push(['array element bad', enc(structs.kvm_debugregs, { dr6: 1n, db: [1n, -1n] }), 'ERR_OUT_OF_RANGE']);
  cases.push(['nested field bad', enc(structs.kvm_sregs, { cr0: 1n, cs: { selector: 0x10000 } }), 'ERR_OUT_OF_RANGE']);
  cases.push(['nested not an object', enc(structs.kvm_sregs, { cr0: 1n, cs: 5 } as never), 'ERR_INVALID_ARG_TYPE']);
  cases.push(['value not an object', enc(c, 5 as never), 'ERR_INVALID_ARG_TYPE']);
  cases.push(['value null', enc(c, null as never), 'ERR_INVALID_ARG_TYPE']);
  cases.push(['into too short', () => c.encode({ handle: 5 }, new Uint8Array(39).fill(0xaa)), 'ERR_OUT_OF_RANGE']);
  cases.push(['into too short at offset', enc(c, { handle: 5 }, 100), 'ERR_OUT_OF_RANGE']);
  cases.push(['negative at', enc(c, { handle: 5 }, -1), 'ERR_OUT_OF_RANGE']);
  cases.push(['into not a Uint8Array', () => c.encode({ handle: 5 }, [] as unknown as Uint8Array), 'ERR_INVALID_ARG_TYPE']);
  for (const [what, fn, code] of cases) {
    throwsCode(t, fn, code, what);
    t.true(
      into.every((b) => b === 0xaa),
      `${what}: into untouched`,
    );
  }
});

test('bad input to decode and arg', (t) => {
  throwsCode(t, () => structs.kvm_regs.decode(new Uint8Array(143)), 'ERR_OUT_OF_RANGE');
  throwsCode(t, () => structs.kvm_regs.decode(new Uint8Array(144), 1), 'ERR_OUT_OF_RANGE');
  throwsCode(t, () => structs.kvm_regs.decode([] as unknown as Uint8Array), 'ERR_INVALID_ARG_TYPE');
  throwsCode(t, () => structs.kvm_sev_launch_start.arg({ bogus: 1 } as never), 'ERR_INVALID_ARG_VALUE');
  throwsCode(t, () => structs.kvm_sev_launch_start.arg({ handle: -1 }), 'ERR_OUT_OF_RANGE');
  // An auto length that does not fit the length field.
  const big = { kind: 'mapping' as const, mapping: fakeMapping(2 ** 33), offset: 0, length: 2 ** 33 };
  throwsCode(t, () => structs.kvm_sev_launch_update_data.arg({ uaddr: big }), 'ERR_OUT_OF_RANGE');
});

test("errors look like Node's own", (t) => {
  const a = uapi.invalidArgType('fd', 'number', 'x');
  t.true(a instanceof TypeError);
  t.is(a.code, 'ERR_INVALID_ARG_TYPE');
  t.is(a.message, 'The "fd" argument must be of type number. Received type string (\'x\')');
  t.is(uapi.invalidArgType('opts.fd', 'number', null).message, 'The "opts.fd" property must be of type number. Received null');
  t.is(
    uapi.invalidArgType('b', 'an instance of Uint8Array', [1]).message,
    'The "b" argument must be an instance of Uint8Array. Received an instance of Array',
  );
  const v = uapi.invalidArgValue('type', 'x', 'must be a VM type');
  t.true(v instanceof TypeError);
  t.is(v.code, 'ERR_INVALID_ARG_VALUE');
  t.is(v.message, "The argument 'type' must be a VM type. Received 'x'");
  t.is(uapi.invalidArgValue('a.b', 1).message, "The property 'a.b' is invalid. Received 1");
  const r = uapi.outOfRange('len', '>= 0 && <= 16384', 2 ** 40);
  t.true(r instanceof RangeError);
  t.is(r.code, 'ERR_OUT_OF_RANGE');
  t.is(r.message, 'The value of "len" is out of range. It must be >= 0 && <= 16384. Received 1_099_511_627_776');
  t.is(
    uapi.outOfRange('x', '>= 0', 2n ** 64n).message,
    'The value of "x" is out of range. It must be >= 0. Received 18_446_744_073_709_551_616n',
  );
});

test('types: decoded fields have the declared JS types (compile-time checks)', (t) => {
  const v = structs.kvm_sev_launch_start.decode(new Uint8Array(40));
  const handle: number = v.handle;
  const dh: bigint = v.dh_uaddr;
  // @ts-expect-error pads are not part of the value
  void v.pad0;
  const regs = structs.kvm_regs.decode(new Uint8Array(144));
  const rip: bigint = regs.rip;
  const sregs = structs.kvm_sregs.decode(new Uint8Array(312));
  const sel: number = sregs.cs.selector;
  const bm: bigint[] = sregs.interrupt_bitmap;
  const nonce: Uint8Array = structs.kvm_sev_attestation_report.decode(new Uint8Array(32)).mnonce;
  // @ts-expect-error u32 fields do not take bigint
  t.throws(() => structs.kvm_sev_guest_status.encode({ handle: 1n }));
  t.deepEqual([handle, dh, rip, sel, bm.length, nonce.length], [0, 0n, 0n, 0, 4, 16]);
});

test('encode/decode stay fast on the hot path', (t) => {
  // Generous bound: a regression to per-call layout work or heavy allocation shows up as >10x slower.
  const regs = { rax: 1n, rbx: 2n, rip: 0x1000n, rflags: 2n };
  const buf = new Uint8Array(144);
  const n = 50_000;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) structs.kvm_regs.decode(structs.kvm_regs.encode(regs, buf));
  const perOp = (performance.now() - t0) / n;
  t.log(`kvm_regs encode+decode: ${(perOp * 1000).toFixed(2)} µs`);
  t.true(perOp < 0.1, `${perOp} ms per encode+decode`);
});
