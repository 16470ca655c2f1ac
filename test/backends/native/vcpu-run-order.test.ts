/**
 * A vCPU ioctl is never issued into a running guest (issue 10, case 13): KVM holds the vCPU's mutex
 * for as long as the guest runs, so such an ioctl would wait for the guest to exit, and nothing (not
 * worker.terminate(), not process.exit()) could end the wait. The running check and the issue are
 * one step per vCPU, whichever handle; closing a vCPU kicks its guest out of the kernel. The guest
 * here spins forever (jmp $); each case runs in a child process, which a hang would leave stuck.
 */
import { hwTest, kvmDevice } from '../../helpers/hw.js';
import { describeChild, runChild } from '../../helpers/node-child.js';

const req = kvmDevice();

/** A spinning guest, its vCPU and a runner; `sleep`, `within` and `settle` helpers. */
const SPINNER = `
  const { NativeBackend } = await import(native);
  const ioc = await import(lib.replace('index.js', 'uapi/ioctls.js'));
  const { structs } = await import(lib.replace('index.js', 'uapi/index.js'));
  const b = new NativeBackend();
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const within = (p, ms) => Promise.race([p, sleep(ms).then(() => 'stuck')]);
  const settle = (p) => p.then((v) => 'resolved ' + v, (e) => e.code);
  const kvm = b.open('/dev/kvm');
  const vm = b.ioctlFd(kvm, ioc.KVM_CREATE_VM, 0);
  const mem = b.mmapAnonymous(0x10000);
  new Uint8Array(mem.buffer).set([0xeb, 0xfe], 0x1000);
  b.ioctl(vm, ioc.KVM_SET_USER_MEMORY_REGION, structs.kvm_userspace_memory_region.arg({
    slot: 0, memory_size: 0x10000n, userspace_addr: { kind: 'mapping', mapping: mem, offset: 0, length: 0x10000 } }));
  const vcpu = b.ioctlFd(vm, ioc.KVM_CREATE_VCPU, 0);
  const sregs = structs.kvm_sregs.arg({});
  b.ioctl(vcpu, ioc.KVM_GET_SREGS, sregs);
  const s = structs.kvm_sregs.decode(sregs.bytes);
  s.cs.base = 0n; s.cs.selector = 0;
  b.ioctl(vcpu, ioc.KVM_SET_SREGS, structs.kvm_sregs.arg(s));
  b.ioctl(vcpu, ioc.KVM_SET_REGS, structs.kvm_regs.arg({ rip: 0x1000n, rflags: 2n }));
  const runner = b.createRunner(vcpu, b.ioctl(kvm, ioc.KVM_GET_VCPU_MMAP_SIZE));`;

hwTest(req, 'case 13: an ioctlAsync queued before run() but issued after it is refused (busy), not stuck behind the guest', (t) => {
  const r = runChild(
    `${SPINNER}
    const crypto = await import('node:crypto');
    // The thread pool is busy for a while: the ioctl is issued only after the guest runs.
    for (let i = 0; i < 4; i++) crypto.pbkdf2('x', 'y', 200000, 32, 'sha256', () => {});
    const ioctl = settle(b.ioctlAsync(vcpu, ioc.KVM_GET_REGS, structs.kvm_regs.arg({})));
    const running = settle(runner.run());
    out.ioctl = await within(ioctl, 5000);
    runner.kick();
    out.run = await within(running, 5000);
    runner.close();
    // With nothing stuck in the kernel, the process exits (pipes are written synchronously).
    process.stdout.write('\\n' + JSON.stringify(out) + '\\n');
    process.exit(0);`,
    { timeoutMs: 30_000 },
  );
  t.is(r.status, 0, describeChild(r));
  t.deepEqual(r.out, { ioctl: 'ERR_KVM_SEV_VCPU_BUSY', run: 'resolved -4' });
});

hwTest(req, "case 13: a sync ioctl whose argument's getters start the guest is refused (busy) instead of blocking the thread", (t) => {
  const r = runChild(
    `${SPINNER}
    const regs = structs.kvm_regs.arg({});
    let running;
    const sneaky = { kind: 'struct', get bytes() { running = settle(runner.run()); return regs.bytes; }, fixups: [] };
    try { b.ioctl(vcpu, ioc.KVM_GET_REGS, sneaky); out.ioctl = 'issued'; } catch (e) { out.ioctl = e.code; }
    runner.kick();
    out.run = await within(running, 5000);
    runner.close();`,
    { timeoutMs: 30_000 },
  );
  t.is(r.status, 0, describeChild(r));
  t.deepEqual(r.out, { ioctl: 'ERR_KVM_SEV_VCPU_BUSY', run: 'resolved -4' });
});

hwTest(req, 'case 13: a running vCPU refuses ioctls through a second handle too (one state per vCPU, not per handle)', (t) => {
  const r = runChild(
    `${SPINNER}
    const [a, c] = b.socketPair();
    await b.sendFds(a, Uint8Array.of(1), [vcpu]);
    const copy = (await b.recvFds(c, 1, 1)).fds[0];
    const running = settle(runner.run());
    await sleep(100);
    try { b.ioctl(copy, ioc.KVM_GET_REGS, structs.kvm_regs.arg({})); out.sync = 'issued'; } catch (e) { out.sync = e.code; }
    out.async = await within(settle(b.ioctlAsync(copy, ioc.KVM_GET_REGS, structs.kvm_regs.arg({}))), 3000);
    runner.kick();
    out.run = await within(running, 5000);
    out.after = await within(settle(b.ioctlAsync(copy, ioc.KVM_GET_REGS, structs.kvm_regs.arg({}))), 3000);
    runner.close();`,
    { timeoutMs: 30_000 },
  );
  t.is(r.status, 0, describeChild(r));
  t.deepEqual(r.out, { sync: 'ERR_KVM_SEV_VCPU_BUSY', async: 'ERR_KVM_SEV_VCPU_BUSY', run: 'resolved -4', after: 'resolved 0' });
});

hwTest(
  req,
  'case 13: closing a vCPU kicks its running guest out of the kernel (closing a copy does not); the runner then refuses to run it',
  (t) => {
    const r = runChild(
      `${SPINNER}
    const [a, c] = b.socketPair();
    await b.sendFds(a, Uint8Array.of(1), [vcpu]);
    const copy = (await b.recvFds(c, 1, 1)).fds[0];
    const running = settle(runner.run());
    await sleep(100);
    copy.close();
    out.afterCopy = await within(running, 300);
    vcpu.close();
    out.run = await within(running, 5000);
    out.again = await within(settle(runner.run()), 3000);
    runner.close();`,
      { timeoutMs: 30_000 },
    );
    t.is(r.status, 0, describeChild(r));
    t.deepEqual(r.out, { afterCopy: 'stuck', run: 'resolved -4', again: 'EBADF' });
  },
);
