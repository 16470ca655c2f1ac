/**
 * Real guests on the real /dev/kvm: real-mode programs that print through COM1 and loop on port
 * I/O, with every exit handled in TypeScript.
 */
import type { ExecutionContext } from 'ava';
import { Kvm } from '../lib/kvm/kvm.js';
import { NativeBackend } from '../lib/backends/native/native-backend.js';
import { helloProgram, outLoopProgram, secretDemoProgram, secretDigest, type GuestProgram } from '../lib/app/guest/programs.js';
import { SerialPort } from '../lib/app/guest/serial.js';
import { loadProgram } from '../lib/app/guest/setup.js';
import type { VcpuExit } from '../lib/kvm/exits.js';
import { hwTest, kvmDevice } from '../test/helpers/hw.js';

const kvm = kvmDevice();

/** A fresh VM with 64 KiB at 0 and one vCPU in real mode at the program's origin; closed when the test ends. */
function boot(t: ExecutionContext, program: GuestProgram) {
  const k = Kvm.open({ backend: new NativeBackend() });
  t.teardown(() => k.close());
  const vm = k.createVm();
  t.teardown(() => vm.close());
  const mem = vm.addMemory({ guestPhysAddr: 0n, size: 0x10000 });
  const vcpu = vm.createVcpu(0);
  loadProgram(mem, vcpu, program);
  return { k, vm, mem, vcpu };
}
const bootHello = (t: ExecutionContext, message: string) => boot(t, helloProgram(message));
const SPIN: GuestProgram = { origin: 0x1000, code: Uint8Array.of(0xeb, 0xfe) }; // jmp $ : never exits on its own

hwTest(kvm, 'a real-mode guest prints through COM1 and halts (run(), exits handled in TS)', async (t) => {
  const { k, vm, vcpu } = bootHello(t, 'Hello from a kvm-sev guest!\n');
  const serial = new SerialPort();
  let exits = 0;
  let exit: VcpuExit;
  for (;;) {
    exit = await vcpu.run();
    exits++;
    if (serial.handle(exit)) continue;
    break;
  }
  t.is(exit.reason, 'hlt');
  t.is(serial.output, 'Hello from a kvm-sev guest!\n');
  // one LSR read (IN) and one THR write (OUT) per character, plus the HLT
  t.is(exits, 2 * 'Hello from a kvm-sev guest!\n'.length + 1);
  const regs = vcpu.getRegs();
  t.is(regs.rax & 0xffffn, 0x600dn);
  t.is(regs.rbx & 0xffffn, 0xbeefn);
  t.is(typeof regs.rip, 'bigint');
  vm.close();
  k.close();
  t.true(vcpu.closed);
});

hwTest(kvm, 'runSync() runs the same guest on the calling thread', (t) => {
  const { k, vm, vcpu } = bootHello(t, 'sync\n');
  const serial = new SerialPort();
  let exit: VcpuExit;
  do exit = vcpu.runSync();
  while (serial.handle(exit));
  t.is(exit.reason, 'hlt');
  t.is(serial.output, 'sync\n');
  vm.close();
  k.close();
});

hwTest(kvm, 'a guest looping on port I/O: 20,000 OUT exits, each value seen in order', async (t) => {
  const n = 20000;
  const { k, vm, vcpu } = boot(t, outLoopProgram(n, 0x80));
  let count = 0;
  let bad = 0;
  for (;;) {
    const exit = count % 2 === 0 ? await vcpu.run() : vcpu.runSync();
    if (exit.reason !== 'io') {
      t.is(exit.reason, 'hlt');
      break;
    }
    if (exit.port !== 0x80 || exit.direction !== 'out' || exit.size !== 1 || exit.data[0] !== (count & 0xff)) bad++;
    count++;
  }
  t.is(count, n);
  t.is(bad, 0);
  t.is(vcpu.getRegs().rcx & 0xffffn, 0n); // LOOP ran CX down to zero
  vm.close();
  k.close();
});

hwTest(kvm, 'kick() interrupts a guest spinning in an endless loop', async (t) => {
  const { k, vm, vcpu } = boot(t, SPIN);
  const p = vcpu.run();
  await new Promise((r) => setTimeout(r, 50));
  vcpu.kick();
  const exit = await p;
  t.is(exit.reason, 'intr');
  t.is(vcpu.getRegs().rip, 0x1000n);
  vm.close();
  k.close();
});

hwTest(kvm, 'closing a VM while its vCPU runs stops the vCPU thread', async (t) => {
  const { k, vm, mem, vcpu } = boot(t, SPIN);
  const p = vcpu.run();
  await new Promise((r) => setTimeout(r, 20));
  vm.close();
  t.deepEqual(await p, { reason: 'intr' });
  t.true(vcpu.closed);
  t.true(mem.closed);
  k.close();
});

hwTest(kvm, 'the demo guest folds the secret in its memory into the digest the host computes', async (t) => {
  const secret = new TextEncoder().encode('correct horse battery staple, 32');
  const { k, vm, mem, vcpu } = boot(t, secretDemoProgram(0x9000, secret.length));
  mem.write(0x9000n, secret);
  const serial = new SerialPort();
  let exit: VcpuExit;
  while (serial.handle((exit = await vcpu.run())));
  t.is(exit!.reason, 'hlt');
  t.is(serial.output, `secret digest: ${secretDigest(secret)}\n`);
  t.not(secretDigest(secret), secretDigest(secret.map((b, i) => (i === 3 ? b ^ 1 : b))));
  vm.close();
  k.close();
});
