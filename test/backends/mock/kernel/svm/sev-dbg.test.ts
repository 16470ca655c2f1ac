/**
 * KVM_SEV_DBG_DECRYPT / DBG_ENCRYPT through the kernel's bounce handling (arch/x86/kvm/svm/sev.c:
 * sev_dbg_crypt()): byte-exact for unaligned offsets and lengths across 16-byte and page boundaries
 * on the 7.2 profile; the 6.12 profile keeps that kernel's __sev_dbg_encrypt_user(), which re-encrypts
 * round_up(len, 16) bytes from the rounded-down address of an unaligned destination (its tail is not
 * written) and runs past the destination page into the physically next frame.
 */
import test, { type ExecutionContext } from 'ava';
import fc from 'fast-check';
import { MockHost } from '../../../../../lib/backends/mock/index.js';
import { KVM_SEV } from '../../../../../lib/uapi/constants.js';
import type { IoctlStruct } from '../../../../../lib/uapi/ioctl-arg.js';
import * as ioc from '../../../../../lib/uapi/ioctls.js';
import { kvm_userspace_memory_region } from '../../../../../lib/uapi/kvm-structs.js';
import { kvm_sev_cmd, kvm_sev_dbg, kvm_sev_launch_start, kvm_sev_launch_update_data } from '../../../../../lib/uapi/sev-structs.js';

const SIZE = 0x4000;

function launched(t: ExecutionContext, kernel: '6.12' | '7.2' = '7.2') {
  const host = new MockHost({ kernel });
  const sev = host.open('/dev/sev');
  t.teardown(() => sev.close());
  const kvm = host.open('/dev/kvm');
  t.teardown(() => kvm.close());
  const vm = host.ioctlFd(kvm, ioc.KVM_CREATE_VM, 0);
  t.teardown(() => vm.close());
  const mem = host.mmapAnonymous(SIZE);
  t.teardown(() => {
    vm.close(); // first: the mapping backs the VM's memory slot
    mem.unmap();
  });
  host.ioctl(
    vm,
    ioc.KVM_SET_USER_MEMORY_REGION,
    kvm_userspace_memory_region.arg({
      slot: 0,
      guest_phys_addr: 0x100000n,
      memory_size: BigInt(SIZE),
      userspace_addr: { kind: 'mapping', mapping: mem, offset: 0, length: SIZE },
    }),
  );
  const op = (id: number, data: IoctlStruct | null = null) =>
    host.ioctl(vm, ioc.KVM_MEMORY_ENCRYPT_OP, kvm_sev_cmd.arg({ id, data, sev_fd: sev.fd }));
  const plain = new Uint8Array(SIZE).map((_, i) => (i * 31 + 7) & 0xff);
  new Uint8Array(mem.buffer).set(plain);
  op(KVM_SEV.INIT);
  op(KVM_SEV.LAUNCH_START, kvm_sev_launch_start.arg({ policy: 0 }));
  op(KVM_SEV.LAUNCH_UPDATE_DATA, kvm_sev_launch_update_data.arg({ uaddr: { kind: 'mapping', mapping: mem, offset: 0, length: SIZE } }));
  const range = (offset: number, length: number) => ({ kind: 'mapping' as const, mapping: mem, offset, length });
  const decrypt = (offset: number, length: number): Uint8Array => {
    const out = new Uint8Array(length);
    op(KVM_SEV.DBG_DECRYPT, kvm_sev_dbg.arg({ src_uaddr: range(offset, length), dst_uaddr: out }));
    return out;
  };
  const encrypt = (data: Uint8Array, offset: number) =>
    op(KVM_SEV.DBG_ENCRYPT, kvm_sev_dbg.arg({ src_uaddr: data, dst_uaddr: range(offset, data.length) }));
  return { host, mem, op, plain, range, decrypt, encrypt };
}

test('memory holds ciphertext, and DBG_DECRYPT is byte-exact at any offset and length', (t) => {
  const g = launched(t);
  t.notDeepEqual(new Uint8Array(g.mem.buffer).subarray(0, 64), g.plain.subarray(0, 64));
  const cases: [number, number][] = [
    [0, 16],
    [0, 4096],
    [1, 15],
    [7, 9],
    [15, 2],
    [4090, 12],
    [4095, 1],
    [4088, 4104],
    [0x17, 0x2fff],
    [0x3ff0, 16],
    [3, SIZE - 3],
  ];
  for (const [off, len] of cases) t.deepEqual(g.decrypt(off, len), g.plain.subarray(off, off + len), `[${off}, +${len})`);
});

for (const kernel of ['7.2', '6.12'] as const) {
  test(`${kernel}: DBG_ENCRYPT with aligned and unaligned destinations and lengths, across pages`, (t) => {
    const g = launched(t, kernel);
    const model = g.plain.slice();
    const put = (data: Uint8Array, off: number) => {
      g.encrypt(data, off);
      if (kernel === '7.2') {
        model.set(data, off); // every byte, wherever it lands
        return;
      }
      // 6.12, a JS source (its copy starts a page, so one step): an unaligned destination or length is
      // re-encrypted for round_up(len, 16) bytes from the rounded-down address, and only within the
      // destination's page (the rest goes to the physically next frame, not to the next page).
      const lo = off & ~15;
      const hi = off & 15 || data.length & 15 ? lo + ((data.length + 15) & ~15) : off + data.length;
      const pageEnd = (off & ~0xfff) + 0x1000;
      for (let i = 0; i < data.length; i++) if (off + i >= lo && off + i < Math.min(hi, pageEnd)) model[off + i] = data[i]!;
    };
    const bytes = (n: number, seed: number) => new Uint8Array(n).map((_, i) => (i * 13 + seed) & 0xff);
    put(bytes(32, 1), 0x40); // aligned
    put(bytes(20, 2), 0x100); // length not a multiple of 16
    put(bytes(16, 3), 0x208); // unaligned destination
    put(bytes(100, 4), 4090); // across a page
    put(bytes(9, 5), 0x3001);
    put(bytes(16, 6), 0x2001); // the kernel's example: 16 bytes at offset 1
    t.deepEqual(g.decrypt(0, SIZE), model);
    if (kernel === '6.12') {
      t.deepEqual(g.decrypt(0x208, 16).subarray(8), g.plain.subarray(0x210, 0x218), 'bytes past round_up(len, 16) keep their old contents');
      t.is(g.decrypt(0x2010, 1)[0], g.plain[0x2010], 'the 16th byte written at offset 1 is lost');
      t.deepEqual(g.decrypt(4096, 94), g.plain.subarray(4096, 4190), 'the next page is not written');
    } else {
      t.deepEqual(g.decrypt(0x208, 16), bytes(16, 3));
      t.deepEqual(g.decrypt(0x2001, 16), bytes(16, 6));
      t.deepEqual(g.decrypt(4090, 100), bytes(100, 4));
    }
  });
}

test('6.12: an aligned DBG_DECRYPT whose destination offset exceeds the source offset runs past the destination page; 7.2 stops at it', (t) => {
  for (const kernel of ['6.12', '7.2'] as const) {
    const g = launched(t, kernel);
    // A plain process buffer (not guest memory): 16 bytes into a page, 4096 bytes from a page-aligned source.
    const buf = g.host.mmapAnonymous(0x2000);
    t.teardown(() => buf.unmap());
    const view = new Uint8Array(buf.buffer);
    view.fill(0xee);
    g.op(
      KVM_SEV.DBG_DECRYPT,
      kvm_sev_dbg.arg({ src_uaddr: g.range(0x1000, 0x1000), dst_uaddr: { kind: 'mapping', mapping: buf, offset: 16, length: 0x1000 } }),
    );
    t.deepEqual(view.subarray(16, 0x1000), g.plain.subarray(0x1000, 0x2000 - 16), `${kernel}: the destination page`);
    if (kernel === '7.2')
      t.deepEqual(view.subarray(0x1000, 0x1010), g.plain.subarray(0x2000 - 16, 0x2000), '7.2: the rest in the next page');
    else
      t.deepEqual(
        view.subarray(0x1000, 0x1010),
        new Uint8Array(16).fill(0xee),
        '6.12: the next page keeps its bytes (the firmware wrote the next frame)',
      );
  }
});

test('DBG argument checks: len 0, NULL src or dst are EINVAL; a lying length never reaches the kernel', (t) => {
  const g = launched(t);
  const code = (data: IoctlStruct) => {
    try {
      g.op(KVM_SEV.DBG_DECRYPT, data);
      return 'ok';
    } catch (e) {
      return (e as { code: string }).code;
    }
  };
  t.is(code(kvm_sev_dbg.arg({ src_uaddr: g.range(0, 16), dst_uaddr: new Uint8Array(16), len: 0 })), 'EINVAL');
  t.is(code(kvm_sev_dbg.arg({ dst_uaddr: new Uint8Array(16), len: 16 })), 'EINVAL');
  t.is(code(kvm_sev_dbg.arg({ src_uaddr: g.range(0, 16), len: 16 })), 'EINVAL');
  // A hand-built struct whose paired length lies about the source (the boundary refuses it).
  const lie = {
    kind: 'struct' as const,
    bytes: kvm_sev_dbg.encode({ len: 32 }),
    fixups: [
      { offset: 0, target: g.range(SIZE - 16, 16) },
      { offset: 8, target: new Uint8Array(32) },
    ],
  };
  t.is(code(lie), 'ERR_OUT_OF_RANGE');
  // The last 16 bytes of the mapping: one page each side.
  t.is(code(kvm_sev_dbg.arg({ src_uaddr: g.range(SIZE - 16, 16), dst_uaddr: new Uint8Array(16) })), 'ok');
});

test('6.12 pins a NULL source (the page fails to pin: ENOMEM); 7.2 refuses it first (EINVAL)', (t) => {
  for (const [kernel, expected] of [
    ['6.12', 'ENOMEM'],
    ['7.2', 'EINVAL'],
  ] as const) {
    const g = launched(t, kernel);
    const e = t.throws(() => g.op(KVM_SEV.DBG_DECRYPT, kvm_sev_dbg.arg({ dst_uaddr: new Uint8Array(16), len: 16 })));
    t.is((e as { code?: string }).code, expected, kernel);
  }
});

test('7.2: DBG_ENCRYPT then DBG_DECRYPT round-trips any length at any host and guest offset, and writes nothing else', (t) => {
  const g = launched(t, '7.2');
  const model = g.plain.slice();
  const hostIn = g.host.mmapAnonymous(SIZE);
  const hostOut = g.host.mmapAnonymous(SIZE);
  t.teardown(() => [hostIn, hostOut].forEach((m) => m.unmap()));
  const inBytes = new Uint8Array(hostIn.buffer);
  const outBytes = new Uint8Array(hostOut.buffer);
  fc.assert(
    fc.property(
      fc
        .integer({ min: 1, max: SIZE })
        .chain((n) => fc.tuple(fc.constant(n), fc.nat(SIZE - n), fc.nat(SIZE - n), fc.integer({ min: 0, max: 255 }))),
      ([n, i, j, seed]) => {
        inBytes.subarray(i, i + n).forEach((_, k, a) => (a[k] = (k * 29 + seed) & 0xff));
        g.op(
          KVM_SEV.DBG_ENCRYPT,
          kvm_sev_dbg.arg({ src_uaddr: { kind: 'mapping', mapping: hostIn, offset: i, length: n }, dst_uaddr: g.range(j, n) }),
        );
        model.set(inBytes.subarray(i, i + n), j);
        outBytes.fill(0);
        g.op(
          KVM_SEV.DBG_DECRYPT,
          kvm_sev_dbg.arg({ src_uaddr: g.range(j, n), dst_uaddr: { kind: 'mapping', mapping: hostOut, offset: i, length: n } }),
        );
        return (
          Buffer.compare(outBytes.subarray(i, i + n), inBytes.subarray(i, i + n)) === 0 &&
          outBytes.subarray(0, i).every((b) => b === 0) &&
          outBytes.subarray(i + n).every((b) => b === 0)
        );
      },
    ),
    { numRuns: 150, seed: 0x5ee },
  );
  t.deepEqual(g.decrypt(0, SIZE), model, 'the guest holds exactly what was written');
});
