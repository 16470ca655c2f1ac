/**
 * Lifetime: nothing leaks across thousands of VM lifecycles, a worker thread that exits with a
 * running vCPU and open fds gets them closed by the environment cleanup hook, and dropped objects
 * are closed by their finalizers. Each runs in a child process of its own: fd counts and RSS are
 * process-wide, and ava runs other test files in the same process.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hwTest, kvmDevice } from '../../helpers/hw.js';

const req = kvmDevice();
const lib = new URL('../../../lib/index.js', import.meta.url).href;

function child(body: string, flags: string[] = []): Record<string, number> {
  const script = `
    import { readdirSync, readlinkSync } from 'node:fs';
    import * as k from ${JSON.stringify(lib)};
    const openFds = () => readdirSync('/proc/self/fd').length;
    // fds of the kinds kvm-sev opens (Node itself may open others, e.g. /dev/null for a worker's stdio)
    const kvmFds = () => readdirSync('/proc/self/fd').filter((f) => {
      try { const l = readlinkSync('/proc/self/fd/' + f); return ['/dev/kvm', 'anon_inode:kvm', '/memfd:'].some((p) => l.startsWith(p)); } catch { return false; }
    }).length;
    const out = {};
    ${body}
    process.stdout.write(JSON.stringify(out));`;
  // Under AddressSanitizer (.ci/run preloads it) freed memory sits in ASan's quarantine (256 MiB by
  // default) and counts as RSS: these children measure growth, so they keep no quarantine.
  const asan = /libasan/.test(process.env['LD_PRELOAD'] ?? '');
  const env = asan
    ? { ...process.env, ASAN_OPTIONS: `${process.env['ASAN_OPTIONS'] ?? ''}:quarantine_size_mb=0:thread_local_quarantine_size_kb=0` }
    : process.env;
  const stdout = execFileSync(process.execPath, [...flags, '--input-type=module', '-e', script], {
    encoding: 'utf8',
    timeout: 120_000,
    env,
  });
  return JSON.parse(stdout) as Record<string, number>;
}

hwTest(req, '5,000 cycles of create VM + memory + vCPU + close: fd count unchanged, RSS bounded', (t) => {
  const r = child(`
    const kvm = k.Kvm.open({ backend: new k.NativeBackend() });
    const cycle = () => { const vm = kvm.createVm(); vm.addMemory({ guestPhysAddr: 0n, size: 0x10000 }); vm.createVcpu(0); vm.close(); };
    for (let i = 0; i < 200; i++) cycle();          // warm up allocators and the JIT
    out.fds0 = openFds(); out.rss0 = process.memoryUsage().rss;
    for (let i = 0; i < 5000; i++) cycle();
    out.fds1 = openFds(); out.rss1 = process.memoryUsage().rss;
    kvm.close();`);
  t.is(r['fds1'], r['fds0'], 'open fds');
  const growth = (r['rss1']! - r['rss0']!) / 2 ** 20;
  t.log(`RSS growth over 5,000 cycles: ${growth.toFixed(1)} MiB`);
  t.true(growth < 64, `RSS grew by ${growth.toFixed(1)} MiB`);
});

hwTest(req, 'a worker that exits with a running vCPU and open fds leaks none of them', (t) => {
  const r = child(`
    const { Worker } = await import('node:worker_threads');
    out.fds0 = kvmFds();
    const w = new Worker(\`
      import { parentPort } from 'node:worker_threads';
      const { Kvm, NativeBackend, loadProgram } = await import(${JSON.stringify(JSON.stringify(lib)).slice(1, -1)});
      const kvm = Kvm.open({ backend: new NativeBackend() });
      const vm = kvm.createVm();
      const mem = vm.addMemory({ guestPhysAddr: 0n, size: 0x10000 });
      const vcpu = vm.createVcpu();
      loadProgram(mem, vcpu, { origin: 0x1000, code: Uint8Array.of(0xeb, 0xfe) });
      vcpu.run();  // the guest spins forever
      setTimeout(() => parentPort.postMessage('running'), 20);\`, { eval: true });
    await new Promise((resolve, reject) => { w.once('message', resolve); w.once('error', reject); });
    out.fdsRunning = kvmFds();
    await w.terminate();
    await new Promise((r) => setTimeout(r, 50));
    out.fds1 = kvmFds();`);
  t.true(r['fdsRunning']! > r['fds0']!, 'the worker held fds');
  t.is(r['fds1'], r['fds0']);
});

hwTest(req, 'dropped objects are closed by their finalizers when collected', (t) => {
  const r = child(
    `
    out.fds0 = openFds();
    (() => { const kvm = k.Kvm.open({ backend: new k.NativeBackend() }); for (let i = 0; i < 20; i++) kvm.createVm().createVcpu(); })();
    out.fdsHeld = openFds();
    for (let i = 0; i < 20 && openFds() > out.fds0; i++) { globalThis.gc(); await new Promise((r) => setTimeout(r, 10)); }
    out.fds1 = openFds();`,
    ['--expose-gc'],
  );
  t.is(r['fdsHeld'], r['fds0']! + 41);
  t.is(r['fds1'], r['fds0']);
});

hwTest(req, 'a process that exits with a vCPU running in the guest exits cleanly', (t) => {
  const r = child(`
    const kvm = k.Kvm.open({ backend: new k.NativeBackend() });
    const vm = kvm.createVm();
    const mem = vm.addMemory({ guestPhysAddr: 0n, size: 0x10000 });
    const vcpu = vm.createVcpu();
    k.loadProgram(mem, vcpu, { origin: 0x1000, code: Uint8Array.of(0xeb, 0xfe) });
    vcpu.run();
    await new Promise((r) => setTimeout(r, 20));
    out.ok = 1;
    setTimeout(() => { process.stdout.write(JSON.stringify(out)); process.exit(0); }, 10);
    await new Promise(() => {});`);
  t.is(r['ok'], 1);
});

hwTest(req, 'a worker terminated while it waits on a socket (recv, accept) takes its threads with it: no crash', (t) => {
  // The listening sockets' files go with this folder (a terminated worker cannot unlink them).
  const dir = mkdtempSync(join(tmpdir(), 'kvm-sev-term-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const r = child(`
    const { Worker } = await import('node:worker_threads');
    for (let i = 0; i < 3; i++) {
      const w = new Worker(\`
        import { parentPort } from 'node:worker_threads';
        const { NativeBackend } = await import(${JSON.stringify(JSON.stringify(lib.replace('index.js', 'backends/native/native-backend.js'))).slice(1, -1)});
        const b = new NativeBackend();
        const [s1] = b.socketPair();
        b.recvFds(s1, 64);                       // never answered
        const l = b.unixListen(${JSON.stringify(dir)} + '/listen-' + ${'${i}'} + '.sock');
        b.unixAccept(l);                         // never answered
        parentPort.postMessage('waiting');\`, { eval: true });
      await new Promise((resolve, reject) => { w.once('message', resolve); w.once('error', reject); });
      await w.terminate();
    }
    out.ok = 1;`);
  t.is(r['ok'], 1);
});
