/**
 * A tiny VMM for the handoff tests, run as a child process:
 *   node handoff-vmm.js source <socket> <exitsBeforeHandoff>   runs the counter guest, then hands it off
 *   node handoff-vmm.js target <socket> <exitsAfterTakeover>    takes the guest over and runs it on
 * Each prints one JSON line: the counter values it saw and what the handoff said.
 */
import { writeSync } from 'node:fs';
import { NativeBackend } from '../../lib/backends/native/native-backend.js';
import { counterProgram } from '../../lib/app/guest/programs.js';
import { SerialPort } from '../../lib/app/guest/serial.js';
import { loadProgram } from '../../lib/app/guest/setup.js';
import { Kvm } from '../../lib/kvm/kvm.js';
import type { Vcpu } from '../../lib/kvm/vcpu.js';
import { handOff, takeOver } from '../../lib/migration/handoff.js';

// The result line, written before process.exit(): console.log to a pipe is asynchronous, and a long
// `seen` (a fast run() records many exits while the new VMM prepares) would be cut off at exit.
const out = (o: Record<string, unknown>) => writeSync(1, JSON.stringify(o) + '\n');

const PORT = 0x500;
const [role, path, nStr] = process.argv.slice(2);
const n = Number(nStr);

async function counts(vcpu: Vcpu, k: number, seen: number[]): Promise<void> {
  for (let i = 0; i < k; i++) {
    const e = await vcpu.run();
    if (e.reason !== 'io' || e.port !== PORT) throw new Error(`unexpected exit ${e.reason}`);
    seen.push(new DataView(e.data.buffer, e.data.byteOffset, 4).getUint32(0, true));
    if (process.env['HANDOFF_SLOW']) await new Promise((r) => setTimeout(r, 1));
  }
}

const backend = new NativeBackend();
const kvm = Kvm.open({ backend });
const seen: number[] = [];
if (role === 'source') {
  const vm = kvm.createVm();
  const mem = vm.addMemory({ guestPhysAddr: 0n, size: 0x10000, memfd: 'handoff-guest' });
  const vcpu = vm.createVcpu(0);
  loadProgram(mem, vcpu, counterProgram(0x2000, PORT));
  const serial = new SerialPort();
  await counts(vcpu, n, seen);
  if (process.env['HANDOFF_DIE'] === 'before-send') process.kill(process.pid, 'SIGKILL');
  const socket = backend.unixConnect(path!);
  // The guest keeps running while the new VMM prepares; pause() stops it.
  let stop = false;
  const loop = (async () => {
    while (!stop) await counts(vcpu, 1, seen);
  })();
  const t0 = process.hrtime.bigint();
  const r = await handOff({
    vm,
    vcpus: [vcpu],
    memory: [mem],
    socket,
    devices: { serial: serial.saveState(), note: 'from the old VMM' },
    pause: async () => {
      stop = true;
      await loop;
      console.error('SOURCE-STOPPED');
      if (process.env['HANDOFF_DIE'] === 'after-pause') process.kill(process.pid, 'SIGKILL');
    },
  });
  if (r.owner === 'source') await counts(vcpu, n, seen); // still ours: resume
  out({ role, seen, owner: r.owner, reason: r.reason ?? null, handoffMs: Number(process.hrtime.bigint() - t0) / 1e6 });
} else {
  const listener = backend.unixListen(path!);
  console.error('TARGET-LISTENING');
  const socket = await backend.unixAccept(listener);
  const g = await takeOver({
    kvm,
    socket,
    beforeReady: () => {
      if (process.env['HANDOFF_DIE'] === 'before-ready') process.kill(process.pid, 'SIGKILL');
    },
  });
  if (process.env['HANDOFF_DIE'] === 'after-takeover') process.kill(process.pid, 'SIGKILL');
  await counts(g.vcpus[0]!, n, seen);
  out({ role, seen, owner: g.owner, devices: g.devices });
  g.vm.close();
  listener.close();
}
kvm.close();
process.exit(0);
