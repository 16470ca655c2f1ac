/**
 * The two VMMs of the handoff benchmark, as child processes.
 *   source <sock> <bytes> <mode>   mode 'fd': handOff (memfds over SCM_RIGHTS); 'copy': stream the memory
 *   target <sock> <bytes> <mode>
 * The guest is the counter program; its memory is a touched memfd of <bytes>. Each side prints the
 * CLOCK_MONOTONIC time (ns) of its last (source) or first (target) guest exit.
 */
import { NativeBackend } from '../../lib/backends/native/native-backend.js';
import { counterProgram } from '../../lib/app/guest/programs.js';
import { loadProgram } from '../../lib/app/guest/setup.js';
import { Kvm } from '../../lib/kvm/kvm.js';
import { decodeVcpuState, encodeVcpuState, restoreVcpuState, saveVcpuState } from '../../lib/kvm/vcpu-state.js';
import { handOff, takeOver } from '../../lib/migration/handoff.js';
import { MessageReader, sendMessage } from '../../lib/backend/framing.js';

const [role, path, bytesStr, mode] = process.argv.slice(2);
const size = Number(bytesStr);
const PORT = 0x500;
const backend = new NativeBackend();
const kvm = Kvm.open({ backend });
const now = () => process.hrtime.bigint().toString();

async function exitOnce(vcpu: import('../../lib/kvm/vcpu.js').Vcpu): Promise<number> {
  const e = await vcpu.run();
  if (e.reason !== 'io' || e.port !== PORT) throw new Error(`unexpected exit ${e.reason}`);
  return new DataView(e.data.buffer, e.data.byteOffset, 4).getUint32(0, true);
}

const CHUNK = 1 << 26; // 64 MiB per socket message in the copy baseline

if (role === 'source') {
  const vm = kvm.createVm();
  const mem = vm.addMemory({ guestPhysAddr: 0n, size, memfd: 'bench-guest' });
  for (let off = 0; off < size; off += 1 << 30) mem.fill(BigInt(off), Math.min(1 << 30, size - off), 0xa5); // touch every page
  const vcpu = vm.createVcpu(0);
  loadProgram(mem, vcpu, counterProgram(0x2000, PORT));
  for (let i = 0; i < 100; i++) await exitOnce(vcpu);
  let last = now();
  const socket = backend.unixConnect(path!);
  if (mode === 'fd') {
    // The guest runs until the new VMM has prepared; the pause starts at its last exit here.
    let stop = false;
    const loop = (async () => {
      while (!stop) {
        await exitOnce(vcpu);
        last = now();
      }
    })();
    const r = await handOff({
      vm,
      vcpus: [vcpu],
      memory: [mem],
      socket,
      pause: async () => {
        stop = true;
        await loop;
      },
    });
    if (r.owner !== 'target') throw new Error(`handoff failed: ${r.reason}`);
  } else {
    // The copy baseline: vCPU state as in a handoff, the memory streamed through the socket.
    vcpu.completePendingIo();
    await sendMessage(backend, socket, { state: encodeVcpuState(saveVcpuState(vcpu)), size });
    for (let off = 0; off < size; off += CHUNK) await backend.sendFds(socket, mem.read(BigInt(off), Math.min(CHUNK, size - off)), []);
    await new MessageReader(backend, socket).next(); // the target's "got it"
    vm.close();
  }
  console.log(JSON.stringify({ last }));
} else {
  const listener = backend.unixListen(path!);
  console.error('LISTENING');
  const socket = await backend.unixAccept(listener);
  let vcpu;
  let vm;
  if (mode === 'fd') {
    const g = await takeOver({ kvm, socket });
    vcpu = g.vcpus[0]!;
    vm = g.vm;
  } else {
    const reader = new MessageReader(backend, socket);
    const head = await reader.next();
    vm = kvm.createVm();
    const mem = vm.addMemory({ guestPhysAddr: 0n, size });
    // Receive the memory straight into guest memory, chunk by chunk.
    let got = 0;
    const rest = (reader as unknown as { buf: Buffer }).buf; // bytes that came with the header
    if (rest.length) {
      mem.write(0n, rest);
      got = rest.length;
    }
    while (got < size) {
      const r = await backend.recvFds(socket, Math.min(1 << 20, size - got), 0);
      if (r.data.length === 0) throw new Error('source closed early');
      mem.write(BigInt(got), r.data);
      got += r.data.length;
    }
    vcpu = vm.createVcpu(0);
    restoreVcpuState(vcpu, decodeVcpuState(head.body['state']));
    await sendMessage(backend, socket, { ok: true });
  }
  await exitOnce(vcpu);
  const first = now();
  console.log(JSON.stringify({ first }));
  vm.close();
  listener.close();
}
kvm.close();
process.exit(0);
