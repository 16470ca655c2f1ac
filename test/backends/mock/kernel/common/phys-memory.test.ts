/**
 * The mock's physical memory: pages are 4 KiB frames scattered in physical memory (never adjacent),
 * shared by every mapping of one memfd; a firmware range that runs past its frame reaches the
 * physically next frame; the kernel merges only adjacent frames into one command
 * (get_num_contig_pages(): LAUNCH_UPDATE_DATA page by page, LAUNCH_SECRET across pages EINVAL); a JS
 * buffer's copy keeps its offset in the page, as a C program's buffer has one.
 */
import test, { type ExecutionContext } from 'ava';
import { MockHost } from '../../../../../lib/backends/mock/index.js';
import { FRAME, PhysicalMemory, scatterFrame, unscatterFrame } from '../../../../../lib/backends/mock/kernel/common/phys-memory.js';
import { KVM_SEV } from '../../../../../lib/uapi/constants.js';
import type { IoctlStruct } from '../../../../../lib/uapi/ioctl-arg.js';
import * as ioc from '../../../../../lib/uapi/ioctls.js';
import { kvm_userspace_memory_region } from '../../../../../lib/uapi/kvm-structs.js';
import {
  kvm_sev_cmd,
  kvm_sev_dbg,
  kvm_sev_launch_secret,
  kvm_sev_launch_start,
  kvm_sev_launch_update_data,
} from '../../../../../lib/uapi/sev-structs.js';

test('frames: a bijection of a store range under which consecutive pages are never adjacent', (t) => {
  for (const id of [2, 3, 77]) {
    const seen = new Set<number>();
    for (let p = 0; p < 50_000; p++) {
      const f = scatterFrame(id, p);
      t.is(unscatterFrame(id, f), p);
      seen.add(f);
      const next = scatterFrame(id, p + 1);
      if (Math.abs(next - f) === 1) t.fail(`store ${id}: pages ${p} and ${p + 1} sit in adjacent frames`);
    }
    t.is(seen.size, 50_000);
  }
});

test("a mapping's pages are scattered frames; every mapping of one memfd shows the same frames", (t) => {
  const host = new MockHost();
  const m = host.mmapAnonymous(4 * FRAME);
  t.teardown(() => m.unmap());
  const r = host.memory.regionOf(m);
  const pages = [0, 1, 2, 3].map((p) => r.phys(p * FRAME));
  t.true(pages.every((a) => (a & 0xfffn) === 0n));
  t.is(new Set(pages).size, 4);
  for (let i = 1; i < 4; i++) t.not(pages[i], pages[i - 1]! + BigInt(FRAME), `page ${i} follows page ${i - 1} physically`);
  t.is(r.phys(FRAME + 123), pages[1]! + 123n);
  const fd = host.memfdCreate('guest', 4 * FRAME);
  t.teardown(() => fd.close());
  const a = host.mmapShared(fd, 4 * FRAME);
  t.teardown(() => a.unmap());
  const b = host.mmapShared(fd, 2 * FRAME, 2 * FRAME);
  t.teardown(() => b.unmap());
  t.is(host.memory.regionOf(b).phys(0), host.memory.regionOf(a).phys(2 * FRAME));
  t.not(host.memory.regionOf(a).phys(0), r.phys(0));
});

test('a physical range within a frame is live; one across frames is gathered from the physically next frame and scattered back', (t) => {
  const host = new MockHost();
  const m = host.mmapAnonymous(2 * FRAME);
  t.teardown(() => m.unmap());
  const bytes = new Uint8Array(m.buffer);
  bytes.fill(0x11, 0, FRAME);
  bytes.fill(0x22, FRAME);
  const phys = host.memory.phys;
  const base = host.memory.regionOf(m).phys(0);
  const live = phys.view(base + 16n, 32);
  live.bytes[0] = 0x99;
  t.is(bytes[16], 0x99, 'a live view of the page');
  const across = phys.view(base + BigInt(FRAME - 8), 16);
  t.deepEqual(
    [...across.bytes],
    [...new Array<number>(8).fill(0x11), ...new Array<number>(8).fill(0)],
    'the next frame is not the next page',
  );
  across.bytes.fill(0x33);
  across.commit();
  t.deepEqual(bytes.subarray(FRAME - 8, FRAME), new Uint8Array(8).fill(0x33));
  t.deepEqual(bytes.subarray(FRAME, FRAME + 8), new Uint8Array(8).fill(0x22), 'the page after keeps its bytes');
  t.deepEqual(phys.read(base + BigInt(FRAME), 8), new Uint8Array(8).fill(0x33), 'the frame after holds them');
});

test('kernel allocations are physically contiguous, with a frame of nobody after them', (t) => {
  const phys = new PhysicalMemory();
  const a = phys.allocKernel(2 * FRAME);
  a.bytes.fill(7);
  t.deepEqual(phys.read(a.paddr + BigInt(FRAME) - 4n, 8), new Uint8Array(8).fill(7), 'its two frames are adjacent');
  phys.write(a.paddr + BigInt(2 * FRAME), new Uint8Array([1, 2, 3]));
  t.is(a.bytes.length, 2 * FRAME);
  t.deepEqual(phys.read(a.paddr + BigInt(2 * FRAME), 3), new Uint8Array([1, 2, 3]), 'past its end: another frame');
  const b = phys.allocKernel(FRAME);
  t.true(b.paddr >= a.paddr + BigInt(3 * FRAME), 'the frame after an allocation is nobody’s');
  a.free();
  t.is(phys.allocKernel(2 * FRAME).paddr, a.paddr, 'freed frames are handed out again');
});

/** A VM in LAUNCH_UPDATE with 4 frames of memory in slot 0; what it opens is released in t.teardown. */
function launching(t: ExecutionContext) {
  const host = new MockHost({ trace: true });
  const kvm = host.open('/dev/kvm');
  t.teardown(() => kvm.close());
  const sev = host.open('/dev/sev');
  t.teardown(() => sev.close());
  const vm = host.ioctlFd(kvm, ioc.KVM_CREATE_VM, 0);
  t.teardown(() => vm.close()); // if the mmap below fails
  const mem = host.mmapAnonymous(4 * FRAME);
  // The slot keeps the mapping busy while the VM lives: the VM goes first.
  t.teardown(() => {
    vm.close();
    mem.unmap();
  });
  host.ioctl(
    vm,
    ioc.KVM_SET_USER_MEMORY_REGION,
    kvm_userspace_memory_region.arg({
      slot: 0,
      memory_size: BigInt(mem.size),
      userspace_addr: { kind: 'mapping', mapping: mem, offset: 0, length: mem.size },
    }),
  );
  const op = (id: number, data: IoctlStruct | null = null) =>
    host.ioctl(vm, ioc.KVM_MEMORY_ENCRYPT_OP, kvm_sev_cmd.arg({ id, data, sev_fd: sev.fd }));
  const code = (f: () => unknown) => {
    try {
      f();
      return 'ok';
    } catch (e) {
      return (e as { code: string }).code;
    }
  };
  op(KVM_SEV.INIT);
  op(KVM_SEV.LAUNCH_START, kvm_sev_launch_start.arg({ policy: 0 }));
  return { host, vm, mem, op, code };
}

test('LAUNCH_UPDATE_DATA issues one firmware command per page; LAUNCH_SECRET refuses pages that are not physically contiguous', (t) => {
  const g = launching(t);
  g.host.trace.clear();
  g.op(
    KVM_SEV.LAUNCH_UPDATE_DATA,
    kvm_sev_launch_update_data.arg({ uaddr: { kind: 'mapping', mapping: g.mem, offset: 16, length: 3 * FRAME - 32 } }),
  );
  t.deepEqual(
    g.host.trace.entries.at(-1)!.firmware.map((f) => f.command),
    ['LAUNCH_UPDATE_DATA', 'LAUNCH_UPDATE_DATA', 'LAUNCH_UPDATE_DATA'],
  );
  const secret = (offset: number, length: number) =>
    g.code(() =>
      g.op(
        KVM_SEV.LAUNCH_SECRET,
        kvm_sev_launch_secret.arg({
          hdr_uaddr: new Uint8Array(52),
          guest_uaddr: { kind: 'mapping', mapping: g.mem, offset, length },
          trans_uaddr: new Uint8Array(length),
        }),
      ),
    );
  t.is(secret(FRAME - 16, 32), 'EINVAL', 'two pages, two frames apart');
  t.is(secret(FRAME + 16, 32), 'EIO', 'one page reaches the firmware (which refuses a secret before LAUNCH_MEASURE)');
});

test("a JS buffer's copy keeps its offset in the page: the kernel sees the low bits a C buffer would have", (t) => {
  const g = launching(t);
  const plain = new Uint8Array(g.mem.buffer).map((_, i) => (i * 7 + 3) & 0xff);
  new Uint8Array(g.mem.buffer).set(plain);
  g.op(
    KVM_SEV.LAUNCH_UPDATE_DATA,
    kvm_sev_launch_update_data.arg({ uaddr: { kind: 'mapping', mapping: g.mem, offset: 0, length: g.mem.size } }),
  );
  const host = new Uint8Array(2 * FRAME);
  const dst = host.subarray(FRAME - 6, FRAME + 10); // 16 bytes across a page boundary of its buffer
  g.op(
    KVM_SEV.DBG_DECRYPT,
    kvm_sev_dbg.arg({ src_uaddr: { kind: 'mapping', mapping: g.mem, offset: 0x1008, length: 16 }, dst_uaddr: dst }),
  );
  t.deepEqual(dst, plain.subarray(0x1008, 0x1018));
  const seen = g.host.trace.entries.at(-1)!.dataIn as { dst_uaddr: bigint };
  t.is(Number(seen.dst_uaddr & 0xfffn), FRAME - 6);
  t.deepEqual(host.subarray(0, FRAME - 6), new Uint8Array(FRAME - 6), 'nothing written before it');
  t.deepEqual(host.subarray(FRAME + 10), new Uint8Array(FRAME - 10), 'nothing written after it');
});
