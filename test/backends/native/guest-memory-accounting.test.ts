/**
 * Guest memory is not V8's to account (issue 13): a view of a mapping does not count as external
 * memory, so a VM with a large guest costs no garbage collections; the view is still the mapping
 * itself (no copy), and it does not travel to another thread (postMessage copies it), since its
 * object is what holds the range. Runs in child processes, with a known V8 state.
 */
import test from 'ava';
import { hwTest, kvmDevice } from '../../helpers/hw.js';
import { describeChild, runChild } from '../../helpers/node-child.js';

const req = kvmDevice();

test('a 1 GiB mapping and its whole view add almost nothing to V8 external memory, and the view is the mapping', (t) => {
  const r = runChild(`
    const { NativeBackend } = await import(native);
    const b = new NativeBackend();
    const before = process.memoryUsage().external;
    const m = b.mmapAnonymous(1 << 30);
    const v = new Uint8Array(m.buffer);
    out.grewMiB = Math.round((process.memoryUsage().external - before) / 2 ** 20);
    out.length = v.length;
    v[12345] = 7;
    out.same = new Uint8Array(m.view(12288, 4096))[57];
    m.unmap();`);
  t.is(r.status, 0, describeChild(r));
  t.true((r.out?.['grewMiB'] as number) < 16, `external memory grew by ${String(r.out?.['grewMiB'])} MiB`);
  t.is(r.out?.['length'], 1 << 30);
  t.is(r.out?.['same'], 7);
});

test('a guest-memory view in a postMessage transfer list is copied, not moved: the view stays attached', (t) => {
  const r = runChild(`
    const { NativeBackend } = await import(native);
    const { MessageChannel } = await import('node:worker_threads');
    const b = new NativeBackend();
    const m = b.mmapAnonymous(1 << 20);
    const ab = m.buffer;
    new Uint8Array(ab).fill(3);
    const { port1, port2 } = new MessageChannel();
    const got = new Promise((res) => port2.once('message', res));
    try { port1.postMessage(ab, [ab]); } catch (e) { out.threw = e.code ?? e.name; }
    if (!out.threw) { const copy = await got; out.copyByte = new Uint8Array(copy)[5]; }
    out.stillAttached = ab.byteLength;
    port1.close(); port2.close();
    m.unmap();`);
  t.is(r.status, 0, describeChild(r));
  t.is(r.out?.['stillAttached'], 1 << 20);
  if (r.out?.['threw'] === undefined) t.is(r.out?.['copyByte'], 3);
});

hwTest(req, 'twenty 256 MiB VM lifecycles (each writing its memory) cost next to no full GC', (t) => {
  const r = runChild(`
    const k = await import(lib);
    const { PerformanceObserver, constants } = await import('node:perf_hooks');
    let major = 0;
    const obs = new PerformanceObserver((l) => { for (const e of l.getEntries()) if (e.detail.kind === constants.NODE_PERFORMANCE_GC_MAJOR) major++; });
    obs.observe({ entryTypes: ['gc'] });
    const kvm = k.Kvm.open({ backend: new k.NativeBackend() });
    for (let i = 0; i < 20; i++) {
      const vm = kvm.createVm();
      const mem = vm.addMemory({ guestPhysAddr: 0n, size: 256 << 20 });
      mem.write(0x1000n, Uint8Array.of(0xf4));
      out.byte = mem.bytes[0x1000];
      vm.close();
    }
    kvm.close();
    await new Promise((res) => setTimeout(res, 50));
    obs.disconnect();
    out.major = major;`);
  t.is(r.status, 0, describeChild(r));
  t.is(r.out?.['byte'], 0xf4);
  // Counted as external memory, each VM's view would start about three full GCs.
  t.true((r.out?.['major'] as number) < 5, `${String(r.out?.['major'])} full GCs`);
});
