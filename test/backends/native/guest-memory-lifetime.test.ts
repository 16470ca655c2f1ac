/**
 * Guest memory outlives everything that can still reach it (issue 10, cases 1 to 3):
 * - every handle of this process to one VM or vCPU file (a copy received over SCM_RIGHTS) shares one
 *   state, so the memory-slot pins hold until the last handle goes, and a copy that comes back
 *   after every handle was closed issues nothing;
 * - after unmap() views read zeros: the range stays covered while native code or a transferred
 *   buffer may still read or write it, and is released once nothing can reach it;
 * - the run area is sized by the kernel's answer, or refused with the errno of asking.
 * What would crash runs in a child process (under the ASan build in CI, where it would report).
 */
import type { ExecutionContext } from 'ava';
import type { BackendFd, GuestMapping } from '../../../lib/backend/contract.js';
import { NativeBackend } from '../../../lib/backends/native/native-backend.js';
import * as ioc from '../../../lib/uapi/ioctls.js';
import { structs } from '../../../lib/uapi/index.js';
import { hwTest, kvmDevice } from '../../helpers/hw.js';
import { describeChild, runChild } from '../../helpers/node-child.js';

const req = kvmDevice();

function code(t: ExecutionContext, f: () => unknown, c: string): void {
  const e = t.throws(f) as (Error & { code?: string }) | undefined;
  t.is(e?.code, c, e?.message);
}

function slot(b: NativeBackend, vm: BackendFd, n: number, mem: GuestMapping | null, size = 0x10000): void {
  b.ioctl(
    vm,
    ioc.KVM_SET_USER_MEMORY_REGION,
    structs.kvm_userspace_memory_region.arg({
      slot: n,
      memory_size: mem ? BigInt(size) : 0n,
      userspace_addr: mem ? { kind: 'mapping', mapping: mem, offset: 0, length: size } : null,
    }),
  );
}

/** A VM with one memory slot over a fresh mapping, and a socket pair to send its fds over. */
function setup(t: ExecutionContext) {
  const b = new NativeBackend();
  const kvm = b.open('/dev/kvm');
  const vm = b.ioctlFd(kvm, ioc.KVM_CREATE_VM, 0);
  const mem = b.mmapAnonymous(0x10000);
  const [s1, s2] = b.socketPair();
  t.teardown(() => {
    for (const f of [s1, s2, vm, kvm]) f.close();
    try {
      mem.unmap();
    } catch {
      /* a test's own handles still pin it: they close first */
    }
  });
  slot(b, vm, 0, mem);
  const roundTrip = async (fd: BackendFd) => {
    await b.sendFds(s1, Uint8Array.of(1), [fd]);
    const got = await b.recvFds(s2, 1, 1);
    t.teardown(() => got.fds.forEach((f) => f.close()));
    return got.fds[0]!;
  };
  return { b, kvm, vm, mem, s1, s2, roundTrip };
}

hwTest(
  req,
  'case 1: a VM fd received in this process shares the slot pins: closing the first handle leaves the memory pinned',
  async (t) => {
    const { b, vm, mem, roundTrip } = setup(t);
    const copy = await roundTrip(vm);
    t.teardown(() => copy.close());
    t.is(copy.kind, 'vm');
    vm.close();
    t.is(mem.bindings, 1, 'the copy still holds the slot');
    code(t, () => mem.unmap(), 'EBUSY');
    t.false(mem.closed);
    // A slot deleted through the copy is deleted for every handle (one state).
    slot(b, copy, 0, null);
    t.is(mem.bindings, 0);
    copy.close();
    mem.unmap();
    t.true(mem.closed);
  },
);

hwTest(req, 'case 1: a received vCPU fd keeps its VM and runner state: the pins hold, and one runner per vCPU', async (t) => {
  const { b, kvm, vm, mem, roundTrip } = setup(t);
  const vcpu = b.ioctlFd(vm, ioc.KVM_CREATE_VCPU, 0);
  t.teardown(() => vcpu.close());
  const copy = await roundTrip(vcpu);
  t.teardown(() => copy.close());
  t.is(copy.kind, 'vcpu');
  const size = b.ioctl(kvm, ioc.KVM_GET_VCPU_MMAP_SIZE);
  const runner = b.createRunner(vcpu, size);
  t.teardown(() => runner.close());
  code(t, () => b.createRunner(copy, size), 'ERR_KVM_SEV_VCPU_BUSY');
  runner.close();
  vcpu.close();
  vm.close();
  t.is(mem.bindings, 1, 'the vCPU copy keeps its VM, and so the slot');
  code(t, () => mem.unmap(), 'EBUSY');
  copy.close();
  t.is(mem.bindings, 0);
  mem.unmap();
});

hwTest(req, "case 1: this process's VM that comes back after every handle was closed issues nothing", async (t) => {
  const { b, vm, mem, s1, s2 } = setup(t);
  await b.sendFds(s1, Uint8Array.of(1), [vm]); // the copy waits in the socket
  vm.close();
  t.is(mem.bindings, 0, 'no handle of this process is left: the pins went');
  mem.unmap();
  const { fds } = await b.recvFds(s2, 1, 1);
  t.teardown(() => fds.forEach((f) => f.close()));
  const back = fds[0]!;
  t.is(back.kind, 'vm');
  // Its slot 0 still names the memory unmapped above: nothing may run it or change it.
  code(t, () => b.ioctl(back, ioc.KVM_CHECK_EXTENSION, 3), 'ERR_KVM_SEV_ORPHAN_FD');
  code(t, () => b.ioctlFd(back, ioc.KVM_CREATE_VCPU, 0), 'ERR_KVM_SEV_ORPHAN_FD');
  back.close();
});

// Case 2: native code that holds a view's address past unmap() (the thread pool's zlib and crypto,
// a buffer moved by transfer()) reads zeros or the old bytes, never memory reused by someone else.
const NATIVE_USERS: [string, string][] = [
  [
    'zlib.deflate',
    `const zlib = await import('node:zlib');
     crypto.randomFillSync(mem.bytes.subarray(0, 8 << 20));
     const done = new Promise((res, rej) => zlib.deflate(mem.bytes, (e, r) => (e ? rej(e) : res(r))));`,
  ],
  ['crypto.randomFill', `const done = new Promise((res, rej) => crypto.randomFill(mem.bytes, (e, r) => (e ? rej(e) : res(r))));`],
];
for (const [what, start] of NATIVE_USERS) {
  hwTest(req, `case 2: ${what} on guest memory, then vm.close(): the work finishes, nothing crashes`, (t) => {
    const r = runChild(`
      const k = await import(lib);
      const crypto = await import('node:crypto');
      const kvm = k.Kvm.open({ backend: new k.NativeBackend() });
      const vm = kvm.createVm();
      const mem = vm.addMemory({ guestPhysAddr: 0n, size: 64 << 20 });
      ${start}
      vm.close();
      out.closed = mem.closed;
      // Whatever is allocated now must not land where the guest memory was while the work runs.
      const junk = [];
      for (let i = 0; i < 96; i++) junk.push(Buffer.alloc(1 << 20, 0x5a));
      await done;
      out.finished = true;
      out.junk = junk.every((j) => j[0] === 0x5a && j[j.length - 1] === 0x5a);
      kvm.close();`);
    t.is(r.status, 0, describeChild(r));
    t.deepEqual(r.out, { closed: true, finished: true, junk: true });
  });
}

hwTest(req, 'case 2: a buffer moved out by ArrayBuffer.prototype.transfer() reads zeros after unmap(), and a write harms nothing', (t) => {
  const r = runChild(
    `
    const { NativeBackend } = await import(native);
    const b = new NativeBackend();
    const m = b.mmapAnonymous(1 << 20);
    new Uint8Array(m.buffer).fill(42);
    const moved = m.buffer.transfer();
    m.unmap();
    out.closed = m.closed;
    const junk = [];
    for (let i = 0; i < 64; i++) junk.push(Buffer.alloc(64 << 10, 0x5a));
    const v = new Uint8Array(moved);
    out.length = v.length;
    out.sum = v.reduce((s, x) => s + x, 0);
    v.fill(7);
    out.junk = junk.every((j) => j.every((x) => x === 0x5a));`,
    { flags: ['--harmony-rab-gsab-transfer'] },
  );
  t.is(r.status, 0, describeChild(r));
  t.deepEqual(r.out, { closed: true, length: 1 << 20, sum: 0, junk: true });
});

hwTest(req, 'case 2: after unmap() views read zeros; the range is released once the views are collected', (t) => {
  const r = runChild(
    `
    const { NativeBackend } = await import(native);
    const { readFileSync } = await import('node:fs');
    const b = new NativeBackend();
    const maps = () => readFileSync('/proc/self/maps', 'utf8').split('\\n').length;
    const before = maps();
    for (let i = 0; i < 200; i++) {
      const m = b.mmapAnonymous(1 << 16);
      const v = new Uint8Array(m.buffer);
      v[0] = 1;
      m.unmap();
      if (v[0] !== 0 || m.buffer.byteLength !== 0) throw new Error('guest memory still visible');
    }
    for (let i = 0; i < 20; i++) { globalThis.gc(); await new Promise((r) => setTimeout(r, 5)); }
    out.growth = maps() - before;`,
    { flags: ['--expose-gc'] },
  );
  t.is(r.status, 0, describeChild(r));
  t.true((r.out?.['growth'] as number) < 50, `${String(r.out?.['growth'])} more mappings after 200 cycles`);
});

hwTest(req, 'case 3: with no fd left to ask KVM, the run area is refused with EMFILE, never mapped beyond the file', (t) => {
  const r = runChild(
    `
    const { NativeBackend } = await import(native);
    const ioc = await import(lib.replace('index.js', 'uapi/ioctls.js'));
    const fs = await import('node:fs');
    const b = new NativeBackend();
    const kvm = b.open('/dev/kvm');
    const vm = b.ioctlFd(kvm, ioc.KVM_CREATE_VM, 0);
    const vcpu = b.ioctlFd(vm, ioc.KVM_CREATE_VCPU, 0);
    const held = [];
    try { for (;;) held.push(fs.openSync('/dev/null', 'r')); } catch (e) { out.full = e.code; }
    try {
      const r = b.createRunner(vcpu, 1 << 24);
      new Uint8Array(r.runArea)[(1 << 24) - 1] = 1;
      out.touched = true;
    } catch (e) { out.code = e.code; out.syscall = e.syscall; }
    for (const f of held) fs.closeSync(f);`,
    { maxFds: 200 },
  );
  t.is(r.status, 0, describeChild(r));
  t.deepEqual(r.out, { full: 'EMFILE', code: 'EMFILE', syscall: 'open' });
});

hwTest(req, 'case 3: once KVM_GET_VCPU_MMAP_SIZE was answered, runners are sized by that answer even with no fd left', (t) => {
  const r = runChild(
    `
    const { NativeBackend } = await import(native);
    const ioc = await import(lib.replace('index.js', 'uapi/ioctls.js'));
    const fs = await import('node:fs');
    const b = new NativeBackend();
    const kvm = b.open('/dev/kvm');
    const size = b.ioctl(kvm, ioc.KVM_GET_VCPU_MMAP_SIZE);
    const vm = b.ioctlFd(kvm, ioc.KVM_CREATE_VM, 0);
    const vcpu = b.ioctlFd(vm, ioc.KVM_CREATE_VCPU, 0);
    const held = [];
    try { for (;;) held.push(fs.openSync('/dev/null', 'r')); } catch (e) { out.full = e.code; }
    try { b.createRunner(vcpu, 1 << 24); out.big = 'mapped'; } catch (e) { out.big = e.code; }
    const r = b.createRunner(vcpu, size);
    out.area = r.runArea.byteLength === size;
    r.close();
    for (const f of held) fs.closeSync(f);`,
    { maxFds: 200 },
  );
  t.is(r.status, 0, describeChild(r));
  t.deepEqual(r.out, { full: 'EMFILE', big: 'ERR_OUT_OF_RANGE', area: true });
});
