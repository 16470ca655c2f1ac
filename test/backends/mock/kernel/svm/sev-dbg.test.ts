/**
 * KVM_SEV_DBG_DECRYPT / DBG_ENCRYPT through the kernel's bounce handling (arch/x86/kvm/svm/sev.c: sev_dbg_crypt()):
 * byte-exact for unaligned offsets and lengths across 16-byte and page boundaries, including the
 * kernel's own quirk on encrypt with an unaligned destination (only round_up(len, 16) bytes from the
 * rounded-down address are re-encrypted).
 */
import test, { type ExecutionContext } from 'ava';
import { MockHost } from '../../../../../lib/backends/mock/index.js';
import { KVM_SEV } from '../../../../../lib/uapi/constants.js';
import type { IoctlStruct } from '../../../../../lib/uapi/ioctl-arg.js';
import * as ioc from '../../../../../lib/uapi/ioctls.js';
import { kvm_userspace_memory_region } from '../../../../../lib/uapi/kvm-structs.js';
import { kvm_sev_cmd, kvm_sev_dbg, kvm_sev_launch_start, kvm_sev_launch_update_data } from '../../../../../lib/uapi/sev-structs.js';

const SIZE = 0x4000;

/** A launched guest on a fresh mock host; its fds and memory are released at teardown. */
function launched(t: ExecutionContext) {
  const host = new MockHost();
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

test('DBG_ENCRYPT: aligned and unaligned sources, destinations and lengths, across pages', (t) => {
  const g = launched(t);
  const model = g.plain.slice();
  const put = (data: Uint8Array, off: number) => {
    g.encrypt(data, off);
    // The kernel: an unaligned destination or length re-encrypts round_up(len, 16) bytes from the
    // rounded-down address (per source page, and a JS source starts a page).
    const lo = off & ~15;
    const hi = off & 15 || data.length & 15 ? lo + ((data.length + 15) & ~15) : off + data.length;
    for (let i = 0; i < data.length; i++) if (off + i >= lo && off + i < hi) model[off + i] = data[i]!;
  };
  const bytes = (n: number, seed: number) => new Uint8Array(n).map((_, i) => (i * 13 + seed) & 0xff);
  put(bytes(32, 1), 0x40); // aligned
  put(bytes(20, 2), 0x100); // length not a multiple of 16
  put(bytes(16, 3), 0x208); // unaligned destination: the last 8 bytes are not written (the kernel's quirk)
  put(bytes(100, 4), 4090); // across a page
  put(bytes(9, 5), 0x3001);
  t.deepEqual(g.decrypt(0, SIZE), model);
  t.deepEqual(g.decrypt(0x208, 16).subarray(8), g.plain.subarray(0x210, 0x218), 'bytes past round_up(len, 16) keep their old contents');
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
