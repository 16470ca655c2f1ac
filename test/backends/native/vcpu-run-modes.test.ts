/**
 * run() issues KVM_RUN inline on the JS thread while the guest's runs are short and one vCPU is
 * driven, and on the vCPU's own thread otherwise (issue 13). Whichever way, every exit is delivered
 * once and in order, a guest that runs long never holds the event loop (the watch kicks it out of
 * the inline run and it continues on its thread), and several vCPUs driven from one event loop all
 * progress. Each case runs in a child process, which a hang would leave stuck.
 */
import { hwTest, kvmDevice } from '../../helpers/hw.js';
import { describeChild, runChild } from '../../helpers/node-child.js';

const req = kvmDevice();

const SETUP = `
  const k = await import(lib);
  const kvm = k.Kvm.open({ backend: new k.NativeBackend() });
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const guest = (code) => {
    const vm = kvm.createVm();
    const mem = vm.addMemory({ guestPhysAddr: 0n, size: 0x10000 });
    const vcpu = vm.createVcpu(0);
    k.loadProgram(mem, vcpu, { origin: 0x1000, code });
    return { vm, mem, vcpu };
  };
  // counterProgram: inc dword [0x2000]; out 0x500, eax; forever
  const counter = () => guest(k.counterProgram(0x2000, 0x500).code);
  const count = (e) => { if (e.reason !== 'io' || e.port !== 0x500) throw new Error('exit ' + e.reason); return new DataView(e.data.buffer, e.data.byteOffset, 4).getUint32(0, true); };`;

hwTest(req, 'run(): every exit once and in order, from one vCPU and from three driven by one event loop', (t) => {
  const r = runChild(`${SETUP}
    const one = counter();
    let seq = [];
    for (let i = 0; i < 2000; i++) seq.push(count(await one.vcpu.run()));
    out.oneInOrder = seq.every((v, i) => v === i + 1);
    const many = [counter(), counter(), counter()];
    const got = await Promise.all(many.map(async (g) => { const s = []; for (let i = 0; i < 1000; i++) s.push(count(await g.vcpu.run())); return s; }));
    out.manyInOrder = got.map((s) => s.every((v, i) => v === i + 1));
    // Back to one vCPU: the same vCPU continues its sequence.
    seq = [];
    for (let i = 0; i < 500; i++) seq.push(count(await one.vcpu.run()));
    out.resumed = seq[0] === 2001 && seq.every((v, i) => v === 2001 + i);
    for (const g of [one, ...many]) g.vm.close();
    kvm.close();`);
  t.is(r.status, 0, describeChild(r));
  t.deepEqual(r.out, { oneInOrder: true, manyInOrder: [true, true, true], resumed: true });
});

hwTest(req, 'run() of a guest that never exits leaves the event loop free; kick() ends it, and short runs follow', (t) => {
  const r = runChild(`${SETUP}
    // jmp $ at 0x1000 until the host rewrites it to a counter loop's entry
    const { vm, mem, vcpu } = guest(Uint8Array.of(0xeb, 0xfe));
    const p = vcpu.run();
    let ticks = 0;
    for (let i = 0; i < 20; i++) { await sleep(1); ticks++; }
    out.ticks = ticks;
    vcpu.kick();
    out.kicked = (await p).reason;
    // Now a short-exit guest on the same vCPU: it runs inline again, exits in order.
    mem.write(0x1000n, k.counterProgram(0x2000, 0x500).code);
    vcpu.setRegs({ ...vcpu.getRegs(), rip: 0x1000n });
    const seq = [];
    for (let i = 0; i < 300; i++) seq.push(count(await vcpu.run()));
    out.after = seq.every((v, i) => v === i + 1);
    vm.close();
    kvm.close();`);
  t.is(r.status, 0, describeChild(r));
  t.is(r.out?.['ticks'], 20);
  t.is(r.out?.['kicked'], 'intr');
  t.is(r.out?.['after'], true);
});

hwTest(
  req,
  'a loop of `await run()` over short exits still lets timers, immediates and I/O callbacks run (the hang the sev-handoff test caught)',
  (t) => {
    // Inline runs settle at once, so such a loop is one long chain of microtasks; without a budget
    // none of the callbacks below ran before the loop's own limit. No clock decides: the loop ends
    // when all of them have run, or after 300,000 exits (4 s here).
    const r = runChild(`${SETUP}
    const { vm, vcpu } = counter();
    const fs = await import('node:fs');
    let timer = false, immediates = 0, reads = 0, exits = 0, last = 0;
    setTimeout(() => { timer = true; }, 1);
    const tick = () => { immediates++; if (immediates < 20) setImmediate(tick); };
    setImmediate(tick);
    const reading = (async () => { while (reads < 5) { await fs.promises.readFile('/proc/self/stat'); reads++; } })();
    const done = () => timer && immediates >= 20 && reads >= 5;
    while (!done() && exits < 300_000) { last = count(await vcpu.run()); exits++; }
    out.othersRan = done();
    out.inOrder = last === exits;
    await reading;
    vm.close();
    kvm.close();`);
    t.is(r.status, 0, describeChild(r));
    t.deepEqual(r.out, { othersRan: true, inOrder: true });
  },
);

hwTest(req, 'two vCPUs looping on `await run()` from one event loop still let timers, immediates and I/O callbacks run', (t) => {
  // One runs inline, the other on its thread; results of the other are taken only by budgeted inline
  // runs, so the two loops cannot pass results to each other in an endless chain of microtasks.
  const r = runChild(`${SETUP}
    const gs = [counter(), counter()];
    const fs = await import('node:fs');
    let timer = false, immediates = 0, reads = 0;
    setTimeout(() => { timer = true; }, 1);
    const tick = () => { immediates++; if (immediates < 20) setImmediate(tick); };
    setImmediate(tick);
    const reading = (async () => { while (reads < 5) { await fs.promises.readFile('/proc/self/stat'); reads++; } })();
    const done = () => timer && immediates >= 20 && reads >= 5;
    const loops = gs.map(async ({ vcpu }) => {
      let exits = 0, last = 0;
      while (!done() && exits < 150_000) { last = count(await vcpu.run()); exits++; }
      return last === exits;
    });
    out.inOrder = await Promise.all(loops);
    out.othersRan = done();
    await reading;
    for (const g of gs) g.vm.close();
    kvm.close();`);
  t.is(r.status, 0, describeChild(r));
  t.deepEqual(r.out, { inOrder: [true, true], othersRan: true });
});
